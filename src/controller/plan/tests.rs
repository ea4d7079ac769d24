use super::*;
use crate::api::DriftPolicy;
use crate::api::{
    ANNOTATION_ACCEPT, ANNOTATION_ACCEPT_MODE, ANNOTATION_ACCEPTED_BY, CloudProvisionedSpec, CloudResourceSpec,
    CloudResourceStatus, DriftSpec, Fields, ProvisionedRef, ResourceRef,
};
use crate::providers::contract::Handle;
use crate::providers::digitalocean::PLANNER as DO;
use crate::writeback::WritebackOutcome as GitOutcome;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};
use std::sync::Arc;

const RESOURCE: &str = "digitalocean-droplet-1";

fn at(second: i64) -> Time {
    Time(Timestamp::from_second(1_800_000_000 + second).unwrap())
}

fn provisioned(desired: Value) -> CloudProvisioned {
    let mut p = CloudProvisioned::new(
        "web-1",
        CloudProvisionedSpec {
            resource_ref: ResourceRef { name: RESOURCE.into() },
            desired: Fields::try_from(desired).unwrap(),
            ..Default::default()
        },
    );
    p.metadata.namespace = Some("ns".into());
    p.metadata.generation = Some(1);
    p
}

fn resource(size: &str, synced: Time) -> CloudResource {
    let mut r = CloudResource::new(
        RESOURCE,
        CloudResourceSpec { provider: "digitalocean".into(), type_: "droplet".into(), id: "1".into(), region: None },
    );
    r.status = Some(CloudResourceStatus {
        region: Some("nyc3".into()),
        size_slug: Some(size.into()),
        tags: Some(vec!["web".into(), "prod".into()]),
        synced_time: Some(synced),
        ..Default::default()
    });
    r
}

/// What the cluster holds after a plan is written: the Drift objects and the parent.
fn written(p: &CloudProvisioned, before: &[Drift], plan: &Plan) -> (CloudProvisioned, Vec<Drift>) {
    let mut drifts: BTreeMap<String, Drift> = before.iter().map(|d| (d.name_any(), d.clone())).collect();
    for w in &plan.drift_writes {
        let d = drifts.entry(w.name.clone()).or_insert_with(|| {
            Drift::new(
                &w.name,
                DriftSpec {
                    provisioned_ref: ProvisionedRef { name: p.name_any() },
                    resource_ref: p.spec.resource_ref.clone(),
                    field: w.field.clone(),
                },
            )
        });
        d.status = Some(w.status.clone());
        d.labels_mut().insert(crate::api::LABEL_SEVERITY.into(), w.severity.into());
    }
    for name in &plan.consume_annotations {
        if let Some(a) = drifts.get_mut(name).and_then(|d| d.metadata.annotations.as_mut()) {
            for key in CONSUMED {
                a.remove(key);
            }
        }
    }
    let mut p = p.clone();
    // The controller's status apply owns what it wrote (see accept::provenance).
    let managed = p.metadata.managed_fields.get_or_insert_with(Vec::new);
    if !managed.iter().any(crate::accept::provenance::owns_pending) {
        managed.push(k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry {
            manager: Some(crate::api::FIELD_MANAGER.into()),
            subresource: Some("status".into()),
            fields_v1: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::FieldsV1(
                json!({"f:status": {"f:pendingGitChanges": {}}}),
            )),
            ..Default::default()
        });
    }
    if !plan.adopt.is_empty() {
        p.spec.desired.extend(plan.adopt.clone());
        p.metadata.generation = p.metadata.generation.map(|g| g + 1);
    }
    if let Some(s) = &plan.status {
        p.status = Some(s.clone());
    }
    (p, drifts.into_values().collect())
}

fn run(p: &CloudProvisioned, r: Option<&CloudResource>, drifts: &[Drift], now: Time) -> Plan {
    let refs: Vec<&Drift> = drifts.iter().collect();
    plan(
        &Inputs {
            provisioned: p,
            resource: r,
            drifts: &refs,
            now: &now,
            field_owners: None,
            git: &BTreeMap::new(),
            policies: &[],
            peers: &[],
            journal: &BTreeMap::new(),
        },
        &Settings::default(),
    )
}

fn reasons(plan: &Plan) -> Vec<&'static str> {
    plan.events.iter().map(|e| e.reason).collect()
}

fn condition<'a>(s: &'a CloudProvisionedStatus, type_: &str) -> &'a Condition {
    s.conditions.iter().find(|c| c.type_ == type_).unwrap()
}

fn annotate(d: &mut Drift, by: Option<&str>) {
    let a = d.metadata.annotations.get_or_insert_with(Default::default);
    a.insert(ANNOTATION_ACCEPT.into(), "true".into());
    if let Some(by) = by {
        a.insert(ANNOTATION_ACCEPTED_BY.into(), by.into());
    }
}

/// The smoke test of the whole lifecycle, step by step: one drift, accept, in sync.
#[test]
fn detect_accept_and_settle() {
    let p = provisioned(json!({"size_slug": "s-1vcpu-1gb", "region": "nyc3"}));
    let r = resource("s-2vcpu-4gb", at(0));

    let first = run(&p, Some(&r), &[], at(10));
    assert_eq!(first.drift_writes.len(), 1);
    let w = &first.drift_writes[0];
    assert_eq!((w.field.as_str(), w.apply_object), ("size_slug", true));
    assert_eq!(w.name, Drift::name_for("web-1", "size_slug"));
    assert_eq!(
        (w.status.phase, &w.status.expected, &w.status.actual),
        (DriftPhase::Open, &json!("s-1vcpu-1gb"), &json!("s-2vcpu-4gb"))
    );
    assert_eq!(reasons(&first), ["DriftDetected"]);
    let status = first.status.as_ref().unwrap();
    assert_eq!((status.open_drifts, status.drifted_fields.clone()), (1, vec!["size_slug".to_string()]));
    assert_eq!(condition(status, CONDITION_IN_SYNC).status, "False");
    assert_eq!(condition(status, CONDITION_RESOURCE_FOUND).status, "True");

    let (p, mut drifts) = written(&p, &[], &first);
    assert!(run(&p, Some(&r), &drifts, at(20)).is_empty(), "nothing new: nothing to write, no events");

    annotate(&mut drifts[0], Some("alice"));
    let accept = run(&p, Some(&r), &drifts, at(30));
    assert_eq!(Value::Object(accept.adopt.clone()), json!({"size_slug": "s-2vcpu-4gb"}));
    let w = &accept.drift_writes[0];
    assert_eq!(w.status.phase, DriftPhase::Accepted);
    assert_eq!(w.status.resolved_by.as_deref(), Some("alice"));
    assert_eq!(w.status.resolved_time, Some(at(30)));
    assert!(w.status.message.as_ref().unwrap().contains("commit `spec.desired.size_slug: s-2vcpu-4gb` to Git"));
    assert_eq!(accept.consume_annotations, vec![w.name.clone()]);
    assert_eq!(reasons(&accept), ["DriftAccepted"]);
    assert_eq!(accept.status.as_ref().unwrap().open_drifts, 0);

    let (p, drifts) = written(&p, &drifts, &accept);
    assert_eq!(p.metadata.generation, Some(2));
    let after = run(&p, Some(&r), &drifts, at(40));
    assert!(after.drift_writes.is_empty() && after.events.is_empty(), "{after:?}");
    let status = after.status.expect("observedGeneration moves to 2");
    assert_eq!(status.observed_generation, Some(2));
    assert_eq!(condition(&status, CONDITION_IN_SYNC).status, "True");
}

#[test]
fn an_accept_cut_short_after_the_spec_write_still_ends_accepted() {
    // The parent already holds the live value (the adopt was written), the drift is still Open and annotated.
    let p = provisioned(json!({"size_slug": "s-1vcpu-1gb"}));
    let r = resource("s-2vcpu-4gb", at(0));
    let (_, mut drifts) = written(&p, &[], &run(&p, Some(&r), &[], at(1)));
    annotate(&mut drifts[0], None);
    let adopted = provisioned(json!({"size_slug": "s-2vcpu-4gb"}));
    let plan = run(&adopted, Some(&r), &drifts, at(5));
    assert_eq!(plan.drift_writes[0].status.phase, DriftPhase::Accepted, "never Stale");
    assert_eq!(plan.drift_writes[0].status.resolved_by.as_deref(), Some("unknown"));
    assert_eq!(plan.tally.resolved_stale, 0);

    // Cut short after the drift status write: only the annotation is left to remove.
    let (_, drifts) = written(&adopted, &drifts, &Plan { consume_annotations: vec![], ..plan });
    let finish = run(&adopted, Some(&r), &drifts, at(6));
    assert_eq!(finish.consume_annotations, [drifts[0].name_any()]);
    assert!(finish.drift_writes.is_empty());
    assert_eq!(reasons(&finish), ["AcceptIgnored"]);
}

#[test]
fn accept_is_refused_when_the_live_value_moved() {
    let p = provisioned(json!({"size_slug": "s-1vcpu-1gb"}));
    let (_, mut drifts) = written(&p, &[], &run(&p, Some(&resource("s-2vcpu-4gb", at(0))), &[], at(1)));
    annotate(&mut drifts[0], None);
    let plan = run(&p, Some(&resource("s-4vcpu-8gb", at(2))), &drifts, at(3));
    assert!(plan.adopt.is_empty());
    let w = &plan.drift_writes[0];
    assert_eq!(w.status.phase, DriftPhase::Open);
    assert_eq!(w.status.actual, json!("s-4vcpu-8gb"), "the moved value is recorded for the next accept");
    assert!(w.status.message.as_ref().unwrap().contains("moved from s-2vcpu-4gb to s-4vcpu-8gb"));
    assert_eq!(reasons(&plan), ["AcceptRefused", "DriftChanged"]);
    assert_eq!(plan.consume_annotations.len(), 1);
}

#[test]
fn accept_is_refused_on_a_stale_drift() {
    let p = provisioned(json!({"size_slug": "s-1vcpu-1gb"}));
    let (_, drifts) = written(&p, &[], &run(&p, Some(&resource("s-2vcpu-4gb", at(0))), &[], at(1)));
    let fixed = resource("s-1vcpu-1gb", at(2));
    let closing = run(&p, Some(&fixed), &drifts, at(3));
    assert_eq!(closing.drift_writes[0].status.phase, DriftPhase::Stale);
    assert_eq!(reasons(&closing), ["DriftResolved"]);
    let (p, mut drifts) = written(&p, &drifts, &closing);
    annotate(&mut drifts[0], None);
    let plan = run(&p, Some(&fixed), &drifts, at(4));
    assert!(plan.adopt.is_empty());
    assert_eq!(plan.drift_writes[0].status.phase, DriftPhase::Stale);
    assert!(plan.drift_writes[0].status.message.as_ref().unwrap().starts_with("accept refused: the drift is Stale"));
    assert_eq!(reasons(&plan), ["AcceptRefused"]);
}

#[test]
fn stale_inventory_never_closes_a_drift() {
    let p = provisioned(json!({"size_slug": "s-1vcpu-1gb"}));
    let (p, drifts) = {
        let first = run(&p, Some(&resource("s-2vcpu-4gb", at(0))), &[], at(1));
        written(&p, &[], &first)
    };
    let old_but_fixed = resource("s-1vcpu-1gb", at(0));
    let plan = run(&p, Some(&old_but_fixed), &drifts, at(2 * 3600));
    assert!(plan.drift_writes.is_empty(), "{plan:?}");
    let status = plan.status.unwrap();
    let fresh = condition(&status, CONDITION_INVENTORY_FRESH);
    assert_eq!((fresh.status.as_str(), fresh.reason.as_str()), ("False", "InventoryStale"));
    assert_eq!(status.open_drifts, 1);
}

#[test]
fn a_missing_resource_is_reported_once_not_per_field() {
    let p = provisioned(json!({"size_slug": "a", "region": "b", "tags": ["c"]}));
    let plan = run(&p, None, &[], at(1));
    assert!(plan.drift_writes.is_empty());
    assert_eq!(reasons(&plan), ["ResourceMissing"]);
    let status = plan.status.clone().unwrap();
    assert_eq!(condition(&status, CONDITION_RESOURCE_FOUND).reason, "NotFound");
    assert_eq!(condition(&status, CONDITION_IN_SYNC).status, "Unknown");
    let (p, _) = written(&p, &[], &plan);
    assert!(run(&p, None, &[], at(2)).is_empty(), "reported once");

    let mut gone = resource("a", at(0));
    gone.status.as_mut().unwrap().missing = true;
    let plan = run(&p, Some(&gone), &[], at(3));
    assert_eq!(condition(plan.status.as_ref().unwrap(), CONDITION_RESOURCE_FOUND).reason, "GoneFromProvider");
    assert!(plan.events.is_empty(), "still missing: no second event");
}

#[test]
fn a_field_that_drifts_again_reopens_with_history() {
    let p = provisioned(json!({"size_slug": "s-1vcpu-1gb"}));
    let (p, drifts) = written(&p, &[], &run(&p, Some(&resource("s-2vcpu-4gb", at(0))), &[], at(1)));
    let (p, drifts) = written(&p, &drifts, &run(&p, Some(&resource("s-1vcpu-1gb", at(2))), &drifts, at(3)));
    let again = run(&p, Some(&resource("s-8vcpu-16gb", at(4))), &drifts, at(5));
    let w = &again.drift_writes[0];
    assert_eq!(w.name, drifts[0].name_any(), "the same object, never a second one");
    assert_eq!(w.status.phase, DriftPhase::Open);
    assert!(w.apply_object, "its phase label changes");
    assert_eq!(w.status.history.len(), 1);
    assert_eq!(w.status.history[0].phase, DriftPhase::Stale);
    assert_eq!(w.status.history[0].actual, json!("s-2vcpu-4gb"));
    assert_eq!(reasons(&again), ["DriftDetected"]);
}

#[test]
fn list_order_and_string_forms_are_not_drift() {
    let p = provisioned(json!({"tags": ["prod", "web", "web"], "region": "nyc3"}));
    let plan = run(&p, Some(&resource("x", at(0))), &[], at(1));
    assert!(plan.drift_writes.is_empty());
    assert_eq!(condition(plan.status.as_ref().unwrap(), CONDITION_IN_SYNC).status, "True");
}

#[test]
fn removing_a_field_from_desired_closes_its_drift() {
    let p = provisioned(json!({"size_slug": "s-1vcpu-1gb", "region": "nyc3"}));
    let (_, drifts) = written(&p, &[], &run(&p, Some(&resource("s-2vcpu-4gb", at(0))), &[], at(1)));
    let p = provisioned(json!({"region": "nyc3"}));
    let plan = run(&p, Some(&resource("s-2vcpu-4gb", at(0))), &drifts, at(2));
    assert_eq!(plan.drift_writes[0].status.phase, DriftPhase::Stale);
    assert_eq!(plan.drift_writes[0].status.message.as_deref(), Some("the field is no longer in spec.desired"));
}

#[test]
fn an_actor_planted_without_its_decision_is_removed_and_never_credited() {
    let p = provisioned(json!({"size_slug": "s-1vcpu-1gb"}));
    let r = resource("s-2vcpu-4gb", at(0));
    let (p, mut drifts) = written(&p, &[], &run(&p, Some(&r), &[], at(1)));
    let a = drifts[0].metadata.annotations.get_or_insert_with(Default::default);
    a.insert(ANNOTATION_ACCEPTED_BY.into(), "mallory".into());
    a.insert(crate::api::ANNOTATION_REVERTED_BY.into(), "mallory".into());
    let plan = run(&p, Some(&r), &drifts, at(2));
    let keys = vec![ANNOTATION_ACCEPTED_BY, crate::api::ANNOTATION_REVERTED_BY];
    assert_eq!(plan.stray_actors, [(drifts[0].name_any(), keys)]);
    assert_eq!(reasons(&plan), ["ActorRemoved"]);
    assert!(plan.drift_writes.is_empty() && plan.consume_annotations.is_empty());

    // With the decision in the same object, the accept carries it out and consumes both.
    annotate(&mut drifts[0], Some("alice"));
    let plan = run(&p, Some(&r), &drifts, at(3));
    assert!(plan.stray_actors.is_empty(), "{:?}", plan.stray_actors);
    assert_eq!(plan.consume_annotations, [drifts[0].name_any()]);
}

#[test]
fn made_up_fields_by_the_hundred_open_at_most_the_cap_of_drifts() {
    let desired: serde_json::Map<String, Value> = (0..40).map(|i| (format!("made-up-{i:02}"), json!("x"))).collect();
    let p = provisioned(Value::Object(desired));
    let plan = run(&p, Some(&resource("s-1", at(0))), &[], at(1));
    assert_eq!(plan.drift_writes.len(), compare::MAX_OPEN_DRIFTS);
    assert_eq!(reasons(&plan).iter().filter(|r| **r == "DriftDetected").count(), compare::MAX_OPEN_DRIFTS);
    let c = condition(plan.status.as_ref().unwrap(), CONDITION_IN_SYNC);
    assert!(c.message.starts_with("32 drifted: made-up-00, "), "{}", c.message);
    assert!(
        c.message.ends_with("; 8 more drifted fields have no Drift (at most 32 are open per object): made-up-32, made-up-33, made-up-34, made-up-35, made-up-36, made-up-37, made-up-38, made-up-39"),
        "{}",
        c.message
    );
    // The next reconcile neither opens more nor loses the ones it has.
    let (p, drifts) = written(&p, &[], &plan);
    let again = run(&p, Some(&resource("s-1", at(0))), &drifts, at(2));
    assert!(again.drift_writes.is_empty() && again.events.is_empty(), "{again:?}");
}

#[test]
fn a_value_nested_too_deep_is_an_invalid_spec() {
    let deep = (0..40).fold(json!(1), |inner, _| json!({ "a": inner }));
    let text = serde_json::to_string(&json!({"size_slug": "x", "meta": deep})).unwrap();
    let mut p = provisioned(json!({"size_slug": "x"}));
    p.spec.desired = serde_json::from_str(&text).unwrap();
    let plan = run(&p, Some(&resource("s-1", at(0))), &[], at(1));
    assert!(plan.drift_writes.is_empty());
    let c = condition(plan.status.as_ref().unwrap(), CONDITION_IN_SYNC);
    assert_eq!(c.message, "spec.desired.meta is nested deeper than 32 levels: it is not read");
}

#[test]
fn an_invalid_spec_gets_a_clear_condition_and_no_drifts() {
    let mut p = provisioned(json!({"size_slug": "x"}));
    p.spec.resource_ref.name = "Not_A/Name".into();
    let plan = run(&p, None, &[], at(1));
    assert!(plan.drift_writes.is_empty());
    let c = condition(plan.status.as_ref().unwrap(), CONDITION_IN_SYNC).clone();
    assert_eq!((c.status.as_str(), c.reason.as_str()), ("Unknown", "InvalidSpec"));
    assert!(c.message.contains("\"Not_A/Name\" is not a valid CloudResource name"), "{}", c.message);
}

fn with_mode(mut p: CloudProvisioned, mode: &str) -> CloudProvisioned {
    p.metadata.annotations.get_or_insert_with(Default::default).insert(ANNOTATION_ACCEPT_MODE.into(), mode.into());
    p
}

fn with_desired(p: &CloudProvisioned, desired: Value) -> CloudProvisioned {
    let mut p = p.clone();
    p.spec.desired = Fields::try_from(desired).unwrap();
    p.metadata.generation = p.metadata.generation.map(|g| g + 1);
    p
}

/// An Open size_slug drift (expected s-1vcpu-1gb, live s-2vcpu-4gb), annotated for accept.
fn opened_and_annotated(p: &CloudProvisioned, r: &CloudResource) -> (CloudProvisioned, Vec<Drift>) {
    let (p, mut drifts) = written(p, &[], &run(p, Some(r), &[], at(1)));
    annotate(&mut drifts[0], Some("alice"));
    (p, drifts)
}

#[test]
fn an_overlay_accept_leaves_the_spec_and_holds_the_value_until_git_has_it() {
    let p = with_mode(provisioned(json!({"size_slug": "s-1vcpu-1gb", "region": "nyc3"})), "overlay");
    let r = resource("s-2vcpu-4gb", at(0));
    let (p, drifts) = opened_and_annotated(&p, &r);

    let accept = run(&p, Some(&r), &drifts, at(10));
    assert!(accept.adopt.is_empty(), "the spec is never written in overlay mode");
    assert!(accept.status_first, "the overlay is stored before the Drift says Accepted");
    let w = &accept.drift_writes[0];
    assert_eq!((w.status.phase, w.status.accept_mode), (DriftPhase::Accepted, Some(crate::api::AcceptedInto::Overlay)));
    let message = w.status.message.as_deref().unwrap();
    assert!(message.contains("overlay mode (set by the arcadia.cloud/accept-mode annotation)"), "{message}");
    assert!(message.contains("commit `spec.desired.size_slug: s-2vcpu-4gb` to Git"), "{message}");
    let status = accept.status.as_ref().unwrap();
    let entry = &status.pending_git_changes[0];
    assert_eq!(
        (entry.field.as_str(), &entry.value, &entry.spec_value),
        ("size_slug", &json!("s-2vcpu-4gb"), &json!("s-1vcpu-1gb"))
    );
    assert_eq!((entry.accepted_by.as_str(), entry.drift.as_str()), ("alice", w.name.as_str()));
    let git = condition(status, CONDITION_GIT_IN_SYNC);
    assert_eq!((git.status.as_str(), git.reason.as_str()), ("False", "AcceptedNotInGit"));
    assert!(git.message.contains("spec.desired.size_slug: s-2vcpu-4gb (accepted by alice)"), "{}", git.message);

    // The GitOps tool syncs the unchanged manifest again: nothing reopens, nothing is written.
    let (p, drifts) = written(&p, &drifts, &accept);
    let resync = run(&p, Some(&r), &drifts, at(20));
    // (The journal entry is written once by the reconciler, whose journal this test does not keep.)
    assert!(Plan { journal: Default::default(), ..resync }.is_empty());

    // Git catches up: the entry merges.
    let merged =
        run(&with_desired(&p, json!({"size_slug": "s-2vcpu-4gb", "region": "nyc3"})), Some(&r), &drifts, at(30));
    assert_eq!(reasons(&merged), ["AcceptMerged"]);
    let status = merged.status.unwrap();
    assert!(status.pending_git_changes.is_empty());
    assert_eq!(condition(&status, CONDITION_GIT_IN_SYNC).status, "True");
    // The Drift stays Accepted, and its message follows: merged, no longer "commit it".
    let [w] = merged.drift_writes.as_slice() else { panic!("{:?}", merged.drift_writes) };
    assert_eq!(w.status.phase, DriftPhase::Accepted);
    let message = w.status.message.as_deref().unwrap();
    assert!(message.contains("merged: the spec holds `spec.desired.size_slug: s-2vcpu-4gb`"), "{message}");
}

#[test]
fn git_changing_an_overlaid_field_wins() {
    let p = with_mode(provisioned(json!({"size_slug": "s-1vcpu-1gb"})), "overlay");
    let r = resource("s-2vcpu-4gb", at(0));
    let (p, drifts) = opened_and_annotated(&p, &r);
    let (p, drifts) = written(&p, &drifts, &run(&p, Some(&r), &drifts, at(10)));

    let superseded = run(&with_desired(&p, json!({"size_slug": "s-4vcpu-8gb"})), Some(&r), &drifts, at(20));
    assert_eq!(reasons(&superseded), ["AcceptSuperseded", "DriftDetected"]);
    let status = superseded.status.unwrap();
    assert!(status.pending_git_changes.is_empty());
    let w = &superseded.drift_writes[0];
    assert_eq!((w.status.phase, &w.status.expected), (DriftPhase::Open, &json!("s-4vcpu-8gb")), "compared against Git");
    assert!(
        !superseded.events.iter().any(|e| e.reason == "AcceptReverted"),
        "an overlay is not reverted, it is superseded"
    );
}

#[test]
fn a_live_value_that_moves_after_an_overlay_accept_opens_against_the_accepted_value() {
    let p = with_mode(provisioned(json!({"size_slug": "s-1vcpu-1gb"})), "overlay");
    let r = resource("s-2vcpu-4gb", at(0));
    let (p, drifts) = opened_and_annotated(&p, &r);
    let (p, drifts) = written(&p, &drifts, &run(&p, Some(&r), &drifts, at(10)));

    let moved = run(&p, Some(&resource("s-8vcpu-16gb", at(15))), &drifts, at(20));
    let w = &moved.drift_writes[0];
    assert_eq!((w.status.phase, &w.status.expected), (DriftPhase::Open, &json!("s-2vcpu-4gb")));
    assert_eq!(w.status.history[0].phase, DriftPhase::Accepted);
    assert_eq!(moved.status.unwrap().pending_git_changes.len(), 1, "the overlay holds");
}

#[test]
fn a_spec_change_to_the_live_value_is_an_accept_made_in_git() {
    let p = provisioned(json!({"size_slug": "s-1vcpu-1gb"}));
    let r = resource("s-2vcpu-4gb", at(0));
    let (p, drifts) = written(&p, &[], &run(&p, Some(&r), &[], at(1)));
    let committed = with_desired(&p, json!({"size_slug": "s-2vcpu-4gb"}));

    let first = run(&committed, Some(&r), &drifts, at(10));
    assert!(first.needs_field_owners, "the manager is named, so the reconciler fetches the owners");
    let owners = BTreeMap::from([("size_slug".to_string(), "kustomize-controller".to_string())]);
    let refs: Vec<&Drift> = drifts.iter().collect();
    let now = at(10);
    let inputs = Inputs {
        provisioned: &committed,
        resource: Some(&r),
        drifts: &refs,
        now: &now,
        field_owners: Some(&owners),
        git: &BTreeMap::new(),
        policies: &[],
        peers: &[],
        journal: &BTreeMap::new(),
    };
    let plan = plan(&inputs, &Settings::default());
    assert!(!plan.needs_field_owners);
    let w = &plan.drift_writes[0];
    assert_eq!(
        (w.status.phase, w.status.resolved_by.as_deref()),
        (DriftPhase::Accepted, Some("spec change by field manager kustomize-controller"))
    );
    assert_eq!(w.status.message.as_deref(), Some("accepted by a spec change at generation 2"));
    assert_eq!((plan.tally.accepted, plan.tally.resolved_stale), (1, 0));

    // The live value coming back is still Stale.
    let back = run(&p, Some(&resource("s-1vcpu-1gb", at(11))), &drifts, at(12));
    assert_eq!(back.drift_writes[0].status.phase, DriftPhase::Stale);
    assert!(!back.needs_field_owners);
}

#[test]
fn a_spec_mode_accept_taken_back_by_a_sync_is_reported_once_and_not_fought() {
    let p = with_mode(provisioned(json!({"size_slug": "s-1vcpu-1gb"})), "spec");
    let r = resource("s-2vcpu-4gb", at(0));
    let (p, drifts) = opened_and_annotated(&p, &r);
    let accept = run(&p, Some(&r), &drifts, at(10));
    assert_eq!(accept.drift_writes[0].status.accept_mode, Some(crate::api::AcceptedInto::Spec));
    let (accepted, drifts) = written(&p, &drifts, &accept);

    // A force-apply from Git puts the old value back.
    let synced_back = with_desired(&accepted, json!({"size_slug": "s-1vcpu-1gb"}));
    let plan = run(&synced_back, Some(&r), &drifts, at(20));
    assert_eq!(reasons(&plan), ["AcceptReverted", "DriftDetected"]);
    let reverted = &plan.events[0];
    assert!(reverted.warning);
    assert!(reverted.message.contains("arcadia.cloud/accept-mode=overlay"), "{}", reverted.message);
    assert!(plan.adopt.is_empty(), "never fights for the field");
    let (p, drifts) = written(&synced_back, &drifts, &plan);
    assert!(run(&p, Some(&r), &drifts, at(30)).is_empty(), "said once");
}

#[test]
fn an_unknown_accept_mode_refuses_the_accept_and_changes_nothing() {
    let p = with_mode(provisioned(json!({"size_slug": "s-1vcpu-1gb"})), "overlayy");
    let r = resource("s-2vcpu-4gb", at(0));
    let (p, drifts) = opened_and_annotated(&p, &r);
    let plan = run(&p, Some(&r), &drifts, at(10));
    assert!(plan.adopt.is_empty());
    assert_eq!(reasons(&plan), ["AcceptRefused"]);
    let w = &plan.drift_writes[0];
    assert_eq!(w.status.phase, DriftPhase::Open);
    assert_eq!(
        w.status.message.as_deref(),
        Some(
            "accept refused: arcadia.cloud/accept-mode \"overlayy\" on CloudProvisioned web-1 is not one of spec, overlay, auto; nothing changed"
        )
    );
    assert_eq!(plan.consume_annotations.len(), 1, "the annotation is consumed, as for every refusal");
    assert!(plan.status.is_none_or(|s| s.pending_git_changes.is_empty()));
}

#[test]
fn auto_mode_follows_the_gitops_tool() {
    let mut p = provisioned(json!({"size_slug": "s-1vcpu-1gb"}));
    p.labels_mut().insert("kustomize.toolkit.fluxcd.io/name".into(), "infra".into());
    let r = resource("s-2vcpu-4gb", at(0));
    let (p, drifts) = opened_and_annotated(&p, &r);
    let plan = run(&p, Some(&r), &drifts, at(10));
    let message = plan.drift_writes[0].status.message.as_deref().unwrap();
    assert!(message.contains("overlay mode (auto, from --accept-mode: applied by Flux"), "{message}");
    assert!(plan.adopt.is_empty());
}

fn run_with(
    p: &CloudProvisioned,
    r: &CloudResource,
    drifts: &[Drift],
    now: Time,
    policies: &[Arc<DriftPolicy>],
) -> Plan {
    run_with_settings(p, r, drifts, now, (policies, &[]), &Settings::default())
}

/// One plan with these policies and peers, under `settings`.
fn run_with_settings(
    p: &CloudProvisioned,
    r: &CloudResource,
    drifts: &[Drift],
    now: Time,
    (policies, peers): (&[Arc<DriftPolicy>], &[Arc<CloudProvisioned>]),
    settings: &Settings,
) -> Plan {
    let refs: Vec<&Drift> = drifts.iter().collect();
    let inputs = Inputs {
        provisioned: p,
        resource: Some(r),
        drifts: &refs,
        now: &now,
        field_owners: None,
        git: &BTreeMap::new(),
        policies,
        peers,
        journal: &BTreeMap::new(),
    };
    plan(&inputs, settings)
}

fn annotated(d: &Drift, pairs: &[(&str, &str)]) -> Drift {
    let mut d = d.clone();
    let a = d.metadata.annotations.get_or_insert_with(Default::default);
    for (k, v) in pairs {
        a.insert(k.to_string(), v.to_string());
    }
    d
}

fn ignore_policy(name: &str, field: &str, severity: Option<crate::api::Severity>) -> Arc<DriftPolicy> {
    Arc::new(DriftPolicy::new(
        name,
        crate::api::DriftPolicySpec {
            ignore: vec![crate::api::IgnoreRule {
                field: field.into(),
                reason: "managed by the autoscaler".into(),
                ..Default::default()
            }],
            severity: severity.map(|s| [("region".to_string(), s)].into()).unwrap_or_default(),
            ..Default::default()
        },
    ))
}

#[test]
fn a_policy_added_later_closes_the_drift_as_ignored_and_its_removal_reopens_it() {
    let p = provisioned(json!({"size_slug": "s-1vcpu-1gb"}));
    let r = resource("s-2vcpu-4gb", at(0));
    let (p, drifts) = written(&p, &[], &run(&p, Some(&r), &[], at(1)));
    let policy = ignore_policy("sizes", "size_slug", None);
    let ignored = run_with(&p, &r, &drifts, at(10), std::slice::from_ref(&policy));
    let w = &ignored.drift_writes[0];
    assert_eq!(w.status.phase, DriftPhase::Ignored);
    assert_eq!(w.status.message.as_deref(), Some("Ignored by policy sizes (managed by the autoscaler)"));
    assert_eq!(w.status.ignored[0].rule, "DriftPolicy/sizes/ignore[0]");
    let status = ignored.status.as_ref().unwrap();
    assert_eq!(status.policies, ["sizes"]);
    assert_eq!(status.ignored_differences[0].rule, "DriftPolicy/sizes/ignore[0]");
    assert_eq!(status.open_drifts, 0);
    assert_eq!(ignored.tally.resolved_stale, 0, "not Stale");

    let (p, drifts) = written(&p, &drifts, &ignored);
    assert!(run_with(&p, &r, &drifts, at(20), std::slice::from_ref(&policy)).drift_writes.is_empty(), "settled");
    let reopened = run_with(&p, &r, &drifts, at(30), &[]);
    let w = &reopened.drift_writes[0];
    assert_eq!((w.status.phase, w.status.history[0].phase), (DriftPhase::Open, DriftPhase::Ignored));
}

#[test]
fn severities_label_drifts_and_info_events_are_normal() {
    let p = provisioned(json!({"region": "ams3"}));
    let r = resource("s-1", at(0));
    let policy = ignore_policy("quiet", "other", Some(crate::api::Severity::Info));
    let plan = run_with(&p, &r, &[], at(1), &[policy]);
    assert_eq!(plan.drift_writes[0].severity, "info");
    assert!(!plan.events.iter().find(|e| e.reason == "DriftDetected").unwrap().warning);
    assert_eq!(run(&p, Some(&r), &[], at(1)).drift_writes[0].severity, "warning");
}

#[test]
fn snooze_puts_a_drift_off_until_its_time_and_refuses_nonsense() {
    let p = provisioned(json!({"size_slug": "s-1vcpu-1gb"}));
    let r = resource("s-2vcpu-4gb", at(0));
    let (p, drifts) = written(&p, &[], &run(&p, Some(&r), &[], at(1)));
    for (value, why) in [("tomorrow", "is not an RFC 3339 time"), ("2020-01-01T00:00:00Z", "is not in the future")] {
        let bad = run(&p, Some(&r), &[annotated(&drifts[0], &[(crate::api::ANNOTATION_SNOOZE_UNTIL, value)])], at(5));
        assert_eq!(reasons(&bad), ["AnnotationRefused"]);
        assert!(bad.drift_writes[0].status.message.as_deref().unwrap().contains(why));
        assert_eq!(bad.drift_writes[0].status.phase, DriftPhase::Open, "nothing changed");
        assert_eq!(bad.consume_annotations.len(), 1);
    }
    let until = at(100).0.to_string();
    let snooze = run(&p, Some(&r), &[annotated(&drifts[0], &[(crate::api::ANNOTATION_SNOOZE_UNTIL, &until)])], at(10));
    assert_eq!(snooze.drift_writes[0].status.phase, DriftPhase::Snoozed);
    assert_eq!(snooze.status.as_ref().map(|s| s.open_drifts), Some(0));
    let (p, drifts) = written(&p, &drifts, &snooze);
    assert!(run(&p, Some(&r), &drifts, at(50)).drift_writes.is_empty(), "quiet while snoozed");
    let ended = run(&p, Some(&r), &drifts, at(101));
    assert_eq!(ended.drift_writes[0].status.phase, DriftPhase::Open);
    assert_eq!(reasons(&ended), ["SnoozeEnded"]);
}

#[test]
fn an_ignored_drift_lasts_as_long_as_its_live_value() {
    let p = provisioned(json!({"size_slug": "s-1vcpu-1gb"}));
    let r = resource("s-2vcpu-4gb", at(0));
    let (p, drifts) = written(&p, &[], &run(&p, Some(&r), &[], at(1)));
    let no_reason = run(&p, Some(&r), &[annotated(&drifts[0], &[(crate::api::ANNOTATION_IGNORE, "true")])], at(5));
    assert!(
        no_reason.drift_writes[0]
            .status
            .message
            .as_deref()
            .unwrap()
            .contains("arcadia.cloud/ignore-reason is required")
    );
    let with_reason =
        [(crate::api::ANNOTATION_IGNORE, "true"), (crate::api::ANNOTATION_IGNORE_REASON, "load test this week")];
    let ignore = run(&p, Some(&r), &[annotated(&drifts[0], &with_reason)], at(10));
    assert_eq!(ignore.drift_writes[0].status.phase, DriftPhase::Ignored);
    let (p, drifts) = written(&p, &drifts, &ignore);
    assert!(run(&p, Some(&r), &drifts, at(20)).drift_writes.is_empty(), "the same live value stays ignored");
    let moved = run(&p, Some(&resource("s-8vcpu-16gb", at(25))), &drifts, at(30));
    assert_eq!(moved.drift_writes[0].status.phase, DriftPhase::Open, "a new live value reopens it");
}

fn run_reverting(
    p: &CloudProvisioned,
    r: &CloudResource,
    drifts: &[Drift],
    now: Time,
    peers: &[Arc<CloudProvisioned>],
) -> Plan {
    let revert = crate::revert::RevertSettings { enabled: true, claim: crate::revert::Claim::Any };
    run_with_settings(p, r, drifts, now, (&[], peers), &Settings { revert, ..Settings::default() })
}

fn off_resource(size: &str, synced: Time) -> CloudResource {
    let mut r = resource(size, synced);
    r.status.as_mut().unwrap().status = Some("off".into());
    r
}

#[test]
fn a_revert_runs_from_approval_through_the_saga_to_reverted() {
    let p = provisioned(json!({"size_slug": "s-1vcpu-1gb"}));
    let r = off_resource("s-2vcpu-4gb", at(0));
    let first = run_reverting(&p, &r, &[], at(1), &[]);
    let (p, drifts) = written(&p, &[], &first);
    let status = drifts[0].status.clone().unwrap();
    assert_eq!(status.revert_plan.len(), 1, "an Open drift shows its preview: a droplet that is off only resizes");
    assert_eq!(status.revert_note, None);
    let settled = run_reverting(&p, &r, &drifts, at(2), &[]);
    assert!(settled.drift_writes.is_empty(), "a preview is written once, not on every reconcile");

    let digest = status.revert_plan_digest.clone().expect("the preview's digest");
    assert_eq!(digest, crate::revert::digest(&status.revert_plan));
    let approved = annotated(
        &drifts[0],
        &[(crate::api::ANNOTATION_REVERT, &digest), (crate::api::ANNOTATION_REVERTED_BY, "alice")],
    );
    let plan = run_reverting(&p, &r, std::slice::from_ref(&approved), at(3), &[]);
    assert_eq!(reasons(&plan), ["RevertStarted"]);
    assert!(plan.consume_annotations.is_empty(), "the reverter reads the approval itself");
    let (p, drifts) = written(&p, &[approved], &plan);
    let mut status = drifts[0].status.clone().unwrap();
    assert_eq!((status.phase, status.resolved_by.as_deref()), (DriftPhase::Reverting, Some("alice")));

    // The reverter's record: running, then succeeded; the drift waits for the live value.
    let episode = status.detected_time.clone().unwrap();
    let mut record = crate::revert::saga::start(&status.revert_plan, &episode, "alice", &at(4));
    status.revert = Some(record.clone());
    let mut reverting = drifts[0].clone();
    reverting.status = Some(status.clone());
    let plan = run_reverting(&p, &r, std::slice::from_ref(&reverting), at(5), &[]);
    assert!(plan.events.is_empty() && plan.drift_writes.is_empty(), "nothing to do while the saga runs: {plan:?}");
    crate::revert::saga::sending(&mut record, 0, &at(5));
    status.revert = Some(record.clone());
    reverting.status = Some(status.clone());
    let plan = run_reverting(&p, &r, std::slice::from_ref(&reverting), at(5), &[]);
    assert!(plan.consume_annotations.is_empty(), "the approval stays while the saga runs");
    crate::revert::saga::finish(&mut record, crate::api::SagaState::Succeeded, &at(6));
    status.revert = Some(record);
    reverting.status = Some(status);
    let fixed = off_resource("s-1vcpu-1gb", at(7));
    let name = reverting.name_any();
    let plan = run_reverting(&p, &fixed, &[reverting], at(8), &[]);
    assert_eq!(reasons(&plan), ["Reverted"]);
    assert_eq!(plan.consume_annotations, [name], "the approval is removed once the saga ended");
    assert_eq!(plan.drift_writes[0].status.phase, DriftPhase::Reverted);
    assert_eq!(plan.drift_writes[0].status.resolved_by.as_deref(), Some("alice"));
}

#[test]
fn a_failed_saga_ends_revert_failed_which_stands_while_the_live_value_does() {
    let p = provisioned(json!({"size_slug": "s-1vcpu-1gb"}));
    let r = off_resource("s-2vcpu-4gb", at(0));
    let (p, drifts) = written(&p, &[], &run_reverting(&p, &r, &[], at(1), &[]));
    let mut d = drifts[0].clone();
    let mut status = d.status.clone().unwrap();
    status.phase = DriftPhase::Reverting;
    let mut record =
        crate::revert::saga::start(&status.revert_plan, status.detected_time.as_ref().unwrap(), "bob", &at(2));
    crate::revert::saga::fail(
        &mut record,
        &DO,
        0,
        "422 unprocessable_entity: Droplet already has a pending event.".into(),
    );
    crate::revert::saga::finish(&mut record, crate::api::SagaState::Failed, &at(3));
    status.revert = Some(record);
    d.status = Some(status);
    let plan = run_reverting(&p, &r, &[d.clone()], at(4), &[]);
    assert_eq!(reasons(&plan), ["RevertFailed"]);
    let (p, drifts) = written(&p, &[d], &plan);
    let status = drifts[0].status.clone().unwrap();
    assert_eq!(status.phase, DriftPhase::RevertFailed);
    assert!(status.message.unwrap().contains("pending event"));
    assert!(run_reverting(&p, &r, &drifts, at(5), &[]).drift_writes.is_empty(), "it stands");
    // Approved again: Reverting until the reverter writes a new record; the failed one is history.
    let digest = drifts[0].status.as_ref().and_then(|s| s.revert_plan_digest.clone()).unwrap();
    let again = annotated(&drifts[0], &[(crate::api::ANNOTATION_REVERT, &digest)]);
    let plan = run_reverting(&p, &r, &[again], at(5), &[]);
    assert_eq!(reasons(&plan), ["RevertStarted"]);
    assert_eq!(plan.drift_writes[0].status.phase, DriftPhase::Reverting, "not failed again by the old record");
    let moved = off_resource("s-4vcpu-8gb", at(6));
    let plan = run_reverting(&p, &moved, &drifts, at(7), &[]);
    assert_eq!(reasons(&plan), ["DriftDetected"], "a new live value opens a new episode");
}

/// A Reverting drift with the saga's shutdown sent, and the record as given.
fn reverting_with(p: &CloudProvisioned, r: &CloudResource, edit: impl Fn(&mut crate::api::RevertRecord)) -> Drift {
    let (_, drifts) = written(p, &[], &run_reverting(p, r, &[], at(1), &[]));
    let mut d = drifts[0].clone();
    let mut status = d.status.clone().unwrap();
    status.phase = DriftPhase::Reverting;
    let episode = status.detected_time.clone().unwrap();
    let mut record = crate::revert::saga::start(&status.revert_plan, &episode, "bob", &at(2));
    edit(&mut record);
    status.revert = Some(record);
    d.status = Some(status);
    d
}

#[test]
fn with_reverting_turned_off_a_pending_saga_ends_revert_failed_saying_why() {
    let p = provisioned(json!({"size_slug": "s-1vcpu-1gb"}));
    let r = resource("s-2vcpu-4gb", at(0));
    let d = reverting_with(&p, &r, |record| {
        crate::revert::saga::sending(record, 0, &at(2));
        crate::revert::saga::sent(record, 0, Some(Handle::from(11)));
    });
    let plan = run_with_settings(&p, &r, &[d], at(4), (&[], &[]), &Settings::default());
    assert_eq!(reasons(&plan), ["RevertFailed"]);
    let status = &plan.drift_writes[0].status;
    assert_eq!(status.phase, DriftPhase::RevertFailed);
    let message = status.message.as_deref().unwrap();
    assert!(message.contains("--enable-revert") && message.contains("may be left powered off"), "{message}");
}

#[test]
fn a_saga_whose_compensation_failed_says_so_in_its_own_event() {
    let p = provisioned(json!({"size_slug": "s-1vcpu-1gb"}));
    let r = resource("s-2vcpu-4gb", at(0));
    let d = reverting_with(&p, &r, |record| {
        crate::revert::saga::sending(record, 0, &at(2));
        crate::revert::saga::sent(record, 0, Some(Handle::from(11)));
        crate::revert::saga::abandon(record, &DO, 0, "cannot read DigitalOcean action 11: 403".into());
        crate::revert::saga::sending(record, 3, &at(3));
        crate::revert::saga::fail(record, &DO, 3, "403 forbidden".into());
        crate::revert::saga::finish(record, crate::api::SagaState::Failed, &at(3));
    });
    let plan = run_reverting(&p, &r, &[d], at(4), &[]);
    assert_eq!(reasons(&plan), ["RevertCompensationFailed"]);
    assert!(plan.drift_writes[0].status.message.as_deref().unwrap().contains("powered off"));
}

#[test]
fn peers_that_want_another_value_show_desired_conflict_and_block_the_revert() {
    let p = provisioned(json!({"size_slug": "s-1vcpu-1gb"}));
    let mut other = provisioned(json!({"size_slug": "s-2vcpu-2gb"}));
    other.metadata.name = Some("web-2".into());
    let peers = [Arc::new(other)];
    let r = off_resource("s-2vcpu-4gb", at(0));
    let plan = run_reverting(&p, &r, &[], at(1), &peers);
    let conflict = condition(plan.status.as_ref().unwrap(), crate::api::CONDITION_DESIRED_CONFLICT);
    assert_eq!(conflict.status, "True");
    assert!(conflict.message.contains("size_slug: ns/web-2"), "{}", conflict.message);
    let (p, drifts) = written(&p, &[], &plan);
    let digest = drifts[0].status.as_ref().and_then(|s| s.revert_plan_digest.clone()).unwrap();
    let approved = annotated(&drifts[0], &[(crate::api::ANNOTATION_REVERT, &digest)]);
    let plan = run_reverting(&p, &r, &[approved], at(2), &peers);
    assert_eq!(reasons(&plan), ["RevertRefused"]);
    let message = plan.drift_writes[0].status.message.clone().unwrap();
    assert!(message.contains("DesiredConflict: ns/web-2"), "{message}");
    let plan = run_reverting(&p, &r, &drifts, at(3), &[]);
    let ended = condition(plan.status.as_ref().unwrap(), crate::api::CONDITION_DESIRED_CONFLICT);
    assert_eq!(ended.status, "False", "the conflict ended");
}

#[test]
fn another_tenants_objects_are_never_named_and_count_only_with_the_claim() {
    let p = provisioned(json!({"size_slug": "s-1vcpu-1gb"}));
    let mut other = provisioned(json!({"size_slug": "s-2vcpu-2gb"}));
    other.metadata.name = Some("secret-project".into());
    other.metadata.namespace = Some("team-b".into());
    let peers = [Arc::new(other)];
    let revert = crate::revert::RevertSettings { enabled: true, claim: crate::revert::Claim::Tag };
    let settings = Settings { revert, ..Settings::default() };
    // The resource carries no claim of team-b: team-b does not count.
    let r = off_resource("s-2vcpu-4gb", at(0));
    let plan = run_with_settings(&p, &r, &[], at(1), (&[], &peers), &settings);
    let status = plan.status.unwrap();
    assert!(status.conditions.iter().all(|c| c.type_ != crate::api::CONDITION_DESIRED_CONFLICT), "{status:?}");
    assert!(!format!("{status:?}").contains("secret-project"));

    // Once team-b holds the claim it counts, still without its object's name.
    let mut claimed = off_resource("s-2vcpu-4gb", at(0));
    claimed.status.as_mut().unwrap().tags.get_or_insert_with(Vec::new).push("arcadia-ns:team-b".into());
    let plan = run_with_settings(&p, &claimed, &[], at(1), (&[], &peers), &settings);
    let conflict = condition(plan.status.as_ref().unwrap(), crate::api::CONDITION_DESIRED_CONFLICT);
    assert_eq!(conflict.status, "True");
    assert!(
        conflict.message.contains("size_slug: a CloudProvisioned of the namespace that holds the claim"),
        "{}",
        conflict.message
    );
    assert!(
        !conflict.message.contains("secret-project") && !conflict.message.contains("team-b"),
        "{}",
        conflict.message
    );
}

#[test]
fn a_pending_change_the_controller_did_not_record_is_ignored_and_said() {
    let p = with_mode(provisioned(json!({"size_slug": "s-1vcpu-1gb"})), "overlay");
    let r = resource("s-2vcpu-4gb", at(0));
    let (p, drifts) = opened_and_annotated(&p, &r);
    let (mut p, drifts) = written(&p, &drifts, &run(&p, Some(&r), &drifts, at(10)));
    // Another writer replaces the list: the API server hands it the list's ownership.
    let entry = &mut p.status.as_mut().unwrap().pending_git_changes[0];
    entry.value = json!("s-32vcpu-192gb");
    for m in p.metadata.managed_fields.as_mut().unwrap().iter_mut() {
        if crate::accept::provenance::owns_pending(m) {
            m.manager = Some("tenant-bot".into());
        }
    }
    let plan = run(&p, Some(&r), &drifts, at(20));
    let ignored = plan.events.iter().find(|e| e.reason == "PendingChangesIgnored").expect("an Event says so");
    assert!(ignored.warning && ignored.message.contains("written by tenant-bot"), "{}", ignored.message);
    assert!(plan.status.unwrap().pending_git_changes.is_empty(), "the forged list is not kept");
    let w = &plan.drift_writes[0];
    assert_eq!(
        (w.status.phase, &w.status.expected),
        (DriftPhase::Open, &json!("s-1vcpu-1gb")),
        "compared against the spec"
    );
}

/// One plan given what the write-back of each Drift came to.
fn run_git(p: &CloudProvisioned, r: &CloudResource, drifts: &[Drift], now: Time, git: GitOutcome) -> Plan {
    let refs: Vec<&Drift> = drifts.iter().collect();
    let git = BTreeMap::from([(drifts[0].name_any(), git)]);
    let inputs = Inputs {
        provisioned: p,
        resource: Some(r),
        drifts: &refs,
        now: &now,
        field_owners: None,
        git: &git,
        policies: &[],
        peers: &[],
        journal: &BTreeMap::new(),
    };
    plan(&inputs, &Settings::default())
}

fn refused_for(why: &str) -> GitOutcome {
    GitOutcome::Refused(crate::api::GitCommit {
        url: "https://git.example/platform/infra.git".into(),
        branch: "main".into(),
        commit: String::new(),
        refused: Some(format!("write-back refused: {why}")),
        path: String::new(),
        pushed_time: at(0),
        flux_variable: None,
    })
}

/// An overlay accept of size_slug (s-1vcpu-1gb to s-2vcpu-4gb), written.
fn overlay_accepted() -> (CloudProvisioned, CloudResource, Vec<Drift>) {
    let p = with_mode(provisioned(json!({"size_slug": "s-1vcpu-1gb"})), "overlay");
    let r = resource("s-2vcpu-4gb", at(0));
    let (p, drifts) = opened_and_annotated(&p, &r);
    let (p, drifts) = written(&p, &drifts, &run(&p, Some(&r), &drifts, at(10)));
    (p, r, drifts)
}

#[test]
fn a_reconsidered_refusal_refused_again_for_another_reason_replaces_the_old_one() {
    let (p, r, drifts) = overlay_accepted();
    let not_allowed = "https://git.example/platform/infra.git is not in --git-allowed-remotes";
    let first = run_git(&p, &r, &drifts, at(20), refused_for(not_allowed));
    assert_eq!(reasons(&first), ["AcceptCommitRefused"]);
    let (p, drifts) = written(&p, &drifts, &first);

    // --git-allowed-remotes changed: the refusal is reconsidered and written back again.
    let reconsidered = run_git(&p, &r, &drifts, at(30), GitOutcome::Reconsider);
    assert_eq!(reconsidered.write_back, [drifts[0].name_any()]);
    // Refused again, for another reason: the new reason replaces the old on the Drift.
    let substituted = "spec.desired.size_slug in apps/web.yaml is the Flux substitution ${WEB5_SIZE}, not a value; nothing was pushed; the Kustomization flux-system/infra sets it in postBuild.substitute (WEB5_SIZE: s-1vcpu-1gb): change the variable there, not the manifest";
    let again = run_git(&p, &r, &drifts, at(40), refused_for(substituted));
    assert_eq!(reasons(&again), ["AcceptCommitRefused"]);
    let [w] = again.drift_writes.as_slice() else { panic!("{:?}", again.drift_writes) };
    let why = format!("write-back refused: {substituted}");
    assert_eq!(w.status.git.as_ref().and_then(|g| g.refused.as_deref()), Some(why.as_str()));
    let message = w.status.message.as_deref().unwrap();
    assert!(message.contains(&why) && !message.contains(not_allowed), "{message}");
    let (p, drifts) = written(&p, &drifts, &again);

    // The same refusal once more changes nothing and says nothing.
    let same = run_git(&p, &r, &drifts, at(50), refused_for(substituted));
    assert!(same.drift_writes.is_empty() && same.events.is_empty(), "{:?}", reasons(&same));
}

#[test]
fn a_refused_substitution_advises_changing_the_variable_not_committing_the_value() {
    let (p, r, drifts) = overlay_accepted();
    let substituted = "spec.desired.size_slug in apps/web.yaml is the Flux substitution ${WEB5_SIZE}, not a value; nothing was pushed; the Kustomization flux-system/infra takes it from postBuild.substituteFrom (ConfigMap cluster-vars): change the variable there, not the manifest";
    let plan = run_git(&p, &r, &drifts, at(20), refused_for(substituted));
    let message = plan.drift_writes[0].status.message.as_deref().unwrap();
    assert!(
        message.ends_with("change the variable there, not the manifest; give the variable WEB5_SIZE the value s-2vcpu-4gb where it is set"),
        "{message}"
    );
    assert!(!message.contains("by hand") && !message.contains("commit `"), "{message}");
    let event = plan.events.iter().find(|e| e.reason == "AcceptCommitRefused").unwrap();
    assert_eq!(event.message, message);

    let git = condition(plan.status.as_ref().unwrap(), CONDITION_GIT_IN_SYNC).clone();
    assert_eq!((git.status.as_str(), git.reason.as_str()), ("False", "AcceptedNotInGit"));
    assert_eq!(
        git.message,
        "accepted in overlay mode but not in Git; in CloudProvisioned web-1, size_slug (accepted by alice) is the Flux variable WEB5_SIZE: give it the value s-2vcpu-4gb, not the manifest; the Kustomization flux-system/infra takes it from postBuild.substituteFrom (ConfigMap cluster-vars): change the variable there, not the manifest"
    );

    // Any other refusal keeps the advice to commit the line by hand.
    let plan = run_git(&p, &r, &drifts, at(20), refused_for("no file can be changed"));
    let message = plan.drift_writes[0].status.message.as_deref().unwrap();
    assert!(
        message.ends_with("no file can be changed; commit `spec.desired.size_slug: s-2vcpu-4gb` by hand"),
        "{message}"
    );
    // The condition as it was: nothing to write.
    assert!(plan.status.is_none());
    let git = condition(p.status.as_ref().unwrap(), CONDITION_GIT_IN_SYNC).clone();
    assert!(
        git.message
            .ends_with("commit to CloudProvisioned web-1: spec.desired.size_slug: s-2vcpu-4gb (accepted by alice)"),
        "{}",
        git.message
    );
}

#[test]
fn a_recorded_flux_variable_is_taken_as_recorded_not_read_from_the_words() {
    let (p, r, drifts) = overlay_accepted();
    let mut outcome = refused_for("the field is a variable");
    if let GitOutcome::Refused(record) = &mut outcome {
        let set_in = "the Kustomization flux-system/infra sets it in postBuild.substitute".to_owned();
        record.flux_variable = Some(crate::api::FluxVariable { name: "WEB5_SIZE".into(), set_in });
    }
    let plan = run_git(&p, &r, &drifts, at(20), outcome);
    let message = plan.drift_writes[0].status.message.as_deref().unwrap();
    assert!(message.ends_with("give the variable WEB5_SIZE the value s-2vcpu-4gb where it is set"), "{message}");
    let git = condition(plan.status.as_ref().unwrap(), CONDITION_GIT_IN_SYNC).clone();
    assert!(
        git.message.ends_with(
            "is the Flux variable WEB5_SIZE: give it the value s-2vcpu-4gb, not the manifest; the Kustomization flux-system/infra sets it in postBuild.substitute"
        ),
        "{}",
        git.message
    );
}
