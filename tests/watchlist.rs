//! Initial lists streamed where the API server can (`sendInitialEvents`, the
//! WatchList feature) and paged where it cannot, decided at run time: the
//! controller detects drift either way. The second path runs on a control
//! plane of its own with `--feature-gates=WatchList=false`.

mod common;

use common::controller::ControllerProcess;
use common::own_plane::ControlPlane;
use serde_json::json;
use std::time::Duration;

async fn a_drift_is_found(client: &kube::Client, ns: &str) {
    let resource = format!("digitalocean-droplet-watchlist-{ns}");
    common::mirror_droplet(client, &resource, "s-2vcpu-4gb", None).await;
    common::provision(client, ns, "web-1", &resource, json!({"size_slug": "s-1vcpu-1gb"})).await;
    let drifts: kube::Api<arcadia_drift::api::Drift> = kube::Api::namespaced(client.clone(), ns);
    common::eventually(Duration::from_secs(30), "the drift", || async {
        drifts.list(&Default::default()).await.ok()?.items.pop()
    })
    .await;
}

#[tokio::test]
async fn a_server_with_watch_list_gets_streamed_lists() {
    let client = common::client().await;
    let ns = common::namespace(&client, "watchlist").await;
    let controller = ControllerProcess::start(&ns, &[]);
    a_drift_is_found(&client, &ns).await;
    let log = controller.log_text();
    assert!(log.contains("initial lists: streamed"), "{log}");
}

#[tokio::test]
async fn a_server_without_watch_list_gets_paged_lists() {
    let cp = ControlPlane::up("--feature-gates=WatchList=false");
    let kubeconfig = kube::config::Kubeconfig::read_from(&cp.kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await.unwrap();
    let client = kube::Client::try_from(config).unwrap();
    common::install_crds(&client).await;
    let ns = common::namespace(&client, "watchlist-off").await;
    let kubeconfig = cp.kubeconfig.to_str().unwrap().to_owned();
    let controller = ControllerProcess::start_with_env(&ns, &[], &[("KUBECONFIG", &kubeconfig)]);
    a_drift_is_found(&client, &ns).await;
    let log = controller.log_text();
    assert!(log.contains("initial lists: paged"), "{log}");
}
