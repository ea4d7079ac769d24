//! The compare step of a plan: the desired fields against the live resource,
//! under the object's rules, and what that does to each field's Drift: open,
//! follow, close as Stale, Accepted (a spec change) or Ignored (a rule).

use super::{Freshness, Inputs, Plan, PlannedEvent, Regarding, Settings, Tracked};
use crate::api::lifecycle::{self, State, Trigger};
use crate::api::{
    ANNOTATION_ACCEPT_MODE, AcceptedInto, Drift, DriftEpisode, DriftPhase, DriftStatus, Fields, IgnoredDifference,
    Severity,
};
use crate::detect::{FieldDrift, LiveView, loosely_equal, render_value};
use crate::policy::Effective;
use kube::ResourceExt;
use std::collections::{BTreeMap, BTreeSet};

/// Open Drifts one CloudProvisioned may have: past this a drifted field is
/// named in the InSync condition only, so one object with hundreds of made-up
/// fields cannot flood the namespace with Drifts and Events.
pub const MAX_OPEN_DRIFTS: usize = 32;

/// The fields a comparison left out by rule: field => the rules.
pub(super) type IgnoredFields = BTreeMap<String, Vec<String>>;

#[allow(clippy::too_many_arguments)]
pub(super) fn compare(
    inputs: &Inputs<'_>,
    view: &LiveView<'_>,
    desired: &Fields,
    rules: &Effective<'_>,
    freshness: &Freshness,
    settings: &Settings,
    tracked: &mut BTreeMap<String, Tracked>,
    plan: &mut Plan,
) -> IgnoredFields {
    let crate::policy::Differences { drifted: found, ignored } = crate::policy::differences(desired, view, rules);
    let drifted: BTreeSet<String> = found.iter().map(|d| d.field.clone()).collect();
    for fd in found {
        let warning = rules.severity(&fd.field) != Severity::Info;
        match tracked.get_mut(&fd.field) {
            Some(t) if t.status.phase == DriftPhase::Open => update_open(t, fd, plan),
            Some(t) if t.status.phase == DriftPhase::Snoozed => still_drifts_while_snoozed(inputs, t, fd, plan),
            Some(t) if t.status.phase == DriftPhase::Reverting => {
                super::reverts::still_drifts_while_reverting(inputs, t, fd, plan)
            }
            Some(t) if lived_with(t, &fd) || super::reverts::failure_stands(t, &fd) => {}
            _ => open(inputs, fd, warning, settings, tracked, plan),
        }
    }
    // Old inventory cannot prove a field was fixed.
    if *freshness == Freshness::Fresh {
        close_ignored(inputs, &ignored, rules, tracked, plan);
        close_fixed(inputs, desired, &drifted, &ignored, tracked, plan);
    }
    ignored
}

/// A person chose to live with this live value (`arcadia.cloud/ignore`): a
/// new live value reopens the drift, the same one does not.
fn lived_with(t: &Tracked, fd: &FieldDrift) -> bool {
    t.status.phase == DriftPhase::Ignored && t.status.ignored.is_empty() && loosely_equal(&t.status.actual, &fd.actual)
}

/// A snoozed drift follows the live value quietly, and opens again once the snooze ends.
fn still_drifts_while_snoozed(inputs: &Inputs<'_>, t: &mut Tracked, fd: FieldDrift, plan: &mut Plan) {
    let ended = t.status.snoozed_until.as_ref().is_none_or(|until| inputs.now.0 >= until.0);
    if let Some(moved) = ended.then(|| t.enter(Trigger::SnoozeEnded, inputs.now, None)).flatten() {
        plan.events.push(PlannedEvent {
            regarding: Regarding::Drift(t.name.clone()),
            warning: true,
            reason: moved.event,
            action: "Detect",
            message: format!(
                "{}: the snooze ended and it still drifts (live value {})",
                fd.field,
                render_value(&fd.actual)
            ),
        });
        t.status.snoozed_until = None;
    }
    t.follow(&fd);
}

/// Drifts whose field an ignore rule now covers close as Ignored, naming the rule.
fn close_ignored(
    inputs: &Inputs<'_>,
    ignored: &IgnoredFields,
    rules: &Effective<'_>,
    tracked: &mut BTreeMap<String, Tracked>,
    plan: &mut Plan,
) {
    for (field, ids) in ignored {
        let Some(t) = tracked.get_mut(field) else { continue };
        let named: Vec<String> = ids.iter().map(|id| describe_rule(id, rules)).collect();
        let message = format!("Ignored by {}", named.join("; "));
        let event = format!("{field}: {message}");
        let Some(moved) = t.enter(Trigger::RuleIgnores, inputs.now, Some(message)) else { continue };
        plan.events.push(PlannedEvent {
            regarding: Regarding::Drift(t.name.clone()),
            warning: false,
            reason: moved.event,
            action: "Detect",
            message: event,
        });
        t.status.ignored =
            ids.iter().map(|rule| IgnoredDifference { rule: rule.clone(), field: field.clone() }).collect();
    }
}

/// `policy <name> (<reason>)` or `spec.ignore[i] (<reason>)`.
fn describe_rule(id: &str, rules: &Effective<'_>) -> String {
    let reason = rules.reason(id).unwrap_or_default();
    match id.strip_prefix("DriftPolicy/").and_then(|rest| rest.split_once('/')) {
        Some((policy, _)) => format!("policy {policy} ({reason})"),
        None => format!("{id} ({reason})"),
    }
}

pub(super) fn detect_event(reason: &'static str, message: String) -> PlannedEvent {
    PlannedEvent { regarding: Regarding::Provisioned, warning: true, reason, action: "Detect", message }
}

/// A detection Event about one field, related to its Drift.
fn field_event(reason: &'static str, drift: &str, message: String) -> PlannedEvent {
    PlannedEvent {
        regarding: Regarding::ProvisionedAbout(drift.to_owned()),
        warning: true,
        reason,
        action: "Detect",
        message,
    }
}

/// An Open drift still drifts: follow the live (or desired) value when it moved.
fn update_open(t: &mut Tracked, fd: FieldDrift, plan: &mut Plan) {
    let Some(still) = lifecycle::next(t.state(), Trigger::StillDrifts) else { return };
    if !t.follow(&fd) {
        return;
    }
    plan.events.push(field_event(
        still.event,
        &t.name,
        format!(
            "{}: expected {}, live value is now {}",
            fd.field,
            render_value(&fd.expected),
            render_value(&fd.actual)
        ),
    ));
    plan.tally.changed += 1;
}

/// A new episode: the field's earlier one, if any, moves to the history.
fn open(
    inputs: &Inputs<'_>,
    fd: FieldDrift,
    warning: bool,
    settings: &Settings,
    tracked: &mut BTreeMap<String, Tracked>,
    plan: &mut Plan,
) {
    let state = tracked.get(&fd.field).map_or(State::New, Tracked::state);
    let Some(moved) = lifecycle::next(state, Trigger::Drifts) else { return };
    let open_now = tracked.values().filter(|t| t.status.phase == DriftPhase::Open).count();
    if open_now >= MAX_OPEN_DRIFTS {
        plan.unrecorded.push(fd.field);
        return;
    }
    let mut history = Vec::new();
    if let Some(t) = tracked.get(&fd.field) {
        report_taken_back(inputs, &fd.field, t, plan);
        history.push(episode(&t.status));
        history.extend(t.status.history.iter().cloned());
        history.truncate(settings.history_limit);
    }
    let name = Drift::name_for(&inputs.provisioned.name_any(), &fd.field);
    if !tracked.contains_key(&fd.field) && restore_kept(inputs, &fd, &name, tracked, plan) {
        return;
    }
    let mut detected = field_event(
        moved.event,
        &name,
        format!("{}: expected {}, live value is {}", fd.field, render_value(&fd.expected), render_value(&fd.actual)),
    );
    detected.warning = warning;
    plan.events.push(detected);
    let status = DriftStatus {
        phase: moved.to.phase().unwrap_or_default(),
        expected: fd.expected,
        actual: fd.actual,
        detected_time: Some(inputs.now.clone()),
        history,
        ..Default::default()
    };
    let severity = tracked.get(&fd.field).and_then(|t| t.severity.clone());
    tracked.insert(fd.field, Tracked { name, status, apply_object: true, dirty: true, severity });
    plan.tally.new_drifts += 1;
}

/// A field drifts and has no Drift: after a restore that dropped the status,
/// an ignore or snooze the journal kept for it comes back with it, instead of
/// a new Open episode.
fn restore_kept(
    inputs: &Inputs<'_>,
    fd: &FieldDrift,
    name: &str,
    tracked: &mut BTreeMap<String, Tracked>,
    plan: &mut Plan,
) -> bool {
    let Some(entry) = super::journal::about(inputs.provisioned, &fd.field, inputs.journal) else { return false };
    let Some((phase, mut status)) = super::journal::restored(entry, &fd.actual, inputs.now) else { return false };
    let on = if phase == DriftPhase::Snoozed { Trigger::RestoredSnooze } else { Trigger::RestoredIgnore };
    let Some(moved) = lifecycle::next(State::New, on) else { return false };
    status.expected = fd.expected.clone();
    status.detected_time = status.detected_time.or_else(|| Some(inputs.now.clone()));
    plan.events.push(field_event(
        moved.event,
        name,
        format!("{}: {phase} again, as decided before the object lost its status (decision journal)", fd.field),
    ));
    let t = Tracked { name: name.to_owned(), status, apply_object: true, dirty: true, severity: None };
    tracked.insert(fd.field.clone(), t);
    true
}

/// The manager that owns `spec.desired.<field>`, when the reconciler has
/// fetched the owners; otherwise asks for them.
pub(super) fn owner_of(inputs: &Inputs<'_>, field: &str, plan: &mut Plan) -> Option<String> {
    match inputs.field_owners {
        Some(owners) => owners.get(field).cloned(),
        None => {
            plan.needs_field_owners = true;
            None
        }
    }
}

/// A value accepted in spec mode that another field manager (a GitOps sync)
/// has put back: said once, as the field drifts again. The controller never
/// writes the field back.
fn report_taken_back(inputs: &Inputs<'_>, field: &str, t: &Tracked, plan: &mut Plan) {
    let s = &t.status;
    let spec = inputs.provisioned.spec.desired.get(field);
    let taken_back = s.phase == DriftPhase::Accepted
        && s.accept_mode == Some(AcceptedInto::Spec)
        && spec.as_ref().is_some_and(|v| !loosely_equal(v, &s.actual));
    if !taken_back {
        return;
    }
    let manager = owner_of(inputs, field, plan).unwrap_or_else(|| "another field manager".into());
    plan.events.push(PlannedEvent {
        regarding: Regarding::Drift(t.name.clone()),
        warning: true,
        reason: "AcceptReverted",
        action: "Accept",
        message: format!(
            "{field}: the value {} accepted by {} was taken back by {manager}, which set {}; the controller does not fight for the field. Annotate the CloudProvisioned {ANNOTATION_ACCEPT_MODE}=overlay so that accepts survive GitOps syncs",
            render_value(&s.actual),
            s.resolved_by.as_deref().unwrap_or("unknown"),
            spec.as_ref().map(render_value).unwrap_or_default(),
        ),
    });
}

/// Open drifts whose field no longer drifts close: as Accepted when the
/// spec moved to the live value (an accept made in Git), else as Stale (the
/// live value came back, or the field left the spec).
fn close_fixed(
    inputs: &Inputs<'_>,
    desired: &Fields,
    drifted: &BTreeSet<String>,
    ignored: &IgnoredFields,
    tracked: &mut BTreeMap<String, Tracked>,
    plan: &mut Plan,
) {
    for (field, t) in tracked.iter_mut() {
        let active = lifecycle::next(t.state(), Trigger::InSync).is_some();
        if !active || drifted.contains(field) || ignored.contains_key(field) {
            continue;
        }
        if t.status.phase == DriftPhase::Reverting && super::reverts::in_sync_while_reverting(inputs, field, t, plan) {
            continue;
        }
        match desired.get(field) {
            Some(now) if !loosely_equal(&now, &t.status.expected) => accepted_in_git(inputs, field, t, plan),
            Some(_) => close_stale(inputs, field, t, "the live value matches spec.desired again", plan),
            None => close_stale(inputs, field, t, "the field is no longer in spec.desired", plan),
        }
    }
}

fn close_stale(inputs: &Inputs<'_>, field: &str, t: &mut Tracked, why: &str, plan: &mut Plan) {
    let Some(moved) = t.enter(Trigger::InSync, inputs.now, Some(why.into())) else { return };
    plan.events.push(PlannedEvent {
        regarding: Regarding::ProvisionedAbout(t.name.clone()),
        warning: false,
        reason: moved.event,
        action: "Detect",
        message: format!("{field}: {why}"),
    });
    plan.tally.resolved_stale += 1;
}

/// The spec now asks for the live value: the Git-native way to accept.
fn accepted_in_git(inputs: &Inputs<'_>, field: &str, t: &mut Tracked, plan: &mut Plan) {
    let who = owner_of(inputs, field, plan).unwrap_or_else(|| "unknown".into());
    let generation = inputs.provisioned.metadata.generation.unwrap_or_default();
    let message = format!("accepted by a spec change at generation {generation}");
    let event = format!("{field}: {message} (field manager {who}), to {}", render_value(&t.status.actual));
    let Some(moved) = t.enter(Trigger::SpecMovedToLive, inputs.now, Some(message)) else { return };
    plan.events.push(PlannedEvent {
        regarding: Regarding::ProvisionedAbout(t.name.clone()),
        warning: false,
        reason: moved.event,
        action: "Accept",
        message: event,
    });
    // A field manager is a name anyone may pick (`--field-manager`): never recorded as a person.
    t.status.resolved_by = Some(format!("spec change by field manager {who}"));
    plan.tally.accepted += 1;
}

pub(super) fn episode(s: &DriftStatus) -> DriftEpisode {
    DriftEpisode {
        phase: s.phase,
        expected: s.expected.clone(),
        actual: s.actual.clone(),
        detected_time: s.detected_time.clone(),
        resolved_time: s.resolved_time.clone(),
        resolved_by: s.resolved_by.clone(),
    }
}
