//! Garbage collection with the real kube-controller-manager (its garbage
//! collector and namespace controller, started by `scripts/control-plane`):
//! a CloudProvisioned's Drifts go with it through their ownerReferences, and a
//! deleted namespace empties without the controller logging errors about it.

mod common;

use arcadia_drift::api::{CloudProvisioned, Drift};
use common::controller::ControllerProcess;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, ListParams};
use serde_json::json;
use std::time::Duration;

async fn drifted(client: &kube::Client, ns: &str, name: &str) {
    let resource = format!("digitalocean-droplet-gc-{ns}-{name}");
    common::mirror_droplet(client, &resource, "s-2vcpu-4gb", None).await;
    common::provision(client, ns, name, &resource, json!({"size_slug": "s-1vcpu-1gb", "region": "nyc3"})).await;
}

async fn drift_count(client: &kube::Client, ns: &str) -> Option<usize> {
    Some(Api::<Drift>::namespaced(client.clone(), ns).list(&ListParams::default()).await.ok()?.items.len())
}

#[tokio::test]
async fn deleting_a_cloud_provisioned_removes_its_drifts() {
    let client = common::client().await;
    let ns = common::namespace(&client, "gc").await;
    drifted(&client, &ns, "web-1").await;
    drifted(&client, &ns, "web-2").await;
    let controller = ControllerProcess::start(&ns, &[]);
    common::eventually(
        Duration::from_secs(30),
        "two drifts (each object's region is unknown live, size drifted)",
        || async { (drift_count(&client, &ns).await? >= 2).then_some(()) },
    )
    .await;
    let before = controller.log_text().len();
    Api::<CloudProvisioned>::namespaced(client.clone(), &ns).delete("web-1", &DeleteParams::default()).await.unwrap();
    let drifts: Api<Drift> = Api::namespaced(client.clone(), &ns);
    common::eventually(Duration::from_secs(60), "web-1's drifts collected, web-2's kept", || async {
        let left = drifts.list(&ListParams::default()).await.ok()?.items;
        let owners: Vec<String> = left.iter().map(|d| d.spec.provisioned_ref.name.clone()).collect();
        (!owners.is_empty() && owners.iter().all(|o| o == "web-2")).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let log = controller.log_text()[before..].to_owned();
    assert!(!log.contains("reconcile failed"), "no failed reconcile while the garbage collector works:\n{log}");
}

#[tokio::test]
async fn deleting_a_namespace_removes_everything_in_it_and_the_controller_logs_no_errors() {
    let client = common::client().await;
    let ns = common::namespace(&client, "gc-ns").await;
    let lease = common::namespace(&client, "gc-lease").await;
    drifted(&client, &ns, "web-1").await;
    let controller = ControllerProcess::start_with_env(&ns, &[], &[("POD_NAMESPACE", &lease)]);
    common::eventually(Duration::from_secs(30), "the drift", || async {
        (drift_count(&client, &ns).await? >= 1).then_some(())
    })
    .await;

    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces.delete(&ns, &DeleteParams::default()).await.unwrap();
    common::eventually(Duration::from_secs(120), "the namespace gone", || async {
        matches!(namespaces.get_opt(&ns).await, Ok(None)).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let log = controller.log_text();
    let errors: Vec<&str> = log.lines().filter(|l| l.contains(" WARN ") || l.contains(" ERROR ")).collect();
    assert!(errors.is_empty(), "the controller logged errors about a namespace being deleted:\n{}", errors.join("\n"));
    assert!(controller.get("/healthz").is_some(), "and it still runs");
}
