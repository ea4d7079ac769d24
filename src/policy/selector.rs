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
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("selector.labelSelector: operator {operator} on {key:?} needs values")]
    NeedsValues { operator: String, key: String },
    #[error("selector.labelSelector: operator {operator} on {key:?} takes no values")]
    TakesNoValues { operator: String, key: String },
    #[error("selector.labelSelector: unknown operator {operator:?} on {key:?}")]
    UnknownOperator { operator: String, key: String },
    #[error("ignore[{index}] ({field}) has no reason")]
    NoReason { index: usize, field: String },
    #[error("ignore[{index}] ({field}): {problem}")]
    BadRule { index: usize, field: String, problem: crate::detect::rules::RuleError },
}

/// Whether a policy is usable, or what makes it not.
pub fn validate(policy: &DriftPolicy) -> Result<(), PolicyError> {
    if let Some(selector) = &policy.spec.selector.label_selector {
        for e in selector.match_expressions.iter().flatten() {
            let values = e.values.as_deref().unwrap_or_default();
            let (operator, key) = (e.operator.clone(), e.key.clone());
            match e.operator.as_str() {
                "In" | "NotIn" if values.is_empty() => return Err(PolicyError::NeedsValues { operator, key }),
                "Exists" | "DoesNotExist" if !values.is_empty() => {
                    return Err(PolicyError::TakesNoValues { operator, key });
                }
                "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
                _ => return Err(PolicyError::UnknownOperator { operator, key }),
            }
        }
    }
    for (index, rule) in policy.spec.ignore.iter().enumerate() {
        let field = rule.field.clone();
        if rule.reason.trim().is_empty() {
            return Err(PolicyError::NoReason { index, field });
        }
        crate::detect::rules::check_rule(&rule.paths, &rule.values).map_err(|problem| PolicyError::BadRule {
            index,
            field,
            problem,
        })?;
    }
    Ok(())
}
