//! Whether the reverter may run a saga, decided from what it derived itself.
//! A Drift's status is writable by anyone granted `drifts/status`, so nothing
//! in it is authority: the calls are derived again from the CloudProvisioned's
//! spec, the CloudResource and the rules, the approval is the annotation
//! (`arcadia.cloud/revert=<digest>`, which only the admin group may set), and
//! the saga's record is resumed only when the reverter wrote it and its steps
//! hash to the approved digest.

use super::{NotClaimed, Preview, Target, current_record, differences, digest};
use crate::api::{
    ANNOTATION_REVERT, ANNOTATION_REVERT_ALLOW_DOWNTIME, Drift, DriftPhase, ProviderCall, REVERTER_FIELD_MANAGER,
    RevertRecord, SagaState, StepState,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

/// What the reverter knows besides the Drift (read whole, with managedFields).
pub struct Evidence<'a> {
    pub drift: &'a Drift,
    /// The plan derived now from trusted inputs, or why there is none.
    pub derived: Result<&'a Preview, &'a NoPlan>,
    /// The resource the plan writes to, when the inventory knows it.
    pub target: Option<Target<'a>>,
    /// `--revert-claim` checked again against the resource's tags.
    pub claim: Result<(), NotClaimed>,
    pub now: &'a Time,
}

/// Why the reverter has no plan to judge a saga by.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum NoPlan {
    #[error("{object} is gone")]
    Gone { object: String },
    #[error("the Drift is not the one {object} keeps for {field}")]
    NotItsDrift { object: String, field: String },
    #[error(transparent)]
    NotRevertible(#[from] super::NotRevertible),
}

#[derive(Debug, PartialEq)]
pub enum Decision {
    /// Run (or resume) this record.
    Run(RevertRecord),
    /// End the saga before anything is sent, saying why.
    Refuse(String),
    /// The drift is not being reverted: nothing to do.
    Idle,
}

pub fn admit(e: &Evidence<'_>) -> Decision {
    let Some(status) = e.drift.status.as_ref().filter(|s| s.phase == DriftPhase::Reverting) else {
        return Decision::Idle;
    };
    let Some(episode) = status.detected_time.as_ref() else { return Decision::Idle };
    let refuse = |why: String| Decision::Refuse(format!("revert refused by the reverter: {why}; nothing was sent"));
    if let Some(record) = current_record(status) {
        let writers = other_writers(e.drift);
        if !writers.is_empty() {
            return refuse(format!(
                "status.revert was written by {}, not by the reverter ({REVERTER_FIELD_MANAGER}), and a record the reverter did not write is never run",
                writers.join(", ")
            ));
        }
        if begun(record) {
            let approval = e.drift.annotations().get(ANNOTATION_REVERT).map(|v| v.trim());
            return match resumable(record, e.target, approval) {
                Ok(()) => Decision::Run(record.clone()),
                Err(why) => refuse(why),
            };
        }
    }
    match approved(e) {
        Ok((calls, who)) => Decision::Run(super::saga::start(calls, episode, &who, e.now)),
        Err(why) => refuse(why),
    }
}

/// A record sent a step, or ended: it is resumed, never started again.
fn begun(record: &RevertRecord) -> bool {
    record.state != SagaState::Running || record.steps.iter().any(|s| s.state != StepState::Pending)
}

/// Field managers other than the reverter that own part of `status.revert`.
fn other_writers(d: &Drift) -> Vec<String> {
    d.managed_fields()
        .iter()
        .filter(|m| m.subresource.as_deref() == Some("status"))
        .filter(|m| m.fields_v1.as_ref().and_then(|f| f.0.get("f:status")?.get("f:revert")).is_some())
        .filter_map(|m| m.manager.clone())
        .filter(|m| m != REVERTER_FIELD_MANAGER)
        .collect()
}

/// The approval is for the plan derived now: the annotation names its
/// digest, the plan the drift shows is that plan, the claim holds, and
/// downtime is allowed when the plan needs it. The calls and the approver.
fn approved<'a>(e: &Evidence<'a>) -> Result<(&'a [ProviderCall], String), String> {
    let derived = e.derived.map_err(ToString::to_string)?;
    let status = e.drift.status.clone().unwrap_or_default();
    let (shown, shown_digest) = (&status.revert_plan, &status.revert_plan_digest);
    let want = digest(&derived.calls);
    let annotations = e.drift.annotations();
    let Some(value) = annotations.get(ANNOTATION_REVERT).map(|v| v.trim()) else {
        return Err(format!(
            "the drift is Reverting, yet carries no approval ({ANNOTATION_REVERT}=<digest>): a phase written into status approves nothing"
        ));
    };
    if value != want {
        return Err(format!(
            "the approval names plan {value}, and the plan derived now from the spec, the CloudResource and the rules is {want}: the plan changed since it was approved; approve it again with {ANNOTATION_REVERT}={want}"
        ));
    }
    if shown.as_slice() != derived.calls.as_slice() || shown_digest.as_deref() != Some(want.as_str()) {
        let mut what = differences(shown, &derived.calls);
        if what.is_empty() {
            what.push(format!("status.revertPlanDigest is {shown_digest:?}, not {want}"));
        }
        return Err(format!(
            "status.revertPlan is not the plan derived now from the CloudProvisioned's spec, the CloudResource and the rules: {}",
            what.join("; ")
        ));
    }
    e.claim.clone().map_err(|why| why.to_string())?;
    let downtime_allowed =
        annotations.get(ANNOTATION_REVERT_ALLOW_DOWNTIME).is_some_and(|v| v.eq_ignore_ascii_case("true"));
    if derived.downtime && !downtime_allowed {
        return Err(format!(
            "the plan powers the resource off, and {ANNOTATION_REVERT_ALLOW_DOWNTIME}=true is missing"
        ));
    }
    Ok((&derived.calls, e.drift.reverted_by()))
}

/// A record resumed after a restart: its plan is the one approved (the
/// calls hash to the approved digest, which is the approval's while the
/// annotation stands, and a compensation repeats one of them), and every call
/// writes to this drift's resource.
fn resumable(record: &RevertRecord, target: Option<Target<'_>>, approval: Option<&str>) -> Result<(), String> {
    let target = target.ok_or("the resource is not one the inventory knows, so the record cannot be checked")?;
    let plan: Vec<ProviderCall> = record.steps.iter().filter(|s| !s.compensation).map(|s| s.call.clone()).collect();
    let hashed = digest(&plan);
    if !record.approved_digest.as_deref().is_some_and(|d| names(d, &hashed)) {
        return Err(format!(
            "the steps of status.revert hash to {hashed}, not to the approved digest {:?}",
            record.approved_digest
        ));
    }
    if let Some(approved) = approval.filter(|a| !names(a, &hashed)) {
        return Err(format!("the steps of status.revert are plan {hashed}, and the approval names plan {approved}"));
    }
    if let Some(odd) = record.steps.iter().find(|s| s.compensation && !plan.contains(&s.call)) {
        return Err(format!("the compensation {} {} repeats no step of the plan", odd.call.method, odd.call.path));
    }
    match plan.iter().find(|c| !super::plan::addresses(c, target)) {
        Some(c) => Err(format!("{} {} does not write to {} {}", c.method, c.path, target.type_, target.id)),
        None => Ok(()),
    }
}

/// Whether a started record's digest (or its approval) names plan `hashed`.
/// A saga started by a release before CRD schema version 6 carries the
/// 16-digit digest of its day, the first half of today's: it may still be
/// resumed, and compensated (a new approval always names 32 digits).
fn names(digest: &str, hashed: &str) -> bool {
    digest == hashed || (digest.len() == 16 && hashed.starts_with(digest))
}

#[cfg(test)]
#[path = "execution_tests.rs"]
mod tests;
