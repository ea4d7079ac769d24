//! `arcadia-drift check` and `crds` as a user runs them: the real binary, real
//! files, exit codes and messages.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn arcadia(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_arcadia-drift")).args(args).current_dir(root()).output().unwrap()
}

fn check(provisioned: &str, inventory: &str, extra: &[&str]) -> (i32, String, String) {
    let mut args = vec!["check", "--provisioned", provisioned, "--inventory", inventory];
    args.extend_from_slice(extra);
    let out = arcadia(&args);
    (
        out.status.code().expect("exited by signal"),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn temp_file(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("arcadia-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn examples_show_a_drifted_size_slug_next_to_an_in_sync_region() {
    let (code, out, err) = check("examples/provisioned.yaml", "examples/inventory.yaml", &[]);
    assert_eq!(code, 1, "drift found exits 1; stderr: {err}");
    let rows: Vec<Vec<&str>> = out.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows[0], ["NAMESPACE", "PROVISIONED", "RESOURCE", "FIELD", "EXPECTED", "ACTUAL"]);
    assert_eq!(
        rows[1],
        ["default", "web-1", "digitalocean-droplet-3164444", "size_slug", "s-1vcpu-1gb", "s-2vcpu-4gb"]
    );
    assert_eq!(out.lines().last().unwrap(), "checked 2 provisioned: 1 in sync, 1 drifted field, 0 missing resources");
    assert!(!out.contains("region"), "region is in sync and must not be reported:\n{out}");
}

#[test]
fn json_output_carries_values_as_json() {
    let (code, out, _) = check("examples/provisioned.yaml", "examples/inventory.yaml", &["-o", "json"]);
    assert_eq!(code, 1);
    let report: serde_json::Value = serde_json::from_str(&out).expect("valid JSON");
    assert_eq!(report["checked"], 2);
    assert_eq!(report["inSync"], 1);
    assert_eq!(report["drifts"][0]["field"], "size_slug");
    assert_eq!(report["drifts"][0]["actual"], "s-2vcpu-4gb");
    assert_eq!(report["missingResources"], serde_json::json!([]));
}

#[test]
fn in_sync_exits_zero() {
    let provisioned = temp_file(
        "in-sync.yaml",
        "apiVersion: arcadia.cloud/v1alpha1\nkind: CloudProvisioned\nmetadata: {name: web-2}\nspec:\n  resourceRef: {name: digitalocean-droplet-3164445}\n  desired: {size_slug: s-1vcpu-1gb, tags: [web, prod], vcpus: 1.0, memory: \"1024\"}\n",
    );
    let (code, out, err) = check(provisioned.to_str().unwrap(), "examples/inventory.yaml", &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out.trim(), "checked 1 provisioned: 1 in sync, 0 drifted fields, 0 missing resources");
}

#[test]
fn an_absent_resource_is_reported_as_missing() {
    let provisioned = temp_file(
        "absent.yaml",
        "apiVersion: arcadia.cloud/v1alpha1\nkind: CloudProvisioned\nmetadata: {name: ghost, namespace: ops}\nspec:\n  resourceRef: {name: digitalocean-droplet-1}\n  desired: {size_slug: a, region: b, tags: [c]}\n",
    );
    let (code, out, _) = check(provisioned.to_str().unwrap(), "examples/inventory.yaml", &[]);
    assert_eq!(code, 1);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "one row for the missing resource, not one per field:\n{out}");
    assert!(lines[1].contains("<resource missing>") && lines[1].contains("no CloudResource of that name exists"));
}

#[test]
fn errors_are_one_line_naming_the_file_and_exit_two() {
    let malformed =
        temp_file("malformed.yaml", "apiVersion: arcadia.cloud/v1alpha1\nkind: CloudProvisioned\nspec: [unclosed\n");
    let unknown = temp_file("unknown.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n");
    let bad_spec = temp_file(
        "bad-spec.yaml",
        "apiVersion: arcadia.cloud/v1alpha1\nkind: CloudProvisioned\nmetadata: {name: web}\nspec: {resourceRef: {name: r}, desired: {}}\n",
    );
    let wrong_type = temp_file(
        "wrong-type.yaml",
        "apiVersion: arcadia.cloud/v1alpha1\nkind: CloudProvisioned\nmetadata: {name: web}\nspec: {resourceRef: {name: r}, desired: size_slug}\n",
    );
    let cases = [
        (malformed.clone(), "not valid YAML"),
        (unknown.clone(), "unsupported kind \"ConfigMap\""),
        (bad_spec.clone(), "CloudProvisioned default/web: spec.desired must name at least one field to check"),
        (
            wrong_type.clone(),
            "document 1: CloudProvisioned \"web\": invalid type: string \"size_slug\", expected a map",
        ),
        (root().join("no/such/file.yaml"), "cannot read the file"),
    ];
    for (file, needle) in cases {
        let shown = file.to_str().unwrap();
        let (code, out, err) = check(shown, "examples/inventory.yaml", &[]);
        assert_eq!(code, 2, "{shown}: {err}");
        assert!(out.is_empty(), "nothing on stdout on error: {out}");
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(err.starts_with(&format!("arcadia-drift: error: {shown}: ")), "names the file: {err}");
        assert!(err.contains(needle), "expected {needle:?} in {err}");
    }
}

#[test]
fn swapped_files_are_an_error() {
    let (code, _, err) = check("examples/inventory.yaml", "examples/provisioned.yaml", &[]);
    assert_eq!(code, 2);
    assert!(err.contains("expected only CloudProvisioned objects, found CloudResource"), "{err}");
}

#[test]
fn usage_errors_exit_two() {
    let out = arcadia(&["check", "--provisioned", "examples/provisioned.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    let out = arcadia(&["check", "--provisioned", "a", "--inventory", "b", "-o", "xml"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn crds_prints_one_document_per_kind() {
    let out = arcadia(&["crds"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.matches("kind: CustomResourceDefinition").count(), 4);
    assert_eq!(text, arcadia_drift::api::crds_yaml().unwrap());
}

#[test]
fn a_bad_accept_mode_flag_is_refused_before_anything_starts() {
    let out = arcadia(&["run", "--accept-mode", "overlayy"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("\"overlayy\" is not an accept mode: use one of spec, overlay, auto"), "{err}");
}

#[test]
fn check_says_it_knows_nothing_of_accept_modes() {
    let out = arcadia(&["check", "--help"]);
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(help.contains("accept modes and pending Git changes"), "{help}");
}

const DOKS_INVENTORY: &str = "apiVersion: arcadia.cloud/v1alpha1
kind: CloudResource
metadata: {name: digitalocean-kubernetes-cluster-k1}
spec: {provider: digitalocean, type: kubernetes_cluster, id: k1}
status:
  name: prod
  region: nyc3
  tags: [prod, k8s, \"k8s:0f4c2e9a\", \"k8s:worker\"]
  attrs: {node_pools: [{name: pool-1, size: s-2vcpu-4gb, count: 5, auto_scale: true}]}
  syncedTime: \"2026-11-30T00:00:00Z\"
";

fn doks_provisioned(extra_spec: &str) -> String {
    format!(
        "apiVersion: arcadia.cloud/v1alpha1
kind: CloudProvisioned
metadata: {{name: prod-cluster, namespace: platform}}
spec:
  resourceRef: {{name: digitalocean-kubernetes-cluster-k1}}
  desired:
    tags: [prod]
    node_pools: [{{name: pool-1, size: s-2vcpu-4gb, count: 3, auto_scale: true}}]
{extra_spec}"
    )
}

#[test]
fn check_applies_ignore_rules_and_policies_and_writes_a_baseline() {
    let inventory = temp_file("doks-inventory.yaml", DOKS_INVENTORY);
    let bare = temp_file("doks.yaml", &doks_provisioned(""));
    let (code, out, _) = check(bare.to_str().unwrap(), inventory.to_str().unwrap(), &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("node_pools") && out.contains("tags"), "{out}");

    let baseline = temp_file("baseline.yaml", "");
    let (code, _, err) =
        check(bare.to_str().unwrap(), inventory.to_str().unwrap(), &["--write-ignore", baseline.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    let written = std::fs::read_to_string(&baseline).unwrap();
    assert!(written.contains("name: prod-cluster\n  namespace: platform\nspec:\n  ignore:\n    - field: node_pools\n      reason: baseline\n    - field: tags\n      reason: baseline\n"), "{written}");

    let own_rules = doks_provisioned(
        "  ignore:\n    - {field: node_pools, paths: [\"/*/count\"], reason: autoscaler}\n  match: {tags: contains}\n",
    );
    let ruled = temp_file("doks-ruled.yaml", &own_rules);
    let (code, out, err) = check(ruled.to_str().unwrap(), inventory.to_str().unwrap(), &[]);
    assert_eq!(code, 0, "{out}{err}");

    let policy = temp_file(
        "policy.yaml",
        "apiVersion: arcadia.cloud/v1alpha1
kind: DriftPolicy
metadata: {name: doks}
spec:
  selector: {type: kubernetes_cluster}
  ignore:
    - {field: node_pools, paths: [\"/*/count\"], reason: autoscaler}
    - {field: tags, values: [\"k8s\", \"k8s:*\"], reason: DOKS tags its clusters}
",
    );
    let (code, out, err) = check(
        bare.to_str().unwrap(),
        inventory.to_str().unwrap(),
        &["--policy", policy.to_str().unwrap(), "-o", "json"],
    );
    assert_eq!(code, 0, "{out}{err}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["ignored"][0]["rules"][0], "DriftPolicy/doks/ignore[0]");
}

#[test]
fn a_rule_without_a_reason_is_an_error_naming_object_and_rule() {
    let inventory = temp_file("doks-inventory2.yaml", DOKS_INVENTORY);
    let reasonless = temp_file("reasonless.yaml", &doks_provisioned("  ignore:\n    - {field: tags, reason: \"\"}\n"));
    let (code, _, err) = check(reasonless.to_str().unwrap(), inventory.to_str().unwrap(), &[]);
    assert_eq!(code, 2);
    assert!(err.contains("CloudProvisioned platform/prod-cluster: spec.ignore[0] (tags) has no reason"), "{err}");
    let policy = temp_file(
        "bad-policy.yaml",
        "apiVersion: arcadia.cloud/v1alpha1\nkind: DriftPolicy\nmetadata: {name: p}\nspec:\n  ignore: [{field: tags, paths: [\"no-slash\"], reason: x}]\n",
    );
    let ok = temp_file("doks-ok.yaml", &doks_provisioned(""));
    let (code, _, err) =
        check(ok.to_str().unwrap(), inventory.to_str().unwrap(), &["--policy", policy.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("DriftPolicy p: ignore[0] (tags): path \"no-slash\" is not a JSON pointer"), "{err}");
}

#[test]
fn the_token_comes_from_a_file_and_no_hidden_flag_takes_it() {
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let out = Command::new(env!("CARGO_BIN_EXE_arcadia-drift"))
            .args(["run", "--namespace", "nowhere"])
            .args(args)
            .env_remove("DIGITALOCEAN_TOKEN")
            .env("KUBECONFIG", "/nonexistent")
            .envs(env.iter().copied())
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (code, err) = run(&["--digitalocean-token", "dop_v1_secret"], &[]);
    assert_eq!(code, Some(2));
    assert!(err.contains("unexpected argument '--digitalocean-token'"), "{err}");
    assert!(!err.contains("dop_v1_secret"), "{err}");

    let (code, err) = run(&["--enable-revert"], &[]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("--enable-revert needs a provider to write to: a DigitalOcean token (--digitalocean-token-file or DIGITALOCEAN_TOKEN)"),
        "{err}"
    );

    let (code, err) = run(&["--digitalocean-token-file", "/nonexistent/token"], &[]);
    assert_eq!(code, Some(2));
    assert!(err.contains("--digitalocean-token-file /nonexistent/token: cannot read it"), "{err}");

    let empty = temp_file("empty-token", "\n");
    let (_, err) = run(&["--digitalocean-token-file", empty.to_str().unwrap()], &[]);
    assert!(err.contains("the file is empty"), "{err}");

    let token = temp_file("token", "dop_v1_secret\n");
    let (code, err) =
        run(&["--digitalocean-token-file", token.to_str().unwrap()], &[("DIGITALOCEAN_TOKEN", "dop_v1_other")]);
    assert_eq!(code, Some(2));
    assert!(err.contains("both --digitalocean-token-file and DIGITALOCEAN_TOKEN are set"), "{err}");
    assert!(!err.contains("dop_v1_secret") && !err.contains("dop_v1_other"), "{err}");
}
