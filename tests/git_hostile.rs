//! Write-back against hostile remotes and repositories, on a real Git server
//! (`git http-backend` on loopback): nothing in a repository or a remote URL
//! runs a program, follows a link out of the tree, sends the credentials to
//! another host, or grows without bound. Each attack is one that worked
//! before git was sealed (issue 25).

mod common;

use arcadia_drift::writeback::git::{Credentials, GitError, GitSettings, Pushed, Remote, write_back};
use common::git_server::GitServer;
use common::hostile_http;
use common::writeback_fixtures::change;

use std::path::{Path, PathBuf};

fn settings() -> GitSettings {
    common::writeback_fixtures::settings(None)
}

const MANIFEST: &str = "apiVersion: arcadia.cloud/v1alpha1\nkind: CloudProvisioned\nmetadata:\n  name: web-1\n  namespace: team-a\nspec:\n  resourceRef: {name: digitalocean-droplet-1}\n  desired:\n    size_slug: s-1vcpu-1gb\n";

fn credentials() -> Credentials {
    Credentials::Basic { username: "flux".into(), password: "s3cret-token".into() }
}

/// A file that a payload creates when it runs; the test fails if it exists.
fn marker() -> PathBuf {
    std::env::temp_dir().join(format!("arcadia-pwned-{}", common::unique_suffix()))
}

fn executable(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Every way a repository's own files have of making git run a program:
/// a `.gitconfig` (read when `HOME` was the checkout) with hooks, fsmonitor
/// and a clean filter, the hooks themselves, and `.gitattributes`.
fn plant_payloads(work: &Path, marker: &Path) {
    let touch = format!("#!/bin/sh\necho \"$0 $GIT_CONFIG_VALUE_0\" >> {}\n", marker.display());
    for hook in ["pre-commit", "post-commit", "pre-push", "reference-transaction", "post-checkout", "post-index-change"]
    {
        executable(&work.join(".githooks").join(hook), &touch);
    }
    executable(&work.join("fsmonitor.sh"), &touch);
    executable(&work.join("clean.sh"), &touch);
    let config = format!(
        "[core]\n\thooksPath = .githooks\n\tfsmonitor = {fsmonitor}\n[filter \"x\"]\n\tclean = {clean}\n\tsmudge = {clean}\n",
        fsmonitor = work.join("fsmonitor.sh").display(),
        clean = work.join("clean.sh").display()
    )
    // The payload paths must hold in the controller's checkout: relative ones.
    .replace(&format!("{}/", work.display()), "./");
    std::fs::write(work.join(".gitconfig"), config).unwrap();
    std::fs::write(work.join(".gitattributes"), "* filter=x\n").unwrap();
}

fn symlink(target: &str, link: &Path) {
    std::fs::create_dir_all(link.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(target, link).unwrap();
}

#[tokio::test]
async fn a_repository_that_carries_git_config_hooks_and_symlink_loops_runs_nothing_and_is_committed_to() {
    let server = GitServer::start("flux", "s3cret-token");
    let marker = marker();
    server.create_repo("infra", "main", &[("apps/web.yaml", MANIFEST)]);
    server.commit_with("infra", "main", "payloads", |work| {
        plant_payloads(work, &marker);
        // Two links to `.` and one out of the tree: the old walk grew past 2.7 GB on these.
        symlink(".", &work.join("apps/loop-a"));
        symlink("..", &work.join("apps/loop-b"));
        symlink("/etc/passwd", &work.join("apps/passwd.yaml"));
    });
    let remote =
        Remote { url: server.url("infra"), branch: "main".into(), path: "apps".into(), default_namespace: None };

    let pushed = write_back(&settings(), &remote, Some(&credentials()), &change()).await.unwrap();

    let Pushed::Committed { path, commit, .. } = pushed else { panic!("{pushed:?}") };
    assert_eq!(path, "apps/web.yaml");
    assert!(!marker.exists(), "a payload ran: {}", std::fs::read_to_string(&marker).unwrap_or_default());
    assert_eq!(server.file("infra", "main", "apps/web.yaml"), MANIFEST.replace("s-1vcpu-1gb", "s-2vcpu-4gb"));
    // The commit changes that one file and keeps every link as it was.
    let changed = server.diff("infra", &commit);
    assert_eq!(changed.matches("diff --git").count(), 1, "{changed}");
    let links = common::git_server::git(&server.root.join("infra.git"), &["ls-tree", "main", "apps/"]);
    assert_eq!(links.matches("120000").count(), 3, "{links}");
}

#[tokio::test]
async fn links_large_files_and_paths_out_of_the_tree_are_never_read_and_the_refusal_says_so() {
    let server = GitServer::start("flux", "s3cret-token");
    server.create_repo("infra", "main", &[("elsewhere/web.yaml", MANIFEST)]);
    let big = "# padding\n".repeat(210_000);
    server.commit_with("infra", "main", "links", |work| {
        symlink("../elsewhere", &work.join("apps/linked"));
        std::fs::write(work.join("apps/huge.yaml"), &big).unwrap();
    });
    let remote =
        Remote { url: server.url("infra"), branch: "main".into(), path: "apps".into(), default_namespace: None };
    let error = write_back(&settings(), &remote, Some(&credentials()), &change()).await.unwrap_err();
    assert!(matches!(error, GitError::NotWritable(_)), "{error:?}");
    let text = error.to_string();
    assert!(text.contains("not written in a plain manifest under \"apps\" (0 YAML files searched"), "{text}");
    assert!(text.contains("not read: apps/huge.yaml (larger than a manifest may be)"), "{text}");
    assert!(!error.is_transient());

    // A path with `..` is refused before anything is fetched.
    let out = Remote { path: "apps/../../../etc".into(), ..remote.clone() };
    let error = write_back(&settings(), &out, Some(&credentials()), &change()).await.unwrap_err();
    assert_eq!(error.to_string(), "the Git path \"apps/../../../etc\" leaves the repository ('..' is not allowed)");
    assert_eq!(server.log("infra", "main").len(), 2, "nothing was pushed");
}

#[tokio::test]
async fn option_injection_in_the_remote_url_is_refused_before_git_runs() {
    let marker = marker();
    let payloads = [
        format!("--upload-pack=touch {} #@x:y", marker.display()),
        format!("-u touch {}@x:y", marker.display()),
        format!("ext::sh -c touch% {}", marker.display()),
        "ext::sh".to_owned(),
        "file:///etc".to_owned(),
        format!("x@y:--upload-pack=touch%20{}", marker.display()),
    ];
    for url in payloads {
        let remote = Remote { url: url.clone(), branch: "main".into(), path: ".".into(), default_namespace: None };
        let error = write_back(&settings(), &remote, Some(&credentials()), &change()).await.unwrap_err();
        let GitError::Refused(message) = &error else { panic!("{url}: {error:?}") };
        assert!(message.starts_with(&format!("Git remote {url:?} is refused: ")), "{message}");
        assert!(message.contains("allowed are https://host/path"), "{message}");
    }
    // A branch that would be a second refspec or an option is refused too.
    let server = GitServer::start("flux", "s3cret-token");
    server.create_repo("infra", "main", &[("web.yaml", MANIFEST)]);
    for branch in ["main:refs/heads/other", "--force", "main..x"] {
        let remote =
            Remote { url: server.url("infra"), branch: branch.into(), path: ".".into(), default_namespace: None };
        let error = write_back(&settings(), &remote, Some(&credentials()), &change()).await.unwrap_err();
        assert_eq!(error, GitError::Refused(format!("the Git branch {branch:?} is not a valid branch name")));
    }
    assert!(!marker.exists(), "an injected command ran");
    assert_eq!(*server.pushes.lock().unwrap(), 0);
}

#[tokio::test]
async fn the_credential_never_follows_a_redirect_to_another_host() {
    let (attacker, seen) = hostile_http::recording_server();
    let redirect = hostile_http::redirecting_server(format!("http://127.0.0.1:{attacker}/loot.git"));
    let remote = Remote {
        url: format!("http://127.0.0.1:{redirect}/infra.git"),
        branch: "main".into(),
        path: ".".into(),
        default_namespace: None,
    };

    let error = write_back(&settings(), &remote, Some(&credentials()), &change()).await.unwrap_err();

    assert!(matches!(error, GitError::Command { action: "fetch", .. }), "{error:?}");
    assert!(!error.to_string().contains("s3cret-token"), "{error}");
    assert_eq!(*seen.lock().unwrap(), Vec::<String>::new(), "the attacker's listener was reached");
}

/// Incompressible data, so a pack holding it really is this large.
fn noise(bytes: usize, seed: u64) -> Vec<u8> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ seed;
    (0..bytes)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 32) as u8
        })
        .collect()
}

#[tokio::test]
async fn a_repository_larger_than_the_fetch_limit_is_refused_with_the_limit() {
    let server = GitServer::start("flux", "s3cret-token");
    server.create_repo("infra", "main", &[("web.yaml", MANIFEST)]);
    server.commit_with("infra", "main", "a large blob", |work| {
        std::fs::write(work.join("blob.bin"), noise(3 << 20, 0)).unwrap()
    });
    let remote = Remote { url: server.url("infra"), branch: "main".into(), path: ".".into(), default_namespace: None };
    let small = GitSettings { max_fetch_bytes: 1 << 20, ..settings() };

    let error = write_back(&small, &remote, Some(&credentials()), &change()).await.unwrap_err();

    assert!(error.to_string().contains("larger than the write-back's limit of 1 MiB"), "{error}");
    assert!(matches!(error, GitError::NotWritable(_)) && !error.is_transient(), "refused for good: {error:?}");
    assert_eq!(server.log("infra", "main").len(), 2, "nothing was pushed");
}

/// Git would store a fetch of under 100 objects as loose files, each under the
/// per-file limit: 40 blobs of 256 KiB are bounded as the one pack they arrive in.
#[tokio::test]
async fn many_blobs_each_under_the_limit_are_bounded_together() {
    let server = GitServer::start("flux", "s3cret-token");
    server.create_repo("infra", "main", &[("web.yaml", MANIFEST)]);
    server.commit_with("infra", "main", "many blobs", |work| {
        for i in 0..40 {
            std::fs::write(work.join(format!("blob-{i}.bin")), noise(256 << 10, i)).unwrap();
        }
    });
    let remote = Remote { url: server.url("infra"), branch: "main".into(), path: ".".into(), default_namespace: None };
    let small = GitSettings { max_fetch_bytes: 1 << 20, ..settings() };

    let error = write_back(&small, &remote, Some(&credentials()), &change()).await.unwrap_err();

    assert!(error.to_string().contains("larger than the write-back's limit of 1 MiB"), "{error}");
    assert!(!error.is_transient(), "{error:?}");
    assert_eq!(server.log("infra", "main").len(), 2, "nothing was pushed");
}

#[test]
fn scratch_folders_of_dead_processes_are_removed_and_live_ones_kept() {
    let tmp = std::env::temp_dir();
    let dead = tmp.join(format!("arcadia-writeback-4000000000-{}", common::unique_suffix()));
    let live = tmp.join(format!("{}{}", arcadia_drift::writeback::git::scratch_prefix(), common::unique_suffix()));
    // In a container the controller is PID 1 at every start: a folder of an
    // earlier start has this process's PID, but not its start time.
    let earlier = tmp.join(format!("arcadia-writeback-{}-1-{}", std::process::id(), common::unique_suffix()));
    for dir in [&dead, &live, &earlier] {
        std::fs::create_dir_all(dir.join("ssh")).unwrap();
        std::fs::write(dir.join("ssh/identity"), "-----BEGIN OPENSSH PRIVATE KEY-----").unwrap();
    }
    arcadia_drift::writeback::git::remove_leftovers();
    assert!(!dead.exists(), "a killed process's clone and key are removed");
    assert!(!earlier.exists(), "a folder of an earlier process with the same PID is removed");
    assert!(live.exists(), "a running write-back's folder is kept");
    std::fs::remove_dir_all(live).unwrap();
}
