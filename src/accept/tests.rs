use super::*;
use crate::api::{CloudProvisionedSpec, ResourceRef};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry, Time};
use serde_json::json;

fn cprov() -> CloudProvisioned {
    CloudProvisioned::new(
        "web-1",
        CloudProvisionedSpec {
            resource_ref: ResourceRef { name: "do-1".into() },
            desired: Fields::try_from(json!({"size_slug": "s-1vcpu-1gb", "region": "nyc3"})).unwrap(),
            ..Default::default()
        },
    )
}

fn managed(manager: &str, fields: Value, second: i64) -> ManagedFieldsEntry {
    ManagedFieldsEntry {
        manager: Some(manager.into()),
        operation: Some("Apply".into()),
        fields_v1: Some(FieldsV1(fields)),
        time: Some(Time(k8s_openapi::jiff::Timestamp::from_second(1_800_000_000 + second).unwrap())),
        ..Default::default()
    }
}

fn pending(value: Value, spec_value: Value) -> PendingGitChange {
    PendingGitChange {
        field: "size_slug".into(),
        value,
        drift: "web-1-size-slug-1".into(),
        accepted_by: "alice".into(),
        accepted_time: crate::api::now(),
        spec_value,
    }
}

#[test]
fn auto_is_overlay_under_a_gitops_tool_and_spec_otherwise() {
    let settings = AcceptSettings::default();
    let mut p = cprov();
    assert_eq!(choose_mode(&p, &settings).unwrap().mode, AcceptMode::Spec);

    p.metadata.managed_fields = Some(vec![managed("kustomize-controller", json!({}), 0)]);
    let choice = choose_mode(&p, &settings).unwrap();
    assert_eq!(choice.mode, AcceptMode::Overlay);
    assert!(choice.why.contains("kustomize-controller"), "{}", choice.why);

    let mut argo = cprov();
    argo.annotations_mut().insert(ARGOCD_TRACKING_ID.into(), "app:arcadia.cloud/CloudProvisioned:ns/web-1".into());
    assert_eq!(choose_mode(&argo, &settings).unwrap().mode, AcceptMode::Overlay);

    let mut flux = cprov();
    flux.labels_mut().insert("helm.toolkit.fluxcd.io/name".into(), "infra".into());
    assert!(choose_mode(&flux, &settings).unwrap().why.contains("Flux"));
}

#[test]
fn the_annotation_wins_over_the_flag_and_a_typo_is_an_error() {
    let settings = AcceptSettings { default_mode: AcceptMode::Overlay, ..Default::default() };
    let mut p = cprov();
    assert_eq!(choose_mode(&p, &settings).unwrap().mode, AcceptMode::Overlay);
    p.annotations_mut().insert(ANNOTATION_ACCEPT_MODE.into(), "spec".into());
    let choice = choose_mode(&p, &settings).unwrap();
    assert_eq!(
        (choice.mode, choice.why.as_str()),
        (AcceptMode::Spec, "set by the arcadia.cloud/accept-mode annotation")
    );
    p.annotations_mut().insert(ANNOTATION_ACCEPT_MODE.into(), "overlayy".into());
    let error = choose_mode(&p, &settings).unwrap_err().to_string();
    assert_eq!(
        error,
        "arcadia.cloud/accept-mode \"overlayy\" on CloudProvisioned web-1 is not one of spec, overlay, auto"
    );
}

#[test]
fn a_pending_value_merges_waits_or_is_superseded() {
    let spec = |v: Value| Fields::try_from(json!({ "size_slug": v })).unwrap();
    let entry = pending(json!("s-2vcpu-4gb"), json!("s-1vcpu-1gb"));
    assert_eq!(settle(&entry, &spec(json!("s-1vcpu-1gb"))), Settled::Pending);
    assert_eq!(settle(&entry, &spec(json!("s-2vcpu-4gb"))), Settled::Merged);
    assert_eq!(settle(&entry, &spec(json!("s-4vcpu-8gb"))), Settled::Superseded);
    assert_eq!(settle(&entry, &Fields::try_from(json!({"region": "nyc3"})).unwrap()), Settled::Superseded);
    // Loose equality, as everywhere: 2 and "2" are the same value.
    let numeric = PendingGitChange { value: json!(2), spec_value: json!(1), ..entry };
    assert_eq!(settle(&numeric, &spec(json!("2"))), Settled::Merged);
}

#[test]
fn field_owners_prefer_the_latest_other_manager() {
    let mut p = cprov();
    let desired = |keys: &[&str]| {
        let fields: serde_json::Map<String, Value> = keys.iter().map(|k| (format!("f:{k}"), json!({}))).collect();
        json!({"f:spec": {"f:desired": fields}})
    };
    p.metadata.managed_fields = Some(vec![
        managed(FIELD_MANAGER, desired(&["size_slug"]), 30),
        managed("kubectl", desired(&["region", "size_slug"]), 10),
        managed("kustomize-controller", desired(&["size_slug"]), 20),
    ]);
    let owners = field_owners(&p);
    assert_eq!(owners["size_slug"], "kustomize-controller");
    assert_eq!(owners["region"], "kubectl");
}

#[test]
fn commit_lines_quote_what_yaml_would_misread() {
    assert_eq!(commit_line("size_slug", &json!("s-2vcpu-4gb")), "spec.desired.size_slug: s-2vcpu-4gb");
    for (value, shown) in [
        (json!("on"), "\"on\""),
        (json!("1.0"), "\"1.0\""),
        (json!("0755"), "\"0755\""),
        (json!(""), "\"\""),
        (json!(2), "2"),
        (json!(["a", "b"]), "[\"a\",\"b\"]"),
        (Value::Null, "null"),
    ] {
        assert_eq!(commit_line("f", &value), format!("spec.desired.f: {shown}"));
    }
}
