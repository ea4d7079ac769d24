//! The watch caches a reconcile reads: CloudProvisioneds, their Drifts and all
//! CloudResources, each a reflector store fed by a watch (relists applied in
//! place, so an outage never holds two copies: `runtime::relist`), plus the indexes
//! from a CloudResource to the CloudProvisioneds that name it and from a
//! CloudProvisioned to its Drifts.
//!
//! After an API server restart every watch resumes or relists within seconds
//! of the server being ready (docs/operations.md, "When the API server
//! restarts"): each watch backs off on its own, at most a few seconds; its
//! errors never reach the controller, whose shared backoff would pause all of
//! them; and a watch that shows nothing within [`RESUME_DEADLINE`] of
//! reconnecting starts again with a relist.

use super::Settings;
use super::index::RefIndex;
use super::metrics::ControllerMetrics;
use crate::api::{ARGOCD_TRACKING_ID, CloudProvisioned, CloudResource, Drift, DriftPolicy, FIELD_MANAGER};
use crate::policy::PolicyIndex;
use crate::runtime::relist::InPlace;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt, TryStreamExt};
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

/// Which CloudResources the cache keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResourceScope {
    /// Every one: what a syncer plans against.
    All,
    /// Those the cached CloudProvisioneds name: a shard without a syncer
    /// needs no more. One named by an object cached later is read when its
    /// object is reconciled, until its next change brings it.
    Named,
}

impl ResourceScope {
    /// A syncer plans against its replica's cache, so a replica that runs one
    /// caches every CloudResource; an unsharded one needs them all anyway.
    pub fn of(sharded: bool, runs_syncer: bool) -> Self {
        if sharded && !runs_syncer { ResourceScope::Named } else { ResourceScope::All }
    }
}

/// Sets up the caches and the watches that will fill them. CloudProvisioneds
/// and Drifts are watched in the settings' namespace only, when given, and
/// only those of its shard; CloudResources (as its `resources` scope says)
/// and DriftPolicies whole.
pub fn watch_all(client: &Client, settings: &Settings, metrics: &ControllerMetrics) -> (Caches, Watches) {
    let (namespace, scope) = (settings.namespace.as_deref(), settings.resources);
    let lists = watch_config(settings.streaming_lists);
    let sharded = match settings.shard.selector() {
        Some(selector) => lists.clone().labels(&selector),
        None => lists.clone(),
    };
    let gitops_managers: Arc<[String]> = settings.accept.gitops_managers.clone().into();
    let (provisioned, provisioned_watch, by_resource, provisioned_synced) =
        watch_provisioned(client, (namespace, gitops_managers), &sharded, metrics);
    let (drifts, drifts_watch, drifts_by_owner, drifts_synced) = watch_drifts(client, namespace, &sharded, metrics);
    let named = (scope == ResourceScope::Named).then(|| (by_resource.clone(), provisioned_synced));
    let (resources, resources_watch, resources_synced) = watch_resources(client, &lists, named, metrics);
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
    (namespace, gitops_managers): (Option<&str>, Arc<[String]>),
    lists: &watcher::Config,
    metrics: &ControllerMetrics,
) -> (Store<CloudProvisioned>, Touched<CloudProvisioned>, SharedIndex<CloudProvisioned>, watch::Receiver<bool>) {
    let (store, mut writer) = InPlace::store();
    let (synced_tx, synced) = watch::channel(false);
    let index = Arc::new(RwLock::new(RefIndex::new(|p: &CloudProvisioned| Some(p.spec.resource_ref.name.clone()))));
    let feed = index.clone();
    let api = scoped::<CloudProvisioned>(client, namespace);
    let lists = lists.clone();
    let stream = resilient(move || watcher(api.clone(), lists.clone()), "cloudprovisioned")
        .inspect_err(count_errors("cloudprovisioned", metrics))
        .modify(move |p| compact_provisioned(p, &gitops_managers))
        .inspect_ok(move |event| writer.apply(event))
        .inspect_ok(move |event| feed.write().expect("index lock poisoned").on_event(event))
        .inspect_ok(mark_synced(synced_tx))
        .touched_objects()
        .filter(|touched| std::future::ready(touched.is_ok()))
        .boxed();
    (store, stream, index, synced)
}

/// The cache keeps what a reconcile reads, in little memory: our own spec
/// apply entry whole (the accept apply needs it), of the other managers only
/// the names of those in `gitops_managers` (GitOps detection; the rest,
/// kubectl's for one, nothing reads), of the status entries only who owns
/// `status.pendingGitChanges` (see [`crate::accept::provenance`]), and no
/// annotations but the project's own and Argo CD's tracking id (kubectl's
/// last-applied copy can be large).
pub fn compact_provisioned(p: &mut CloudProvisioned, gitops_managers: &[String]) {
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
        let manager = m.manager.as_deref().unwrap_or_default();
        if manager == FIELD_MANAGER {
            return true;
        }
        if !gitops_managers.iter().any(|g| g == manager) {
            return false;
        }
        *m = ManagedFieldsEntry { manager: m.manager.take(), operation: m.operation.take(), ..Default::default() };
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
    let api = scoped::<Drift>(client, namespace);
    let lists = lists.clone();
    let stream = resilient(move || watcher(api.clone(), lists.clone()), "drift")
        .inspect_err(count_errors("drift", metrics))
        .modify(compact_drift)
        .inspect_ok(move |event| writer.apply(event))
        .inspect_ok(move |event| feed.write().expect("index lock poisoned").on_event(event))
        .inspect_ok(mark_synced(synced_tx))
        .touched_objects()
        .filter(|touched| std::future::ready(touched.is_ok()))
        .boxed();
    (store, stream, index, synced)
}

/// The Drifts being reverted, of every shard: what the reverter reads when
/// this replica's own Drift cache holds one shard's only. The phase label
/// selects them, so the cache stays as small as the reverts under way.
pub fn watch_reverting(
    client: &Client,
    namespace: Option<&str>,
    streaming: bool,
    metrics: &ControllerMetrics,
) -> (Store<Drift>, Touched<Drift>) {
    let (store, mut writer) = InPlace::store();
    let api = scoped::<Drift>(client, namespace);
    let selector = format!("{}={}", crate::api::LABEL_PHASE, crate::api::DriftPhase::Reverting.as_str());
    let lists = watch_config(streaming).labels(&selector);
    let stream = resilient(move || watcher(api.clone(), lists.clone()), "drift-reverting")
        .inspect_err(count_errors("drift-reverting", metrics))
        .modify(compact_drift)
        .inspect_ok(move |event| writer.apply(event))
        .touched_objects()
        .filter(|touched| std::future::ready(touched.is_ok()))
        .boxed();
    (store, stream)
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

/// The CloudResources; with `named` (the CloudProvisioneds' index by the
/// resource they name, and their cache's first list), only those named, and
/// only once that list is in, so that the first list keeps what it should.
fn watch_resources(
    client: &Client,
    lists: &watcher::Config,
    named: Option<(SharedIndex<CloudProvisioned>, watch::Receiver<bool>)>,
    metrics: &ControllerMetrics,
) -> (Store<CloudResource>, Touched<CloudResource>, watch::Receiver<bool>) {
    let (store, mut writer) = InPlace::store();
    let (synced_tx, synced) = watch::channel(false);
    let api = Api::<CloudResource>::all(client.clone());
    let lists = lists.clone();
    let (index, mut listed) = named.unzip();
    let after_provisioned = async move {
        if let Some(listed) = listed.as_mut() {
            let _ = listed.wait_for(|l| *l).await;
        }
    };
    let stream = futures::stream::once(after_provisioned)
        .flat_map(move |()| {
            let (api, lists) = (api.clone(), lists.clone());
            resilient(move || watcher(api.clone(), lists.clone()), "cloudresource")
        })
        .inspect_err(count_errors("cloudresource", metrics))
        .modify(compact_resource)
        .try_filter_map(move |event| {
            let kept = match &index {
                Some(index) => {
                    let index = index.read().expect("index lock poisoned");
                    keep_named(event, |name| index.contains(name))
                }
                None => Some(event),
            };
            std::future::ready(Ok(kept))
        })
        .inspect_ok(move |event| writer.apply(event))
        .inspect_ok(mark_synced(synced_tx))
        .touched_objects()
        .filter(|touched| std::future::ready(touched.is_ok()))
        .boxed();
    (store, stream, synced)
}

/// A CloudResource event as a cache of named resources only sees it: one no
/// cached object names is left out of a list, and removed on a change (so
/// what the cache holds is never older than the watch).
pub fn keep_named(
    event: watcher::Event<CloudResource>,
    named: impl Fn(&str) -> bool,
) -> Option<watcher::Event<CloudResource>> {
    match event {
        watcher::Event::Apply(r) if !named(&r.name_any()) => Some(watcher::Event::Delete(r)),
        watcher::Event::InitApply(r) if !named(&r.name_any()) => None,
        other => Some(other),
    }
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
    let api = Api::<DriftPolicy>::all(client.clone());
    let lists = lists.clone();
    let stream = resilient(move || watcher(api.clone(), lists.clone()), "driftpolicy")
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
        .filter(|touched| std::future::ready(touched.is_ok()))
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

/// Retry a failed watch after 0.5s, doubling up to 2s, each jittered by up
/// to as much again (so at most 4s). kube's default, client-go's, waits up
/// to 30s (60s jittered), which after an API server restart left drifts
/// undetected for a minute more than needed; four watches retrying every few
/// seconds cost the API server nothing.
fn watch_backoff() -> impl kube::runtime::utils::Backoff {
    kube::runtime::watcher::ExponentialBackoff::from(
        backon::ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(500))
            .with_max_delay(Duration::from_secs(2))
            .with_factor(2.0)
            .with_jitter()
            .without_max_times(),
    )
}

/// How long a watch may show nothing after it (re)connects before it starts
/// again with a relist. A request can sit unanswered while the API server
/// starts: kube's client retries 503 and 429 answers inside the request,
/// honouring `Retry-After` (5s while the server is not ready) and otherwise
/// backing off for up to minutes, so a watch resumed during the start could
/// hear nothing, not even its `Expired`, long after the server was ready.
pub const RESUME_DEADLINE: Duration = Duration::from_secs(10);

/// The longest deadline: each deadline that passes in a row doubles the next
/// one, so that a server too slow to answer within [`RESUME_DEADLINE`] is
/// still answered rather than asked again forever.
const RESUME_DEADLINE_MAX: Duration = Duration::from_secs(160);

/// A watch (`start` makes one, a kube `watcher`) that recovers by itself,
/// quickly, from an API server restart or any other failure:
///
/// - after an error it waits [`watch_backoff`] before asking again, except
///   after an `Expired` (410: the server no longer has the watch's
///   resourceVersion, as after every restart), which relists at once (once
///   in a row): the server has answered, waiting would only delay the relist;
/// - from its start and from each error until it yields an event that proves
///   the server answered (anything but `Init`, which a paged relist yields
///   before asking), each next event must come within [`RESUME_DEADLINE`]
///   (doubling while it passes in a row), or the watch starts again, with a
///   relist. A watch that answered and then stays quiet is never restarted:
///   no change means no events.
///
/// This is the only backoff a watch gets: the caller logs, counts and drops
/// its errors, never passing them to the controller, whose own backoff
/// (kube's default, shared by every watch of the controller) would pause all
/// four watches, for up to a minute, on any one's error.
fn resilient<K, S>(
    mut start: impl FnMut() -> S + Send + 'static,
    kind: &'static str,
) -> impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static
where
    K: Send + 'static,
    S: Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
{
    struct Watch<F, K, B> {
        start: F,
        stream: BoxStream<'static, Result<watcher::Event<K>, watcher::Error>>,
        backoff: B,
        /// How long to wait before asking again (after an error).
        pause: Option<Duration>,
        /// The deadline for the next event, while the watch has not answered.
        waiting: Option<Duration>,
        /// An `Expired` was relisted at once, and nothing good came since.
        relisted_at_once: bool,
    }
    let stream = start().boxed();
    let watch = Watch {
        start,
        stream,
        backoff: watch_backoff(),
        pause: None,
        waiting: Some(RESUME_DEADLINE),
        relisted_at_once: false,
    };
    futures::stream::unfold(watch, move |mut w| async move {
        if let Some(pause) = w.pause.take() {
            tokio::time::sleep(pause).await;
        }
        let next = loop {
            let Some(wait) = w.waiting else { break w.stream.next().await };
            match tokio::time::timeout(wait, w.stream.next()).await {
                Ok(next) => break next,
                Err(_) => {
                    tracing::info!(kind, waited = ?wait, "watch silent after (re)connecting; starting it again with a relist");
                    w.stream = (w.start)().boxed();
                    w.waiting = Some((wait * 2).min(RESUME_DEADLINE_MAX));
                }
            }
        };
        match &next {
            Some(Ok(watcher::Event::Init)) => {}
            Some(Ok(_)) => {
                kube::runtime::utils::Backoff::reset(&mut w.backoff);
                w.waiting = None;
                w.relisted_at_once = false;
            }
            Some(Err(error)) => {
                let expired = matches!(error, watcher::Error::WatchError(status) if status.code == 410);
                w.pause = if expired && !w.relisted_at_once {
                    w.relisted_at_once = true;
                    None
                } else {
                    Some(w.backoff.next().unwrap_or(Duration::from_secs(2)))
                };
                w.waiting = Some(w.waiting.unwrap_or(RESUME_DEADLINE));
            }
            None => {}
        }
        next.map(|item| (item, w))
    })
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

#[cfg(test)]
mod resilient_tests {
    use super::*;
    use tokio::time::Instant;
    use watcher::Event;

    type Item = Result<Event<String>, watcher::Error>;

    /// A watch that yields `items`, then nothing, forever.
    fn scripted(items: Vec<Item>) -> BoxStream<'static, Item> {
        futures::stream::iter(items).chain(futures::stream::pending()).boxed()
    }

    fn expired() -> Item {
        Err(watcher::Error::WatchError(Box::new(kube::core::Status { code: 410, ..Default::default() })))
    }

    /// A watch made of `scripts`, one per start (the last one repeated); the
    /// times it was started are in the returned list.
    fn watch_of(scripts: Vec<Vec<Item>>) -> (BoxStream<'static, Item>, Arc<std::sync::Mutex<Vec<Instant>>>) {
        let started: Arc<std::sync::Mutex<Vec<Instant>>> = Arc::default();
        let log = started.clone();
        let mut scripts = scripts.into_iter().peekable();
        let mut last = Vec::new();
        let watch = resilient(
            move || {
                log.lock().unwrap().push(Instant::now());
                if let Some(script) = scripts.next() {
                    last = script.iter().map(copy).collect();
                    return scripted(script);
                }
                scripted(last.iter().map(copy).collect())
            },
            "test",
        );
        (watch.boxed(), started)
    }

    fn copy(item: &Item) -> Item {
        match item {
            Ok(event) => Ok(event.clone()),
            Err(watcher::Error::WatchError(status)) => Err(watcher::Error::WatchError(status.clone())),
            Err(_) => Err(watcher::Error::NoResourceVersion),
        }
    }

    async fn next_after(watch: &mut BoxStream<'static, Item>) -> (Item, Duration) {
        let at = Instant::now();
        let item = watch.next().await.expect("the watch goes on");
        (item, at.elapsed())
    }

    #[tokio::test(start_paused = true)]
    async fn a_watch_silent_after_an_error_starts_again_with_a_relist_at_the_deadline() {
        let (mut watch, started) = watch_of(vec![
            vec![Ok(Event::Init), Ok(Event::InitDone), Err(watcher::Error::NoResourceVersion)],
            vec![Ok(Event::Init), Ok(Event::InitApply("relisted".into())), Ok(Event::InitDone)],
        ]);
        assert!(matches!(watch.next().await, Some(Ok(Event::Init))));
        assert!(matches!(watch.next().await, Some(Ok(Event::InitDone))));
        assert!(matches!(watch.next().await, Some(Err(_))));
        let (item, after) = next_after(&mut watch).await;
        assert!(matches!(item, Ok(Event::Init)), "the relist begins");
        let pause = after - RESUME_DEADLINE;
        assert!(
            pause >= Duration::from_millis(500) && pause < Duration::from_secs(1),
            "backoff, then the deadline: {after:?}"
        );
        assert!(matches!(watch.next().await, Some(Ok(Event::InitApply(s))) if s == "relisted"));
        assert_eq!(started.lock().unwrap().len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_quiet_watch_that_answered_is_never_restarted() {
        let (mut watch, started) = watch_of(vec![vec![Ok(Event::Init), Ok(Event::InitDone)]]);
        assert!(matches!(watch.next().await, Some(Ok(Event::Init))));
        assert!(matches!(watch.next().await, Some(Ok(Event::InitDone))));
        let quiet = tokio::time::timeout(Duration::from_secs(24 * 3600), watch.next()).await;
        assert!(quiet.is_err(), "no change, no event: {quiet:?}");
        assert_eq!(started.lock().unwrap().len(), 1, "never started again");
    }

    #[tokio::test(start_paused = true)]
    async fn deadlines_in_a_row_double_so_a_slow_server_is_still_answered() {
        let (mut watch, started) = watch_of(vec![vec![Ok(Event::Init)]]);
        let _ = tokio::time::timeout(Duration::from_secs(1000), async { while watch.next().await.is_some() {} }).await;
        let started = started.lock().unwrap();
        let gaps: Vec<u64> = started.windows(2).map(|w| (w[1] - w[0]).as_secs()).collect();
        assert_eq!(gaps[..6], [10, 20, 40, 80, 160, 160], "Init proves nothing: {gaps:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn an_expired_watch_relists_at_once_and_other_errors_back_off() {
        let (mut watch, started) = watch_of(vec![vec![
            Ok(Event::Init),
            Ok(Event::InitDone),
            expired(),
            Ok(Event::Init),
            expired(),
            Ok(Event::Init),
            Ok(Event::InitDone),
            Err(watcher::Error::NoResourceVersion),
            Ok(Event::Apply("changed".into())),
        ]]);
        watch.next().await;
        watch.next().await;
        assert!(matches!(next_after(&mut watch).await, (Err(_), _)));
        let (item, after) = next_after(&mut watch).await;
        assert!(matches!(item, Ok(Event::Init)) && after.is_zero(), "relisted at once: {after:?}");
        assert!(matches!(next_after(&mut watch).await, (Err(_), _)));
        let (_, after) = next_after(&mut watch).await;
        assert!(after >= Duration::from_millis(500), "a second Expired in a row backs off: {after:?}");
        let (item, _) = next_after(&mut watch).await;
        assert!(matches!(item, Ok(Event::InitDone)));
        assert!(matches!(next_after(&mut watch).await, (Err(_), _)));
        let (item, after) = next_after(&mut watch).await;
        assert!(matches!(item, Ok(Event::Apply(_))), "{item:?}");
        assert!(
            after >= Duration::from_millis(500) && after < Duration::from_secs(1),
            "from the first step again: {after:?}"
        );
        assert_eq!(started.lock().unwrap().len(), 1, "the watch relists itself; never started again");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::CloudResourceSpec;
    use kube::runtime::reflector::ObjectRef;
    use watcher::Event;

    fn resource(name: &str) -> CloudResource {
        let spec = CloudResourceSpec {
            provider: "digitalocean".into(),
            type_: "droplet".into(),
            id: name.into(),
            region: None,
        };
        CloudResource::new(name, spec)
    }

    #[test]
    fn a_cached_object_keeps_our_apply_whole_and_of_the_other_managers_the_gitops_ones_by_name() {
        use crate::api::{CloudProvisionedSpec, Fields, ResourceRef};
        let entry = |manager: &str, operation: &str, subresource: Option<&str>| ManagedFieldsEntry {
            manager: Some(manager.into()),
            operation: Some(operation.into()),
            subresource: subresource.map(Into::into),
            fields_v1: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::FieldsV1(
                serde_json::json!({"f:spec": {"f:desired": {}}}),
            )),
            ..Default::default()
        };
        let spec = CloudProvisionedSpec {
            resource_ref: ResourceRef { name: "r".into() },
            desired: Fields::default(),
            ..Default::default()
        };
        let mut p = CloudProvisioned::new("web", spec);
        p.metadata.managed_fields = Some(vec![
            entry(FIELD_MANAGER, "Apply", None),
            entry("kubectl-client-side-apply", "Update", None),
            entry("kustomize-controller", "Apply", None),
            entry("kubectl-edit", "Update", Some("status")),
        ]);
        compact_provisioned(&mut p, &["kustomize-controller".to_string()]);
        let kept = p.managed_fields();
        assert_eq!(kept.len(), 2, "{kept:?}");
        assert_eq!(kept[0], entry(FIELD_MANAGER, "Apply", None), "ours whole");
        assert_eq!(
            (kept[1].manager.as_deref(), kept[1].operation.as_deref(), &kept[1].fields_v1),
            (Some("kustomize-controller"), Some("Apply"), &None),
            "a GitOps manager by name"
        );
    }

    fn names(store: &Store<CloudResource>) -> Vec<String> {
        let mut all: Vec<String> = store.state().iter().map(|r| r.name_any()).collect();
        all.sort();
        all
    }

    /// A cache of named resources holds exactly those named, through a list,
    /// changes, a name that goes away and a relist; never an older copy.
    #[test]
    fn a_cache_of_named_resources_keeps_only_those_named() {
        let (store, mut writer) = InPlace::<CloudResource>::store();
        let mut named: std::collections::HashSet<&str> = ["a", "b"].into();
        let mut feed = |event: Event<CloudResource>, named: &std::collections::HashSet<&str>| {
            if let Some(kept) = keep_named(event, |n| named.contains(n)) {
                writer.apply(&kept);
            }
        };
        feed(Event::Init, &named);
        for name in ["a", "b", "c"] {
            feed(Event::InitApply(resource(name)), &named);
        }
        feed(Event::InitDone, &named);
        assert_eq!(names(&store), ["a", "b"]);

        // c becomes named: its next change brings it in.
        named.insert("c");
        feed(Event::Apply(resource("c")), &named);
        assert_eq!(names(&store), ["a", "b", "c"]);
        // b is no longer named: its next change takes it out, not an old copy kept.
        named.remove("b");
        feed(Event::Apply(resource("b")), &named);
        assert_eq!(names(&store), ["a", "c"]);
        feed(Event::Delete(resource("a")), &named);
        assert_eq!(names(&store), ["c"]);

        // A relist keeps only the named ones, and drops the rest.
        named.insert("d");
        feed(Event::Init, &named);
        for name in ["c", "d", "e"] {
            feed(Event::InitApply(resource(name)), &named);
        }
        feed(Event::InitDone, &named);
        assert_eq!(names(&store), ["c", "d"]);
        assert!(store.get(&ObjectRef::new("e")).is_none());
    }
}
