//! The watch caches a reconcile reads: CloudProvisioneds, their Drifts and all
//! CloudResources, each a reflector store fed by a watch (relists applied in
//! place, so an outage never holds two copies: `runtime::relist`), plus the indexes
//! from a CloudResource to the CloudProvisioneds that name it and from a
//! CloudProvisioned to its Drifts.

use super::index::RefIndex;
use super::metrics::ControllerMetrics;
use crate::api::{ARGOCD_TRACKING_ID, CloudProvisioned, CloudResource, Drift, DriftPolicy, FIELD_MANAGER};
use crate::policy::PolicyIndex;
use crate::runtime::relist::InPlace;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
use kube::api::Api;
use kube::runtime::reflector::Store;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::watch;

pub type SharedIndex<K> = Arc<RwLock<RefIndex<K>>>;
/// A watch that feeds a cache and yields each object it touched.
pub type Touched<K> = BoxStream<'static, Result<K, watcher::Error>>;

#[derive(Clone)]
pub struct Caches {
    pub provisioned: Store<CloudProvisioned>,
    pub resources: Store<CloudResource>,
    pub drifts: Store<Drift>,
    /// CloudResource name => the CloudProvisioneds that reference it.
    pub by_resource: SharedIndex<CloudProvisioned>,
    /// `namespace/name` of a CloudProvisioned => its Drifts.
    pub drifts_by_owner: SharedIndex<Drift>,
    /// DriftPolicies by the namespaces they select, rebuilt on every change.
    pub policies: Arc<RwLock<PolicyIndex>>,
    /// True once the CloudResource and Drift caches have each listed everything once.
    /// (A watch channel, since kube's `Store::wait_until_ready` wakes only one of
    /// several concurrent waiters.)
    pub synced: watch::Receiver<bool>,
}

/// The watches behind [`Caches`]; they fill the caches only while polled.
pub struct Watches {
    pub provisioned: Touched<CloudProvisioned>,
    pub drifts: Touched<Drift>,
    pub resources: Touched<CloudResource>,
    pub policies: Touched<DriftPolicy>,
}

/// Sets up the caches and the watches that will fill them. CloudProvisioneds
/// and Drifts are watched in `namespace` only, when given.
pub fn watch_all(
    client: &Client,
    namespace: Option<&str>,
    streaming: bool,
    metrics: &ControllerMetrics,
) -> (Caches, Watches) {
    let lists = watch_config(streaming);
    let (provisioned, provisioned_watch, by_resource) = watch_provisioned(client, namespace, &lists, metrics);
    let (drifts, drifts_watch, drifts_by_owner, drifts_synced) = watch_drifts(client, namespace, &lists, metrics);
    let (resources, resources_watch, resources_synced) = watch_resources(client, &lists, metrics);
    let (policies, policies_watch, policies_synced) = watch_policies(client, &lists, metrics);
    let caches = Caches {
        provisioned,
        resources,
        drifts,
        by_resource,
        drifts_by_owner,
        policies,
        synced: both_synced(both_synced(drifts_synced, resources_synced), policies_synced),
    };
    let watches = Watches {
        provisioned: provisioned_watch,
        drifts: drifts_watch,
        resources: resources_watch,
        policies: policies_watch,
    };
    (caches, watches)
}

/// How the initial lists (and relists) are read: streamed where the server
/// can (objects one at a time as watch events), else in consistent pages. A
/// list at resourceVersion 0 ("any") would be served whole from the API
/// server's cache, ignoring the page size: one 18 MB body for 11,000
/// CloudResources, decoded at once before the reflector strips it. Pages of
/// 500 bound that peak.
fn watch_config(streaming: bool) -> watcher::Config {
    if streaming { watcher::Config::default().streaming_lists() } else { watcher::Config::default().page_size(500) }
}

fn count_errors(kind: &'static str, metrics: &ControllerMetrics) -> impl Fn(&watcher::Error) + use<> {
    let metrics = metrics.clone();
    move |error| {
        metrics.count_watch_error(kind);
        tracing::warn!(%error, kind, "watch failed; retrying with backoff");
    }
}

fn watch_provisioned(
    client: &Client,
    namespace: Option<&str>,
    lists: &watcher::Config,
    metrics: &ControllerMetrics,
) -> (Store<CloudProvisioned>, Touched<CloudProvisioned>, SharedIndex<CloudProvisioned>) {
    let (store, mut writer) = InPlace::store();
    let index = Arc::new(RwLock::new(RefIndex::new(|p: &CloudProvisioned| Some(p.spec.resource_ref.name.clone()))));
    let feed = index.clone();
    let stream = watcher(scoped::<CloudProvisioned>(client, namespace), lists.clone())
        .backoff(watch_backoff())
        .inspect_err(count_errors("cloudprovisioned", metrics))
        .modify(compact_provisioned)
        .inspect_ok(move |event| writer.apply(event))
        .inspect_ok(move |event| feed.write().expect("index lock poisoned").on_event(event))
        .touched_objects()
        .boxed();
    (store, stream, index)
}

/// The cache keeps what a reconcile reads, in little memory: our own spec
/// apply entry whole (the accept apply needs it), the other managers' names
/// only (GitOps detection), of the status entries only who owns
/// `status.pendingGitChanges` (see [`crate::accept::provenance`]), and no
/// annotations but the project's own and Argo CD's tracking id (kubectl's
/// last-applied copy can be large).
pub fn compact_provisioned(p: &mut CloudProvisioned) {
    p.managed_fields_mut().retain_mut(|m| {
        if m.subresource.as_deref().is_some_and(|s| !s.is_empty()) {
            if !crate::accept::provenance::owns_pending(m) {
                return false;
            }
            let pending = serde_json::json!({"f:status": {"f:pendingGitChanges": {}}});
            *m = ManagedFieldsEntry {
                manager: m.manager.take(),
                subresource: m.subresource.take(),
                fields_v1: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::FieldsV1(pending)),
                ..Default::default()
            };
            return true;
        }
        if m.manager.as_deref() != Some(FIELD_MANAGER) {
            *m = ManagedFieldsEntry { manager: m.manager.take(), operation: m.operation.take(), ..Default::default() };
        }
        true
    });
    p.annotations_mut().retain(|k, _| k.starts_with("arcadia.cloud/") || k == ARGOCD_TRACKING_ID);
}

fn watch_drifts(
    client: &Client,
    namespace: Option<&str>,
    lists: &watcher::Config,
    metrics: &ControllerMetrics,
) -> (Store<Drift>, Touched<Drift>, SharedIndex<Drift>, watch::Receiver<bool>) {
    let (store, mut writer) = InPlace::store();
    let (synced_tx, synced) = watch::channel(false);
    let index = Arc::new(RwLock::new(RefIndex::new(|d: &Drift| {
        Some(format!("{}/{}", d.namespace().unwrap_or_default(), d.spec.provisioned_ref.name))
    })));
    let feed = index.clone();
    let stream = watcher(scoped::<Drift>(client, namespace), lists.clone())
        .backoff(watch_backoff())
        .inspect_err(count_errors("drift", metrics))
        .modify(compact_drift)
        .inspect_ok(move |event| writer.apply(event))
        .inspect_ok(move |event| feed.write().expect("index lock poisoned").on_event(event))
        .inspect_ok(mark_synced(synced_tx))
        .touched_objects()
        .boxed();
    (store, stream, index, synced)
}

/// A Drift as cached: no managedFields, which no reconcile reads.
pub fn compact_drift(d: &mut Drift) {
    d.managed_fields_mut().clear();
}

/// A CloudResource as cached: its name, labels, spec and live state. No
/// managedFields or annotations, and no uid or resourceVersion: nothing reads
/// them (the syncer's writes are server-side applies), and the store's key
/// copies both again. The watch tracks resourceVersions before this runs.
pub fn compact_resource(r: &mut CloudResource) {
    r.managed_fields_mut().clear();
    r.annotations_mut().clear();
    r.metadata.uid = None;
    r.metadata.resource_version = None;
}

fn watch_resources(
    client: &Client,
    lists: &watcher::Config,
    metrics: &ControllerMetrics,
) -> (Store<CloudResource>, Touched<CloudResource>, watch::Receiver<bool>) {
    let (store, mut writer) = InPlace::store();
    let (synced_tx, synced) = watch::channel(false);
    let stream = watcher(Api::<CloudResource>::all(client.clone()), lists.clone())
        .backoff(watch_backoff())
        .inspect_err(count_errors("cloudresource", metrics))
        .modify(compact_resource)
        .inspect_ok(move |event| writer.apply(event))
        .inspect_ok(mark_synced(synced_tx))
        .touched_objects()
        .boxed();
    (store, stream, synced)
}

/// DriftPolicies: few, cluster-scoped, each change rebuilds the index.
fn watch_policies(
    client: &Client,
    lists: &watcher::Config,
    metrics: &ControllerMetrics,
) -> (Arc<RwLock<PolicyIndex>>, Touched<DriftPolicy>, watch::Receiver<bool>) {
    let (store, mut writer) = InPlace::store();
    let (synced_tx, synced) = watch::channel(false);
    let index = Arc::new(RwLock::new(PolicyIndex::default()));
    let feed = index.clone();
    let stream = watcher(Api::<DriftPolicy>::all(client.clone()), lists.clone())
        .backoff(watch_backoff())
        .inspect_err(count_errors("driftpolicy", metrics))
        .modify(|p: &mut DriftPolicy| p.managed_fields_mut().clear())
        .inspect_ok(move |event| writer.apply(event))
        .inspect_ok(move |event| {
            if !matches!(event, watcher::Event::Init | watcher::Event::InitApply(_)) {
                *feed.write().expect("policy index lock poisoned") = PolicyIndex::new(store.state());
            }
        })
        .inspect_ok(mark_synced(synced_tx))
        .try_filter(spec_changes())
        .touched_objects()
        .boxed();
    (index, stream, synced)
}

/// Passes the policy events that can change a comparison: a new generation
/// (a spec change) or a deletion. A status write (the controller's own
/// `Valid`) and a relist of unchanged policies re-check nothing.
fn spec_changes() -> impl FnMut(&watcher::Event<DriftPolicy>) -> std::future::Ready<bool> {
    let mut seen: HashMap<String, Option<i64>> = HashMap::new();
    move |event| std::future::ready(spec_changed(&mut seen, event))
}

fn spec_changed(seen: &mut HashMap<String, Option<i64>>, event: &watcher::Event<DriftPolicy>) -> bool {
    match event {
        watcher::Event::Apply(p) | watcher::Event::InitApply(p) => {
            seen.insert(p.name_any(), p.metadata.generation) != Some(p.metadata.generation)
        }
        watcher::Event::Delete(p) => {
            seen.remove(&p.name_any());
            true
        }
        watcher::Event::Init | watcher::Event::InitDone => true,
    }
}

pub fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
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

#[cfg(test)]
mod policy_event_tests {
    use super::*;

    fn policy(name: &str, generation: i64) -> DriftPolicy {
        let mut p = DriftPolicy::new(name, Default::default());
        p.metadata.generation = Some(generation);
        p
    }

    #[test]
    fn only_a_new_generation_or_a_deletion_re_checks_objects() {
        let mut seen = HashMap::new();
        let mut changed = |e: watcher::Event<DriftPolicy>| spec_changed(&mut seen, &e);
        assert!(changed(watcher::Event::InitApply(policy("p", 1))), "first seen");
        assert!(!changed(watcher::Event::Apply(policy("p", 1))), "a status write: same generation");
        assert!(!changed(watcher::Event::InitApply(policy("p", 1))), "a relist of an unchanged policy");
        assert!(changed(watcher::Event::Apply(policy("p", 2))), "a spec change");
        assert!(changed(watcher::Event::Delete(policy("p", 2))), "a deletion");
        assert!(changed(watcher::Event::Apply(policy("p", 1))), "re-created under the same name");
    }
}
