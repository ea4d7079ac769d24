//! The estate at a glance: the open-drifts gauge, kept current from the Drift
//! cache, and a `sweep summary` log line once per resync interval with what
//! the reconciles counted since the last one.

use super::caches::Caches;
use super::metrics::ControllerMetrics;
use crate::api::DriftPhase;
use std::time::{Duration, Instant};

pub fn spawn(caches: &Caches, metrics: ControllerMetrics, every: Duration) {
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
                    let open = drifts.state().iter().filter(|d| d.status.as_ref().is_some_and(|s| s.phase == DriftPhase::Open)).count();
                    metrics.open_drifts.set(open as i64);
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
