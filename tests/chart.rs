//! The Helm chart: lint, render with default and non-default values, schema
//! rejection of a typo, a server-side dry run of everything it renders, its
//! least-privilege RBAC (the real controller runs as the chart's
//! ServiceAccount) and the admission policy that guards accept.

mod common;

use arcadia_drift::api::{
    ANNOTATION_ACCEPT, CloudProvisioned, CloudProvisionedSpec, CloudResource, CloudResourceSpec, CloudResourceStatus,
    Drift, DriftPhase, Fields, ResourceRef, now,
};
use common::controller::ControllerProcess;
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
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
    assert!(!default.contains("kind: ServiceMonitor") && !default.contains("kind: NetworkPolicy"));
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
        "name: do-token",
        "ops:drift-approvers",
        "namespace: team-a",
        "minAvailable: 2",
        "--enable-revert",
        "--max-concurrent-reverts=4",
        "--revert-claim=any",
        "kind: PrometheusRule",
        "alert: ArcadiaDriftCriticalDriftOpen",
        "severity=\"critical\"}) > 1800",
        "grafana_dashboard: \"1\"",
    ] {
        assert!(custom.contains(needle), "custom render lacks {needle:?}");
    }
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

#[tokio::test]
async fn everything_rendered_passes_a_server_side_dry_run() {
    let client = common::client().await;
    let ns = common::namespace(&client, "chart-dry-run").await;
    let team = common::namespace(&client, "chart-team").await;
    for (label, extra) in
        [("default", vec![]), ("non-default", vec!["-f", "charts/arcadia-drift/ci/all-features-values.yaml"])]
    {
        let watch = format!("watchNamespace={team}");
        let version = server_version();
        let mut args = vec!["template", "dry", CHART, "--namespace", &ns, "--kube-version", &version];
        args.extend(extra.iter().copied());
        if label == "non-default" {
            // The cluster has no Prometheus Operator CRDs; the ServiceMonitor and the
            // PrometheusRule are checked by `template` above (and the rules by promtool).
            args.extend(["--set", "metrics.serviceMonitor.enabled=false", "--set", "prometheusRule.enabled=false"]);
            args.extend(["--set", &watch]);
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

    // The controller, as that ServiceAccount, does its whole job in its namespace.
    let resource = format!("digitalocean-droplet-{}", common::unique_suffix());
    let spec = CloudResourceSpec { provider: "digitalocean".into(), type_: "droplet".into(), id: "1".into() };
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
    let annotate = |user: &str, groups: &[&str], by: Option<&str>| {
        let mut args = vec!["annotate", "drift", name.as_str(), "-n", team.as_str(), "--overwrite", "--as", user];
        for g in groups {
            args.extend(["--as-group", g]);
        }
        let accept = format!("{ANNOTATION_ACCEPT}=true");
        let accepted_by = by.map(|by| format!("arcadia.cloud/accepted-by={by}"));
        args.push(&accept);
        args.extend(accepted_by.as_deref());
        let out = common::kubectl(&args);
        (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (ok, err) = annotate("mallory", &[], Some("mallory"));
    assert!(!ok, "a non-member cannot accept");
    assert!(
        err.contains("only members of the group arcadia:platform-admins may accept a drift; mallory is not one"),
        "{err}"
    );
    let (ok, err) = annotate("mallory", &["arcadia:platform-admins"], Some("alice"));
    assert!(!ok, "accepted-by cannot name someone else");
    assert!(err.contains("arcadia.cloud/accepted-by must be your own user name (mallory), not alice"), "{err}");
    let snooze = common::kubectl(&[
        "annotate",
        "drift",
        name.as_str(),
        "-n",
        team.as_str(),
        "--overwrite",
        "--as",
        "mallory",
        "arcadia.cloud/snooze-until=2030-01-01T00:00:00Z",
    ]);
    let err = String::from_utf8_lossy(&snooze.stderr);
    assert!(!snooze.status.success(), "a non-member cannot snooze");
    assert!(
        err.contains(
            "only members of the group arcadia:platform-admins may snooze or ignore a drift; mallory is not one"
        ),
        "{err}"
    );
    let (ok, err) = annotate("carol", &["arcadia:platform-admins"], Some("carol"));
    assert!(!ok && err.contains("forbidden"), "a viewer cannot patch drifts: {err}");
    revert_is_guarded_as_accept_is(&drifts, &name, &team).await;
    // An admin's accept that does not say who: from 1.36 the mutating policy
    // stamps the real user; before, the validating policy requires the name.
    let (ok, err) = if stamps_accepted_by() {
        annotate("alice", &["arcadia:platform-admins"], None)
    } else {
        let (ok, err) = annotate("alice", &["arcadia:platform-admins"], None);
        assert!(!ok, "without the mutating policy an accept must say who");
        assert!(err.contains("arcadia.cloud/accepted-by is required with arcadia.cloud/accept on this cluster: set it to your user name (alice)"), "{err}");
        annotate("alice", &["arcadia:platform-admins"], Some("alice"))
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

/// `arcadia.cloud/revert` under the same policy as accept; this controller
/// runs without `--enable-revert`, so it refuses the admitted approval and
/// removes it.
async fn revert_is_guarded_as_accept_is(drifts: &Api<Drift>, name: &str, team: &str) {
    let revert = |user: &str, groups: &[&str], by: Option<&str>| {
        let mut args = vec!["annotate", "drift", name, "-n", team, "--overwrite", "-o", "json", "--as", user];
        for g in groups {
            args.extend(["--as-group", g]);
        }
        let reverted_by = by.map(|by| format!("arcadia.cloud/reverted-by={by}"));
        args.push("arcadia.cloud/revert=true");
        args.extend(reverted_by.as_deref());
        let out = common::kubectl(&args);
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        (out.status.success(), text(&out.stderr), text(&out.stdout))
    };
    let admins = ["arcadia:platform-admins"];
    let (ok, err, _) = revert("mallory", &[], Some("mallory"));
    assert!(!ok, "a non-member cannot revert");
    assert!(
        err.contains("only members of the group arcadia:platform-admins may revert a drift; mallory is not one"),
        "{err}"
    );
    let (ok, err, _) = revert("mallory", &admins, Some("alice"));
    assert!(!ok && err.contains("arcadia.cloud/reverted-by must be your own user name (mallory), not alice"), "{err}");
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
        let d = drifts.get(name).await.ok()?;
        let refused = d.status.as_ref()?.message.as_deref()?.contains("--enable-revert");
        (refused && !d.annotations().contains_key("arcadia.cloud/revert")).then_some(())
    })
    .await;
}

/// With Git write-back on, the controller may read the named credentials
/// Secrets and the GitOps tools' objects, and nothing more of them.
#[tokio::test]
async fn git_writeback_reads_only_the_named_secrets() {
    let client = common::client().await;
    let system = common::namespace(&client, "chart-git").await;
    let release = format!("git{}", &common::unique_suffix()[..6]);
    let rendered = render_for_cluster(&release, &system, &["gitWriteback.enabled=true", "acceptPolicy.enabled=false"]);
    assert!(rendered.contains(&format!("--git-credentials-secret={system}/arcadia-drift-git")), "{rendered}");
    assert!(rendered.contains("mountPath: /tmp"), "git needs a writable /tmp under a read-only root");
    let out = kubectl_stdin(&["apply", "--server-side", "-f", "-"], &rendered, None);
    assert_ok(&out, "applying the rendered chart");
    // kubectl auth can-i resolves resource names through discovery: give it the tools' kinds.
    common::install_gitops_crds();
    let sa_user = format!("system:serviceaccount:{system}:{release}-arcadia-drift");
    let can = |verb: &str, resource: &str| {
        let out = common::kubectl(&["auth", "can-i", verb, resource, "-n", "default", "--as", &sa_user]);
        String::from_utf8_lossy(&out.stdout).trim() == "yes"
    };
    assert!(can("get", "secrets/arcadia-drift-git"));
    assert!(!can("get", "secrets/other"));
    assert!(!can("list", "secrets"));
    assert!(can("get", "kustomizations.kustomize.toolkit.fluxcd.io"));
    assert!(can("get", "gitrepositories.source.toolkit.fluxcd.io"));
    assert!(can("get", "applications.argoproj.io"));
    assert!(!can("patch", "applications.argoproj.io"));
}
