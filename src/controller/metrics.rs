//! The controller's Prometheus metrics, registered on the process's shared
//! registry. The sweep summary (checked, drifted_fields, new_drift,
//! resolved_stale) lives on as these counters and gauge, plus a periodic log
//! line ([`super::summary`]).

use super::plan::Tally;
use crate::runtime::metrics::{ApiWrites, KindLabel};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RuleLabel {
    pub rule: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StepLabel {
    pub step: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpenLabel {
    pub namespace: String,
    pub field: String,
    pub severity: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SeverityLabel {
    pub severity: String,
}

#[derive(Clone, Debug)]
pub struct ControllerMetrics {
    pub reconciles: Family<ResultLabel, Counter>,
    pub reconcile_errors: Family<StepLabel, Counter>,
    pub reconcile_duration: Histogram,
    pub checked: Counter,
    pub new_drifts: Counter,
    pub changed_drifts: Counter,
    pub resolved_stale: Counter,
    pub accepted: Counter,
    pub accepts_refused: Counter,
    pub open_drifts: Gauge,
    /// Open drifts by namespace, field and severity (the dashboard's breakdown).
    pub open_drifts_by: Family<OpenLabel, Gauge>,
    /// Seconds since the oldest Open drift of each severity was detected.
    pub oldest_open_drift: Family<SeverityLabel, Gauge>,
    /// CloudProvisioneds whose CloudResource is missing (ResourceFound False).
    pub missing_resources: Gauge,
    /// From the inventory's read of a change (the CloudResource's syncedTime)
    /// to the Drift opened or updated for it.
    pub detection_latency: Histogram,
    /// Objects whose last comparison left a difference out, per ignore rule.
    pub ignored_differences: Family<RuleLabel, Gauge>,
    pub watch_errors: Family<KindLabel, Counter>,
    pub writes: ApiWrites,
}

/// The sweep summary's counters at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SweepCounts {
    pub checked: u64,
    pub new_drifts: u64,
    pub resolved_stale: u64,
}

impl SweepCounts {
    /// What was counted between `earlier` and `self`.
    pub fn since(self, earlier: SweepCounts) -> SweepCounts {
        SweepCounts {
            checked: self.checked - earlier.checked,
            new_drifts: self.new_drifts - earlier.new_drifts,
            resolved_stale: self.resolved_stale - earlier.resolved_stale,
        }
    }
}

impl Default for ControllerMetrics {
    fn default() -> Self {
        Self {
            reconciles: Family::default(),
            reconcile_errors: Family::default(),
            reconcile_duration: Histogram::new(exponential_buckets(0.001, 2.0, 14)),
            checked: Counter::default(),
            new_drifts: Counter::default(),
            changed_drifts: Counter::default(),
            resolved_stale: Counter::default(),
            accepted: Counter::default(),
            accepts_refused: Counter::default(),
            open_drifts: Gauge::default(),
            open_drifts_by: Family::default(),
            oldest_open_drift: Family::default(),
            missing_resources: Gauge::default(),
            detection_latency: Histogram::new(exponential_buckets(0.05, 2.0, 14)),
            ignored_differences: Family::default(),
            watch_errors: Family::default(),
            writes: ApiWrites::default(),
        }
    }
}

impl ControllerMetrics {
    /// Registers the controller's metrics; `writes` is the process's shared write counter.
    pub fn register(registry: &mut Registry, writes: ApiWrites) -> Self {
        let m = Self { writes, ..Self::default() };
        // Known label values start at zero, so rates and alerts see the series from the start.
        for step in ["adopt", "write_drift", "clear_accept", "write_status"] {
            let _ = m.reconcile_errors.get_or_create(&StepLabel { step });
        }
        for kind in ["cloudprovisioned", "cloudresource", "drift", "driftpolicy"] {
            let _ = m.watch_errors.get_or_create(&KindLabel { kind });
        }
        for result in ["ok", "error"] {
            let _ = m.reconciles.get_or_create(&ResultLabel { result });
        }
        let r = registry;
        r.register("reconciles", "Reconciles of CloudProvisioned objects, by result", m.reconciles.clone());
        r.register("reconcile_errors", "Failed reconciles, by the write that failed", m.reconcile_errors.clone());
        let duration = m.reconcile_duration.clone();
        r.register("reconcile_duration_seconds", "Time to reconcile one CloudProvisioned", duration);
        r.register("checked", "CloudProvisioned objects compared with live state", m.checked.clone());
        r.register("new_drift", "Drifts opened", m.new_drifts.clone());
        r.register("changed_drift", "Open drifts whose live value moved", m.changed_drifts.clone());
        r.register("resolved_stale", "Drifts closed as Stale (fixed elsewhere)", m.resolved_stale.clone());
        r.register("accepted", "Drifts accepted by annotation", m.accepted.clone());
        r.register("accepts_refused", "Accept annotations refused", m.accepts_refused.clone());
        r.register("open_drifts", "Drifts currently Open (the drifted fields)", m.open_drifts.clone());
        r.register("watch_errors", "Errors of the watches, by watched kind", m.watch_errors.clone());
        let by = m.open_drifts_by.clone();
        r.register("open_drifts_by", "Drifts currently Open, by namespace, field and severity", by);
        let oldest = m.oldest_open_drift.clone();
        r.register("oldest_open_drift_seconds", "Age of the oldest Open drift, by severity", oldest);
        let missing = m.missing_resources.clone();
        r.register("missing_resources", "CloudProvisioneds whose CloudResource is missing", missing);
        let latency = m.detection_latency.clone();
        r.register(
            "detection_latency_seconds",
            "From the inventory's read of a change (CloudResource syncedTime) to its Drift written",
            latency,
        );
        let ignored = m.ignored_differences.clone();
        r.register(
            "ignored_differences",
            "Differences ignore rules leave out now, by rule (spec.ignore[i] or DriftPolicy/<name>/ignore[i])",
            ignored,
        );
        m
    }

    pub fn observe_reconcile(&self, took: Duration, tally: &Tally, failed_step: Option<&'static str>) {
        self.reconcile_duration.observe(took.as_secs_f64());
        match failed_step {
            Some(step) => {
                self.reconciles.get_or_create(&ResultLabel { result: "error" }).inc();
                self.reconcile_errors.get_or_create(&StepLabel { step }).inc();
            }
            None => {
                self.reconciles.get_or_create(&ResultLabel { result: "ok" }).inc();
                self.checked.inc();
                self.new_drifts.inc_by(tally.new_drifts as u64);
                self.changed_drifts.inc_by(tally.changed as u64);
                self.resolved_stale.inc_by(tally.resolved_stale as u64);
                self.accepted.inc_by(tally.accepted as u64);
                self.accepts_refused.inc_by(tally.refused as u64);
            }
        }
    }

    pub fn count_watch_error(&self, kind: &'static str) {
        self.watch_errors.get_or_create(&KindLabel { kind }).inc();
    }

    pub fn sweep_counts(&self) -> SweepCounts {
        SweepCounts {
            checked: self.checked.get(),
            new_drifts: self.new_drifts.get(),
            resolved_stale: self.resolved_stale.get(),
        }
    }
}
