//! The image, built here from the Dockerfile's intent by `scripts/image` (no
//! pull: a root filesystem from scratch with the binary, git and CA
//! certificates), run with podman against the local API server: it detects
//! drift, serves its probes, runs as uid 65532 on a read-only root.
//!
//! The suite builds the image around the debug binary it already has
//! (`ARCADIA_IMAGE_BINARY`); `scripts/image` alone uses the release one.

mod common;

use arcadia_drift::api::Drift;
use kube::api::{Api, ListParams};
use serde_json::{Value, json};
use std::process::{Command, Output};
use std::time::Duration;

const TAG: &str = "localhost/arcadia-drift:test";

fn script(name: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(common::repo_root().join("scripts").join(name))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap_or_else(|e| panic!("cannot run scripts/{name}: {e}"))
}

fn ok(out: Output, what: &str) -> String {
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{what} failed:\n{text}");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Removes the container, and the test's image, however the test ends.
struct Container(String);

impl Drop for Container {
    fn drop(&mut self) {
        let _ = script("podman", &["rm", "-f", &self.0], &[]);
        let _ = script("podman", &["rmi", "-f", TAG], &[]);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn http_get(port: u16, path: &str) -> Option<String> {
    let out = Command::new("curl")
        .args(["-fsS", "--max-time", "2", &format!("http://127.0.0.1:{port}{path}")])
        .output()
        .ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

#[tokio::test]
async fn the_image_runs_as_non_root_on_a_read_only_root_and_detects_drift() {
    let built =
        ok(script("image", &[TAG], &[("ARCADIA_IMAGE_BINARY", env!("CARGO_BIN_EXE_arcadia-drift"))]), "scripts/image");
    assert_eq!(built, TAG);

    let client = common::client().await;
    let ns = common::namespace(&client, "image").await;
    let resource = format!("digitalocean-droplet-image-{ns}");
    common::mirror_droplet(&client, &resource, "s-2vcpu-4gb", None).await;
    common::provision(&client, &ns, "web-1", &resource, json!({"size_slug": "s-1vcpu-1gb"})).await;

    let port = free_port();
    let name = format!("arcadia-{ns}");
    let kubeconfig = format!("{}:/etc/arcadia/kubeconfig:ro", common::kubeconfig().display());
    let metrics = format!("127.0.0.1:{port}");
    let _container = Container(name.clone());
    ok(
        script(
            "podman",
            &[
                "run",
                "-d",
                "--name",
                &name,
                "--network",
                "host",
                "--read-only",
                "--tmpfs",
                "/tmp",
                "-v",
                &kubeconfig,
                "-e",
                "KUBECONFIG=/etc/arcadia/kubeconfig",
                "-e",
                &format!("POD_NAMESPACE={ns}"),
                TAG,
                "run",
                "--namespace",
                &ns,
                "--metrics-addr",
                &metrics,
                "--resync-interval",
                "3s",
            ],
            &[],
        ),
        "podman run",
    );
    let logs = || ok(script("podman", &["logs", &name], &[]), "podman logs");
    common::eventually(Duration::from_secs(30), "/readyz says leading", || async {
        http_get(port, "/readyz").filter(|t| t.contains("ok: leading"))
    })
    .await;
    assert_eq!(http_get(port, "/healthz").as_deref().map(str::trim), Some("ok"), "{}", logs());
    let drifts: Api<Drift> = Api::namespaced(client.clone(), &ns);
    let drift =
        common::eventually(Duration::from_secs(30), "the drift, found by the controller in the container", || async {
            // A Drift is created, then its status written: wait for both.
            drifts.list(&ListParams::default()).await.ok()?.items.pop().filter(|d| d.status.is_some())
        })
        .await;
    assert_eq!(drift.status.unwrap().actual, json!("s-2vcpu-4gb"));

    let inspect: Value =
        serde_json::from_str(&ok(script("podman", &["inspect", &name], &[]), "podman inspect")).unwrap();
    let c = &inspect[0];
    assert_eq!(c["Config"]["User"], "65532:65532");
    assert_eq!(c["HostConfig"]["ReadonlyRootfs"], true);
    let pid = c["State"]["Pid"].as_u64().expect("a running container has a pid");
    let proc_status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid = proc_status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(uid.split_whitespace().skip(1).all(|u| u == "65532"), "the process runs as 65532: {uid}");
    let log = logs();
    assert!(!log.contains(" WARN ") && !log.contains(" ERROR "), "a clean run in the container:\n{log}");
}
