//! The status step of a plan: the CloudProvisioned's conditions, counts and
//! pending Git changes, written only when they change.

use super::{
    CONDITION_GIT_IN_SYNC, CONDITION_IN_SYNC, CONDITION_INVENTORY_FRESH, CONDITION_READY, CONDITION_RESOURCE_FOUND,
    Freshness, Inputs, PlannedEvent, Tracked, compare::detect_event, open_fields,
};
use crate::accept::commit_line;
use crate::api::{
    Absence, CONDITION_DESIRED_CONFLICT, CloudProvisioned, CloudProvisionedStatus, ConditionStatus, IgnoredDifference,
    PendingGitChange, SpecProblem,
};
use crate::detect::render_value;
use crate::writeback::source;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use std::collections::BTreeMap;

/// What a reconcile could establish, which the status reports.
pub(super) enum WritebackOutcome {
    Invalid(SpecProblem),
    Missing(String, Absence),
    Checked(Freshness),
}

/// Builds conditions that keep their `lastTransitionTime` while their status holds.
struct Conditions<'a> {
    p: &'a CloudProvisioned,
    old: &'a [Condition],
    now: &'a Time,
}

impl Conditions<'_> {
    fn make(&self, type_: &str, status: ConditionStatus, reason: &str, message: String) -> Condition {
        Condition {
            type_: type_.into(),
            status: status.as_str().into(),
            reason: reason.into(),
            message,
            observed_generation: self.p.metadata.generation,
            last_transition_time: self
                .old
                .iter()
                .find(|c| c.type_ == type_ && ConditionStatus::of(c) == Some(status))
                .map(|c| c.last_transition_time.clone())
                .unwrap_or_else(|| self.now.clone()),
        }
    }

    /// kstatus' `Ready`, so `kubectl wait --for=condition=Ready`, Flux's
    /// health checks and Argo CD see a CloudProvisioned in sync without a
    /// script: True when the resource is found, fresh and in sync; otherwise
    /// False (Unknown when nothing could be compared) with the first
    /// condition that is not, its reason and message.
    fn ready(&self, conditions: &[Condition]) -> Condition {
        let needed = [CONDITION_RESOURCE_FOUND, CONDITION_INVENTORY_FRESH, CONDITION_IN_SYNC];
        let blocking = needed.iter().find_map(|t| match conditions.iter().find(|c| c.type_ == *t) {
            Some(c) if ConditionStatus::of(c) == Some(ConditionStatus::True) => None,
            Some(c) => {
                let status = ConditionStatus::of(c).unwrap_or(ConditionStatus::Unknown);
                Some((status, c.reason.clone(), format!("{}: {}", c.type_, c.message)))
            }
            None => Some((ConditionStatus::Unknown, "NotChecked".to_owned(), format!("{t} is not known yet"))),
        });
        match blocking {
            None => self.make(
                CONDITION_READY,
                ConditionStatus::True,
                "InSync",
                "the live resource matches spec.desired".into(),
            ),
            Some((ConditionStatus::Unknown, reason, message)) => {
                self.make(CONDITION_READY, ConditionStatus::Unknown, &reason, message)
            }
            Some((_, reason, message)) => self.make(CONDITION_READY, ConditionStatus::False, &reason, message),
        }
    }

    fn in_sync(&self, open: &[String], unrecorded: &[String]) -> Condition {
        if open.is_empty() && unrecorded.is_empty() {
            let message = format!("all {} desired fields match", self.p.spec.desired.len());
            return self.make(CONDITION_IN_SYNC, ConditionStatus::True, "InSync", message);
        }
        let mut message = format!("{} drifted: {}", open.len(), open.join(", "));
        if !unrecorded.is_empty() {
            message.push_str(&format!(
                "; {} more drifted fields have no Drift (at most {} are open per object): {}",
                unrecorded.len(),
                super::compare::MAX_OPEN_DRIFTS,
                unrecorded.join(", ")
            ));
        }
        self.make(CONDITION_IN_SYNC, ConditionStatus::False, "Drifted", message)
    }

    fn fresh(&self, freshness: Freshness) -> Condition {
        match freshness {
            Freshness::Fresh => self.make(
                CONDITION_INVENTORY_FRESH,
                ConditionStatus::True,
                "Fresh",
                "the live state is recent enough to close drifts".into(),
            ),
            Freshness::Stale(why) => self.make(
                CONDITION_INVENTORY_FRESH,
                ConditionStatus::False,
                "InventoryStale",
                format!("{why}; open drifts are not closed as Stale until it is fresh again"),
            ),
        }
    }

    /// Whether every accepted value is in Git; if not, the exact lines to
    /// commit, or, where Git holds a Flux variable, the variable to change.
    fn git_in_sync(&self, pending: &[PendingGitChange], tracked: &BTreeMap<String, Tracked>) -> Condition {
        if pending.is_empty() {
            let message = "no accepted value waits for a commit to Git".to_owned();
            return self.make(CONDITION_GIT_IN_SYNC, ConditionStatus::True, "NothingPending", message);
        }
        let (mut lines, mut variables) = (Vec::new(), Vec::new());
        for e in pending {
            let refused = tracked.get(&e.field).filter(|t| t.name == e.drift).and_then(|t| t.status.git.as_ref());
            match refused.and_then(source::refused_flux_variable) {
                Some(v) => variables.push(format!(
                    "{} (accepted by {}) is the Flux variable {}: give it the value {}, not the manifest; {}",
                    e.field,
                    e.accepted_by,
                    v.name,
                    render_value(&e.value),
                    v.set_in
                )),
                None => lines.push(format!("{} (accepted by {})", commit_line(&e.field, &e.value), e.accepted_by)),
            }
        }
        let name = self.p.metadata.name.as_deref().unwrap_or_default();
        let mut message = "accepted in overlay mode but not in Git".to_owned();
        if !lines.is_empty() {
            message.push_str(&format!("; commit to CloudProvisioned {name}: {}", lines.join("; ")));
        }
        if !variables.is_empty() {
            message.push_str(&format!("; in CloudProvisioned {name}, {}", variables.join("; ")));
        }
        self.make(CONDITION_GIT_IN_SYNC, ConditionStatus::False, "AcceptedNotInGit", message)
    }

    /// Shown while another CloudProvisioned of the same resource wants a
    /// different value, and once more as False when that ends.
    fn desired_conflict(&self, conflicts: &[String]) -> Option<Condition> {
        if !conflicts.is_empty() {
            let message = format!(
                "other CloudProvisioneds name the same resource with different desired values, so neither may revert those fields: {}",
                conflicts.join("; ")
            );
            return Some(self.make(CONDITION_DESIRED_CONFLICT, ConditionStatus::True, "DesiredConflict", message));
        }
        let had = self.old.iter().any(|c| c.type_ == CONDITION_DESIRED_CONFLICT);
        had.then(|| {
            self.make(
                CONDITION_DESIRED_CONFLICT,
                ConditionStatus::False,
                "NoConflict",
                "no other CloudProvisioned wants a different value".into(),
            )
        })
    }

    fn missing(&self, name: &str, absence: Absence) -> Vec<Condition> {
        let reason = match absence {
            Absence::NotFound => "NotFound",
            Absence::GoneFromProvider => "GoneFromProvider",
            Absence::NeverSynced => "NeverSynced",
        };
        let message = missing_message(name, absence);
        vec![
            self.make(
                CONDITION_IN_SYNC,
                ConditionStatus::Unknown,
                "ResourceMissing",
                format!("cannot compare: {message}"),
            ),
            self.make(CONDITION_RESOURCE_FOUND, ConditionStatus::False, reason, message),
        ]
    }
}

fn missing_message(name: &str, absence: Absence) -> String {
    format!("CloudResource {name}: {}", absence.describe())
}

/// What the status reports besides the outcome and the drifts.
pub(super) struct StatusBasis<'a> {
    pub pending: &'a [PendingGitChange],
    pub policies: &'a [String],
    pub ignored: &'a [IgnoredDifference],
    /// Fields other CloudProvisioneds of the same resource want otherwise (`field: ns/name, ...`).
    pub conflicts: &'a [String],
    /// Drifted fields past the cap of open Drifts.
    pub unrecorded: &'a [String],
}

pub(super) fn status_for(
    inputs: &Inputs<'_>,
    tracked: &BTreeMap<String, Tracked>,
    basis: &StatusBasis<'_>,
    outcome: WritebackOutcome,
    events: &mut Vec<PlannedEvent>,
) -> Option<CloudProvisionedStatus> {
    let pending = basis.pending;
    let p = inputs.provisioned;
    let old = p.status.clone().unwrap_or_default();
    let open = open_fields(tracked);
    let c = Conditions { p, old: &old.conditions, now: inputs.now };
    let mut conditions = match outcome {
        WritebackOutcome::Invalid(problem) => vec![
            c.make(CONDITION_IN_SYNC, ConditionStatus::Unknown, "InvalidSpec", problem.to_string()),
            c.make(CONDITION_RESOURCE_FOUND, ConditionStatus::Unknown, "InvalidSpec", problem.to_string()),
        ],
        WritebackOutcome::Missing(name, absence) => {
            let was_missing = old
                .conditions
                .iter()
                .any(|c| c.type_ == CONDITION_RESOURCE_FOUND && ConditionStatus::of(c) == Some(ConditionStatus::False));
            if !was_missing {
                events.push(detect_event("ResourceMissing", missing_message(&name, absence)));
            }
            c.missing(&name, absence)
        }
        WritebackOutcome::Checked(freshness) => {
            let found = format!("CloudResource {} found", p.spec.resource_ref.name);
            vec![
                c.in_sync(&open, basis.unrecorded),
                c.make(CONDITION_RESOURCE_FOUND, ConditionStatus::True, "Found", found),
                c.fresh(freshness),
            ]
        }
    };
    conditions.push(c.git_in_sync(pending, tracked));
    conditions.extend(c.desired_conflict(basis.conflicts));
    conditions.insert(0, c.ready(&conditions));
    let mut status = CloudProvisionedStatus {
        observed_generation: p.metadata.generation,
        last_checked_time: old.last_checked_time.clone(),
        open_drifts: open.len() as i32,
        drifted_fields: open,
        pending_git_changes: pending.to_vec(),
        policies: basis.policies.to_vec(),
        ignored_differences: basis.ignored.to_vec(),
        conditions,
    };
    if p.status.as_ref() == Some(&status) {
        return None;
    }
    status.last_checked_time = Some(inputs.now.clone());
    Some(status)
}
