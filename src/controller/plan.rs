//! The reconcile decision as a pure function: from one CloudProvisioned, the
//! CloudResource it names and its existing Drifts, work out every write the
//! controller must make. Nothing here does I/O, so each rule of the Drift
//! lifecycle (accept first, then compare, open, update, close, status) is
//! unit-tested without a cluster.

use crate::accept::AcceptSettings;
use crate::api::{
    ANNOTATION_ACCEPT_MODE, Absence, AcceptMode, CloudProvisioned, CloudProvisionedStatus, CloudResource, Drift,
    DriftEpisode, DriftPhase, DriftStatus, Fields,
};
use crate::detect::{self, FieldDrift, LiveView, loosely_equal, render_value};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use serde_json::{Map, Value};
use status::{Outcome, status_for};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

pub const CONDITION_IN_SYNC: &str = "InSync";
pub const CONDITION_RESOURCE_FOUND: &str = "ResourceFound";
pub const CONDITION_INVENTORY_FRESH: &str = "InventoryFresh";
pub const CONDITION_GIT_IN_SYNC: &str = "GitInSync";

#[derive(Clone, Debug)]
pub struct Settings {
    /// Inventory synced longer ago than this is stale: it never closes a drift as Stale.
    pub max_inventory_age: Duration,
    /// How many earlier episodes a Drift keeps in `status.history`.
    pub history_limit: usize,
    pub accept: AcceptSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self { max_inventory_age: Duration::from_secs(3600), history_limit: 10, accept: AcceptSettings::default() }
    }
}

pub struct Inputs<'a> {
    pub provisioned: &'a CloudProvisioned,
    pub resource: Option<&'a CloudResource>,
    /// The Drift objects that belong to `provisioned`.
    pub drifts: &'a [&'a Drift],
    pub now: &'a Time,
    /// Who owns each `spec.desired` key (from full managedFields), when the
    /// reconciler fetched them because a previous plan asked ([`Plan::needs_field_owners`]).
    pub field_owners: Option<&'a BTreeMap<String, String>>,
    /// Git write-back outcomes of overlay accepts, by Drift name.
    pub git: &'a BTreeMap<String, crate::writeback::Outcome>,
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
    /// The status holds a new overlay value and must be written before the Drifts.
    pub status_first: bool,
    pub events: Vec<Event>,
    pub tally: Tally,
    /// A message named a field's manager without knowing it: plan again with
    /// [`Inputs::field_owners`].
    pub needs_field_owners: bool,
    /// Drifts whose overlay accept is not in Git yet and has no outcome: write them back.
    pub write_back: Vec<String>,
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
        let pending = p.status.as_ref().map(|s| s.pending_git_changes.clone()).unwrap_or_default();
        plan.status = status_for(inputs, &tracked, &pending, Outcome::Invalid(problem), &mut plan.events);
        return plan;
    }

    let live: Result<LiveView<'_>, Absence> = inputs.resource.ok_or(Absence::NotFound).and_then(|r| r.live());
    let mut pending = accepts::settle_pending(inputs, &mut plan);
    // Borrowed unless an overlay or an accept changes it: most reconciles are quiet resyncs.
    let mut desired = accepts::overlay(&p.spec.desired, &pending);
    accepts::accept(inputs, settings, &live, &mut desired, &mut pending, &mut tracked, &mut plan);

    let freshness = match (&live, inputs.resource) {
        (Ok(_), Some(r)) => freshness(r, inputs.now, settings),
        _ => Freshness::Fresh,
    };
    if let Ok(view) = &live {
        compare(inputs, view, &desired, &freshness, settings, &mut tracked, &mut plan);
    }

    let outcome = match &live {
        Err(absence) => Outcome::Missing(p.spec.resource_ref.name.clone(), *absence),
        Ok(_) => Outcome::Checked(freshness),
    };
    accepts::record_write_back(inputs, &pending, &mut tracked, &mut plan);
    plan.status = status_for(inputs, &tracked, &pending.entries, outcome, &mut plan.events);
    plan.status_first = pending.added;
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
        report_taken_back(inputs, &fd.field, t, plan);
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

/// The manager that owns `spec.desired.<field>`, when the reconciler has
/// fetched the owners; otherwise asks for them.
fn owner_of(inputs: &Inputs<'_>, field: &str, plan: &mut Plan) -> Option<String> {
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
        && s.accept_mode.as_deref() == Some(AcceptMode::Spec.as_str())
        && spec.is_some_and(|v| !loosely_equal(v, &s.actual));
    if !taken_back {
        return;
    }
    let manager = owner_of(inputs, field, plan).unwrap_or_else(|| "another field manager".into());
    plan.events.push(Event {
        regarding: Regarding::Drift(t.name.clone()),
        warning: true,
        reason: "AcceptReverted",
        action: "Accept",
        message: format!(
            "{field}: the value {} accepted by {} was taken back by {manager}, which set {}; the controller does not fight for the field. Annotate the CloudProvisioned {ANNOTATION_ACCEPT_MODE}=overlay so that accepts survive GitOps syncs",
            render_value(&s.actual),
            s.resolved_by.as_deref().unwrap_or("unknown"),
            spec.map(render_value).unwrap_or_default(),
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
    tracked: &mut BTreeMap<String, Tracked>,
    plan: &mut Plan,
) {
    for (field, t) in tracked.iter_mut() {
        if t.status.phase != DriftPhase::Open || drifted.contains(field) {
            continue;
        }
        match desired.get(field) {
            Some(now) if !loosely_equal(now, &t.status.expected) => accepted_in_git(inputs, field, t, plan),
            Some(_) => close_stale(inputs, field, t, "the live value matches spec.desired again", plan),
            None => close_stale(inputs, field, t, "the field is no longer in spec.desired", plan),
        }
    }
}

fn close_stale(inputs: &Inputs<'_>, field: &str, t: &mut Tracked, why: &str, plan: &mut Plan) {
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

/// The spec now asks for the live value: the Git-native way to accept.
fn accepted_in_git(inputs: &Inputs<'_>, field: &str, t: &mut Tracked, plan: &mut Plan) {
    let who = owner_of(inputs, field, plan).unwrap_or_else(|| "unknown".into());
    let generation = inputs.provisioned.metadata.generation.unwrap_or_default();
    let message = format!("accepted by a spec change at generation {generation}");
    plan.events.push(Event {
        regarding: Regarding::Provisioned,
        warning: false,
        reason: "DriftAccepted",
        action: "Accept",
        message: format!("{field}: {message} (field manager {who}), to {}", render_value(&t.status.actual)),
    });
    t.status.phase = DriftPhase::Accepted;
    t.status.resolved_time = Some(inputs.now.clone());
    t.status.resolved_by = Some(who);
    t.status.message = Some(message);
    t.apply_object = true;
    t.dirty = true;
    plan.tally.accepted += 1;
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

mod accepts;
mod status;
#[cfg(test)]
mod tests;
