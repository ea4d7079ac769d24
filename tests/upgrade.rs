//! Upgrading an install: the chart as it was released before its CRDs became
//! templates (taken from Git history), objects written with those schemas,
//! then `helm upgrade` to this chart. Runs on a control plane of its own, so
//! the older CRDs never touch the other tests' cluster.

mod common;

use common::own_plane::ControlPlane;

use common::controller::ControllerProcess;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The last landed commit whose chart installed CRDs from its crds/ folder (schema version 1, unmarked).
const RELEASED: &str = "351447fd9fd30c6ef7f3d98372768aacafc250af";

/// The chart as it was at `commit`, from Git history.
fn chart_at(commit: &str, into: &Path) -> PathBuf {
    let root = common::repo_root();
    std::fs::create_dir_all(into).unwrap();
    let archive = Command::new("git")
        .args(["archive", "--format=tar", commit, "charts/arcadia-drift"])
        .current_dir(root)
        .output()
        .unwrap();
    assert!(
        archive.status.success(),
        "the released chart must come from Git history (commit {commit}); is this a shallow clone? {}",
        String::from_utf8_lossy(&archive.stderr)
    );
    let tar = into.join("chart.tar");
    std::fs::write(&tar, archive.stdout).unwrap();
    let out = Command::new("tar").args(["-xf", tar.to_str().unwrap(), "-C", into.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "untar: {}", String::from_utf8_lossy(&out.stderr));
    into.join("charts/arcadia-drift")
}

const OBJECTS: &str = "apiVersion: arcadia.cloud/v1alpha1
kind: CloudResource
metadata: {name: digitalocean-droplet-77}
spec: {provider: digitalocean, type: droplet, id: \"77\"}
---
apiVersion: arcadia.cloud/v1alpha1
kind: CloudProvisioned
metadata: {name: web-1, namespace: team}
spec:
  resourceRef: {name: digitalocean-droplet-77}
  desired: {size_slug: s-1vcpu-1gb, region: nyc3}
";

fn controller_exit(cp: &ControlPlane) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_arcadia-drift"))
        .args(["run", "--namespace", "team", "--leader-election", "false", "--metrics-addr", "127.0.0.1:0"])
        .env("KUBECONFIG", &cp.kubeconfig)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            let mut stderr = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
            return (status.code(), stderr);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("the controller kept running against older CRDs");
}

#[tokio::test]
async fn helm_upgrade_brings_new_crds_to_an_old_install_and_keeps_everything() {
    let cp = ControlPlane::up("");
    let old_chart = chart_at(RELEASED, &cp.dir.join("released"));
    assert!(old_chart.join("crds/arcadia.cloud.yaml").is_file(), "the released chart shipped CRDs in crds/");
    cp.ok("kubectl", &["create", "namespace", "arcadia-system"]);
    cp.ok("kubectl", &["create", "namespace", "team"]);
    cp.ok("helm", &["install", "arc", old_chart.to_str().unwrap(), "-n", "arcadia-system", "--wait=false"]);
    cp.apply(&[], OBJECTS);
    cp.ok(
        "kubectl",
        &[
            "patch",
            "cloudresource",
            "digitalocean-droplet-77",
            "--subresource=status",
            "--type=merge",
            "-p",
            &format!(
                "{{\"status\": {{\"sizeSlug\": \"s-2vcpu-4gb\", \"region\": \"nyc3\", \"syncedTime\": \"{}\"}}}}",
                arcadia_drift::api::now().0
            ),
        ],
    );

    // This controller refuses the older CRDs: their schemas would drop what it writes.
    let (code, stderr) = controller_exit(&cp);
    assert_eq!(code, Some(2), "{stderr}");
    let needed = arcadia_drift::api::SCHEMA_VERSION;
    let refusal = format!(
        "the CRD cloudresources.arcadia.cloud is older than this controller (schema version 1, unmarked, this controller needs {needed})"
    );
    assert!(stderr.contains(&refusal), "{stderr}");
    assert!(stderr.contains("arcadia-drift crds | kubectl apply --server-side -f -"), "{stderr}");

    // The old schema prunes a field of the new one.
    let pending = "{\"status\": {\"pendingGitChanges\": [{\"field\": \"size_slug\", \"value\": \"s-2vcpu-4gb\", \"drift\": \"d\", \"acceptedBy\": \"alice\", \"acceptedTime\": \"2026-11-30T00:00:00Z\", \"specValue\": \"s-1vcpu-1gb\"}]}}";
    cp.ok("kubectl", &["patch", "cprov", "web-1", "-n", "team", "--subresource=status", "--type=merge", "-p", pending]);
    let before =
        cp.ok("kubectl", &["get", "cprov", "web-1", "-n", "team", "-o", "jsonpath={.status.pendingGitChanges}"]);
    assert_eq!(before, "", "the old CRD drops status.pendingGitChanges");

    // Upgrade: the chart's CRDs are templates now; --take-ownership adopts the ones the old chart's crds/ created.
    let chart = common::repo_root().join("charts/arcadia-drift");
    cp.ok(
        "helm",
        &["upgrade", "arc", chart.to_str().unwrap(), "-n", "arcadia-system", "--take-ownership", "--wait=false"],
    );
    let version = cp.ok(
        "kubectl",
        &[
            "get",
            "crd",
            "cloudprovisioneds.arcadia.cloud",
            "-o",
            "jsonpath={.metadata.annotations.arcadia\\.cloud/schema-version}",
        ],
    );
    assert_eq!(version, arcadia_drift::api::SCHEMA_VERSION.to_string());
    let desired =
        cp.ok("kubectl", &["get", "cprov", "web-1", "-n", "team", "-o", "jsonpath={.spec.desired.size_slug}"]);
    assert_eq!(desired, "s-1vcpu-1gb", "old objects are intact");
    // Written as the controller writes it: a list another field manager wrote is not trusted (accept::provenance).
    let ours = format!("--field-manager={}", arcadia_drift::api::FIELD_MANAGER);
    cp.ok(
        "kubectl",
        &["patch", "cprov", "web-1", "-n", "team", "--subresource=status", "--type=merge", &ours, "-p", pending],
    );
    let after = cp
        .ok("kubectl", &["get", "cprov", "web-1", "-n", "team", "-o", "jsonpath={.status.pendingGitChanges[0].field}"]);
    assert_eq!(after, "size_slug", "a new field persists");

    // Now the controller runs; a CRD newer than the controller (a rollback) is fine too.
    cp.ok("kubectl", &["annotate", "crd", "drifts.arcadia.cloud", "arcadia.cloud/schema-version=99", "--overwrite"]);
    let controller = ControllerProcess::start_with_env("team", &[], &[("KUBECONFIG", cp.kubeconfig.to_str().unwrap())]);
    common::eventually(Duration::from_secs(30), "the controller ready", || async {
        (controller.get("/readyz").as_deref() == Some("ok: leading")).then_some(())
    })
    .await;
    // It reads the kept overlay: the live size is the pending accepted one, so no drift, and Git is behind.
    common::eventually(Duration::from_secs(30), "the upgraded object reconciled", || async {
        let out = cp.run(
            "kubectl",
            &[
                "get",
                "cprov",
                "web-1",
                "-n",
                "team",
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"GitInSync\")].reason}",
            ],
        );
        (String::from_utf8_lossy(&out.stdout) == "AcceptedNotInGit").then_some(())
    })
    .await;
    drop(controller);

    // Uninstall keeps the CRDs and the user's objects.
    cp.ok("helm", &["uninstall", "arc", "-n", "arcadia-system"]);
    let crds = cp.ok("kubectl", &["get", "crd", "-o", "name"]);
    for name in ["cloudresources.arcadia.cloud", "cloudprovisioneds.arcadia.cloud", "drifts.arcadia.cloud"] {
        assert!(crds.contains(name), "{name} kept:\n{crds}");
    }
    let kept = cp
        .ok("kubectl", &["get", "cprov", "-n", "team", "-o", "jsonpath={.items[*].status.pendingGitChanges[0].value}"]);
    assert_eq!(kept, "s-2vcpu-4gb", "the objects and their state are kept");
}
