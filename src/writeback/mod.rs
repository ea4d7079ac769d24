//! Git write-back: an accepted value becomes a commit in the repository the
//! object came from.
//!
//! - [`edit`]: the one-value edit of a manifest (pure);
//! - [`files`]: which file of a checkout to change (pure);
//! - [`commit`]: the commit message, its trailer, the review branch (pure);
//! - [`remote_url`]: which remotes and branches are safe to hand to git (pure);
//! - [`tree`]: which files of a fetched tree to read, bounded (pure);
//! - [`kustomize`]: which files a kustomization includes, and whether a patch on
//!   the way changes the field (pure);
//! - [`git`]: fetch, commit and push through sealed git plumbing;
//! - [`source`]: where an object's manifest lives (annotations, Flux, Argo CD; pure);
//! - [`worker`]: reads the origin and the credentials, pushes, keeps the outcomes;
//! - [`metrics`]: the count of pushes by result.

pub mod commit;
pub mod edit;
pub mod files;
pub mod git;
pub mod kustomize;
pub mod metrics;
pub mod remote_url;
pub mod source;
pub mod tree;
pub mod worker;

pub use worker::{Job, Worker, Writeback, WritebackOutcome, WritebackSettings, writeback};
