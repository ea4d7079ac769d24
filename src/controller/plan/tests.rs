use super::*;
use crate::api::{
    ANNOTATION_ACCEPT, ANNOTATION_ACCEPTED_BY, CloudProvisionedSpec, CloudResourceSpec, CloudResourceStatus, DriftSpec,
    Fields, ProvisionedRef, ResourceRef,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

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
        },
    );
    p.metadata.namespace = Some("ns".into());
    p.metadata.generation = Some(1);
    p
}

fn resource(size: &str, synced: Time) -> CloudResource {
    let mut r = CloudResource::new(
        RESOURCE,
        CloudResourceSpec { provider: "digitalocean".into(), type_: "droplet".into(), id: "1".into() },
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
    }
    for name in &plan.clear_accept {
        if let Some(a) = drifts.get_mut(name).and_then(|d| d.metadata.annotations.as_mut()) {
            a.remove(ANNOTATION_ACCEPT);
        }
    }
    let mut p = p.clone();
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
    plan(&Inputs { provisioned: p, resource: r, drifts: &refs, now: &now, field_owners: None }, &Settings::default())
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
    assert_eq!(accept.clear_accept, vec![w.name.clone()]);
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
    let (_, drifts) = written(&adopted, &drifts, &Plan { clear_accept: vec![], ..plan });
    let finish = run(&adopted, Some(&r), &drifts, at(6));
    assert_eq!(finish.clear_accept, [drifts[0].name_any()]);
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
    assert_eq!(plan.clear_accept.len(), 1);
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
fn an_invalid_spec_gets_a_clear_condition_and_no_drifts() {
    let mut p = provisioned(json!({"size_slug": "x"}));
    p.spec.resource_ref.name = "Not_A/Name".into();
    let plan = run(&p, None, &[], at(1));
    assert!(plan.drift_writes.is_empty());
    let c = condition(plan.status.as_ref().unwrap(), CONDITION_IN_SYNC).clone();
    assert_eq!((c.status.as_str(), c.reason.as_str()), ("Unknown", "InvalidSpec"));
    assert!(c.message.contains("\"Not_A/Name\" is not a valid CloudResource name"), "{}", c.message);
}
