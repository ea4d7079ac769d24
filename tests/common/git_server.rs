//! A real Git server on loopback for the write-back tests: git's own
//! smart-HTTP server, `git http-backend`, run as CGI behind HTTP basic auth,
//! serving bare repositories from a temporary folder. Hooks let a test make
//! the branch move under a push, or hold a push's answer back.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

type Hook = Box<dyn FnOnce() + Send>;

pub struct GitServer {
    pub root: PathBuf,
    pub port: u16,
    pub user: String,
    pub password: String,
    /// Runs once, before the next push is handed to git (the branch moves under it).
    pub before_push: Arc<Mutex<Option<Hook>>>,
    /// Holds the answer to every push back this long, after git has stored it.
    pub push_answer_delay: Arc<Mutex<Duration>>,
    /// Pushes received, accepted or not.
    pub pushes: Arc<Mutex<u32>>,
    /// The Authorization header of every request received ("" when there was none).
    pub authorizations: Arc<Mutex<Vec<String>>>,
}

/// Runs git with a clean configuration; panics with its words on failure.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        // Never the repository's own files: a hostile repository's .gitconfig must not run here either.
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("HOME", "/nonexistent")
        .env("XDG_CONFIG_HOME", "/nonexistent")
        .env("GIT_AUTHOR_NAME", "test")
        .env("GIT_AUTHOR_EMAIL", "test@localhost")
        .env("GIT_COMMITTER_NAME", "test")
        .env("GIT_COMMITTER_EMAIL", "test@localhost")
        .output()
        .expect("cannot run git (is it installed?)");
    assert!(out.status.success(), "git {args:?} in {}: {}", dir.display(), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Drop for GitServer {
    // Every test starts its own server: hundreds of repositories would pile up in /tmp.
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

impl GitServer {
    pub fn start(user: &str, password: &str) -> Self {
        let root = std::env::temp_dir().join(format!("arcadia-git-{}", super::unique_suffix()));
        std::fs::create_dir_all(&root).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port for the Git server");
        let server = GitServer {
            port: listener.local_addr().unwrap().port(),
            root,
            user: user.into(),
            password: password.into(),
            before_push: Arc::default(),
            push_answer_delay: Arc::default(),
            pushes: Arc::default(),
            authorizations: Arc::default(),
        };
        let shared = Shared {
            root: server.root.clone(),
            auth: format!("Basic {}", base64(format!("{user}:{password}").as_bytes())),
            before_push: server.before_push.clone(),
            delay: server.push_answer_delay.clone(),
            pushes: server.pushes.clone(),
            authorizations: server.authorizations.clone(),
        };
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let shared = shared.clone();
                std::thread::spawn(move || {
                    let _ = shared.serve(stream);
                });
            }
        });
        server
    }

    pub fn url(&self, repo: &str) -> String {
        format!("http://127.0.0.1:{}/{repo}.git", self.port)
    }

    fn bare(&self, repo: &str) -> PathBuf {
        self.root.join(format!("{repo}.git"))
    }

    /// A bare repository whose `branch` holds `files`, in one commit.
    pub fn create_repo(&self, repo: &str, branch: &str, files: &[(&str, &str)]) {
        let bare = self.bare(repo);
        std::fs::create_dir_all(&bare).unwrap();
        git(&bare, &["init", "-q", "--bare", "-b", branch]);
        self.commit_files(repo, branch, files, "initial manifests");
    }

    /// Commits `files` on `branch` directly in the repository (another person's push).
    pub fn commit_files(&self, repo: &str, branch: &str, files: &[(&str, &str)], message: &str) {
        self.commit_with(repo, branch, message, |work| {
            for (path, text) in files {
                let file = work.join(path);
                std::fs::create_dir_all(file.parent().unwrap()).unwrap();
                std::fs::write(file, text).unwrap();
            }
        });
    }

    /// Commits whatever `prepare` leaves in a work tree of `branch` (symbolic links, modes).
    pub fn commit_with(&self, repo: &str, branch: &str, message: &str, prepare: impl FnOnce(&Path)) {
        let work = self.root.join(format!("work-{}", super::unique_suffix()));
        std::fs::create_dir_all(&work).unwrap();
        git(&work, &["init", "-q", "-b", branch]);
        let bare = self.bare(repo);
        let has_branch = Command::new("git")
            .args(["--git-dir", bare.to_str().unwrap(), "rev-parse", "--verify", "-q", branch])
            .stdout(Stdio::null())
            .status()
            .unwrap()
            .success();
        if has_branch {
            git(&work, &["fetch", "-q", bare.to_str().unwrap(), branch]);
            git(&work, &["reset", "-q", "--hard", "FETCH_HEAD"]);
        }
        prepare(&work);
        git(&work, &["add", "-A"]);
        git(&work, &["commit", "-q", "--allow-empty", "-m", message]);
        git(&work, &["push", "-q", bare.to_str().unwrap(), &format!("HEAD:refs/heads/{branch}")]);
        let _ = std::fs::remove_dir_all(work);
    }

    /// Refuses every push to `branch`, as a protected branch does.
    pub fn protect(&self, repo: &str, branch: &str) {
        let hook = self.bare(repo).join("hooks/pre-receive");
        let script = format!(
            "#!/bin/sh\nwhile read old new ref; do\n  if [ \"$ref\" = refs/heads/{branch} ]; then echo \"protected branch {branch}: pushes are not allowed\" >&2; exit 1; fi\ndone\n"
        );
        std::fs::write(&hook, script).unwrap();
        Command::new("chmod").args(["+x", hook.to_str().unwrap()]).status().unwrap();
    }

    /// `(commit, full message)` of `branch`, newest first.
    pub fn log(&self, repo: &str, branch: &str) -> Vec<(String, String)> {
        let out = git(&self.bare(repo), &["log", "--format=%H%x1f%B%x1e", branch]);
        out.split('\u{1e}')
            .filter_map(|e| e.trim_start().split_once('\u{1f}'))
            .map(|(c, m)| (c.to_owned(), m.to_owned()))
            .collect()
    }

    pub fn file(&self, repo: &str, branch: &str, path: &str) -> String {
        git(&self.bare(repo), &["show", &format!("{branch}:{path}")])
    }

    /// The diff of `commit` against its parent.
    pub fn diff(&self, repo: &str, commit: &str) -> String {
        git(&self.bare(repo), &["show", "--format=", "--unified=0", commit])
    }

    pub fn branches(&self, repo: &str) -> Vec<String> {
        git(&self.bare(repo), &["for-each-ref", "--format=%(refname:short)", "refs/heads"])
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

#[derive(Clone)]
struct Shared {
    root: PathBuf,
    auth: String,
    before_push: Arc<Mutex<Option<Hook>>>,
    delay: Arc<Mutex<Duration>>,
    pushes: Arc<Mutex<u32>>,
    authorizations: Arc<Mutex<Vec<String>>>,
}

struct Request {
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

impl Shared {
    fn serve(&self, mut stream: TcpStream) -> std::io::Result<()> {
        let request = read_request(&mut stream)?;
        self.authorizations.lock().unwrap().push(request.header("Authorization").unwrap_or_default().to_owned());
        if request.header("Authorization") != Some(self.auth.as_str()) {
            let body = "authentication required\n";
            return write!(
                stream,
                "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"git\"\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
        let push = request.path.ends_with("/git-receive-pack");
        if push {
            *self.pushes.lock().unwrap() += 1;
            if let Some(hook) = self.before_push.lock().unwrap().take() {
                hook();
            }
        }
        let answer = self.run_backend(&request)?;
        if push {
            let delay = *self.delay.lock().unwrap();
            std::thread::sleep(delay);
        }
        stream.write_all(&answer)
    }

    /// Runs `git http-backend` for the request; returns the HTTP response.
    fn run_backend(&self, request: &Request) -> std::io::Result<Vec<u8>> {
        let mut command = Command::new("git");
        command
            .arg("http-backend")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("GIT_PROJECT_ROOT", &self.root)
            .env("GIT_HTTP_EXPORT_ALL", "1")
            .env("REMOTE_USER", "tester")
            .env("REMOTE_ADDR", "127.0.0.1")
            .env("REQUEST_METHOD", &request.method)
            .env("PATH_INFO", &request.path)
            .env("QUERY_STRING", &request.query)
            .env("CONTENT_LENGTH", request.body.len().to_string())
            .env("CONTENT_TYPE", request.header("Content-Type").unwrap_or(""))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if let Some(protocol) = request.header("Git-Protocol") {
            command.env("GIT_PROTOCOL", protocol);
        }
        if let Some(encoding) = request.header("Content-Encoding") {
            command.env("HTTP_CONTENT_ENCODING", encoding);
        }
        let mut child = command.spawn()?;
        let mut stdin = child.stdin.take().unwrap();
        let body = request.body.clone();
        let writer = std::thread::spawn(move || stdin.write_all(&body));
        let mut output = Vec::new();
        child.stdout.take().unwrap().read_to_end(&mut output)?;
        child.wait()?;
        let _ = writer.join();
        Ok(cgi_to_http(&output))
    }
}

/// A CGI answer (headers, blank line, body) as an HTTP/1.1 response.
fn cgi_to_http(cgi: &[u8]) -> Vec<u8> {
    let split = cgi.windows(4).position(|w| w == b"\r\n\r\n").map(|i| (i, 4));
    let split = split.or_else(|| cgi.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2)));
    let (head_len, gap) = split.unwrap_or((cgi.len(), 0));
    let head = String::from_utf8_lossy(&cgi[..head_len]);
    let body = &cgi[(head_len + gap).min(cgi.len())..];
    let mut status = "200 OK".to_owned();
    let mut headers = String::new();
    for line in head.lines().map(str::trim).filter(|l| !l.is_empty()) {
        match line.split_once(':') {
            Some((k, v)) if k.eq_ignore_ascii_case("Status") => status = v.trim().to_owned(),
            _ => headers.push_str(&format!("{line}\r\n")),
        }
    }
    let mut out = format!("HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n", body.len())
        .into_bytes();
    out.extend_from_slice(body);
    out
}

fn read_request(stream: &mut TcpStream) -> std::io::Result<Request> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let target = parts.next().unwrap_or_default().to_owned();
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let mut headers = Vec::new();
    loop {
        let mut header = String::new();
        reader.read_line(&mut header)?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((k, v)) = header.split_once(':') {
            headers.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    let mut request = Request { method, path: path.to_owned(), query: query.to_owned(), headers, body: Vec::new() };
    if request.header("Expect").is_some_and(|e| e.eq_ignore_ascii_case("100-continue")) {
        stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    }
    if let Some(length) = request.header("Content-Length").and_then(|l| l.parse::<usize>().ok()) {
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        request.body = body;
    } else if request.header("Transfer-Encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
        request.body = read_chunked(&mut reader)?;
    }
    Ok(request)
}

fn read_chunked(reader: &mut impl BufRead) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut size = String::new();
        reader.read_line(&mut size)?;
        let size = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16).unwrap_or(0);
        if size == 0 {
            let mut end = String::new();
            reader.read_line(&mut end)?;
            return Ok(body);
        }
        let mut chunk = vec![0; size];
        reader.read_exact(&mut chunk)?;
        body.extend_from_slice(&chunk);
        let mut crlf = [0; 2];
        reader.read_exact(&mut crlf)?;
    }
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            out.push(if i <= chunk.len() { ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char } else { '=' });
        }
    }
    out
}

/// An OpenSSH server on loopback in front of the same repositories, for
/// pushes over SSH with a key and pinned host keys. Stopped when dropped.
pub struct SshServer {
    child: std::process::Child,
    pub port: u16,
    root: PathBuf,
    /// The client's private key (what a Secret's `identity` holds).
    pub identity: String,
    /// The server's host key line (what a Secret's `known_hosts` holds).
    pub known_hosts: String,
}

impl SshServer {
    /// Starts `sshd` (it must be installed: `.ci/run` installs openssh-server).
    pub fn start(git: &GitServer) -> Self {
        let dir = git.root.join("ssh");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::create_dir_all("/run/sshd").unwrap();
        for key in ["host", "client"] {
            let path = dir.join(key);
            let out =
                Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(&path).output().unwrap();
            assert!(out.status.success(), "ssh-keygen: {}", String::from_utf8_lossy(&out.stderr));
        }
        std::fs::copy(dir.join("client.pub"), dir.join("authorized_keys")).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {dir}/host\nAuthorizedKeysFile {dir}/authorized_keys\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\nPidFile {dir}/sshd.pid\nLogLevel ERROR\n",
            dir = dir.display()
        );
        std::fs::write(dir.join("sshd_config"), config).unwrap();
        let sshd = ["/usr/sbin/sshd", "/usr/bin/sshd"].into_iter().find(|p| Path::new(p).exists());
        let sshd =
            sshd.expect("sshd is not installed (apt-get install openssh-server); the SSH write-back test needs it");
        let child = Command::new(sshd)
            .args(["-D", "-e", "-f"])
            .arg(dir.join("sshd_config"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start sshd");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "sshd did not listen on 127.0.0.1:{port} within 10s");
            std::thread::sleep(Duration::from_millis(50));
        }
        let host_key = std::fs::read_to_string(dir.join("host.pub")).unwrap();
        let mut parts = host_key.split_whitespace();
        let known_hosts = format!("[127.0.0.1]:{port} {} {}\n", parts.next().unwrap(), parts.next().unwrap());
        let identity = std::fs::read_to_string(dir.join("client")).unwrap();
        SshServer { child, port, root: git.root.clone(), identity, known_hosts }
    }

    /// The repository's SSH URL (as the user running the tests, who owns the files).
    pub fn url(&self, repo: &str) -> String {
        let user = std::env::var("USER").unwrap_or_else(|_| "root".into());
        format!("ssh://{user}@127.0.0.1:{}{}/{repo}.git", self.port, self.root.display())
    }
}

impl Drop for SshServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
