//! Drift policy, decided purely: which DriftPolicies select a
//! CloudProvisioned, and the rules it is compared under — its own
//! `spec.ignore` and `spec.match` plus the policies'. Ignore rules add up; for
//! `match` and `severity` the object's own word wins, then the most specific
//! policy (the most selector criteria), then the alphabetically first.

mod index;
mod selector;

pub use index::PolicyIndex;
pub use selector::{PolicyError, selects, validate};

use crate::api::{CloudProvisioned, CloudResource, DriftPolicy, IgnoreRule, MatchMode, Severity};
use crate::detect::{self, Compared, FieldDrift, FieldRules, Fields, LiveView, compare_field};
use kube::ResourceExt;
use std::collections::BTreeMap;

/// The rules one object is compared under.
#[derive(Debug, Default)]
pub struct Effective<'a> {
    /// Each ignore rule with the id that names it in counts and messages.
    ignore: Vec<(String, &'a IgnoreRule)>,
    modes: BTreeMap<&'a str, MatchMode>,
    severity: BTreeMap<&'a str, Severity>,
    /// Names of the policies that apply, alphabetically.
    pub policies: Vec<String>,
}

impl<'a> Effective<'a> {
    /// Whether no rule applies: the object compares exactly as without policy.
    pub fn is_empty(&self) -> bool {
        self.ignore.is_empty() && self.modes.values().all(|m| *m == MatchMode::Exact)
    }

    /// The rules for one field, borrowed for the comparison.
    pub fn field(&self, field: &str) -> FieldRules<'_> {
        FieldRules {
            ignore: self
                .ignore
                .iter()
                .filter(|(_, r)| r.field == field)
                .map(|(id, r)| detect::IgnoreRule { id, field: &r.field, paths: &r.paths, values: &r.values })
                .collect(),
            mode: self.modes.get(field).copied().unwrap_or_default().into(),
        }
    }

    pub fn severity(&self, field: &str) -> Severity {
        self.severity.get(field).copied().unwrap_or_default()
    }

    /// The reason an ignore rule gave, by its id.
    pub fn reason(&self, id: &str) -> Option<&str> {
        self.ignore.iter().find(|(i, _)| i == id).map(|(_, r)| r.reason.as_str())
    }
}

/// The rules for `p` (whose CloudResource is `resource`) from its own spec
/// and the `candidates` (policies that may select it; see [`PolicyIndex`]).
pub fn effective<'a>(
    p: &'a CloudProvisioned,
    resource: Option<&CloudResource>,
    candidates: &'a [std::sync::Arc<DriftPolicy>],
) -> Effective<'a> {
    let mut selecting: Vec<(usize, &'a DriftPolicy)> = candidates
        .iter()
        .filter_map(|policy| selects(policy, p, resource).map(|specificity| (specificity, policy.as_ref())))
        .collect();
    // Most specific first, then by name: the first word on a field wins.
    selecting.sort_by(|(a, x), (b, y)| b.cmp(a).then_with(|| x.name_any().cmp(&y.name_any())));
    let mut rules = Effective::default();
    for (i, rule) in p.spec.ignore.iter().enumerate() {
        rules.ignore.push((format!("spec.ignore[{i}]"), rule));
    }
    for (field, mode) in &p.spec.match_ {
        rules.modes.insert(field, *mode);
    }
    for (_, policy) in &selecting {
        let name = policy.name_any();
        for (i, rule) in policy.spec.ignore.iter().enumerate() {
            rules.ignore.push((format!("DriftPolicy/{name}/ignore[{i}]"), rule));
        }
        for (field, mode) in &policy.spec.match_ {
            rules.modes.entry(field).or_insert(*mode);
        }
        for (field, severity) in &policy.spec.severity {
            rules.severity.entry(field).or_insert(*severity);
        }
        rules.policies.push(name);
    }
    rules.policies.sort();
    rules
}

/// What comparing one object's desired fields with its live state found:
/// the drifted fields, and those in sync only by an ignore rule (with the
/// rules' ids). The one comparison loop, for the controller and `check`.
#[derive(Debug, Default, PartialEq)]
pub struct Differences {
    pub drifted: Vec<FieldDrift>,
    pub ignored: BTreeMap<String, Vec<String>>,
}

/// Compares every field of `desired` under `rules`. An object no rule
/// touches compares exactly as the detection core does.
pub fn differences(desired: &Fields, view: &LiveView<'_>, rules: &Effective<'_>) -> Differences {
    if rules.is_empty() {
        return Differences { drifted: detect::detect(desired, view), ignored: BTreeMap::new() };
    }
    let mut found = Differences::default();
    for (field, expected, attr) in desired.json_entries_with(view.attrs) {
        let field_rules = rules.field(field);
        let observed = view.resolve_with(field, attr);
        if field_rules.is_plain() {
            found.drifted.extend(detect::field_drift(field, expected, observed));
            continue;
        }
        // Rules only decide about values that differ: loosely equal ones are
        // in sync under any of them, and are settled without copying them.
        if detect::json_equal(expected, &observed) {
            continue;
        }
        match compare_field(field, &expected.to_value(), view, &field_rules) {
            Compared::InSync => {}
            Compared::Drifted(fd) => found.drifted.push(fd),
            Compared::Ignored(ids) => {
                found.ignored.insert(field.to_owned(), ids);
            }
        }
    }
    found
}

#[cfg(test)]
mod tests;
