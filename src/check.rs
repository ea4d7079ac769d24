//! `arcadia-drift check`: offline one-shot detection over manifests. Reads
//! files, runs the pure detection core under the objects' `spec.ignore` and
//! `spec.match` and the DriftPolicies given, renders a report; the binary maps
//! the report to an exit code (0 in sync, 1 drift or a missing resource, 2 error).

use crate::api::{Absence, CloudProvisioned, CloudResource, DriftPolicy, SpecProblem};
use crate::detect::{FieldDrift, render_value};
use crate::manifests::{self, Manifest, ManifestError};
use kube::ResourceExt;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("{path}: expected only {expected} objects, found {kind} {name:?}")]
    WrongFile { path: String, expected: &'static str, kind: &'static str, name: String },
    #[error("{path}: {kind} {name:?} is defined twice")]
    Duplicate { path: String, kind: &'static str, name: String },
    #[error("{path}: CloudProvisioned {namespace}/{name}: {problem}")]
    InvalidSpec { path: String, namespace: String, name: String, problem: Box<SpecProblem> },
    #[error("{path}: DriftPolicy {name}: {problem}")]
    InvalidPolicy { path: String, name: String, problem: crate::policy::PolicyError },
    #[error("cannot write {path}: {source}")]
    Write { path: String, source: std::io::Error },
}

/// Everything one check found.
#[derive(Debug, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub checked: usize,
    pub in_sync: usize,
    pub drifts: Vec<DriftFinding>,
    pub missing_resources: Vec<MissingResource>,
    /// Differences ignore rules left out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignored: Vec<IgnoredFinding>,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct IgnoredFinding {
    pub namespace: String,
    pub provisioned: String,
    pub field: String,
    pub rules: Vec<String>,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct DriftFinding {
    pub namespace: String,
    pub provisioned: String,
    pub resource: String,
    pub field: String,
    pub expected: Value,
    pub actual: Value,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct MissingResource {
    pub namespace: String,
    pub provisioned: String,
    pub resource: String,
    pub reason: &'static str,
}

impl Report {
    pub fn is_in_sync(&self) -> bool {
        self.drifts.is_empty() && self.missing_resources.is_empty()
    }
}

/// Reads the files and checks every CloudProvisioned against the inventory,
/// under the DriftPolicies of `policy_files`.
pub fn check_files(
    provisioned: &Path,
    inventory: &Path,
    policy_files: &[std::path::PathBuf],
) -> Result<Report, CheckError> {
    let desired = only_provisioned(provisioned)?;
    let live = only_resources(inventory)?;
    let mut policies = Vec::new();
    for path in policy_files {
        policies.extend(only_policies(path)?);
    }
    Ok(check(&desired, &live, &policies))
}

/// Pure: compares each CloudProvisioned with the CloudResource it names.
pub fn check(
    provisioned: &[CloudProvisioned],
    inventory: &BTreeMap<String, CloudResource>,
    policies: &[std::sync::Arc<DriftPolicy>],
) -> Report {
    let mut report = Report { checked: provisioned.len(), ..Report::default() };
    let index = crate::policy::PolicyIndex::new(policies.iter().cloned());
    for p in provisioned {
        let namespace = p.namespace().unwrap_or_else(|| "default".into());
        let resource_name = &p.spec.resource_ref.name;
        let resource = inventory.get(resource_name);
        let view = match resource.ok_or(Absence::NotFound).and_then(|r| r.live()) {
            Ok(view) => view,
            Err(absence) => {
                report.missing_resources.push(MissingResource {
                    namespace,
                    provisioned: p.name_any(),
                    resource: resource_name.clone(),
                    reason: absence.describe(),
                });
                continue;
            }
        };
        let candidates = index.candidates(&namespace);
        let rules = crate::policy::effective(p, resource, &candidates);
        let before = report.drifts.len();
        let found = crate::policy::differences(&p.spec.desired, &view, &rules);
        for FieldDrift { field, expected, actual } in found.drifted {
            let (provisioned, resource) = (p.name_any(), resource_name.clone());
            report.drifts.push(DriftFinding {
                namespace: namespace.clone(),
                provisioned,
                resource,
                field,
                expected,
                actual,
            });
        }
        for (field, rules) in found.ignored {
            report.ignored.push(IgnoredFinding {
                namespace: namespace.clone(),
                provisioned: p.name_any(),
                field,
                rules,
            });
        }
        if report.drifts.len() == before {
            report.in_sync += 1;
        }
    }
    report
}

/// The ignore rules that would silence every difference the report found,
/// each with `reason: baseline`: one partial CloudProvisioned per drifted
/// object, to merge into its manifest (or server-side apply under a field
/// manager of its own).
pub fn ignore_baseline(report: &Report) -> String {
    let mut by_object: BTreeMap<(&str, &str), Vec<&str>> = BTreeMap::new();
    for d in &report.drifts {
        by_object.entry((&d.namespace, &d.provisioned)).or_default().push(&d.field);
    }
    let mut out = String::new();
    for ((namespace, name), fields) in by_object {
        out.push_str(&format!(
            "---\napiVersion: arcadia.cloud/v1alpha1\nkind: CloudProvisioned\nmetadata:\n  name: {name}\n  namespace: {namespace}\nspec:\n  ignore:\n"
        ));
        for field in fields {
            out.push_str(&format!(
                "    - field: {}\n      reason: baseline\n",
                crate::detect::yaml_scalar(&Value::from(field))
            ));
        }
    }
    out
}

/// Writes [`ignore_baseline`] to `path`.
pub fn write_ignore(path: &Path, report: &Report) -> Result<(), CheckError> {
    std::fs::write(path, ignore_baseline(report))
        .map_err(|source| CheckError::Write { path: path.display().to_string(), source })
}

fn only_policies(path: &Path) -> Result<Vec<std::sync::Arc<DriftPolicy>>, CheckError> {
    let shown = path.display().to_string();
    let mut out = Vec::new();
    for m in manifests::read_file(path)? {
        let Manifest::Policy(policy) = m else {
            let (kind, name) = describe(&m);
            return Err(CheckError::WrongFile { path: shown, expected: "DriftPolicy", kind, name });
        };
        if let Err(problem) = crate::policy::validate(&policy) {
            return Err(CheckError::InvalidPolicy { path: shown, name: policy.name_any(), problem });
        }
        out.push(std::sync::Arc::new(policy));
    }
    Ok(out)
}

fn describe(m: &Manifest) -> (&'static str, String) {
    match m {
        Manifest::Provisioned(p) => ("CloudProvisioned", p.name_any()),
        Manifest::Resource(r) => ("CloudResource", r.name_any()),
        Manifest::Policy(p) => ("DriftPolicy", p.name_any()),
    }
}

fn only_provisioned(path: &Path) -> Result<Vec<CloudProvisioned>, CheckError> {
    let shown = path.display().to_string();
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for m in manifests::read_file(path)? {
        let p = match m {
            Manifest::Provisioned(p) => p,
            other => {
                let (kind, name) = describe(&other);
                return Err(CheckError::WrongFile { path: shown, expected: "CloudProvisioned", kind, name });
            }
        };
        let namespace = p.namespace().unwrap_or_else(|| "default".into());
        if let Err(problem) = p.spec.validate() {
            return Err(CheckError::InvalidSpec {
                path: shown,
                namespace,
                name: p.name_any(),
                problem: Box::new(problem),
            });
        }
        if !seen.insert((namespace.clone(), p.name_any())) {
            return Err(CheckError::Duplicate {
                path: shown,
                kind: "CloudProvisioned",
                name: format!("{namespace}/{}", p.name_any()),
            });
        }
        out.push(p);
    }
    Ok(out)
}

fn only_resources(path: &Path) -> Result<BTreeMap<String, CloudResource>, CheckError> {
    let shown = path.display().to_string();
    let mut out = BTreeMap::new();
    for m in manifests::read_file(path)? {
        let r = match m {
            Manifest::Resource(r) => r,
            other => {
                let (kind, name) = describe(&other);
                return Err(CheckError::WrongFile { path: shown, expected: "CloudResource", kind, name });
            }
        };
        let name = r.name_any();
        if out.insert(name.clone(), r).is_some() {
            return Err(CheckError::Duplicate { path: shown, kind: "CloudResource", name });
        }
    }
    Ok(out)
}

/// The report as an aligned table plus a summary line, like `kubectl get`.
pub fn render_table(report: &Report) -> String {
    let mut rows =
        vec![["NAMESPACE", "PROVISIONED", "RESOURCE", "FIELD", "EXPECTED", "ACTUAL"].map(String::from).to_vec()];
    for d in &report.drifts {
        rows.push(vec![
            d.namespace.clone(),
            d.provisioned.clone(),
            d.resource.clone(),
            d.field.clone(),
            render_value(&d.expected),
            render_value(&d.actual),
        ]);
    }
    for m in &report.missing_resources {
        rows.push(vec![
            m.namespace.clone(),
            m.provisioned.clone(),
            m.resource.clone(),
            "<resource missing>".into(),
            "-".into(),
            m.reason.into(),
        ]);
    }
    let mut out = String::new();
    if rows.len() > 1 {
        let widths: Vec<usize> =
            (0..rows[0].len()).map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
        for row in &rows {
            let line: Vec<String> = row.iter().zip(&widths).map(|(v, w)| format!("{v:<w$}")).collect();
            out.push_str(line.join("   ").trim_end());
            out.push('\n');
        }
    }
    out.push_str(&format!(
        "checked {} provisioned: {} in sync, {} drifted field{}, {} missing resource{}\n",
        report.checked,
        report.in_sync,
        report.drifts.len(),
        if report.drifts.len() == 1 { "" } else { "s" },
        report.missing_resources.len(),
        if report.missing_resources.len() == 1 { "" } else { "s" },
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifests::parse;

    fn split(text: &str) -> (Vec<CloudProvisioned>, BTreeMap<String, CloudResource>) {
        let mut p = Vec::new();
        let mut r = BTreeMap::new();
        for m in parse(text, "t.yaml").unwrap() {
            match m {
                Manifest::Provisioned(x) => p.push(x),
                Manifest::Resource(x) => {
                    r.insert(x.name_any(), x);
                }
                Manifest::Policy(_) => {}
            }
        }
        (p, r)
    }

    const FIXTURE: &str = r#"
apiVersion: arcadia.cloud/v1alpha1
kind: CloudResource
metadata: {name: do-1}
spec: {provider: digitalocean, type: droplet, id: "1"}
status: {region: nyc3, sizeSlug: s-2vcpu-4gb}
---
apiVersion: arcadia.cloud/v1alpha1
kind: CloudResource
metadata: {name: do-gone}
spec: {provider: digitalocean, type: droplet, id: "2"}
status: {missing: true, sizeSlug: s-1}
---
apiVersion: arcadia.cloud/v1alpha1
kind: CloudProvisioned
metadata: {name: web-1}
spec: {resourceRef: {name: do-1}, desired: {size_slug: s-1vcpu-1gb, region: nyc3}}
---
apiVersion: arcadia.cloud/v1alpha1
kind: CloudProvisioned
metadata: {name: web-2, namespace: ops}
spec: {resourceRef: {name: do-1}, desired: {region: nyc3}}
---
apiVersion: arcadia.cloud/v1alpha1
kind: CloudProvisioned
metadata: {name: web-3}
spec: {resourceRef: {name: do-gone}, desired: {size_slug: s-2, region: x}}
---
apiVersion: arcadia.cloud/v1alpha1
kind: CloudProvisioned
metadata: {name: web-4}
spec: {resourceRef: {name: nowhere}, desired: {region: x}}
"#;

    #[test]
    fn reports_drift_missing_and_in_sync() {
        let (p, r) = split(FIXTURE);
        let report = check(&p, &r, &[]);
        assert_eq!(report.checked, 4);
        assert_eq!(report.in_sync, 1);
        assert_eq!(report.drifts.len(), 1);
        assert_eq!(report.drifts[0].field, "size_slug");
        assert_eq!(report.drifts[0].namespace, "default");
        let reasons: Vec<_> = report.missing_resources.iter().map(|m| (m.provisioned.as_str(), m.reason)).collect();
        assert_eq!(reasons, [("web-3", Absence::GoneFromProvider.describe()), ("web-4", Absence::NotFound.describe())]);
        assert!(!report.is_in_sync());
    }

    #[test]
    fn table_lists_each_finding_and_a_summary() {
        let (p, r) = split(FIXTURE);
        let table = render_table(&check(&p, &r, &[]));
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("NAMESPACE"));
        assert!(lines[1].contains("size_slug") && lines[1].contains("s-1vcpu-1gb") && lines[1].contains("s-2vcpu-4gb"));
        assert!(lines[2].contains("web-3") && lines[2].contains("<resource missing>"));
        assert_eq!(lines[4], "checked 4 provisioned: 1 in sync, 1 drifted field, 2 missing resources");
    }
}
