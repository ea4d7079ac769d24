//! The inventory syncer's Prometheus metrics, registered on the process's
//! shared registry.

use crate::providers::contract::{Budget, Inventory};
use crate::runtime::metrics::ApiWrites;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SyncLabel {
    pub provider: &'static str,
    pub kind: &'static str,
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderLabel {
    pub provider: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub provider: &'static str,
    pub kind: &'static str,
}

/// A provider's request metrics under their names before `provider_*`,
/// kept for one release so dashboards and alerts can move.
#[derive(Clone, Debug, Default)]
pub struct LegacyProviderMetrics {
    pub requests: Counter,
    pub ratelimit_limit: Gauge,
    pub ratelimit_remaining: Gauge,
    pub budget_per_hour: Gauge,
}

#[derive(Clone, Debug, Default)]
pub struct InventoryMetrics {
    pub syncs: Family<SyncLabel, Counter>,
    /// Unix time of the last complete listing of each type.
    pub last_sync: Family<KindLabel, Gauge>,
    /// `--inventory-sync-interval`, so alerts can say "no sync for N intervals".
    pub sync_interval: Gauge,
    /// Each provider's own rate limit and what is left of it, from its last answer.
    pub ratelimit_limit: Family<ProviderLabel, Gauge>,
    pub ratelimit_remaining: Family<ProviderLabel, Gauge>,
    /// Each provider client's own budget (e.g. `--digitalocean-requests-per-hour`).
    pub budget_per_hour: Family<ProviderLabel, Gauge>,
    /// Revert sagas by how they ended (`succeeded`, `failed`).
    pub reverts: Family<ResultLabel, Counter>,
    pub marked_missing: Counter,
    /// Missing, unreferenced CloudResources deleted after `--missing-retention`.
    pub collected: Counter,
    /// Requests sent to each provider's API, retries included.
    pub provider_requests: Family<ProviderLabel, Counter>,
    /// The same figures under each provider's names of before, by provider.
    pub legacy: std::collections::BTreeMap<&'static str, LegacyProviderMetrics>,
    /// Each provider's request count as last reported: the syncer and the
    /// reverter share a client, so each reports the client's total and only
    /// what is new since is counted (no request twice, none left out).
    reported: std::sync::Arc<std::sync::Mutex<std::collections::BTreeMap<&'static str, u64>>>,
    pub writes: ApiWrites,
}

impl InventoryMetrics {
    /// Registers the syncer's metrics; `writes` is the process's shared write
    /// counter, and `legacy` the providers (name, metric prefix) whose
    /// metrics of before are kept for one release.
    pub fn register(registry: &mut Registry, writes: ApiWrites, legacy: &[(&'static str, &'static str)]) -> Self {
        let mut m = Self { writes, ..Self::default() };
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
            "provider_requests",
            "Requests sent to each provider's API, retries included",
            m.provider_requests.clone(),
        );
        registry.register(
            "inventory_last_sync_timestamp_seconds",
            "Unix time of the last complete listing, by resource type",
            m.last_sync.clone(),
        );
        registry.register("inventory_sync_interval_seconds", "The inventory's sync interval", m.sync_interval.clone());
        registry.register(
            "provider_ratelimit_limit",
            "Each provider account's request limit, as the provider's last answer said",
            m.ratelimit_limit.clone(),
        );
        registry.register(
            "provider_ratelimit_remaining",
            "Requests left of each provider account's limit, as the provider's last answer said",
            m.ratelimit_remaining.clone(),
        );
        registry.register(
            "provider_budget_requests_per_hour",
            "The requests per hour this process allows itself, by provider",
            m.budget_per_hour.clone(),
        );
        for &(provider, prefix) in legacy {
            m.legacy.insert(provider, LegacyProviderMetrics::register(registry, prefix));
        }
        for result in ["succeeded", "failed", "compensation_failed"] {
            let _ = m.reverts.get_or_create(&ResultLabel { result });
        }
        registry.register("reverts", "Revert sagas that ended, by result (succeeded, failed, compensation_failed: the resource may be left powered off)", m.reverts.clone());
        m
    }

    pub fn count_sync(&self, provider: &'static str, kind: &'static str, result: &'static str) {
        self.syncs.get_or_create(&SyncLabel { provider, kind, result }).inc();
    }

    /// A complete listing of `kind` at `now` (Unix seconds).
    pub fn synced(&self, provider: &'static str, kind: &'static str, now: i64) {
        self.count_sync(provider, kind, "ok");
        self.last_sync.get_or_create(&KindLabel { provider, kind }).set(now);
    }

    /// `source`'s client has sent `total` requests since it started.
    pub fn requests(&self, source: &dyn Inventory, total: u64) {
        let provider = source.provider();
        let sent = {
            let mut reported = self.reported.lock().expect("reported lock poisoned");
            let last = reported.entry(provider).or_default();
            let new = total.saturating_sub(*last);
            *last = (*last).max(total);
            new
        };
        self.provider_requests.get_or_create(&ProviderLabel { provider }).inc_by(sent);
        if let Some(legacy) = self.legacy.get(provider) {
            legacy.requests.inc_by(sent);
        }
    }

    /// The provider's rate-limit answer, when it gave one.
    pub fn rate_limit(&self, source: &dyn Inventory, budget: &Budget) {
        let (Some(limit), Some(remaining)) = (budget.limit, budget.remaining) else { return };
        let provider = source.provider();
        self.ratelimit_limit.get_or_create(&ProviderLabel { provider }).set(limit as i64);
        self.ratelimit_remaining.get_or_create(&ProviderLabel { provider }).set(remaining as i64);
        if let Some(legacy) = self.legacy.get(provider) {
            legacy.ratelimit_limit.set(limit as i64);
            legacy.ratelimit_remaining.set(remaining as i64);
        }
    }

    /// The budget `source`'s client allows itself.
    pub fn budget(&self, source: &dyn Inventory) {
        let per_hour = (source.budget().requests_per_second * 3600.0).round() as i64;
        let provider = source.provider();
        self.budget_per_hour.get_or_create(&ProviderLabel { provider }).set(per_hour);
        if let Some(legacy) = self.legacy.get(provider) {
            legacy.budget_per_hour.set(per_hour);
        }
    }
}

impl LegacyProviderMetrics {
    fn register(registry: &mut Registry, prefix: &str) -> Self {
        let m = Self::default();
        let deprecated = "deprecated: use the provider_* metric of the same meaning";
        registry.register(format!("{prefix}_requests"), deprecated, m.requests.clone());
        registry.register(format!("{prefix}_ratelimit_limit"), deprecated, m.ratelimit_limit.clone());
        registry.register(format!("{prefix}_ratelimit_remaining"), deprecated, m.ratelimit_remaining.clone());
        registry.register(format!("{prefix}_budget_requests_per_hour"), deprecated, m.budget_per_hour.clone());
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::contract::{ChangeFeed, Listing, LiveResource, ProviderError};
    use futures::future::BoxFuture;

    struct Quiet;

    impl Inventory for Quiet {
        fn provider(&self) -> &'static str {
            "quiet"
        }
        fn types(&self) -> &[&'static str] {
            &[]
        }
        fn list<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<Listing, ProviderError>> {
            unreachable!("never listed here")
        }
        fn get<'a>(&'a self, _: &'a str, _: &'a str) -> BoxFuture<'a, Result<Option<LiveResource>, ProviderError>> {
            unreachable!("never read here")
        }
        fn feed(&self) -> Option<&dyn ChangeFeed> {
            None
        }
        fn budget(&self) -> Budget {
            Budget::default()
        }
    }

    /// The syncer and the reverter report one client's total, in any order:
    /// each request counts once, and a report behind another adds nothing.
    #[test]
    fn requests_count_once_from_totals_reported_by_several() {
        let m = InventoryMetrics::default();
        let count = || m.provider_requests.get_or_create(&ProviderLabel { provider: "quiet" }).get();
        m.requests(&Quiet, 5);
        m.clone().requests(&Quiet, 8);
        m.requests(&Quiet, 7);
        assert_eq!(count(), 8, "a late report of 7 after 8 adds nothing");
        m.requests(&Quiet, 12);
        assert_eq!(count(), 12);
    }
}
