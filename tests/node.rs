//! The chart as users run it: `helm install` onto a real node (containerd and
//! a kubelet from `scripts/control-plane up --node`, on a control plane of the
//! test's own), with the image built here by `scripts/image` around the
//! suite's binary and loaded into the node. Two replicas, one leader; drift
//! detected and accepted through the pods; the leader's pod deleted and the
//! other taking over; `helm upgrade` rolling the pods with the
//! PodDisruptionBudget's minimum kept; `helm uninstall` leaving the CRDs and
//! the user's objects.

mod common;

use arcadia_drift::api::{ANNOTATION_ACCEPT, ANNOTATION_ACCEPTED_BY, CloudProvisioned, Drift, DriftPhase};
use common::own_plane::ControlPlane;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const IMAGE: &str = "localhost/arcadia-drift:node-test";
const RELEASE_NS: &str = "arcadia-system";
const LEASE_SECONDS: u64 = 6;

/// Removes the test's image from podman however the test ends (the node's
/// copy goes with the control plane).
struct ImageGuard;

impl Drop for ImageGuard {
    fn drop(&mut self) {
        let _ = Command::new(common::repo_root().join("scripts/podman")).args(["rmi", "-f", IMAGE]).output();
    }
}

fn helm_args<'a>(plane: &'a ControlPlane, verb: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![verb, "arcadia-drift"];
    if verb != "uninstall" {
        args.push("charts/arcadia-drift");
    }
    args.extend(["--namespace", RELEASE_NS, "--kubeconfig", plane.kubeconfig.to_str().unwrap()]);
    args.extend_from_slice(extra);
    args
}

const VALUES: &[&str] = &[
    "--set",
    "image.repository=localhost/arcadia-drift",
    "--set",
    "image.tag=node-test",
    "--set",
    "image.pullPolicy=Never",
    "--set",
    "leaderElection.leaseDuration=6s",
    "--set",
    "resyncInterval=10s",
    // The test's user is the admin token's (group system:masters).
    "--set",
    "acceptPolicy.group=system:masters",
];

async fn pods(client: &Client) -> Vec<Pod> {
    let list = Api::<Pod>::namespaced(client.clone(), RELEASE_NS)
        .list(&ListParams::default().labels("app.kubernetes.io/name=arcadia-drift"))
        .await
        .expect("listing the release's pods");
    list.items.into_iter().filter(|p| p.metadata.deletion_timestamp.is_none()).collect()
}

fn ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// `GET http://<pod IP>:8080<path>`: the node's pods are on a bridge the host routes to.
fn pod_get(pod: &Pod, path: &str) -> Option<String> {
    let ip = pod.status.as_ref()?.pod_ip.as_deref()?;
    let out =
        Command::new("curl").args(["-fsS", "--max-time", "2", &format!("http://{ip}:8080{path}")]).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn is_leader(pod: &Pod) -> bool {
    pod_get(pod, "/metrics").is_some_and(|m| m.lines().any(|l| l == "arcadia_drift_leader 1"))
}

/// The one Ready pod that leads; `None` while there is not exactly one.
async fn the_leader(client: &Client) -> Option<Pod> {
    let all = pods(client).await;
    let leaders: Vec<Pod> = all.into_iter().filter(|p| ready(p) && is_leader(p)).collect();
    (leaders.len() == 1).then(|| leaders.into_iter().next().unwrap())
}

/// The node's controller processes, seen from the host: pid, `/proc/<pid>/status`
/// and the line of `/proc/<pid>/mountinfo` for the container's root.
fn controller_processes() -> Vec<(u32, String, String)> {
    let found: Vec<(u32, String, String)> = std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
            let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).ok()?;
            (cgroup.contains("kubepods") && cmdline.starts_with("/usr/local/bin/arcadia-drift")).then_some(pid)?;
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
            let mounts = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).ok()?;
            let root = mounts.lines().find(|l| l.split_whitespace().nth(4) == Some("/"))?.to_owned();
            Some((pid, status, root))
        })
        .collect();
    assert_eq!(found.len(), 2, "two controller processes in the node's pods");
    found
}

#[tokio::test]
async fn the_chart_on_a_node_elects_one_leader_detects_fails_over_rolls_and_uninstalls() {
    let plane = ControlPlane::up_node();
    let client = plane.client().await;
    let _image = ImageGuard;
    let binary = env!("CARGO_BIN_EXE_arcadia-drift");
    let built = Command::new(common::repo_root().join("scripts/image"))
        .arg(IMAGE)
        .env("ARCADIA_IMAGE_BINARY", binary)
        .output()
        .expect("run scripts/image");
    assert!(built.status.success(), "scripts/image: {}", String::from_utf8_lossy(&built.stderr));
    plane.ok("control-plane", &["load-image", IMAGE]);

    // Install: both pods Ready, exactly one leader.
    let mut install = helm_args(&plane, "install", &["--create-namespace", "--wait", "--timeout", "5m"]);
    install.extend_from_slice(VALUES);
    plane.ok("helm", &install);
    common::eventually(Duration::from_secs(120), "two Ready pods, one of them leading", || async {
        let all = pods(&client).await;
        (all.len() == 2 && all.iter().all(ready) && all.iter().filter(|p| is_leader(p)).count() == 1).then_some(())
    })
    .await;

    // Awaited, not read once: a read of 2 s at most can miss on a loaded node.
    let one_of_each = |r: &Vec<String>| {
        r.iter().filter(|r| r.contains("leading")).count() == 1 && r.iter().any(|r| r.contains("standby"))
    };
    let readyz = common::eventually(Duration::from_secs(30), "/readyz: one leading, one standby", || async {
        let all = pods(&client).await;
        let readyz: Vec<String> = all.iter().filter_map(|p| pod_get(p, "/readyz")).collect();
        one_of_each(&readyz).then_some(readyz)
    })
    .await;
    assert!(one_of_each(&readyz), "/readyz: one leading, one standby: {readyz:?}");
    for (pid, status, root) in controller_processes() {
        let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap_or_default();
        assert!(uid.split_whitespace().skip(1).all(|u| u == "65532"), "pod process {pid} runs as 65532: {uid}");
        assert!(
            root.split_whitespace().nth(5).is_some_and(|o| o.split(',').any(|f| f == "ro")),
            "read-only root: {root}"
        );
    }

    // Detection and accept, through the pods.
    let ns = common::namespace(&client, "node").await;
    common::mirror_droplet(&client, "node-web", "s-2vcpu-4gb", Some("nyc3")).await;
    common::provision(&client, &ns, "web", "node-web", json!({"size_slug": "s-1vcpu-1gb", "region": "nyc3"})).await;
    let drifts: Api<Drift> = Api::namespaced(client.clone(), &ns);
    // The actor is the admin token's user: the admission policy requires it before Kubernetes 1.36.
    let drift = common::eventually(Duration::from_secs(60), "a Drift from the pods", || async {
        drifts.list(&ListParams::default()).await.ok()?.items.into_iter().next()
    })
    .await;
    drifts
        .patch(
            &drift.name_any(),
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"annotations": {ANNOTATION_ACCEPT: "true", ANNOTATION_ACCEPTED_BY: "admin"}}}),
            ),
        )
        .await
        .expect("accepting the drift");
    let provisioned: Api<CloudProvisioned> = Api::namespaced(client.clone(), &ns);
    common::eventually(Duration::from_secs(60), "the accept carried out by the leader", || async {
        let d = drifts.get(&drift.name_any()).await.ok()?;
        let accepted = d.status.as_ref().is_some_and(|s| s.phase == DriftPhase::Accepted);
        let p = provisioned.get("web").await.ok()?;
        (accepted && p.spec.desired.get("size_slug") == Some(json!("s-2vcpu-4gb"))).then_some(())
    })
    .await;

    // Failover: the leader's pod deleted, the other leads within the lease duration.
    let leader = common::eventually(Duration::from_secs(30), "one leader", || the_leader(&client)).await;
    let deleted_at = Instant::now();
    Api::<Pod>::namespaced(client.clone(), RELEASE_NS)
        .delete(&leader.name_any(), &DeleteParams::default())
        .await
        .expect("deleting the leader's pod");
    let leases: Api<Lease> = Api::namespaced(client.clone(), RELEASE_NS);
    let takeover = common::eventually(Duration::from_secs(60), "the other replica leading", || async {
        let holder =
            leases.list(&ListParams::default()).await.ok()?.items.into_iter().find_map(|l| l.spec?.holder_identity)?;
        let new = the_leader(&client).await?;
        (new.name_any() != leader.name_any() && holder.contains(&new.name_any())).then(|| deleted_at.elapsed())
    })
    .await;
    eprintln!("failover: the other replica led {:.1}s after the leader's pod was deleted", takeover.as_secs_f64());
    // A released lease is taken at once; an unreleased one once it expires
    // (6 s) and the standby tries again (every 2 s), plus time to observe.
    assert!(
        takeover <= Duration::from_secs(LEASE_SECONDS + 5),
        "took over within the lease duration (+5 s to observe): {takeover:?}"
    );

    // Upgrade with a changed value: the pods roll, never below the PDB's minimum.
    common::eventually(Duration::from_secs(120), "two Ready pods again", || async {
        let all = pods(&client).await;
        (all.len() == 2 && all.iter().all(ready)).then_some(())
    })
    .await;
    let before: Vec<String> = pods(&client).await.iter().map(|p| p.name_any()).collect();
    let (sampler, rolled) = (client.clone(), Arc::new(AtomicBool::new(false)));
    let done = rolled.clone();
    let sampling = tokio::spawn(async move {
        let mut fewest = usize::MAX;
        while !done.load(Ordering::SeqCst) {
            fewest = fewest.min(pods(&sampler).await.iter().filter(|p| ready(p)).count());
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        fewest
    });
    let mut upgrade = helm_args(&plane, "upgrade", &["--wait", "--timeout", "5m"]);
    upgrade.extend_from_slice(VALUES);
    upgrade.extend(["--set", "resyncInterval=20s"]);
    plane.ok("helm", &upgrade);
    common::eventually(Duration::from_secs(120), "two new Ready pods", || async {
        let all = pods(&client).await;
        (all.len() == 2 && all.iter().all(ready) && all.iter().all(|p| !before.contains(&p.name_any()))).then_some(())
    })
    .await;
    rolled.store(true, Ordering::SeqCst);
    let fewest = sampling.await.expect("the sampler");
    eprintln!("upgrade: at least {fewest} Ready pods at every sample during the rollout");
    assert!(fewest >= 1, "the PodDisruptionBudget's minAvailable (1) held through the rollout");

    // Uninstall: the CRDs and the user's objects stay.
    plane.ok("helm", &helm_args(&plane, "uninstall", &["--wait"]));
    assert!(provisioned.get("web").await.is_ok(), "the CloudProvisioned survives helm uninstall");
    assert!(drifts.get(&drift.name_any()).await.is_ok(), "the Drift survives helm uninstall");
    let crds = plane.ok("kubectl", &["get", "crd", "-o", "name"]);
    for kind in ["cloudprovisioneds", "cloudresources", "drifts", "driftpolicies"] {
        assert!(crds.contains(&format!("{kind}.arcadia.cloud")), "the {kind} CRD is kept:\n{crds}");
    }
}
