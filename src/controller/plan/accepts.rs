//! The accept step of a plan: settle values accepted earlier in overlay mode
//! against the spec, then carry out each accept annotation in the object's
//! accept mode (see [`crate::accept`]).

use super::{Inputs, Plan, PlannedEvent, Regarding, Settings, Tracked};
use crate::accept::{self, ModeChoice, Settled};
use crate::api::lifecycle::{self, State, Trigger};
use crate::api::{Absence, AcceptMode, AcceptedInto, DriftPhase, DriftStatus, Fields, GitCommit, PendingGitChange};
use crate::detect::{LiveView, observed_equal, render_value};
use crate::writeback::{WritebackOutcome, source};
use kube::ResourceExt;
use std::borrow::Cow;
use std::collections::BTreeMap;

/// The overlay entries of one CloudProvisioned while it is planned.
pub(super) struct Pending {
    pub entries: Vec<PendingGitChange>,
    /// An accept added or replaced an entry: the status holding it must be
    /// written before the Drift says Accepted, or a crash would lose the value.
    pub added: bool,
}

/// Drops the entries the spec has caught up with (`AcceptMerged`) or moved
/// away from (`AcceptSuperseded`); keeps the rest.
pub(super) fn settle_pending(inputs: &Inputs<'_>, tracked: &mut BTreeMap<String, Tracked>, plan: &mut Plan) -> Pending {
    let p = inputs.provisioned;
    // Only entries the controller recorded itself count (see accept::provenance).
    // Restored without its status: the journal kept the overlay accepts not yet in Git.
    let restored = if p.status.is_none() { super::journal::pending_for(p, inputs.journal) } else { Vec::new() };
    if !restored.is_empty() {
        plan.events.push(PlannedEvent {
            regarding: Regarding::Provisioned,
            warning: false,
            reason: "DecisionRestored",
            action: "Accept",
            message: format!(
                "{} accepted value(s) not yet in Git taken back from the decision journal: the status was lost",
                restored.len()
            ),
        });
    }
    let old = if restored.is_empty() { None } else { Some(restored.as_slice()) };
    let old = old.map_or_else(|| crate::accept::provenance::trusted_pending(p), Ok).unwrap_or_else(|why| {
        tracing::warn!(object = %p.name_any(), "{why}");
        let regarding = Regarding::Provisioned;
        plan.events.push(PlannedEvent {
            regarding,
            warning: true,
            reason: "PendingChangesIgnored",
            action: "Accept",
            message: why.to_string(),
        });
        &[]
    });
    let mut entries = Vec::with_capacity(old.len());
    for entry in old {
        let (reason, message) = match accept::settle(entry, &p.spec.desired) {
            Settled::Pending => {
                entries.push(entry.clone());
                continue;
            }
            Settled::Merged => {
                merged(inputs, entry, tracked, plan);
                (
                    "AcceptMerged",
                    format!(
                        "{}: the spec now holds the value {} accepted by {}; nothing is pending for it",
                        entry.field,
                        render_value(&entry.value),
                        entry.accepted_by
                    ),
                )
            }
            Settled::Superseded => (
                "AcceptSuperseded",
                format!(
                    "{}: the spec changed it to {} (it was {}); the value {} accepted by {} no longer applies and the field is compared against the spec",
                    entry.field,
                    p.spec.desired.get(&entry.field).as_ref().map(render_value).unwrap_or_else(|| "<removed>".into()),
                    render_value(&entry.spec_value),
                    render_value(&entry.value),
                    entry.accepted_by
                ),
            ),
        };
        plan.events.push(PlannedEvent {
            regarding: Regarding::ProvisionedAbout(entry.drift.clone()),
            warning: false,
            reason,
            action: "Accept",
            message,
        });
    }
    Pending { entries, added: false }
}

/// The Drift's message follows the merge: it no longer says "failed" or
/// "applies it next", but who brought the value into the spec, and the commit.
fn merged(inputs: &Inputs<'_>, entry: &PendingGitChange, tracked: &mut BTreeMap<String, Tracked>, plan: &mut Plan) {
    let Some(t) = tracked.get_mut(&entry.field).filter(|t| t.name == entry.drift) else { return };
    let manager = super::compare::owner_of(inputs, &entry.field, plan).unwrap_or_else(|| "unknown".into());
    let commit = t.status.git.as_ref().filter(|g| !g.commit.is_empty()).map(|g| format!(", commit {}", g.commit));
    let message = format!(
        "accepted by {} in overlay mode; merged: the spec holds `{}` (applied by field manager {manager}{})",
        entry.accepted_by,
        accept::commit_line(&entry.field, &entry.value),
        commit.unwrap_or_default()
    );
    if t.status.message.as_deref() != Some(message.as_str()) {
        t.status.message = Some(message);
        t.dirty = true;
    }
}

/// The spec with the pending accepted values laid over it: what is compared.
pub(super) fn overlay<'a>(spec: &'a Fields, pending: &Pending) -> Cow<'a, Fields> {
    if pending.entries.is_empty() {
        return Cow::Borrowed(spec);
    }
    let mut desired = spec.clone();
    for entry in &pending.entries {
        desired.insert(entry.field.clone(), entry.value.clone());
    }
    Cow::Owned(desired)
}

/// Everything an accept reads besides the Drift itself.
pub(super) struct AcceptContext<'a, 'i> {
    pub inputs: &'a Inputs<'i>,
    pub live: &'a Result<LiveView<'i>, Absence>,
    pub mode: Result<ModeChoice, accept::UnknownMode>,
}

pub(super) fn accept(
    inputs: &Inputs<'_>,
    settings: &Settings,
    live: &Result<LiveView<'_>, Absence>,
    desired: &mut Cow<'_, Fields>,
    pending: &mut Pending,
    tracked: &mut BTreeMap<String, Tracked>,
    plan: &mut Plan,
) {
    let cx = AcceptContext { inputs, live, mode: accept::choose_mode(inputs.provisioned, &settings.accept) };
    for d in inputs.drifts.iter().filter(|d| d.accept_requested()) {
        let name = d.name_any();
        plan.consume_annotations.push(name.clone());
        let Some(t) = tracked.get_mut(&d.spec.field).filter(|t| t.name == name) else {
            continue;
        };
        if t.status.phase == DriftPhase::Accepted {
            // Also how a restart finishes an accept whose annotation was not yet removed.
            plan.events.push(PlannedEvent {
                regarding: Regarding::Drift(name.clone()),
                warning: false,
                reason: "AcceptIgnored",
                action: "Accept",
                message: format!("Drift {name} is already Accepted; the annotation was removed"),
            });
            continue;
        }
        match (refusal(&cx, &d.spec.field, &t.status), &cx.mode) {
            (Some(message), _) => refuse(t, message, plan),
            (None, Err(problem)) => refuse(t, format!("accept refused: {problem}; nothing changed"), plan),
            (None, Ok(choice)) => {
                let accepted = Accepted { field: &d.spec.field, who: d.accepted_by(), choice };
                match choice.mode {
                    AcceptMode::Overlay => hold(inputs, &accepted, t, desired, pending, plan),
                    _ => adopt(inputs, &accepted, t, desired, plan),
                }
            }
        }
    }
}

/// Why an accept of a drift in `status` cannot be carried out, if it cannot.
fn refusal(cx: &AcceptContext<'_, '_>, field: &str, status: &DriftStatus) -> Option<String> {
    let state = State::of(Some(status));
    if lifecycle::next(state, Trigger::Accept).is_none() {
        return Some(not_acceptable(state, status));
    }
    // An accept again (a retried annotation) has nothing more to check.
    if state == State::Accepted {
        return None;
    }
    let view = match cx.live {
        Ok(view) => view,
        Err(absence) => {
            return Some(format!(
                "accept refused: CloudResource {} offers no live value ({}); nothing changed",
                cx.inputs.provisioned.spec.resource_ref.name,
                absence.describe()
            ));
        }
    };
    let now = view.resolve(field);
    (!observed_equal(&status.actual, &now)).then(|| {
        format!(
            "accept refused: the live value moved from {} to {} since the drift was recorded; nothing changed, check the drift again and re-annotate",
            render_value(&status.actual),
            render_value(&now.to_value())
        )
    })
}

/// Why the lifecycle takes no accept from `state`.
fn not_acceptable(state: State, status: &DriftStatus) -> String {
    match state {
        State::Reverting => "accept refused: a revert of this drift is running (status.revert); nothing changed".into(),
        State::IgnoredByRule => {
            "accept refused: an ignore rule covers this difference, so there is nothing to accept; nothing changed"
                .into()
        }
        _ => {
            let at = status.resolved_time.as_ref().map(|at| format!(" at {}", at.0)).unwrap_or_default();
            format!("accept refused: the drift is {} (the field matched again{at}); nothing changed", status.phase)
        }
    }
}

fn refuse(t: &mut Tracked, message: String, plan: &mut Plan) {
    plan.tally.refused += 1;
    super::refuse(t, message, ("AcceptRefused", "Accept"), plan);
}

/// One accept being carried out.
struct Accepted<'a> {
    field: &'a str,
    who: String,
    choice: &'a ModeChoice,
}

/// Spec mode: the live value becomes `spec.desired.<field>`.
fn adopt(inputs: &Inputs<'_>, a: &Accepted<'_>, t: &mut Tracked, desired: &mut Cow<'_, Fields>, plan: &mut Plan) {
    let value = t.status.actual.clone();
    desired.to_mut().insert(a.field.to_owned(), value.clone());
    plan.adopt.insert(a.field.to_owned(), value.clone());
    let message = format!(
        "accepted by {who} in spec mode ({why}): spec.desired.{field} of CloudProvisioned {owner} is now {shown}; commit `{line}` to Git",
        who = a.who,
        why = a.choice.why,
        field = a.field,
        owner = inputs.provisioned.name_any(),
        shown = render_value(&value),
        line = accept::commit_line(a.field, &value),
    );
    mark_accepted(inputs, a, t, message, plan);
}

/// Overlay mode: the spec stays; the value is held in `status.pendingGitChanges`.
fn hold(
    inputs: &Inputs<'_>,
    a: &Accepted<'_>,
    t: &mut Tracked,
    desired: &mut Cow<'_, Fields>,
    pending: &mut Pending,
    plan: &mut Plan,
) {
    let value = t.status.actual.clone();
    let spec_value = inputs.provisioned.spec.desired.get(a.field).unwrap_or_default();
    desired.to_mut().insert(a.field.to_owned(), value.clone());
    pending.entries.retain(|e| e.field != a.field);
    pending.entries.push(PendingGitChange {
        field: a.field.to_owned(),
        value: value.clone(),
        drift: t.name.clone(),
        accepted_by: a.who.clone(),
        accepted_time: inputs.now.clone(),
        spec_value,
    });
    pending.entries.sort_by(|x, y| x.field.cmp(&y.field));
    pending.added = true;
    let message = format!(
        "accepted by {who} in overlay mode ({why}): spec.desired is unchanged and {field} is compared against {shown} until Git holds it; commit `{line}` to Git",
        who = a.who,
        why = a.choice.why,
        field = a.field,
        shown = render_value(&value),
        line = accept::commit_line(a.field, &value),
    );
    mark_accepted(inputs, a, t, message, plan);
}

fn mark_accepted(inputs: &Inputs<'_>, a: &Accepted<'_>, t: &mut Tracked, message: String, plan: &mut Plan) {
    let shown = render_value(&t.status.actual);
    let Some(moved) = t.enter(Trigger::Accept, inputs.now, Some(message)) else { return };
    t.status.resolved_by = Some(a.who.clone());
    t.status.accept_mode = Some(match a.choice.mode {
        AcceptMode::Overlay => AcceptedInto::Overlay,
        AcceptMode::Spec | AcceptMode::Auto => AcceptedInto::Spec,
    });
    plan.tally.accepted += 1;
    plan.events.push(PlannedEvent {
        regarding: Regarding::ProvisionedAbout(t.name.clone()),
        warning: false,
        reason: moved.event,
        action: "Accept",
        message: format!("{} accepted the live {} {shown} ({} mode)", a.who, a.field, a.choice.mode.as_str()),
    });
}

/// Records on each overlay-accepted Drift what its Git write-back came to,
/// and lists those still to be written back.
pub(super) fn record_write_back(
    inputs: &Inputs<'_>,
    pending: &Pending,
    tracked: &mut BTreeMap<String, Tracked>,
    plan: &mut Plan,
) {
    for entry in &pending.entries {
        let Some(t) = tracked.get_mut(&entry.field).filter(|t| t.name == entry.drift) else { continue };
        // What is on the Drift is final, except a refusal whose cause went
        // away: reconsidered, then replaced by what the new attempt came to,
        // a refusal for another reason included.
        let refused_before = t.status.git.as_ref().and_then(|g| g.refused.as_deref());
        let retried = match inputs.git.get(&t.name) {
            Some(WritebackOutcome::Reconsider | WritebackOutcome::Pushed(_) | WritebackOutcome::Failed { .. }) => true,
            Some(WritebackOutcome::Refused(again)) => again.refused.as_deref() != refused_before,
            _ => false,
        };
        if t.status.phase != DriftPhase::Accepted || (t.status.git.is_some() && !(refused_before.is_some() && retried))
        {
            continue;
        }
        match inputs.git.get(&t.name) {
            None | Some(WritebackOutcome::Reconsider) => plan.write_back.push(t.name.clone()),
            Some(WritebackOutcome::NoOrigin(_) | WritebackOutcome::Superseded) => {}
            Some(WritebackOutcome::Pushed(commit)) => committed(entry, commit, t, plan),
            Some(WritebackOutcome::Refused(refused)) => write_back_refused(entry, refused, t, plan),
            Some(WritebackOutcome::Failed { message, transient }) => {
                write_back_failed(entry, message, *transient, t, plan);
                if *transient {
                    plan.write_back.push(t.name.clone());
                }
            }
        }
    }
}

/// A write-back that will never happen for this accept, recorded in
/// `status.git` so that no restart tries it again.
fn write_back_refused(entry: &PendingGitChange, refused: &GitCommit, t: &mut Tracked, plan: &mut Plan) {
    let why = refused.refused.as_deref().unwrap_or("write-back refused");
    // A Flux variable holds the value: committing the literal would undo the substitution.
    let then = match source::refused_flux_variable(refused) {
        Some(v) => format!("give the variable {} the value {} where it is set", v.name, render_value(&entry.value)),
        None => format!("commit `{}` by hand", accept::commit_line(&entry.field, &entry.value)),
    };
    let message = format!(
        "accepted by {} in overlay mode and held in status.pendingGitChanges; {why}; {then}",
        entry.accepted_by
    );
    t.status.git = Some(refused.clone());
    t.status.message = Some(message.clone());
    t.dirty = true;
    plan.events.push(PlannedEvent {
        regarding: Regarding::Drift(t.name.clone()),
        warning: true,
        reason: "AcceptCommitRefused",
        action: "WriteBack",
        message,
    });
}

fn committed(entry: &PendingGitChange, commit: &GitCommit, t: &mut Tracked, plan: &mut Plan) {
    let line = accept::commit_line(&entry.field, &entry.value);
    let what = if commit.commit.is_empty() {
        format!("Git already holds `{line}` on {} of {}", commit.branch, commit.url)
    } else {
        format!("committed `{line}` to {} of {} as {}", commit.branch, commit.url, commit.commit)
    };
    let message = format!("accepted by {} in overlay mode; {what}; the GitOps tool applies it next", entry.accepted_by);
    t.status.git = Some(commit.clone());
    t.status.message = Some(message.clone());
    t.dirty = true;
    plan.events.push(PlannedEvent {
        regarding: Regarding::Drift(t.name.clone()),
        warning: false,
        reason: "AcceptCommitted",
        action: "WriteBack",
        message,
    });
}

fn write_back_failed(entry: &PendingGitChange, error: &str, transient: bool, t: &mut Tracked, plan: &mut Plan) {
    let then = if transient { "retrying with backoff" } else { "commit it by hand" };
    let message = format!(
        "accepted by {} in overlay mode and held in status.pendingGitChanges; writing `{}` to Git failed: {error}; {then}",
        entry.accepted_by,
        accept::commit_line(&entry.field, &entry.value)
    );
    if t.status.message.as_deref() == Some(message.as_str()) {
        return;
    }
    t.status.message = Some(message.clone());
    t.dirty = true;
    plan.events.push(PlannedEvent {
        regarding: Regarding::Drift(t.name.clone()),
        warning: true,
        reason: "AcceptCommitFailed",
        action: "WriteBack",
        message,
    });
}
