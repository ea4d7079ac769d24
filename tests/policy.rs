//! Drift policy against the real API server and controller: ignore rules on
//! a DOKS cluster's autoscaled node count and its `k8s:*` tags, a DriftPolicy
//! added later (and removed), snooze and ignore annotations, severities, and
//! the refusals of bad rules.

mod common;

use arcadia_drift::api::{
    CloudProvisioned, CloudResource, CloudResourceSpec, CloudResourceStatus, Drift, DriftPhase, DriftPolicy, Fields,
    now,
};
use common::controller::ControllerProcess;
use common::eventually;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);
const TWO_RESYNCS: Duration = Duration::from_secs(7);

async fn cluster(client: &Client, count: i64, tags: &[&str]) -> String {
    let id = common::unique_suffix();
    let name = format!("digitalocean-kubernetes-cluster-{id}");
    let api: Api<CloudResource> = Api::all(client.clone());
    let spec =
        CloudResourceSpec { provider: "digitalocean".into(), type_: "kubernetes_cluster".into(), id, region: None };
    api.create(&PostParams::default(), &CloudResource::new(&name, spec)).await.unwrap();
    set_cluster(client, &name, count, tags).await;
    name
}

async fn set_cluster(client: &Client, name: &str, count: i64, tags: &[&str]) {
    let status = CloudResourceStatus {
        name: Some("prod".into()),
        region: Some("nyc3".into()),
        tags: Some(tags.iter().map(|t| t.to_string()).collect()),
        attrs: Some(
            Fields::try_from(json!({"node_pools": [{"name": "pool-1", "size": "s-2vcpu-4gb", "count": count}]}))
                .unwrap(),
        ),
        synced_time: Some(now()),
        ..Default::default()
    };
    let body = json!({"apiVersion": "arcadia.cloud/v1alpha1", "kind": "CloudResource", "status": status});
    Api::<CloudResource>::all(client.clone())
        .patch_status(name, &PatchParams::apply("test-syncer").force(), &Patch::Apply(body))
        .await
        .unwrap();
}

async fn apply_provisioned(client: &Client, ns: &str, spec: Value) -> Result<CloudProvisioned, kube::Error> {
    let body = json!({"apiVersion": "arcadia.cloud/v1alpha1", "kind": "CloudProvisioned", "metadata": {"name": "prod"}, "spec": spec});
    Api::<CloudProvisioned>::namespaced(client.clone(), ns)
        .patch("prod", &PatchParams::apply("gitops"), &Patch::Apply(body))
        .await
}

async fn drift(client: &Client, ns: &str, field: &str) -> Option<Drift> {
    let all = Api::<Drift>::namespaced(client.clone(), ns).list(&ListParams::default()).await.unwrap().items;
    all.into_iter().find(|d| d.spec.field == field)
}

async fn phase_of(client: &Client, ns: &str, field: &str) -> Option<DriftPhase> {
    drift(client, ns, field).await.and_then(|d| d.status.map(|s| s.phase))
}

async fn wait_phase(client: &Client, ns: &str, field: &str, want: DriftPhase) -> Drift {
    eventually(WAIT, &format!("{field} {want}"), || async {
        drift(client, ns, field).await.filter(|d| d.status.as_ref().is_some_and(|s| s.phase == want))
    })
    .await
}

async fn annotate(client: &Client, ns: &str, drift: &str, pairs: Value) {
    Api::<Drift>::namespaced(client.clone(), ns)
        .patch(drift, &PatchParams::default(), &Patch::Merge(json!({"metadata": {"annotations": pairs}})))
        .await
        .unwrap();
}

fn desired() -> Value {
    json!({"tags": ["prod"], "node_pools": [{"name": "pool-1", "size": "s-2vcpu-4gb", "count": 3}]})
}

#[tokio::test]
async fn the_api_server_refuses_ignore_rules_without_reason_or_with_a_bad_path() {
    let client = common::client().await;
    let ns = common::namespace(&client, "policy-cel").await;
    let res = cluster(&client, 3, &["prod"]).await;
    let spec = |rule: Value| json!({"resourceRef": {"name": res}, "desired": desired(), "ignore": [rule]});
    let error = apply_provisioned(&client, &ns, spec(json!({"field": "tags", "reason": " "}))).await.unwrap_err();
    assert!(error.to_string().contains("an ignore rule needs a reason"), "{error}");
    let error = apply_provisioned(&client, &ns, spec(json!({"field": "tags", "reason": "r", "paths": ["count"]})))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("ignore paths are JSON pointers"), "{error}");
    let error = apply_provisioned(&client, &ns, spec(json!({"field": "tags"}))).await.unwrap_err();
    assert!(error.to_string().contains("reason"), "{error}");
}

#[tokio::test]
async fn an_autoscaled_node_count_never_opens_a_drift_and_the_ignore_is_counted() {
    let client = common::client().await;
    let ns = common::namespace(&client, "policy-doks").await;
    let res = cluster(&client, 5, &["prod", "k8s", "k8s:0f4c"]).await;
    let spec = json!({
        "resourceRef": {"name": res},
        "desired": desired(),
        "ignore": [
            {"field": "node_pools", "paths": ["/*/count"], "reason": "the cluster autoscaler owns the count"},
            {"field": "tags", "values": ["k8s", "k8s:*"], "reason": "DOKS tags its clusters"},
        ],
    });
    apply_provisioned(&client, &ns, spec).await.unwrap();
    let controller = ControllerProcess::start(&ns, &[]);
    let p = eventually(WAIT, "the first check", || async {
        let p = Api::<CloudProvisioned>::namespaced(client.clone(), &ns).get("prod").await.ok()?;
        (!p.status.as_ref()?.ignored_differences.is_empty()).then_some(p)
    })
    .await;
    let ignored: Vec<String> = p.status.unwrap().ignored_differences.iter().map(|d| d.rule.clone()).collect();
    assert_eq!(ignored, ["spec.ignore[0]", "spec.ignore[1]"]);
    set_cluster(&client, &res, 7, &["prod", "k8s", "k8s:0f4c", "k8s:worker"]).await;
    tokio::time::sleep(TWO_RESYNCS).await;
    assert!(drift(&client, &ns, "node_pools").await.is_none() && drift(&client, &ns, "tags").await.is_none());
    assert!(controller.metric("arcadia_drift_ignored_differences{rule=\"spec.ignore[0]\"}") >= 1.0);

    // A resized pool is real drift.
    let resized = json!([{"name": "pool-1", "size": "s-4vcpu-8gb", "count": 3}]);
    let status = json!({"attrs": {"node_pools": resized}, "syncedTime": now().0.to_string()});
    Api::<CloudResource>::all(client.clone())
        .patch_status(&res, &PatchParams::default(), &Patch::Merge(json!({"status": status})))
        .await
        .unwrap();
    wait_phase(&client, &ns, "node_pools", DriftPhase::Open).await;
}

#[tokio::test]
async fn a_policy_added_later_ignores_open_drifts_and_its_removal_reopens_them() {
    let client = common::client().await;
    let ns = common::namespace(&client, "policy-later").await;
    let res = cluster(&client, 3, &["prod", "k8s:0f4c"]).await;
    apply_provisioned(&client, &ns, json!({"resourceRef": {"name": res}, "desired": desired()})).await.unwrap();
    let _controller = ControllerProcess::start(&ns, &[]);
    let open = wait_phase(&client, &ns, "tags", DriftPhase::Open).await;
    assert_eq!(open.labels().get("arcadia.cloud/severity").map(String::as_str), Some("warning"));

    let name = format!("doks-tags-{}", &common::unique_suffix()[..6]);
    let policies: Api<DriftPolicy> = Api::all(client.clone());
    let policy = json!({
        "apiVersion": "arcadia.cloud/v1alpha1", "kind": "DriftPolicy", "metadata": {"name": name},
        "spec": {
            "selector": {"namespaces": [ns], "type": "kubernetes_cluster"},
            "ignore": [{"field": "tags", "values": ["k8s:*"], "reason": "DOKS tags its clusters"}],
            "severity": {"tags": "critical"},
        },
    });
    policies.patch(&name, &PatchParams::apply("platform"), &Patch::Apply(&policy)).await.unwrap();
    let ignored = wait_phase(&client, &ns, "tags", DriftPhase::Ignored).await;
    let status = ignored.status.as_ref().unwrap();
    assert_eq!(status.message.as_deref(), Some(format!("Ignored by policy {name} (DOKS tags its clusters)").as_str()));
    assert_eq!(ignored.labels().get("arcadia.cloud/severity").map(String::as_str), Some("critical"));
    let p = Api::<CloudProvisioned>::namespaced(client.clone(), &ns).get("prod").await.unwrap();
    assert_eq!(p.status.unwrap().policies, std::slice::from_ref(&name));
    let valid = eventually(WAIT, "the policy's Valid condition", || async {
        policies.get(&name).await.ok()?.status?.conditions.into_iter().find(|c| c.type_ == "Valid")
    })
    .await;
    assert_eq!(valid.status, "True");

    policies.delete(&name, &DeleteParams::default()).await.unwrap();
    let reopened = wait_phase(&client, &ns, "tags", DriftPhase::Open).await;
    assert_eq!(reopened.status.unwrap().history[0].phase, DriftPhase::Ignored);
}

#[tokio::test]
async fn an_invalid_policy_says_so_and_the_others_keep_working() {
    let client = common::client().await;
    let policies: Api<DriftPolicy> = Api::all(client.clone());
    let name = format!("bad-{}", &common::unique_suffix()[..6]);
    let ns = common::namespace(&client, "policy-bad").await;
    let policy = json!({
        "apiVersion": "arcadia.cloud/v1alpha1", "kind": "DriftPolicy", "metadata": {"name": name},
        "spec": {"selector": {"namespaces": [ns], "labelSelector": {"matchExpressions": [{"key": "tier", "operator": "In"}]}}},
    });
    policies.patch(&name, &PatchParams::apply("platform"), &Patch::Apply(&policy)).await.unwrap();
    let res = cluster(&client, 3, &["prod"]).await;
    apply_provisioned(&client, &ns, json!({"resourceRef": {"name": res}, "desired": {"tags": ["prod"]}}))
        .await
        .unwrap();
    let _controller = ControllerProcess::start(&ns, &[]);
    let valid = eventually(WAIT, "the policy's Valid condition", || async {
        policies.get(&name).await.ok()?.status?.conditions.into_iter().find(|c| c.type_ == "Valid")
    })
    .await;
    assert_eq!((valid.status.as_str(), valid.reason.as_str()), ("False", "Invalid"));
    assert!(valid.message.contains("operator In on \"tier\" needs values"), "{}", valid.message);
    let p = eventually(WAIT, "the object checked", || async {
        let p = Api::<CloudProvisioned>::namespaced(client.clone(), &ns).get("prod").await.ok()?;
        p.status.is_some().then_some(p)
    })
    .await;
    assert!(p.status.unwrap().policies.is_empty(), "the invalid policy is left out");
    policies.delete(&name, &DeleteParams::default()).await.unwrap();
}

#[tokio::test]
async fn snooze_ends_on_time_and_an_ignored_drift_reopens_on_a_new_value() {
    let client = common::client().await;
    let ns = common::namespace(&client, "policy-snooze").await;
    let res = cluster(&client, 3, &["prod", "extra"]).await;
    apply_provisioned(&client, &ns, json!({"resourceRef": {"name": res}, "desired": {"tags": ["prod"]}}))
        .await
        .unwrap();
    let _controller = ControllerProcess::start(&ns, &[]);
    let open = wait_phase(&client, &ns, "tags", DriftPhase::Open).await;

    annotate(&client, &ns, &open.name_any(), json!({"arcadia.cloud/snooze-until": "next week"})).await;
    let refused = eventually(WAIT, "the refusal", || async {
        let d = drift(&client, &ns, "tags").await?;
        let message = d.status?.message?;
        (!d.metadata.annotations.unwrap_or_default().contains_key("arcadia.cloud/snooze-until")).then_some(message)
    })
    .await;
    assert!(
        refused.contains("snooze refused: arcadia.cloud/snooze-until \"next week\" is not an RFC 3339 time"),
        "{refused}"
    );
    assert_eq!(phase_of(&client, &ns, "tags").await, Some(DriftPhase::Open), "nothing changed");

    let until = k8s_openapi::jiff::Timestamp::from_second(now().0.as_second() + 4).unwrap();
    annotate(&client, &ns, &open.name_any(), json!({"arcadia.cloud/snooze-until": until.to_string()})).await;
    wait_phase(&client, &ns, "tags", DriftPhase::Snoozed).await;
    let reopened = wait_phase(&client, &ns, "tags", DriftPhase::Open).await;
    assert!(now().0.as_second() <= until.as_second() + 7, "Open again within a resync of the snooze's end");
    assert!(reopened.status.unwrap().snoozed_until.is_none());

    annotate(
        &client,
        &ns,
        &open.name_any(),
        json!({"arcadia.cloud/ignore": "true", "arcadia.cloud/ignore-reason": "a load test this week"}),
    )
    .await;
    wait_phase(&client, &ns, "tags", DriftPhase::Ignored).await;
    set_cluster(&client, &res, 3, &["prod", "extra", "more"]).await;
    let again = wait_phase(&client, &ns, "tags", DriftPhase::Open).await;
    assert_eq!(again.status.unwrap().actual, json!(["prod", "extra", "more"]));
}
