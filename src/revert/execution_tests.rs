use super::*;
use crate::api::{ANNOTATION_REVERTED_BY, DriftSpec, DriftStatus, FIELD_MANAGER, ProvisionedRef, ResourceRef};
use crate::detect::{FieldRules, LiveView};
use crate::revert::{preview, saga};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry};
use serde_json::json;

const DROPLET: Target<'static> = Target { provider: "digitalocean", type_: "droplet", id: "3164444" };

fn t(second: i64) -> Time {
    Time(k8s_openapi::jiff::Timestamp::from_second(1_800_000_000 + second).unwrap())
}

fn resize(size: &str) -> Preview {
    let live = LiveView { status: Some("active"), size: Some("s-2vcpu-4gb"), ..Default::default() };
    preview(DROPLET, "size_slug", &json!(size), &live, &FieldRules::default()).unwrap()
}

fn status_entry(manager: &str, fields: serde_json::Value) -> ManagedFieldsEntry {
    ManagedFieldsEntry {
        manager: Some(manager.into()),
        operation: Some("Apply".into()),
        subresource: Some("status".into()),
        fields_v1: Some(FieldsV1(json!({ "f:status": fields }))),
        ..Default::default()
    }
}

/// A Reverting drift as the reconciler leaves it after an approval of `plan`.
fn reverting(plan: &Preview, approval: Option<&str>) -> Drift {
    let spec = DriftSpec {
        provisioned_ref: ProvisionedRef { name: "web-1".into() },
        resource_ref: ResourceRef { name: "digitalocean-droplet-3164444".into() },
        field: "size_slug".into(),
    };
    let mut d = Drift::new("web-1-size-slug-1", spec);
    let mut annotations = std::collections::BTreeMap::new();
    if let Some(value) = approval {
        annotations.insert(ANNOTATION_REVERT.to_string(), value.to_string());
        annotations.insert(ANNOTATION_REVERT_ALLOW_DOWNTIME.to_string(), "true".to_string());
        annotations.insert(ANNOTATION_REVERTED_BY.to_string(), "alice".to_string());
    }
    d.metadata.annotations = Some(annotations);
    d.metadata.managed_fields = Some(vec![status_entry(FIELD_MANAGER, json!({"f:phase": {}, "f:revertPlan": {}}))]);
    d.status = Some(DriftStatus {
        phase: DriftPhase::Reverting,
        detected_time: Some(t(0)),
        revert_plan: plan.calls.clone(),
        revert_plan_digest: Some(digest(&plan.calls)),
        ..Default::default()
    });
    d
}

fn evidence<'a>(d: &'a Drift, derived: &'a Preview, now: &'a Time) -> Evidence<'a> {
    Evidence { drift: d, derived: Ok(derived), target: Some(DROPLET), claim: Ok(()), now }
}

fn refused(decision: Decision) -> String {
    match decision {
        Decision::Refuse(why) => {
            assert!(why.ends_with("nothing was sent"), "{why}");
            why
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn an_approved_plan_derived_again_runs_with_its_digest() {
    let plan = resize("s-1vcpu-1gb");
    let d = reverting(&plan, Some(&digest(&plan.calls)));
    let Decision::Run(record) = admit(&evidence(&d, &plan, &t(5))) else { panic!("not admitted") };
    let calls: Vec<&ProviderCall> = record.steps.iter().map(|s| &s.call).collect();
    assert_eq!(calls, plan.calls.iter().collect::<Vec<_>>());
    assert_eq!(record.approved_digest, Some(digest(&plan.calls)));
    assert_eq!(record.approved_by, "alice");
}

#[test]
fn a_phase_written_into_status_approves_nothing() {
    let plan = resize("s-1vcpu-1gb");
    let d = reverting(&plan, None);
    assert!(refused(admit(&evidence(&d, &plan, &t(5)))).contains("carries no approval"));
    let mut open = reverting(&plan, None);
    open.status.as_mut().unwrap().phase = DriftPhase::Open;
    assert_eq!(admit(&evidence(&open, &plan, &t(5))), Decision::Idle);
}

#[test]
fn a_forged_plan_in_status_is_refused_and_the_difference_named() {
    let plan = resize("s-1vcpu-1gb");
    let mut d = reverting(&plan, Some(&digest(&plan.calls)));
    let forged = &mut d.status.as_mut().unwrap().revert_plan;
    forged[0].path = "@127.0.0.1:9/x".into();
    forged[1].method = "DELETE".into();
    let why = refused(admit(&evidence(&d, &plan, &t(5))));
    assert!(why.contains("status.revertPlan is not the plan derived now"), "{why}");
    assert!(why.contains("step 1: POST @127.0.0.1:9/x") && why.contains("step 2: DELETE"), "{why}");
    // The digest alone forged: said so too.
    let mut d = reverting(&plan, Some(&digest(&plan.calls)));
    d.status.as_mut().unwrap().revert_plan_digest = Some("00000000000000000000000000000000".into());
    assert!(refused(admit(&evidence(&d, &plan, &t(5)))).contains("status.revertPlanDigest"));
}

#[test]
fn a_plan_that_changed_since_the_approval_is_refused() {
    let (reviewed, now) = (resize("s-1vcpu-1gb"), resize("s-32vcpu-192gb"));
    let d = reverting(&now, Some(&digest(&reviewed.calls)));
    let why = refused(admit(&evidence(&d, &now, &t(5))));
    assert!(why.contains("the plan changed since it was approved") && why.contains(&digest(&now.calls)), "{why}");
}

#[test]
fn the_claim_and_downtime_are_checked_again() {
    let (plan, now) = (resize("s-1vcpu-1gb"), t(5));
    let d = reverting(&plan, Some(&digest(&plan.calls)));
    let claim = Err(crate::revert::NotClaimed::UnknownProvider { namespace: "team-a".into() });
    let unclaimed = Evidence { claim, ..evidence(&d, &plan, &now) };
    assert!(refused(admit(&unclaimed)).contains("rule --revert-claim=tag"));
    let mut d = reverting(&plan, Some(&digest(&plan.calls)));
    d.metadata.annotations.as_mut().unwrap().remove(ANNOTATION_REVERT_ALLOW_DOWNTIME);
    assert!(refused(admit(&evidence(&d, &plan, &t(5)))).contains("revert-allow-downtime"));
    let why = super::NoPlan::Gone { object: "CloudProvisioned team-a/web-1".into() };
    let gone = Evidence { derived: Err(&why), ..evidence(&d, &plan, &now) };
    assert!(refused(admit(&gone)).contains("is gone"));
}

/// A record the reverter wrote, with its first step sent.
fn begun(plan: &Preview) -> Drift {
    let mut d = reverting(plan, None);
    let mut record = saga::start(&plan.calls, &t(0), "alice", &t(1));
    saga::sending(&mut record, 0, &t(2));
    d.status.as_mut().unwrap().revert = Some(record);
    let managed = d.metadata.managed_fields.as_mut().unwrap();
    managed.push(status_entry(REVERTER_FIELD_MANAGER, json!({"f:revert": {"f:steps": {}}})));
    d
}

#[test]
fn a_record_the_reverter_wrote_resumes_only_as_approved() {
    let plan = resize("s-1vcpu-1gb");
    let d = begun(&plan);
    assert!(matches!(admit(&evidence(&d, &plan, &t(5))), Decision::Run(_)));
    // While the approval stands, the record must be the plan it names.
    let mut approved = begun(&plan);
    let annotations = approved.metadata.annotations.as_mut().unwrap();
    annotations.insert(ANNOTATION_REVERT.into(), digest(&plan.calls));
    assert!(matches!(admit(&evidence(&approved, &plan, &t(5))), Decision::Run(_)));
    let annotations = approved.metadata.annotations.as_mut().unwrap();
    annotations.insert(ANNOTATION_REVERT.into(), "0123456789abcdef0123456789abcdef".into());
    assert!(
        refused(admit(&evidence(&approved, &plan, &t(5))))
            .contains("the approval names plan 0123456789abcdef0123456789abcdef")
    );
    // A step changed: the steps no longer hash to the approved digest.
    let mut tampered = begun(&plan);
    tampered.status.as_mut().unwrap().revert.as_mut().unwrap().steps[1].call.body["size"] = json!("s-32vcpu-192gb");
    assert!(refused(admit(&evidence(&tampered, &plan, &t(5)))).contains("not to the approved digest"));
    // Steps and digest forged together still must write to this drift's droplet.
    let mut elsewhere = begun(&plan);
    let record = elsewhere.status.as_mut().unwrap().revert.as_mut().unwrap();
    record.steps[1].call.path = "/v2/droplets/999/actions".into();
    let calls: Vec<ProviderCall> = record.steps.iter().map(|s| s.call.clone()).collect();
    record.approved_digest = Some(digest(&calls));
    assert!(refused(admit(&evidence(&elsewhere, &plan, &t(5)))).contains("does not write to droplet 3164444"));
}

/// A saga an earlier release started (its digest and approval 16 digits, the
/// first half of today's) resumes after the upgrade, so that what it began
/// (a shutdown) is finished or compensated; another 16 digits does not.
#[test]
fn a_saga_started_before_the_128_bit_digest_resumes_after_the_upgrade() {
    let plan = resize("s-1vcpu-1gb");
    let old = digest(&plan.calls)[..16].to_owned();
    let mut d = begun(&plan);
    d.status.as_mut().unwrap().revert.as_mut().unwrap().approved_digest = Some(old.clone());
    d.metadata.annotations.as_mut().unwrap().insert(ANNOTATION_REVERT.into(), old);
    assert!(matches!(admit(&evidence(&d, &plan, &t(5))), Decision::Run(_)));
    d.status.as_mut().unwrap().revert.as_mut().unwrap().approved_digest = Some("0123456789abcdef".into());
    assert!(refused(admit(&evidence(&d, &plan, &t(5)))).contains("not to the approved digest"));
}

#[test]
fn a_record_written_by_another_field_manager_is_never_run() {
    let plan = resize("s-1vcpu-1gb");
    let mut d = begun(&plan);
    d.metadata.managed_fields.as_mut().unwrap().push(status_entry("tenant-bot", json!({"f:revert": {"f:steps": {}}})));
    let why = refused(admit(&evidence(&d, &plan, &t(5))));
    assert!(why.contains("status.revert was written by tenant-bot"), "{why}");
}
