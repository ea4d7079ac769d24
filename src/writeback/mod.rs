//! Git write-back: an accepted value becomes a commit in the repository the
//! object came from.
//!
//! - [`edit`]: the one-value edit of a manifest (pure);
//! - [`files`]: which file of a checkout to change (pure);
//! - [`commit`]: the commit message, its trailer, the review branch (pure);
//! - [`git`]: fetch, commit and push through the git command line.

pub mod commit;
pub mod edit;
pub mod files;
pub mod git;
