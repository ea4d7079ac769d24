//! The controller: reconciles each CloudProvisioned against the live
//! inventory and keeps its Drift objects true.
//!
//! - [`plan`]: the pure decision of one reconcile;
//! - [`reconcile`]: gathers inputs from the caches, applies the plan;
//! - [`journal`]: reads and writes the decision journal (decisions that outlive status);
//! - [`retry`]: what a failed reconcile means, and when it is tried again;
//! - [`caches`]: the watches and reflector caches a reconcile reads;
//! - [`index`]: watch-fed indexes (CloudResource => CloudProvisioneds, CloudProvisioned => Drifts);
//! - [`metrics`]: the controller's Prometheus metrics;
//! - [`summary`]: the open-drifts gauge and the periodic sweep summary;
//! - [`resync`]: the periodic re-check of every object, spread over the interval;
//! - [`handoff`]: Drifts a moved object left behind, pushed to its new shard;
//! - this module: [`DriftController`], which puts them together.

pub mod caches;
pub mod handoff;
pub mod index;
pub mod journal;
pub mod metrics;
pub mod plan;
pub mod policy_status;
pub mod reconcile;
pub mod resync;
pub mod retry;
pub mod shard;
pub mod summary;

use crate::api::{CloudResource, DriftPolicy};
use crate::runtime::{Health, Stop};
use crate::writeback::Writeback;
use caches::{Caches, Watches};
use futures::StreamExt;
use kube::runtime::controller::{self, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::reflector::Store;
use kube::{Client, ResourceExt};
use metrics::ControllerMetrics;
use reconcile::Context;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// What the controller is told on the command line.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Watch CloudProvisioned and Drift objects in this namespace only.
    pub namespace: Option<String>,
    pub resync_interval: Duration,
    pub max_inventory_age: Duration,
    /// CloudProvisioneds reconciled at once.
    pub concurrency: u16,
    /// This replica's name, as the reporting instance of its Events.
    pub identity: String,
    /// `--accept-mode` and `--gitops-managers`.
    pub accept: crate::accept::AcceptSettings,
    /// `--enable-revert` and `--revert-claim`.
    pub revert: crate::revert::RevertSettings,
    /// Read the initial lists as streams (the API server has WatchList), else in pages.
    pub streaming_lists: bool,
    /// `--metrics-fields`: the only field names that become metric label values.
    pub metric_fields: std::collections::BTreeSet<String>,
    /// The controller's own namespace, where the decision journal lives.
    pub decisions_namespace: String,
    /// The CloudProvisioneds (and their Drifts) this replica handles.
    pub shard: shard::Shard,
    /// Which CloudResources it caches: all where a syncer plans against the
    /// cache, else (a shard without providers) only those its objects name.
    pub resources: caches::ResourceScope,
}

/// The drift controller, its caches set up but not yet filled.
pub struct DriftController {
    client: Client,
    settings: Settings,
    metrics: ControllerMetrics,
    caches: Caches,
    watches: Watches,
    writeback: Option<(Writeback, mpsc::UnboundedReceiver<(String, String)>)>,
}

impl DriftController {
    pub fn new(client: Client, settings: Settings, metrics: ControllerMetrics) -> Self {
        let (caches, watches) = caches::watch_all(&client, &settings, &metrics);
        Self { client, settings, metrics, caches, watches, writeback: None }
    }

    /// Writes overlay accepts back to Git through `writeback`; `done` names
    /// each CloudProvisioned whose write-back has an outcome to record.
    pub fn with_writeback(mut self, writeback: Writeback, done: mpsc::UnboundedReceiver<(String, String)>) -> Self {
        self.writeback = Some((writeback, done));
        self
    }

    /// The CloudResource cache and the flag that says it (and the Drift
    /// cache) are complete: what an inventory syncer may plan against.
    pub fn inventory_cache(&self) -> (Store<CloudResource>, watch::Receiver<bool>) {
        (self.caches.resources.clone(), self.caches.synced.clone())
    }

    /// The CloudProvisioned cache (every namespace's, unless `--namespace`).
    pub fn provisioned_cache(&self) -> Store<crate::api::CloudProvisioned> {
        self.caches.provisioned.clone()
    }

    /// Where the reverter finds approved reverts: the Drift cache, or, when
    /// it holds one shard's only, a watch of the Drifts being reverted in
    /// every shard, which the caller must poll (until its stop).
    pub fn reverting_drifts(&self) -> (Store<crate::api::Drift>, Option<caches::Touched<crate::api::Drift>>) {
        if !self.settings.shard.is_partial() {
            return (self.caches.drifts.clone(), None);
        }
        let namespace = self.settings.namespace.as_deref();
        let (store, watch) =
            caches::watch_reverting(&self.client, namespace, self.settings.streaming_lists, &self.metrics);
        (store, Some(watch))
    }

    /// True when other replicas handle some CloudProvisioneds (`--shard`, `--exclude-shards`).
    pub fn is_sharded(&self) -> bool {
        self.settings.shard.is_partial()
    }

    /// Reconciles until `stop` is raised; reports readiness once the caches are synced.
    pub async fn run(self, health: Arc<Health>, stop: Stop) {
        let DriftController { client, settings, metrics, caches, watches, writeback } = self;
        let (writeback, mut done) = match writeback {
            Some((handle, done)) => (Some(handle), Some(done)),
            None => (None, None),
        };
        let write_back_done = futures::stream::poll_fn(move |cx| match &mut done {
            Some(rx) => rx.poll_recv(cx).map(|o| o.map(|(ns, name)| ObjectRef::new(&name).within(&ns))),
            None => std::task::Poll::Ready(None),
        });
        report_synced(&caches, health);
        summary::log_when_synced(&caches);
        summary::spawn(&caches, metrics.clone(), settings.resync_interval, Arc::new(settings.metric_fields.clone()));
        let reporter = Reporter { controller: "arcadia-drift".into(), instance: Some(settings.identity.clone()) };
        let journal = journal::Journal::new(client.clone(), &settings.decisions_namespace, settings.shard.name());
        let context = Arc::new(Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            caches: caches.clone(),
            written: Default::default(),
            journal,
            failures: Default::default(),
            writeback,
            metrics,
            sharded: settings.shard.is_partial(),
            resources: settings.resources,
            plan_settings: plan::Settings {
                max_inventory_age: settings.max_inventory_age,
                accept: settings.accept.clone(),
                revert: settings.revert,
                ..Default::default()
            },
            resync_interval: settings.resync_interval,
        });
        let by_resource = caches.by_resource.clone();
        let (provisioned, status_client) = (caches.provisioned.clone(), context.client.clone());
        // A policy change re-checks every object it may select (all of its namespaces, or all).
        let by_policy = move |policy: DriftPolicy| {
            tokio::spawn(policy_status::report(status_client.clone(), policy.clone()));
            let namespaces = &policy.spec.selector.namespaces;
            provisioned
                .state()
                .iter()
                .filter(|p| namespaces.is_empty() || namespaces.contains(&p.namespace().unwrap_or_default()))
                .map(|p| ObjectRef::from_obj(p.as_ref()))
                .collect::<Vec<_>>()
        };
        let handoff = {
            let (client, stop) = ((context.client.clone(), context.metrics.writes.clone()), stop.clone());
            let (caches, shard) = ((caches.provisioned.clone(), caches.drifts.clone()), settings.shard.clone());
            let interval = settings.resync_interval;
            async move {
                if shard.is_partial() {
                    handoff::run(client, caches, shard, interval, stop).await;
                }
            }
        };
        let controller = Controller::for_stream(watches.provisioned, caches.provisioned.clone())
            .owns_stream(watches.drifts)
            .watches_stream(watches.resources, move |r: CloudResource| {
                by_resource.read().expect("index lock poisoned").get(&r.name_any())
            })
            .watches_stream(watches.policies, by_policy)
            .reconcile_on(write_back_done)
            .reconcile_on(resync::every(caches.provisioned.clone(), settings.resync_interval))
            .with_config(controller::Config::default().concurrency(settings.concurrency))
            .graceful_shutdown_on(stop.stopped())
            .run(reconcile::reconcile, reconcile::error_policy, context)
            .for_each(|result| async move {
                if let Err(error) = result {
                    tracing::debug!(%error, "reconcile loop event");
                }
            });
        futures::join!(controller, handoff);
    }
}

fn report_synced(caches: &Caches, health: Arc<Health>) {
    let mut synced = caches.synced.clone();
    tokio::spawn(async move {
        if synced.wait_for(|s| *s).await.is_ok() {
            health.set_synced();
        }
    });
}
