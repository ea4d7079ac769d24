//! Revert: putting the cloud back to the desired value, on approval. Pure
//! decisions only: [`plan`] builds the preview (the provider calls),
//! [`approval`] decides whether an approval may run, and [`saga`] is the
//! crash-safe state machine the reverter (in `inventory`) drives.

pub mod approval;
pub mod plan;
pub mod saga;

pub use approval::{Approval, Claim, RevertSettings, claim_tag, conflicts};
pub use plan::{Preview, Target, preview};

use crate::api::{DriftStatus, RevertRecord};

/// The saga's record for the drift's current episode, if it has one (a
/// record of an earlier episode is history).
pub fn current_record(status: &DriftStatus) -> Option<&RevertRecord> {
    status.revert.as_ref().filter(|r| Some(&r.episode) == status.detected_time.as_ref())
}

#[cfg(test)]
mod tests;
