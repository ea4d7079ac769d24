//! Process plumbing shared by the controller and the inventory syncer. It
//! knows nothing of the project's own kinds, so it imports no other module of
//! the crate:
//!
//! - [`http`]: `/metrics`, `/healthz` and `/readyz` on one port;
//! - [`health`]: what `/readyz` reports (leading, synced, standby);
//! - [`leader`]: leader election on a Lease, and stepping down when it is not renewed in time;
//! - [`fence`]: whether this replica may act on the world at the moment of a call;
//! - [`memory`]: the allocator (mimalloc) and no transparent huge pages;
//! - [`shutdown`]: SIGTERM and Ctrl-C as a stop flag;
//! - [`secrets`]: token files, and no inspection of the process by its own uid;
//! - [`metrics`]: the shared registry and the API-writes counter every component feeds;
//! - [`ratelimit`]: client-side request budgets (Kubernetes and DigitalOcean);
//! - [`relist`]: a reflector store that applies a relist in place (one copy of each object);
//! - [`jitter`]: spreading periodic work over time;
//! - [`json_depth`]: a bound on the nesting of the JSON the API server sends;
//! - [`duration`]: durations as written on command lines (`30s`, `5m`);
//! - [`watchlist`]: whether the API server streams initial lists.

pub mod duration;
pub mod fence;
pub mod health;
pub mod http;
pub mod jitter;
pub mod json_depth;
pub mod leader;
pub mod memory;
pub mod metrics;
pub mod ratelimit;
pub mod relist;
pub mod secrets;
pub mod shutdown;
pub mod watchlist;

pub use health::Health;
pub use jitter::jittered;
pub use shutdown::Stop;
