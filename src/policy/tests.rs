use super::*;
use crate::api::{CloudProvisionedSpec, CloudResourceSpec, DriftPolicySpec, PolicySelector, ResourceRef};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use std::sync::Arc;

fn cprov(ns: &str, labels: &[(&str, &str)]) -> CloudProvisioned {
    let mut p = CloudProvisioned::new(
        "web-1",
        CloudProvisionedSpec { resource_ref: ResourceRef { name: "r".into() }, ..Default::default() },
    );
    p.metadata.namespace = Some(ns.into());
    p.metadata.labels = Some(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
    p
}

fn resource(type_: &str) -> CloudResource {
    CloudResource::new(
        "r",
        CloudResourceSpec { provider: "digitalocean".into(), type_: type_.into(), id: "1".into(), region: None },
    )
}

fn policy(
    name: &str,
    selector: PolicySelector,
    severity: &[(&str, Severity)],
    ignore: &[(&str, &str)],
) -> Arc<DriftPolicy> {
    Arc::new(DriftPolicy::new(
        name,
        DriftPolicySpec {
            selector,
            severity: severity.iter().map(|(f, s)| (f.to_string(), *s)).collect(),
            ignore: ignore
                .iter()
                .map(|(field, reason)| IgnoreRule {
                    field: field.to_string(),
                    reason: reason.to_string(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        },
    ))
}

#[test]
fn selectors_combine_and_count_their_criteria() {
    let p = cprov("team-a", &[("tier", "web")]);
    let doks = resource("kubernetes_cluster");
    let all = policy("all", PolicySelector::default(), &[], &[]);
    assert_eq!(selects(&all, &p, Some(&doks)), Some(0));
    let typed = PolicySelector {
        type_: Some("kubernetes_cluster".into()),
        namespaces: vec!["team-a".into()],
        ..Default::default()
    };
    assert_eq!(selects(&policy("t", typed, &[], &[]), &p, Some(&doks)), Some(2));
    let other_ns = PolicySelector { namespaces: vec!["team-b".into()], ..Default::default() };
    assert_eq!(selects(&policy("o", other_ns, &[], &[]), &p, Some(&doks)), None);
    let labels = PolicySelector {
        label_selector: Some(LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "tier".into(),
                operator: "In".into(),
                values: Some(vec!["web".into(), "api".into()]),
            }]),
            ..Default::default()
        }),
        ..Default::default()
    };
    assert_eq!(selects(&policy("l", labels, &[], &[]), &p, None), Some(1));
}

#[test]
fn ignore_rules_add_up_and_the_most_specific_severity_wins_then_the_first_name() {
    let mut p = cprov("team-a", &[]);
    p.spec.ignore.push(IgnoreRule {
        field: "tags".into(),
        values: vec!["k8s:*".into()],
        reason: "DOKS adds them".into(),
        ..Default::default()
    });
    let doks = resource("kubernetes_cluster");
    let in_ns = PolicySelector { namespaces: vec!["team-a".into()], ..Default::default() };
    let policies = vec![
        policy(
            "b-broad",
            PolicySelector::default(),
            &[("size_slug", Severity::Info)],
            &[("status", "power is managed elsewhere")],
        ),
        policy(
            "a-broad",
            PolicySelector::default(),
            &[("size_slug", Severity::Warning), ("region", Severity::Info)],
            &[],
        ),
        policy("z-narrow", in_ns, &[("size_slug", Severity::Critical)], &[]),
    ];
    let rules = effective(&p, Some(&doks), &policies);
    assert_eq!(rules.policies, ["a-broad", "b-broad", "z-narrow"]);
    assert_eq!(rules.severity("size_slug"), Severity::Critical, "the most specific policy wins");
    assert_eq!(rules.severity("region"), Severity::Info);
    assert_eq!(rules.severity("vcpus"), Severity::Warning, "the default");
    assert_eq!(rules.field("tags").ignore[0].id, "spec.ignore[0]");
    assert_eq!(rules.field("status").ignore[0].id, "DriftPolicy/b-broad/ignore[0]");
    assert_eq!(rules.reason("DriftPolicy/b-broad/ignore[0]"), Some("power is managed elsewhere"));
    assert!(!rules.is_empty());
    assert!(effective(&cprov("team-b", &[]), None, &[]).is_empty());
}

#[test]
fn an_invalid_policy_says_why_and_selects_nothing() {
    let bad = PolicySelector {
        label_selector: Some(LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "tier".into(),
                operator: "In".into(),
                values: None,
            }]),
            ..Default::default()
        }),
        ..Default::default()
    };
    let p = policy("bad", bad, &[], &[]);
    let why = validate(&p).map_err(|e| e.to_string());
    assert_eq!(why, Err("selector.labelSelector: operator In on \"tier\" needs values".into()));
    assert_eq!(selects(&p, &cprov("team-a", &[("tier", "web")]), None), None);
}

#[test]
fn the_index_offers_the_namespace_and_cluster_wide_policies_only() {
    let mut policies = vec![policy("all", PolicySelector::default(), &[], &[])];
    for i in 0..100 {
        let ns = PolicySelector { namespaces: vec![format!("team-{i}")], ..Default::default() };
        policies.push(policy(&format!("p{i}"), ns, &[], &[]));
    }
    let index = PolicyIndex::new(policies);
    let names: Vec<String> = index.candidates("team-7").iter().map(|p| p.name_any()).collect();
    assert_eq!(names, ["all", "p7"]);
    assert_eq!(index.len(), 101);
}

#[test]
fn differences_split_drifted_from_ignored_fields() {
    use serde_json::json;
    let p = cprov("team-a", &[]);
    let quiet = policy("quiet-tags", PolicySelector::default(), &[], &[("tags", "tooling tags its droplets")]);
    let policies = [quiet];
    let rules = effective(&p, Some(&resource("droplet")), &policies);
    let desired = Fields::try_from(json!({"region": "nyc3", "tags": ["web"], "vcpus": 2})).unwrap();
    let tags = vec!["web".to_string(), "k8s".to_string()];
    let live = LiveView { region: Some("ams3"), tags: Some(&tags), ..LiveView::default() };
    let found = differences(&desired, &live, &rules);
    let drifted: Vec<&str> = found.drifted.iter().map(|d| d.field.as_str()).collect();
    assert_eq!(drifted, ["region", "vcpus"], "in key order, the ignored field left out");
    assert_eq!(found.ignored.keys().collect::<Vec<_>>(), ["tags"]);
    let none = differences(&desired, &live, &Effective::default());
    assert_eq!(none.drifted.len(), 3, "no rule: every difference drifts");
    assert!(none.ignored.is_empty());
}

/// The short way for loosely equal values under rules agrees with the rules'
/// own comparison: in sync, and nothing counted as ignored, in either mode.
#[test]
fn equal_values_under_rules_are_in_sync_and_count_no_ignored_difference() {
    use crate::detect::{MatchMode, compare_field};
    use serde_json::json;
    let p = cprov("team-a", &[]);
    let quiet = policy("quiet-tags", PolicySelector::default(), &[], &[("tags", "tooling tags its droplets")]);
    let policies = [quiet];
    let rules = effective(&p, Some(&resource("droplet")), &policies);
    let desired = Fields::try_from(json!({"tags": ["k8s", "web", "web"]})).unwrap();
    let tags = vec!["web".to_string(), "k8s".to_string()];
    let live = LiveView { tags: Some(&tags), ..LiveView::default() };
    let found = differences(&desired, &live, &rules);
    assert!(found.drifted.is_empty() && found.ignored.is_empty(), "{found:?}");
    for mode in [MatchMode::Exact, MatchMode::Contains] {
        let mut field = rules.field("tags");
        field.mode = mode;
        assert_eq!(compare_field("tags", &json!(["k8s", "web", "web"]), &live, &field), Compared::InSync);
    }
}
