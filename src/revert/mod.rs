//! Revert: putting the cloud back to the desired value, on approval. Pure
//! decisions only: [`plan`] builds the preview (the provider calls),
//! [`approval`] decides whether an approval may run, and [`saga`] is the
//! crash-safe state machine the reverter (in `inventory`) drives.

pub mod approval;
pub mod execution;
pub mod plan;
pub mod saga;

pub use approval::{Approval, Claim, NotClaimed, Owned, RevertSettings, claim_holds, conflicts, peer_shown};
pub use plan::{NotRevertible, Preview, Target, addresses, derive, differences, digest, preview};

use crate::api::{DriftStatus, RevertRecord};

/// The saga's record for the drift's current episode and approval, if it has
/// one (a record of an earlier episode, or of an earlier approval of this
/// one, is history).
pub fn current_record(status: &DriftStatus) -> Option<&RevertRecord> {
    let approved_since =
        |r: &RevertRecord| status.revert_approved_time.as_ref().is_none_or(|a| r.started_time.0 >= a.0);
    status.revert.as_ref().filter(|r| Some(&r.episode) == status.detected_time.as_ref() && approved_since(r))
}

#[cfg(test)]
mod tests;
