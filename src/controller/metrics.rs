//! Prometheus metrics and the health endpoints, served on one port.
//! The old design's sweep summary (checked, drifted_fields, new_drift,
//! resolved_stale) lives on as counters and a gauge here, plus a periodic log line.

use super::plan::Tally;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StepLabel {
    pub step: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SyncLabel {
    pub kind: &'static str,
    pub result: &'static str,
}

pub struct Metrics {
    registry: Registry,
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
    pub writes: Family<KindLabel, Counter>,
    pub watch_errors: Family<KindLabel, Counter>,
    pub leader: Gauge,
    pub inventory_syncs: Family<SyncLabel, Counter>,
    pub inventory_missing: Counter,
    pub digitalocean_requests: Counter,
    state: AtomicU8,
}

/// What /readyz reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    Starting = 0,
    /// Waiting for the leader lease: healthy, and ready to take over.
    Standby = 1,
    /// Leading, caches synced.
    Running = 2,
    ShuttingDown = 3,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("arcadia_drift");
        let m = Metrics {
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
            writes: Family::default(),
            watch_errors: Family::default(),
            leader: Gauge::default(),
            inventory_syncs: Family::default(),
            inventory_missing: Counter::default(),
            digitalocean_requests: Counter::default(),
            state: AtomicU8::new(Phase::Starting as u8),
            registry: Registry::default(),
        };
        registry.register("reconciles", "Reconciles of CloudProvisioned objects, by result", m.reconciles.clone());
        registry.register(
            "reconcile_errors",
            "Failed reconciles, by the write that failed",
            m.reconcile_errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time to reconcile one CloudProvisioned",
            m.reconcile_duration.clone(),
        );
        registry.register("checked", "CloudProvisioned objects compared with live state", m.checked.clone());
        registry.register("new_drift", "Drifts opened", m.new_drifts.clone());
        registry.register("changed_drift", "Open drifts whose live value moved", m.changed_drifts.clone());
        registry.register("resolved_stale", "Drifts closed as Stale (fixed elsewhere)", m.resolved_stale.clone());
        registry.register("accepted", "Drifts accepted by annotation", m.accepted.clone());
        registry.register("accepts_refused", "Accept annotations refused", m.accepts_refused.clone());
        registry.register("open_drifts", "Drifts currently Open (the drifted fields)", m.open_drifts.clone());
        registry.register("api_writes", "Writes this controller sent to the API server, by kind", m.writes.clone());
        registry.register("watch_errors", "Errors of the watches, by watched kind", m.watch_errors.clone());
        registry.register("leader", "1 while this replica holds the leader lease", m.leader.clone());
        registry.register(
            "inventory_syncs",
            "Inventory listings by resource type and result (ok, or why it failed)",
            m.inventory_syncs.clone(),
        );
        registry.register("inventory_marked_missing", "CloudResources marked missing", m.inventory_missing.clone());
        registry.register(
            "digitalocean_requests",
            "Requests sent to the DigitalOcean API, retries included",
            m.digitalocean_requests.clone(),
        );
        Metrics { registry, ..m }
    }
}

impl Metrics {
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

    pub fn count_sync(&self, kind: &'static str, result: &'static str) {
        self.inventory_syncs.get_or_create(&SyncLabel { kind, result }).inc();
    }

    pub fn count_write(&self, kind: &'static str) {
        self.writes.get_or_create(&KindLabel { kind }).inc();
    }

    pub fn set_phase(&self, phase: Phase) {
        self.state.store(phase as u8, Ordering::Relaxed);
        self.leader.set(i64::from(phase == Phase::Running));
    }

    fn phase(&self) -> u8 {
        self.state.load(Ordering::Relaxed)
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }

    /// The old design's sweep summary, as counter values.
    pub fn sweep_counts(&self) -> [u64; 3] {
        [self.checked.get(), self.new_drifts.get(), self.resolved_stale.get()]
    }
}

pub fn router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/metrics", get(render))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .with_state(metrics)
}

async fn render(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], metrics.render())
}

async fn ready(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    match metrics.phase() {
        p if p == Phase::Running as u8 => (StatusCode::OK, "ok: leading"),
        p if p == Phase::Standby as u8 => (StatusCode::OK, "ok: standby, waiting for the leader lease"),
        p if p == Phase::ShuttingDown as u8 => (StatusCode::SERVICE_UNAVAILABLE, "shutting down"),
        _ => (StatusCode::SERVICE_UNAVAILABLE, "starting: caches not yet synced"),
    }
}
