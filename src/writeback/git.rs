//! The Git side of a write-back, through the `git` command line: it speaks
//! every transport and credential scheme users have, and is what the image
//! carries. Each write-back works in a fresh temporary clone (shallow), so no
//! state survives between attempts but what is in the remote.
//!
//! Credentials travel in the environment of the git child process (an
//! `http.extraHeader` set through `GIT_CONFIG_*`), never on a command line,
//! in a URL, in a log or in an error.

use super::commit::{Auth, Change, check_remote};
use super::files::{self, Decision};
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

/// Where to commit.
#[derive(Clone, Debug, PartialEq)]
pub struct Remote {
    pub url: String,
    pub branch: String,
    /// A file, or a folder whose YAML files are searched, relative to the repository root.
    pub path: String,
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
}

impl GitError {
    /// Whether a later attempt may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, GitError::Command { .. } | GitError::Raced { .. })
    }
}

/// Commits `change` to `remote` and pushes it, unless its commit or its value is there already.
pub async fn write_back(
    settings: &GitSettings,
    remote: &Remote,
    credentials: Option<&Credentials>,
    change: &Change,
) -> Result<Pushed, GitError> {
    let auth = credentials.map_or(Auth::None, Credentials::auth);
    check_remote(&remote.url, auth, settings.allow_insecure_http).map_err(GitError::Refused)?;
    let target = match &settings.push_branch {
        Some(template) => change.review_branch(template),
        None => remote.branch.clone(),
    };
    let repo = Checkout::new(settings, remote, credentials).await?;
    for _ in 0..settings.max_attempts.max(1) {
        let base = repo.fetch(&remote.branch, &target).await?;
        if let Some(commit) = repo.find_trailer(&change.trailer()).await? {
            return Ok(Pushed::AlreadyCommitted { branch: target, commit });
        }
        repo.git(&["checkout", "-q", "-f", "-B", "work", &base], "checkout").await?;
        let path = match files::decide(&repo.manifests(&remote.path)?, change, &remote.path) {
            Decision::Edit { path, text } => {
                repo.write(&path, &text)?;
                path
            }
            Decision::AlreadyInGit { path } => return Ok(Pushed::AlreadyInGit { branch: target, path }),
            Decision::GitChanged { path, now } => {
                return Err(GitError::NotWritable(files::describe_git_change(&path, &now, change)));
            }
            Decision::NotWritable(why) => return Err(GitError::NotWritable(why)),
        };
        repo.commit(&path, change).await?;
        match repo.push(&target).await? {
            true => {
                let commit = repo.git(&["rev-parse", "HEAD"], "rev-parse").await?.trim().to_owned();
                return Ok(Pushed::Committed { branch: target, commit, path });
            }
            false => tracing::info!(branch = %target, "push rejected: the branch moved; retrying on its new head"),
        }
    }
    Err(GitError::Raced { url: remote.url.clone(), branch: target, attempts: settings.max_attempts.max(1) })
}

/// A temporary local repository for one write-back, removed when dropped.
struct Checkout<'a> {
    dir: PathBuf,
    settings: &'a GitSettings,
    remote: &'a Remote,
    credentials: Option<&'a Credentials>,
}

impl Drop for Checkout<'_> {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::remove_dir_all(self.ssh_dir());
    }
}

/// What git says when the branch moved between our fetch and our push.
const RACE_MARKERS: [&str; 5] = ["non-fast-forward", "fetch first", "[rejected]", "stale info", "but expected"];

/// How many commits of history are fetched to look for an earlier commit of the same accept.
const HISTORY_DEPTH: &str = "100";

impl<'a> Checkout<'a> {
    async fn new(
        settings: &'a GitSettings,
        remote: &'a Remote,
        credentials: Option<&'a Credentials>,
    ) -> Result<Self, GitError> {
        let unique = format!("{}-{}", std::process::id(), crate::runtime::jitter::unique());
        let dir = std::env::temp_dir().join(format!("arcadia-writeback-{unique}"));
        std::fs::create_dir_all(&dir).map_err(|e| local_error("create a work folder", &dir, e))?;
        let repo = Checkout { dir, settings, remote, credentials };
        if let Some(Credentials::Ssh { identity, known_hosts }) = credentials {
            repo.write_ssh_files(identity, known_hosts)?;
        }
        repo.git(&["init", "-q"], "init").await?;
        Ok(repo)
    }

    /// The key and known hosts, beside (never inside) the checkout, readable by us only.
    fn ssh_dir(&self) -> PathBuf {
        self.dir.with_extension("ssh")
    }

    fn write_ssh_files(&self, identity: &str, known_hosts: &str) -> Result<(), GitError> {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let dir = self.ssh_dir();
        std::fs::create_dir_all(&dir).map_err(|e| local_error("create", &dir, e))?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| local_error("secure", &dir, e))?;
        for (name, text) in [("identity", identity), ("known_hosts", known_hosts)] {
            let path = dir.join(name);
            let mut text = text.trim_end().to_owned();
            text.push('\n');
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&path)
                .map_err(|e| local_error("write", &path, e))?;
            std::io::Write::write_all(&mut file, text.as_bytes()).map_err(|e| local_error("write", &path, e))?;
        }
        Ok(())
    }

    /// Fetches the branch (and the push target, when it differs); returns the
    /// ref to build on: the push target when it exists, else the branch.
    async fn fetch(&self, branch: &str, target: &str) -> Result<String, GitError> {
        let refspec = format!("+refs/heads/{branch}:refs/remotes/origin/{branch}");
        self.git(&["fetch", "-q", "--no-tags", "--depth", HISTORY_DEPTH, &self.remote.url, &refspec], "fetch").await?;
        if target == branch {
            return Ok(format!("refs/remotes/origin/{branch}"));
        }
        let refspec = format!("+refs/heads/{target}:refs/remotes/origin/{target}");
        let args = ["fetch", "-q", "--no-tags", "--depth", HISTORY_DEPTH, &self.remote.url, &refspec];
        match self.git(&args, "fetch").await {
            Ok(_) => Ok(format!("refs/remotes/origin/{target}")),
            // A review branch that does not exist yet starts from the branch.
            Err(GitError::Command { message, .. }) if message.contains("couldn't find remote ref") => {
                Ok(format!("refs/remotes/origin/{branch}"))
            }
            Err(error) => Err(error),
        }
    }

    /// The commit whose message carries `trailer`, among the fetched history.
    async fn find_trailer(&self, trailer: &str) -> Result<Option<String>, GitError> {
        let log = self.git(&["log", "--remotes", "--format=%H%x1f%B%x1e"], "log").await?;
        Ok(log.split('\u{1e}').find_map(|entry| {
            let (commit, body) = entry.trim_start().split_once('\u{1f}')?;
            body.lines().any(|line| line.trim() == trailer).then(|| commit.to_owned())
        }))
    }

    /// Every YAML file under `path` (a file or a folder), relative to the root.
    fn manifests(&self, path: &str) -> Result<Vec<(String, String)>, GitError> {
        let root = self.dir.join(path.trim_start_matches('/'));
        let mut found = Vec::new();
        collect_yaml(&self.dir, &root, &mut found).map_err(|e| local_error("read the checkout", &root, e))?;
        found.sort();
        Ok(found)
    }

    fn write(&self, path: &str, text: &str) -> Result<(), GitError> {
        let file = self.dir.join(path);
        std::fs::write(&file, text).map_err(|e| local_error("write", &file, e))
    }

    async fn commit(&self, path: &str, change: &Change) -> Result<(), GitError> {
        self.git(&["add", "--", path], "add").await?;
        self.git(&["commit", "-q", "-m", &change.message()], "commit").await?;
        Ok(())
    }

    /// Pushes HEAD; `false` when the remote rejected it because the branch moved.
    async fn push(&self, target: &str) -> Result<bool, GitError> {
        let refspec = format!("HEAD:refs/heads/{target}");
        match self.git(&["push", "--porcelain", &self.remote.url, &refspec], "push").await {
            Ok(_) => Ok(true),
            Err(GitError::Command { message, .. }) if RACE_MARKERS.iter().any(|m| message.contains(m)) => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// Runs git in the checkout; stdout, or an error with git's own words.
    async fn git(&self, args: &[&str], action: &'static str) -> Result<String, GitError> {
        let mut command = tokio::process::Command::new("git");
        command
            .args(args)
            .current_dir(&self.dir)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &self.dir)
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_AUTHOR_NAME", &self.settings.author_name)
            .env("GIT_AUTHOR_EMAIL", &self.settings.author_email)
            .env("GIT_COMMITTER_NAME", &self.settings.author_name)
            .env("GIT_COMMITTER_EMAIL", &self.settings.author_email)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        match self.credentials {
            Some(Credentials::Basic { username, password }) => {
                let basic = base64_encode(format!("{username}:{password}").as_bytes());
                command
                    .env("GIT_CONFIG_COUNT", "1")
                    .env("GIT_CONFIG_KEY_0", "http.extraHeader")
                    .env("GIT_CONFIG_VALUE_0", format!("Authorization: Basic {basic}"));
            }
            // Host keys are checked against the Secret's known_hosts only, never trusted on first use.
            Some(Credentials::Ssh { .. }) => {
                let dir = self.ssh_dir();
                command.env(
                    "GIT_SSH_COMMAND",
                    format!(
                        "ssh -F /dev/null -i {} -o IdentitiesOnly=yes -o UserKnownHostsFile={} -o StrictHostKeyChecking=yes -o BatchMode=yes",
                        dir.join("identity").display(),
                        dir.join("known_hosts").display()
                    ),
                );
            }
            None => {}
        }
        let fail = |message: String| GitError::Command { action, url: self.remote.url.clone(), message };
        let output = tokio::time::timeout(self.settings.timeout, command.output())
            .await
            .map_err(|_| fail(format!("timed out after {}s", self.settings.timeout.as_secs())))?
            .map_err(|e| fail(format!("cannot run git: {e}")))?;
        if output.status.success() {
            return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
        }
        let said = format!("{}{}", String::from_utf8_lossy(&output.stderr), String::from_utf8_lossy(&output.stdout));
        // With prompts off, a refused login reads as a failed prompt; say what it is.
        if said.contains("could not read Username") || said.contains("could not read Password") {
            let who = if self.credentials.is_some() { "the credentials were refused" } else { "none were given" };
            return Err(fail(format!("authentication failed: the server asked for credentials (HTTP 401) and {who}")));
        }
        Err(fail(self.redact(said.trim())))
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

fn collect_yaml(root: &Path, at: &Path, out: &mut Vec<(String, String)>) -> std::io::Result<()> {
    if at.is_file() {
        let relative = at.strip_prefix(root).unwrap_or(at).to_string_lossy().into_owned();
        out.push((relative, std::fs::read_to_string(at)?));
        return Ok(());
    }
    for entry in std::fs::read_dir(at)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let wanted = if path.is_dir() { name != ".git" } else { name.ends_with(".yaml") || name.ends_with(".yml") };
        if wanted {
            collect_yaml(root, &path, out)?;
        }
    }
    Ok(())
}

fn local_error(action: &str, path: &Path, error: std::io::Error) -> GitError {
    GitError::Command {
        action: "checkout",
        url: path.display().to_string(),
        message: format!("cannot {action}: {error}"),
    }
}

fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_is_the_standard_alphabet_with_padding() {
        assert_eq!(base64_encode(b"alice:s3cret"), "YWxpY2U6czNjcmV0");
        assert_eq!(base64_encode(b"a"), "YQ==");
        assert_eq!(base64_encode(b"ab"), "YWI=");
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
