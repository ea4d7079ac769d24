//! Runs `arcadia-drift run` as a user would: the real binary, as a child
//! process, against the local control plane.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct ControllerProcess {
    child: Option<Child>,
    pub metrics_port: u16,
    pub log: PathBuf,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl ControllerProcess {
    /// Starts a controller watching `namespace` only, with its own lease there.
    pub fn start(namespace: &str, extra: &[&str]) -> Self {
        Self::start_with_env(namespace, extra, &[])
    }

    pub fn start_with_env(namespace: &str, extra: &[&str], env: &[(&str, &str)]) -> Self {
        Self::start_scoped(Some(namespace), extra, env)
    }

    /// Starts a controller watching every namespace: only on a control plane
    /// of the test's own (`KUBECONFIG` in `env`), never on the shared one.
    pub fn start_cluster_wide(extra: &[&str], env: &[(&str, &str)]) -> Self {
        assert!(
            env.iter().any(|(k, _)| *k == "KUBECONFIG"),
            "a cluster-wide controller needs a control plane of its own"
        );
        Self::start_scoped(None, extra, env)
    }

    fn start_scoped(namespace: Option<&str>, extra: &[&str], env: &[(&str, &str)]) -> Self {
        let metrics_port = free_port();
        let scope = namespace.unwrap_or("all");
        let log = std::env::temp_dir().join(format!("arcadia-controller-{scope}-{metrics_port}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let addr = format!("127.0.0.1:{metrics_port}");
        // Test defaults, each unless the caller passes that flag itself.
        let defaults = [("--resync-interval", "3s"), ("--lease-duration", "3s")];
        let mut args = vec!["run", "--metrics-addr", &addr];
        if let Some(namespace) = namespace {
            args.extend(["--namespace", namespace]);
        }
        for (flag, value) in defaults {
            if !extra.contains(&flag) {
                args.extend([flag, value]);
            }
        }
        args.extend_from_slice(extra);
        let child = Command::new(env!("CARGO_BIN_EXE_arcadia-drift"))
            .args(&args)
            .env("KUBECONFIG", super::kubeconfig())
            .env("RUST_LOG", "info,arcadia_drift=debug,kube_lease_manager=warn")
            .env("NO_COLOR", "1")
            .env("POD_NAMESPACE", namespace.unwrap_or("default"))
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("cannot start arcadia-drift run");
        let process = ControllerProcess { child: Some(child), metrics_port, log };
        process.wait_healthy();
        process
    }

    fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.get("/healthz").is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the controller did not answer /healthz within 20s; log:\n{}", self.log_text());
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A plain HTTP GET on the metrics port; `None` when nothing answers.
    pub fn get(&self, path: &str) -> Option<String> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.metrics_port)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        response.split_once("\r\n\r\n").map(|(_, body)| body.to_owned())
    }

    /// The sum of a metric's samples whose line starts with `prefix`.
    pub fn metric(&self, prefix: &str) -> f64 {
        let text = self.get("/metrics").unwrap_or_else(|| panic!("no /metrics; log:\n{}", self.log_text()));
        text.lines().filter(|l| l.starts_with(prefix)).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum()
    }

    /// Resident memory now and its peak (VmRSS, VmHWM) in KiB.
    pub fn memory(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        let kb = |field: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
                .unwrap_or_else(|| panic!("no {field} in /proc/{}/status", self.pid()))
        };
        (kb("VmRSS:"), kb("VmHWM:"))
    }

    /// Restarts the peak (VmHWM) from the current resident memory, so that a
    /// later peak belongs to what happened since (Linux `clear_refs`, value 5).
    pub fn reset_peak(&self) {
        let path = format!("/proc/{}/clear_refs", self.pid());
        std::fs::write(&path, "5").unwrap_or_else(|e| panic!("resetting the peak RSS through {path}: {e}"));
    }

    /// CPU seconds used so far.
    pub fn cpu_seconds(&self) -> f64 {
        cpu_seconds(self.pid())
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Sends a signal by name (`STOP`, `CONT`, ...) without waiting.
    pub fn signal(&self, name: &str) {
        let pid = self.pid().to_string();
        let status = Command::new("kill").args([&format!("-{name}"), &pid]).status().expect("cannot run kill");
        assert!(status.success(), "kill -{name} {pid}");
    }

    /// The exit code once the process has exited within `timeout`, else `None`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<Option<i32>> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.as_mut()?.try_wait() {
                self.child = None;
                return Some(status.code());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// SIGKILL: no chance to finish anything or release the lease.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then wait for a graceful exit; returns the exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        panic!("the controller did not exit within 15s of SIGTERM; log:\n{}", self.log_text());
    }
}

impl Drop for ControllerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// User plus system CPU seconds of a process; 0 when it is gone.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces): utime and stime are the 12th and 13th.
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}
