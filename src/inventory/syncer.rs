//! The I/O half of an inventory sync: list a provider, let [`super::plan`]
//! decide, write CloudResources, and confirm absences.

use super::metrics::InventoryMetrics;
use super::plan::{self, LiveResource, plan_sync, resource_name};
use crate::api::{self, CloudProvisioned, CloudResource, FIELD_MANAGER, LABEL_SOURCE};
use crate::providers::contract::{ChangeFeed, Inventory, ProviderError};
use crate::runtime::jittered;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::{ObjectRef, Store};
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct SyncSettings {
    /// This syncer's name, as the `arcadia.cloud/source` label of what it writes.
    pub source: String,
    pub interval: Duration,
    /// How often the provider's change feed is polled; `None` turns it off.
    pub feed_interval: Option<Duration>,
    /// The namespace of the ConfigMap that keeps the feed's cursor across restarts.
    pub state_namespace: String,
    /// Unchanged resources get a fresh `syncedTime` once it is this old.
    pub refresh_after: Duration,
    /// `--missing-retention`: a missing CloudResource no CloudProvisioned
    /// names is deleted once missing this long.
    pub missing_retention: Duration,
}

pub struct Syncer {
    client: kube::Client,
    source: Arc<dyn Inventory>,
    resources: Store<CloudResource>,
    settings: SyncSettings,
    metrics: InventoryMetrics,
    /// Absent from one complete listing, not yet confirmed gone.
    suspects: Mutex<HashSet<String>>,
    /// The newest reading each CloudResource was written from. A listing
    /// that started before a refresh can answer after it: its older reading
    /// must not replace the newer one (and reopen a drift a revert closed).
    newest: tokio::sync::Mutex<HashMap<String, Timestamp>>,
    /// Every CloudProvisioned in the cluster, to know which CloudResources are
    /// named; `None` when the controller watches one namespace only, which
    /// cannot tell, so nothing is collected.
    referencing: Option<Store<CloudProvisioned>>,
    /// Refreshes after an action that failed: tried again at the next poll,
    /// though the feed's position moved past their action.
    retry_refresh: Mutex<std::collections::BTreeSet<(String, String)>>,
}

/// When a reading of the provider was asked for: the status's syncedTime
/// (whole seconds, as Kubernetes keeps it) and the precise instant that
/// orders two writes of one resource.
#[derive(Clone, Debug)]
struct Reading {
    time: Time,
    at: Timestamp,
}

impl Reading {
    fn now() -> Self {
        let at = Timestamp::now();
        Reading { time: Time(Timestamp::from_second(at.as_second()).unwrap_or(at)), at }
    }
}

/// What one sync did.
#[derive(Debug, Default, Clone)]
pub struct SyncReport {
    pub requests: u64,
    pub listed: usize,
    pub written: usize,
    pub marked_missing: usize,
    pub failed_types: Vec<&'static str>,
    pub took: Duration,
}

#[derive(Debug, thiserror::Error)]
#[error("writing CloudResource {name}: {source}")]
pub struct WriteError {
    name: String,
    source: kube::Error,
}

impl Syncer {
    pub fn new(
        client: kube::Client,
        source: Arc<dyn Inventory>,
        resources: Store<CloudResource>,
        settings: SyncSettings,
        metrics: InventoryMetrics,
    ) -> Self {
        metrics.sync_interval.set(settings.interval.as_secs() as i64);
        metrics.budget(source.as_ref());
        Self {
            client,
            source,
            resources,
            settings,
            metrics,
            suspects: Mutex::default(),
            newest: Default::default(),
            referencing: None,
            retry_refresh: Mutex::default(),
        }
    }

    /// Collects missing CloudResources no CloudProvisioned of `provisioned`
    /// (a cache of every namespace's) names.
    pub fn collecting(mut self, provisioned: Store<CloudProvisioned>) -> Self {
        self.referencing = Some(provisioned);
        self
    }

    /// Syncs every `interval` (jittered), and polls the change feed every
    /// `feed_interval`, until `stop` completes.
    pub async fn run(self: Arc<Self>, stop: impl Future<Output = ()>) {
        tokio::pin!(stop);
        let feed = self.source.feed().filter(|_| self.settings.feed_interval.is_some());
        let mut cursor = match feed {
            Some(feed) => self.load_cursor(feed).await,
            None => String::new(),
        };
        let mut next_sync = tokio::time::Instant::now();
        let feed_every = self.settings.feed_interval.unwrap_or(Duration::from_secs(3600 * 24 * 365));
        let mut ticks = tokio::time::interval(feed_every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // A sync or a poll in flight is dropped on stop: it only reads and
        // applies idempotently, and the feed's cursor is saved after a poll
        // completes, so the next leader goes on from the last complete one.
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(next_sync) => {
                    tokio::select! {
                        report = self.sync_once() => self.log_sync(&report),
                        _ = &mut stop => return,
                    }
                    next_sync = tokio::time::Instant::now() + jittered(self.settings.interval);
                }
                _ = ticks.tick(), if feed.is_some() => {
                    let Some(feed) = feed else { continue };
                    tokio::select! {
                        _ = self.poll_feed(feed, &mut cursor) => {}
                        _ = &mut stop => return,
                    }
                }
                _ = &mut stop => return,
            }
        }
    }

    fn log_sync(&self, report: &SyncReport) {
        tracing::info!(
            listed = report.listed,
            written = report.written,
            marked_missing = report.marked_missing,
            requests = report.requests,
            failed = ?report.failed_types,
            took_ms = report.took.as_millis() as u64,
            "inventory sync"
        );
    }

    pub async fn sync_once(&self) -> SyncReport {
        let started = Instant::now();
        let requests_before = self.source.budget().requests_sent;
        let mut report = SyncReport::default();
        let provider = self.source.provider();
        for &t in self.source.types() {
            match self.sync_type(t, &mut report).await {
                Ok(()) => self.metrics.synced(provider, t, api::now().0.as_second()),
                Err(error) => {
                    self.metrics.count_sync(provider, t, error.kind());
                    report.failed_types.push(t);
                    tracing::warn!(%error, provider, kind = t, "inventory sync failed; nothing marked missing, retrying next sync");
                }
            }
        }
        self.collect().await;
        report.requests = self.source.budget().requests_sent - requests_before;
        self.forget_removed().await;
        self.note_requests();
        report.took = started.elapsed();
        report
    }

    async fn sync_type(&self, t: &str, report: &mut SyncReport) -> Result<(), SyncError> {
        // A listing is as old as its first request: anything read after it started is newer.
        let listed = Reading::now();
        let listing = self.source.list(t).await?;
        report.listed += listing.items.len();
        let existing = self.resources.state();
        let plan = plan_sync(
            &self.settings.source,
            self.source.provider(),
            t,
            listing.items,
            &existing,
            &listed.time,
            self.settings.refresh_after,
        );
        for w in &plan.writes {
            let exists = self
                .resources
                .get(&ObjectRef::new(&w.name))
                .is_some_and(|r| r.spec == w.spec && r.labels().get(LABEL_SOURCE) == Some(&self.settings.source));
            self.write(&w.name, (!exists).then_some(&w.spec), &w.status, &listed).await?;
            self.suspects.lock().expect("suspects lock poisoned").remove(&w.name);
            report.written += 1;
        }
        if listing.short {
            tracing::info!(
                provider = self.source.provider(),
                kind = t,
                "the listing may have missed an item (the provider counts more than it returned); no absence is trusted this time"
            );
            return Ok(());
        }
        for name in plan.absent {
            let Some(resource) = self.resources.get(&ObjectRef::new(&name)) else {
                continue;
            };
            let second_absence = self.suspects.lock().expect("suspects lock poisoned").contains(&name);
            let gone = if second_absence {
                true
            } else {
                let read = Reading::now();
                match self.source.get(t, &resource.spec.id).await {
                    Ok(None) => true,
                    Ok(Some(found)) => {
                        // Listed late or missed by paging: it exists, so mirror it.
                        self.write_observed(found, &read).await?;
                        report.written += 1;
                        false
                    }
                    Err(error) => {
                        tracing::info!(%error, resource = %name, "cannot confirm an absence now; asking again next sync");
                        self.suspects.lock().expect("suspects lock poisoned").insert(name.clone());
                        false
                    }
                }
            };
            if gone {
                // As old as the listing that missed it: a refresh since then that found it wins.
                self.write(&name, None, &plan::missing_status(&resource, &listed.time), &listed).await?;
                self.suspects.lock().expect("suspects lock poisoned").remove(&name);
                self.metrics.marked_missing.inc();
                report.marked_missing += 1;
                tracing::info!(resource = %name, provider = self.source.provider(), "the provider no longer has it; marked missing");
            }
        }
        Ok(())
    }

    /// Deletes the missing CloudResources past `--missing-retention` that no
    /// CloudProvisioned names, each read again and deleted on that copy's uid
    /// and resourceVersion (one recreated or seen again since stays).
    async fn collect(&self) {
        let Some(provisioned) = &self.referencing else { return };
        // Before the CloudProvisioned cache holds a complete list, "named by none" proves nothing.
        if !matches!(futures::FutureExt::now_or_never(provisioned.wait_until_ready()), Some(Ok(()))) {
            return;
        }
        let referenced: HashSet<String> =
            provisioned.state().iter().map(|p| p.spec.resource_ref.name.clone()).collect();
        let now = api::now();
        let gone = plan::collectable(
            &self.settings.source,
            &self.resources.state(),
            &referenced,
            &now,
            self.settings.missing_retention,
        );
        for name in gone {
            self.collect_one(&name, &now).await;
        }
    }

    /// Reads the candidate again (the cache keeps no uid, and may be behind)
    /// and deletes it on that copy's uid and resourceVersion, so a resource
    /// recreated or written since is kept.
    async fn collect_one(&self, name: &str, now: &Time) {
        let api: Api<CloudResource> = Api::all(self.client.clone());
        let fresh = match api.get_opt(name).await {
            Ok(Some(fresh)) => fresh,
            Ok(None) => return,
            Err(error) => {
                tracing::warn!(%error, resource = %name, "cannot read a missing CloudResource to collect it; trying again next sync");
                return;
            }
        };
        let retention = self.settings.missing_retention;
        let Some((uid, version)) = plan::deletion_preconditions(&self.settings.source, &fresh, now, retention) else {
            return;
        };
        // A CloudProvisioned created since the pass began may name it now.
        if self.referencing.as_ref().is_some_and(|p| p.state().iter().any(|p| p.spec.resource_ref.name == name)) {
            return;
        }
        let params = kube::api::DeleteParams {
            preconditions: Some(kube::api::Preconditions { uid: Some(uid), resource_version: Some(version) }),
            ..Default::default()
        };
        match api.delete(name, &params).await {
            Ok(_) => {
                self.metrics.collected.inc();
                tracing::info!(resource = %name, provider = self.source.provider(), "deleted: missing from its provider for longer than --missing-retention, and no CloudProvisioned names it");
            }
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(error) => {
                tracing::warn!(%error, resource = %name, "cannot delete a missing CloudResource; trying again next sync")
            }
        }
    }

    /// What is kept per resource goes with its CloudResource.
    async fn forget_removed(&self) {
        let known = |name: &String| self.resources.get(&ObjectRef::new(name)).is_some();
        self.suspects.lock().expect("suspects lock poisoned").retain(known);
        self.newest.lock().await.retain(|name, _| known(name));
    }

    async fn write_observed(&self, o: LiveResource, read: &Reading) -> Result<(), SyncError> {
        let provider = self.source.provider();
        let name = resource_name(provider, o.type_, &o.id);
        let spec = crate::api::CloudResourceSpec {
            provider: provider.into(),
            type_: o.type_.into(),
            region: o.region,
            id: o.id,
        };
        let status = api::CloudResourceStatus { missing: false, synced_time: Some(read.time.clone()), ..o.status };
        self.write(&name, Some(&spec), &status, read).await
    }

    /// Server-side applies the object (when `spec` is given) and its status,
    /// unless a newer reading of it was written already. Writes of one
    /// process go one at a time, so the check and the write cannot interleave.
    async fn write(
        &self,
        name: &str,
        spec: Option<&crate::api::CloudResourceSpec>,
        status: &api::CloudResourceStatus,
        read: &Reading,
    ) -> Result<(), SyncError> {
        let mut newest = self.newest.lock().await;
        if plan::superseded(&read.at, newest.get(name)) {
            tracing::debug!(resource = name, read_at = %read.at, "a newer reading was written since this one was asked for; this older one is not written");
            return Ok(());
        }
        self.apply(name, spec, status).await?;
        newest.insert(name.to_owned(), read.at);
        Ok(())
    }

    async fn apply(
        &self,
        name: &str,
        spec: Option<&crate::api::CloudResourceSpec>,
        status: &api::CloudResourceStatus,
    ) -> Result<(), SyncError> {
        let api: Api<CloudResource> = Api::all(self.client.clone());
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let fail = |source| SyncError::Write(WriteError { name: name.to_owned(), source });
        if let Some(spec) = spec {
            let body = json!({
                "apiVersion": "arcadia.cloud/v1alpha1",
                "kind": "CloudResource",
                "metadata": {"name": name, "labels": {LABEL_SOURCE: self.settings.source}},
                "spec": spec,
            });
            api.patch(name, &params, &Patch::Apply(body)).await.map_err(fail)?;
            self.metrics.writes.count("cloudresource");
        }
        let body = json!({"apiVersion": "arcadia.cloud/v1alpha1", "kind": "CloudResource", "status": status});
        api.patch_status(name, &params, &Patch::Apply(body)).await.map_err(fail)?;
        self.metrics.writes.count("cloudresource_status");
        Ok(())
    }
}

impl Syncer {
    /// Reads the changes since `cursor` and refreshes the resources they
    /// name. A failed poll changes nothing and is retried at the next tick.
    pub async fn poll_feed(&self, feed: &dyn ChangeFeed, cursor: &mut String) {
        let provider = self.source.provider();
        let poll = match feed.poll(cursor).await {
            Ok(poll) => poll,
            Err(error) => {
                self.metrics.count_sync(provider, feed.name(), error.kind);
                tracing::warn!(%error, provider, "change feed poll failed; nothing marked missing, retrying next poll");
                return;
            }
        };
        self.metrics.count_sync(provider, feed.name(), "ok");
        let mut report = SyncReport::default();
        // Refreshes that failed last time are tried again with this poll's.
        let mut refresh = std::mem::take(&mut *self.retry_refresh.lock().expect("retry lock poisoned"));
        refresh.extend(poll.refresh.iter().cloned());
        for (t, id) in refresh {
            if let Err(error) = self.refresh_one(&t, &id, &mut report).await {
                tracing::warn!(%error, provider, kind = %t, id = %id, "cannot refresh after a change; trying again next poll");
                self.retry_refresh.lock().expect("retry lock poisoned").insert((t, id));
            }
        }
        for t in &poll.full_listing {
            tracing::info!(provider, kind = %t, "change feed gap: listing the type whole");
            if let Err(error) = self.sync_type(t, &mut report).await {
                tracing::warn!(%error, provider, kind = %t, "listing after a feed gap failed; retrying next sync");
            }
        }
        self.note_requests();
        if poll.cursor != *cursor {
            *cursor = poll.cursor;
            self.save_cursor(feed, cursor).await;
        }
    }

    /// Counts the requests sent so far, and the provider's rate-limit answer.
    fn note_requests(&self) {
        let budget = self.source.budget();
        self.metrics.requests(self.source.as_ref(), budget.requests_sent);
        self.metrics.rate_limit(self.source.as_ref(), &budget);
    }

    /// The provider inventory this syncer reads, with its request budget.
    pub fn source(&self) -> &dyn Inventory {
        self.source.as_ref()
    }

    /// The CloudResource cache the syncer plans against.
    pub fn resources(&self) -> &Store<CloudResource> {
        &self.resources
    }

    pub fn metrics(&self) -> &InventoryMetrics {
        &self.metrics
    }

    /// Reads one resource again now and writes its CloudResource (after a revert).
    pub async fn refresh(&self, t: &str, id: &str) -> Result<(), SyncError> {
        let outcome = self.refresh_one(t, id, &mut SyncReport::default()).await;
        self.note_requests();
        outcome
    }

    /// Reads one resource again; a 404 is proof it is gone.
    async fn refresh_one(&self, t: &str, id: &str, report: &mut SyncReport) -> Result<(), SyncError> {
        let read = Reading::now();
        match self.source.get(t, id).await? {
            Some(found) => {
                self.write_observed(found, &read).await?;
                report.written += 1;
            }
            None => {
                let name = resource_name(self.source.provider(), t, id);
                if let Some(resource) = self.resources.get(&ObjectRef::new(&name)) {
                    self.write(&name, None, &plan::missing_status(&resource, &read.time), &read).await?;
                    self.metrics.marked_missing.inc();
                    tracing::info!(resource = %name, provider = self.source.provider(), "gone after a change (404); marked missing");
                }
            }
        }
        Ok(())
    }

    fn state_map(&self) -> String {
        format!("arcadia-drift-actions-{}", self.settings.source)
    }

    /// The feed's cursor as the last leader saved it; empty (start at the
    /// newest change) when there is none or it cannot be read.
    async fn load_cursor(&self, feed: &dyn ChangeFeed) -> String {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), &self.settings.state_namespace);
        match api.get_opt(&self.state_map()).await {
            Ok(Some(map)) => map.annotations().get(feed.cursor_key()).cloned().unwrap_or_default(),
            Ok(None) => String::new(),
            Err(error) => {
                tracing::warn!(%error, "cannot read the change feed's cursor; starting at the newest change");
                String::new()
            }
        }
    }

    async fn save_cursor(&self, feed: &dyn ChangeFeed, cursor: &str) {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), &self.settings.state_namespace);
        let body = json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": self.state_map(), "annotations": {feed.cursor_key(): cursor}},
        });
        match api.patch(&self.state_map(), &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(body)).await {
            Ok(_) => self.metrics.writes.count("configmap"),
            Err(error) => {
                tracing::warn!(%error, "cannot keep the change feed's cursor; a restart starts at the newest change")
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Provider(#[from] ProviderError),
    #[error(transparent)]
    Write(WriteError),
}

impl SyncError {
    fn kind(&self) -> &'static str {
        match self {
            SyncError::Provider(e) => e.kind,
            SyncError::Write(_) => "write",
        }
    }
}
