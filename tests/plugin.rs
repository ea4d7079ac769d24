//! `kubectl drift` (the `kubectl-drift` binary) against the local control
//! plane with the real controller: list and summary (table and JSON), accept
//! with its outcome, a refusal, a timeout with no controller, and clear
//! errors for a missing CRD, a missing permission and an unknown drift.

mod common;

use arcadia_drift::api::{Drift, DriftPhase};
use common::controller::ControllerProcess;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::{Value, json};
use std::process::{Command, Output};
use std::time::Duration;

fn plugin(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kubectl-drift"))
        .arg("--kubeconfig")
        .arg(common::kubeconfig())
        .args(args)
        .env_remove("KUBECONFIG")
        .output()
        .expect("cannot run kubectl-drift")
}

fn text(out: &Output) -> (String, String) {
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

async fn live(client: &kube::Client, name: &str, size: &str, region: &str) {
    common::mirror_droplet(client, name, size, Some(region)).await;
}

async fn provision(client: &kube::Client, ns: &str, name: &str, resource: &str, desired: Value) {
    common::provision(client, ns, name, resource, desired).await;
}

async fn open_drifts(client: &kube::Client, ns: &str, n: usize) {
    let api: Api<Drift> = Api::namespaced(client.clone(), ns);
    common::eventually(Duration::from_secs(30), "the open drifts", || async {
        let all = api.list(&ListParams::default()).await.ok()?.items;
        (all.iter().filter(|d| d.status.as_ref().is_some_and(|s| s.phase == DriftPhase::Open)).count() == n)
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn list_summary_accept_and_explain_with_the_real_controller() {
    let client = common::client().await;
    let ns = common::namespace(&client, "plugin").await;
    let (r1, r2) = (format!("digitalocean-droplet-p1-{ns}"), format!("digitalocean-droplet-p2-{ns}"));
    live(&client, &r1, "s-2vcpu-4gb", "ams3").await;
    live(&client, &r2, "s-1vcpu-1gb", "nyc3").await;
    provision(&client, &ns, "web-1", &r1, json!({"size_slug": "s-1vcpu-1gb", "region": "nyc3"})).await;
    provision(&client, &ns, "web-2", &r2, json!({"size_slug": "s-1vcpu-1gb"})).await;
    let _controller = ControllerProcess::start(&ns, &[]);
    open_drifts(&client, &ns, 2).await;

    let (table, _) = text(&plugin(&["list", "-n", &ns]));
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("NAMESPACE") && lines[0].contains("PHASE"), "{table}");
    assert!(lines[1].contains("web-1") && lines[1].contains("region") && lines[1].contains("Open"), "{table}");
    assert!(lines[2].starts_with("     ") && lines[2].contains("size_slug"), "grouped by CloudProvisioned:\n{table}");
    assert!(!table.contains('\x1b'), "plain when piped");
    let (json_out, _) = text(&plugin(&["list", "-n", &ns, "-o", "json", "--phase", "Open"]));
    let rows: Vec<Value> = serde_json::from_str(&json_out).unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1]["actual"], "s-2vcpu-4gb");

    let (summary, _) = text(&plugin(&["summary", "-n", &ns]));
    assert!(
        summary.starts_with(
            "checked 2 provisioned: 1 in sync, 1 drifted, 0 missing resources; 2 drifted fields, 2 open drifts"
        ),
        "{summary}"
    );
    let (json_out, _) = text(&plugin(&["summary", "-n", &ns, "-o", "json"]));
    let s: Value = serde_json::from_str(&json_out).unwrap();
    assert_eq!((s["openDrifts"].as_u64(), s["openByField"]["region"].as_u64()), (Some(2), Some(1)));

    let (explained, _) = text(&plugin(&["explain", "-n", &ns, "web-1/size_slug"]));
    for needle in [
        "field:            size_slug",
        "expected:         s-1vcpu-1gb",
        "actual:           s-2vcpu-4gb",
        "DriftDetected",
        "Accept would: adopt s-2vcpu-4gb",
        "Revert would:",
    ] {
        assert!(explained.contains(needle), "{needle:?} in:\n{explained}");
    }

    let dry = plugin(&["accept", "-n", &ns, "web-1/size_slug", "--dry-run"]);
    assert!(text(&dry).0.contains("would accept"), "{:?}", text(&dry));
    let accepted = plugin(&["accept", "-n", &ns, "web-1/size_slug"]);
    let (out, err) = text(&accepted);
    assert!(accepted.status.success(), "{out}{err}");
    assert!(out.contains(": Accepted by "), "{out}");

    // The region is fixed in the cloud: the drift closes Stale, and an accept of it is refused.
    live(&client, &r1, "s-2vcpu-4gb", "nyc3").await;
    common::eventually(Duration::from_secs(30), "the region drift Stale", || async {
        let d = Api::<Drift>::namespaced(client.clone(), &ns).get(&Drift::name_for("web-1", "region")).await.ok()?;
        (d.status?.phase == DriftPhase::Stale).then_some(())
    })
    .await;
    let refused = plugin(&["accept", "-n", &ns, "web-1/region"]);
    let (_, err) = text(&refused);
    assert_eq!(refused.status.code(), Some(1), "{err}");
    assert!(err.contains("accept refused: the drift is Stale"), "{err}");
}

#[tokio::test]
async fn without_a_controller_an_accept_times_out_and_says_so() {
    let client = common::client().await;
    let ns = common::namespace(&client, "plugin-idle").await;
    let name = Drift::name_for("web-1", "size_slug");
    let drift = json!({
        "apiVersion": "arcadia.cloud/v1alpha1", "kind": "Drift", "metadata": {"name": name},
        "spec": {"provisionedRef": {"name": "web-1"}, "resourceRef": {"name": "r"}, "field": "size_slug"},
    });
    let api: Api<Drift> = Api::namespaced(client.clone(), &ns);
    api.patch(&name, &PatchParams::apply("test"), &Patch::Apply(drift)).await.unwrap();
    let status = json!({"apiVersion": "arcadia.cloud/v1alpha1", "kind": "Drift", "status": {"phase": "Open", "expected": "a", "actual": "b"}});
    api.patch_status(&name, &PatchParams::apply("test"), &Patch::Apply(status)).await.unwrap();
    let out = plugin(&["accept", "-n", &ns, &name, "--timeout", "2s"]);
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("no outcome within 2s; is the arcadia-drift controller running?"), "{err}");
    let kept = api.get(&name).await.unwrap();
    assert!(kept.metadata.annotations.unwrap_or_default().contains_key("arcadia.cloud/accept"), "the annotation stays");
}

#[tokio::test]
async fn errors_name_the_missing_crd_the_permission_and_the_drift() {
    let client = common::client().await;
    let ns = common::namespace(&client, "plugin-errors").await;
    let unknown = plugin(&["explain", "-n", &ns, "nope"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(text(&unknown).1.contains(&format!("no Drift named nope in namespace {ns}")), "{:?}", text(&unknown));

    let denied = plugin(&["list", "-n", &ns, "--as", "nobody"]);
    let (_, err) = text(&denied);
    assert_eq!(denied.status.code(), Some(2), "{err}");
    assert!(err.contains(&format!("you may not list drifts.arcadia.cloud in namespace {ns} (403 Forbidden)")), "{err}");

    // A cluster without the CRDs: an API server that knows nothing of arcadia.cloud.
    let app = axum::Router::new().fallback(|| async {
        let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": "the server could not find the requested resource", "reason": "NotFound", "code": 404});
        (axum::http::StatusCode::NOT_FOUND, axum::Json(status))
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let kubeconfig = std::env::temp_dir().join(format!("no-crds-{}.kubeconfig", common::unique_suffix()));
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: bare\n  cluster: {{server: 'http://{addr}'}}\ncontexts:\n- name: bare\n  context: {{cluster: bare, user: nobody, namespace: default}}\ncurrent-context: bare\nusers:\n- name: nobody\n  user: {{}}\n"
        ),
    )
    .unwrap();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_kubectl-drift"))
            .args(["list", "--kubeconfig"])
            .arg(&kubeconfig)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("the drifts.arcadia.cloud CRD is not installed in this cluster"), "{err}");
}
