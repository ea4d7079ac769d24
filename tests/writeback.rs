//! Git write-back end to end: a manifest in a real Git server (`git
//! http-backend` on loopback, basic auth), applied the Flux way, drifts; an
//! accept becomes one commit with one changed line; Flux applies it and the
//! pending change merges. Also: a controller killed between push and status
//! makes no second commit, and bad credentials leave the overlay standing.

mod common;

use arcadia_drift::api::{
    ANNOTATION_ACCEPT, ANNOTATION_ACCEPTED_BY, CloudProvisioned, CloudResource, CloudResourceSpec, CloudResourceStatus,
    Drift, DriftPhase, now,
};
use common::controller::ControllerProcess;
use common::eventually;
use common::git_server::GitServer;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(45);
const FLUX: [&str; 6] = ["--server-side", "--force-conflicts", "--field-manager", "kustomize-controller", "-f", "-"];

fn manifest(resource: &str, ns: &str) -> String {
    format!(
        "# The web tier. Resized by hand in November? Accept it, don't revert it.\napiVersion: arcadia.cloud/v1alpha1\nkind: CloudProvisioned\nmetadata:\n  name: web-1\n  labels:\n    kustomize.toolkit.fluxcd.io/name: infra\n    kustomize.toolkit.fluxcd.io/namespace: {ns}\nspec:\n  resourceRef: {{name: {resource}}}\n  desired:\n    size_slug: s-1vcpu-1gb  # launch size\n    region: nyc3\n"
    )
}

fn kubectl_stdin(args: &[&str], input: &str) {
    use std::io::Write;
    let mut child = std::process::Command::new(common::repo_root().join("scripts/kubectl"))
        .args(args)
        .env("KUBECONFIG", common::kubeconfig())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "kubectl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// What Flux's kustomize-controller does with the branch's head.
fn flux_applies(server: &GitServer, ns: &str) {
    let text = server.file("infra", "main", "apps/web.yaml");
    let mut args = vec!["-n", ns, "apply"];
    args.extend(FLUX);
    kubectl_stdin(&args, &text);
}

async fn droplet(client: &Client) -> String {
    let id = common::unique_suffix();
    let name = format!("digitalocean-droplet-{id}");
    let api: Api<CloudResource> = Api::all(client.clone());
    let spec = CloudResourceSpec { provider: "digitalocean".into(), type_: "droplet".into(), id, region: None };
    api.create(&PostParams::default(), &CloudResource::new(&name, spec)).await.unwrap();
    let status = CloudResourceStatus {
        region: Some("nyc3".into()),
        size_slug: Some("s-2vcpu-4gb".into()),
        synced_time: Some(now()),
        ..Default::default()
    };
    let body = json!({"apiVersion": "arcadia.cloud/v1alpha1", "kind": "CloudResource", "status": status});
    api.patch_status(&name, &PatchParams::apply("test-syncer").force(), &Patch::Apply(body)).await.unwrap();
    name
}

/// Flux's GitRepository and Kustomization, the latter listing web-1 in its
/// inventory (as kustomize-controller records what it applied) when `listed`.
fn flux_objects(server: &GitServer, ns: &str, listed: bool, secret_ref: Option<&str>) -> String {
    let secret = secret_ref.map(|name| format!(", secretRef: {{name: {name}}}")).unwrap_or_default();
    let entries =
        if listed { format!("[{{id: {ns}_web-1_arcadia.cloud_CloudProvisioned, v: v1alpha1}}]") } else { "[]".into() };
    format!(
        "apiVersion: source.toolkit.fluxcd.io/v1\nkind: GitRepository\nmetadata: {{name: infra}}\nspec: {{url: \"{url}\", ref: {{branch: main}}, interval: 1m{secret}}}\n---\napiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nmetadata: {{name: infra}}\nspec: {{path: ./apps, sourceRef: {{kind: GitRepository, name: infra}}, interval: 1m, prune: true}}\nstatus: {{inventory: {{entries: {entries}}}}}\n",
        url = server.url("infra")
    )
}

struct Setup {
    client: Client,
    ns: String,
    server: std::sync::Arc<GitServer>,
}

/// A namespace with Flux's objects, a credentials Secret, and web-1 applied from Git.
async fn setup(prefix: &str, password_in_secret: &str) -> Setup {
    let client = common::client().await;
    common::install_gitops_crds();
    let ns = common::namespace(&client, prefix).await;
    let resource = droplet(&client).await;
    let server = GitServer::start("flux", "git-s3cret");
    server.create_repo("infra", "main", &[("apps/web.yaml", &manifest(&resource, &ns)), ("README.md", "infra\n")]);
    kubectl_stdin(&["-n", &ns, "apply", "-f", "-"], &flux_objects(&server, &ns, true, None));
    common::kubectl_ok(&[
        "-n",
        &ns,
        "create",
        "secret",
        "generic",
        "arcadia-drift-git",
        "--from-literal=username=flux",
        &format!("--from-literal=password={password_in_secret}"),
    ]);
    flux_applies(&server, &ns);
    Setup { client, ns, server: std::sync::Arc::new(server) }
}

fn controller(s: &Setup) -> ControllerProcess {
    controller_allowing(s, &format!("http://127.0.0.1:{}/", s.server.port))
}

/// A controller whose controller-wide credentials may go to `allowed` only.
fn controller_allowing(s: &Setup, allowed: &str) -> ControllerProcess {
    let secret = format!("{}/arcadia-drift-git", s.ns);
    ControllerProcess::start(
        &s.ns,
        &[
            "--git-writeback",
            "--git-credentials-secret",
            &secret,
            "--git-allow-insecure-http",
            "--git-allowed-remotes",
            allowed,
        ],
    )
}

async fn the_drift(s: &Setup) -> Option<Drift> {
    Api::<Drift>::namespaced(s.client.clone(), &s.ns).list(&ListParams::default()).await.unwrap().items.pop()
}

async fn accept(s: &Setup) -> Drift {
    let open = eventually(WAIT, "an Open drift", || async {
        the_drift(s).await.filter(|d| d.status.as_ref().is_some_and(|st| st.phase == DriftPhase::Open))
    })
    .await;
    let patch = json!({"metadata": {"annotations": {ANNOTATION_ACCEPT: "true", ANNOTATION_ACCEPTED_BY: "alice"}}});
    Api::<Drift>::namespaced(s.client.clone(), &s.ns)
        .patch(&open.name_any(), &PatchParams::default(), &Patch::Merge(patch))
        .await
        .unwrap();
    open
}

async fn events(s: &Setup, reason: &str) -> Vec<Event> {
    let all = Api::<Event>::namespaced(s.client.clone(), &s.ns).list(&ListParams::default()).await.unwrap().items;
    all.into_iter().filter(|e| e.reason.as_deref() == Some(reason)).collect()
}

fn our_commits(s: &Setup) -> Vec<(String, String)> {
    s.server.log("infra", "main").into_iter().filter(|(_, m)| m.contains("Arcadia-Drift-Accept: ")).collect()
}

async fn pending(s: &Setup) -> usize {
    let p = Api::<CloudProvisioned>::namespaced(s.client.clone(), &s.ns).get("web-1").await.unwrap();
    p.status.map(|st| st.pending_git_changes.len()).unwrap_or_default()
}

#[tokio::test]
async fn an_accept_becomes_one_commit_that_flux_applies_and_merges() {
    let s = setup("wb-flux", "git-s3cret").await;
    let controller = controller(&s);
    accept(&s).await;

    let committed = eventually(WAIT, "the commit recorded on the Drift", || async {
        the_drift(&s).await?.status?.git.filter(|g| !g.commit.is_empty())
    })
    .await;
    assert_eq!((committed.url.as_str(), committed.branch.as_str()), (s.server.url("infra").as_str(), "main"));
    assert_eq!(committed.path, "apps/web.yaml");
    let ours = our_commits(&s);
    assert_eq!(ours.len(), 1, "one commit");
    assert_eq!(ours[0].0, committed.commit);
    let diff = s.server.diff("infra", &committed.commit);
    let changed: Vec<&str> = diff
        .lines()
        .filter(|l| (l.starts_with('+') || l.starts_with('-')) && !l.starts_with("+++") && !l.starts_with("---"))
        .collect();
    assert_eq!(changed, ["-    size_slug: s-1vcpu-1gb  # launch size", "+    size_slug: s-2vcpu-4gb  # launch size"]);
    eventually(WAIT, "an AcceptCommitted Event", || async { events(&s, "AcceptCommitted").await.pop() }).await;
    assert_eq!(pending(&s).await, 1, "pending until Flux applies the commit");

    flux_applies(&s.server, &s.ns);
    eventually(WAIT, "the pending change merged", || async { (pending(&s).await == 0).then_some(()) }).await;
    eventually(WAIT, "an AcceptMerged Event", || async { events(&s, "AcceptMerged").await.pop() }).await;
    let drift = the_drift(&s).await.unwrap().status.unwrap();
    assert_eq!(drift.phase, DriftPhase::Accepted);
    // The message follows the state: merged, by whom, which commit.
    let merged = format!(
        "merged: the spec holds `spec.desired.size_slug: s-2vcpu-4gb` (applied by field manager kustomize-controller, commit {})",
        committed.commit
    );
    eventually(WAIT, "the merged message", || async {
        the_drift(&s).await?.status?.message.filter(|m| m.contains(&merged))
    })
    .await;
    assert_eq!(controller.metric("arcadia_drift_git_pushes_total{result=\"committed\"}"), 1.0);
    assert_eq!(our_commits(&s).len(), 1, "and never a second one");
}

#[tokio::test]
async fn a_controller_killed_between_push_and_status_makes_no_second_commit() {
    let s = setup("wb-kill", "git-s3cret").await;
    *s.server.push_answer_delay.lock().unwrap() = Duration::from_secs(8);
    let mut first = controller(&s);
    accept(&s).await;
    eventually(WAIT, "the push to arrive", || async { (*s.server.pushes.lock().unwrap() >= 1).then_some(()) }).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    first.kill();
    assert!(the_drift(&s).await.unwrap().status.unwrap().git.is_none(), "killed before the status write");
    *s.server.push_answer_delay.lock().unwrap() = Duration::ZERO;

    let _second = controller(&s);
    let recorded =
        eventually(WAIT, "the commit recorded after the restart", || async { the_drift(&s).await?.status?.git }).await;
    let ours = our_commits(&s);
    assert_eq!(ours.len(), 1, "one commit for one accept: {ours:?}");
    assert_eq!(recorded.commit, ours[0].0);
}

#[tokio::test]
async fn bad_credentials_leave_the_overlay_standing_and_say_why() {
    let s = setup("wb-badcreds", "not-the-password").await;
    let _controller = controller(&s);
    accept(&s).await;
    let message = eventually(WAIT, "the failure on the Drift", || async {
        let message = the_drift(&s).await?.status?.message?;
        message.contains("failed").then_some(message)
    })
    .await;
    assert!(message.contains("writing `spec.desired.size_slug: s-2vcpu-4gb` to Git failed: git fetch"), "{message}");
    assert!(message.contains("authentication failed") && message.contains("retrying with backoff"), "{message}");
    assert!(!message.contains("not-the-password") && !message.contains("git-s3cret"));
    let warning =
        eventually(WAIT, "an AcceptCommitFailed Event", || async { events(&s, "AcceptCommitFailed").await.pop() })
            .await;
    assert_eq!(warning.type_.as_deref(), Some("Warning"));
    assert_eq!(the_drift(&s).await.unwrap().status.unwrap().phase, DriftPhase::Accepted, "the accept stands");
    assert_eq!(pending(&s).await, 1, "the overlay holds");
    assert!(our_commits(&s).is_empty());
}

#[tokio::test]
async fn annotations_name_the_repository_and_a_review_branch_takes_the_commit() {
    let client = common::client().await;
    let ns = common::namespace(&client, "wb-annotated").await;
    let resource = droplet(&client).await;
    let server = GitServer::start("team", "team-token");
    let in_git = manifest(&resource, &ns).replace(
        "    kustomize.toolkit.fluxcd.io/name: infra\n    kustomize.toolkit.fluxcd.io/namespace: ",
        "    team: ",
    );
    server.create_repo("team-infra", "prod", &[("clusters/a/web.yaml", &in_git)]);
    let annotations = format!(
        "  annotations:\n    arcadia.cloud/accept-mode: overlay\n    arcadia.cloud/git-url: {}\n    arcadia.cloud/git-branch: prod\n    arcadia.cloud/git-path: clusters/a\n    arcadia.cloud/git-credentials: team-git\n",
        server.url("team-infra")
    );
    let applied = in_git.replace("spec:\n", &format!("{annotations}spec:\n"));
    common::kubectl_ok(&[
        "-n",
        &ns,
        "create",
        "secret",
        "generic",
        "team-git",
        "--from-literal=username=team",
        "--from-literal=password=team-token",
    ]);
    kubectl_stdin(&["-n", &ns, "apply", "--server-side", "-f", "-"], &applied);
    let s = Setup { client, ns, server: std::sync::Arc::new(server) };
    let _controller = ControllerProcess::start(
        &s.ns,
        &[
            "--git-writeback",
            "--git-allow-insecure-http",
            "--git-push-branch",
            "arcadia-drift/{namespace}-{name}-{field}",
        ],
    );
    accept(&s).await;
    let git = eventually(WAIT, "the commit on the review branch", || async { the_drift(&s).await?.status?.git }).await;
    assert_eq!(git.branch, format!("arcadia-drift/{}-web-1-size_slug", s.ns));
    assert_eq!(git.path, "clusters/a/web.yaml");
    assert_eq!(s.server.log("team-infra", "prod").len(), 1, "the branch itself is untouched");
    assert!(
        s.server
            .file("team-infra", &git.branch, "clusters/a/web.yaml")
            .contains("size_slug: s-2vcpu-4gb  # launch size")
    );
}

#[tokio::test]
async fn a_hostile_repository_runs_nothing_and_the_controller_stays_healthy_and_small() {
    let s = setup("wb-hostile", "git-s3cret").await;
    let marker = std::env::temp_dir().join(format!("arcadia-pwned-{}", common::unique_suffix()));
    s.server.commit_with("infra", "main", "hostile content", |work| {
        let hook = format!("#!/bin/sh\ntouch {}\n", marker.display());
        std::fs::create_dir_all(work.join(".githooks")).unwrap();
        for name in ["pre-commit", "post-commit", "pre-push", "reference-transaction"] {
            std::fs::write(work.join(".githooks").join(name), &hook).unwrap();
            std::process::Command::new("chmod").arg("+x").arg(work.join(".githooks").join(name)).status().unwrap();
        }
        std::fs::write(work.join(".gitconfig"), "[core]\n\thooksPath = .githooks\n").unwrap();
        // Links to `.` and `..` under the searched path: the old walk followed them without end.
        for (link, target) in [("apps/loop-a", "."), ("apps/loop-b", ".."), ("apps/up", "../..")] {
            std::os::unix::fs::symlink(target, work.join(link)).unwrap();
        }
    });
    let controller = controller(&s);
    accept(&s).await;

    let committed = eventually(WAIT, "the commit recorded on the Drift", || async {
        the_drift(&s).await?.status?.git.filter(|g| !g.commit.is_empty())
    })
    .await;
    assert_eq!(committed.path, "apps/web.yaml");
    assert!(!marker.exists(), "a hook from the repository ran in the controller");
    assert!(controller.get("/healthz").is_some(), "the controller answers /healthz");
    let (_, peak_kib) = controller.memory();
    assert!(peak_kib < 200 * 1024, "the controller's peak RSS is {peak_kib} KiB through a symlink-loop repository");
    assert_eq!(our_commits(&s).len(), 1);
}

#[tokio::test]
async fn a_remote_outside_the_allowed_list_gets_no_request_and_the_refusal_is_kept() {
    let s = setup("wb-allowed", "git-s3cret").await;
    let allowed = GitServer::start("flux", "git-s3cret");
    let mut first = controller_allowing(&s, &format!("http://127.0.0.1:{}/", allowed.port));
    accept(&s).await;

    let git = eventually(WAIT, "the refusal on the Drift", || async {
        the_drift(&s).await?.status?.git.filter(|g| g.refused.is_some())
    })
    .await;
    let why = format!("write-back refused: {} is not in --git-allowed-remotes", s.server.url("infra"));
    assert_eq!(git.refused.as_deref(), Some(why.as_str()));
    let message = the_drift(&s).await.unwrap().status.unwrap().message.unwrap();
    assert!(
        message.contains(&why) && message.contains("commit `spec.desired.size_slug: s-2vcpu-4gb` by hand"),
        "{message}"
    );
    let warning =
        eventually(WAIT, "an AcceptCommitRefused Event", || async { events(&s, "AcceptCommitRefused").await.pop() })
            .await;
    assert_eq!(warning.type_.as_deref(), Some("Warning"));
    assert_eq!(pending(&s).await, 1, "the overlay holds");

    // A restart reads the refusal from the Drift and tries nothing again.
    first.terminate();
    let mut second = controller_allowing(&s, &format!("http://127.0.0.1:{}/", allowed.port));
    tokio::time::sleep(Duration::from_secs(5)).await;
    let requests = s.server.authorizations.lock().unwrap().clone();
    assert!(requests.is_empty(), "the refused remote was reached: {requests:?}");
    assert!(allowed.authorizations.lock().unwrap().is_empty());
    assert_eq!(events(&s, "AcceptCommitRefused").await.len(), 1);

    // What the refusal depended on changes: the platform allows the remote. The accept goes through.
    second.terminate();
    let _third = controller(&s);
    let committed = eventually(WAIT, "the commit once the remote is allowed", || async {
        the_drift(&s).await?.status?.git.filter(|g| !g.commit.is_empty())
    })
    .await;
    assert_eq!(committed.refused, None);
    assert_eq!(our_commits(&s).len(), 1);
}

#[tokio::test]
async fn flux_labels_without_the_kustomizations_inventory_entry_are_no_proof() {
    let s = setup("wb-labels", "git-s3cret").await;
    // The Kustomization does not list web-1: its labels were set by someone else.
    kubectl_stdin(&["-n", &s.ns, "apply", "-f", "-"], &flux_objects(&s.server, &s.ns, false, None));
    let _controller = controller(&s);
    accept(&s).await;

    let git = eventually(WAIT, "the refusal on the Drift", || async {
        the_drift(&s).await?.status?.git.filter(|g| g.refused.is_some())
    })
    .await;
    let why = git.refused.unwrap();
    let entry = format!("no entry {}_web-1_arcadia.cloud_CloudProvisioned", s.ns);
    assert!(why.contains(&format!("the Flux Kustomization {}/infra does not list this object", s.ns)), "{why}");
    assert!(why.contains(&entry), "{why}");
    assert!(s.server.authorizations.lock().unwrap().is_empty(), "the platform's repository got a request");
    assert!(our_commits(&s).is_empty());
}

#[tokio::test]
async fn flux_repository_credentials_are_the_ones_flux_uses() {
    // The controller-wide Secret holds a wrong password; the GitRepository's secretRef the right one.
    let s = setup("wb-flux-secret", "not-the-password").await;
    common::kubectl_ok(&[
        "-n",
        &s.ns,
        "create",
        "secret",
        "generic",
        "flux-infra",
        "--from-literal=username=flux",
        "--from-literal=password=git-s3cret",
    ]);
    kubectl_stdin(&["-n", &s.ns, "apply", "-f", "-"], &flux_objects(&s.server, &s.ns, true, Some("flux-infra")));
    // Flux's repository needs no place in the allowed list: Flux's own Secret goes to Flux's own URL.
    let _controller = controller_allowing(&s, "https://nowhere.example/");
    accept(&s).await;

    let committed = eventually(WAIT, "the commit recorded on the Drift", || async {
        the_drift(&s).await?.status?.git.filter(|g| !g.commit.is_empty())
    })
    .await;
    assert_eq!(our_commits(&s).len(), 1);
    assert_eq!(our_commits(&s)[0].0, committed.commit);
}

#[tokio::test]
async fn a_flux_substitution_is_refused_naming_the_variable_and_where_it_is_set() {
    let s = setup("wb-subst", "git-s3cret").await;
    let text = s.server.file("infra", "main", "apps/web.yaml").replace("s-1vcpu-1gb  # launch size", "${WEB5_SIZE}");
    s.server.commit_files("infra", "main", &[("apps/web.yaml", &text)], "size from a variable");
    let kustomization = flux_objects(&s.server, &s.ns, true, None)
        .replace("prune: true}", "prune: true, postBuild: {substitute: {WEB5_SIZE: s-1vcpu-1gb}}}");
    kubectl_stdin(&["-n", &s.ns, "apply", "-f", "-"], &kustomization);
    let _controller = controller(&s);
    accept(&s).await;

    let git = eventually(WAIT, "the refusal on the Drift", || async {
        the_drift(&s).await?.status?.git.filter(|g| g.refused.is_some())
    })
    .await;
    let why = git.refused.unwrap();
    assert!(
        why.contains("spec.desired.size_slug in apps/web.yaml is the Flux substitution ${WEB5_SIZE}, not a value"),
        "{why}"
    );
    assert!(
        why.contains(&format!(
            "the Kustomization {}/infra sets it in postBuild.substitute (WEB5_SIZE: s-1vcpu-1gb): change the variable there, not the manifest",
            s.ns
        )),
        "{why}"
    );
    assert!(!why.contains("is now"), "not mistaken for a change in Git: {why}");
    // Recorded as a typed field, not only in the words.
    let variable = git.flux_variable.expect("status.git.fluxVariable");
    assert_eq!(variable.name, "WEB5_SIZE");
    assert!(why.ends_with(&variable.set_in), "{why}");
    // The advice is to change the variable, never to commit the literal over it.
    let message = the_drift(&s).await.unwrap().status.unwrap().message.unwrap();
    assert!(
        message.contains(&why)
            && message.ends_with("give the variable WEB5_SIZE the value s-2vcpu-4gb where it is set"),
        "{message}"
    );
    assert!(!message.contains("by hand"), "{message}");
    let in_sync = eventually(WAIT, "GitInSync naming the variable", || async {
        let p = Api::<CloudProvisioned>::namespaced(s.client.clone(), &s.ns).get("web-1").await.ok()?;
        let c = p.status?.conditions.into_iter().find(|c| c.type_ == "GitInSync")?;
        c.message.contains("is the Flux variable").then_some(c.message)
    })
    .await;
    assert!(
        in_sync.contains("size_slug (accepted by alice) is the Flux variable WEB5_SIZE: give it the value s-2vcpu-4gb, not the manifest; the Kustomization"),
        "{in_sync}"
    );
    assert!(!in_sync.contains("commit to CloudProvisioned"), "{in_sync}");
    assert!(our_commits(&s).is_empty());
}

#[tokio::test]
async fn a_newer_accept_while_an_older_push_is_held_ends_with_git_at_the_newer_value() {
    let s = setup("wb-race", "git-s3cret").await;
    let (release, held) = std::sync::mpsc::channel::<()>();
    *s.server.before_push.lock().unwrap() = Some(Box::new(move || {
        let _ = held.recv_timeout(Duration::from_secs(60));
    }));
    let _controller = controller(&s);
    accept(&s).await; // V1: the live s-2vcpu-4gb
    eventually(WAIT, "the first push held at the server", || async {
        (*s.server.pushes.lock().unwrap() >= 1).then_some(())
    })
    .await;

    // The live value moves on and the operator accepts again (V2), while V1's push is held.
    let p = Api::<CloudProvisioned>::namespaced(s.client.clone(), &s.ns).get("web-1").await.unwrap();
    let resource = p.spec.resource_ref.name;
    let live = json!({"apiVersion": "arcadia.cloud/v1alpha1", "kind": "CloudResource",
        "status": {"region": "nyc3", "sizeSlug": "s-4vcpu-8gb", "syncedTime": now()}});
    Api::<CloudResource>::all(s.client.clone())
        .patch_status(&resource, &PatchParams::apply("test-syncer").force(), &Patch::Apply(live))
        .await
        .unwrap();
    eventually(WAIT, "the drift open again on the new value", || async {
        the_drift(&s).await?.status.filter(|st| st.phase == DriftPhase::Open && st.actual == json!("s-4vcpu-8gb"))
    })
    .await;
    accept(&s).await;
    release.send(()).unwrap();

    eventually(WAIT, "Git at V2", || async {
        s.server.file("infra", "main", "apps/web.yaml").contains("size_slug: s-4vcpu-8gb").then_some(())
    })
    .await;
    let commits = our_commits(&s);
    assert_eq!(commits.len(), 2, "V1 (held, then landed) and V2 over it: {commits:?}");
    flux_applies(&s.server, &s.ns);
    eventually(WAIT, "the V2 entry merged", || async { (pending(&s).await == 0).then_some(()) }).await;
    eventually(WAIT, "an AcceptMerged Event", || async { events(&s, "AcceptMerged").await.pop() }).await;
    assert!(events(&s, "AcceptSuperseded").await.is_empty(), "the operator's latest decision was kept");
    assert_eq!(the_drift(&s).await.unwrap().status.unwrap().phase, DriftPhase::Accepted);
}

/// The Drift of `provisioned`'s `field`, once there is one.
async fn drift_of(s: &Setup, provisioned: &str, field: &str) -> Option<Drift> {
    let all = Api::<Drift>::namespaced(s.client.clone(), &s.ns).list(&ListParams::default()).await.unwrap().items;
    all.into_iter().find(|d| d.spec.provisioned_ref.name == provisioned && d.spec.field == field)
}

/// Accepts the Open Drift of `provisioned`'s `field`, as alice.
async fn accept_field(s: &Setup, provisioned: &str, field: &str) -> Drift {
    let open = eventually(WAIT, &format!("an Open drift of {provisioned} {field}"), || async {
        drift_of(s, provisioned, field)
            .await
            .filter(|d| d.status.as_ref().is_some_and(|st| st.phase == DriftPhase::Open))
    })
    .await;
    let patch = json!({"metadata": {"annotations": {ANNOTATION_ACCEPT: "true", ANNOTATION_ACCEPTED_BY: "alice"}}});
    Api::<Drift>::namespaced(s.client.clone(), &s.ns)
        .patch(&open.name_any(), &PatchParams::default(), &Patch::Merge(patch))
        .await
        .unwrap();
    open
}

/// The commit recorded on the Drift of `provisioned`'s `field`.
async fn committed_of(s: &Setup, provisioned: &str, field: &str) -> arcadia_drift::api::GitCommit {
    eventually(WAIT, &format!("the commit of {provisioned} {field} on its Drift"), || async {
        drift_of(s, provisioned, field).await?.status?.git.filter(|g| !g.commit.is_empty())
    })
    .await
}

/// web-1's manifest without Flux's labels, annotated to be written back to
/// `url` (`path`, branch main) in overlay mode, applied in `ns`.
fn annotated_manifest(resource: &str, ns: &str, name: &str, url: &str, path: &str) -> String {
    let in_git = manifest(resource, ns).replace("name: web-1", &format!("name: {name}")).replace(
        "    kustomize.toolkit.fluxcd.io/name: infra\n    kustomize.toolkit.fluxcd.io/namespace: ",
        "    team: ",
    );
    let annotations = format!(
        "  annotations:\n    arcadia.cloud/accept-mode: overlay\n    arcadia.cloud/git-url: {url}\n    arcadia.cloud/git-path: {path}\n"
    );
    in_git.replace("spec:\n", &format!("{annotations}spec:\n"))
}

#[tokio::test]
async fn a_restart_between_two_accepts_makes_no_duplicate_commit() {
    let s = setup("wb-restart", "git-s3cret").await;
    let mut first = controller(&s);
    let a = accept_field(&s, "web-1", "size_slug").await;
    let committed_a = committed_of(&s, "web-1", "size_slug").await;
    let before = drift_of(&s, "web-1", "size_slug").await.unwrap().status.unwrap();
    assert_eq!(our_commits(&s).len(), 1);
    assert_eq!(first.terminate(), Some(0), "a graceful stop on SIGTERM");

    let _second = controller(&s);
    // Field B drifts after the restart: the live region moves.
    let p = Api::<CloudProvisioned>::namespaced(s.client.clone(), &s.ns).get("web-1").await.unwrap();
    let live = json!({"apiVersion": "arcadia.cloud/v1alpha1", "kind": "CloudResource",
        "status": {"region": "ams3", "sizeSlug": "s-2vcpu-4gb", "syncedTime": now()}});
    Api::<CloudResource>::all(s.client.clone())
        .patch_status(&p.spec.resource_ref.name, &PatchParams::apply("test-syncer").force(), &Patch::Apply(live))
        .await
        .unwrap();
    let b = accept_field(&s, "web-1", "region").await;
    let committed_b = committed_of(&s, "web-1", "region").await;

    let ours = our_commits(&s);
    assert_eq!(ours.len(), 2, "one commit per accept, none again for A: {ours:?}");
    let trailer = |d: &Drift| format!("Arcadia-Drift-Accept: {}/", d.metadata.uid.as_deref().unwrap());
    assert_eq!(ours[0].0, committed_b.commit);
    assert!(ours[0].1.contains(&trailer(&b)), "B's commit carries B's trailer: {}", ours[0].1);
    assert_eq!(ours[1].0, committed_a.commit);
    assert!(ours[1].1.contains(&trailer(&a)), "A's commit carries A's trailer: {}", ours[1].1);
    let text = s.server.file("infra", "main", "apps/web.yaml");
    assert!(text.contains("size_slug: s-2vcpu-4gb  # launch size") && text.contains("region: ams3"), "{text}");
    // A's outcome is still on its Drift, as the first controller recorded it.
    let after = drift_of(&s, "web-1", "size_slug").await.unwrap().status.unwrap();
    assert_eq!(after.git, before.git);
    assert_eq!(after.message, before.message);
    assert_eq!(events(&s, "AcceptCommitted").await.len(), 2);
}

#[tokio::test]
async fn of_two_servers_only_the_allowed_one_is_reached() {
    // X: web-1, applied by Flux from the allowed server.
    let s = setup("wb-two", "git-s3cret").await;
    // Y: web-2, whose own annotations name a second server, with no credentials of its own.
    let other = GitServer::start("flux", "git-s3cret");
    let resource = droplet(&s.client).await;
    let y = annotated_manifest(&resource, &s.ns, "web-2", &other.url("elsewhere"), "apps");
    other.create_repo("elsewhere", "main", &[("apps/web-2.yaml", &y)]);
    kubectl_stdin(&["-n", &s.ns, "apply", "--server-side", "-f", "-"], &y);
    let _controller = controller(&s);
    accept_field(&s, "web-1", "size_slug").await;
    accept_field(&s, "web-2", "size_slug").await;

    let committed = committed_of(&s, "web-1", "size_slug").await;
    let refused = eventually(WAIT, "web-2's refusal on its Drift", || async {
        drift_of(&s, "web-2", "size_slug").await?.status?.git.filter(|g| g.refused.is_some())
    })
    .await;
    let why = format!("write-back refused: {} is not in --git-allowed-remotes", other.url("elsewhere"));
    assert_eq!(refused.refused.as_deref(), Some(why.as_str()));
    let message = drift_of(&s, "web-2", "size_slug").await.unwrap().status.unwrap().message.unwrap();
    assert!(message.contains("not in --git-allowed-remotes"), "{message}");

    let ours = our_commits(&s);
    assert_eq!(ours.len(), 1, "exactly one commit on the allowed server: {ours:?}");
    assert_eq!(ours[0].0, committed.commit);
    let requests = other.authorizations.lock().unwrap().clone();
    assert!(requests.is_empty(), "the server not allowed was reached: {requests:?}");
    assert_eq!(other.log("elsewhere", "main").len(), 1, "nothing was pushed there");
    let sent = s.server.authorizations.lock().unwrap().clone();
    assert!(sent.iter().any(|a| a.starts_with("Basic ")), "the allowed server got the credentials: {sent:?}");
}

#[tokio::test]
async fn annotations_never_point_the_controllers_credentials_at_another_namespaces_unnamed_document() {
    // The platform's repository (allowed) holds web-1 of the platform's namespace, naming no namespace.
    let s = setup("wb-nsless", "git-s3cret").await;
    let tenant = common::namespace(&s.client, "wb-nsless-tenant").await;
    let resource = droplet(&s.client).await;
    let theirs = annotated_manifest(&resource, &tenant, "web-1", &s.server.url("infra"), "apps");
    kubectl_stdin(&["-n", &tenant, "apply", "--server-side", "-f", "-"], &theirs);
    let credentials = format!("{}/arcadia-drift-git", s.ns);
    let _controller = ControllerProcess::start(
        &tenant,
        &[
            "--git-writeback",
            "--git-credentials-secret",
            &credentials,
            "--git-allow-insecure-http",
            "--git-allowed-remotes",
            &format!("http://127.0.0.1:{}/", s.server.port),
        ],
    );
    let t = Setup { client: s.client.clone(), ns: tenant.clone(), server: s.server.clone() };
    accept_field(&t, "web-1", "size_slug").await;

    let refused = eventually(WAIT, "the refusal on the tenant's Drift", || async {
        drift_of(&t, "web-1", "size_slug").await?.status?.git.filter(|g| g.refused.is_some())
    })
    .await;
    let why = refused.refused.unwrap();
    let must = format!("a document must name namespace {tenant}");
    assert!(
        why.contains("apps/web.yaml: the document of CloudProvisioned web-1 names no namespace") && why.contains(&must),
        "{why}"
    );
    let message = drift_of(&t, "web-1", "size_slug").await.unwrap().status.unwrap().message.unwrap();
    assert!(message.contains(&must), "{message}");
    assert!(our_commits(&s).is_empty(), "the platform's manifest was changed");
    assert!(s.server.file("infra", "main", "apps/web.yaml").contains("size_slug: s-1vcpu-1gb  # launch size"));
}
