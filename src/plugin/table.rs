//! The list and summary renderings: pure functions of the objects, so every
//! column and count is tested without a cluster.

use crate::api::{CloudProvisioned, ConditionStatus, Drift, DriftPhase, LABEL_SEVERITY};
use crate::detect::render_value;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use serde::Serialize;
use std::collections::BTreeMap;

/// `5s`, `3m`, `2h`, `4d`, as kubectl prints ages.
pub fn age(since: Timestamp, now: Timestamp) -> String {
    let s = (now.as_second() - since.as_second()).max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

/// ANSI colours, or none (piped output, NO_COLOR).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Paint(pub bool);

impl Paint {
    fn wrap(self, code: &str, text: &str) -> String {
        if self.0 && !code.is_empty() { format!("\x1b[{code}m{text}\x1b[0m") } else { text.to_owned() }
    }
}

fn phase_colour(phase: &str) -> &'static str {
    match phase {
        "Open" => "31",
        "RevertFailed" => "1;31",
        "Snoozed" => "33",
        "Reverting" => "36",
        "Accepted" | "Reverted" => "32",
        _ => "2",
    }
}

fn severity_colour(severity: &str) -> &'static str {
    match severity {
        "critical" => "1;31",
        "warning" => "33",
        _ => "",
    }
}

/// One row of `kubectl drift list`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Row {
    pub namespace: String,
    pub provisioned: String,
    pub name: String,
    pub field: String,
    pub expected: String,
    pub actual: String,
    pub phase: String,
    pub severity: String,
    pub age: String,
}

pub fn rows(drifts: &[Drift], now: Timestamp) -> Vec<Row> {
    let mut rows: Vec<Row> = drifts
        .iter()
        .map(|d| {
            let status = d.status.clone().unwrap_or_default();
            Row {
                namespace: d.namespace().unwrap_or_default(),
                provisioned: d.spec.provisioned_ref.name.clone(),
                name: d.name_any(),
                field: d.spec.field.clone(),
                expected: render_value(&status.expected),
                actual: render_value(&status.actual),
                phase: if d.status.is_some() { status.phase.to_string() } else { "-".into() },
                severity: d.labels().get(LABEL_SEVERITY).cloned().unwrap_or_else(|| "-".into()),
                age: status.detected_time.map(|t| age(t.0, now)).unwrap_or_else(|| "-".into()),
            }
        })
        .collect();
    rows.sort_by(|a, b| (&a.namespace, &a.provisioned, &a.field).cmp(&(&b.namespace, &b.provisioned, &b.field)));
    rows
}

/// The table, grouped by CloudProvisioned: its name shows on its first row only.
pub fn render_rows(rows: &[Row], paint: Paint) -> String {
    let header = ["NAMESPACE", "PROVISIONED", "FIELD", "EXPECTED", "ACTUAL", "PHASE", "SEVERITY", "AGE", "DRIFT"];
    let mut cells: Vec<[String; 9]> = Vec::new();
    let mut last: Option<(&str, &str)> = None;
    for r in rows {
        let group = (r.namespace.as_str(), r.provisioned.as_str());
        let first = last != Some(group);
        last = Some(group);
        let (ns, p) = if first { (r.namespace.clone(), r.provisioned.clone()) } else { (String::new(), String::new()) };
        cells.push([
            ns,
            p,
            r.field.clone(),
            r.expected.clone(),
            r.actual.clone(),
            r.phase.clone(),
            r.severity.clone(),
            r.age.clone(),
            r.name.clone(),
        ]);
    }
    let mut widths = header.map(str::len);
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let line = |cols: Vec<String>| cols.join("   ").trim_end().to_owned() + "\n";
    out.push_str(&line(header.iter().zip(widths).map(|(h, w)| format!("{h:<w$}")).collect()));
    for row in &cells {
        let cols: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let padded = format!("{c:<w$}", w = widths[i]);
                match i {
                    5 => paint.wrap(phase_colour(c), &padded),
                    6 => paint.wrap(severity_colour(c), &padded),
                    _ => padded,
                }
            })
            .collect();
        out.push_str(&line(cols));
    }
    out
}

/// `kubectl drift summary`: the old sweep summary, for the cluster now.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub provisioned: usize,
    pub in_sync: usize,
    pub drifted: usize,
    pub missing_resources: usize,
    pub drifted_fields: usize,
    pub open_drifts: usize,
    pub open_by_namespace: BTreeMap<String, usize>,
    pub open_by_field: BTreeMap<String, usize>,
}

pub fn summary(provisioned: &[CloudProvisioned], drifts: &[Drift]) -> Summary {
    let mut s = Summary { provisioned: provisioned.len(), ..Default::default() };
    for p in provisioned {
        let status = p.status.clone().unwrap_or_default();
        let condition = |t: &str| status.conditions.iter().find(|c| c.type_ == t).and_then(ConditionStatus::of);
        match (condition("InSync"), condition("ResourceFound")) {
            (_, Some(ConditionStatus::False)) => s.missing_resources += 1,
            (Some(ConditionStatus::True), _) => s.in_sync += 1,
            (Some(ConditionStatus::False), _) => s.drifted += 1,
            _ => {}
        }
        s.drifted_fields += status.drifted_fields.len();
    }
    for d in drifts.iter().filter(|d| d.status.as_ref().is_some_and(|s| s.phase == DriftPhase::Open)) {
        s.open_drifts += 1;
        *s.open_by_namespace.entry(d.namespace().unwrap_or_default()).or_default() += 1;
        *s.open_by_field.entry(d.spec.field.clone()).or_default() += 1;
    }
    s
}

pub fn render_summary(s: &Summary) -> String {
    let mut out = format!(
        "checked {} provisioned: {} in sync, {} drifted, {} missing resources; {} drifted fields, {} open drifts\n",
        s.provisioned, s.in_sync, s.drifted, s.missing_resources, s.drifted_fields, s.open_drifts
    );
    for (title, counts) in [("NAMESPACE", &s.open_by_namespace), ("FIELD", &s.open_by_field)] {
        if counts.is_empty() {
            continue;
        }
        let width = counts.keys().map(String::len).max().unwrap_or(0).max(title.len());
        out.push_str(&format!("\n{title:<width$}   OPEN\n"));
        for (key, n) in counts {
            out.push_str(&format!("{key:<width$}   {n}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{DriftSpec, DriftStatus, ProvisionedRef, ResourceRef};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use serde_json::json;

    fn drift(ns: &str, p: &str, field: &str, phase: DriftPhase) -> Drift {
        let mut d = Drift::new(
            &Drift::name_for(p, field),
            DriftSpec {
                provisioned_ref: ProvisionedRef { name: p.into() },
                resource_ref: ResourceRef { name: "r".into() },
                field: field.into(),
            },
        );
        d.metadata.namespace = Some(ns.into());
        d.labels_mut().insert(LABEL_SEVERITY.into(), "warning".into());
        d.status = Some(DriftStatus {
            phase,
            expected: json!("s-1"),
            actual: json!("s-2"),
            detected_time: Some(Time(Timestamp::from_second(1_800_000_000).unwrap())),
            ..Default::default()
        });
        d
    }

    #[test]
    fn the_list_groups_by_provisioned_and_colours_only_a_terminal() {
        let now = Timestamp::from_second(1_800_000_000 + 300).unwrap();
        let drifts = [
            drift("b", "web-2", "name", DriftPhase::Open),
            drift("a", "web-1", "tags", DriftPhase::Accepted),
            drift("a", "web-1", "name", DriftPhase::Open),
        ];
        let plain = render_rows(&rows(&drifts, now), Paint(false));
        let lines: Vec<&str> = plain.lines().collect();
        assert!(lines[0].starts_with("NAMESPACE   PROVISIONED   FIELD"), "{plain}");
        assert!(lines[1].starts_with("a           web-1         name "), "{plain}");
        assert!(lines[2].starts_with("                          tags "), "the group's name shows once: {plain}");
        assert!(lines[3].starts_with("b           web-2"), "{plain}");
        assert!(lines[1].contains("5m"), "{plain}");
        assert!(!plain.contains('\x1b'));
        let coloured = render_rows(&rows(&drifts, now), Paint(true));
        assert!(coloured.contains("\x1b[31mOpen"), "{coloured}");
    }

    #[test]
    fn ages_read_as_kubectl_prints_them() {
        let t = |s: i64| Timestamp::from_second(1_800_000_000 + s).unwrap();
        assert_eq!(
            [age(t(0), t(59)), age(t(0), t(61)), age(t(0), t(7200)), age(t(0), t(200_000))],
            ["59s", "1m", "2h", "2d"]
        );
    }

    #[test]
    fn the_summary_counts_like_the_old_sweep() {
        let drifts = [
            drift("a", "web-1", "name", DriftPhase::Open),
            drift("b", "web-2", "name", DriftPhase::Open),
            drift("b", "web-2", "tags", DriftPhase::Stale),
        ];
        let s = summary(&[], &drifts);
        assert_eq!(s.open_drifts, 2);
        assert_eq!(s.open_by_field.get("name"), Some(&2));
        assert_eq!(s.open_by_namespace.get("b"), Some(&1));
        let text = render_summary(&s);
        assert!(
            text.starts_with(
                "checked 0 provisioned: 0 in sync, 0 drifted, 0 missing resources; 0 drifted fields, 2 open drifts"
            ),
            "{text}"
        );
        assert!(text.contains("FIELD   OPEN\nname    2"), "{text}");
    }
}
