//! The reconcile decision as a pure function: from one CloudProvisioned, the
//! CloudResource it names and its existing Drifts, work out every write the
//! controller must make. Nothing here does I/O, so each rule of the Drift
//! lifecycle (accept first, then compare, open, update, close, status) is
//! unit-tested without a cluster.

use crate::api::SpecProblem;
use crate::api::{
    Absence, CloudProvisioned, CloudProvisionedStatus, CloudResource, Drift, DriftEpisode, DriftPhase, DriftStatus,
    Fields,
};
use crate::detect::{self, FieldDrift, LiveView, loosely_equal, observed_equal, render_value};
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
    pub events: Vec<Event>,
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

/// A Kubernetes Event to publish.
#[derive(Debug, PartialEq)]
pub struct Event {
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

/// What one reconcile did, for the sweep summary's counters.
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

    if let Err(problem) = p.spec.validate() {
        plan.status = status_for(inputs, &tracked, Outcome::Invalid(problem), &mut plan.events);
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

    let outcome = match &live {
        Err(absence) => Outcome::Missing(resource_name.clone(), *absence),
        Ok(_) => Outcome::Checked(freshness),
    };
    plan.status = status_for(inputs, &tracked, outcome, &mut plan.events);
    plan.tally.drifted_fields = open_fields(&tracked).len();
    for (field, t) in tracked {
        if t.dirty {
            plan.drift_writes.push(DriftWrite { name: t.name, field, apply_object: t.apply_object, status: t.status });
        }
    }
    plan
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
    for d in inputs.drifts.iter().filter(|d| d.accept_requested()) {
        let name = d.name_any();
        plan.clear_accept.push(name.clone());
        let Some(t) = tracked.get_mut(&d.spec.field).filter(|t| t.name == name) else {
            continue;
        };
        if t.status.phase == DriftPhase::Accepted {
            // Also how a restart finishes an accept whose annotation was not yet removed.
            plan.events.push(Event {
                regarding: Regarding::Drift(name.clone()),
                warning: false,
                reason: "AcceptIgnored",
                action: "Accept",
                message: format!("Drift {name} is already Accepted; the annotation was removed"),
            });
            continue;
        }
        match accept_refusal(inputs, live, &d.spec.field, &t.status) {
            Some(message) => refuse_accept(t, message, plan),
            None => adopt(inputs, &d.spec.field, d.accepted_by(), t, desired, plan),
        }
    }
}

/// Why an accept of a drift in `status` cannot be carried out, if it cannot.
fn accept_refusal(
    inputs: &Inputs<'_>,
    live: &Result<LiveView<'_>, Absence>,
    field: &str,
    status: &DriftStatus,
) -> Option<String> {
    match status.phase {
        DriftPhase::Open => {}
        DriftPhase::Accepted => return None,
        DriftPhase::Stale | DriftPhase::Reverted => {
            let at = status.resolved_time.as_ref().map(|at| format!(" at {}", at.0)).unwrap_or_default();
            return Some(format!(
                "accept refused: the drift is {} (the field matched again{at}); nothing changed",
                status.phase
            ));
        }
    }
    let view = match live {
        Ok(view) => view,
        Err(absence) => {
            return Some(format!(
                "accept refused: CloudResource {} offers no live value ({}); nothing changed",
                inputs.provisioned.spec.resource_ref.name,
                absence.describe()
            ));
        }
    };
    let now = view.resolve(field);
    (!observed_equal(&status.actual, now)).then(|| {
        format!(
            "accept refused: the live value moved from {} to {} since the drift was recorded; nothing changed, check the drift again and re-annotate",
            render_value(&status.actual),
            render_value(&now.to_value())
        )
    })
}

fn refuse_accept(t: &mut Tracked, message: String, plan: &mut Plan) {
    plan.tally.refused += 1;
    if t.status.message.as_ref() != Some(&message) {
        t.status.message = Some(message.clone());
        t.dirty = true;
    }
    plan.events.push(Event {
        regarding: Regarding::Drift(t.name.clone()),
        warning: true,
        reason: "AcceptRefused",
        action: "Accept",
        message,
    });
}

/// Adopts the drift's live value as the desired one.
fn adopt(
    inputs: &Inputs<'_>,
    field: &str,
    who: String,
    t: &mut Tracked,
    desired: &mut Cow<'_, Fields>,
    plan: &mut Plan,
) {
    let owner = inputs.provisioned.name_any();
    let value = t.status.actual.clone();
    let shown = render_value(&value);
    desired.to_mut().insert(field.to_owned(), value.clone());
    plan.adopt.insert(field.to_owned(), value);
    t.status.phase = DriftPhase::Accepted;
    t.status.resolved_time = Some(inputs.now.clone());
    t.status.resolved_by = Some(who.clone());
    t.status.message = Some(format!(
        "accepted by {who}: spec.desired.{field} of CloudProvisioned {owner} is now {shown}; commit `spec.desired.{field}: {shown}` to Git"
    ));
    t.apply_object = true;
    t.dirty = true;
    plan.tally.accepted += 1;
    plan.events.push(Event {
        regarding: Regarding::Provisioned,
        warning: false,
        reason: "DriftAccepted",
        action: "Accept",
        message: format!("{who} accepted the live {field} {shown}"),
    });
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
    let found = detect::detect(desired, view);
    let drifted: BTreeSet<String> = found.iter().map(|d| d.field.clone()).collect();
    for fd in found {
        match tracked.get_mut(&fd.field) {
            Some(t) if t.status.phase == DriftPhase::Open => update_open(t, fd, plan),
            _ => open(inputs, fd, settings, tracked, plan),
        }
    }
    // Old inventory cannot prove a field was fixed.
    if *freshness == Freshness::Fresh {
        close_fixed(inputs, desired, &drifted, tracked, plan);
    }
}

fn detect_event(reason: &'static str, message: String) -> Event {
    Event { regarding: Regarding::Provisioned, warning: true, reason, action: "Detect", message }
}

/// An Open drift still drifts: follow the live (or desired) value when it moved.
fn update_open(t: &mut Tracked, fd: FieldDrift, plan: &mut Plan) {
    if loosely_equal(&t.status.actual, &fd.actual) && loosely_equal(&t.status.expected, &fd.expected) {
        return;
    }
    plan.events.push(detect_event(
        "DriftChanged",
        format!(
            "{}: expected {}, live value is now {}",
            fd.field,
            render_value(&fd.expected),
            render_value(&fd.actual)
        ),
    ));
    t.status.actual = fd.actual;
    t.status.expected = fd.expected;
    t.dirty = true;
    plan.tally.changed += 1;
}

/// A new episode: the field's earlier one, if any, moves to the history.
fn open(
    inputs: &Inputs<'_>,
    fd: FieldDrift,
    settings: &Settings,
    tracked: &mut BTreeMap<String, Tracked>,
    plan: &mut Plan,
) {
    let mut history = Vec::new();
    if let Some(t) = tracked.get(&fd.field) {
        history.push(episode(&t.status));
        history.extend(t.status.history.iter().cloned());
        history.truncate(settings.history_limit);
    }
    plan.events.push(detect_event(
        "DriftDetected",
        format!("{}: expected {}, live value is {}", fd.field, render_value(&fd.expected), render_value(&fd.actual)),
    ));
    let status = DriftStatus {
        phase: DriftPhase::Open,
        expected: fd.expected,
        actual: fd.actual,
        detected_time: Some(inputs.now.clone()),
        history,
        ..Default::default()
    };
    let name = Drift::name_for(&inputs.provisioned.name_any(), &fd.field);
    tracked.insert(fd.field, Tracked { name, status, apply_object: true, dirty: true });
    plan.tally.new_drifts += 1;
}

/// Open drifts whose field no longer drifts close as Stale.
fn close_fixed(
    inputs: &Inputs<'_>,
    desired: &Fields,
    drifted: &BTreeSet<String>,
    tracked: &mut BTreeMap<String, Tracked>,
    plan: &mut Plan,
) {
    for (field, t) in tracked.iter_mut() {
        if t.status.phase != DriftPhase::Open || drifted.contains(field) {
            continue;
        }
        let why = if desired.contains_key(field) {
            "the live value matches spec.desired again"
        } else {
            "the field is no longer in spec.desired"
        };
        plan.events.push(Event {
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

/// What a reconcile could establish, which the status reports.
enum Outcome {
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
    fn make(&self, type_: &str, status: &str, reason: &str, message: String) -> Condition {
        Condition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            message,
            observed_generation: self.p.metadata.generation,
            last_transition_time: self
                .old
                .iter()
                .find(|c| c.type_ == type_ && c.status == status)
                .map(|c| c.last_transition_time.clone())
                .unwrap_or_else(|| self.now.clone()),
        }
    }

    fn in_sync(&self, open: &[String]) -> Condition {
        if open.is_empty() {
            let message = format!("all {} desired fields match", self.p.spec.desired.len());
            self.make(CONDITION_IN_SYNC, "True", "InSync", message)
        } else {
            self.make(CONDITION_IN_SYNC, "False", "Drifted", format!("{} drifted: {}", open.len(), open.join(", ")))
        }
    }

    fn fresh(&self, freshness: Freshness) -> Condition {
        match freshness {
            Freshness::Fresh => self.make(
                CONDITION_INVENTORY_FRESH,
                "True",
                "Fresh",
                "the live state is recent enough to close drifts".into(),
            ),
            Freshness::Stale(why) => self.make(
                CONDITION_INVENTORY_FRESH,
                "False",
                "InventoryStale",
                format!("{why}; open drifts are not closed as Stale until it is fresh again"),
            ),
        }
    }

    fn missing(&self, name: &str, absence: Absence) -> Vec<Condition> {
        let reason = match absence {
            Absence::NotFound => "NotFound",
            Absence::GoneFromProvider => "GoneFromProvider",
            Absence::NeverSynced => "NeverSynced",
        };
        let message = missing_message(name, absence);
        vec![
            self.make(CONDITION_IN_SYNC, "Unknown", "ResourceMissing", format!("cannot compare: {message}")),
            self.make(CONDITION_RESOURCE_FOUND, "False", reason, message),
        ]
    }
}

fn missing_message(name: &str, absence: Absence) -> String {
    format!("CloudResource {name}: {}", absence.describe())
}

fn status_for(
    inputs: &Inputs<'_>,
    tracked: &BTreeMap<String, Tracked>,
    outcome: Outcome,
    events: &mut Vec<Event>,
) -> Option<CloudProvisionedStatus> {
    let p = inputs.provisioned;
    let old = p.status.clone().unwrap_or_default();
    let open = open_fields(tracked);
    let c = Conditions { p, old: &old.conditions, now: inputs.now };
    let conditions = match outcome {
        Outcome::Invalid(problem) => vec![
            c.make(CONDITION_IN_SYNC, "Unknown", "InvalidSpec", problem.to_string()),
            c.make(CONDITION_RESOURCE_FOUND, "Unknown", "InvalidSpec", problem.to_string()),
        ],
        Outcome::Missing(name, absence) => {
            let was_missing = old.conditions.iter().any(|c| c.type_ == CONDITION_RESOURCE_FOUND && c.status == "False");
            if !was_missing {
                events.push(detect_event("ResourceMissing", missing_message(&name, absence)));
            }
            c.missing(&name, absence)
        }
        Outcome::Checked(freshness) => {
            let found = format!("CloudResource {} found", p.spec.resource_ref.name);
            vec![c.in_sync(&open), c.make(CONDITION_RESOURCE_FOUND, "True", "Found", found), c.fresh(freshness)]
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
