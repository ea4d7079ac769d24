//! Git write-back: an accepted value becomes a commit in the repository the
//! object came from.
//!
//! - [`edit`]: the one-value edit of a manifest (pure).

pub mod edit;
