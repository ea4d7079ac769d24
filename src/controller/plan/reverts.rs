//! The revert step of a plan: the preview on every Open drift
//! (`status.revertPlan` and its digest), the approvals
//! (`arcadia.cloud/revert=<digest>`), and what the saga's record
//! (`status.revert`, written by the reverter) means for the drift's phase.
//! The saga itself runs in the inventory's reverter, which derives the plan
//! again and checks the approval itself: nothing here is its authority.

use super::{Inputs, Plan, PlannedEvent, Regarding, Settings, Tracked};
use crate::api::lifecycle::Trigger;
use crate::api::{ANNOTATION_REVERT, ANNOTATION_REVERT_ALLOW_DOWNTIME, DriftPhase, Fields, SagaState};
use crate::detect::{FieldDrift, loosely_equal, render_value};
use crate::policy::Effective;
use crate::providers::contract::Planner;
use crate::revert::{self, Approval, Claim, Preview, approval::refusal};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use std::collections::BTreeMap;

/// The planner of the resource's provider, when a registered one mirrors it.
fn planner_of(inputs: &Inputs<'_>) -> Option<&'static dyn Planner> {
    inputs.resource.and_then(|r| crate::providers::planner(&r.spec.provider).ok())
}

/// How messages name the provider that reverts.
fn provider_shown(inputs: &Inputs<'_>) -> &'static str {
    planner_of(inputs).map_or("the provider", |p| p.display())
}

/// What reverting one field would take: its preview, or why it cannot be reverted.
fn preview_of(
    inputs: &Inputs<'_>,
    field: &str,
    desired: &Fields,
    rules: &Effective<'_>,
) -> Result<Preview, revert::NotRevertible> {
    let name = &inputs.provisioned.spec.resource_ref.name;
    revert::derive(inputs.resource, name, field, desired, &rules.field(field))
}

/// The other CloudProvisioneds naming the same resource that want another value for `field`.
pub(super) fn conflicts_for(inputs: &Inputs<'_>, field: &str, desired: &Fields, claim: Claim) -> Vec<String> {
    let Some(own) = desired.get(field) else { return Vec::new() };
    let own_ns = inputs.provisioned.namespace().unwrap_or_default();
    let owned = revert::Owned::of(inputs.resource);
    let peers = inputs.peers.iter().filter_map(|p| {
        let shown = revert::peer_shown(&own_ns, &p.namespace().unwrap_or_default(), &p.name_any(), claim, owned)?;
        Some((shown, p.spec.desired.get(field)?))
    });
    revert::conflicts(&own, peers)
}

/// Carries out or refuses each revert approval; runs before the previews are
/// refreshed, so an approval is judged against the plan its author saw.
pub(super) fn approve(
    inputs: &Inputs<'_>,
    (settings, stale_inventory): (&Settings, Option<&str>),
    desired: &Fields,
    rules: &Effective<'_>,
    tracked: &mut BTreeMap<String, Tracked>,
    plan: &mut Plan,
) {
    let namespace = inputs.provisioned.namespace().unwrap_or_default();
    for d in inputs.drifts.iter().filter(|d| d.annotations().contains_key(ANNOTATION_REVERT)) {
        let name = d.name_any();
        let field = d.spec.field.as_str();
        let consume = |plan: &mut Plan| {
            if !plan.consume_annotations.contains(&name) {
                plan.consume_annotations.push(name.clone());
            }
        };
        let Some(t) = tracked.get_mut(field).filter(|t| t.name == name) else {
            consume(plan);
            continue;
        };
        // Approved: the reverter checks its saga against the approval itself, so it stays until the saga ends.
        if t.status.phase == DriftPhase::Reverting {
            if revert::current_record(&t.status).is_some_and(|r| r.state != SagaState::Running) {
                consume(plan);
            }
            continue;
        }
        let current = preview_of(inputs, field, desired, rules);
        let conflicts = conflicts_for(inputs, field, desired, settings.revert.claim);
        let approval = Approval {
            value: &d.annotations()[ANNOTATION_REVERT],
            namespace: &namespace,
            field,
            state: t.state(),
            allow_downtime: d
                .annotations()
                .get(ANNOTATION_REVERT_ALLOW_DOWNTIME)
                .is_some_and(|v| v.eq_ignore_ascii_case("true")),
            shown: &t.status.revert_plan,
            current: current.as_ref(),
            resource: revert::Owned::of(inputs.resource),
            conflicts: &conflicts,
            stale_inventory,
        };
        match (refusal(&approval, &settings.revert), current) {
            (Some(message), _) => {
                consume(plan);
                super::refuse(t, message, ("RevertRefused", "Revert"), plan);
            }
            (None, Ok(approved)) => start(t, &approved, (d.reverted_by(), inputs.now), plan),
            (None, Err(_)) => {}
        }
    }
}

/// The approved plan is the drift's plan while it is reverted (the previews
/// are refreshed only for Open and RevertFailed drifts).
fn start(t: &mut Tracked, approved: &Preview, (who, now): (String, &Time), plan: &mut Plan) {
    let calls: Vec<String> = approved.calls.iter().map(|c| c.description.clone()).collect();
    let message = format!("revert approved by {who}: {}; the saga's steps are in status.revert", calls.join(", then "));
    if !enter(t, (Trigger::Revert, now), false, message, plan) {
        return;
    }
    t.status.revert_plan = approved.calls.clone();
    t.status.revert_plan_digest = Some(revert::digest(&approved.calls));
    // A record of an earlier approval (this drift failed before) is not this saga's.
    t.status.revert_approved_time = Some(now.clone());
    t.status.resolved_by = Some(who);
    t.status.resolved_time = None;
}

/// The drift moves on `on` to a revert phase, saying so in its status and an
/// Event; false (and nothing changed) when the lifecycle has no such move.
fn enter(t: &mut Tracked, (on, now): (Trigger, &Time), warning: bool, message: String, plan: &mut Plan) -> bool {
    let Some(moved) = t.enter(on, now, Some(message.clone())) else { return false };
    let regarding = Regarding::Drift(t.name.clone());
    plan.events.push(PlannedEvent { regarding, warning, reason: moved.event, action: "Revert", message });
    true
}

/// Every Open (or RevertFailed) drift shows what a revert would do; only
/// when reverting is on, since a preview of what cannot run is noise.
pub(super) fn refresh_previews(
    inputs: &Inputs<'_>,
    settings: &Settings,
    desired: &Fields,
    rules: &Effective<'_>,
    tracked: &mut BTreeMap<String, Tracked>,
) {
    if !settings.revert.enabled {
        return;
    }
    for (field, t) in tracked.iter_mut() {
        if !matches!(t.status.phase, DriftPhase::Open | DriftPhase::RevertFailed) {
            continue;
        }
        let (calls, note) = match preview_of(inputs, field, desired, rules) {
            Ok(p) if p.downtime => {
                let digest = revert::digest(&p.calls);
                (
                    p.calls,
                    Some(format!(
                        "this revert powers the resource off while it runs: approve it with {ANNOTATION_REVERT}={digest} and {ANNOTATION_REVERT_ALLOW_DOWNTIME}=true"
                    )),
                )
            }
            Ok(p) => (p.calls, None),
            Err(why) => (Vec::new(), Some(why.to_string())),
        };
        let digest = (!calls.is_empty()).then(|| revert::digest(&calls));
        if t.status.revert_plan != calls || t.status.revert_note != note || t.status.revert_plan_digest != digest {
            t.status.revert_plan = calls;
            t.status.revert_note = note;
            t.status.revert_plan_digest = digest;
            t.dirty = true;
        }
    }
}

/// A Reverting drift whose field still drifts: it follows the live value, and
/// fails when the saga failed, or succeeded yet left the value drifted.
pub(super) fn still_drifts_while_reverting(inputs: &Inputs<'_>, t: &mut Tracked, fd: FieldDrift, plan: &mut Plan) {
    t.follow(&fd);
    let synced = inputs.resource.and_then(|r| r.status.as_ref()).and_then(|s| s.synced_time.as_ref());
    let failure = match revert::current_record(&t.status) {
        Some(r) if r.state == SagaState::Failed => r.message.clone().unwrap_or_else(|| "the saga failed".into()),
        Some(r)
            if r.state == SagaState::Succeeded
                && synced.zip(r.finished_time.as_ref()).is_some_and(|(s, f)| s.0 > f.0) =>
        {
            format!(
                "{} finished every step, yet the live value read since is still {}",
                provider_shown(inputs),
                render_value(&fd.actual)
            )
        }
        _ => return,
    };
    fail(t, (Trigger::RevertFailed, inputs.now), failure, plan);
}

/// With reverting turned off (no `--enable-revert`, or no token), no
/// reverter will ever end a pending saga: it fails now, saying where it stopped.
pub(super) fn end_without_reverter(
    inputs: &Inputs<'_>,
    settings: &Settings,
    tracked: &mut BTreeMap<String, Tracked>,
    plan: &mut Plan,
) {
    if settings.revert.enabled {
        return;
    }
    for t in tracked.values_mut().filter(|t| t.status.phase == DriftPhase::Reverting) {
        let record = revert::current_record(&t.status);
        if record.is_some_and(|r| r.state != SagaState::Running) {
            continue;
        }
        // Without the resource (gone, not mirrored yet) any provider that would say so.
        let left_off = record.is_some_and(|r| match planner_of(inputs) {
            Some(p) => revert::saga::may_be_left_off(r, p),
            None => crate::providers::planners().any(|p| revert::saga::may_be_left_off(r, p)),
        });
        let state = if left_off {
            "; the saga had stopped the resource: it may be left powered off, check it and power it on"
        } else {
            ""
        };
        let why = format!(
            "reverting is turned off (the controller runs without --enable-revert or without {}'s credentials), so nothing more is sent; status.revert shows where the saga stopped{state}",
            provider_shown(inputs)
        );
        fail(t, (Trigger::RevertingTurnedOff, inputs.now), why, plan);
        // The approval is spent: left on, it would be refused on the next reconcile, hiding why the saga ended.
        if !plan.consume_annotations.contains(&t.name) {
            plan.consume_annotations.push(t.name.clone());
        }
    }
}

/// The revert failed, for the reason `on` says (unless the compensation failed too).
fn fail(t: &mut Tracked, (on, now): (Trigger, &Time), why: String, plan: &mut Plan) {
    let on = match revert::current_record(&t.status) {
        Some(r) if revert::saga::compensation_failed(r) => Trigger::CompensationFailed,
        _ => on,
    };
    enter(t, (on, now), true, format!("revert failed: {why}"), plan);
}

/// A failed revert stands while the live value is the one it left.
pub(super) fn failure_stands(t: &Tracked, fd: &FieldDrift) -> bool {
    t.status.phase == DriftPhase::RevertFailed && loosely_equal(&t.status.actual, &fd.actual)
}

/// A Reverting drift whose field matches again: Reverted once the saga
/// succeeded; while it runs, wait; a failed saga whose field matched anyway is Stale.
pub(super) fn in_sync_while_reverting(inputs: &Inputs<'_>, field: &str, t: &mut Tracked, plan: &mut Plan) -> bool {
    match revert::current_record(&t.status).map(|r| r.state) {
        Some(SagaState::Succeeded) => {
            let who = t.status.resolved_by.clone().unwrap_or_else(|| "unknown".into());
            let message = format!(
                "reverted to {} through {} (approved by {who})",
                render_value(&t.status.expected),
                provider_shown(inputs)
            );
            let event = format!("{field}: {message}");
            if let Some(moved) = t.enter(Trigger::RevertSucceeded, inputs.now, Some(message)) {
                let regarding = Regarding::Drift(t.name.clone());
                let reason = moved.event;
                plan.events.push(PlannedEvent { regarding, warning: false, reason, action: "Revert", message: event });
                t.status.resolved_by = Some(who);
            }
            true
        }
        Some(SagaState::Failed) => false,
        _ => true,
    }
}
