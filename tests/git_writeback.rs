//! Git write-back against a real Git server on loopback (`git http-backend`
//! behind basic auth): one commit with one changed line, idempotence by
//! trailer, push races, and every failure named without its credentials.

mod common;

use arcadia_drift::writeback::commit::Change;
use arcadia_drift::writeback::git::{Credentials, GitError, GitSettings, Pushed, Remote, write_back, write_back_while};
use common::git_server::GitServer;
use common::writeback_fixtures::{change, settings};
use serde_json::json;

const MANIFEST: &str = "# Web tier, team A\napiVersion: arcadia.cloud/v1alpha1\nkind: CloudProvisioned\nmetadata:\n  name: web-1\n  namespace: team-a\nspec:\n  resourceRef: {name: digitalocean-droplet-1}\n  desired:\n    size_slug: s-1vcpu-1gb   # sized for launch\n    region: nyc3\n";
const OTHER: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: unrelated}\ndata: {a: b}\n";

fn server_with_repo() -> (GitServer, Remote, Credentials) {
    let server = GitServer::start("flux", "s3cret-token");
    server.create_repo("infra", "main", &[("apps/web.yaml", MANIFEST), ("apps/other.yaml", OTHER)]);
    let remote =
        Remote { url: server.url("infra"), branch: "main".into(), path: "apps".into(), default_namespace: None };
    let credentials = Credentials::Basic { username: "flux".into(), password: "s3cret-token".into() };
    (server, remote, credentials)
}

#[tokio::test]
async fn one_commit_with_one_changed_line_and_a_trailer_then_never_again() {
    let (server, remote, credentials) = server_with_repo();
    let change = change();
    let pushed = write_back(&settings(None), &remote, Some(&credentials), &change).await.unwrap();
    let Pushed::Committed { branch, commit, path } = pushed else { panic!("{pushed:?}") };
    assert_eq!((branch.as_str(), path.as_str()), ("main", "apps/web.yaml"));
    let log = server.log("infra", "main");
    assert_eq!(log.len(), 2);
    assert_eq!(log[0].0, commit);
    assert!(log[0].1.starts_with("arcadia-drift: accept size_slug of team-a/web-1: s-1vcpu-1gb -> s-2vcpu-4gb"));
    assert!(log[0].1.contains(&change.trailer()), "{}", log[0].1);
    let diff = server.diff("infra", &commit);
    let changed: Vec<&str> =
        diff.lines().filter(|l| l.starts_with(['+', '-']) && !l.starts_with("+++") && !l.starts_with("---")).collect();
    assert_eq!(
        changed,
        ["-    size_slug: s-1vcpu-1gb   # sized for launch", "+    size_slug: s-2vcpu-4gb   # sized for launch"]
    );
    assert_eq!(server.file("infra", "main", "apps/web.yaml"), MANIFEST.replace("s-1vcpu-1gb ", "s-2vcpu-4gb "));

    // A restart after the push: the trailer is found, nothing new is committed.
    let again = write_back(&settings(None), &remote, Some(&credentials), &change).await.unwrap();
    assert_eq!(again, Pushed::AlreadyCommitted { branch: "main".into(), commit });
    assert_eq!(server.log("infra", "main").len(), 2);

    // A later accept of the same value (another episode) finds Git holding it already.
    let later = Change { accept_id: "other-episode".into(), ..change };
    let already = write_back(&settings(None), &remote, Some(&credentials), &later).await.unwrap();
    assert_eq!(already, Pushed::AlreadyInGit { branch: "main".into(), path: "apps/web.yaml".into() });
}

#[tokio::test]
async fn a_push_that_loses_a_race_is_made_again_on_the_new_head() {
    let (server, remote, credentials) = server_with_repo();
    let server = std::sync::Arc::new(server);
    let racer = server.clone();
    *server.before_push.lock().unwrap() = Some(Box::new(move || {
        racer.commit_files("infra", "main", &[("apps/other.yaml", &OTHER.replace("a: b", "a: c"))], "someone else");
    }));
    let pushed = write_back(&settings(None), &remote, Some(&credentials), &change()).await.unwrap();
    assert!(matches!(pushed, Pushed::Committed { .. }), "{pushed:?}");
    assert_eq!(*server.pushes.lock().unwrap(), 2, "rejected once, then pushed");
    let log = server.log("infra", "main");
    assert_eq!(log.len(), 3);
    assert!(log[0].1.starts_with("arcadia-drift: accept") && log[1].1.starts_with("someone else"));
    assert!(server.file("infra", "main", "apps/other.yaml").contains("a: c"), "the other change is kept");
}

#[tokio::test]
async fn a_field_changed_in_git_meanwhile_is_not_pushed() {
    let (server, remote, credentials) = server_with_repo();
    let server = std::sync::Arc::new(server);
    let racer = server.clone();
    *server.before_push.lock().unwrap() = Some(Box::new(move || {
        let moved = MANIFEST.replace("s-1vcpu-1gb", "s-8vcpu-16gb");
        racer.commit_files("infra", "main", &[("apps/web.yaml", &moved)], "resize by hand");
    }));
    let error = write_back(&settings(None), &remote, Some(&credentials), &change()).await.unwrap_err();
    assert_eq!(
        error.to_string(),
        "Git's spec.desired.size_slug in apps/web.yaml is now s-8vcpu-16gb (it was s-1vcpu-1gb when the value s-2vcpu-4gb was accepted); nothing was pushed"
    );
    assert!(!error.is_transient());
    assert!(server.log("infra", "main").iter().all(|(_, m)| !m.contains("arcadia-drift")));
}

#[tokio::test]
async fn a_review_branch_leaves_the_branch_alone() {
    let (server, remote, credentials) = server_with_repo();
    let pushed =
        write_back(&settings(Some("arcadia-drift/{namespace}-{name}-{field}")), &remote, Some(&credentials), &change())
            .await
            .unwrap();
    let Pushed::Committed { branch, .. } = pushed else { panic!("{pushed:?}") };
    assert_eq!(branch, "arcadia-drift/team-a-web-1-size_slug");
    assert_eq!(server.log("infra", "main").len(), 1, "main is untouched");
    assert_eq!(server.log("infra", &branch).len(), 2);
    let mut branches = server.branches("infra");
    branches.sort();
    assert_eq!(branches, ["arcadia-drift/team-a-web-1-size_slug", "main"]);
}

#[tokio::test]
async fn failures_say_what_failed_and_never_the_password() {
    let (server, remote, _) = server_with_repo();
    let wrong = Credentials::Basic { username: "flux".into(), password: "wrong-password".into() };
    let error = write_back(&settings(None), &remote, Some(&wrong), &change()).await.unwrap_err();
    let text = error.to_string();
    assert!(text.starts_with(&format!("git fetch {}: ", remote.url)), "{text}");
    assert!(text.contains("401") || text.contains("Authentication failed"), "{text}");
    assert!(!text.contains("wrong-password"), "{text}");
    assert!(error.is_transient());

    let good = Credentials::Basic { username: "flux".into(), password: "s3cret-token".into() };
    let missing = Remote { url: server.url("nowhere"), ..remote.clone() };
    let error = write_back(&settings(None), &missing, Some(&good), &change()).await.unwrap_err();
    assert!(matches!(error, GitError::Command { action: "fetch", .. }), "{error}");

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let unreachable = Remote { url: format!("http://127.0.0.1:{closed}/infra.git"), ..remote.clone() };
    let error = write_back(&settings(None), &unreachable, Some(&good), &change()).await.unwrap_err();
    assert!(
        error.to_string().contains("Failed to connect") || error.to_string().contains("Connection refused"),
        "{error}"
    );

    server.protect("infra", "main");
    let error = write_back(&settings(None), &remote, Some(&good), &change()).await.unwrap_err();
    assert!(matches!(error, GitError::Command { action: "push", .. }), "{error}");
    assert!(error.to_string().contains("protected branch main"), "{error}");

    let strict = GitSettings { allow_insecure_http: false, ..settings(None) };
    let error = write_back(&strict, &remote, Some(&good), &change()).await.unwrap_err();
    assert_eq!(
        error,
        GitError::Refused(format!(
            "refusing to send Git credentials over plain http to {}; use https, or --git-allow-insecure-http",
            remote.url
        ))
    );
}

#[tokio::test]
async fn a_field_that_is_not_written_literally_changes_nothing_and_names_the_files() {
    let server = GitServer::start("flux", "pw");
    let base = MANIFEST.replace("    size_slug: s-1vcpu-1gb   # sized for launch\n", "");
    server.create_repo(
        "infra",
        "main",
        &[("base/web.yaml", &base), ("chart/templates/x.yaml", "{{- if .Values.on }}\nkind: X\n{{- end }}\n")],
    );
    let remote = Remote { url: server.url("infra"), branch: "main".into(), path: "/".into(), default_namespace: None };
    let credentials = Credentials::Basic { username: "flux".into(), password: "pw".into() };
    let error = write_back(&settings(None), &remote, Some(&credentials), &change()).await.unwrap_err();
    assert_eq!(
        error.to_string(),
        "base/web.yaml: spec.desired.size_slug is not written in the document of CloudProvisioned web-1 (the field is not in spec.desired)"
    );
    let nothing = Remote { path: "chart".into(), ..remote };
    let error = write_back(&settings(None), &nothing, Some(&credentials), &change()).await.unwrap_err();
    assert!(error.to_string().contains("not written in a plain manifest under \"chart\" (1 YAML file searched: chart/templates/x.yaml; not plain YAML, e.g. templates: chart/templates/x.yaml)"), "{error}");
    assert_eq!(server.log("infra", "main").len(), 1);
}

/// Flux's recommended layout: the Kustomization's path is an overlay of a base.
fn server_with_overlay(overlay: &str) -> (GitServer, Remote, Credentials) {
    let server = GitServer::start("flux", "pw");
    server.create_repo(
        "fleet",
        "main",
        &[
            ("fleet/production/kustomization.yaml", overlay),
            ("fleet/base/kustomization.yaml", "resources: [web.yaml]\n"),
            ("fleet/base/web.yaml", MANIFEST),
            ("fleet/base/unlisted.yaml", OTHER),
        ],
    );
    let remote = Remote {
        url: server.url("fleet"),
        branch: "main".into(),
        path: "fleet/production".into(),
        default_namespace: None,
    };
    (server, remote, Credentials::Basic { username: "flux".into(), password: "pw".into() })
}

#[tokio::test]
async fn an_overlay_is_followed_into_its_base_and_the_base_file_gets_the_one_line() {
    let (server, remote, credentials) = server_with_overlay("resources: [../base]\n");
    let pushed = write_back(&settings(None), &remote, Some(&credentials), &change()).await.unwrap();
    let Pushed::Committed { commit, path, .. } = pushed else { panic!("{pushed:?}") };
    assert_eq!(path, "fleet/base/web.yaml");
    assert_eq!(*server.pushes.lock().unwrap(), 1);
    assert_eq!(server.log("fleet", "main").len(), 2);
    let diff = server.diff("fleet", &commit);
    let files: Vec<&str> = diff.lines().filter(|l| l.starts_with("+++ ")).collect();
    assert_eq!(files, ["+++ b/fleet/base/web.yaml"]);
    let changed: Vec<&str> =
        diff.lines().filter(|l| l.starts_with(['+', '-']) && !l.starts_with("+++") && !l.starts_with("---")).collect();
    assert_eq!(
        changed,
        ["-    size_slug: s-1vcpu-1gb   # sized for launch", "+    size_slug: s-2vcpu-4gb   # sized for launch"]
    );
}

#[tokio::test]
async fn a_patch_of_the_field_in_the_overlay_is_named_and_nothing_is_pushed() {
    let overlay = "resources: [../base]\npatches:\n- patch: |\n    apiVersion: arcadia.cloud/v1alpha1\n    kind: CloudProvisioned\n    metadata: {name: web-1, namespace: team-a}\n    spec:\n      desired: {size_slug: s-4vcpu-8gb}\n";
    let (server, remote, credentials) = server_with_overlay(overlay);
    let error = write_back(&settings(None), &remote, Some(&credentials), &change()).await.unwrap_err();
    assert_eq!(
        error,
        GitError::NotWritable(
            "spec.desired.size_slug of CloudProvisioned team-a/web-1 is changed by the patch in fleet/production/kustomization.yaml (patches[0]): change it there, it is left for a person".into()
        )
    );
    assert!(!error.is_transient());
    assert_eq!(*server.pushes.lock().unwrap(), 0, "nothing was pushed");
    assert_eq!(server.log("fleet", "main").len(), 1);
}

#[tokio::test]
async fn over_ssh_with_a_key_and_pinned_host_keys() {
    let (server, _, _) = server_with_repo();
    let ssh = common::git_server::SshServer::start(&server);
    let remote =
        Remote { url: ssh.url("infra"), branch: "main".into(), path: "apps/web.yaml".into(), default_namespace: None };
    let key = Credentials::Ssh { identity: ssh.identity.clone(), known_hosts: ssh.known_hosts.clone() };
    let pushed = write_back(&settings(None), &remote, Some(&key), &change()).await.unwrap();
    assert!(matches!(pushed, Pushed::Committed { .. }), "{pushed:?}");
    assert_eq!(server.log("infra", "main").len(), 2);

    // A host key that is not the server's is refused, never trusted on first use.
    let other = ssh.known_hosts.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
        + " AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";
    let wrong = Credentials::Ssh { identity: ssh.identity.clone(), known_hosts: other };
    let error = write_back(&settings(None), &remote, Some(&wrong), &Change { accept_id: "x".into(), ..change() })
        .await
        .unwrap_err();
    assert!(error.to_string().contains("Host key verification failed"), "{error}");
    assert!(!error.to_string().contains("PRIVATE KEY"));

    // An SSH remote with HTTPS credentials is refused before anything runs.
    let basic = Credentials::Basic { username: "flux".into(), password: "s3cret-token".into() };
    let error = write_back(&settings(None), &remote, Some(&basic), &change()).await.unwrap_err();
    assert!(matches!(error, GitError::Refused(_)), "{error}");
}

#[tokio::test]
async fn a_change_that_stops_being_current_before_the_push_is_never_pushed() {
    let (server, remote, credentials) = server_with_repo();
    // Current when the work starts, stale by the time the commit is ready (a newer accept came in).
    let asked = std::sync::atomic::AtomicU32::new(0);
    let still_current = || std::future::ready(asked.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0);
    let error =
        write_back_while(&settings(None), &remote, Some(&credentials), &change(), still_current).await.unwrap_err();
    assert_eq!(error, GitError::Superseded);
    assert_eq!(asked.load(std::sync::atomic::Ordering::SeqCst), 2, "asked before the fetch and before the push");
    assert_eq!(*server.pushes.lock().unwrap(), 0, "nothing was pushed");
    assert_eq!(server.log("infra", "main").len(), 1);
}

#[tokio::test]
async fn a_newer_accept_of_the_same_drift_replaces_the_value_an_older_one_pushed() {
    let (server, remote, credentials) = server_with_repo();
    let uid = common::unique_suffix();
    // Accept V1 was pushed late, after the live value moved and V2 was accepted (same Drift, next episode).
    let v1 = Change { value: json!("s-2vcpu-4gb"), accept_id: format!("{uid}/2026-11-30T02:00:00Z"), ..change() };
    write_back(&settings(None), &remote, Some(&credentials), &v1).await.unwrap();
    let v2 = Change { value: json!("s-4vcpu-8gb"), accept_id: format!("{uid}/2026-11-30T02:05:00Z"), ..change() };
    let pushed = write_back(&settings(None), &remote, Some(&credentials), &v2).await.unwrap();
    assert!(matches!(pushed, Pushed::Committed { .. }), "{pushed:?}");
    assert!(server.file("infra", "main", "apps/web.yaml").contains("size_slug: s-4vcpu-8gb   # sized for launch"));
    assert_eq!(server.log("infra", "main").len(), 3, "V1, then V2 over it");

    // Once a person commits over the field, Git's word wins again: the next accept is refused.
    server.commit_files("infra", "main", &[("apps/web.yaml", &MANIFEST.replace("s-1vcpu-1gb", "s-8vcpu-16gb"))], "ops");
    let other = Change { value: json!("s-2vcpu-2gb"), accept_id: format!("{uid}/2026-11-30T03:00:00Z"), ..change() };
    let error = write_back(&settings(None), &remote, Some(&credentials), &other).await.unwrap_err();
    assert!(matches!(error, GitError::NotWritable(_)), "{error:?}");
}
