//! A control plane of a test's own (`scripts/control-plane` in a state folder
//! of its own), for what the shared one must not see: other CRD versions, or
//! other API server flags. Stopped when dropped.

use std::path::PathBuf;
use std::process::{Command, Output};

pub struct ControlPlane {
    pub dir: PathBuf,
    pub kubeconfig: PathBuf,
}

impl ControlPlane {
    /// Starts one, with these extra kube-apiserver flags (may be empty).
    pub fn up(apiserver_args: &str) -> Self {
        Self::start(&["up"], apiserver_args)
    }

    /// Starts one with a node (`up --node`): containerd, a kubelet, a scheduler.
    #[allow(dead_code)]
    pub fn up_node() -> Self {
        Self::start(&["up", "--node"], "")
    }

    fn start(args: &[&str], apiserver_args: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("arcadia-own-cp-{}", super::unique_suffix()));
        let out = Command::new(super::repo_root().join("scripts/control-plane"))
            .args(args)
            .env("ARCADIA_CONTROL_PLANE_DIR", &dir)
            .env("ARCADIA_APISERVER_ARGS", apiserver_args)
            .output()
            .expect("run scripts/control-plane");
        assert!(out.status.success(), "a second control plane: {}", String::from_utf8_lossy(&out.stderr));
        let last = String::from_utf8_lossy(&out.stdout).lines().last().unwrap_or_default().trim().to_owned();
        ControlPlane { dir, kubeconfig: PathBuf::from(last) }
    }

    /// A client of this control plane.
    #[allow(dead_code)]
    pub async fn client(&self) -> kube::Client {
        let kubeconfig = kube::config::Kubeconfig::read_from(&self.kubeconfig).expect("the plane's kubeconfig");
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await.expect("a config");
        kube::Client::try_from(config).expect("a client")
    }

    /// Stops kube-apiserver and starts it again (`stop-apiserver`, then
    /// `start-apiserver`, which returns once its /readyz answers); etcd and
    /// the state stay.
    #[allow(dead_code)]
    pub fn restart_apiserver(&self) {
        let pid = std::fs::read_to_string(self.dir.join("kube-apiserver.pid")).expect("kube-apiserver.pid");
        self.ok("control-plane", &["stop-apiserver"]);
        // `stop-apiserver` returns right after its SIGKILL (for a server still
        // up 10s after SIGTERM), and `start-apiserver` takes a process not yet
        // reaped for a running server, then waits for it to become ready: wait
        // until the old one is gone.
        let process = PathBuf::from(format!("/proc/{}", pid.trim()));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while process.exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "kube-apiserver {} still there 30s after stop-apiserver",
                pid.trim()
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        self.ok("control-plane", &["start-apiserver"]);
    }

    pub fn run(&self, tool: &str, args: &[&str]) -> Output {
        Command::new(super::repo_root().join("scripts").join(tool))
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("ARCADIA_CONTROL_PLANE_DIR", &self.dir)
            .output()
            .unwrap_or_else(|e| panic!("run {tool}: {e}"))
    }

    pub fn ok(&self, tool: &str, args: &[&str]) -> String {
        let out = self.run(tool, args);
        assert!(
            out.status.success(),
            "{tool} {args:?}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn apply(&self, args: &[&str], manifest: &str) {
        let file = self.dir.join(format!("manifest-{}.yaml", super::unique_suffix()));
        std::fs::write(&file, manifest).unwrap();
        let mut all = vec!["apply", "-f", file.to_str().unwrap()];
        all.extend_from_slice(args);
        self.ok("kubectl", &all);
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        let _ = Command::new(super::repo_root().join("scripts/control-plane"))
            .arg("down")
            .env("ARCADIA_CONTROL_PLANE_DIR", &self.dir)
            .output();
    }
}
