//! `arcadia-drift run`: the wiring. Builds the Kubernetes client, checks the
//! cluster, registers every component's metrics on one registry, serves the
//! health endpoints, and, while this replica leads, runs the drift controller
//! and the inventory syncer side by side. They meet only through
//! CloudResource objects: the syncer plans against the controller's
//! CloudResource cache, handed over here.

use crate::api::{self, ANNOTATION_SCHEMA_VERSION, FIELD_MANAGER, SCHEMA_VERSION};
use crate::controller::metrics::ControllerMetrics;
use crate::controller::{self, DriftController};
use crate::inventory::reverter::{Arm, Reverter};
use crate::inventory::{InventoryConfig, InventoryMetrics, Syncer};
use crate::providers::contract::ProviderError;
use crate::runtime::fence::Fence;
use crate::runtime::health::{Health, Role};
use crate::runtime::leader::{self, LeaderError, LeaseConfig};
use crate::runtime::metrics::ApiWrites;
use crate::runtime::ratelimit::RateLimitLayer;
use crate::runtime::{self, Stop};
use crate::writeback::{self, WritebackSettings, metrics::WritebackMetrics};
use futures::StreamExt;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::Api;
use kube::client::ClientBuilder;
use std::net::SocketAddr;
use std::sync::Arc;

/// Everything `arcadia-drift run` is told on its command line.
#[derive(Clone, Debug)]
pub struct RunConfig {
    pub api_qps: f32,
    pub api_burst: u32,
    pub metrics_addr: SocketAddr,
    /// `/metrics` only for a bearer of this file's token.
    pub metrics_token_file: Option<std::path::PathBuf>,
    /// Leader election on this Lease; `None` runs as the only replica.
    pub lease: Option<LeaseConfig>,
    /// A sharded replica with providers runs them only while it also holds
    /// this Lease, so that two shards given provider flags never both sync
    /// or revert.
    pub providers_lease: Option<LeaseConfig>,
    pub controller: controller::Settings,
    /// The inventory syncers (one per configured provider) and the reverter.
    pub inventory: Option<InventoryConfig>,
    /// Git write-back of overlay accepts, when enabled.
    pub writeback: Option<WritebackSettings>,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot load a Kubernetes client configuration (KUBECONFIG or in-cluster): {0}")]
    Config(#[source] kube::Error),
    #[error("cannot reach the Kubernetes API at {url}: {source}")]
    Unreachable { url: String, source: kube::Error },
    #[error(
        "the Kubernetes API at {url} is version {version}; arcadia-drift supports Kubernetes 1.34 through 1.37 (it needs admission policies, CRD selectable fields and the CEL libraries of 1.34)"
    )]
    UnsupportedServer { url: String, version: String },
    #[error("the {kind} CRD ({name}) is not installed (apply the output of `arcadia-drift crds`)")]
    MissingCrd { kind: String, name: String },
    #[error(
        "the CRD {name} is older than this controller (schema version {found}, this controller needs {needed}): its schema would drop fields the controller writes. Apply the new CRDs first: `arcadia-drift crds | kubectl apply --server-side -f -`, or `helm upgrade` with crds.install=true"
    )]
    OldCrd { name: String, found: String, needed: u32 },
    #[error("cannot read the CRD {name} to check its schema version (the controller needs `get` on it): {source}")]
    CrdUnreadable { name: String, source: kube::Error },
    #[error(transparent)]
    Serve(#[from] runtime::http::ServeError),
    #[error(transparent)]
    Leader(#[from] LeaderError),
    #[error("cannot set up the client of provider {provider}: {source}")]
    Provider { provider: &'static str, source: ProviderError },
    #[error("a task of the leader panicked ({0}); exiting so that a restart starts it again")]
    Panicked(String),
}

/// The components' metrics, each registered on the shared registry.
struct Components {
    health: Arc<Health>,
    controller: ControllerMetrics,
    inventory: InventoryMetrics,
    writeback: WritebackMetrics,
}

pub async fn run(config: RunConfig) -> Result<(), RunError> {
    let client = connect(&config).await?;
    preflight(&client).await?;
    let mut config = config;
    config.controller.streaming_lists = streams_lists(&client, config.controller.namespace.as_deref()).await;
    let mut registry = runtime::metrics::registry();
    let writes = ApiWrites::register(&mut registry);
    let components = Components {
        health: Arc::new(Health::register(
            &mut registry,
            config.controller.shard.name(),
            config.providers_lease.is_some(),
        )),
        controller: ControllerMetrics::register(&mut registry, writes.clone()),
        inventory: InventoryMetrics::register(&mut registry, writes, &crate::providers::legacy_metrics()),
        writeback: WritebackMetrics::register(&mut registry),
    };
    let health = components.health.clone();
    let auth = runtime::http::MetricsAuth::from_token_file(config.metrics_token_file.clone());
    let addr = runtime::http::serve(config.metrics_addr, registry, health.clone(), auth).await?;
    tracing::info!(%addr, "serving /metrics, /healthz and /readyz");
    let stop = Stop::on_signals();
    let fence = config.lease.as_ref().map_or_else(Fence::open, |lease| lease.fence(client.clone()));
    let work = lead(client.clone(), &config, components, (stop.clone(), fence.clone()));
    match &config.lease {
        Some(lease) => leader::while_leading(client, (lease, &fence), health.as_ref(), stop, work).await,
        None => {
            health.set_role(Role::Leading);
            let outcome = work.await;
            health.set_role(Role::ShuttingDown);
            outcome
        }
    }
}

/// How long the leader waits, once stopped, for the tasks that act on the
/// world (sagas, pushes, a sync) to reach a safe point before it lets go of
/// the lease: within Kubernetes' default grace period of 30 s, and longer
/// than a DigitalOcean request may take (`--digitalocean-request-timeout`, 20 s).
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(25);

/// What the leader runs: the controller, and the syncer, the reverter and
/// the Git write-back when configured. Those act on the world, so they run
/// in a `JoinSet` this future owns: on SIGTERM they stop at a safe point and
/// are awaited before it returns (and the lease is released); when the lease
/// is lost the future is dropped, and so are they. One of them failing or
/// panicking (the providers' lease lost) stops the others the same way, and
/// ends it with that error.
async fn lead(
    client: Client,
    config: &RunConfig,
    components: Components,
    (stop, fence): (Stop, Fence),
) -> Result<(), RunError> {
    tracing::info!(identity = %config.controller.identity, "starting the controller");
    // An actor that fails (the providers' lease lost) stops the rest as SIGTERM would.
    let (raise, stop) = stop.or_raised_by_hand();
    let mut controller = DriftController::new(client.clone(), config.controller.clone(), components.controller);
    let mut actors = tokio::task::JoinSet::new();
    if let Some(settings) = &config.writeback {
        let (done_tx, done_rx) = tokio::sync::mpsc::unbounded_channel();
        let (handle, worker) =
            writeback::writeback(client.clone(), settings.clone(), components.writeback, done_tx, fence.clone());
        tracing::info!(author = %settings.git.author_email, "writing overlay accepts back to Git");
        let stop = stop.clone();
        actors.spawn(infallible(async move { worker.run(stop).await }));
        controller = controller.with_writeback(handle, done_rx);
    }
    if let Some(inventory) = &config.inventory {
        // A sharded replica's providers are fenced on their own Lease.
        let seat = config.providers_lease.clone().map(|lease| {
            let fence = lease.fence(client.clone());
            (lease, fence)
        });
        let providers_fence = seat.as_ref().map_or_else(|| fence.clone(), |(_, fence)| fence.clone());
        let cluster_wide = config.controller.namespace.is_none();
        let arms = arms(&client, inventory, (&controller, cluster_wide), components.inventory).await?;
        let reverter = inventory.revert.clone().map(|settings| {
            tracing::info!(max_concurrent = settings.max_concurrent, "carrying out approved reverts");
            let (drifts, watch) = controller.reverting_drifts();
            if let Some(watch) = watch {
                let stop = stop.clone();
                actors.spawn(infallible(watch.take_until(stop.stopped()).for_each(|_| async {})));
            }
            Arc::new(Reverter::new(client.clone(), arms.clone(), drifts, settings, (providers_fence, stop.clone())))
        });
        let (_, synced) = controller.inventory_cache();
        let work = sync_and_revert(arms, reverter, synced, stop.clone());
        actors.spawn(providers(client.clone(), seat, components.health.clone(), stop.clone(), work));
    }
    let mut running = std::pin::pin!(controller.run(components.health, stop));
    let failure = tokio::select! {
        () = &mut running => None,
        error = first_failure(&mut actors) => Some(error),
    };
    if let Some(error) = &failure {
        tracing::error!(%error, "stopping: a task of the leader failed");
        let _ = raise.send(true);
        running.await;
    }
    let settled = tokio::time::timeout(SHUTDOWN_GRACE, async { while actors.join_next().await.is_some() {} }).await;
    if settled.is_err() {
        // A call may be in flight: releasing the lease would let the standby
        // send it again. Exit holding it; it expires, and the standby resumes
        // each saga from its record after that.
        tracing::error!("tasks still running {SHUTDOWN_GRACE:?} after the stop; exiting without releasing the lease");
        std::process::exit(1);
    }
    failure.map_or(Ok(()), Err)
}

/// The first of `actors` to fail or panic; pending while none has.
async fn first_failure(actors: &mut tokio::task::JoinSet<Result<(), RunError>>) -> RunError {
    while let Some(done) = actors.join_next().await {
        match done {
            Ok(Ok(())) => {}
            Ok(Err(error)) => return error,
            Err(join) if join.is_panic() => return RunError::Panicked(join.to_string()),
            Err(_) => {}
        }
    }
    std::future::pending().await
}

/// One syncer and actuator per configured provider, planning against the
/// controller's CloudResource cache.
async fn arms(
    client: &Client,
    inventory: &InventoryConfig,
    (controller, cluster_wide): (&DriftController, bool),
    metrics: InventoryMetrics,
) -> Result<Vec<Arm>, RunError> {
    let (resources, _) = controller.inventory_cache();
    let mut arms = Vec::new();
    for setup in &inventory.providers {
        let built = setup.build().await.map_err(|source| RunError::Provider { provider: setup.provider(), source })?;
        let settings = inventory.settings(setup.as_ref());
        let mut syncer = Syncer::new(client.clone(), built.inventory, resources.clone(), settings, metrics.clone());
        // Only a view of every namespace and every shard can tell that no
        // CloudProvisioned names a resource.
        if cluster_wide && !controller.is_sharded() {
            syncer = syncer.collecting(controller.provisioned_cache());
        } else if controller.is_sharded() {
            tracing::info!(provider = setup.provider(), "sharded: CloudResources missing from the provider are kept");
        }
        tracing::info!(provider = setup.provider(), endpoint = %setup.endpoint(), "syncing the inventory");
        arms.push(Arm { actuator: built.actuator, syncer: Arc::new(syncer) });
    }
    Ok(arms)
}

/// Runs the providers' `work`: at once, or, on a sharded replica, while it
/// holds the providers' Lease (the role shows in `arcadia_drift_providers_leader`).
/// Losing that Lease ends the replica, as losing its own does.
async fn providers(
    client: Client,
    seat: Option<(LeaseConfig, Fence)>,
    health: Arc<Health>,
    stop: Stop,
    work: impl Future<Output = ()>,
) -> Result<(), RunError> {
    let Some((lease, fence)) = seat else {
        return infallible(work).await;
    };
    tracing::info!(lease = %lease.name, "sharded: the providers run on the replica that holds their lease");
    leader::while_leading(client, (&lease, &fence), &health.providers_seat(), stop, infallible(work)).await
}

/// A task that cannot fail, among those that can.
async fn infallible(task: impl Future<Output = ()>) -> Result<(), RunError> {
    task.await;
    Ok(())
}

/// Once the CloudResource cache is complete, runs every provider's syncer
/// and the reverter until `stop`.
async fn sync_and_revert(
    arms: Vec<Arm>,
    reverter: Option<Arc<Reverter>>,
    mut synced: tokio::sync::watch::Receiver<bool>,
    stop: Stop,
) {
    // Plan against a complete cache, not an empty one.
    let ready = tokio::select! {
        ready = synced.wait_for(|s| *s) => ready.is_ok(),
        _ = stop.clone().stopped() => false,
    };
    if !ready {
        return;
    }
    let reverting = async {
        if let Some(reverter) = reverter {
            reverter.run().await;
        }
    };
    let syncing = futures::future::join_all(arms.into_iter().map(|arm| arm.syncer.run(stop.clone().stopped())));
    tokio::join!(reverting, syncing);
}

async fn connect(config: &RunConfig) -> Result<Client, RunError> {
    let kube_config = kube::Config::infer().await.map_err(|e| RunError::Config(kube::Error::InferConfig(e)))?;
    let url = kube_config.cluster_url.to_string();
    let client = ClientBuilder::try_from(kube_config)
        .map_err(RunError::Config)?
        .with_layer(&runtime::json_depth::DepthLimitLayer { max: runtime::json_depth::MAX_DEPTH })
        .with_layer(&RateLimitLayer::new(config.api_qps, config.api_burst))
        .build();
    let info = client.apiserver_version().await.map_err(|source| RunError::Unreachable { url: url.clone(), source })?;
    if !supported(&info.major, &info.minor) {
        return Err(RunError::UnsupportedServer { url, version: info.git_version });
    }
    if minor(&info.minor) > Some(NEWEST_MINOR) {
        tracing::warn!(version = %info.git_version, "newer than the newest Kubernetes this build was tested with (1.37)");
    }
    Ok(client)
}

/// Streamed initial lists where the API server has them (WatchList), paged otherwise.
async fn streams_lists(client: &Client, namespace: Option<&str>) -> bool {
    let collection = match namespace {
        Some(ns) => format!("/apis/{}/{}/namespaces/{ns}/drifts", api::GROUP, api::VERSION),
        None => format!("/apis/{}/{}/drifts", api::GROUP, api::VERSION),
    };
    let streaming = runtime::watchlist::streams_lists(client, &collection).await;
    match streaming {
        true => tracing::info!("initial lists: streamed (the API server sends them as watch events)"),
        false => tracing::info!("initial lists: paged, 500 objects a page (this API server does not stream lists)"),
    }
    streaming
}

/// The supported range's ends: 1.34 (the oldest tested) to 1.37 (the newest).
const OLDEST_MINOR: u32 = 34;
const NEWEST_MINOR: u32 = 37;

/// The minor version as a number: servers say "34", or "34+" for vendor builds.
fn minor(text: &str) -> Option<u32> {
    text.trim_end_matches('+').parse().ok()
}

/// Older servers are refused; newer ones run, with a warning.
fn supported(major: &str, minor_text: &str) -> bool {
    major == "1" && minor(minor_text).is_some_and(|m| m >= OLDEST_MINOR)
}

/// Fails fast, with a clear message, on what would otherwise make the watches
/// retry forever in silence (missing CRDs), or lose data (CRDs whose older
/// schemas would prune the fields this controller writes). It reads the CRDs
/// only, never the objects: one undecodable object must not stop start-up.
async fn preflight(client: &Client) -> Result<(), RunError> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for ours in api::crds() {
        let name = ours.metadata.name.unwrap_or_default();
        let installed = match api.get(&name).await {
            Ok(crd) => crd,
            Err(kube::Error::Api(status)) if status.code == 404 => {
                return Err(RunError::MissingCrd { kind: ours.spec.names.kind, name });
            }
            Err(source) => return Err(RunError::CrdUnreadable { name, source }),
        };
        let found = installed.metadata.annotations.unwrap_or_default().get(ANNOTATION_SCHEMA_VERSION).cloned();
        let version = found.as_deref().and_then(|v| v.parse::<u32>().ok());
        if version.is_none_or(|v| v < SCHEMA_VERSION) {
            let found = found.unwrap_or_else(|| "1, unmarked".into());
            return Err(RunError::OldCrd { name, found, needed: SCHEMA_VERSION });
        }
    }
    Ok(())
}

/// The Lease settings for leader election under this project's field manager.
pub fn lease_config(name: String, namespace: String, duration: std::time::Duration, identity: String) -> LeaseConfig {
    LeaseConfig { name, namespace, duration, identity, field_manager: format!("{FIELD_MANAGER}-lease") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_supported_range_starts_at_1_34() {
        assert!(supported("1", "34") && supported("1", "37") && supported("1", "35+") && supported("1", "40"));
        assert!(!supported("1", "33") && !supported("2", "0") && !supported("1", "x"));
    }
}
