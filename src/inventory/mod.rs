//! Inventory syncers: mirror what each configured provider really has into
//! CloudResource objects, one syncer per provider.
//!
//! A sync lists each resource type completely, writes what changed with
//! server-side apply, and marks `status.missing` only on proof: a resource
//! that a complete listing no longer contains is confirmed gone by a 404 on a
//! direct GET, or by a second complete listing without it. A failed or partial
//! listing marks nothing and deletes nothing; it is logged, counted and retried.
//!
//! - [`plan`]: the pure decision of one sync of one type;
//! - [`syncer`]: lists, writes and confirms absences;
//! - [`metrics`]: the syncer's Prometheus metrics;
//! - [`reverter`]: drives approved revert sagas through each provider's actuator.
//!
//! The providers themselves live in `src/providers/`.

pub mod metrics;
pub mod plan;
pub mod reverter;
pub mod syncer;

pub use metrics::InventoryMetrics;
pub use syncer::{SyncReport, SyncSettings, Syncer};

/// The inventory's configuration, from the command line.
#[derive(Clone, Debug)]
pub struct InventoryConfig {
    /// The configured providers, each synced by a syncer of its own.
    pub providers: Vec<std::sync::Arc<dyn crate::providers::contract::Setup>>,
    /// The settings every syncer shares; `source` and `feed_interval` are each provider's.
    pub sync: SyncSettings,
    /// Approved reverts are carried out (`--enable-revert`).
    pub revert: Option<reverter::ReverterSettings>,
}

impl InventoryConfig {
    /// The sync settings of one provider.
    pub fn settings(&self, setup: &dyn crate::providers::contract::Setup) -> SyncSettings {
        SyncSettings { source: setup.source().to_owned(), feed_interval: setup.feed_interval(), ..self.sync.clone() }
    }
}
