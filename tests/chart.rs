//! The Helm chart: lint, render with default and non-default values, schema
//! rejection of a typo, the provider values and the deprecated top-level
//! `digitalocean.*` they replace, a server-side dry run of everything it
//! renders, its least-privilege RBAC (the real controller runs as the chart's
//! ServiceAccount) and the admission policy that guards accept.

mod common;

use arcadia_drift::api::{
    ANNOTATION_ACCEPT, CloudProvisioned, CloudProvisionedSpec, CloudResource, CloudResourceSpec, CloudResourceStatus,
    Drift, DriftPhase, Fields, ResourceRef, now,
};
use common::controller::ControllerProcess;
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const CHART: &str = "charts/arcadia-drift";

fn helm(args: &[&str]) -> Output {
    Command::new(common::repo_root().join("scripts/helm"))
        .args(args)
        .current_dir(common::repo_root())
        .output()
        .expect("cannot run scripts/helm")
}

fn helm_ok(args: &[&str]) -> String {
    let out = helm(args);
    assert!(
        out.status.success(),
        "helm {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The test cluster's version, e.g. `v1.34.4`: `helm template` renders for it
/// (as `helm install` would), since its own default is the newest version.
fn server_version() -> String {
    let out = common::kubectl_ok(&["version", "-o", "json"]);
    let version: serde_json::Value = serde_json::from_str(&out).unwrap();
    version["serverVersion"]["gitVersion"].as_str().expect("a server version").to_owned()
}

/// `helm template` of the chart for the test cluster's version, with `--set` pairs.
fn render_for_cluster(release: &str, namespace: &str, sets: &[&str]) -> String {
    let version = server_version();
    let mut args = vec!["template", release, CHART, "--namespace", namespace, "--kube-version", &version];
    for set in sets {
        args.extend(["--set", set]);
    }
    helm_ok(&args)
}

/// Whether the chart stamps accepted-by on this cluster (a MutatingAdmissionPolicy, 1.36+).
fn stamps_accepted_by() -> bool {
    let minor: u32 = server_version().split('.').nth(1).and_then(|m| m.parse().ok()).unwrap_or(0);
    minor >= 36
}

/// kubectl with `input` on stdin.
fn kubectl_stdin(args: &[&str], input: &str, kubeconfig: Option<&PathBuf>) -> Output {
    use std::io::Write;
    let mut cmd = Command::new(common::repo_root().join("scripts/kubectl"));
    cmd.args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.env("KUBECONFIG", kubeconfig.map(|p| p.as_path()).unwrap_or(common::kubeconfig()));
    let mut child = cmd.spawn().expect("cannot run scripts/kubectl");
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

fn assert_ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

#[test]
fn chart_crds_equal_the_generated_crds() {
    let root = common::repo_root();
    let chart = std::fs::read_to_string(root.join(CHART).join("files/crds.yaml")).unwrap();
    assert!(
        chart == arcadia_drift::api::crds_yaml().unwrap(),
        "charts/arcadia-drift/files/crds.yaml differs from the code; copy crds/arcadia.cloud.yaml there"
    );
    // Rendered as templates (so helm upgrade applies them), kept on uninstall, or not at all.
    let rendered = helm_ok(&["template", "t", CHART, "--show-only", "templates/crds.yaml"]);
    let docs = arcadia_drift::writeback::edit::read_json(&rendered).unwrap();
    let docs: Vec<_> = docs.into_iter().filter(|d| !d.is_null()).collect();
    assert_eq!(docs.len(), arcadia_drift::api::crds().len());
    for (doc, crd) in docs.iter().zip(arcadia_drift::api::crds()) {
        assert_eq!(doc["metadata"]["annotations"]["helm.sh/resource-policy"], "keep");
        assert_eq!(
            doc["metadata"]["annotations"]["arcadia.cloud/schema-version"],
            arcadia_drift::api::SCHEMA_VERSION.to_string()
        );
        assert_eq!(
            doc["spec"],
            serde_json::to_value(&crd.spec).unwrap(),
            "{} is rendered unchanged",
            crd.metadata.name.unwrap()
        );
    }
    let none = helm(&["template", "t", CHART, "--set", "crds.install=false", "--show-only", "templates/crds.yaml"]);
    assert!(!none.status.success() || String::from_utf8_lossy(&none.stdout).trim().is_empty());
}

#[test]
fn lint_and_render_with_default_and_other_values() {
    helm_ok(&["lint", "--strict", CHART]);
    helm_ok(&["lint", "--strict", CHART, "-f", "charts/arcadia-drift/ci/all-features-values.yaml"]);

    let default = helm_ok(&["template", "drift", CHART, "--namespace", "arcadia-system"]);
    for kind in [
        "kind: ServiceAccount",
        "kind: Deployment",
        "kind: Service\n",
        "kind: PodDisruptionBudget",
        "kind: ValidatingAdmissionPolicy\n",
        "kind: ValidatingAdmissionPolicyBinding",
        "name: arcadia-drift-viewer",
        "name: arcadia-drift-admin",
        "rbac.authorization.k8s.io/aggregate-to-view: \"true\"",
    ] {
        assert!(default.contains(kind), "default render lacks {kind:?}");
    }
    assert!(!default.contains("kind: ServiceMonitor") && default.contains("kind: NetworkPolicy"));
    assert!(!default.contains("kind: PrometheusRule") && !default.contains("--enable-revert"));
    assert!(default.contains("replicas: 2") && default.contains("--leader-election=true"));
    assert!(default.contains("readOnlyRootFilesystem: true") && default.contains("runAsNonRoot: true"));
    assert!(default.contains("drop: [ALL]") && default.contains("type: RuntimeDefault"));
    assert!(!default.contains("DIGITALOCEAN_TOKEN"));

    let custom = helm_ok(&[
        "template",
        "drift",
        CHART,
        "--namespace",
        "arcadia-system",
        "-f",
        "charts/arcadia-drift/ci/all-features-values.yaml",
    ]);
    for needle in [
        "kind: ServiceMonitor",
        "kind: NetworkPolicy",
        "--namespace=team-a",
        "--inventory-source=do-production",
        "--digitalocean-types=droplet,volume",
        "ops:drift-approvers",
        "namespace: team-a",
        "minAvailable: 2",
        "--enable-revert",
        "--max-concurrent-reverts=4",
        "--revert-claim=any",
        "--revert-step-timeout=15m",
        "kind: PrometheusRule",
        "alert: ArcadiaDriftCriticalDriftOpen",
        "severity=\"critical\"}) > 1800",
        "grafana_dashboard: \"1\"",
        "--metrics-addr=[$(POD_IP)]:8080",
        "--metrics-token-file=/var/run/arcadia-drift/metrics/token",
        "bearerTokenSecret:",
        "cidr: \"203.0.113.0/24\"",
        "port: 3128",
        "name: drift-arcadia-drift-git-writeback",
        "--digitalocean-token-file=/var/run/arcadia-drift/digitalocean/token",
        "secretName: do-token",
        "fsGroup: 65532",
        "--git-allowed-remotes=https://git.example/platform/,git@git.example:platform/",
        "--metrics-fields=size_slug,region,tags",
    ] {
        assert!(custom.contains(needle), "custom render lacks {needle:?}");
    }
    // The token is a mounted file, never an environment variable (children and /proc/<pid>/environ would see it).
    assert!(!custom.contains("DIGITALOCEAN_TOKEN"), "the token is passed in the environment");
}

/// The rendered objects of a `helm template`, as JSON.
fn objects(rendered: &str) -> Vec<Value> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(rendered).expect("helm renders YAML");
    docs.into_iter().filter(|d| !d.is_null()).collect()
}

fn of_kind<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}

fn render(sets: &[&str]) -> Vec<Value> {
    let mut args = vec!["template", "drift", CHART, "--namespace", "arcadia-system"];
    for set in sets {
        args.extend(["--set", set]);
    }
    objects(&helm_ok(&args))
}

/// Every (verb, resource, namespace or "*") an RBAC rule of `objects` grants.
fn grants(objects: &[Value]) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for role in objects.iter().filter(|o| o["kind"] == "Role" || o["kind"] == "ClusterRole") {
        let scope = role["metadata"]["namespace"].as_str().unwrap_or("*").to_owned();
        for rule in role["rules"].as_array().into_iter().flatten() {
            for verb in rule["verbs"].as_array().into_iter().flatten() {
                for resource in rule["resources"].as_array().into_iter().flatten() {
                    let (verb, resource) = (verb.as_str().unwrap().to_owned(), resource.as_str().unwrap().to_owned());
                    out.push((verb, resource, scope.clone()));
                }
            }
        }
    }
    out
}

/// The chart's egress NetworkPolicy, rendered by default: DNS to kube-dns,
/// the API server, and the DigitalOcean API and Git hosts only when enabled,
/// each by CIDR and port; no rule that allows everything.
#[test]
fn an_egress_network_policy_is_rendered_by_default() {
    let egress_ports = |policy: &Value| -> Vec<Vec<(i64, String)>> {
        let rules = policy["spec"]["egress"].as_array().expect("egress rules");
        rules
            .iter()
            .map(|rule| {
                assert!(rule["to"].as_array().is_some_and(|to| !to.is_empty()), "an egress rule to anywhere: {rule}");
                let ports = rule["ports"].as_array().expect("an egress rule without ports allows all of them");
                ports
                    .iter()
                    .map(|p| (p["port"].as_i64().unwrap(), p["protocol"].as_str().unwrap().to_owned()))
                    .collect()
            })
            .collect()
    };
    let default = render(&[]);
    let policies = of_kind(&default, "NetworkPolicy");
    assert_eq!(policies.len(), 1, "one NetworkPolicy by default");
    let policy = policies[0];
    assert_eq!(policy["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
    assert_eq!(policy["spec"]["ingress"][0]["ports"], json!([{"port": 8080, "protocol": "TCP"}]));
    let dns = &policy["spec"]["egress"][0]["to"][0];
    assert_eq!(dns["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"], "kube-system");
    assert_eq!(dns["podSelector"]["matchLabels"]["k8s-app"], "kube-dns");
    let tcp = |ports: &[i64]| ports.iter().map(|p| (*p, "TCP".to_owned())).collect::<Vec<_>>();
    let dns_ports = vec![(53, "UDP".to_owned()), (53, "TCP".to_owned())];
    assert_eq!(egress_ports(policy), vec![dns_ports.clone(), tcp(&[443, 6443])], "DNS and the API server only");

    let all = render(&["digitalocean.enabled=true", "gitWriteback.enabled=true"]);
    let policy = of_kind(&all, "NetworkPolicy")[0];
    assert_eq!(egress_ports(policy), vec![dns_ports, tcp(&[443, 6443]), tcp(&[443]), tcp(&[443, 22])]);
    assert_eq!(
        policy["spec"]["egress"][3]["to"],
        json!([{"ipBlock": {"cidr": "0.0.0.0/0"}}, {"ipBlock": {"cidr": "::/0"}}])
    );

    // Narrowed to known addresses, with an except.
    let narrowed = render(&[
        "gitWriteback.enabled=true",
        "networkPolicy.git.cidrs[0].cidr=203.0.113.0/24",
        "networkPolicy.git.cidrs[0].except[0]=203.0.113.9/32",
        "networkPolicy.git.ports={443}",
    ]);
    let policy = of_kind(&narrowed, "NetworkPolicy")[0];
    assert_eq!(
        policy["spec"]["egress"][2]["to"],
        json!([{"ipBlock": {"cidr": "203.0.113.0/24", "except": ["203.0.113.9/32"]}}])
    );
    assert!(of_kind(&render(&["networkPolicy.enabled=false"]), "NetworkPolicy").is_empty());

    // NetworkPolicy has no host names, and an empty list would open everything.
    for (flag, set, says) in [
        ("--set", "networkPolicy.git.cidrs={git.example.com}", "'/networkPolicy/git/cidrs/0'"),
        ("--set", "networkPolicy.apiServer.ports=null", "'/networkPolicy/apiServer': missing property 'ports'"),
        ("--set", "networkPolicy.digitalocean.cidrs=null", "'/networkPolicy/digitalocean': missing property 'cidrs'"),
        ("--set-json", "networkPolicy.git.cidrs=[]", "'/networkPolicy/git/cidrs': minItems: got 0, want 1"),
        ("--set-json", "networkPolicy.apiServer.ports=[]", "'/networkPolicy/apiServer/ports': minItems: got 0"),
    ] {
        let out = helm(&["template", "drift", CHART, flag, set]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(says), "{set} is refused naming {says}: {err}");
    }
}

/// Git Secrets and the GitOps tools' objects are readable only through
/// RoleBindings in listed namespaces; the controller may not create a
/// CloudProvisioned; /metrics listens on the pod's IP, with a token when asked.
#[test]
fn the_controller_rbac_and_metrics_are_least_privilege() {
    let objects = render(&[
        "gitWriteback.enabled=true",
        "gitWriteback.secretNamespaces={team-a,team-b}",
        "gitWriteback.fluxNamespaces={flux-system}",
        "gitWriteback.argocdApplicationNamespaces={apps}",
        "gitWriteback.credentialsSecret=creds/push-token",
    ]);
    let granted = grants(&objects);
    let scopes = |verb: &str, resource: &str| -> Vec<&str> {
        let mut scopes: Vec<&str> =
            granted.iter().filter(|(v, r, _)| v == verb && r == resource).map(|(_, _, s)| s.as_str()).collect();
        scopes.sort();
        scopes
    };
    // Flux's namespace too: a GitRepository's secretRef is read there, by name.
    assert_eq!(scopes("get", "secrets"), ["arcadia-system", "creds", "flux-system", "team-a", "team-b"]);
    assert_eq!(scopes("get", "kustomizations"), ["flux-system"]);
    assert_eq!(scopes("get", "gitrepositories"), ["flux-system"]);
    assert_eq!(scopes("get", "applications"), ["apps", "argocd"]);
    assert!(scopes("create", "cloudprovisioneds").is_empty(), "{granted:?}");
    assert_eq!(scopes("create", "drifts"), ["*"], "Drifts are created by server-side apply");
    let role_in = |objects: &[Value], ns: &str| {
        objects.iter().find(|o| o["kind"] == "Role" && o["metadata"]["namespace"] == ns).cloned().unwrap()
    };
    let team_a = role_in(&objects, "team-a");
    assert_eq!(team_a["rules"][0]["resourceNames"], json!(["arcadia-drift-git", "push-token"]));
    // In Flux's namespace only the names listed, not the controller-wide Secret's.
    let flux = role_in(&objects, "flux-system");
    assert_eq!(flux["rules"][0]["resources"], json!(["secrets"]));
    assert_eq!(flux["rules"][0]["resourceNames"], json!(["arcadia-drift-git"]));
    // No names, no Secret rule: an empty resourceNames would grant every Secret.
    let unnamed = self::objects(&helm_ok(&[
        "template",
        "drift",
        CHART,
        "--namespace",
        "arcadia-system",
        "--set",
        "gitWriteback.enabled=true,gitWriteback.credentialsSecret=creds/push-token",
        "--set-json",
        "gitWriteback.secretNames=[]",
    ]));
    assert!(!role_in(&unnamed, "flux-system").to_string().contains("secrets"));
    for role in of_kind(&unnamed, "Role").into_iter().filter(|r| r.to_string().contains("\"secrets\"")) {
        assert_eq!(role["rules"][0]["resourceNames"], json!(["push-token"]), "{role}");
    }
    let bindings = of_kind(&objects, "RoleBinding");
    for ns in ["arcadia-system", "creds", "team-a", "team-b", "flux-system", "argocd", "apps"] {
        let bound = bindings.iter().any(|b| {
            b["metadata"]["namespace"] == ns
                && b["roleRef"]["kind"] == "Role"
                && b["roleRef"]["name"] == "drift-arcadia-drift-git-writeback"
        });
        assert!(bound, "a RoleBinding of the write-back Role in {ns}");
    }
    for binding in of_kind(&objects, "ClusterRoleBinding") {
        let role =
            objects.iter().find(|o| o["kind"] == "ClusterRole" && o["metadata"]["name"] == binding["roleRef"]["name"]);
        let text = role.map(Value::to_string).unwrap_or_default();
        assert!(!text.contains("secrets") && !text.contains("applications"), "bound cluster-wide: {text}");
    }
    // With a watched namespace, the controller's own rules there have no create on CloudProvisioneds either.
    let watched = render(&["watchNamespace=team-a"]);
    assert!(!grants(&watched).iter().any(|(v, r, _)| v == "create" && r == "cloudprovisioneds"));

    let deployment =
        |objects: &[Value]| of_kind(objects, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0].clone();
    let container = deployment(&render(&[]));
    let args: Vec<&str> = container["args"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(args.contains(&"--metrics-addr=$(POD_IP):8080"), "{args:?}");
    assert!(!args.iter().any(|a| a.starts_with("--metrics-token-file")));
    let pod_ip = container["env"].as_array().unwrap().iter().find(|e| e["name"] == "POD_IP").expect("POD_IP");
    assert_eq!(pod_ip["valueFrom"]["fieldRef"]["fieldPath"], "status.podIP");
    // Probes without a host go to the pod's IP, where the controller listens.
    assert_eq!(container["livenessProbe"]["httpGet"], json!({"path": "/healthz", "port": "metrics"}));
    assert_eq!(container["readinessProbe"]["httpGet"], json!({"path": "/readyz", "port": "metrics"}));
    let args = |sets: &[&str]| deployment(&render(sets))["args"].to_string();
    assert!(args(&["metrics.bind=podIPv6"]).contains("--metrics-addr=[$(POD_IP)]:8080"));
    assert!(args(&["metrics.bind=all", "metrics.port=9090"]).contains("--metrics-addr=0.0.0.0:9090"));

    let authed =
        render(&["metrics.auth.enabled=true", "metrics.auth.secretName=scrape", "metrics.serviceMonitor.enabled=true"]);
    let pod = &of_kind(&authed, "Deployment")[0]["spec"]["template"]["spec"];
    assert!(
        pod["containers"][0]["args"].to_string().contains("--metrics-token-file=/var/run/arcadia-drift/metrics/token")
    );
    assert!(pod["containers"][0]["volumeMounts"].to_string().contains("/var/run/arcadia-drift/metrics"));
    let volume = pod["volumes"].as_array().unwrap().iter().find(|v| v["name"] == "metrics-token").unwrap();
    assert_eq!(volume["secret"]["secretName"], "scrape");
    assert_eq!(volume["secret"]["items"], json!([{"key": "token", "path": "token"}]));
    // Readable by the pod's fsGroup only; checked as text, since 0440 is octal to
    // kubectl's YAML 1.1 decoder but decimal to this test's YAML 1.2 parser.
    let text = helm_ok(&["template", "drift", CHART, "--set", "metrics.auth.enabled=true"]);
    let secret = text.split("- name: metrics-token\n").nth(1).expect("the metrics-token volume");
    assert!(secret.lines().take(5).any(|l| l.trim() == "defaultMode: 0440"), "{secret}");
    let monitor = of_kind(&authed, "ServiceMonitor")[0];
    assert_eq!(monitor["spec"]["endpoints"][0]["bearerTokenSecret"], json!({"name": "scrape", "key": "token"}));
    let out = helm(&["template", "drift", CHART, "--set", "metrics.bind=localhost"]);
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("'/metrics/bind': value must be one of")
    );
}

#[test]
fn a_typo_in_values_fails_at_install_time() {
    let out = helm(&["template", "drift", CHART, "--set", "replica=3"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("additional properties 'replica' not allowed"), "{err}");
    let out = helm(&["template", "drift", CHART, "--set", "digitalocean.types={droplets}"]);
    assert!(!out.status.success(), "an unknown resource type is rejected");
}

/// Each value of the deprecated top-level `digitalocean.*`, its key under
/// `providers.*` or `inventory.*`, and a value other than the default.
const MOVED: [(&str, &str, &str); 10] = [
    ("digitalocean.enabled", "providers.digitalocean.enabled", "true"),
    ("digitalocean.tokenSecret.name", "providers.digitalocean.tokenSecret.name", "do-token"),
    ("digitalocean.tokenSecret.key", "providers.digitalocean.tokenSecret.key", "api-token"),
    ("digitalocean.apiUrl", "providers.digitalocean.apiUrl", "https://do.example"),
    ("digitalocean.syncInterval", "inventory.syncInterval", "10m"),
    ("digitalocean.actionsInterval", "providers.digitalocean.actionsInterval", "0"),
    ("digitalocean.source", "providers.digitalocean.source", "do-production"),
    ("digitalocean.types", "providers.digitalocean.types", "{droplet,volume}"),
    ("digitalocean.requestsPerHour", "providers.digitalocean.requestsPerHour", "1000"),
    ("digitalocean.missingRetention", "inventory.missingRetention", "48h"),
];

fn container_args(objects: &[Value]) -> Value {
    of_kind(objects, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["args"].clone()
}

/// Each deprecated value renders exactly what its new key does: alone (the
/// chart's helper repeats each new key's default to tell a value set from
/// one not set; a copy that differs from values.yaml's fails here as "both
/// set"), and all together with revert and a watched namespace.
#[test]
fn the_deprecated_digitalocean_values_render_as_their_new_keys() {
    let enabled_old = "digitalocean.enabled=true";
    let enabled_new = "providers.digitalocean.enabled=true";
    let enabled = render(&[enabled_new]);
    for (old, new, value) in MOVED {
        let (old_set, new_set) = (format!("{old}={value}"), format!("{new}={value}"));
        let by_old = render(&[enabled_old, &old_set]);
        let by_new = render(&[enabled_new, &new_set]);
        assert_eq!(container_args(&by_old), container_args(&by_new), "{old} and {new}: the same args");
        assert_eq!(by_old, by_new, "{old} and {new}: the same objects");
        if old != "digitalocean.enabled" {
            assert_ne!(by_new, enabled, "{new}={value} changes what is rendered");
        }
    }
    let mut old: Vec<String> = MOVED.iter().map(|(old, _, value)| format!("{old}={value}")).collect();
    let mut new: Vec<String> = MOVED.iter().map(|(_, new, value)| format!("{new}={value}")).collect();
    for both in [&mut old, &mut new] {
        both.extend(["revert.enabled=true".to_owned(), "watchNamespace=team-a".to_owned()]);
    }
    let by_old = render(&old.iter().map(String::as_str).collect::<Vec<_>>());
    let by_new = render(&new.iter().map(String::as_str).collect::<Vec<_>>());
    let args = container_args(&by_new);
    assert_eq!(container_args(&by_old), args);
    assert_eq!(by_old, by_new);
    for arg in [
        "--digitalocean-api-url=https://do.example",
        "--inventory-sync-interval=10m",
        "--digitalocean-actions-interval=0",
        "--inventory-source=do-production",
        "--digitalocean-types=droplet,volume",
        "--digitalocean-requests-per-hour=1000",
        "--missing-retention=48h",
        "--enable-revert",
    ] {
        assert!(args.as_array().unwrap().contains(&json!(arg)), "{arg} in {args}");
    }
    let pod = &of_kind(&by_new, "Deployment")[0]["spec"]["template"]["spec"];
    let volume = pod["volumes"].as_array().unwrap().iter().find(|v| v["name"] == "digitalocean-token").unwrap();
    assert_eq!(volume["secret"]["secretName"], "do-token");
    assert_eq!(volume["secret"]["items"], json!([{"key": "api-token", "path": "token"}]));
    let feed =
        of_kind(&by_new, "Role").into_iter().find(|r| r["metadata"]["name"] == "drift-arcadia-drift-inventory-state");
    assert_eq!(
        feed.expect("the feed's Role")["rules"][1]["resourceNames"],
        json!(["arcadia-drift-actions-do-production"])
    );
}

/// The same value set both ways fails, naming the key to keep.
#[test]
fn a_value_set_both_deprecated_and_new_fails() {
    for (old, new, value) in MOVED {
        let (old_set, new_set) = (format!("{old}={value}"), format!("{new}={value}"));
        let out = helm(&["template", "drift", CHART, "--set", &old_set, "--set", &new_set]);
        let err = String::from_utf8_lossy(&out.stderr);
        let says = format!("both {old} and {new} are set: keep {new} and remove {old}");
        assert!(!out.status.success() && err.contains(&says), "{old} and {new} both set: {err}");
    }
}

/// The NOTES of an install: a client-side dry run, which reads the cluster.
/// With --take-ownership, since it otherwise refuses objects of the chart's
/// names (the CRDs, the user roles) that other tests made.
fn install_notes(sets: &[&str]) -> String {
    let mut args =
        vec!["install", "drift", CHART, "--namespace", "arcadia-system", "--dry-run=client", "--take-ownership"];
    for set in sets {
        args.extend(["--set", set]);
    }
    let out = Command::new(common::repo_root().join("scripts/helm"))
        .args(&args)
        .env("KUBECONFIG", common::kubeconfig())
        .current_dir(common::repo_root())
        .output()
        .expect("cannot run scripts/helm");
    let stdout = assert_ok(&out, &format!("helm {args:?}"));
    stdout.split_once("\nNOTES:\n").expect("helm prints NOTES").1.to_owned()
}

#[test]
fn the_notes_name_the_new_keys_of_deprecated_values() {
    let notes = install_notes(&["digitalocean.enabled=true", "digitalocean.syncInterval=10m"]);
    assert!(notes.contains("DEPRECATED"), "{notes}");
    assert!(notes.contains("digitalocean.enabled -> providers.digitalocean.enabled"), "{notes}");
    assert!(notes.contains("digitalocean.syncInterval -> inventory.syncInterval"), "{notes}");
    assert!(!notes.contains("digitalocean.apiUrl"), "only the values set are named: {notes}");
    assert!(notes.contains("providers enabled: digitalocean."), "{notes}");
    for sets in [&["providers.digitalocean.enabled=true", "inventory.syncInterval=10m"][..], &[]] {
        let notes = install_notes(sets);
        assert!(!notes.contains("DEPRECATED") && !notes.contains(" -> "), "{sets:?}: {notes}");
    }
}

/// The new keys are as strict as the old: a wrong type or an unknown key is
/// refused before anything renders, and revert names the provider it needs.
#[test]
fn provider_values_are_checked_at_install_time() {
    for (flag, set, says) in [
        ("--set", "providers.digitalocean.types=droplet", "at '/providers/digitalocean/types': got string, want array"),
        (
            "--set",
            "providers.digitalocean.token=x",
            "at '/providers/digitalocean': additional properties 'token' not allowed",
        ),
        ("--set", "providers.gcp.enabled=true", "at '/providers': additional properties 'gcp' not allowed"),
        ("--set", "providers.aws.types={bucket}", "at '/providers/aws/types/0'"),
        ("--set", "inventory.syncInterval=soon", "at '/inventory/syncInterval'"),
        (
            "--set",
            "digitalocean.tokenSecret.nmae=x",
            "at '/digitalocean/tokenSecret': additional properties 'nmae' not allowed",
        ),
        (
            "--set-json",
            "providers.digitalocean.types=[]",
            "at '/providers/digitalocean/types': minItems: got 0, want 1",
        ),
        ("--set", "revert.enabled=true", "revert.enabled needs a provider: set providers.digitalocean.enabled"),
    ] {
        let out = helm(&["template", "drift", CHART, flag, set]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(says), "{set} is refused saying {says}: {err}");
    }
}

#[tokio::test]
async fn everything_rendered_passes_a_server_side_dry_run() {
    let client = common::client().await;
    let ns = common::namespace(&client, "chart-dry-run").await;
    let team = common::namespace(&client, "chart-team").await;
    for (label, extra) in
        [("default", vec![]), ("non-default", vec!["-f", "charts/arcadia-drift/ci/all-features-values.yaml"])]
    {
        let watch = format!("watchNamespace={team}");
        let secrets = format!("gitWriteback.secretNamespaces={{{team}}}");
        let flux = format!("gitWriteback.fluxNamespaces={{{ns}}}");
        let argocd = format!("gitWriteback.argocdNamespace={ns}");
        let argocd_apps = format!("gitWriteback.argocdApplicationNamespaces={{{team}}}");
        let version = server_version();
        let mut args = vec!["template", "dry", CHART, "--namespace", &ns, "--kube-version", &version];
        args.extend(extra.iter().copied());
        if label == "non-default" {
            // The cluster has no Prometheus Operator CRDs; the ServiceMonitor and the
            // PrometheusRule are checked by `template` above (and the rules by promtool).
            args.extend(["--set", "metrics.serviceMonitor.enabled=false", "--set", "prometheusRule.enabled=false"]);
            args.extend(["--set", &watch]);
            // Every namespace a Role goes to must exist.
            args.extend(["--set", &secrets, "--set", &flux, "--set", &argocd, "--set", &argocd_apps]);
        }
        let rendered = helm_ok(&args);
        let mut out = kubectl_stdin(&["apply", "--dry-run=server", "-f", "-"], &rendered, None);
        // The user roles are cluster-scoped with fixed names: the RBAC test,
        // running beside this one, may create them between apply's read and
        // its dry-run create. Applied again, they are seen and patched.
        if String::from_utf8_lossy(&out.stderr).contains("(AlreadyExists)") {
            out = kubectl_stdin(&["apply", "--dry-run=server", "-f", "-"], &rendered, None);
        }
        assert_ok(&out, &format!("dry-run apply of the {label} render"));
    }
}

/// The chart's RBAC for real: the controller authenticates as the chart's
/// ServiceAccount and does its whole job; anything beyond is denied. Then the
/// admission policies: an admin accepts (and is stamped as the actor without
/// saying so), a non-member and a spoofed accepted-by are denied.
#[tokio::test]
async fn least_privilege_rbac_and_the_accept_policy() {
    let client = common::client().await;
    let system = common::namespace(&client, "chart-system").await;
    let team = common::namespace(&client, "chart-team").await;
    let release = format!("rbac{}", &common::unique_suffix()[..6]);
    let watch = format!("watchNamespace={team}");
    let guard = format!("acceptPolicy.namespaceSelector.matchLabels.kubernetes\\.io/metadata\\.name={team}");
    let rendered = render_for_cluster(&release, &system, &[&watch, &guard]);
    let out = kubectl_stdin(&["apply", "--server-side", "-f", "-"], &rendered, None);
    assert_ok(&out, "applying the rendered chart");
    let fullname = format!("{release}-arcadia-drift");
    let sa_user = format!("system:serviceaccount:{system}:{fullname}");

    // What it may and may not do.
    let can = |verb: &str, resource: &str, ns: &str| {
        let out = common::kubectl(&["auth", "can-i", verb, resource, "-n", ns, "--as", &sa_user]);
        String::from_utf8_lossy(&out.stdout).trim() == "yes"
    };
    for (verb, resource) in [
        ("watch", "cloudprovisioneds.arcadia.cloud"),
        ("patch", "cloudprovisioneds.arcadia.cloud"),
        ("patch", "cloudprovisioneds.arcadia.cloud/status"),
        ("create", "drifts.arcadia.cloud"),
        ("patch", "drifts.arcadia.cloud/status"),
        ("create", "events.events.k8s.io"),
    ] {
        assert!(can(verb, resource, &team), "the controller needs {verb} {resource}");
    }
    for (verb, resource, ns) in [
        ("delete", "drifts.arcadia.cloud", team.as_str()),
        ("update", "cloudprovisioneds.arcadia.cloud", team.as_str()),
        ("create", "cloudprovisioneds.arcadia.cloud", team.as_str()),
        ("delete", "cloudprovisioneds.arcadia.cloud", team.as_str()),
        ("patch", "drifts.arcadia.cloud", "default"),
        ("patch", "cloudresources.arcadia.cloud", team.as_str()),
        ("get", "secrets", system.as_str()),
        ("list", "secrets", team.as_str()),
        ("create", "pods", system.as_str()),
        ("list", "namespaces", system.as_str()),
        ("delete", "leases.coordination.k8s.io", system.as_str()),
    ] {
        assert!(!can(verb, resource, ns), "the controller must not {verb} {resource} in {ns}");
    }

    // A token for the ServiceAccount, from the TokenRequest API, in a kubeconfig of its own.
    let token = common::kubectl_ok(&["create", "token", &fullname, "-n", &system, "--duration", "1h"]);
    let admin = std::fs::read_to_string(common::kubeconfig()).unwrap();
    let sa_kubeconfig = std::env::temp_dir().join(format!("{release}.kubeconfig"));
    let as_sa: String =
        admin
            .lines()
            .map(|l| {
                if l.trim_start().starts_with("token:") {
                    format!("    token: {}", token.trim())
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
    std::fs::write(&sa_kubeconfig, as_sa).unwrap();
    // Without `create`, a server-side apply of a CloudProvisioned that does not
    // exist (one deleted under an accept) is refused rather than creating it.
    let absent = format!(
        "{{apiVersion: arcadia.cloud/v1alpha1, kind: CloudProvisioned, metadata: {{name: absent, namespace: {team}}}, \
         spec: {{resourceRef: {{name: x}}, desired: {{size_slug: s-1vcpu-1gb}}}}}}"
    );
    let apply = ["apply", "--server-side", "--field-manager", "arcadia-drift", "-f", "-"];
    let out = kubectl_stdin(&apply, &absent, Some(&sa_kubeconfig));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("cannot create resource \"cloudprovisioneds\""), "{err}");

    // The spec policy refuses field names the controller would refuse too.
    let long = format!(
        "{{apiVersion: arcadia.cloud/v1alpha1, kind: CloudProvisioned, metadata: {{name: long, namespace: {team}}}, \
         spec: {{resourceRef: {{name: x}}, desired: {{{}: 1}}}}}}",
        "f".repeat(64)
    );
    let out = common::eventually(Duration::from_secs(20), "the spec policy in force", || async {
        let out = kubectl_stdin(&["apply", "--server-side", "-f", "-"], &long, None);
        (!out.status.success()).then_some(out)
    })
    .await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("spec.desired field names are at most 63 characters"), "{err}");

    // The controller, as that ServiceAccount, does its whole job in its namespace.
    let resource = format!("digitalocean-droplet-{}", common::unique_suffix());
    let spec =
        CloudResourceSpec { provider: "digitalocean".into(), type_: "droplet".into(), id: "1".into(), region: None };
    Api::<CloudResource>::all(client.clone())
        .create(&PostParams::default(), &CloudResource::new(&resource, spec))
        .await
        .unwrap();
    let status =
        CloudResourceStatus { size_slug: Some("s-2vcpu-4gb".into()), synced_time: Some(now()), ..Default::default() };
    Api::<CloudResource>::all(client.clone())
        .patch_status(
            &resource,
            &PatchParams::apply("test-syncer"),
            &Patch::Apply(json!({"apiVersion": "arcadia.cloud/v1alpha1", "kind": "CloudResource", "status": status})),
        )
        .await
        .unwrap();
    let spec = CloudProvisionedSpec {
        resource_ref: ResourceRef { name: resource.clone() },
        desired: Fields::try_from(json!({"size_slug": "s-1vcpu-1gb"})).unwrap(),
        ..Default::default()
    };
    Api::<CloudProvisioned>::namespaced(client.clone(), &team)
        .create(&PostParams::default(), &CloudProvisioned::new("web-1", spec))
        .await
        .unwrap();
    let controller = ControllerProcess::start_with_env(
        &team,
        &["--lease-name", &fullname],
        &[("KUBECONFIG", sa_kubeconfig.to_str().unwrap()), ("POD_NAMESPACE", &system)],
    );
    let drifts: Api<Drift> = Api::namespaced(client.clone(), &team);
    let drift = common::eventually(Duration::from_secs(30), "a drift written by the ServiceAccount", || async {
        drifts.list(&ListParams::default()).await.ok()?.items.pop()
    })
    .await;
    let name = drift.name_any();

    // The admission policy, with impersonated people bound to the chart's user roles.
    for (user, role) in
        [("alice", "arcadia-drift-admin"), ("mallory", "arcadia-drift-admin"), ("carol", "arcadia-drift-viewer")]
    {
        common::kubectl_ok(&[
            "create",
            "rolebinding",
            &format!("{user}-{role}"),
            "-n",
            &team,
            "--clusterrole",
            role,
            "--user",
            user,
        ]);
    }
    let guarded = Guarded { name: name.clone(), team: team.clone(), controller: sa_user.clone() };
    let admins = ["arcadia:platform-admins"];
    let accept = |user: &str, groups: &[&str], by: Option<&str>| {
        let mut pairs = vec![format!("{ANNOTATION_ACCEPT}=true")];
        pairs.extend(by.map(|by| format!("arcadia.cloud/accepted-by={by}")));
        let (ok, err, _) = guarded.annotate(user, groups, &pairs, false);
        (ok, err)
    };
    let (ok, err) = accept("mallory", &[], Some("mallory"));
    assert!(!ok, "a non-member cannot accept");
    assert!(
        err.contains("only members of the group arcadia:platform-admins may accept a drift; mallory is not one"),
        "{err}"
    );
    let snooze = ["arcadia.cloud/snooze-until=2030-01-01T00:00:00Z".to_owned()];
    let (ok, err, _) = guarded.annotate("mallory", &[], &snooze, false);
    assert!(!ok, "a non-member cannot snooze");
    assert!(
        err.contains(
            "only members of the group arcadia:platform-admins may snooze or ignore a drift; mallory is not one"
        ),
        "{err}"
    );
    let (ok, err) = accept("carol", &admins, Some("carol"));
    assert!(!ok && err.contains("forbidden"), "a viewer cannot patch drifts: {err}");
    for decision in [ACCEPT, REVERT] {
        guarded.actor_cannot_be_spoofed(&decision);
    }
    revert_is_guarded_as_accept_is(&drifts, &guarded).await;
    // An admin's accept that does not say who: from 1.36 the mutating policy
    // stamps the real user; before, the validating policy requires the name.
    let (ok, err) = if stamps_accepted_by() {
        accept("alice", &admins, None)
    } else {
        let (ok, err) = accept("alice", &admins, None);
        assert!(!ok, "without the mutating policy an accept must say who");
        assert!(err.contains("arcadia.cloud/accepted-by is required with arcadia.cloud/accept on this cluster: set it to your user name (alice)"), "{err}");
        accept("alice", &admins, Some("alice"))
    };
    assert!(ok, "an admin accepts: {err}");

    // The controller, still as its ServiceAccount, completes the accept and removes the annotation.
    let accepted = common::eventually(Duration::from_secs(30), "the accept completed", || async {
        let d = drifts.get(&name).await.ok()?;
        (d.status.as_ref()?.phase == DriftPhase::Accepted && !d.annotations().contains_key(ANNOTATION_ACCEPT))
            .then_some(d)
    })
    .await;
    assert_eq!(accepted.status.unwrap().resolved_by.as_deref(), Some("alice"));
    let p = Api::<CloudProvisioned>::namespaced(client.clone(), &team).get("web-1").await.unwrap();
    assert_eq!(p.spec.desired.get("size_slug").unwrap_or_default(), json!("s-2vcpu-4gb"));
    let log = controller.log_text();
    assert!(!log.contains("forbidden") && !log.contains("Forbidden"), "no permission errors:\n{log}");
    assert_eq!(controller.metric("arcadia_drift_reconcile_errors_total"), 0.0, "{log}");
}

/// A decision annotation on a Drift and the annotation that names its actor.
struct Decision {
    key: &'static str,
    actor: &'static str,
    /// What the user who sets `key` does: "accepts", "reverts".
    verb: &'static str,
    /// A value to set it to: a revert approval may carry a plan digest, which the policy leaves alone.
    value: &'static str,
}

const ACCEPT: Decision =
    Decision { key: "arcadia.cloud/accept", actor: "arcadia.cloud/accepted-by", verb: "accepts", value: "true" };
const REVERT: Decision = Decision {
    key: "arcadia.cloud/revert",
    actor: "arcadia.cloud/reverted-by",
    verb: "reverts",
    value: "sha256-4f3c2a1b0d9e8f7a",
};

/// A Drift under the chart's admission policies, and the controller's user (exempt from them).
struct Guarded {
    name: String,
    team: String,
    controller: String,
}

impl Guarded {
    /// `kubectl annotate` of the Drift as `user` in `groups` (server-side
    /// dry run when asked): success, stderr, and the object it was or would be.
    fn annotate(&self, user: &str, groups: &[&str], pairs: &[String], dry_run: bool) -> (bool, String, String) {
        let mut args = vec!["annotate", "drift", self.name.as_str(), "-n", self.team.as_str(), "--overwrite"];
        args.extend(["-o", "json", "--as", user]);
        for g in groups {
            args.extend(["--as-group", g]);
        }
        if dry_run {
            args.push("--dry-run=server");
        }
        args.extend(pairs.iter().map(String::as_str));
        let out = common::kubectl(&args);
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        (out.status.success(), text(&out.stderr), text(&out.stdout))
    }

    /// The actor annotation of the object kubectl printed.
    fn actor_in(stdout: &str, d: &Decision) -> Option<String> {
        let object: Value = serde_json::from_str(stdout).ok()?;
        object["metadata"]["annotations"][d.actor].as_str().map(str::to_owned)
    }

    /// The actor of a decision is always the user who makes it: it cannot be
    /// set on its own (to be credited to a later decision), and a decision
    /// that names someone else, or finds someone else's name planted, records
    /// its requester (stamped where the MutatingAdmissionPolicy runs, refused
    /// where it does not).
    fn actor_cannot_be_spoofed(&self, d: &Decision) {
        let admins = ["arcadia:platform-admins"];
        let stray = |who: &str| {
            format!(
                "{} may only be set together with {}, by the user who {}: this request sets it to {who} without setting or changing {}",
                d.actor, d.key, d.verb, d.key
            )
        };
        for (groups, planted) in [(&[][..], "mallory"), (&admins[..], "mallory"), (&admins[..], "alice")] {
            let (ok, err, _) = self.annotate("mallory", groups, &[format!("{}={planted}", d.actor)], false);
            assert!(!ok, "{} set alone by mallory in {groups:?} is refused", d.actor);
            assert!(err.contains(&stray(planted)), "{err}");
        }
        // An admin's decision that names someone else.
        let pairs = [format!("{}={}", d.key, d.value), format!("{}=alice", d.actor)];
        let (ok, err, out) = self.annotate("mallory", &admins, &pairs, true);
        if stamps_accepted_by() {
            assert!(ok, "the mutating policy overwrites the name: {err}");
            assert_eq!(Self::actor_in(&out, d).as_deref(), Some("mallory"), "{out}");
        } else {
            assert!(!ok, "a decision naming someone else is refused");
            assert!(err.contains(&format!("{} must be your own user name (mallory), not alice", d.actor)), "{err}");
        }
        // A name planted earlier (only the controller could now) is never credited to a later decision.
        let plant = self.annotate(&self.controller, &[], &[format!("{}=mallory", d.actor)], false);
        assert!(plant.0, "the controller is exempt: {}", plant.1);
        let (ok, err, out) = self.annotate("alice", &admins, &[format!("{}={}", d.key, d.value)], true);
        if stamps_accepted_by() {
            assert!(ok, "{err}");
            assert_eq!(Self::actor_in(&out, d).as_deref(), Some("alice"), "the admin is recorded: {out}");
        } else {
            // "not mallory", or "is required" if the controller removed the stray name meanwhile.
            assert!(!ok && err.contains(d.actor) && err.contains("(alice)"), "a planted name is refused: {err}");
        }
        let removed = self.annotate(&self.controller, &[], &[format!("{}-", d.actor)], false);
        assert!(removed.0 || removed.1.contains("not found"), "{}", removed.1);
    }
}

/// `arcadia.cloud/revert` under the same policy as accept; this controller
/// runs without `--enable-revert`, so it refuses the admitted approval and
/// removes it.
async fn revert_is_guarded_as_accept_is(drifts: &Api<Drift>, guarded: &Guarded) {
    let revert = |user: &str, groups: &[&str], by: Option<&str>| {
        let mut pairs = vec!["arcadia.cloud/revert=true".to_owned()];
        pairs.extend(by.map(|by| format!("arcadia.cloud/reverted-by={by}")));
        guarded.annotate(user, groups, &pairs, false)
    };
    let admins = ["arcadia:platform-admins"];
    let (ok, err, _) = revert("mallory", &[], Some("mallory"));
    assert!(!ok, "a non-member cannot revert");
    assert!(
        err.contains("only members of the group arcadia:platform-admins may revert a drift; mallory is not one"),
        "{err}"
    );
    let (ok, err, out) = if stamps_accepted_by() {
        revert("alice", &admins, None)
    } else {
        let (ok, err, _) = revert("alice", &admins, None);
        assert!(!ok && err.contains("arcadia.cloud/reverted-by is required with arcadia.cloud/revert"), "{err}");
        revert("alice", &admins, Some("alice"))
    };
    assert!(ok, "an admin approves a revert: {err}");
    assert!(out.contains(r#""arcadia.cloud/reverted-by": "alice""#), "the approver is named: {out}");
    common::eventually(Duration::from_secs(30), "the revert refused and its annotation removed", || async {
        let d = drifts.get(&guarded.name).await.ok()?;
        let refused = d.status.as_ref()?.message.as_deref()?.contains("--enable-revert");
        (refused && !d.annotations().contains_key("arcadia.cloud/revert")).then_some(())
    })
    .await;
}

/// With Git write-back on, the controller may read the named credentials
/// Secrets and the GitOps tools' objects, nothing more of them, and only in
/// the namespaces listed (RoleBindings, never cluster-wide).
#[tokio::test]
async fn git_writeback_reads_only_the_named_secrets() {
    let client = common::client().await;
    let system = common::namespace(&client, "chart-git").await;
    let tenant = common::namespace(&client, "chart-git-tenant").await;
    let flux = common::namespace(&client, "chart-git-flux").await;
    let argocd = common::namespace(&client, "chart-git-argocd").await;
    let other = common::namespace(&client, "chart-git-other").await;
    let release = format!("git{}", &common::unique_suffix()[..6]);
    let sets = [
        "gitWriteback.enabled=true".to_owned(),
        "acceptPolicy.enabled=false".to_owned(),
        format!("gitWriteback.secretNamespaces={{{tenant}}}"),
        format!("gitWriteback.fluxNamespaces={{{flux}}}"),
        format!("gitWriteback.argocdNamespace={argocd}"),
    ];
    let rendered = render_for_cluster(&release, &system, &sets.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(rendered.contains(&format!("--git-credentials-secret={system}/arcadia-drift-git")), "{rendered}");
    assert!(rendered.contains("mountPath: /tmp"), "git needs a writable /tmp under a read-only root");
    let out = kubectl_stdin(&["apply", "--server-side", "-f", "-"], &rendered, None);
    assert_ok(&out, "applying the rendered chart");
    // kubectl auth can-i resolves resource names through discovery: give it the tools' kinds.
    common::install_gitops_crds();
    let sa_user = format!("system:serviceaccount:{system}:{release}-arcadia-drift");
    let can = |verb: &str, resource: &str, ns: &str| {
        let out = common::kubectl(&["auth", "can-i", verb, resource, "-n", ns, "--as", &sa_user]);
        String::from_utf8_lossy(&out.stdout).trim() == "yes"
    };
    // Flux's namespace too: the GitRepository's secretRef, when its name is listed.
    for ns in [&system, &tenant, &flux] {
        assert!(can("get", "secrets/arcadia-drift-git", ns), "the credentials Secret in {ns}");
        assert!(!can("get", "secrets/other", ns) && !can("list", "secrets", ns), "an unnamed Secret in {ns}");
    }
    for ns in [&argocd, &other, &"default".to_owned()] {
        assert!(!can("get", "secrets/arcadia-drift-git", ns), "no credentials Secret is readable in {ns}");
    }
    for (resource, allowed) in [
        ("kustomizations.kustomize.toolkit.fluxcd.io", &flux),
        ("gitrepositories.source.toolkit.fluxcd.io", &flux),
        ("applications.argoproj.io", &argocd),
    ] {
        assert!(can("get", resource, allowed), "{resource} in {allowed}");
        assert!(!can("get", resource, &other) && !can("list", resource, allowed), "{resource} beyond get in {allowed}");
    }
    assert!(!can("patch", "applications.argoproj.io", &argocd));
}

#[test]
fn aws_renders_its_flags_irsa_and_a_credentials_file_never_an_environment_secret() {
    let objects = render(&[
        "providers.aws.enabled=true",
        "providers.aws.regions={us-east-1,eu-west-1}",
        "providers.aws.roleArn=arn:aws:iam::123456789012:role/arcadia-drift",
        "providers.aws.credentialsSecret.name=aws-credentials",
        "revert.enabled=true",
    ]);
    let args = container_args(&objects);
    let args: Vec<&str> = args.as_array().unwrap().iter().filter_map(Value::as_str).collect();
    for flag in [
        "--aws-regions=us-east-1,eu-west-1",
        "--aws-types=instance,volume,security_group",
        "--aws-inventory-source=aws",
        "--enable-revert",
    ] {
        assert!(args.contains(&flag), "{flag} in {args:?}");
    }
    let account = of_kind(&objects, "ServiceAccount")[0];
    assert_eq!(
        account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"],
        "arn:aws:iam::123456789012:role/arcadia-drift"
    );
    let deployment = of_kind(&objects, "Deployment")[0];
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let env = container["env"].as_array().unwrap();
    assert!(
        env.iter()
            .any(|e| e["name"] == "AWS_SHARED_CREDENTIALS_FILE"
                && e["value"] == "/var/run/arcadia-drift/aws/credentials")
    );
    assert!(
        !env.iter().any(|e| e["name"] == "AWS_ACCESS_KEY_ID" || e["name"] == "AWS_SECRET_ACCESS_KEY"),
        "keys stay in the file"
    );
    let volumes = deployment["spec"]["template"]["spec"]["volumes"].as_array().unwrap();
    assert!(volumes.iter().any(|v| v["secret"]["secretName"] == "aws-credentials"));

    let off = render(&[]);
    let args = container_args(&off).to_string();
    assert!(!args.contains("--aws-"), "AWS is off by default: {args}");
    assert!(of_kind(&off, "ServiceAccount")[0]["metadata"]["annotations"].get("eks.amazonaws.com/role-arn").is_none());
    let bad = helm(&["template", "drift", CHART, "--set", "providers.aws.roleArn=role/x"]);
    assert!(!bad.status.success(), "a role ARN that is not one is refused at install time");
}

/// `helm upgrade --reuse-values` from a release before providers.aws keeps
/// that release's values, which have no AWS block: enabling AWS then still
/// renders every flag, from the chart's defaults.
#[test]
fn aws_enabled_on_values_from_before_it_renders_its_defaults() {
    let dir = std::env::temp_dir().join(format!("arcadia-chart-aws-{}", common::unique_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    let (none, on) = (dir.join("before.yaml"), dir.join("on.yaml"));
    std::fs::write(&none, "providers:\n  aws: null\nnetworkPolicy:\n  aws: null\n").unwrap();
    std::fs::write(&on, "providers:\n  aws: {enabled: true}\n").unwrap();
    let rendered = helm_ok(&["template", "drift", CHART, "-f", none.to_str().unwrap(), "-f", on.to_str().unwrap()]);
    std::fs::remove_dir_all(&dir).unwrap();
    let objects = objects(&rendered);
    let args = container_args(&objects).to_string();
    for flag in [
        "--aws-regions=us-east-1",
        "--aws-types=instance,volume,security_group",
        "--aws-inventory-source=aws",
        "--aws-requests-per-hour=36000",
    ] {
        assert!(args.contains(flag), "{flag} in {args}");
    }
    let policy = of_kind(&objects, "NetworkPolicy")[0].to_string();
    assert!(policy.contains("443"), "an egress rule for EC2: {policy}");
}

/// `shards: [eu, us]`: a Deployment per shard besides the first, each with
/// `--shard` and its own selector, budget and Lease; the first takes the
/// rest (`--exclude-shards`) and alone runs the providers and their Secrets.
#[test]
fn shards_render_a_deployment_each_and_only_the_first_runs_the_providers() {
    let objects = render(&["shards={eu,us}", "providers.digitalocean.enabled=true", "revert.enabled=true"]);
    let deployments = of_kind(&objects, "Deployment");
    let names: Vec<&str> = deployments.iter().map(|d| d["metadata"]["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["drift-arcadia-drift", "drift-arcadia-drift-eu", "drift-arcadia-drift-us"]);
    let args = |d: &Value| -> Vec<String> {
        let args = d["spec"]["template"]["spec"]["containers"][0]["args"].as_array().unwrap();
        args.iter().map(|a| a.as_str().unwrap().to_owned()).collect()
    };
    let first = args(deployments[0]);
    assert!(first.contains(&"--exclude-shards=eu,us".to_owned()), "{first:?}");
    assert!(first.iter().any(|a| a.starts_with("--digitalocean-token-file")), "{first:?}");
    for (d, shard) in deployments[1..].iter().zip(["eu", "us"]) {
        let args = args(d);
        assert!(args.contains(&format!("--shard={shard}")), "{args:?}");
        assert!(args.contains(&"--enable-revert".to_owned()), "a shard's controller takes approvals: {args:?}");
        assert!(!args.iter().any(|a| a.starts_with("--digitalocean") || a.starts_with("--inventory")), "{args:?}");
        assert!(d["spec"]["template"]["spec"]["volumes"].is_null(), "no provider Secret mounted in shard {shard}");
        let selector = &d["spec"]["selector"]["matchLabels"];
        assert_eq!(selector["arcadia.cloud/shard"], shard);
        assert_eq!(d["spec"]["template"]["metadata"]["labels"]["arcadia.cloud/shard"], shard);
    }
    // A budget each, none covering another's pods (a pod under two cannot be evicted).
    let budgets = of_kind(&objects, "PodDisruptionBudget");
    assert_eq!(budgets.len(), 3);
    assert_eq!(budgets[0]["spec"]["selector"]["matchExpressions"][0]["operator"], "DoesNotExist");
    // Each shard's leader may hold its own Lease and write its own journal.
    let rendered = serde_json::to_string(&objects).unwrap();
    let leases = ["drift-arcadia-drift-eu", "drift-arcadia-drift-us", "drift-arcadia-drift-providers"];
    for name in leases.into_iter().chain(["arcadia-drift-decisions-eu-15"]) {
        assert!(rendered.contains(&format!("\"{name}\"")), "RBAC lacks {name}");
    }
    // A shard named like a number stays a string label value.
    let numeric = self::objects(&helm_ok(&["template", "drift", CHART, "--set-string", "shards={1}"]));
    assert_eq!(of_kind(&numeric, "Deployment")[1]["spec"]["selector"]["matchLabels"]["arcadia.cloud/shard"], "1");
    // Without shards: one Deployment, no shard flag, the names of before.
    let plain = render(&[]);
    assert_eq!(of_kind(&plain, "Deployment").len(), 1);
    assert!(!serde_json::to_string(&plain).unwrap().contains("shard"), "no shard anywhere without shards");
}

#[test]
fn a_shard_name_that_is_no_label_value_fails_at_install_time() {
    // `providers` names the Lease of the replica running the providers.
    for bad in ["EU", "eu_1", "-eu", "eu.1", "providers"] {
        let out = helm(&["template", "drift", CHART, "--set", &format!("shards={{{bad}}}")]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains("/shards/0"), "{bad}: {err}");
    }
}
