//! The reconcile decision as a pure function: from one CloudProvisioned, the
//! CloudResource it names and its existing Drifts, work out every write the
//! controller must make. Nothing here does I/O, so each rule of the Drift
//! lifecycle (its moves and their order are the table of [`crate::api::lifecycle`]) is
//! unit-tested without a cluster.

use crate::accept::AcceptSettings;
use crate::api::lifecycle::{self, State, Step, Transition, Trigger};
use crate::api::{
    Absence, CloudProvisioned, CloudProvisionedStatus, CloudResource, Drift, DriftPhase, DriftPolicy, DriftStatus,
    IgnoredDifference, LABEL_SEVERITY,
};
use crate::detect::LiveView;
use crate::policy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use serde_json::{Map, Value};
use status::{StatusBasis, WritebackOutcome, status_for};
use std::collections::BTreeMap;
use std::time::Duration;

pub const CONDITION_IN_SYNC: &str = "InSync";
/// kstatus' summary condition: resource found, inventory fresh, in sync.
pub const CONDITION_READY: &str = "Ready";
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
    /// `--enable-revert` and `--revert-claim`.
    pub revert: crate::revert::RevertSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            max_inventory_age: Duration::from_secs(3600),
            history_limit: 10,
            accept: AcceptSettings::default(),
            revert: Default::default(),
        }
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
    pub git: &'a BTreeMap<String, crate::writeback::WritebackOutcome>,
    /// DriftPolicies that may select the object (its namespace's and the cluster-wide ones).
    pub policies: &'a [std::sync::Arc<DriftPolicy>],
    /// The other CloudProvisioneds that name the same CloudResource.
    pub peers: &'a [std::sync::Arc<CloudProvisioned>],
    /// The decision journal's entries for the object's namespace (see [`journal`]).
    pub journal: &'a BTreeMap<String, journal::Entry>,
}

/// The operator annotations a plan removes once it carried them out or refused them.
pub const CONSUMED: [&str; 8] = [
    crate::api::ANNOTATION_ACCEPT,
    crate::api::ANNOTATION_ACCEPTED_BY,
    crate::api::ANNOTATION_SNOOZE_UNTIL,
    crate::api::ANNOTATION_IGNORE,
    crate::api::ANNOTATION_IGNORE_REASON,
    crate::api::ANNOTATION_REVERT,
    crate::api::ANNOTATION_REVERTED_BY,
    crate::api::ANNOTATION_REVERT_ALLOW_DOWNTIME,
];

/// Everything one reconcile must write, in the order it must be written.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// Accepted live values to write into the parent's `spec.desired` first.
    pub adopt: Map<String, Value>,
    pub drift_writes: Vec<DriftWrite>,
    /// Drifts whose operator annotations (accept, snooze, ignore) are consumed,
    /// after their status is written.
    pub consume_annotations: Vec<String>,
    /// The new status of the CloudProvisioned; `None` when it is unchanged.
    pub status: Option<CloudProvisionedStatus>,
    /// The status holds a new overlay value and must be written before the Drifts.
    pub status_first: bool,
    pub events: Vec<PlannedEvent>,
    pub tally: Tally,
    /// A message named a field's manager without knowing it: plan again with
    /// [`Inputs::field_owners`].
    pub needs_field_owners: bool,
    /// Drifts whose overlay accept is not in Git yet and has no outcome: write them back.
    pub write_back: Vec<String>,
    /// Drifted fields past [`compare::MAX_OPEN_DRIFTS`]: no Drift, named in the InSync condition.
    pub unrecorded: Vec<String>,
    /// Actor annotations set without their decision, to remove: (Drift, keys).
    pub stray_actors: Vec<(String, Vec<&'static str>)>,
    /// Decision journal entries to write (`None` removes one), after the rest.
    pub journal: BTreeMap<String, Option<journal::Entry>>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.adopt.is_empty()
            && self.drift_writes.is_empty()
            && self.consume_annotations.is_empty()
            && self.status.is_none()
            && self.events.is_empty()
            && self.stray_actors.is_empty()
            && self.journal.is_empty()
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
    /// The `arcadia.cloud/severity` label.
    pub severity: &'static str,
}

/// A Kubernetes Event to publish.
#[derive(Debug, PartialEq)]
pub struct PlannedEvent {
    pub regarding: Regarding,
    pub warning: bool,
    pub reason: &'static str,
    pub action: &'static str,
    pub message: String,
}

#[derive(Debug, PartialEq)]
pub enum Regarding {
    Provisioned,
    /// The CloudProvisioned, about one field: the field's Drift is the
    /// Event's related object, which also keeps Events of the same reason for
    /// different fields apart (kube's recorder merges Events by reason, regarding and related).
    ProvisionedAbout(String),
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
    /// The object's `arcadia.cloud/severity` label as it stands.
    severity: Option<String>,
}

pub fn plan(inputs: &Inputs<'_>, settings: &Settings) -> Plan {
    let p = inputs.provisioned;
    let mut plan = Plan::default();
    let mut tracked = track(inputs);
    let rules = policy::effective(p, inputs.resource, inputs.policies);

    if let Err(problem) = p.spec.validate() {
        let old = p.status.clone().unwrap_or_default();
        let basis = StatusBasis {
            pending: &old.pending_git_changes,
            policies: &rules.policies,
            ignored: &[],
            conflicts: &[],
            unrecorded: &[],
        };
        plan.status = status_for(inputs, &tracked, &basis, WritebackOutcome::Invalid(problem), &mut plan.events);
        return plan;
    }

    let live: Result<LiveView<'_>, Absence> = inputs.resource.ok_or(Absence::NotFound).and_then(|r| r.live());
    let mut pending = accepts::settle_pending(inputs, &mut tracked, &mut plan);
    // Borrowed unless an overlay or an accept changes it: most reconciles are quiet resyncs.
    let mut desired = accepts::overlay(&p.spec.desired, &pending);
    let freshness = match (&live, inputs.resource) {
        (Ok(_), Some(r)) => freshness(r, inputs.now, settings),
        _ => Freshness::Fresh,
    };
    let stale = match &freshness {
        Freshness::Stale(why) => Some(why.as_str()),
        Freshness::Fresh => None,
    };
    let mut ignored = Default::default();
    // The lifecycle decides the order: decisions first, each Drift taking at most one, then the comparison.
    for step in lifecycle::STEPS {
        match step {
            Step::Accept => {
                accepts::accept(inputs, settings, &live, &mut desired, &mut pending, &mut tracked, &mut plan)
            }
            Step::Annotate => annotations::apply(inputs, &mut tracked, &mut plan),
            Step::Revert => {
                reverts::approve(inputs, (settings, stale), &desired, &rules, &mut tracked, &mut plan);
                reverts::end_without_reverter(inputs, settings, &mut tracked, &mut plan);
            }
            Step::Compare => {
                if let Ok(view) = &live {
                    let f = &freshness;
                    ignored = compare::compare(inputs, view, &desired, &rules, f, settings, &mut tracked, &mut plan);
                }
            }
        }
    }

    reverts::refresh_previews(inputs, settings, &desired, &rules, &mut tracked);
    let conflicts = desired_conflicts(inputs, &desired, settings.revert.claim);
    let outcome = match &live {
        Err(absence) => WritebackOutcome::Missing(p.spec.resource_ref.name.clone(), *absence),
        Ok(_) => WritebackOutcome::Checked(freshness),
    };
    accepts::record_write_back(inputs, &pending, &mut tracked, &mut plan);
    let ignored: Vec<IgnoredDifference> = ignored
        .into_iter()
        .flat_map(|(field, ids)| ids.into_iter().map(move |rule| IgnoredDifference { rule, field: field.clone() }))
        .collect();
    let basis = StatusBasis {
        pending: &pending.entries,
        policies: &rules.policies,
        ignored: &ignored,
        conflicts: &conflicts,
        unrecorded: &plan.unrecorded,
    };
    plan.status = status_for(inputs, &tracked, &basis, outcome, &mut plan.events);
    plan.status_first = pending.added;
    plan.journal = kept_decisions(inputs, &tracked, &pending.entries);
    plan.tally.drifted_fields = open_fields(&tracked).len();
    finish(tracked, &rules, &mut plan);
    plan
}

/// The journal entries that change: the decisions that must outlive the status.
fn kept_decisions(
    inputs: &Inputs<'_>,
    tracked: &BTreeMap<String, Tracked>,
    pending: &[crate::api::PendingGitChange],
) -> BTreeMap<String, Option<journal::Entry>> {
    let drifts = tracked.iter().map(|(field, t)| (field.as_str(), &t.status));
    let mut wanted = journal::wanted(inputs.provisioned, drifts, pending, inputs.journal, inputs.now);
    wanted.retain(|k, v| inputs.journal.get(k) != v.as_ref());
    wanted
}

/// Every Drift that changed, or whose severity label is not the policy's, is written.
fn finish(tracked: BTreeMap<String, Tracked>, rules: &policy::Effective<'_>, plan: &mut Plan) {
    for (field, mut t) in tracked {
        let severity = rules.severity(&field).as_str();
        if t.severity.as_deref() != Some(severity) {
            t.apply_object = true;
            t.dirty = true;
        }
        if t.dirty {
            let (name, apply_object, status) = (t.name, t.apply_object, t.status);
            plan.drift_writes.push(DriftWrite { name, field, apply_object, status, severity });
        }
    }
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
            let severity = d.labels().get(LABEL_SEVERITY).cloned();
            tracked.insert(
                field,
                Tracked { name: d.name_any(), status: status.clone(), apply_object: false, dirty: false, severity },
            );
        }
    }
    tracked
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

impl Tracked {
    /// The drift takes the field's current expected and live values; false
    /// when they are the ones it holds already.
    fn follow(&mut self, fd: &crate::detect::FieldDrift) -> bool {
        let s = &mut self.status;
        if crate::detect::loosely_equal(&s.actual, &fd.actual)
            && crate::detect::loosely_equal(&s.expected, &fd.expected)
        {
            return false;
        }
        s.actual = fd.actual.clone();
        s.expected = fd.expected.clone();
        self.dirty = true;
        true
    }

    fn state(&self) -> State {
        State::of(Some(&self.status))
    }

    /// The drift moves on `on`, saying `message`, if the lifecycle allows it
    /// from where it stands (`None`: it does not, and nothing changed). Its
    /// labels change with its phase, so the object is applied too.
    fn enter(&mut self, on: Trigger, now: &Time, message: Option<String>) -> Option<&'static Transition> {
        let t = lifecycle::next(self.state(), on)?;
        if let Some(phase) = t.to.phase() {
            self.status.phase = phase;
        }
        if t.ends_episode {
            self.status.resolved_time = Some(now.clone());
            self.status.snoozed_until = None;
        }
        self.status.message = message;
        self.apply_object = true;
        self.dirty = true;
        Some(t)
    }
}

/// A refused operator annotation: the Drift says why (once), with a Warning
/// Event of this `(reason, action)`; nothing else changes.
fn refuse(t: &mut Tracked, message: String, (reason, action): (&'static str, &'static str), plan: &mut Plan) {
    if t.status.message.as_ref() != Some(&message) {
        t.status.message = Some(message.clone());
        t.dirty = true;
    }
    plan.events.push(PlannedEvent {
        regarding: Regarding::Drift(t.name.clone()),
        warning: true,
        reason,
        action,
        message,
    });
}

/// The fields that drift now: Open, or being (or failed to be) reverted.
fn open_fields(tracked: &BTreeMap<String, Tracked>) -> Vec<String> {
    let drifting =
        |t: &Tracked| matches!(t.status.phase, DriftPhase::Open | DriftPhase::Reverting | DriftPhase::RevertFailed);
    tracked.iter().filter(|(_, t)| drifting(t)).map(|(f, _)| f.clone()).collect()
}

/// `<field>: <namespace/name>, ...` for each desired field another
/// CloudProvisioned of the same resource wants a different value for (only
/// those that count under the claim rule, see [`revert::peer_shown`]).
fn desired_conflicts(inputs: &Inputs<'_>, desired: &crate::api::Fields, claim: crate::revert::Claim) -> Vec<String> {
    if inputs.peers.is_empty() {
        return Vec::new();
    }
    desired
        .iter()
        .map(|(field, _)| (field, reverts::conflicts_for(inputs, field, desired, claim)))
        .filter(|(_, peers)| !peers.is_empty())
        .map(|(field, peers)| format!("{field}: {}", peers.join(", ")))
        .collect()
}

mod accepts;
mod annotations;
mod compare;
pub mod journal;
mod reverts;
mod status;
#[cfg(test)]
mod tests;
