//! The inventory syncer's Prometheus metrics, registered on the process's
//! shared registry.

use crate::runtime::metrics::ApiWrites;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SyncLabel {
    pub kind: &'static str,
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Default)]
pub struct InventoryMetrics {
    pub syncs: Family<SyncLabel, Counter>,
    /// Unix time of the last complete listing of each type.
    pub last_sync: Family<KindLabel, Gauge>,
    /// `--inventory-sync-interval`, so alerts can say "no sync for N intervals".
    pub sync_interval: Gauge,
    /// DigitalOcean's `ratelimit-limit` and `ratelimit-remaining` of the last answer.
    pub ratelimit_limit: Gauge,
    pub ratelimit_remaining: Gauge,
    /// The client's own budget (`--digitalocean-requests-per-hour`).
    pub budget_per_hour: Gauge,
    /// Revert sagas by how they ended (`succeeded`, `failed`).
    pub reverts: Family<ResultLabel, Counter>,
    pub marked_missing: Counter,
    /// Missing, unreferenced CloudResources deleted after `--missing-retention`.
    pub collected: Counter,
    pub digitalocean_requests: Counter,
    pub writes: ApiWrites,
}

impl InventoryMetrics {
    /// Registers the syncer's metrics; `writes` is the process's shared write counter.
    pub fn register(registry: &mut Registry, writes: ApiWrites) -> Self {
        let m = Self { writes, ..Self::default() };
        registry.register(
            "inventory_syncs",
            "Inventory listings by resource type and result (ok, or why it failed)",
            m.syncs.clone(),
        );
        registry.register("inventory_marked_missing", "CloudResources marked missing", m.marked_missing.clone());
        registry.register(
            "cloudresources_collected",
            "Missing CloudResources that no CloudProvisioned names, deleted after --missing-retention",
            m.collected.clone(),
        );
        registry.register(
            "digitalocean_requests",
            "Requests sent to the DigitalOcean API, retries included",
            m.digitalocean_requests.clone(),
        );
        registry.register(
            "inventory_last_sync_timestamp_seconds",
            "Unix time of the last complete listing, by resource type",
            m.last_sync.clone(),
        );
        registry.register("inventory_sync_interval_seconds", "The inventory's sync interval", m.sync_interval.clone());
        registry.register(
            "digitalocean_ratelimit_limit",
            "The account's request limit per hour, as DigitalOcean's last answer said",
            m.ratelimit_limit.clone(),
        );
        registry.register(
            "digitalocean_ratelimit_remaining",
            "Requests left in the account's hour, as DigitalOcean's last answer said",
            m.ratelimit_remaining.clone(),
        );
        registry.register(
            "digitalocean_budget_requests_per_hour",
            "The requests per hour this process allows itself (--digitalocean-requests-per-hour)",
            m.budget_per_hour.clone(),
        );
        for result in ["succeeded", "failed", "compensation_failed"] {
            let _ = m.reverts.get_or_create(&ResultLabel { result });
        }
        registry.register("reverts", "Revert sagas that ended, by result (succeeded, failed, compensation_failed: the resource may be left powered off)", m.reverts.clone());
        m
    }

    pub fn count_sync(&self, kind: &'static str, result: &'static str) {
        self.syncs.get_or_create(&SyncLabel { kind, result }).inc();
    }
}
