//! The Git side of a write-back, through the `git` command line: it speaks
//! every transport and credential scheme users have, and is what the image
//! carries. Each write-back works in a fresh private bare repository (shallow
//! fetch), so no state survives between attempts but what is in the remote.
//!
//! Git runs sealed, because the remote and everything in it are tenant data:
//! - no working tree is ever checked out: manifests are read as blobs and the
//!   commit is built with plumbing (`hash-object`, `update-index` on a private
//!   index, `commit-tree`), so no file of the repository is interpreted by git
//!   (a committed `.gitconfig`, `.gitattributes` or symbolic link is inert);
//! - `HOME` and `XDG_CONFIG_HOME` are an empty private folder, no global or
//!   system config is read, hooks and fsmonitor are off, only the remote's
//!   own protocol is allowed, redirects are not followed, and every URL and
//!   refspec follows `--end-of-options`;
//! - every command has a deadline, its output a size bound, and the files it
//!   writes (the fetched pack) a size limit (`RLIMIT_FSIZE`).
//!
//! Credentials travel in the environment of the git child process (an
//! `http.<url>.extraHeader` scoped to the remote, set through `GIT_CONFIG_*`),
//! never on a command line, in a URL, in a log or in an error.

use super::commit::Change;
use super::files::{self, Decision};
use super::kustomize::{self, Plan};
use super::remote_url::{self, Auth, RemoteUrl};
use super::tree::{self, Blob, Limits};
use base64::Engine;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

/// Where to commit.
#[derive(Clone, Debug, PartialEq)]
pub struct Remote {
    pub url: String,
    pub branch: String,
    /// A file, or a folder whose YAML files are searched, relative to the repository root.
    pub path: String,
    /// The namespace the GitOps tool gives a document that names none (a Flux
    /// Kustomization's targetNamespace, an Argo CD destination): such a
    /// document is the object only in that namespace. `None`: any namespace.
    pub default_namespace: Option<String>,
}

/// Push credentials, as a Flux GitRepository Secret holds them.
#[derive(Clone, PartialEq)]
pub enum Credentials {
    /// HTTPS basic: `username` and `password` (or a token).
    Basic { username: String, password: String },
    /// SSH: the private key `identity` and the server's `known_hosts` lines.
    Ssh { identity: String, known_hosts: String },
}

impl Credentials {
    fn auth(&self) -> Auth {
        match self {
            Credentials::Basic { .. } => Auth::Basic,
            Credentials::Ssh { .. } => Auth::Ssh,
        }
    }

    /// What must never be shown.
    fn secret(&self) -> &str {
        match self {
            Credentials::Basic { password, .. } => password,
            Credentials::Ssh { identity, .. } => identity,
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Basic { username, .. } => {
                write!(f, "Basic {{ username: {username:?}, password: <redacted> }}")
            }
            Credentials::Ssh { .. } => write!(f, "Ssh {{ identity: <redacted>, known_hosts: .. }}"),
        }
    }
}

#[derive(Clone, Debug)]
pub struct GitSettings {
    pub author_name: String,
    pub author_email: String,
    /// Push to a new branch from this template instead of the branch itself.
    pub push_branch: Option<String>,
    pub allow_insecure_http: bool,
    /// How often a push rejected because the branch moved is retried on the new head.
    pub max_attempts: u32,
    /// How long one git command may take.
    pub timeout: Duration,
    /// The largest file a git command may write: the fetched pack above all.
    pub max_fetch_bytes: u64,
}

impl GitSettings {
    /// The default bound of a fetch: far above a repository of manifests;
    /// a write-back to a review branch fetches twice, and both packs with
    /// their indexes stay below the chart's 256Mi scratch volume.
    pub const MAX_FETCH_BYTES: u64 = 64 << 20;
}

/// What a write-back did.
#[derive(Clone, Debug, PartialEq)]
pub enum Pushed {
    /// A new commit, pushed to `branch`.
    Committed { branch: String, commit: String, path: String },
    /// The accept's commit was already in the branch's history (a restart after a push).
    AlreadyCommitted { branch: String, commit: String },
    /// Git already holds the accepted value: nothing to commit.
    AlreadyInGit { branch: String, path: String },
}

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum GitError {
    /// The configuration refuses this write (remote, credentials): retrying will not help.
    #[error("{0}")]
    Refused(String),
    /// No file can be changed safely, or Git's value moved: retrying will not help.
    #[error("{0}")]
    NotWritable(String),
    /// A git command failed (unreachable, bad credentials, not found, protected branch).
    #[error("git {action} {url}: {message}")]
    Command { action: &'static str, url: String, message: String },
    #[error("the branch {branch} of {url} kept moving: {attempts} pushes were rejected")]
    Raced { url: String, branch: String, attempts: u32 },
    /// The change is no longer the object's decision (a later accept, a merge): not pushed.
    #[error("the accept is no longer the object's pending change; nothing was pushed")]
    Superseded,
    /// The field's text in Git is a Flux `${VAR}` substitution: retrying will not help.
    #[error("spec.desired.{field} in {path} is the Flux substitution ${{{variable}}}, not a value; nothing was pushed")]
    Substituted { path: String, field: String, variable: String },
}

impl GitError {
    /// Whether a later attempt may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, GitError::Command { .. } | GitError::Raced { .. })
    }
}

/// What one git command may print (the tree listing, the blobs, the log).
const MAX_OUTPUT_BYTES: usize = 32 << 20;
/// What is kept of a failing command's error output.
const MAX_ERROR_BYTES: usize = 16 << 10;
/// How an answer over [`MAX_OUTPUT_BYTES`] is reported.
const TOO_MUCH_OUTPUT: &str = "git printed more than";

/// Commits `change` to `remote` and pushes it, unless its commit or its value is there already.
pub async fn write_back(
    settings: &GitSettings,
    remote: &Remote,
    credentials: Option<&Credentials>,
    change: &Change,
) -> Result<Pushed, GitError> {
    write_back_while(settings, remote, credentials, change, || std::future::ready(true)).await
}

/// As [`write_back`], asking `still_current` before each fetch and again
/// before each push: a change that is no longer the object's decision is
/// dropped ([`GitError::Superseded`]) rather than committed over a newer one.
pub async fn write_back_while<F: Future<Output = bool>>(
    settings: &GitSettings,
    remote: &Remote,
    credentials: Option<&Credentials>,
    change: &Change,
    still_current: impl Fn() -> F,
) -> Result<Pushed, GitError> {
    let url = remote_url::parse(&remote.url).map_err(|e| GitError::Refused(e.to_string()))?;
    let auth = credentials.map_or(Auth::None, Credentials::auth);
    url.check_auth(auth, settings.allow_insecure_http).map_err(|e| GitError::Refused(e.to_string()))?;
    remote_url::check_branch(&remote.branch).map_err(|e| GitError::Refused(e.to_string()))?;
    let root = tree::normalize(&remote.path).map_err(|e| GitError::NotWritable(e.to_string()))?;
    let target = match &settings.push_branch {
        Some(template) => change.review_branch(template),
        None => remote.branch.clone(),
    };
    remote_url::check_branch(&target).map_err(|e| GitError::Refused(e.to_string()))?;
    let repo = Scratch::new(settings, url, credentials).await?;
    for _ in 0..settings.max_attempts.max(1) {
        if !still_current().await {
            return Err(GitError::Superseded);
        }
        let base = repo.fetch(&remote.branch, &target).await?;
        if let Some(commit) = repo.find_trailer(&change.trailer()).await? {
            return Ok(Pushed::AlreadyCommitted { branch: target, commit });
        }
        let (path, blob) = match repo.decide(&base, remote, &root, change).await? {
            Decided::Edit { path, text, mode } => (path, repo.write_blob(&text, &mode).await?),
            Decided::AlreadyInGit { path } => return Ok(Pushed::AlreadyInGit { branch: target, path }),
        };
        let commit = repo.commit(&base, &path, &blob, change).await?;
        if !still_current().await {
            return Err(GitError::Superseded);
        }
        match repo.push(&commit, &target).await? {
            true => return Ok(Pushed::Committed { branch: target, commit, path }),
            false => tracing::info!(branch = %target, "push rejected: the branch moved; retrying on its new head"),
        }
    }
    Err(GitError::Raced { url: remote.url.clone(), branch: target, attempts: settings.max_attempts.max(1) })
}

/// Removes the scratch folders of write-backs whose process is gone (a kill
/// leaves its clone and its SSH key behind); called once at start. A folder is
/// named for its process and that process's start time: in a container the
/// controller is PID 1 at every start, so the PID alone would claim a dead
/// predecessor's folder as its own.
pub fn remove_leftovers() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(SCRATCH_PREFIX)) else { continue };
        let mut parts = rest.split('-');
        let (pid, started) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
        if pid.is_empty() || process_start(pid).is_some_and(|now| now == started) {
            continue;
        }
        match std::fs::remove_dir_all(entry.path()) {
            Ok(()) => {
                tracing::info!(path = %entry.path().display(), "removed a write-back folder left by a killed process")
            }
            Err(error) => {
                tracing::warn!(path = %entry.path().display(), %error, "cannot remove a leftover write-back folder")
            }
        }
    }
}

/// The start of this process's scratch folders' names: the prefix, the PID and its start time.
pub fn scratch_prefix() -> String {
    let pid = std::process::id().to_string();
    format!("{SCRATCH_PREFIX}{pid}-{}-", process_start(&pid).unwrap_or_default())
}

/// When process `pid` started, in clock ticks since boot (`/proc/<pid>/stat`, field 22).
fn process_start(pid: &str) -> Option<String> {
    let stat = std::fs::read_to_string(Path::new("/proc").join(pid).join("stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses; the fields after it may not.
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(19).map(str::to_owned)
}

const SCRATCH_PREFIX: &str = "arcadia-writeback-";

/// What to do with one fetched head.
enum Decided {
    Edit { path: String, text: String, mode: String },
    AlreadyInGit { path: String },
}

/// A private folder for one write-back, removed when dropped: a bare
/// repository, an empty home, a private index and the SSH key.
struct Scratch<'a> {
    dir: PathBuf,
    settings: &'a GitSettings,
    url: RemoteUrl,
    credentials: Option<&'a Credentials>,
}

impl Drop for Scratch<'_> {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What git says when the branch moved between our fetch and our push.
const RACE_MARKERS: [&str; 5] = ["non-fast-forward", "fetch first", "[rejected]", "stale info", "but expected"];

/// How many commits of history are fetched to look for an earlier commit of the same accept.
const HISTORY_DEPTH: &str = "100";

impl<'a> Scratch<'a> {
    async fn new(
        settings: &'a GitSettings,
        url: RemoteUrl,
        credentials: Option<&'a Credentials>,
    ) -> Result<Self, GitError> {
        let dir = std::env::temp_dir().join(format!("{}{:x}", scratch_prefix(), crate::runtime::jitter::unique()));
        private_dir(&dir)?;
        let scratch = Scratch { dir, settings, url, credentials };
        private_dir(&scratch.home())?;
        private_dir(&scratch.repo())?;
        if let Some(Credentials::Ssh { identity, known_hosts }) = credentials {
            private_dir(&scratch.ssh_dir())?;
            private_file(&scratch.ssh_dir().join("identity"), identity)?;
            private_file(&scratch.ssh_dir().join("known_hosts"), known_hosts)?;
        }
        let template = format!("--template={}", scratch.home().display());
        scratch.git(&["init", "-q", "--bare", &template], "init").await?;
        Ok(scratch)
    }

    fn repo(&self) -> PathBuf {
        self.dir.join("repo")
    }

    /// An empty folder for `HOME`: no `.gitconfig`, `.ssh` or `.netrc` is ever found.
    fn home(&self) -> PathBuf {
        self.dir.join("home")
    }

    fn ssh_dir(&self) -> PathBuf {
        self.dir.join("ssh")
    }

    /// Fetches the branch (and the push target, when it differs); returns the
    /// commit to build on: the push target's head when it exists, else the branch's.
    async fn fetch(&self, branch: &str, target: &str) -> Result<String, GitError> {
        self.fetch_branch(branch).await?;
        let base = if target == branch {
            branch
        } else {
            match self.fetch_branch(target).await {
                Ok(()) => target,
                // A review branch that does not exist yet starts from the branch.
                Err(GitError::Command { message, .. }) if message.contains("couldn't find remote ref") => branch,
                Err(error) => return Err(error),
            }
        };
        let rev = format!("refs/remotes/origin/{base}^{{commit}}");
        let out = self.git(&["rev-parse", "--verify", "-q", "--end-of-options", &rev], "rev-parse").await?;
        Ok(out.trim().to_owned())
    }

    async fn fetch_branch(&self, branch: &str) -> Result<(), GitError> {
        let refspec = format!("+refs/heads/{branch}:refs/remotes/origin/{branch}");
        self.git(&fetch_args(&self.url, &refspec), "fetch").await.map(drop)
    }

    /// The commit whose message carries `trailer`, among the fetched history.
    async fn find_trailer(&self, trailer: &str) -> Result<Option<String>, GitError> {
        let log = self.git(&["log", "--max-count=500", "--remotes", "--format=%H%x1f%B%x1e"], "log").await?;
        Ok(log.split('\u{1e}').find_map(|entry| {
            let (commit, body) = entry.trim_start().split_once('\u{1f}')?;
            body.lines().any(|line| line.trim() == trailer).then(|| commit.to_owned())
        }))
    }

    /// Reads the manifests under `root` of `base` (and, from a kustomization
    /// there, the files it includes) and decides which file to change.
    async fn decide(&self, base: &str, remote: &Remote, root: &str, change: &Change) -> Result<Decided, GitError> {
        let plan = std::sync::Arc::new(self.plan(base, root).await?);
        let files = std::sync::Arc::new(self.read_blobs(&plan.manifests).await?);
        let mut decision = self.decide_files(&plan, &files, remote, change.clone()).await?;
        if let Decision::GitChanged { path, now } = &decision
            && self.last_commit_is_ours(base, path, change).await?
        {
            // Git holds what an earlier accept of this same Drift committed (a
            // push that landed after a newer accept): ours to replace.
            let again = Change { spec_value: now.clone(), ..change.clone() };
            decision = self.decide_files(&plan, &files, remote, again).await?;
        }
        match decision {
            Decision::Edit { path, text } => {
                let mode = plan.manifests.iter().find(|b| b.path == path).map_or("100644", |b| &b.mode).to_owned();
                Ok(Decided::Edit { path, text, mode })
            }
            Decision::AlreadyInGit { path } => Ok(Decided::AlreadyInGit { path }),
            Decision::GitChanged { path, now } => {
                Err(GitError::NotWritable(files::describe_git_change(&path, &now, change)))
            }
            Decision::Substituted { path, variable } => {
                Err(GitError::Substituted { path, field: change.field.clone(), variable })
            }
            Decision::NotWritable(why) => Err(GitError::NotWritable(with_passed_over(why, &plan.passed_over))),
        }
    }

    /// The pure decision over the files read, off the async runtime.
    async fn decide_files(
        &self,
        plan: &std::sync::Arc<Plan>,
        files: &std::sync::Arc<Vec<(String, String)>>,
        remote: &Remote,
        change: Change,
    ) -> Result<Decision, GitError> {
        let (plan, files) = (plan.clone(), files.clone());
        let (searched, default_namespace) = (remote.path.clone(), remote.default_namespace.clone());
        self.off_the_runtime(move || kustomize::decide(&plan, &files, &change, &searched, default_namespace.as_deref()))
            .await
    }

    /// Whether the last commit that changed `path` was this controller's, for
    /// an earlier accept of the same Drift (its trailer names the Drift's uid).
    async fn last_commit_is_ours(&self, base: &str, path: &str, change: &Change) -> Result<bool, GitError> {
        let Some(uid) = change.accept_id.split('/').next().filter(|u| !u.is_empty()) else { return Ok(false) };
        let ours = format!("{}: {uid}/", super::commit::TRAILER);
        let body = self.git(&["log", "-1", "--format=%B", base, "--", path], "log").await?;
        Ok(body.lines().any(|line| line.trim().starts_with(&ours)))
    }

    /// Which files make up what the GitOps tool applies from `root`, read in
    /// rounds: each round's kustomization files name the next round's folders.
    async fn plan(&self, base: &str, root: &str) -> Result<Plan, GitError> {
        let not_writable = |e: tree::TreeError| GitError::NotWritable(e.to_string());
        let mut blobs = self.list(base, root).await?;
        if !root.is_empty() && kustomize::is_kustomized(&blobs, root) {
            // `../base` lies outside the searched path: the whole tree, filtered in Rust.
            blobs = self.list(base, "").await?;
        }
        let mut walk = kustomize::Walk::new(blobs, root, Limits::default()).map_err(not_writable)?;
        loop {
            let next = walk.to_read().map_err(not_writable)?;
            if next.is_empty() {
                return Ok(walk.finish());
            }
            let texts = self.read_blobs(&next).await?;
            walk = self.off_the_runtime(move || walk.feed(texts).map(|()| walk)).await?.map_err(not_writable)?;
        }
    }

    /// Every blob of `base` under `root` (`""`: the whole tree).
    async fn list(&self, base: &str, root: &str) -> Result<Vec<Blob>, GitError> {
        let mut args = vec!["ls-tree", "-r", "-z", "--long", "--full-tree", base];
        if !root.is_empty() {
            args.extend(["--", root]);
        }
        let listing = self.run(&args, "ls-tree", None).await?;
        tree::parse_ls_tree(&listing).map_err(|e| GitError::NotWritable(e.to_string()))
    }

    /// Parsing up to 16 MiB of hostile YAML is CPU work: it runs on a blocking
    /// thread, within the command deadline, so the controller's async workers
    /// (and `/healthz`) keep answering.
    async fn off_the_runtime<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, GitError> {
        let work = tokio::task::spawn_blocking(work);
        // Transient: a pod throttled to a low CPU limit can take this long on a good repository.
        let fail = |message: String| GitError::Command { action: "read", url: self.url.to_string(), message };
        tokio::time::timeout(self.settings.timeout, work)
            .await
            .map_err(|_| fail(format!("reading the manifests took over {}s", self.settings.timeout.as_secs())))?
            .map_err(|e| fail(format!("reading the manifests failed: {e}")))
    }

    /// The texts of `blobs`, through one `git cat-file --batch`.
    async fn read_blobs(&self, blobs: &[Blob]) -> Result<Vec<(String, String)>, GitError> {
        if blobs.is_empty() {
            return Ok(Vec::new());
        }
        let input: String = blobs.iter().map(|b| format!("{}\n", b.oid)).collect();
        let out = self.run(&["cat-file", "--batch"], "cat-file", Some(input.into_bytes())).await?;
        let mut rest = out.as_slice();
        let mut files = Vec::with_capacity(blobs.len());
        for blob in blobs {
            let garbled = || GitError::NotWritable(format!("git cat-file printed garbage for {}", blob.path));
            let newline = rest.iter().position(|b| *b == b'\n').ok_or_else(garbled)?;
            let size: usize = std::str::from_utf8(&rest[..newline])
                .ok()
                .and_then(|header| header.rsplit(' ').next()?.parse().ok())
                .ok_or_else(garbled)?;
            let body = rest.get(newline + 1..newline + 1 + size).ok_or_else(garbled)?;
            // A file that is not UTF-8 is not a manifest this controller edits.
            if let Ok(text) = std::str::from_utf8(body) {
                files.push((blob.path.clone(), text.to_owned()));
            }
            rest = rest.get(newline + 2 + size..).unwrap_or_default();
        }
        Ok(files)
    }

    async fn write_blob(&self, text: &str, mode: &str) -> Result<(String, String), GitError> {
        let args = ["hash-object", "-w", "--stdin"];
        let oid = self.git_with_input(&args, "hash-object", text.as_bytes().to_vec()).await?;
        Ok((mode.to_owned(), oid.trim().to_owned()))
    }

    /// A commit on `base` that changes only `path` to `blob`, built in a private index.
    async fn commit(
        &self,
        base: &str,
        path: &str,
        blob: &(String, String),
        change: &Change,
    ) -> Result<String, GitError> {
        self.git(&["read-tree", "--end-of-options", base], "read-tree").await?;
        let cacheinfo = format!("{},{},{path}", blob.0, blob.1);
        self.git(&["update-index", "--add", "--cacheinfo", &cacheinfo], "update-index").await?;
        let tree = self.git(&["write-tree"], "write-tree").await?;
        let args = ["commit-tree", tree.trim(), "-p", base, "-F", "-"];
        let commit = self.git_with_input(&args, "commit-tree", change.message().into_bytes()).await?;
        Ok(commit.trim().to_owned())
    }

    /// Pushes `commit`; `false` when the remote rejected it because the branch moved.
    async fn push(&self, commit: &str, target: &str) -> Result<bool, GitError> {
        let refspec = format!("{commit}:refs/heads/{target}");
        match self.git(&push_args(&self.url, &refspec), "push").await {
            Ok(_) => Ok(true),
            Err(GitError::Command { message, .. }) if RACE_MARKERS.iter().any(|m| message.contains(m)) => Ok(false),
            Err(error) => Err(error),
        }
    }

    async fn git(&self, args: &[&str], action: &'static str) -> Result<String, GitError> {
        Ok(String::from_utf8_lossy(&self.run(args, action, None).await?).into_owned())
    }

    async fn git_with_input(&self, args: &[&str], action: &'static str, input: Vec<u8>) -> Result<String, GitError> {
        Ok(String::from_utf8_lossy(&self.run(args, action, Some(input)).await?).into_owned())
    }

    /// Runs sealed git in the bare repository; stdout, or an error with git's own words.
    async fn run(&self, args: &[&str], action: &'static str, input: Option<Vec<u8>>) -> Result<Vec<u8>, GitError> {
        let fail = |message: String| GitError::Command { action, url: self.url.to_string(), message };
        let mut child = self.command(args).spawn().map_err(|e| fail(format!("cannot run git: {e}")))?;
        let (stdin, stdout, stderr) = (child.stdin.take(), child.stdout.take(), child.stderr.take());
        let feed = async move {
            if let (Some(mut stdin), Some(input)) = (stdin, input) {
                // A git that stops reading has failed, and says so on stderr.
                let _ = stdin.write_all(&input).await;
            }
            Ok(())
        };
        let finished = async {
            let (_, out, err) = tokio::try_join!(feed, read_bounded(stdout, MAX_OUTPUT_BYTES), read_lossy(stderr))?;
            let status = child.wait().await.map_err(|e| format!("cannot wait for git: {e}"))?;
            Ok::<_, String>((status, out, err))
        };
        let (status, out, err) = tokio::time::timeout(self.settings.timeout, finished)
            .await
            .map_err(|_| fail(format!("timed out after {}s", self.settings.timeout.as_secs())))?
            .map_err(|message| match message.starts_with(TOO_MUCH_OUTPUT) {
                // The same repository prints as much again next time: refused for good.
                true => GitError::NotWritable(format!("git {action} {}: {message}", self.url)),
                false => fail(message),
            })?;
        if status.success() {
            return Ok(out);
        }
        use std::os::unix::process::ExitStatusExt;
        // The limit kills git itself, or the index-pack it runs (fetch-pack then reports
        // only "invalid index-pack output"): the file left at the limit says which.
        // The same fetch would end the same way again.
        if status.signal() == Some(libc::SIGXFSZ) || self.a_file_reached(self.settings.max_fetch_bytes) {
            let limit = self.settings.max_fetch_bytes.div_ceil(1 << 20);
            return Err(GitError::NotWritable(format!(
                "git {action} {}: the fetched data is larger than the write-back's limit of {limit} MiB",
                self.url
            )));
        }
        Err(fail(self.explain_failure(&err)))
    }

    /// Whether a file under the repository's objects is `limit` bytes or more:
    /// what `RLIMIT_FSIZE` leaves when it stops a write.
    fn a_file_reached(&self, limit: u64) -> bool {
        let objects = self.repo().join("objects");
        let folders = std::fs::read_dir(&objects).into_iter().flatten().flatten().map(|e| e.path());
        std::iter::once(objects.clone()).chain(folders).filter(|p| p.is_dir()).any(|folder| {
            let files = std::fs::read_dir(folder).into_iter().flatten().flatten();
            files.filter_map(|e| e.metadata().ok()).any(|m| m.is_file() && m.len() >= limit)
        })
    }

    /// What a failed command's error output means, without any credential.
    fn explain_failure(&self, stderr: &str) -> String {
        // With prompts off, a refused login reads as a failed prompt; say what it is.
        if stderr.contains("could not read Username") || stderr.contains("could not read Password") {
            let who = if self.credentials.is_some() { "the credentials were refused" } else { "none were given" };
            return format!("authentication failed: the server asked for credentials (HTTP 401) and {who}");
        }
        self.redact(stderr.trim())
    }

    /// A git command with nothing of the machine's or the repository's configuration.
    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut command = tokio::process::Command::new("git");
        command
            .args(args)
            .current_dir(self.repo())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.home())
            .env("XDG_CONFIG_HOME", self.home())
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_DIR", self.repo())
            .env("GIT_INDEX_FILE", self.dir.join("index"))
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_LITERAL_PATHSPECS", "1")
            .env("GIT_PROTOCOL_FROM_USER", "0")
            .env("GIT_AUTHOR_NAME", &self.settings.author_name)
            .env("GIT_AUTHOR_EMAIL", &self.settings.author_email)
            .env("GIT_COMMITTER_NAME", &self.settings.author_name)
            .env("GIT_COMMITTER_EMAIL", &self.settings.author_email)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let config = self.config();
        command.env("GIT_CONFIG_COUNT", config.len().to_string());
        for (i, (key, value)) in config.into_iter().enumerate() {
            command.env(format!("GIT_CONFIG_KEY_{i}"), key).env(format!("GIT_CONFIG_VALUE_{i}"), value);
        }
        if let Some(Credentials::Ssh { .. }) = self.credentials {
            command.env("GIT_SSH_COMMAND", self.ssh_command());
        }
        limit_file_size(&mut command, self.settings.max_fetch_bytes);
        command
    }

    /// The only configuration git sees, through `GIT_CONFIG_*`.
    fn config(&self) -> Vec<(String, String)> {
        let mut config: Vec<(String, String)> = [
            ("core.hooksPath", "/dev/null"),
            ("core.fsmonitor", "false"),
            ("credential.helper", ""),
            ("protocol.allow", "never"),
            ("http.followRedirects", "false"),
            // A fetch stays one pack file, which RLIMIT_FSIZE bounds: loose objects would be
            // bounded one by one only, however many a hostile repository holds.
            ("fetch.unpackLimit", "1"),
            ("transfer.unpackLimit", "1"),
            // Less memory while the pack is indexed: one thread, a small delta
            // cache, and large blobs streamed rather than inflated whole.
            ("pack.threads", "1"),
            ("core.deltaBaseCacheLimit", "16m"),
            ("core.bigFileThreshold", "16m"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        config.push((format!("protocol.{}.allow", self.url.transport.protocol()), "always".to_owned()));
        if let Some(Credentials::Basic { username, password }) = self.credentials {
            // Scoped to the remote's URL: sent to no other server, even one this one names.
            let basic = base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
            config.push((format!("http.{}.extraHeader", self.url), format!("Authorization: Basic {basic}")));
        }
        config
    }

    /// Host keys are checked against the Secret's known_hosts only, never trusted on first use.
    fn ssh_command(&self) -> String {
        let dir = self.ssh_dir();
        let quoted = |p: PathBuf| format!("'{}'", p.display().to_string().replace('\'', r"'\''"));
        format!(
            "ssh -F /dev/null -i {} -o IdentitiesOnly=yes -o UserKnownHostsFile={} -o StrictHostKeyChecking=yes -o BatchMode=yes -o ProxyCommand=none -o PermitLocalCommand=no",
            quoted(dir.join("identity")),
            quoted(dir.join("known_hosts"))
        )
    }

    /// Git's words with any credential taken out, one line.
    fn redact(&self, text: &str) -> String {
        let mut text = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("; ");
        if let Some(secret) = self.credentials.map(Credentials::secret).filter(|s| !s.is_empty()) {
            text = text.replace(secret, "<redacted>");
        }
        text
    }
}

/// A remote URL or refspec after `--end-of-options` is never read as an option.
fn fetch_args<'a>(url: &'a RemoteUrl, refspec: &'a str) -> [&'a str; 8] {
    ["fetch", "-q", "--no-tags", "--depth", HISTORY_DEPTH, "--end-of-options", url.as_str(), refspec]
}

fn push_args<'a>(url: &'a RemoteUrl, refspec: &'a str) -> [&'a str; 5] {
    ["push", "--porcelain", "--end-of-options", url.as_str(), refspec]
}

/// Every file a git child writes (the fetched pack above all) stays under `bytes`.
fn limit_file_size(command: &mut tokio::process::Command, bytes: u64) {
    let limit = libc::rlimit { rlim_cur: bytes as libc::rlim_t, rlim_max: bytes as libc::rlim_t };
    // SAFETY: setrlimit is async-signal-safe and touches only the child's own limits.
    unsafe {
        command.pre_exec(move || {
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
        });
    }
}

/// Reads all of `pipe`, failing past `limit` bytes.
async fn read_bounded(pipe: Option<impl AsyncRead + Unpin>, limit: usize) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    if let Some(pipe) = pipe {
        pipe.take(limit as u64 + 1)
            .read_to_end(&mut out)
            .await
            .map_err(|e| format!("cannot read git's output: {e}"))?;
    }
    if out.len() > limit {
        return Err(format!("{TOO_MUCH_OUTPUT} {} MiB: refused as hostile", limit >> 20));
    }
    Ok(out)
}

/// The first bytes of `pipe` as text; the rest is read and dropped so git never blocks on it.
async fn read_lossy(pipe: Option<impl AsyncRead + Unpin>) -> Result<String, String> {
    let Some(mut pipe) = pipe else { return Ok(String::new()) };
    let mut head = Vec::new();
    (&mut pipe).take(MAX_ERROR_BYTES as u64).read_to_end(&mut head).await.map_err(|e| e.to_string())?;
    tokio::io::copy(&mut pipe, &mut tokio::io::sink()).await.map_err(|e| e.to_string())?;
    Ok(String::from_utf8_lossy(&head).into_owned())
}

/// A refusal's reason, with the files the search passed over.
fn with_passed_over(why: String, passed_over: &[(String, &'static str)]) -> String {
    if passed_over.is_empty() {
        return why;
    }
    let shown: Vec<String> = passed_over.iter().take(5).map(|(path, reason)| format!("{path} ({reason})")).collect();
    let more = passed_over.len().saturating_sub(shown.len());
    let more = if more > 0 { format!(" and {more} more") } else { String::new() };
    format!("{why}; not read: {}{more}", shown.join(", "))
}

fn private_dir(dir: &Path) -> Result<(), GitError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().mode(0o700).create(dir).map_err(|e| local_error("create", dir, e))
}

fn private_file(path: &Path, text: &str) -> Result<(), GitError> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut text = text.trim_end().to_owned();
    text.push('\n');
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| local_error("write", path, e))?;
    std::io::Write::write_all(&mut file, text.as_bytes()).map_err(|e| local_error("write", path, e))
}

fn local_error(action: &str, path: &Path, error: std::io::Error) -> GitError {
    GitError::Command {
        action: "checkout",
        url: path.display().to_string(),
        message: format!("cannot {action}: {error}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> GitSettings {
        GitSettings {
            author_name: "arcadia-drift".into(),
            author_email: "arcadia-drift@example.invalid".into(),
            push_branch: None,
            allow_insecure_http: false,
            max_attempts: 1,
            timeout: Duration::from_secs(5),
            max_fetch_bytes: GitSettings::MAX_FETCH_BYTES,
        }
    }

    /// The hostile-repository tests pass without a working tree whatever the
    /// environment; this pins the environment itself.
    #[test]
    fn every_git_child_is_sealed() {
        let settings = settings();
        let credentials = Credentials::Basic { username: "git".into(), password: "t0ken".into() };
        let url = remote_url::parse("https://git.example/infra.git").unwrap();
        let dir = std::env::temp_dir().join("arcadia-writeback-sealed-test");
        let scratch =
            Scratch { dir: dir.clone(), settings: &settings, url: url.clone(), credentials: Some(&credentials) };
        let command = scratch.command(&["fetch"]);
        let env: std::collections::HashMap<String, String> = command
            .as_std()
            .get_envs()
            .filter_map(|(k, v)| Some((k.to_str()?.to_owned(), v?.to_str()?.to_owned())))
            .collect();
        let home = dir.join("home").display().to_string();
        for (key, value) in [
            ("HOME", home.as_str()),
            ("XDG_CONFIG_HOME", home.as_str()),
            ("GIT_CONFIG_GLOBAL", "/dev/null"),
            ("GIT_CONFIG_NOSYSTEM", "1"),
            ("GIT_TERMINAL_PROMPT", "0"),
        ] {
            assert_eq!(env.get(key).map(String::as_str), Some(value), "{key}");
        }
        assert!(!home.starts_with(&scratch.repo().display().to_string()), "HOME is outside the repository");
        let config: std::collections::HashMap<String, String> = (0..env["GIT_CONFIG_COUNT"].parse().unwrap())
            .map(|i: usize| {
                (env[&format!("GIT_CONFIG_KEY_{i}")].clone(), env[&format!("GIT_CONFIG_VALUE_{i}")].clone())
            })
            .collect();
        for (key, value) in [
            ("core.hooksPath", "/dev/null"),
            ("core.fsmonitor", "false"),
            ("protocol.allow", "never"),
            ("protocol.https.allow", "always"),
            ("http.followRedirects", "false"),
            ("fetch.unpackLimit", "1"),
            ("credential.helper", ""),
        ] {
            assert_eq!(config.get(key).map(String::as_str), Some(value), "{key}");
        }
        let scoped = config.keys().filter(|k| k.ends_with(".extraHeader")).collect::<Vec<_>>();
        assert_eq!(
            scoped,
            ["http.https://git.example/infra.git.extraHeader"],
            "the credential is scoped to the remote"
        );
        assert!(!env.values().any(|v| v.contains("t0ken")), "the token is never in the clear");
        for args in [&fetch_args(&url, "refs/heads/main")[..], &push_args(&url, "abc:refs/heads/main")[..]] {
            let end = args.iter().position(|a| *a == "--end-of-options").expect("--end-of-options");
            assert_eq!(args.len() - end, 3, "only the URL and the refspec follow it: {args:?}");
        }
    }

    #[test]
    fn credentials_never_print() {
        let c = Credentials::Basic { username: "git".into(), password: "hunter2".into() };
        assert!(!format!("{c:?}").contains("hunter2"));
        let key =
            Credentials::Ssh { identity: "-----BEGIN OPENSSH PRIVATE KEY-----".into(), known_hosts: String::new() };
        assert!(!format!("{key:?}").contains("PRIVATE"));
    }
}
