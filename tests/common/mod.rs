//! Shared helpers for tests that talk to the real local control plane
//! (`scripts/control-plane`). A test that cannot reach it fails; it never skips.
#![allow(dead_code)]

pub mod controller;
pub mod fake_do;
pub mod fake_do_writes;
pub mod git_server;
pub mod hostile_http;
pub mod lagging_proxy;
pub mod moto;
pub mod own_plane;
pub mod writeback_fixtures;

use arcadia_drift::api;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Client, Config};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Duration;

pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Starts the local control plane (or reuses the running one) once per test
/// binary and returns its kubeconfig path. Panics with the script's output when
/// it cannot start.
pub fn kubeconfig() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let out = Command::new(repo_root().join("scripts/control-plane"))
            .arg("up")
            .output()
            .expect("cannot run scripts/control-plane");
        assert!(
            out.status.success(),
            "scripts/control-plane up failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let last = stdout.lines().last().expect("scripts/control-plane up printed nothing");
        let path = PathBuf::from(last.trim());
        assert!(path.is_file(), "scripts/control-plane up printed {last:?}, which is not a kubeconfig file");
        path
    })
}

/// A client for the local control plane, with the CRDs installed.
pub async fn client() -> Client {
    let kubeconfig = Kubeconfig::read_from(kubeconfig()).expect("cannot read the control plane's kubeconfig");
    let config =
        Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.expect("invalid kubeconfig");
    let client = Client::try_from(config).expect("cannot build a client");
    install_crds(&client).await;
    client
}

/// Server-side applies the generated CRDs and waits until they are established.
pub async fn install_crds(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let params = PatchParams::apply(api::FIELD_MANAGER).force();
    for crd in api::crds() {
        let name = crd.metadata.name.clone().expect("generated CRDs have names");
        crds.patch(&name, &params, &Patch::Apply(&crd)).await.unwrap_or_else(|e| panic!("applying CRD {name}: {e}"));
        let established = await_condition(crds.clone(), &name, conditions::is_crd_established());
        tokio::time::timeout(Duration::from_secs(30), established)
            .await
            .unwrap_or_else(|_| panic!("CRD {name} not established within 30s"))
            .unwrap_or_else(|e| panic!("watching CRD {name}: {e}"));
    }
}

/// Creates a fresh namespace with a name unique to this run.
pub async fn namespace(client: &Client, prefix: &str) -> String {
    let name = format!("{prefix}-{}", unique_suffix());
    let ns = Namespace {
        metadata: kube::api::ObjectMeta { name: Some(name.clone()), ..Default::default() },
        ..Default::default()
    };
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap_or_else(|e| panic!("creating namespace {name}: {e}"));
    name
}

/// Lowercase, DNS-safe and unique across test binaries and runs.
pub fn unique_suffix() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{:x}{:x}{}", std::process::id(), nanos, COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// Runs the version-matched kubectl against the local control plane.
pub fn kubectl(args: &[&str]) -> Output {
    Command::new(repo_root().join("scripts/kubectl"))
        .args(args)
        .env("KUBECONFIG", kubeconfig())
        .output()
        .expect("cannot run scripts/kubectl")
}

/// Runs kubectl and returns stdout, panicking with stderr on failure.
pub fn kubectl_ok(args: &[&str]) -> String {
    let out = kubectl(args);
    assert!(out.status.success(), "kubectl {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("kubectl printed non-UTF-8")
}

/// Polls `check` every 100ms until it returns `Some`, or panics after `timeout` with `what`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The kinds of Flux and Argo CD that write-back reads, with open schemas.
pub const GITOPS_CRDS: &str = "apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: applications.argoproj.io}
spec:
  group: argoproj.io
  names: {kind: Application, plural: applications, singular: application}
  scope: Namespaced
  versions: [{name: v1alpha1, served: true, storage: true, schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}}]
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: kustomizations.kustomize.toolkit.fluxcd.io}
spec:
  group: kustomize.toolkit.fluxcd.io
  names: {kind: Kustomization, plural: kustomizations, singular: kustomization}
  scope: Namespaced
  versions: [{name: v1, served: true, storage: true, schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}}]
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: gitrepositories.source.toolkit.fluxcd.io}
spec:
  group: source.toolkit.fluxcd.io
  names: {kind: GitRepository, plural: gitrepositories, singular: gitrepository}
  scope: Namespaced
  versions: [{name: v1, served: true, storage: true, schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}}]
";

/// Installs [`GITOPS_CRDS`] and waits until they are established.
pub fn install_gitops_crds() {
    use std::io::Write;
    let mut child = Command::new(repo_root().join("scripts/kubectl"))
        .args(["apply", "--server-side", "-f", "-"])
        .env("KUBECONFIG", kubeconfig())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("cannot run scripts/kubectl");
    child.stdin.take().unwrap().write_all(GITOPS_CRDS.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "applying minimal Flux and Argo CD CRDs: {}", String::from_utf8_lossy(&out.stderr));
    kubectl_ok(&[
        "wait",
        "--for",
        "condition=established",
        "crd/applications.argoproj.io",
        "crd/kustomizations.kustomize.toolkit.fluxcd.io",
        "crd/gitrepositories.source.toolkit.fluxcd.io",
    ]);
}

/// A CloudResource mirrored as a syncer would (created if new), with this
/// live size and region, synced now.
pub async fn mirror_droplet(client: &Client, name: &str, size: &str, region: Option<&str>) {
    use arcadia_drift::api::{CloudResource, CloudResourceSpec, CloudResourceStatus, now};
    let api: Api<CloudResource> = Api::all(client.clone());
    let spec =
        CloudResourceSpec { provider: "digitalocean".into(), type_: "droplet".into(), id: name.into(), region: None };
    let _ = api.create(&PostParams::default(), &CloudResource::new(name, spec)).await;
    let status = CloudResourceStatus {
        size_slug: Some(size.into()),
        region: region.map(Into::into),
        synced_time: Some(now()),
        ..Default::default()
    };
    let body = serde_json::json!({"apiVersion": "arcadia.cloud/v1alpha1", "kind": "CloudResource", "status": status});
    api.patch_status(name, &PatchParams::apply("test-syncer").force(), &Patch::Apply(body)).await.unwrap();
}

/// A CloudProvisioned of `resource` wanting `desired`, applied as a person would.
pub async fn provision(client: &Client, ns: &str, name: &str, resource: &str, desired: serde_json::Value) {
    let body = serde_json::json!({
        "apiVersion": "arcadia.cloud/v1alpha1", "kind": "CloudProvisioned", "metadata": {"name": name},
        "spec": {"resourceRef": {"name": resource}, "desired": desired},
    });
    let api: Api<arcadia_drift::api::CloudProvisioned> = Api::namespaced(client.clone(), ns);
    api.patch(name, &PatchParams::apply("test"), &Patch::Apply(body)).await.unwrap();
}
