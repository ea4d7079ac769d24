//! Whether a DriftPolicy's selector picks an object, and whether a policy is usable.

use crate::api::{CloudProvisioned, CloudResource, DriftPolicy};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::ResourceExt;
use kube::core::{Selector, SelectorExt};
use std::collections::BTreeMap;

/// How specific the policy is (how many criteria it sets) when it selects
/// `p`; `None` when it does not. An invalid policy selects nothing.
pub fn selects(policy: &DriftPolicy, p: &CloudProvisioned, resource: Option<&CloudResource>) -> Option<usize> {
    if validate(policy).is_err() {
        return None;
    }
    let s = &policy.spec.selector;
    let namespace = p.namespace().unwrap_or_default();
    let mut specificity = 0;
    if !s.namespaces.is_empty() {
        s.namespaces.contains(&namespace).then_some(())?;
        specificity += 1;
    }
    if let Some(selector) = &s.label_selector {
        labels_match(selector, p.labels()).then_some(())?;
        specificity += 1;
    }
    for (want, have) in
        [(&s.provider, resource.map(|r| r.spec.provider.as_str())), (&s.type_, resource.map(|r| r.spec.type_.as_str()))]
    {
        if let Some(want) = want {
            (have == Some(want.as_str())).then_some(())?;
            specificity += 1;
        }
    }
    Some(specificity)
}

/// kube's own matcher. [`validate`] refused an unusable selector first, so
/// one kube cannot read selects nothing rather than everything.
fn labels_match(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    Selector::try_from(selector.clone()).is_ok_and(|s| s.matches(labels))
}

/// What makes a policy unusable that the API server's schema could not say.
pub fn validate(policy: &DriftPolicy) -> Result<(), String> {
    if let Some(selector) = &policy.spec.selector.label_selector {
        for e in selector.match_expressions.iter().flatten() {
            let values = e.values.as_deref().unwrap_or_default();
            match e.operator.as_str() {
                "In" | "NotIn" if values.is_empty() => {
                    return Err(format!("selector.labelSelector: operator {} on {:?} needs values", e.operator, e.key));
                }
                "Exists" | "DoesNotExist" if !values.is_empty() => {
                    return Err(format!(
                        "selector.labelSelector: operator {} on {:?} takes no values",
                        e.operator, e.key
                    ));
                }
                "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
                other => return Err(format!("selector.labelSelector: unknown operator {other:?} on {:?}", e.key)),
            }
        }
    }
    for (i, rule) in policy.spec.ignore.iter().enumerate() {
        if rule.reason.trim().is_empty() {
            return Err(format!("ignore[{i}] ({}) has no reason", rule.field));
        }
        crate::detect::rules::check_rule(&rule.paths, &rule.values)
            .map_err(|e| format!("ignore[{i}] ({}): {e}", rule.field))?;
    }
    Ok(())
}
