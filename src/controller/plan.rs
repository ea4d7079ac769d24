//! The reconcile decision as a pure function: from one CloudProvisioned, the
//! CloudResource it names and its existing Drifts, work out every write the
//! controller must make. Nothing here does I/O, so each rule of the Drift
//! lifecycle (accept first, then compare, open, update, close, status) is
//! unit-tested without a cluster.

use crate::api::{
    Absence, CloudProvisioned, CloudProvisionedStatus, CloudResource, Drift, DriftEpisode, DriftPhase, DriftStatus,
    Fields,
};
use crate::check::cell;
use crate::detect::{self, LiveView, loosely_equal, observed_equal};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::ResourceExt;
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

pub const CONDITION_IN_SYNC: &str = "InSync";
pub const CONDITION_RESOURCE_FOUND: &str = "ResourceFound";
pub const CONDITION_INVENTORY_FRESH: &str = "InventoryFresh";

#[derive(Clone, Debug)]
pub struct Settings {
    /// Inventory synced longer ago than this is stale: it never closes a drift as Stale.
    pub max_inventory_age: Duration,
    /// How many earlier episodes a Drift keeps in `status.history`.
    pub history_limit: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self { max_inventory_age: Duration::from_secs(3600), history_limit: 10 }
    }
}

pub struct Inputs<'a> {
    pub provisioned: &'a CloudProvisioned,
    pub resource: Option<&'a CloudResource>,
    /// The Drift objects that belong to `provisioned`.
    pub drifts: &'a [&'a Drift],
    pub now: &'a Time,
}

/// Everything one reconcile must write, in the order it must be written.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// Accepted live values to write into the parent's `spec.desired` first.
    pub adopt: Map<String, Value>,
    pub drift_writes: Vec<DriftWrite>,
    /// Drifts whose accept annotation is consumed (after their status is written).
    pub clear_accept: Vec<String>,
    /// The new status of the CloudProvisioned; `None` when it is unchanged.
    pub status: Option<CloudProvisionedStatus>,
    pub events: Vec<Note>,
    pub tally: Tally,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.adopt.is_empty()
            && self.drift_writes.is_empty()
            && self.clear_accept.is_empty()
            && self.status.is_none()
            && self.events.is_empty()
    }
}

/// A Drift to create or update.
#[derive(Debug, PartialEq)]
pub struct DriftWrite {
    pub name: String,
    pub field: String,
    /// The object itself (labels, owner, spec) must be applied: it is new, or its phase label changes.
    pub apply_object: bool,
    pub status: DriftStatus,
}

/// An Event to publish.
#[derive(Debug, PartialEq)]
pub struct Note {
    pub regarding: Regarding,
    pub warning: bool,
    pub reason: &'static str,
    pub action: &'static str,
    pub message: String,
}

#[derive(Debug, PartialEq)]
pub enum Regarding {
    Provisioned,
    Drift(String),
}

/// Counts for the sweep summary of the old design.
#[derive(Debug, Default, PartialEq, Clone, Copy)]
pub struct Tally {
    pub drifted_fields: usize,
    pub new_drifts: usize,
    pub changed: usize,
    pub resolved_stale: usize,
    pub accepted: usize,
    pub refused: usize,
}

/// How far the live state can be trusted.
#[derive(Debug, PartialEq)]
enum Freshness {
    Fresh,
    Stale(String),
}

/// The working state of one field's Drift during planning.
struct Tracked {
    name: String,
    status: DriftStatus,
    apply_object: bool,
    dirty: bool,
}

pub fn plan(inputs: &Inputs<'_>, settings: &Settings) -> Plan {
    let p = inputs.provisioned;
    let mut plan = Plan::default();
    let mut tracked = track(inputs);

    if let Err(problem) = validate(p) {
        plan.status = status_for(inputs, &tracked, Verdict::Invalid(problem), &mut plan.events);
        return plan;
    }

    let resource_name = &p.spec.resource_ref.name;
    let live: Result<LiveView<'_>, Absence> = inputs.resource.ok_or(Absence::NotFound).and_then(|r| r.live());
    // Borrowed unless an accept changes it: most reconciles are quiet resyncs.
    let mut desired = Cow::Borrowed(&p.spec.desired);

    accept(inputs, &live, &mut desired, &mut tracked, &mut plan);

    let freshness = match (&live, inputs.resource) {
        (Ok(_), Some(r)) => freshness(r, inputs.now, settings),
        _ => Freshness::Fresh,
    };
    if let Ok(view) = &live {
        compare(inputs, view, &desired, &freshness, settings, &mut tracked, &mut plan);
    }

    let verdict = match &live {
        Err(absence) => Verdict::Missing(resource_name.clone(), *absence),
        Ok(_) => Verdict::Checked(freshness),
    };
    plan.status = status_for(inputs, &tracked, verdict, &mut plan.events);
    plan.tally.drifted_fields = open_fields(&tracked).len();
    for (field, t) in tracked {
        if t.dirty {
            plan.drift_writes.push(DriftWrite { name: t.name, field, apply_object: t.apply_object, status: t.status });
        }
    }
    plan
}

/// Checks what the schema cannot: the resource reference is a valid object
/// name and every desired key is a usable field name.
pub fn validate(p: &CloudProvisioned) -> Result<(), String> {
    let name = &p.spec.resource_ref.name;
    let dns = name.len() <= 253
        && name.split('.').all(|part| {
            !part.is_empty()
                && part.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !part.starts_with('-')
                && !part.ends_with('-')
        });
    if !dns {
        return Err(format!(
            "spec.resourceRef.name {name:?} is not a valid CloudResource name (lowercase letters, digits, '-' and '.')"
        ));
    }
    if p.spec.desired.is_empty() {
        return Err("spec.desired is empty: name at least one field to check".into());
    }
    if let Some(bad) = p.spec.desired.keys().find(|k| k.trim().is_empty()) {
        return Err(format!("spec.desired has an empty field name {bad:?}"));
    }
    Ok(())
}

fn track(inputs: &Inputs<'_>) -> BTreeMap<String, Tracked> {
    let owner = inputs.provisioned.name_any();
    let mut tracked = BTreeMap::new();
    for d in inputs.drifts {
        let field = d.spec.field.clone();
        // Only the deterministically named object counts for a field; anything else is not ours to manage.
        if d.name_any() != Drift::name_for(&owner, &field) {
            continue;
        }
        // An object without status (a crash between its two writes) is planned as new.
        if let Some(status) = &d.status {
            tracked.insert(
                field,
                Tracked { name: d.name_any(), status: status.clone(), apply_object: false, dirty: false },
            );
        }
    }
    tracked
}

fn accept(
    inputs: &Inputs<'_>,
    live: &Result<LiveView<'_>, Absence>,
    desired: &mut Cow<'_, Fields>,
    tracked: &mut BTreeMap<String, Tracked>,
    plan: &mut Plan,
) {
    let owner = inputs.provisioned.name_any();
    for d in inputs.drifts.iter().filter(|d| d.accept_requested()) {
        let name = d.name_any();
        let field = d.spec.field.clone();
        plan.clear_accept.push(name.clone());
        let Some(t) = tracked.get_mut(&field).filter(|t| t.name == name) else {
            continue;
        };
        let refusal = match t.status.phase {
            DriftPhase::Accepted => {
                // Also how a restart finishes an accept whose annotation was not yet removed.
                plan.events.push(Note {
                    regarding: Regarding::Drift(name.clone()),
                    warning: false,
                    reason: "AcceptIgnored",
                    action: "Accept",
                    message: format!("Drift {name} is already Accepted; the annotation was removed"),
                });
                continue;
            }
            DriftPhase::Stale | DriftPhase::Reverted => Some(format!(
                "accept refused: the drift is {} (the field matched again{}); nothing changed",
                t.status.phase,
                t.status.resolved_time.as_ref().map(|at| format!(" at {}", at.0)).unwrap_or_default()
            )),
            DriftPhase::Open => match live {
                Err(absence) => Some(format!(
                    "accept refused: CloudResource {} offers no live value ({}); nothing changed",
                    inputs.provisioned.spec.resource_ref.name,
                    absence.describe()
                )),
                Ok(view) => {
                    let now = view.resolve(&field);
                    if observed_equal(&t.status.actual, now) {
                        None
                    } else {
                        Some(format!(
                            "accept refused: the live value moved from {} to {} since the drift was recorded; nothing changed, check the drift again and re-annotate",
                            cell(&t.status.actual),
                            cell(&now.to_value())
                        ))
                    }
                }
            },
        };
        match refusal {
            Some(message) => {
                plan.tally.refused += 1;
                if t.status.message.as_ref() != Some(&message) {
                    t.status.message = Some(message.clone());
                    t.dirty = true;
                }
                plan.events.push(Note {
                    regarding: Regarding::Drift(name.clone()),
                    warning: true,
                    reason: "AcceptRefused",
                    action: "Accept",
                    message,
                });
            }
            None => {
                let value = t.status.actual.clone();
                let who = d.accepted_by();
                desired.to_mut().insert(field.clone(), value.clone());
                plan.adopt.insert(field.clone(), value.clone());
                t.status.phase = DriftPhase::Accepted;
                t.status.resolved_time = Some(inputs.now.clone());
                t.status.resolved_by = Some(who.clone());
                t.status.message = Some(format!(
                    "accepted by {who}: spec.desired.{field} of CloudProvisioned {owner} is now {shown}; commit `spec.desired.{field}: {shown}` to Git",
                    shown = cell(&value)
                ));
                t.apply_object = true;
                t.dirty = true;
                plan.tally.accepted += 1;
                plan.events.push(Note {
                    regarding: Regarding::Provisioned,
                    warning: false,
                    reason: "DriftAccepted",
                    action: "Accept",
                    message: format!("{who} accepted the live {field} {}", cell(&value)),
                });
            }
        }
    }
}

fn compare(
    inputs: &Inputs<'_>,
    view: &LiveView<'_>,
    desired: &Fields,
    freshness: &Freshness,
    settings: &Settings,
    tracked: &mut BTreeMap<String, Tracked>,
    plan: &mut Plan,
) {
    let owner = inputs.provisioned.name_any();
    let found = detect::detect(desired, view);
    let drifted: BTreeSet<String> = found.iter().map(|d| d.field.clone()).collect();
    for fd in found {
        let note = |reason, message| Note {
            regarding: Regarding::Provisioned,
            warning: true,
            reason,
            action: "Detect",
            message,
        };
        match tracked.get_mut(&fd.field) {
            Some(t) if t.status.phase == DriftPhase::Open => {
                if !loosely_equal(&t.status.actual, &fd.actual) || !loosely_equal(&t.status.expected, &fd.expected) {
                    plan.events.push(note(
                        "DriftChanged",
                        format!(
                            "{}: expected {}, live value is now {}",
                            fd.field,
                            cell(&fd.expected),
                            cell(&fd.actual)
                        ),
                    ));
                    t.status.actual = fd.actual;
                    t.status.expected = fd.expected;
                    t.dirty = true;
                    plan.tally.changed += 1;
                }
            }
            existing => {
                let mut history = Vec::new();
                if let Some(t) = &existing {
                    history.push(episode(&t.status));
                    history.extend(t.status.history.iter().cloned());
                    history.truncate(settings.history_limit);
                }
                plan.events.push(note(
                    "DriftDetected",
                    format!("{}: expected {}, live value is {}", fd.field, cell(&fd.expected), cell(&fd.actual)),
                ));
                let status = DriftStatus {
                    phase: DriftPhase::Open,
                    expected: fd.expected,
                    actual: fd.actual,
                    detected_time: Some(inputs.now.clone()),
                    history,
                    ..Default::default()
                };
                let name = Drift::name_for(&owner, &fd.field);
                tracked.insert(fd.field, Tracked { name, status, apply_object: true, dirty: true });
                plan.tally.new_drifts += 1;
            }
        }
    }
    for (field, t) in tracked.iter_mut() {
        if t.status.phase != DriftPhase::Open || drifted.contains(field) {
            continue;
        }
        if let Freshness::Stale(_) = freshness {
            continue; // Old inventory cannot prove the field was fixed.
        }
        let why = if desired.contains_key(field) {
            "the live value matches spec.desired again"
        } else {
            "the field is no longer in spec.desired"
        };
        plan.events.push(Note {
            regarding: Regarding::Provisioned,
            warning: false,
            reason: "DriftResolved",
            action: "Detect",
            message: format!("{field}: {why}"),
        });
        t.status.phase = DriftPhase::Stale;
        t.status.resolved_time = Some(inputs.now.clone());
        t.status.message = Some(why.into());
        t.apply_object = true;
        t.dirty = true;
        plan.tally.resolved_stale += 1;
    }
}

fn episode(s: &DriftStatus) -> DriftEpisode {
    DriftEpisode {
        phase: s.phase,
        expected: s.expected.clone(),
        actual: s.actual.clone(),
        detected_time: s.detected_time.clone(),
        resolved_time: s.resolved_time.clone(),
        resolved_by: s.resolved_by.clone(),
    }
}

fn freshness(r: &CloudResource, now: &Time, settings: &Settings) -> Freshness {
    let max = settings.max_inventory_age;
    match r.status.as_ref().and_then(|s| s.synced_time.as_ref()) {
        None => Freshness::Stale("the CloudResource has no status.syncedTime, so its age is unknown".into()),
        Some(synced) => {
            let age = now.0.as_second() - synced.0.as_second();
            if age > max.as_secs() as i64 {
                Freshness::Stale(format!(
                    "the inventory was last synced at {}, more than {}s ago (--max-inventory-age)",
                    synced.0,
                    max.as_secs()
                ))
            } else {
                Freshness::Fresh
            }
        }
    }
}

fn open_fields(tracked: &BTreeMap<String, Tracked>) -> Vec<String> {
    tracked.iter().filter(|(_, t)| t.status.phase == DriftPhase::Open).map(|(f, _)| f.clone()).collect()
}

enum Verdict {
    Invalid(String),
    Missing(String, Absence),
    Checked(Freshness),
}

fn status_for(
    inputs: &Inputs<'_>,
    tracked: &BTreeMap<String, Tracked>,
    verdict: Verdict,
    events: &mut Vec<Note>,
) -> Option<CloudProvisionedStatus> {
    let p = inputs.provisioned;
    let old = p.status.clone().unwrap_or_default();
    let open = open_fields(tracked);
    let resource = &p.spec.resource_ref.name;
    let cond = |type_: &str, status: &str, reason: &str, message: String| Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message,
        observed_generation: p.metadata.generation,
        last_transition_time: old
            .conditions
            .iter()
            .find(|c| c.type_ == type_ && c.status == status)
            .map(|c| c.last_transition_time.clone())
            .unwrap_or_else(|| inputs.now.clone()),
    };
    let drifted = |open: &[String]| {
        if open.is_empty() {
            cond(CONDITION_IN_SYNC, "True", "InSync", format!("all {} desired fields match", p.spec.desired.len()))
        } else {
            cond(CONDITION_IN_SYNC, "False", "Drifted", format!("{} drifted: {}", open.len(), open.join(", ")))
        }
    };
    let conditions = match verdict {
        Verdict::Invalid(problem) => vec![
            cond(CONDITION_IN_SYNC, "Unknown", "InvalidSpec", problem.clone()),
            cond(CONDITION_RESOURCE_FOUND, "Unknown", "InvalidSpec", problem),
        ],
        Verdict::Missing(name, absence) => {
            let reason = match absence {
                Absence::NotFound => "NotFound",
                Absence::GoneFromProvider => "GoneFromProvider",
                Absence::NeverSynced => "NeverSynced",
            };
            let message = format!("CloudResource {name}: {}", absence.describe());
            let was_missing = old.conditions.iter().any(|c| c.type_ == CONDITION_RESOURCE_FOUND && c.status == "False");
            if !was_missing {
                events.push(Note {
                    regarding: Regarding::Provisioned,
                    warning: true,
                    reason: "ResourceMissing",
                    action: "Detect",
                    message: message.clone(),
                });
            }
            vec![
                cond(CONDITION_IN_SYNC, "Unknown", "ResourceMissing", format!("cannot compare: {message}")),
                cond(CONDITION_RESOURCE_FOUND, "False", reason, message),
            ]
        }
        Verdict::Checked(freshness) => {
            let fresh = match freshness {
                Freshness::Fresh => cond(
                    CONDITION_INVENTORY_FRESH,
                    "True",
                    "Fresh",
                    "the live state is recent enough to close drifts".into(),
                ),
                Freshness::Stale(why) => cond(
                    CONDITION_INVENTORY_FRESH,
                    "False",
                    "InventoryStale",
                    format!("{why}; open drifts are not closed as Stale until it is fresh again"),
                ),
            };
            vec![
                drifted(&open),
                cond(CONDITION_RESOURCE_FOUND, "True", "Found", format!("CloudResource {resource} found")),
                fresh,
            ]
        }
    };
    let mut status = CloudProvisionedStatus {
        observed_generation: p.metadata.generation,
        last_checked_time: old.last_checked_time.clone(),
        open_drifts: open.len() as i32,
        drifted_fields: open,
        conditions,
    };
    if p.status.as_ref() == Some(&status) {
        return None;
    }
    status.last_checked_time = Some(inputs.now.clone());
    Some(status)
}

#[cfg(test)]
mod tests;
