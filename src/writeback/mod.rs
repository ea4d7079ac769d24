//! Git write-back: an accepted value becomes a commit in the repository the
//! object came from.
//!
//! - [`edit`]: the one-value edit of a manifest (pure);
//! - [`files`]: which file of a checkout to change (pure);
//! - [`commit`]: the commit message, its trailer, the review branch (pure);
//! - [`git`]: fetch, commit and push through the git command line;
//! - [`source`]: where an object's manifest lives (annotations, Flux, Argo CD; pure);
//! - [`worker`]: reads the origin and the credentials, pushes, keeps the outcomes;
//! - [`metrics`]: the count of pushes by result.

pub mod commit;
pub mod edit;
pub mod files;
pub mod git;
pub mod metrics;
pub mod source;
pub mod worker;

pub use worker::{Job, Outcome, Worker, Writeback, WritebackSettings, writeback};
