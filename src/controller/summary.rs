//! The estate at a glance: the open-drifts gauge, kept current from the Drift
//! cache, and a `sweep summary` log line once per resync interval with what
//! the reconciles counted since the last one.

use super::caches::Caches;
use super::metrics::{ControllerMetrics, OpenLabel, SeverityLabel};
use crate::api::{CloudProvisioned, Drift, DriftPhase, LABEL_SEVERITY};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What `open_drifts_by`'s `field` label says for a field not listed in `--metrics-fields`.
pub const OTHER_FIELD: &str = "other";

pub fn spawn(caches: &Caches, metrics: ControllerMetrics, every: Duration, fields: Arc<BTreeSet<String>>) {
    let drifts = caches.drifts.clone();
    let provisioned = caches.provisioned.clone();
    tokio::spawn(async move {
        let mut last = metrics.sweep_counts();
        let mut gauge_tick = tokio::time::interval(Duration::from_secs(5));
        let mut sweep_tick = tokio::time::interval(every);
        sweep_tick.tick().await;
        loop {
            tokio::select! {
                _ = gauge_tick.tick() => {
                    let estate = estate(&drifts.state(), &provisioned.state(), crate::api::now().0, &fields);
                    estate.publish(&metrics);
                    count_ignored(&provisioned, &metrics);
                }
                _ = sweep_tick.tick() => {
                    let now = metrics.sweep_counts();
                    let delta = now.since(last);
                    tracing::info!(
                        checked = delta.checked,
                        drifted_fields = metrics.open_drifts.get(),
                        new_drift = delta.new_drifts,
                        resolved_stale = delta.resolved_stale,
                        "sweep summary"
                    );
                    last = now;
                }
            }
        }
    });
}

/// The open drifts and missing resources at one moment, for the gauges.
#[derive(Debug, Default, PartialEq)]
pub struct Estate {
    pub open: i64,
    /// (namespace, field, severity) => open drifts.
    pub open_by: BTreeMap<(String, String, String), i64>,
    /// severity => seconds since the oldest open drift was detected.
    pub oldest: BTreeMap<String, i64>,
    pub missing: i64,
}

/// `fields` bounds the `field` label: field names are the tenants' to choose,
/// so any other field counts under [`OTHER_FIELD`].
pub fn estate(
    drifts: &[Arc<Drift>],
    provisioned: &[Arc<CloudProvisioned>],
    now: Timestamp,
    fields: &BTreeSet<String>,
) -> Estate {
    let mut e = Estate::default();
    for d in drifts {
        let Some(status) = d.status.as_ref().filter(|s| s.phase == DriftPhase::Open) else { continue };
        let severity = d.labels().get(LABEL_SEVERITY).cloned().unwrap_or_else(|| "warning".into());
        e.open += 1;
        let field = if fields.contains(&d.spec.field) { d.spec.field.clone() } else { OTHER_FIELD.to_owned() };
        *e.open_by.entry((d.namespace().unwrap_or_default(), field, severity.clone())).or_default() += 1;
        if let Some(at) = &status.detected_time {
            let age = (now.as_second() - at.0.as_second()).max(0);
            let oldest = e.oldest.entry(severity).or_default();
            *oldest = (*oldest).max(age);
        }
    }
    let missing = |p: &&Arc<CloudProvisioned>| {
        p.status.iter().flat_map(|s| &s.conditions).any(|c| {
            c.type_ == "ResourceFound" && crate::api::ConditionStatus::of(c) == Some(crate::api::ConditionStatus::False)
        })
    };
    e.missing = provisioned.iter().filter(missing).count() as i64;
    e
}

impl Estate {
    fn publish(self, m: &ControllerMetrics) {
        m.open_drifts.set(self.open);
        m.missing_resources.set(self.missing);
        m.open_drifts_by.clear();
        for ((namespace, field, severity), n) in self.open_by {
            m.open_drifts_by.get_or_create(&OpenLabel { namespace, field, severity }).set(n);
        }
        // Every severity has a series, zero without an open drift.
        for severity in ["critical", "warning", "info"] {
            let age = self.oldest.get(severity).copied().unwrap_or(0);
            m.oldest_open_drift.get_or_create(&SeverityLabel { severity: severity.into() }).set(age);
        }
    }
}

/// Says once how long the initial lists of the inputs took and what they held.
pub fn log_when_synced(caches: &Caches) {
    let started = Instant::now();
    let (mut synced, resources, drifts) = (caches.synced.clone(), caches.resources.clone(), caches.drifts.clone());
    tokio::spawn(async move {
        if synced.wait_for(|s| *s).await.is_ok() {
            tracing::info!(
                elapsed_ms = started.elapsed().as_millis() as u64,
                cloudresources = resources.state().len(),
                drifts = drifts.state().len(),
                "CloudResource and Drift caches synced; reconciling"
            );
        }
    });
}

/// Sets the ignored-differences gauge per rule from the objects' statuses.
fn count_ignored(
    provisioned: &kube::runtime::reflector::Store<crate::api::CloudProvisioned>,
    metrics: &ControllerMetrics,
) {
    let mut counts: std::collections::BTreeMap<String, i64> = Default::default();
    for p in provisioned.state() {
        for d in p.status.iter().flat_map(|s| &s.ignored_differences) {
            *counts.entry(d.rule.clone()).or_default() += 1;
        }
    }
    metrics.ignored_differences.clear();
    for (rule, count) in counts {
        metrics.ignored_differences.get_or_create(&super::metrics::RuleLabel { rule }).set(count);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{DriftSpec, DriftStatus, ProvisionedRef, ResourceRef};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn open(ns: &str, field: &str, severity: &str, detected: i64) -> Arc<Drift> {
        let spec = DriftSpec {
            provisioned_ref: ProvisionedRef { name: "p".into() },
            resource_ref: ResourceRef { name: "r".into() },
            field: field.into(),
        };
        let mut d = Drift::new(&format!("{ns}-{field}-{detected}"), spec);
        d.metadata.namespace = Some(ns.into());
        d.labels_mut().insert(LABEL_SEVERITY.into(), severity.into());
        let detected_time = Some(Time(Timestamp::from_second(detected).unwrap()));
        d.status = Some(DriftStatus { phase: DriftPhase::Open, detected_time, ..Default::default() });
        Arc::new(d)
    }

    #[test]
    fn the_estate_counts_open_drifts_by_namespace_field_severity_and_their_oldest_age() {
        let drifts = [
            open("a", "tags", "warning", 1_000),
            open("a", "tags", "warning", 1_500),
            open("b", "size", "critical", 1_900),
        ];
        let fields: BTreeSet<String> = ["tags".to_string()].into();
        let e = estate(&drifts, &[], Timestamp::from_second(2_000).unwrap(), &fields);
        assert_eq!(e.open, 3);
        assert_eq!(e.open_by[&("a".to_string(), "tags".to_string(), "warning".to_string())], 2);
        // A field not listed is counted, without its name as a label value.
        assert_eq!(e.open_by[&("b".to_string(), OTHER_FIELD.to_string(), "critical".to_string())], 1);
        assert_eq!((e.oldest["warning"], e.oldest["critical"]), (1_000, 100));
    }
}
