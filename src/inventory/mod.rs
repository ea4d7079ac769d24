//! Inventory syncers: mirror what a cloud really has into CloudResource
//! objects. DigitalOcean first.
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
//! - [`digitalocean`], [`feed`]: DigitalOcean's client, models and actions
//!   feed, now in `src/providers/digitalocean/` (re-exported here until the
//!   syncer and the reverter drive them through the provider contract);
//! - [`reverter`]: drives approved revert sagas against DigitalOcean.

pub use crate::providers::digitalocean::{self, feed};
pub mod metrics;
pub mod plan;
pub mod reverter;
pub mod syncer;

pub use metrics::InventoryMetrics;
pub use syncer::{SyncReport, SyncSettings, Syncer};

/// The DigitalOcean syncer's configuration, from the command line.
#[derive(Clone, Debug)]
pub struct DigitalOceanConfig {
    pub client: digitalocean::client::ClientConfig,
    pub sync: SyncSettings,
    /// Approved reverts are carried out (`--enable-revert`).
    pub revert: Option<reverter::ReverterSettings>,
}
