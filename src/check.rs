//! `arcadia-drift check`: offline one-shot detection over manifests. Reads
//! files, runs the pure detection core, renders a report; the binary maps the
//! report to an exit code (0 in sync, 1 drift or a missing resource, 2 error).

use crate::api::{Absence, CloudProvisioned, CloudResource, SpecProblem};
use crate::detect::{self, FieldDrift, Verdict, render_value};
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
    InvalidSpec { path: String, namespace: String, name: String, problem: SpecProblem },
}

/// Everything one check found.
#[derive(Debug, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub checked: usize,
    pub in_sync: usize,
    pub drifts: Vec<DriftFinding>,
    pub missing_resources: Vec<MissingResource>,
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

/// Reads both files and checks every CloudProvisioned against the inventory.
pub fn check_files(provisioned: &Path, inventory: &Path) -> Result<Report, CheckError> {
    let desired = only_provisioned(provisioned)?;
    let live = only_resources(inventory)?;
    Ok(check(&desired, &live))
}

/// Pure: compares each CloudProvisioned with the CloudResource it names.
pub fn check(provisioned: &[CloudProvisioned], inventory: &BTreeMap<String, CloudResource>) -> Report {
    let mut report = Report { checked: provisioned.len(), ..Report::default() };
    for p in provisioned {
        let namespace = p.namespace().unwrap_or_else(|| "default".into());
        let resource_name = &p.spec.resource_ref.name;
        let live = inventory.get(resource_name).ok_or(Absence::NotFound).and_then(|r| r.live());
        let verdict = match &live {
            Ok(view) => detect::evaluate(&p.spec.desired, Some(view)),
            Err(_) => Verdict::ResourceMissing,
        };
        match verdict {
            Verdict::InSync => report.in_sync += 1,
            Verdict::Drifted(drifts) => {
                report.drifts.extend(drifts.into_iter().map(|FieldDrift { field, expected, actual }| DriftFinding {
                    namespace: namespace.clone(),
                    provisioned: p.name_any(),
                    resource: resource_name.clone(),
                    field,
                    expected,
                    actual,
                }))
            }
            Verdict::ResourceMissing => report.missing_resources.push(MissingResource {
                namespace: namespace.clone(),
                provisioned: p.name_any(),
                resource: resource_name.clone(),
                reason: live.err().unwrap_or(Absence::NotFound).describe(),
            }),
        }
    }
    report
}

fn only_provisioned(path: &Path) -> Result<Vec<CloudProvisioned>, CheckError> {
    let shown = path.display().to_string();
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for m in manifests::read_file(path)? {
        let p = match m {
            Manifest::Provisioned(p) => p,
            Manifest::Resource(r) => {
                return Err(CheckError::WrongFile {
                    path: shown,
                    expected: "CloudProvisioned",
                    kind: "CloudResource",
                    name: r.name_any(),
                });
            }
        };
        let namespace = p.namespace().unwrap_or_else(|| "default".into());
        if let Err(problem) = p.spec.validate() {
            return Err(CheckError::InvalidSpec { path: shown, namespace, name: p.name_any(), problem });
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
            Manifest::Provisioned(p) => {
                return Err(CheckError::WrongFile {
                    path: shown,
                    expected: "CloudResource",
                    kind: "CloudProvisioned",
                    name: p.name_any(),
                });
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
        let report = check(&p, &r);
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
        let table = render_table(&check(&p, &r));
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("NAMESPACE"));
        assert!(lines[1].contains("size_slug") && lines[1].contains("s-1vcpu-1gb") && lines[1].contains("s-2vcpu-4gb"));
        assert!(lines[2].contains("web-3") && lines[2].contains("<resource missing>"));
        assert_eq!(lines[4], "checked 4 provisioned: 1 in sync, 1 drifted field, 2 missing resources");
    }
}
