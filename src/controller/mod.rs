//! The controller: reconciles each CloudProvisioned against the live
//! inventory and keeps its Drift objects true.
//!
//! - [`plan`]: the pure decision of one reconcile;
//! - [`reconcile`]: gathers inputs from the watch caches and writes the plan;
//! - [`index`]: watch-fed indexes (CloudResource => CloudProvisioneds, CloudProvisioned => Drifts);
//! - [`metrics`]: Prometheus metrics, /healthz and /readyz;
//! - this module: wiring, leader election and shutdown.

pub mod index;
pub mod metrics;
pub mod plan;
pub mod reconcile;

use crate::api::{CloudProvisioned, CloudResource, Drift, FIELD_MANAGER};
use futures::{StreamExt, TryStreamExt};
use index::RefIndex;
use kube::api::{Api, ListParams};
use kube::client::ClientBuilder;
use kube::runtime::controller::{self, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use kube_lease_manager::LeaseManagerBuilder;
use metrics::{KindLabel, Metrics, Phase};
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::watch;

/// Everything `arcadia-drift run` is told on its command line.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// Watch CloudProvisioned and Drift objects in this namespace only.
    pub namespace: Option<String>,
    pub resync_interval: Duration,
    pub max_inventory_age: Duration,
    pub metrics_addr: SocketAddr,
    pub concurrency: u16,
    pub api_qps: f32,
    pub api_burst: u32,
    pub leader_election: bool,
    pub lease_name: String,
    pub lease_namespace: String,
    pub lease_duration: Duration,
    pub identity: String,
    /// The DigitalOcean inventory syncer, when a token is configured.
    pub digitalocean: Option<DigitalOceanConfig>,
}

#[derive(Clone, Debug)]
pub struct DigitalOceanConfig {
    pub client: crate::inventory::digitalocean::client::ClientConfig,
    pub sync: crate::inventory::SyncSettings,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot load a Kubernetes client configuration (KUBECONFIG or in-cluster): {0}")]
    Config(#[source] kube::Error),
    #[error("cannot reach the Kubernetes API at {url}: {source}")]
    Unreachable { url: String, source: kube::Error },
    #[error("the {kind} CRD is not installed (apply the output of `arcadia-drift crds`): {source}")]
    MissingCrd { kind: &'static str, source: kube::Error },
    #[error("cannot serve metrics on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("leader election on Lease {namespace}/{name} failed: {source}")]
    Lease { namespace: String, name: String, source: kube_lease_manager::LeaseManagerError },
    #[error("cannot set up the DigitalOcean client: {0}")]
    DigitalOcean(#[from] crate::inventory::digitalocean::client::DoError),
    #[error("lost the leader lease {namespace}/{name}; exiting so that only one replica writes")]
    LostLease { namespace: String, name: String },
}

/// Shared by every reconcile: the client, the watch caches and indexes, and settings.
pub struct Context {
    pub client: Client,
    pub provisioned: Store<CloudProvisioned>,
    pub resources: Store<CloudResource>,
    pub drifts: Store<Drift>,
    pub drift_index: Arc<RwLock<RefIndex<Drift>>>,
    /// True once the CloudResource and Drift caches have each listed everything once.
    /// (A watch channel, since kube's `Store::wait_until_ready` wakes only one of
    /// several concurrent waiters.)
    pub caches_synced: watch::Receiver<bool>,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub settings: plan::Settings,
    pub resync_interval: Duration,
    /// Our own last writes per CloudProvisioned, which its next reconcile waits
    /// to see in the caches (see [`reconcile::Written`]).
    pub written: std::sync::Mutex<std::collections::HashMap<String, reconcile::Written>>,
}

pub async fn run(config: RunConfig) -> Result<(), RunError> {
    let kube_config = kube::Config::infer().await.map_err(|e| RunError::Config(kube::Error::InferConfig(e)))?;
    let url = kube_config.cluster_url.to_string();
    let client = ClientBuilder::try_from(kube_config)
        .map_err(RunError::Config)?
        .with_layer(&crate::ratelimit::RateLimitLayer::new(config.api_qps, config.api_burst))
        .build();
    preflight(&client, &url, config.namespace.as_deref()).await?;

    let metrics = Arc::new(Metrics::default());
    let listener = tokio::net::TcpListener::bind(config.metrics_addr)
        .await
        .map_err(|source| RunError::Bind { addr: config.metrics_addr, source })?;
    let addr = listener.local_addr().unwrap_or(config.metrics_addr);
    tracing::info!(%addr, "serving /metrics, /healthz and /readyz");
    let router = metrics::router(metrics.clone());
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, router).await {
            tracing::error!(%error, "metrics server stopped");
        }
    });

    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutdown requested; finishing in-flight reconciles");
        let _ = stop_tx.send(true);
    });

    if !config.leader_election {
        metrics.set_phase(Phase::Running);
        control(client, &config, metrics.clone(), stop_rx).await?;
        metrics.set_phase(Phase::ShuttingDown);
        return Ok(());
    }

    let lease_error =
        |source| RunError::Lease { namespace: config.lease_namespace.clone(), name: config.lease_name.clone(), source };
    let lease_secs = config.lease_duration.as_secs().max(2);
    let manager = LeaseManagerBuilder::new(client.clone(), &config.lease_name)
        .with_namespace(&config.lease_namespace)
        .with_identity(&config.identity)
        .with_duration(lease_secs)
        .with_grace((lease_secs / 3).max(1))
        .with_field_manager(format!("{FIELD_MANAGER}-lease"))
        .build()
        .await
        .map_err(lease_error)?;
    let (mut leading, lease_task) = manager.watch().await;
    metrics.set_phase(Phase::Standby);
    tracing::info!(identity = %config.identity, lease = %config.lease_name, "waiting for the leader lease");
    let mut stop = stop_rx.clone();
    while !*leading.borrow_and_update() {
        tokio::select! {
            changed = leading.changed() => if changed.is_err() { break },
            _ = stop.wait_for(|s| *s) => {
                drop(leading);
                let _ = tokio::time::timeout(Duration::from_secs(5), lease_task).await;
                return Ok(());
            }
        }
    }
    tracing::info!(identity = %config.identity, "acquired the leader lease; starting the controller");
    metrics.set_phase(Phase::Running);
    let mut lost = leading.clone();
    let outcome = tokio::select! {
        result = control(client, &config, metrics.clone(), stop_rx) => result,
        _ = lost.wait_for(|leader| !*leader) => Err(RunError::LostLease {
            namespace: config.lease_namespace.clone(),
            name: config.lease_name.clone(),
        }),
    };
    metrics.set_phase(Phase::ShuttingDown);
    // Dropping every receiver makes the lease manager release the lease, so a standby takes over at once.
    drop(lost);
    drop(leading);
    let _ = tokio::time::timeout(Duration::from_secs(5), lease_task).await;
    outcome
}

async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing a SIGTERM handler");
        tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// Fails fast, with a clear message, on what would otherwise make the watches
/// retry forever in silence: an unreachable API server or missing CRDs.
async fn preflight(client: &Client, url: &str, namespace: Option<&str>) -> Result<(), RunError> {
    client.apiserver_version().await.map_err(|source| RunError::Unreachable { url: url.to_owned(), source })?;
    let one = ListParams::default().limit(1);
    let missing = |kind| move |source| RunError::MissingCrd { kind, source };
    Api::<CloudResource>::all(client.clone()).list_metadata(&one).await.map_err(missing("CloudResource"))?;
    scoped::<CloudProvisioned>(client, namespace).list_metadata(&one).await.map_err(missing("CloudProvisioned"))?;
    scoped::<Drift>(client, namespace).list_metadata(&one).await.map_err(missing("Drift"))?;
    Ok(())
}

fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Runs the controller (and the inventory syncer, when configured) until `stop` turns true.
async fn control(
    client: Client,
    config: &RunConfig,
    metrics: Arc<Metrics>,
    stop: watch::Receiver<bool>,
) -> Result<(), RunError> {
    // Paged, consistent initial lists. A list at resourceVersion 0 ("any") is
    // served whole from the API server's cache, ignoring the page size: one
    // 18 MB body for 11,000 CloudResources, decoded at once, managedFields and
    // all, before the reflector strips them. Pages of 500 bound that peak.
    let watch_config = watcher::Config::default().page_size(500);
    let count_errors = |kind: &'static str, metrics: Arc<Metrics>| {
        move |error: &watcher::Error| {
            metrics.watch_errors.get_or_create(&KindLabel { kind }).inc();
            tracing::warn!(%error, kind, "watch failed; retrying with backoff");
        }
    };

    let (drifts_synced_tx, drifts_synced) = watch::channel(false);
    let (resources_synced_tx, resources_synced) = watch::channel(false);

    // CloudProvisioned: the reconciled kind, indexed by the CloudResource it names.
    let (provisioned, provisioned_writer) = reflector::store();
    let by_resource =
        Arc::new(RwLock::new(RefIndex::<CloudProvisioned>::new(|p| Some(p.spec.resource_ref.name.clone()))));
    let provisioned_stream = {
        let index = by_resource.clone();
        watcher(scoped::<CloudProvisioned>(&client, config.namespace.as_deref()), watch_config.clone())
            .backoff(watch_backoff())
            .inspect_err(count_errors("cloudprovisioned", metrics.clone()))
            // Keep only what a reconcile reads: our own spec apply entry (the accept
            // apply needs it), no annotations (kubectl's last-applied copy can be large).
            .modify(|p: &mut CloudProvisioned| {
                p.managed_fields_mut().retain(|m| {
                    m.manager.as_deref() == Some(FIELD_MANAGER) && m.subresource.as_deref().unwrap_or("").is_empty()
                });
                p.annotations_mut().clear();
            })
            .reflect(provisioned_writer)
            .inspect_ok(move |event| index.write().expect("index lock poisoned").on_event(event))
            .touched_objects()
    };

    // Drifts: owned, indexed by their CloudProvisioned.
    let (drifts, drifts_writer) = reflector::store();
    let drift_index = Arc::new(RwLock::new(RefIndex::<Drift>::new(|d| {
        Some(format!("{}/{}", d.namespace().unwrap_or_default(), d.spec.provisioned_ref.name))
    })));
    let drift_stream = {
        let index = drift_index.clone();
        watcher(scoped::<Drift>(&client, config.namespace.as_deref()), watch_config.clone())
            .backoff(watch_backoff())
            .inspect_err(count_errors("drift", metrics.clone()))
            .modify(|d: &mut Drift| d.managed_fields_mut().clear())
            .reflect(drifts_writer)
            .inspect_ok(move |event| index.write().expect("index lock poisoned").on_event(event))
            .inspect_ok(mark_synced(drifts_synced_tx))
            .touched_objects()
    };

    // CloudResources: the live inventory; a change re-reconciles everything that references it.
    let (resources, resources_writer) = reflector::store();
    let resource_stream = watcher(Api::<CloudResource>::all(client.clone()), watch_config)
        .backoff(watch_backoff())
        .inspect_err(count_errors("cloudresource", metrics.clone()))
        .modify(|r: &mut CloudResource| {
            r.managed_fields_mut().clear();
            r.annotations_mut().clear();
        })
        .reflect(resources_writer)
        .inspect_ok(mark_synced(resources_synced_tx))
        .touched_objects();
    let caches_synced = both_synced(drifts_synced, resources_synced);
    log_when_synced(caches_synced.clone(), resources.clone(), drifts.clone());

    spawn_gauges(drifts.clone(), metrics.clone(), config.resync_interval);

    let context = Arc::new(Context {
        recorder: Recorder::new(
            client.clone(),
            Reporter { controller: "arcadia-drift".into(), instance: Some(config.identity.clone()) },
        ),
        client,
        provisioned: provisioned.clone(),
        resources,
        drifts,
        drift_index,
        caches_synced,
        written: Default::default(),
        metrics,
        settings: plan::Settings { max_inventory_age: config.max_inventory_age, ..Default::default() },
        resync_interval: config.resync_interval,
    });
    if let Some(digitalocean) = &config.digitalocean {
        let source = crate::inventory::digitalocean::DigitalOcean {
            client: crate::inventory::digitalocean::client::DoClient::new(digitalocean.client.clone())?,
        };
        let syncer = crate::inventory::Syncer::new(
            context.client.clone(),
            source,
            context.resources.clone(),
            digitalocean.sync.clone(),
            context.metrics.clone(),
        );
        let mut synced = context.caches_synced.clone();
        let stop = stop.clone();
        tracing::info!(url = %digitalocean.client.api_url, "syncing the DigitalOcean inventory");
        tokio::spawn(async move {
            // Plan against a complete cache, not an empty one.
            if synced.wait_for(|s| *s).await.is_ok() {
                syncer.run(stopped(stop)).await;
            }
        });
    }
    let mapper_index = by_resource.clone();
    Controller::for_stream(provisioned_stream, provisioned)
        .owns_stream(drift_stream)
        .watches_stream(resource_stream, move |r: CloudResource| {
            mapper_index.read().expect("index lock poisoned").get(&r.name_any())
        })
        .with_config(controller::Config::default().concurrency(config.concurrency))
        .graceful_shutdown_on(stopped(stop))
        .run(reconcile::reconcile, reconcile::error_policy, context)
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "reconcile loop event");
            }
        })
        .await;
    Ok(())
}

/// Retry a failed watch after 0.5s, doubling up to 5s (jittered). kube's
/// default, client-go's, waits up to 30s, which after an API server outage
/// left drifts undetected for half a minute more than needed; three watches
/// retrying every 5s cost the API server nothing.
fn watch_backoff() -> impl kube::runtime::utils::Backoff {
    let exponential = backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(500))
        .with_max_delay(Duration::from_secs(5))
        .with_factor(2.0)
        .with_jitter()
        .without_max_times();
    kube::runtime::utils::ResetTimerBackoff::new(
        kube::runtime::watcher::ExponentialBackoff::from(exponential),
        Duration::from_secs(60),
    )
}

/// Raises `tx` when a watch has listed everything once.
fn mark_synced<K>(tx: watch::Sender<bool>) -> impl FnMut(&watcher::Event<K>) {
    move |event| {
        if matches!(event, watcher::Event::InitDone) {
            tx.send_replace(true);
        }
    }
}

/// A flag that turns true once both inputs have.
fn both_synced(mut a: watch::Receiver<bool>, mut b: watch::Receiver<bool>) -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        if a.wait_for(|s| *s).await.is_ok() && b.wait_for(|s| *s).await.is_ok() {
            tx.send_replace(true);
            tx.closed().await;
        }
    });
    rx
}

/// Says once how long the initial lists of the inputs took and what they held.
fn log_when_synced(mut synced: watch::Receiver<bool>, resources: Store<CloudResource>, drifts: Store<Drift>) {
    let started = std::time::Instant::now();
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

/// Keeps the open-drifts gauge current and logs the old design's sweep summary
/// once per resync interval.
fn spawn_gauges(drifts: Store<Drift>, metrics: Arc<Metrics>, every: Duration) {
    tokio::spawn(async move {
        let mut last = metrics.sweep_counts();
        let mut gauge_tick = tokio::time::interval(Duration::from_secs(5));
        let mut sweep_tick = tokio::time::interval(every);
        sweep_tick.tick().await;
        loop {
            tokio::select! {
                _ = gauge_tick.tick() => {
                    let open = drifts.state().iter().filter(|d| d.status.as_ref().is_some_and(|s| s.phase == crate::api::DriftPhase::Open)).count();
                    metrics.open_drifts.set(open as i64);
                }
                _ = sweep_tick.tick() => {
                    let now = metrics.sweep_counts();
                    tracing::info!(
                        checked = now[0] - last[0],
                        drifted_fields = metrics.open_drifts.get(),
                        new_drift = now[1] - last[1],
                        resolved_stale = now[2] - last[2],
                        "sweep summary"
                    );
                    last = now;
                }
            }
        }
    });
}
