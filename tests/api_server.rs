//! The CRDs against a real kube-apiserver: what the schema accepts and
//! rejects, the status subresource, printer columns and selectable fields;
//! and the controller's watches across a restart of the API server.

mod common;

use arcadia_drift::api::{
    CloudProvisioned, CloudProvisionedSpec, CloudResource, CloudResourceSpec, CloudResourceStatus, Drift, DriftPhase,
    DriftSpec, DriftStatus, FIELD_MANAGER, Fields, LABEL_PHASE, LABEL_PROVISIONED, ProvisionedRef, ResourceRef, now,
};
use common::controller::ControllerProcess;
use common::own_plane::ControlPlane;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use std::time::{Duration, Instant};

fn desired(v: serde_json::Value) -> Fields {
    Fields::try_from(v).expect("an object")
}

#[tokio::test]
async fn cloud_resource_status_is_written_through_the_status_subresource() {
    let client = common::client().await;
    let api: Api<CloudResource> = Api::all(client);
    let name = format!("digitalocean-droplet-{}", common::unique_suffix());
    let mut res = CloudResource::new(
        &name,
        CloudResourceSpec { provider: "digitalocean".into(), type_: "droplet".into(), id: "42".into(), region: None },
    );
    res.status = Some(CloudResourceStatus { size_slug: Some("ignored-on-create".into()), ..Default::default() });
    let created = api.create(&PostParams::default(), &res).await.expect("create CloudResource");
    assert!(
        created.status.as_ref().and_then(|s| s.size_slug.as_ref()).is_none(),
        "status must only be written through /status"
    );

    let status = CloudResourceStatus {
        name: Some("web-1".into()),
        region: Some("nyc3".into()),
        status: Some("active".into()),
        size: Some("s-2vcpu-4gb".into()),
        size_slug: Some("s-2vcpu-4gb".into()),
        tags: Some(vec!["web".into(), "prod".into()]),
        tag_map: Some([("team".to_string(), "web".to_string())].into()),
        attrs: Some(desired(json!({"vcpus": 2, "image": "ubuntu-24-04-x64", "nested": {"a": [1, null, "x"]}}))),
        missing: false,
        synced_time: Some(now()),
    };
    let patch = json!({"apiVersion": "arcadia.cloud/v1alpha1", "kind": "CloudResource", "status": status});
    api.patch_status(&name, &PatchParams::apply(FIELD_MANAGER), &Patch::Apply(&patch)).await.expect("status apply");
    let got = api.get(&name).await.expect("get CloudResource");
    assert_eq!(got.status, Some(status), "free-form attrs must survive the API server unpruned");

    let mut changed = got.clone();
    changed.spec.id = "43".into();
    let err = api.replace(&name, &PostParams::default(), &changed).await.expect_err("spec is immutable");
    assert_invalid(err, "spec is immutable");
}

#[tokio::test]
async fn cloud_provisioned_round_trips_any_json_in_desired() {
    let client = common::client().await;
    let ns = common::namespace(&client, "api-cprov").await;
    let api: Api<CloudProvisioned> = Api::namespaced(client, &ns);
    let want = desired(
        json!({"size_slug": "s-1vcpu-1gb", "vcpus": 2, "backups": true, "tags": ["b", "a"], "disk": null, "x": {"y": 1.5}}),
    );
    let p = CloudProvisioned::new(
        "web-1",
        CloudProvisionedSpec {
            resource_ref: ResourceRef { name: "digitalocean-droplet-1".into() },
            desired: want.clone(),
            ..Default::default()
        },
    );
    let created = api.create(&PostParams::default(), &p).await.expect("create CloudProvisioned");
    assert_eq!(created.spec.desired, want);
    assert_eq!(created.metadata.generation, Some(1));
}

#[tokio::test]
async fn malformed_cloud_provisioned_is_rejected_with_a_readable_message() {
    let client = common::client().await;
    let ns = common::namespace(&client, "api-invalid").await;
    let api: Api<CloudProvisioned> = Api::namespaced(client, &ns);
    let empty = CloudProvisioned::new(
        "empty",
        CloudProvisionedSpec {
            resource_ref: ResourceRef { name: String::new() },
            desired: Default::default(),
            ..Default::default()
        },
    );
    let err = api.create(&PostParams::default(), &empty).await.expect_err("empty spec must be rejected");
    let message = assert_invalid(err, "resourceRef.name must name a CloudResource");
    assert!(message.contains("spec.desired"), "the empty desired map is named too: {message}");

    // A wrongly typed field, as a hand-written manifest could have it.
    let raw = json!({
        "apiVersion": "arcadia.cloud/v1alpha1", "kind": "CloudProvisioned",
        "metadata": {"name": "typed"},
        "spec": {"resourceRef": {"name": "r"}, "desired": "size_slug=s-1"}
    });
    let dynamic: Api<kube::api::DynamicObject> =
        Api::namespaced_with(api.clone().into_client(), &ns, &kube::api::ApiResource::erase::<CloudProvisioned>(&()));
    let obj: kube::api::DynamicObject = serde_json::from_value(raw).unwrap();
    let err = dynamic.create(&PostParams::default(), &obj).await.expect_err("a string desired must be rejected");
    assert_invalid(err, "spec.desired: Invalid value: \"string\": spec.desired in body must be of type object");
}

#[tokio::test]
async fn kubectl_shows_drift_columns_and_filters_by_phase() {
    let client = common::client().await;
    let ns = common::namespace(&client, "api-drift").await;
    let api: Api<Drift> = Api::namespaced(client, &ns);
    for (name, field, phase) in
        [("web-1-size-slug", "size_slug", DriftPhase::Open), ("web-1-tags", "tags", DriftPhase::Stale)]
    {
        let mut d = Drift::new(
            name,
            DriftSpec {
                provisioned_ref: ProvisionedRef { name: "web-1".into() },
                resource_ref: ResourceRef { name: "digitalocean-droplet-1".into() },
                field: field.into(),
            },
        );
        d.metadata.labels = Some(
            [(LABEL_PROVISIONED.to_string(), "web-1".to_string()), (LABEL_PHASE.to_string(), phase.to_string())].into(),
        );
        api.create(&PostParams::default(), &d).await.expect("create Drift");
        let status = DriftStatus {
            phase,
            expected: json!("s-1vcpu-1gb"),
            actual: json!("s-2vcpu-4gb"),
            detected_time: Some(now()),
            ..Default::default()
        };
        api.patch_status(
            name,
            &PatchParams::apply(FIELD_MANAGER),
            &Patch::Apply(json!({
                "apiVersion": "arcadia.cloud/v1alpha1", "kind": "Drift", "status": status
            })),
        )
        .await
        .expect("Drift status apply");
    }

    let table = common::kubectl_ok(&["get", "drift", "-n", &ns]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "FIELD", "EXPECTED", "ACTUAL", "PHASE", "SEVERITY", "AGE"], "{table}");
    assert!(
        table.lines().any(|l| l.split_whitespace().collect::<Vec<_>>()[..5]
            == ["web-1-size-slug", "size_slug", "s-1vcpu-1gb", "s-2vcpu-4gb", "Open"]),
        "{table}"
    );

    let open = common::kubectl_ok(&["get", "drift", "-n", &ns, "--field-selector", "status.phase=Open", "-o", "name"]);
    assert_eq!(open.trim(), "drift.arcadia.cloud/web-1-size-slug");
    let stale = common::kubectl_ok(&["get", "dft", "-n", &ns, "-l", "arcadia.cloud/phase=Stale", "-o", "name"]);
    assert_eq!(stale.trim(), "drift.arcadia.cloud/web-1-tags");

    let mut changed = api.get("web-1-tags").await.unwrap();
    changed.spec.field = "region".into();
    let err = api.replace("web-1-tags", &PostParams::default(), &changed).await.expect_err("Drift spec is immutable");
    assert_invalid(err, "spec is immutable");
}

#[tokio::test]
async fn printer_columns_of_provisioned_and_resources() {
    let _client = common::client().await;
    let cprov = common::kubectl_ok(&["get", "cprov", "-A"]);
    let header: Vec<&str> = cprov.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAMESPACE", "NAME", "RESOURCE", "IN-SYNC", "DRIFTS", "PENDING-GIT", "GENERATION", "AGE"]);
    let cres = common::kubectl_ok(&["get", "cres"]);
    let header: Vec<&str> = cres.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "PROVIDER", "TYPE", "ID", "REGION", "STATUS", "SIZE", "SYNCED", "AGE"]);
}

/// Issue 28: after kube-apiserver restarts, a live change made right after
/// the server is ready is a Drift within 15s (the documented deadline: every
/// watch resumes or relists within it). On a control plane of this test's
/// own: a restart must never hit the shared one. Prints each figure; the
/// bound is the contract, far above what it measures (docs/operations.md).
#[tokio::test]
async fn a_live_change_after_an_api_server_restart_is_a_drift_within_15s() {
    const DEADLINE: Duration = Duration::from_secs(15);
    let plane = ControlPlane::up("");
    let client = plane.client().await;
    common::install_crds(&client).await;
    let ns = common::namespace(&client, "restart").await;
    let resource = format!("digitalocean-droplet-restart-{}", common::unique_suffix());
    common::mirror_droplet(&client, &resource, "s-2vcpu-4gb", Some("nyc3")).await;
    common::provision(&client, &ns, "web-1", &resource, json!({"size_slug": "s-1vcpu-1gb"})).await;
    let kubeconfig = plane.kubeconfig.to_str().unwrap().to_owned();
    // Without leader election: a leader that cannot confirm its lease within
    // the renew deadline steps down and exits (docs/operations.md), another
    // path than the one measured here.
    let controller =
        ControllerProcess::start_with_env(&ns, &["--leader-election", "false"], &[("KUBECONFIG", &kubeconfig)]);
    let drifts: Api<Drift> = Api::namespaced(client.clone(), &ns);
    let shows = |size: String| {
        let drifts = drifts.clone();
        async move {
            let list = drifts.list(&ListParams::default().labels(&format!("{LABEL_PROVISIONED}=web-1"))).await.ok()?;
            list.items.into_iter().find(|d| d.status.as_ref().is_some_and(|s| s.actual == json!(size))).map(|_| ())
        }
    };
    common::eventually(Duration::from_secs(30), "the first drift", || shows("s-2vcpu-4gb".into())).await;

    for run in 1..=3 {
        plane.restart_apiserver();
        common::eventually(Duration::from_secs(60), "the API server's /readyz", || async {
            let readyz = http::Request::get("/readyz").body(Vec::new()).unwrap();
            client.request_text(readyz).await.ok().filter(|body| body == "ok")
        })
        .await;
        let size = format!("s-{run}vcpu-restarted");
        let changed = Instant::now();
        common::mirror_droplet(&client, &resource, &size, Some("nyc3")).await;
        let mut seen = None;
        while changed.elapsed() < Duration::from_secs(60) {
            if shows(size.clone()).await.is_some() {
                seen = Some(changed.elapsed());
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let Some(took) = seen else {
            panic!("run {run}: no Drift showed {size} within 60s of the restart; log:\n{}", controller.log_text());
        };
        println!("watch resume after API server restart: run {run}: {:.1} s", took.as_secs_f64());
        assert!(
            took < DEADLINE,
            "run {run}: {took:?}, past the {DEADLINE:?} deadline; log:\n{}",
            controller.log_text()
        );
    }
}

/// Asserts a 422 Invalid whose message contains `needle`; returns the message.
fn assert_invalid(err: kube::Error, needle: &str) -> String {
    match err {
        kube::Error::Api(status) => {
            assert_eq!(status.code, 422, "expected 422 Invalid, got {status:?}");
            assert!(status.message.contains(needle), "expected {needle:?} in {:?}", status.message);
            status.message.clone()
        }
        other => panic!("expected an API error, got {other}"),
    }
}
