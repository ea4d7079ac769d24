//! A tenant's own write-back annotations, turned against the controller, end
//! to end: the real controller and API server, an accept, and git. An
//! injected `git-url` runs nothing, a remote that redirects never passes the
//! credential on, and a `git-path` out of the repository is refused; each
//! refusal is kept on the Drift and not tried again after a restart (issue 25,
//! items 2, 4 and 8, which `tests/git_hostile.rs` shows at the library level).

mod common;

use arcadia_drift::api::{ANNOTATION_ACCEPT, ANNOTATION_ACCEPTED_BY, Drift, DriftPhase, GitCommit};
use common::controller::ControllerProcess;
use common::eventually;
use common::git_server::GitServer;
use common::hostile_http;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(45);
const TOKEN: &str = "team-s3cret-token";

struct Tenant {
    client: Client,
    ns: String,
}

/// A namespace with its own Git credentials Secret and web-1, whose
/// write-back annotations are `git_url` and `git_path`.
async fn tenant(prefix: &str, git_url: &str, git_path: &str) -> Tenant {
    let client = common::client().await;
    let ns = common::namespace(&client, prefix).await;
    // Mirrored as resized by hand: desired s-1vcpu-1gb, live s-2vcpu-4gb.
    let resource = format!("digitalocean-droplet-{}", common::unique_suffix());
    common::mirror_droplet(&client, &resource, "s-2vcpu-4gb", Some("nyc3")).await;
    common::kubectl_ok(&[
        "-n",
        &ns,
        "create",
        "secret",
        "generic",
        "team-git",
        "--from-literal=username=team",
        &format!("--from-literal=password={TOKEN}"),
    ]);
    let object = json!({
        "apiVersion": "arcadia.cloud/v1alpha1",
        "kind": "CloudProvisioned",
        "metadata": {"name": "web-1", "annotations": {
            "arcadia.cloud/accept-mode": "overlay",
            "arcadia.cloud/git-url": git_url,
            "arcadia.cloud/git-branch": "main",
            "arcadia.cloud/git-path": git_path,
            "arcadia.cloud/git-credentials": "team-git",
        }},
        "spec": {"resourceRef": {"name": resource}, "desired": {"size_slug": "s-1vcpu-1gb"}},
    });
    let api: Api<arcadia_drift::api::CloudProvisioned> = Api::namespaced(client.clone(), &ns);
    api.patch("web-1", &PatchParams::apply("tenant").force(), &Patch::Apply(object)).await.unwrap();
    Tenant { client, ns }
}

fn controller(t: &Tenant) -> ControllerProcess {
    ControllerProcess::start(&t.ns, &["--git-writeback", "--git-allow-insecure-http"])
}

async fn the_drift(t: &Tenant) -> Option<Drift> {
    Api::<Drift>::namespaced(t.client.clone(), &t.ns).list(&ListParams::default()).await.unwrap().items.pop()
}

async fn accept(t: &Tenant) {
    let open = eventually(WAIT, "an Open drift", || async {
        the_drift(t).await.filter(|d| d.status.as_ref().is_some_and(|st| st.phase == DriftPhase::Open))
    })
    .await;
    let patch = json!({"metadata": {"annotations": {ANNOTATION_ACCEPT: "true", ANNOTATION_ACCEPTED_BY: "alice"}}});
    Api::<Drift>::namespaced(t.client.clone(), &t.ns)
        .patch(&open.name_any(), &PatchParams::default(), &Patch::Merge(patch))
        .await
        .unwrap();
}

async fn refusal(t: &Tenant) -> GitCommit {
    eventually(WAIT, "the refusal on the Drift", || async {
        the_drift(t).await?.status?.git.filter(|g| g.refused.is_some())
    })
    .await
}

/// Restarts the controller and gives it time to act on the Drift again.
async fn restarted(t: &Tenant, first: &mut ControllerProcess) -> ControllerProcess {
    first.terminate();
    let second = controller(t);
    eventually(WAIT, "the restarted controller ready", || async { second.get("/readyz") }).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    second
}

#[tokio::test]
async fn an_injected_git_url_runs_nothing_and_its_refusal_is_kept_across_a_restart() {
    let marker = std::env::temp_dir().join(format!("arcadia-pwned-{}", common::unique_suffix()));
    let injected = format!("--upload-pack=touch {} #@x:y", marker.display());
    let t = tenant("hostile-url", &injected, ".").await;
    let mut first = controller(&t);
    accept(&t).await;

    let git = refusal(&t).await;
    let why = git.refused.unwrap();
    assert!(why.contains("starts with '-', which git would read as an option"), "{why}");
    let message = the_drift(&t).await.unwrap().status.unwrap().message.unwrap_or_default();
    assert!(message.contains("starts with '-'"), "the Drift says why: {message}");
    assert!(!marker.exists(), "the injected command ran");

    let _second = restarted(&t, &mut first).await;
    assert!(!marker.exists(), "the injected command ran after a restart");
    assert_eq!(the_drift(&t).await.unwrap().status.unwrap().git.unwrap().refused.as_deref(), Some(why.as_str()));
}

#[tokio::test]
async fn a_remote_that_redirects_never_passes_the_credential_on() {
    let (attacker, seen) = hostile_http::recording_server();
    let redirect = hostile_http::redirecting_server(format!("http://127.0.0.1:{attacker}/loot.git"));
    let t = tenant("hostile-redirect", &format!("http://127.0.0.1:{redirect}/infra.git"), ".").await;
    let _controller = controller(&t);
    accept(&t).await;

    let message = eventually(WAIT, "the failed write-back on the Drift", || async {
        the_drift(&t).await?.status?.message.filter(|m| m.contains("127.0.0.1:") && m.contains("Git"))
    })
    .await;
    assert!(!message.contains(TOKEN), "{message}");
    // Retries come with backoff; each would follow the redirect if any did.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(*seen.lock().unwrap(), Vec::<String>::new(), "the attacker's listener was reached");
}

#[tokio::test]
async fn a_git_path_out_of_the_repository_is_refused_and_kept() {
    let server = GitServer::start("team", TOKEN);
    server.create_repo("infra", "main", &[("apps/web.yaml", "kind: ConfigMap\n")]);
    let t = tenant("hostile-path", &server.url("infra"), "apps/../../etc").await;
    let mut first = controller(&t);
    accept(&t).await;

    let why = refusal(&t).await.refused.unwrap();
    assert!(why.contains(".."), "the refusal names the path: {why}");
    let requests = server.authorizations.lock().unwrap().len();

    let _second = restarted(&t, &mut first).await;
    assert_eq!(server.authorizations.lock().unwrap().len(), requests, "a restart tried the refused path again");
    assert_eq!(the_drift(&t).await.unwrap().status.unwrap().git.unwrap().refused.as_deref(), Some(why.as_str()));
}
