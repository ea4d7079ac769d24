//! What the controller made of an annotation, read from the Drift's status:
//! the plugin annotates, then asks [`outcome`] on each read until it says
//! something other than `Pending`.

use crate::api::{ANNOTATION_ACCEPT, ANNOTATION_REVERT, Drift, DriftPhase};
use kube::ResourceExt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Accept,
    Revert,
}

impl Action {
    pub fn annotation(self) -> &'static str {
        match self {
            Action::Accept => ANNOTATION_ACCEPT,
            Action::Revert => ANNOTATION_REVERT,
        }
    }

    pub fn verb(self) -> &'static str {
        match self {
            Action::Accept => "accept",
            Action::Revert => "revert",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The controller has not acted yet (or a revert's saga still runs).
    Pending,
    Done(String),
    /// Refused, or the saga failed: the controller's message.
    Refused(String),
}

/// The outcome so far. The controller writes the status before it removes
/// the annotation, so a consumed annotation means the status is final.
pub fn outcome(action: Action, d: &Drift) -> Outcome {
    let Some(status) = &d.status else { return Outcome::Pending };
    if d.annotations().contains_key(action.annotation()) {
        return Outcome::Pending;
    }
    let message = status.message.clone().unwrap_or_default();
    let who = status.resolved_by.clone().unwrap_or_else(|| "unknown".into());
    match (action, status.phase) {
        (Action::Accept, DriftPhase::Accepted) => Outcome::Done(format!("Accepted by {who}: {message}")),
        (Action::Revert, DriftPhase::Reverted) => Outcome::Done(format!("Reverted (approved by {who}): {message}")),
        (Action::Revert, DriftPhase::Reverting) => Outcome::Pending,
        (Action::Revert, DriftPhase::RevertFailed) => Outcome::Refused(message),
        _ => Outcome::Refused(if message.is_empty() { format!("the drift is {}", status.phase) } else { message }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{DriftSpec, DriftStatus};

    fn drift(phase: DriftPhase, annotated: Option<&str>, message: &str) -> Drift {
        let spec = DriftSpec {
            provisioned_ref: crate::api::ProvisionedRef { name: "web-1".into() },
            resource_ref: crate::api::ResourceRef { name: "r".into() },
            field: "size_slug".into(),
        };
        let mut d = Drift::new("d", spec);
        if let Some(key) = annotated {
            d.annotations_mut().insert(key.into(), "true".into());
        }
        d.status = Some(DriftStatus {
            phase,
            message: Some(message.into()),
            resolved_by: Some("alice".into()),
            ..Default::default()
        });
        d
    }

    #[test]
    fn an_annotation_still_there_is_pending_and_a_consumed_one_is_final() {
        assert_eq!(outcome(Action::Accept, &drift(DriftPhase::Open, Some(ANNOTATION_ACCEPT), "")), Outcome::Pending);
        assert!(
            matches!(outcome(Action::Accept, &drift(DriftPhase::Accepted, None, "commit")), Outcome::Done(m) if m.contains("alice"))
        );
        let refused = outcome(Action::Accept, &drift(DriftPhase::Stale, None, "accept refused: the drift is Stale"));
        assert_eq!(refused, Outcome::Refused("accept refused: the drift is Stale".into()));
        assert_eq!(outcome(Action::Revert, &drift(DriftPhase::Reverting, None, "")), Outcome::Pending);
        assert!(matches!(
            outcome(Action::Revert, &drift(DriftPhase::RevertFailed, None, "revert failed: x")),
            Outcome::Refused(_)
        ));
        assert!(matches!(outcome(Action::Revert, &drift(DriftPhase::Reverted, None, "")), Outcome::Done(_)));
    }
}
