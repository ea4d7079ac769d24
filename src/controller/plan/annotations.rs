//! The snooze and ignore annotations an operator sets on a Drift:
//! `arcadia.cloud/snooze-until=<RFC 3339 time>` puts an Open drift off until
//! then (phase Snoozed); `arcadia.cloud/ignore=true` with
//! `arcadia.cloud/ignore-reason` lives with the current live value (phase
//! Ignored). Each is consumed once carried out or refused; a refusal changes
//! nothing and says why.

use super::{Inputs, Plan, PlannedEvent, Regarding, Tracked};
use crate::api::lifecycle::Trigger;
use crate::api::{
    ANNOTATION_ACCEPT, ANNOTATION_ACCEPTED_BY, ANNOTATION_IGNORE, ANNOTATION_IGNORE_REASON, ANNOTATION_REVERT,
    ANNOTATION_REVERTED_BY, ANNOTATION_SNOOZE_UNTIL, Drift,
};
use crate::detect::render_value;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use std::collections::BTreeMap;

pub(super) fn apply(inputs: &Inputs<'_>, tracked: &mut BTreeMap<String, Tracked>, plan: &mut Plan) {
    remove_stray_actors(inputs, plan);
    for d in inputs.drifts {
        let (snooze, ignore) = (d.annotations().get(ANNOTATION_SNOOZE_UNTIL), d.annotations().get(ANNOTATION_IGNORE));
        if snooze.is_none() && ignore.is_none() {
            continue;
        }
        let name = d.name_any();
        if !plan.consume_annotations.contains(&name) {
            plan.consume_annotations.push(name.clone());
        }
        let Some(t) = tracked.get_mut(&d.spec.field).filter(|t| t.name == name) else { continue };
        let outcome = match (snooze, ignore) {
            (Some(until), _) => snooze_drift(inputs, until, t),
            (None, Some(value)) => ignore_drift(d, (value, inputs.now), t),
            (None, None) => continue,
        };
        match outcome {
            Ok(event) => plan.events.push(event),
            Err(message) => super::refuse(t, message, ("AnnotationRefused", "Annotate"), plan),
        }
    }
}

/// An actor is recorded only with the decision it makes: `accepted-by`
/// without `accept` (or `reverted-by` without `revert`) was planted to be
/// credited with someone else's later decision, so it is removed, loudly.
fn remove_stray_actors(inputs: &Inputs<'_>, plan: &mut Plan) {
    const PAIRS: [(&str, &str); 2] =
        [(ANNOTATION_ACCEPTED_BY, ANNOTATION_ACCEPT), (ANNOTATION_REVERTED_BY, ANNOTATION_REVERT)];
    for d in inputs.drifts {
        let name = d.name_any();
        if plan.consume_annotations.contains(&name) {
            continue;
        }
        let a = d.annotations();
        let strays: Vec<&'static str> = PAIRS
            .iter()
            .filter(|(actor, decision)| a.contains_key(*actor) && !a.contains_key(*decision))
            .map(|p| p.0)
            .collect();
        if strays.is_empty() {
            continue;
        }
        plan.events.push(PlannedEvent {
            regarding: Regarding::Drift(name.clone()),
            warning: true,
            reason: "ActorRemoved",
            action: "Annotate",
            message: format!(
                "{} set without the decision it records: removed, so that it is never credited with a later decision",
                strays.join(" and ")
            ),
        });
        plan.stray_actors.push((name, strays));
    }
}

fn snooze_drift(inputs: &Inputs<'_>, until: &str, t: &mut Tracked) -> Result<PlannedEvent, String> {
    let refused = |why: String| format!("snooze refused: {why}; nothing changed");
    let at: k8s_openapi::jiff::Timestamp = until.trim().parse().map_err(|_| {
        refused(format!("{ANNOTATION_SNOOZE_UNTIL} {until:?} is not an RFC 3339 time such as 2026-12-01T09:00:00Z"))
    })?;
    if at <= inputs.now.0 {
        return Err(refused(format!("{ANNOTATION_SNOOZE_UNTIL} {until} is not in the future")));
    }
    let phase = t.status.phase;
    let message = format!("snoozed until {at}; Open again then if it still drifts");
    let Some(moved) = t.enter(Trigger::Snooze, inputs.now, Some(message)) else {
        return Err(refused(format!("the drift is {phase}, not Open")));
    };
    t.status.snoozed_until = Some(Time(at));
    Ok(PlannedEvent {
        regarding: Regarding::Drift(t.name.clone()),
        warning: false,
        reason: moved.event,
        action: "Snooze",
        message: format!("snoozed until {at}"),
    })
}

fn ignore_drift(d: &Drift, (value, now): (&str, &Time), t: &mut Tracked) -> Result<PlannedEvent, String> {
    let refused = |why: String| format!("ignore refused: {why}; nothing changed");
    if !value.eq_ignore_ascii_case("true") {
        return Err(refused(format!("{ANNOTATION_IGNORE} must be \"true\", not {value:?}")));
    }
    let reason = d.annotations().get(ANNOTATION_IGNORE_REASON).map(|r| r.trim()).filter(|r| !r.is_empty());
    let reason =
        reason.ok_or_else(|| refused(format!("{ANNOTATION_IGNORE_REASON} is required: say why this drift is fine")))?;
    let phase = t.status.phase;
    let message = format!("ignored: {reason} (for as long as the live value stays {})", render_value(&t.status.actual));
    let Some(moved) = t.enter(Trigger::Ignore, now, Some(message.clone())) else {
        return Err(refused(format!("the drift is {phase}, not Open")));
    };
    t.status.snoozed_until = None;
    t.status.ignored.clear();
    Ok(PlannedEvent {
        regarding: Regarding::Drift(t.name.clone()),
        warning: false,
        reason: moved.event,
        action: "Ignore",
        message,
    })
}
