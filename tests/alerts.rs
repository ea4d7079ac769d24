//! The chart's alerts and dashboard: the PrometheusRule passes the real
//! `promtool check rules` and the unit tests in `tests/alerts/` (every alert
//! fires when it should and stays silent when it should), and every metric
//! the alerts and the dashboard query is one the controller really exports.

mod common;

use common::controller::ControllerProcess;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

fn helm_template(sets: &[&str], show: &str) -> String {
    let mut args = vec!["template", "t", "charts/arcadia-drift", "--show-only", show];
    for s in sets {
        args.extend(["--set", s]);
    }
    let out = Command::new(common::repo_root().join("scripts/helm"))
        .args(&args)
        .current_dir(common::repo_root())
        .output()
        .expect("cannot run scripts/helm");
    assert!(out.status.success(), "helm {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// The rendered PrometheusRule's `spec`, as JSON.
fn rule_spec() -> Value {
    rule_spec_with(&[])
}

fn rule_spec_with(sets: &[&str]) -> Value {
    let sets: Vec<&str> = ["prometheusRule.enabled=true"].iter().chain(sets).copied().collect();
    let yaml = helm_template(&sets, "templates/prometheusrule.yaml");
    let rule: Value = serde_saphyr::from_str(&yaml).expect("the PrometheusRule is YAML");
    assert_eq!(rule["kind"], "PrometheusRule");
    rule["spec"].clone()
}

fn promtool(args: &[&str], dir: &Path) -> String {
    let out = Command::new(common::repo_root().join("scripts/promtool"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("cannot run scripts/promtool (it builds promtool on first use)");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

fn alert_names(spec: &Value) -> BTreeSet<String> {
    let rules = spec["groups"].as_array().unwrap().iter().flat_map(|g| g["rules"].as_array().unwrap().iter());
    rules.filter_map(|r| r["alert"].as_str().map(str::to_owned)).collect()
}

/// Runs `promtool check rules` on `spec`'s groups, then the unit tests of
/// `tests/alerts/<file>` against them.
fn promtool_tests(spec: &Value, file: &str) {
    let dir = std::env::temp_dir().join(format!("arcadia-alerts-{}", common::unique_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    // JSON is YAML: promtool reads the groups as rendered.
    std::fs::write(
        dir.join("rules.yaml"),
        serde_json::to_string_pretty(&serde_json::json!({"groups": spec["groups"]})).unwrap(),
    )
    .unwrap();
    std::fs::copy(common::repo_root().join("tests/alerts").join(file), dir.join(file)).unwrap();
    let checked = promtool(&["check", "rules", "rules.yaml"], &dir);
    assert!(checked.contains("SUCCESS"), "{checked}");
    promtool(&["test", "rules", file], &dir);
}

#[test]
fn the_alert_rules_pass_promtool_check_and_their_unit_tests() {
    let spec = rule_spec();
    promtool_tests(&spec, "arcadia-drift.test.yaml");
    let tests = common::repo_root().join("tests/alerts/arcadia-drift.test.yaml");

    // Every alert is tested both ways.
    let cases: Value = serde_saphyr::from_str(&std::fs::read_to_string(&tests).unwrap()).unwrap();
    let (mut fires, mut silent) = (BTreeSet::new(), BTreeSet::new());
    for case in cases["tests"].as_array().unwrap().iter().flat_map(|t| t["alert_rule_test"].as_array().unwrap()) {
        let name = case["alertname"].as_str().unwrap().to_owned();
        if case["exp_alerts"].as_array().is_some_and(|a| !a.is_empty()) {
            fires.insert(name)
        } else {
            silent.insert(name)
        };
    }
    for alert in alert_names(&spec) {
        assert!(fires.contains(&alert), "no test sees {alert} fire");
        assert!(silent.contains(&alert), "no test sees {alert} stay silent");
    }
    // Each alert has a summary, a description and a runbook section.
    let runbook = std::fs::read_to_string(common::repo_root().join("docs/runbook.md")).unwrap();
    for rule in spec["groups"][0]["rules"].as_array().unwrap() {
        let alert = rule["alert"].as_str().unwrap();
        for key in ["summary", "description", "runbook_url"] {
            assert!(rule["annotations"][key].is_string(), "{alert} has no {key}");
        }
        assert!(runbook.contains(&format!("## {alert}\n")), "docs/runbook.md has no section for {alert}");
        assert!(rule["annotations"]["runbook_url"].as_str().unwrap().ends_with(&format!("#{}", alert.to_lowercase())));
    }
}

/// With `shards: [eu]`, a shard without a leader (or without replicas) is
/// alerted on by name while the rest leads, and the other way round.
#[test]
fn with_shards_no_leader_is_alerted_per_shard() {
    promtool_tests(&rule_spec_with(&["shards={eu}"]), "shards.test.yaml");
}

/// The metric names in PromQL expressions (`arcadia_drift_...`).
fn metrics_in(expr: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("arcadia_drift_") {
        let name: String = rest[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        rest = &rest[at + name.len()..];
        found.push(name);
    }
    found
}

/// What a running controller exports: every sample name its `# TYPE` lines promise.
fn exported(metrics: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in metrics.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        let mut parts = line.split_whitespace();
        let (Some(name), Some(kind)) = (parts.next(), parts.next()) else { continue };
        let suffixes: &[&str] = match kind {
            "counter" => &["_total"],
            "histogram" => &["_bucket", "_sum", "_count"],
            _ => &[""],
        };
        names.extend(suffixes.iter().map(|s| format!("{}{s}", name.trim_end_matches("_total"))));
    }
    names
}

#[tokio::test]
async fn the_alerts_and_the_dashboard_query_only_metrics_the_controller_exports() {
    let client = common::client().await;
    let ns = common::namespace(&client, "alerts").await;
    let fake = common::fake_do::FakeDo::start().await;
    // One droplet resized by hand, so an Open drift puts samples in every family.
    let id = 4_000_000_000 + std::process::id() as u64;
    fake.add("/v2/droplets", common::fake_do::droplet(id, "web-1", "s-2vcpu-4gb", "nyc3", &[]));
    let body = serde_json::json!({
        "apiVersion": "arcadia.cloud/v1alpha1", "kind": "CloudProvisioned", "metadata": {"name": "web-1"},
        "spec": {"resourceRef": {"name": format!("digitalocean-droplet-{id}")}, "desired": {"size_slug": "s-1vcpu-1gb"}},
    });
    let api: kube::Api<arcadia_drift::api::CloudProvisioned> = kube::Api::namespaced(client.clone(), &ns);
    api.patch("web-1", &kube::api::PatchParams::apply("test"), &kube::api::Patch::Apply(body)).await.unwrap();
    let source = format!("alerts-{}", common::unique_suffix());
    let args = ["--digitalocean-api-url", &fake.url, "--inventory-source", &source, "--enable-revert"];
    let controller = ControllerProcess::start_with_env(&ns, &args, &[("DIGITALOCEAN_TOKEN", common::fake_do::TOKEN)]);

    let mut queried = Vec::new();
    let spec = rule_spec();
    for rule in spec["groups"][0]["rules"].as_array().unwrap() {
        queried.extend(
            metrics_in(rule["expr"].as_str().unwrap())
                .into_iter()
                .map(|m| (rule["alert"].as_str().unwrap().to_owned(), m)),
        );
    }
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(common::repo_root().join("charts/arcadia-drift/files/dashboard.json")).unwrap(),
    )
    .expect("the dashboard is JSON");
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let title = panel["title"].as_str().unwrap().to_owned();
            queried.extend(metrics_in(target["expr"].as_str().unwrap()).into_iter().map(|m| (title.clone(), m)));
        }
    }
    queried.extend(
        metrics_in(dashboard["templating"]["list"][1]["query"].as_str().unwrap())
            .into_iter()
            .map(|m| ("variables".into(), m)),
    );
    assert!(queried.len() > 25, "{queried:?}");
    // The gauges are refreshed every 5 s; the inventory's after its first sync;
    // the drift's after the first reconcile that sees the synced droplet.
    let missing = |text: &str| {
        let exported = exported(text);
        queried.iter().filter(|(_, m)| !exported.contains(m)).cloned().collect::<Vec<_>>()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let text = controller.get("/metrics").unwrap_or_default();
        let missing = missing(&text);
        if missing.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "after 60 s these are queried but not exported (used by, metric): {missing:?}\n/metrics:\n{text}\nDigitalOcean was asked: {:?}\nlog:\n{}",
            fake.requests(),
            controller.log_text()
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }

    // The dashboard's ConfigMap carries the sidecar's label and the JSON as is.
    let cm = helm_template(&["grafanaDashboard.enabled=true"], "templates/grafana-dashboard.yaml");
    let cm: Value = serde_saphyr::from_str(&cm).unwrap();
    assert_eq!(cm["metadata"]["labels"]["grafana_dashboard"], "1");
    let embedded: Value = serde_json::from_str(cm["data"]["arcadia-drift.json"].as_str().unwrap()).unwrap();
    assert_eq!(embedded, dashboard);
}
