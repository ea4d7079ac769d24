//! One reconcile of one CloudProvisioned: gather inputs from the watch caches,
//! let the pure [`plan`] decide, then write the plan in a
//! crash-safe order: adopted values into the parent spec, Drift objects and
//! their status, consumed accept annotations, the parent status, Events.

use super::caches::Caches;
use super::metrics::ControllerMetrics;
use super::plan::{self, DriftWrite, Inputs, Plan, PlannedEvent, Regarding};
use super::retry::{self, ErrorClass};
use crate::api::{
    self, CloudProvisioned, CloudProvisionedStatus, CloudResource, Drift, DriftStatus, FIELD_MANAGER, LABEL_PHASE,
    LABEL_PROVISIONED, LABEL_SEVERITY, LABEL_SHARD,
};
use crate::runtime::jittered;
use crate::writeback::commit::Change;
use crate::writeback::{Job, Writeback, WritebackOutcome};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{self, EventType, Recorder};
use kube::runtime::reflector::ObjectRef;
use kube::{Client, Resource, ResourceExt};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Shared by every reconcile: the client, the caches, and settings.
pub struct Context {
    pub client: Client,
    pub caches: Caches,
    pub recorder: Recorder,
    pub metrics: ControllerMetrics,
    pub plan_settings: plan::Settings,
    pub resync_interval: Duration,
    /// Our own last writes per CloudProvisioned, which its next reconcile waits
    /// to see in the caches (see [`Written`]).
    pub written: Mutex<HashMap<String, Written>>,
    /// The decisions that outlive the objects' status.
    pub journal: super::journal::Journal,
    /// Failures in a row per CloudProvisioned, for its backoff; removed on success and with the object.
    pub failures: Mutex<HashMap<String, u32>>,
    /// Git write-back of overlay accepts, when enabled.
    pub writeback: Option<Writeback>,
    /// Other replicas handle some CloudProvisioneds (`--shard`, `--exclude-shards`).
    pub sharded: bool,
    /// Which CloudResources the cache keeps (see [`Caches`]).
    pub resources: super::caches::ResourceScope,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("adopting accepted values into spec.desired of CloudProvisioned {object}: {source}")]
    Adopt { object: String, source: kube::Error },
    #[error("writing Drift {object}: {source}")]
    WriteDrift { object: String, source: kube::Error },
    #[error("removing the consumed annotations (accept, snooze, ignore) from Drift {object}: {source}")]
    ClearAccept { object: String, source: kube::Error },
    #[error("writing the status of CloudProvisioned {object}: {source}")]
    WriteStatus { object: String, source: kube::Error },
    #[error(transparent)]
    Journal { source: super::journal::JournalError },
    #[error("moving the Drifts of CloudProvisioned {object} into its shard: {source}")]
    MoveDrifts { object: String, source: kube::Error },
    #[error("reading CloudResource {name}, which the cache of named resources does not hold yet: {source}")]
    ReadResource { name: String, source: kube::Error },
}

impl Context {
    /// Drops what is kept per object, once it is gone from the cache.
    fn forget(&self, key: &str) {
        remove_and_shrink(&mut self.written.lock().expect("written lock poisoned"), key);
        remove_and_shrink(&mut self.failures.lock().expect("failures lock poisoned"), key);
    }
}

impl Error {
    pub fn class(&self) -> ErrorClass {
        retry::class_of(self.source())
    }

    /// A bounded label for the errors metric.
    pub fn step(&self) -> &'static str {
        match self {
            Error::Adopt { .. } => "adopt",
            Error::WriteDrift { .. } => "write_drift",
            Error::ClearAccept { .. } => "clear_accept",
            Error::WriteStatus { .. } => "write_status",
            Error::Journal { .. } => "journal",
            Error::MoveDrifts { .. } => "move_drifts",
            Error::ReadResource { .. } => "read_resource",
        }
    }

    fn source(&self) -> &kube::Error {
        match self {
            Error::Adopt { source, .. }
            | Error::WriteDrift { source, .. }
            | Error::ClearAccept { source, .. }
            | Error::WriteStatus { source, .. }
            | Error::MoveDrifts { source, .. }
            | Error::ReadResource { source, .. } => source,
            Error::Journal { source } => source.source_error(),
        }
    }

    /// The object was deleted under the reconcile (404 on the parent), or its
    /// namespace is being deleted (403 NamespaceTerminating): nothing is wrong.
    fn is_gone(&self) -> bool {
        let parent = matches!(self, Error::Adopt { .. } | Error::WriteStatus { .. });
        match self.source() {
            kube::Error::Api(s) if s.code == 404 => parent,
            other => namespace_terminating(other),
        }
    }

    fn is_not_found(&self) -> bool {
        matches!(self.source(), kube::Error::Api(s) if s.code == 404)
    }
}

/// The CloudResource `p` names: from the cache, or, where the cache keeps only
/// named ones and lacks it, read now (it was listed before `p` named it; its
/// next change brings it into the cache).
async fn resource_of(ctx: &Context, p: &CloudProvisioned) -> Result<Option<Arc<CloudResource>>, Error> {
    let name = &p.spec.resource_ref.name;
    let cached = ctx.caches.resources.get(&ObjectRef::new(name));
    if cached.is_some() || ctx.resources == super::caches::ResourceScope::All {
        return Ok(cached);
    }
    let read = Api::<CloudResource>::all(ctx.client.clone()).get_opt(name).await;
    let mut found = read.map_err(|source| Error::ReadResource { name: name.clone(), source })?;
    if let Some(r) = found.as_mut() {
        super::caches::compact_resource(r);
    }
    Ok(found.map(Arc::new))
}

/// One reconcile of a CloudProvisioned. It never asks to be requeued when it
/// succeeds: the periodic re-check comes from `resync::every`.
pub async fn reconcile(p: Arc<CloudProvisioned>, ctx: Arc<Context>) -> Result<Action, Error> {
    // Until both caches hold a full list, an absent CloudResource or Drift means
    // "not seen yet", not "does not exist": deciding then would report resources
    // missing and rewrite drifts on every start.
    let _ = ctx.caches.synced.clone().wait_for(|synced| *synced).await;
    let namespace = p.namespace().unwrap_or_default();
    let name = p.name_any();
    let key = format!("{namespace}/{name}");
    let Some(p) = ctx.caches.provisioned.get(&ObjectRef::from_obj(p.as_ref())) else {
        ctx.forget(&key);
        return Ok(Action::await_change());
    };
    // Decide on caches that hold our own previous writes, or the plan would
    // repeat them (and their Events); until they do, come back (the slot is freed).
    if !caught_up(&ctx, &key) {
        return Ok(Action::requeue(CATCH_UP_POLL));
    }
    // Being deleted: its Drifts go with it (ownerReferences); writing them again would fight that.
    if p.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let started = Instant::now();
    let resource = resource_of(&ctx, &p).await?;
    let drifts = drifts_of(&ctx, &key);
    let drift_refs: Vec<&Drift> = drifts.iter().map(Arc::as_ref).collect();
    let now = api::now();
    let git = git_outcomes(&ctx, &p, &drift_refs);
    let policies = ctx.caches.policies.read().expect("policy index lock poisoned").candidates(&namespace);
    let peers = peers(&ctx, &p);
    let journal = ctx.journal.entries(&namespace).await.map_err(|source| Error::Journal { source })?;
    let mut inputs = Inputs {
        provisioned: &p,
        resource: resource.as_deref(),
        drifts: &drift_refs,
        now: &now,
        field_owners: None,
        git: &git,
        policies: &policies,
        peers: &peers,
        journal: &journal,
    };
    let mut plan = plan::plan(&inputs, &ctx.plan_settings);
    // Rare (a spec change met an open or accepted drift): the caches strip
    // managedFields, so read them once for the messages that name a manager.
    let owners;
    if plan.needs_field_owners {
        owners = field_owners(&ctx, &p).await;
        inputs.field_owners = Some(&owners);
        plan = plan::plan(&inputs, &ctx.plan_settings);
    }
    if ctx.sharded && may_lack_drifts(&p, &plan, &drift_refs) && drifts_elsewhere(&ctx, &p, &drift_refs).await? > 0 {
        return Ok(Action::requeue(CATCH_UP_POLL));
    }
    let tally = plan.tally;
    let write_back = write_back_jobs(&ctx, &p, &drift_refs, &plan);
    let mut written = Written::default();
    let mut versions = Versions {
        provisioned: p.resource_version(),
        drifts: drift_refs.iter().filter_map(|d| Some((d.name_any(), d.resource_version()?))).collect(),
    };
    let result = write(&ctx, &p, plan, &mut versions, &mut written).await;
    if let Err(error) = &result
        && gone(&ctx, &p, error).await
    {
        tracing::debug!(%error, "the object or its namespace is being deleted; nothing left to write");
        return Ok(Action::await_change());
    }
    remember(&ctx, &p, &key, &result, (written, write_back)).await;
    ctx.metrics.observe_reconcile(started.elapsed(), &tally, result.as_ref().err().map(Error::step));
    if result.is_ok() && tally.new_drifts + tally.changed > 0 {
        observe_detection(&ctx, resource.as_deref());
    }
    result?;
    Ok(Action::await_change())
}

/// The plan writes a Drift this shard's cache does not hold, or the status
/// names drifted fields whose Drifts it does not hold. When other shards
/// exist, those Drifts may be there already, labelled for the shard the
/// object was moved from: writing them as new would lose their history, and
/// leaving them would leave them to a shard that no longer reconciles them.
fn may_lack_drifts(p: &CloudProvisioned, plan: &plan::Plan, cached: &[&Drift]) -> bool {
    let held = |name: &str| cached.iter().any(|d| d.name_any() == name);
    let drifted = p.status.as_ref().map(|s| s.drifted_fields.as_slice()).unwrap_or_default();
    plan.drift_writes.iter().any(|w| !held(&w.name))
        || drifted.iter().any(|field| !cached.iter().any(|d| d.spec.field == *field))
}

/// Relabels the object's Drifts that carry another shard's label with its
/// own, read from the API server (not a cache: this shard's holds none of
/// them), so that its history (phase, decisions, revert record) comes along
/// rather than being written anew. Answers how many are not in this shard's
/// cache yet: those it moved, and those moved before that the watch has not
/// brought (deciding without them would write them anew).
async fn drifts_elsewhere(ctx: &Context, p: &CloudProvisioned, cached: &[&Drift]) -> Result<usize, Error> {
    let namespace = p.namespace().unwrap_or_default();
    let object = format!("{namespace}/{}", p.name_any());
    let fail = |source| Error::MoveDrifts { object: object.clone(), source };
    let api: Api<Drift> = Api::namespaced(ctx.client.clone(), &namespace);
    let selector = format!("{LABEL_PROVISIONED}={}", api::label_value(&p.name_any()));
    let listed = api.list(&kube::api::ListParams::default().labels(&selector)).await.map_err(fail)?;
    let ours = p.labels().get(LABEL_SHARD);
    let (mut moved, mut arriving) = (0, 0);
    for drift in listed.items.iter().filter(|d| d.spec.provisioned_ref.name == p.name_any()) {
        if drift.labels().get(LABEL_SHARD) == ours {
            arriving += usize::from(!cached.iter().any(|d| d.name_any() == drift.name_any()));
            continue;
        }
        let to = ours.map(String::as_str);
        super::handoff::relabel(&api, &drift.name_any(), to, &ctx.metrics.writes).await.map_err(fail)?;
        moved += 1;
    }
    if moved > 0 {
        tracing::info!(object, moved, "moved Drifts into this shard with their CloudProvisioned");
    }
    Ok(moved + arriving)
}

fn drifts_of(ctx: &Context, key: &str) -> Vec<Arc<Drift>> {
    let index = ctx.caches.drifts_by_owner.read().expect("drift index lock poisoned");
    index.get(key).iter().filter_map(|r| ctx.caches.drifts.get(r)).collect()
}

/// What a reconcile leaves for the next: its writes (which the next one
/// waits to see), the write-backs it asks for, and the object's failures in
/// a row (a permanent one said on the object).
async fn remember(
    ctx: &Context,
    p: &CloudProvisioned,
    key: &str,
    result: &Result<(), Error>,
    (written, write_back): (Written, Vec<Job>),
) {
    if result.is_ok()
        && let Some(writeback) = &ctx.writeback
    {
        write_back.into_iter().for_each(|job| writeback.request(job));
    }
    if !written.is_empty() {
        ctx.written.lock().expect("written lock poisoned").insert(key.to_owned(), written);
    }
    match result {
        Ok(()) => {
            remove_and_shrink(&mut ctx.failures.lock().expect("failures lock poisoned"), key);
        }
        Err(error) if error.class() == ErrorClass::Permanent => report_permanent(ctx, p, error).await,
        Err(_) => {}
    }
}

/// Whether `error` only says that `p` went away under the reconcile. A Drift
/// that is not found may be one the garbage collector removed because `p` was
/// deleted: the API server, not the cache (which may lag), says whether it was.
async fn gone(ctx: &Context, p: &CloudProvisioned, error: &Error) -> bool {
    if error.is_gone() {
        return true;
    }
    if !matches!(error, Error::WriteDrift { .. }) || !error.is_not_found() {
        return false;
    }
    let api: Api<CloudProvisioned> = Api::namespaced(ctx.client.clone(), &p.namespace().unwrap_or_default());
    match api.get_opt(&p.name_any()).await {
        Ok(None) => true,
        Ok(Some(now)) => now.metadata.deletion_timestamp.is_some() || now.uid() != p.uid(),
        Err(_) => false,
    }
}

/// The API server refuses new objects in a namespace being deleted.
fn namespace_terminating(error: &kube::Error) -> bool {
    let kube::Error::Api(s) = error else { return false };
    let causes = s.details.iter().flat_map(|d| &d.causes);
    s.code == 403
        && (causes.into_iter().any(|c| c.reason == "NamespaceTerminating") || s.message.contains("being terminated"))
}

/// How long after the inventory read the live value its Drift was written.
fn observe_detection(ctx: &Context, resource: Option<&api::CloudResource>) {
    let Some(synced) = resource.and_then(|r| r.status.as_ref()?.synced_time.as_ref()) else { return };
    let millis = api::now().0.as_millisecond() - synced.0.as_millisecond();
    ctx.metrics.detection_latency.observe(millis.max(0) as f64 / 1000.0);
}

/// The other CloudProvisioneds that name the same CloudResource as `p`.
fn peers(ctx: &Context, p: &CloudProvisioned) -> Vec<Arc<CloudProvisioned>> {
    let refs = ctx.caches.by_resource.read().expect("index lock poisoned").get(&p.spec.resource_ref.name);
    refs.iter()
        .filter(|r| r.name != p.name_any() || r.namespace != p.namespace())
        .filter_map(|r| ctx.caches.provisioned.get(r))
        .collect()
}

/// `<drift uid>/<detectedTime>/<hash of the accepted value>`: one accepted
/// episode, as the commit trailer names it. detectedTime has whole seconds:
/// two episodes of one second (a value that moved again at once) differ by
/// the value they accepted.
fn accept_id(d: &Drift) -> Option<String> {
    let status = d.status.as_ref()?;
    let detected = status.detected_time.as_ref()?;
    let value = api::fnv1a(&status.actual.to_string());
    Some(format!("{}/{}/{value:08x}", d.metadata.uid.as_deref()?, detected.0))
}

/// What the write-back of each pending overlay accept of `p` came to so far, by Drift name.
fn git_outcomes(ctx: &Context, p: &CloudProvisioned, drifts: &[&Drift]) -> BTreeMap<String, WritebackOutcome> {
    let (Some(writeback), Some(status)) = (&ctx.writeback, &p.status) else { return BTreeMap::new() };
    status
        .pending_git_changes
        .iter()
        .filter_map(|entry| drifts.iter().find(|d| d.name_any() == entry.drift))
        .filter_map(|d| {
            let outcome = writeback.outcome(&accept_id(d)?).or_else(|| {
                let refused = d.status.as_ref()?.git.as_ref()?;
                writeback.allows_now(refused).then_some(WritebackOutcome::Reconsider)
            });
            Some((d.name_any(), outcome?))
        })
        .collect()
}

/// The write-backs the plan asks for, built while the plan still holds the pending entries.
fn write_back_jobs(ctx: &Context, p: &CloudProvisioned, drifts: &[&Drift], plan: &Plan) -> Vec<Job> {
    if ctx.writeback.is_none() || plan.write_back.is_empty() {
        return Vec::new();
    }
    let status = plan.status.as_ref().or(p.status.as_ref());
    let pending = status.map(|s| s.pending_git_changes.as_slice()).unwrap_or_default();
    let mut jobs = Vec::new();
    for name in &plan.write_back {
        let (Some(entry), Some(d)) =
            (pending.iter().find(|e| &e.drift == name), drifts.iter().find(|d| &d.name_any() == name))
        else {
            continue;
        };
        let Some(accept_id) = accept_id(d) else { continue };
        let change = Change {
            namespace: p.namespace().unwrap_or_default(),
            name: p.name_any(),
            field: entry.field.clone(),
            value: entry.value.clone(),
            spec_value: entry.spec_value.clone(),
            drift: name.clone(),
            accepted_by: entry.accepted_by.clone(),
            accept_id,
        };
        jobs.push(Job { change, annotations: p.annotations().clone(), labels: p.labels().clone() });
    }
    jobs
}

/// Who owns each `spec.desired` key, from the object as the API server has
/// it; empty (so messages say "unknown") when it cannot be read.
async fn field_owners(ctx: &Context, p: &CloudProvisioned) -> BTreeMap<String, String> {
    let api: Api<CloudProvisioned> = Api::namespaced(ctx.client.clone(), &p.namespace().unwrap_or_default());
    match api.get(&p.name_any()).await {
        Ok(full) => crate::accept::field_owners(&full),
        Err(error) => {
            tracing::warn!(%error, object = %p.name_any(), "cannot read managedFields; the field's manager is reported as unknown");
            BTreeMap::new()
        }
    }
}

/// Tries a failed object again after its backoff (see [`retry`]); a
/// permanent failure is logged once, and said on the object.
pub fn error_policy(p: Arc<CloudProvisioned>, error: &Error, ctx: Arc<Context>) -> Action {
    let key = format!("{}/{}", p.namespace().unwrap_or_default(), p.name_any());
    let failures = {
        let mut all = ctx.failures.lock().expect("failures lock poisoned");
        let n = all.entry(key).or_insert(0);
        *n = n.saturating_add(1);
        *n
    };
    let class = error.class();
    let wait = retry::backoff(class, failures);
    // A conflict is the precondition doing its job (the caches were behind); a repeated permanent error was said once.
    if class == ErrorClass::Conflict || (class == ErrorClass::Permanent && failures > 1) {
        tracing::debug!(%error, failures, "reconcile failed again; retrying in {}s", wait.as_secs());
    } else {
        tracing::warn!(%error, ?class, "reconcile failed; retrying in {}s", wait.as_secs());
    }
    Action::requeue(jittered(wait))
}

/// Says on the object that it cannot be reconciled until something changes
/// (`Reconciled=False`, the error as its message); the next successful
/// status write drops the condition. Best effort: the log has it as well.
async fn report_permanent(ctx: &Context, p: &CloudProvisioned, error: &Error) {
    let api: Api<CloudProvisioned> = Api::namespaced(ctx.client.clone(), &p.namespace().unwrap_or_default());
    // The reconcile may have written the status before failing: add to that, not to the cached copy.
    let p = match api.get_status(&p.name_any()).await {
        Ok(fresh) => fresh,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the object to record Reconciled=False on it");
            return;
        }
    };
    let mut status = p.status.clone().unwrap_or_default();
    let message = error.to_string();
    if status.conditions.iter().any(|c| c.type_ == retry::CONDITION_RECONCILED && c.message == message) {
        return;
    }
    status.conditions.retain(|c| c.type_ != retry::CONDITION_RECONCILED);
    status.conditions.push(k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
        type_: retry::CONDITION_RECONCILED.into(),
        status: crate::api::ConditionStatus::False.as_str().into(),
        reason: "PermanentError".into(),
        message,
        observed_generation: p.metadata.generation,
        last_transition_time: api::now(),
    });
    let body = json!({
        "apiVersion": "arcadia.cloud/v1alpha1",
        "kind": "CloudProvisioned",
        "metadata": {"resourceVersion": p.resource_version()},
        "status": status,
    });
    if let Err(e) = api.patch_status(&p.name_any(), &apply_params(), &Patch::Apply(body)).await {
        tracing::warn!(error = %e, "cannot record Reconciled=False on the object");
    }
}

/// The resourceVersions our writes produced, for one CloudProvisioned.
#[derive(Debug)]
pub struct Written {
    provisioned: Option<u64>,
    drifts: Vec<(String, u64)>,
    at: Instant,
}

impl Default for Written {
    fn default() -> Self {
        Self { provisioned: None, drifts: Vec::new(), at: Instant::now() }
    }
}

impl Written {
    fn is_empty(&self) -> bool {
        self.provisioned.is_none() && self.drifts.is_empty()
    }

    fn provisioned(&mut self, obj: &CloudProvisioned) {
        self.provisioned = self.provisioned.max(resource_version(obj));
    }

    fn drift(&mut self, obj: &Drift) {
        if let Some(rv) = resource_version(obj) {
            self.drifts.retain(|(n, _)| n != &obj.name_any());
            self.drifts.push((obj.name_any(), rv));
        }
    }
}

/// The resourceVersion of each object as this reconcile last saw or wrote
/// it: every write is conditional on it, so a write planned on an older copy
/// than the API server's fails (409) and the object is reconciled again.
struct Versions {
    provisioned: Option<String>,
    drifts: HashMap<String, String>,
}

impl Versions {
    fn saw_drift(&mut self, obj: &Drift) {
        if let Some(rv) = obj.resource_version() {
            self.drifts.insert(obj.name_any(), rv);
        }
    }
}

/// resourceVersions are opaque by contract but etcd revisions in practice;
/// when one does not parse, we simply do not wait for it.
fn resource_version<K: Resource>(obj: &K) -> Option<u64> {
    obj.meta().resource_version.as_deref()?.parse().ok()
}

/// How soon a reconcile whose caches lag behind its own writes comes back.
const CATCH_UP_POLL: Duration = Duration::from_millis(250);
/// How long it waits for them at most before it plans anyway: a write the
/// caches never show (the object replaced meanwhile) must not block it for ever.
const READ_YOUR_WRITES: Duration = Duration::from_secs(30);

/// Whether the caches show every write the previous reconcile of `key` made.
fn caught_up(ctx: &Context, key: &str) -> bool {
    let mut all = ctx.written.lock().expect("written lock poisoned");
    let Some(written) = all.get(key) else { return true };
    let (namespace, name) = key.split_once('/').unwrap_or(("", key));
    let provisioned = written.provisioned.is_none_or(|rv| {
        let obj = ctx.caches.provisioned.get(&ObjectRef::new(name).within(namespace));
        obj.and_then(|o| resource_version(o.as_ref())).is_some_and(|have| have >= rv)
    });
    let seen = provisioned
        && written.drifts.iter().all(|(drift, rv)| {
            let obj = ctx.caches.drifts.get(&ObjectRef::new(drift).within(namespace));
            obj.and_then(|o| resource_version(o.as_ref())).is_some_and(|have| have >= *rv)
        });
    let waited_long = written.at.elapsed() > READ_YOUR_WRITES;
    if waited_long && !seen {
        tracing::warn!(
            object = key,
            "the caches have not shown this controller's last writes for 30s; planning anyway"
        );
    }
    if seen || waited_long {
        remove_and_shrink(&mut all, key);
    }
    seen || waited_long
}

/// Removes `key`, and gives back the map's room once it is mostly empty: a
/// cold start records a write for every object, and a `HashMap` keeps the
/// room for all of them (1.4 MB at 10,000 objects) after they are removed.
fn remove_and_shrink<V>(map: &mut HashMap<String, V>, key: &str) {
    if map.remove(key).is_some() && map.capacity() > 64 && map.len() < map.capacity() / 4 {
        map.shrink_to(map.len() * 2);
    }
}

/// The object a reconcile writes, and the APIs to write it with.
struct WriteTarget<'a> {
    p: &'a CloudProvisioned,
    namespace: String,
    provisioned: Api<CloudProvisioned>,
    drifts: Api<Drift>,
}

impl WriteTarget<'_> {
    fn object(&self) -> String {
        format!("{}/{}", self.namespace, self.p.name_any())
    }
}

/// Writes the plan in a crash-safe order: an accepted value is stored (in the
/// spec, or in the status for an overlay) before its Drift says Accepted, and
/// the accept annotation goes last.
async fn write(
    ctx: &Context,
    p: &CloudProvisioned,
    plan: Plan,
    versions: &mut Versions,
    written: &mut Written,
) -> Result<(), Error> {
    let namespace = p.namespace().unwrap_or_default();
    let target = WriteTarget {
        p,
        provisioned: Api::namespaced(ctx.client.clone(), &namespace),
        drifts: Api::namespaced(ctx.client.clone(), &namespace),
        namespace,
    };
    // Each Event goes out right after the write that makes it true: a later
    // write that fails must not take it with it.
    let mut events: Vec<&PlannedEvent> = plan.events.iter().collect();
    if !plan.adopt.is_empty() {
        write_adopt(ctx, &target, &plan.adopt, versions, written).await?;
    }
    if plan.status_first {
        write_status(ctx, &target, plan.status.as_ref(), versions, written).await?;
        publish_where(ctx, &target, &mut events, |r| matches!(r, Regarding::Provisioned)).await;
    }
    for w in &plan.drift_writes {
        write_drift(ctx, &target, w, versions, written).await?;
        publish_where(ctx, &target, &mut events, |r| regards_drift(r, &w.name)).await;
    }
    for name in &plan.consume_annotations {
        remove_annotations(ctx, &target, name, &plan::CONSUMED, versions, written).await?;
    }
    for (name, keys) in &plan.stray_actors {
        remove_annotations(ctx, &target, name, keys, versions, written).await?;
    }
    if !plan.status_first {
        write_status(ctx, &target, plan.status.as_ref(), versions, written).await?;
    }
    publish_where(ctx, &target, &mut events, |_| true).await;
    // Last: a decision is kept once it is recorded on the objects.
    ctx.journal.apply(&target.namespace, plan.journal).await.map_err(|source| Error::Journal { source })?;
    Ok(())
}

fn regards_drift(regarding: &Regarding, drift: &str) -> bool {
    matches!(regarding, Regarding::Drift(name) | Regarding::ProvisionedAbout(name) if name == drift)
}

/// Publishes, in plan order, the events not yet published that `which` selects.
async fn publish_where(
    ctx: &Context,
    t: &WriteTarget<'_>,
    events: &mut Vec<&PlannedEvent>,
    which: impl Fn(&Regarding) -> bool,
) {
    let (now, later): (Vec<&PlannedEvent>, Vec<&PlannedEvent>) = events.iter().partition(|e| which(&e.regarding));
    *events = later;
    for event in now {
        publish(ctx, t.p, &t.namespace, event).await;
    }
}

fn apply_params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

async fn write_adopt(
    ctx: &Context,
    t: &WriteTarget<'_>,
    adopt: &Map<String, Value>,
    versions: &mut Versions,
    written: &mut Written,
) -> Result<(), Error> {
    let body = adopt_body(t.p, adopt);
    let obj = t
        .provisioned
        .patch(&t.p.name_any(), &apply_params(), &Patch::Apply(&body))
        .await
        .map_err(|source| Error::Adopt { object: t.object(), source })?;
    versions.provisioned = obj.resource_version();
    written.provisioned(&obj);
    ctx.metrics.writes.count("cloudprovisioned");
    Ok(())
}

async fn write_status(
    ctx: &Context,
    t: &WriteTarget<'_>,
    status: Option<&CloudProvisionedStatus>,
    versions: &mut Versions,
    written: &mut Written,
) -> Result<(), Error> {
    let Some(status) = status else { return Ok(()) };
    let mut body = json!({
        "apiVersion": "arcadia.cloud/v1alpha1",
        "kind": "CloudProvisioned",
        "metadata": {"resourceVersion": versions.provisioned},
        "status": status,
    });
    // A list another manager wrote is not ours to omit: take it over, empty, to remove it.
    if status.pending_git_changes.is_empty() && crate::accept::provenance::trusted_pending(t.p).is_err() {
        body["status"]["pendingGitChanges"] = json!([]);
    }
    let obj = t
        .provisioned
        .patch_status(&t.p.name_any(), &apply_params(), &Patch::Apply(body))
        .await
        .map_err(|source| Error::WriteStatus { object: t.object(), source })?;
    versions.provisioned = obj.resource_version();
    written.provisioned(&obj);
    ctx.metrics.writes.count("cloudprovisioned_status");
    Ok(())
}

async fn write_drift(
    ctx: &Context,
    t: &WriteTarget<'_>,
    w: &DriftWrite,
    versions: &mut Versions,
    written: &mut Written,
) -> Result<(), Error> {
    let object = format!("{}/{}", t.namespace, w.name);
    if w.apply_object {
        let mut body = drift_body(t.p, w);
        if let Some(version) = versions.drifts.get(&w.name) {
            body["metadata"]["resourceVersion"] = json!(version);
        }
        let obj = t
            .drifts
            .patch(&w.name, &apply_params(), &Patch::Apply(body))
            .await
            .map_err(|source| Error::WriteDrift { object: object.clone(), source })?;
        versions.saw_drift(&obj);
        ctx.metrics.writes.count("drift");
    }
    // `status.revert` belongs to the reverter: never applied here, so never taken from it.
    let status = DriftStatus { revert: None, ..w.status.clone() };
    let mut status = json!({"apiVersion": "arcadia.cloud/v1alpha1", "kind": "Drift", "status": status});
    if let Some(version) = versions.drifts.get(&w.name) {
        status["metadata"] = json!({"resourceVersion": version});
    }
    let obj = t
        .drifts
        .patch_status(&w.name, &apply_params(), &Patch::Apply(status))
        .await
        .map_err(|source| Error::WriteDrift { object, source })?;
    versions.saw_drift(&obj);
    written.drift(&obj);
    ctx.metrics.writes.count("drift_status");
    Ok(())
}

/// Removes `keys` from a Drift's annotations, only from the version the plan
/// saw (or this reconcile wrote): an annotation set again meanwhile makes the
/// patch conflict, and the next reconcile acts on it.
async fn remove_annotations(
    ctx: &Context,
    t: &WriteTarget<'_>,
    name: &str,
    keys: &[&str],
    versions: &mut Versions,
    written: &mut Written,
) -> Result<(), Error> {
    let nulls: Map<String, Value> = keys.iter().map(|k| (k.to_string(), Value::Null)).collect();
    let mut patch = json!({"metadata": {"annotations": nulls}});
    if let Some(version) = versions.drifts.get(name) {
        patch["metadata"]["resourceVersion"] = json!(version);
    }
    let params = PatchParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() };
    let obj = t
        .drifts
        .patch(name, &params, &Patch::Merge(patch))
        .await
        .map_err(|source| Error::ClearAccept { object: format!("{}/{name}", t.namespace), source })?;
    versions.saw_drift(&obj);
    written.drift(&obj);
    ctx.metrics.writes.count("drift");
    Ok(())
}

/// The server-side apply of accepted values. It lists every desired field this
/// manager already owns as well, since an apply that omits a field it owned
/// would remove it; `resourceVersion` makes it fail rather than overwrite a
/// spec edited after our cache saw it.
fn adopt_body(p: &CloudProvisioned, adopt: &Map<String, Value>) -> Value {
    let mut desired: Map<String, Value> =
        owned_desired_fields(p).into_iter().filter_map(|k| p.spec.desired.get(&k).map(|v| (k, v.clone()))).collect();
    desired.extend(adopt.clone());
    json!({
        "apiVersion": "arcadia.cloud/v1alpha1",
        "kind": "CloudProvisioned",
        "metadata": {"name": p.name_any(), "resourceVersion": p.resource_version()},
        "spec": {"desired": desired},
    })
}

/// The `spec.desired` keys that our field manager owns through apply.
fn owned_desired_fields(p: &CloudProvisioned) -> Vec<String> {
    p.managed_fields()
        .iter()
        .filter(|m| m.manager.as_deref() == Some(FIELD_MANAGER) && m.operation.as_deref() == Some("Apply"))
        .filter_map(|m| m.fields_v1.as_ref())
        .filter_map(|f| f.0.get("f:spec")?.get("f:desired")?.as_object().cloned())
        .flat_map(|fields| fields.into_iter().filter_map(|(k, _)| k.strip_prefix("f:").map(str::to_owned)))
        .collect()
}

fn drift_body(p: &CloudProvisioned, w: &DriftWrite) -> Value {
    let mut labels = json!({
        LABEL_PROVISIONED: api::label_value(&p.name_any()),
        LABEL_PHASE: w.status.phase.as_str(),
        LABEL_SEVERITY: w.severity,
    });
    // A Drift goes with its CloudProvisioned's shard, whose watch selects it by this label.
    if let Some(shard) = p.labels().get(LABEL_SHARD) {
        labels[LABEL_SHARD] = json!(shard);
    }
    json!({
        "apiVersion": "arcadia.cloud/v1alpha1",
        "kind": "Drift",
        "metadata": {
            "name": w.name,
            "labels": labels,
            "ownerReferences": [p.controller_owner_ref(&()).expect("a CloudProvisioned from the API has a name and uid")],
        },
        "spec": {
            "provisionedRef": {"name": p.name_any()},
            "resourceRef": {"name": p.spec.resource_ref.name},
            "field": w.field,
        },
    })
}

async fn publish(ctx: &Context, p: &CloudProvisioned, namespace: &str, event: &PlannedEvent) {
    let drift = |name: &str| ObjectReference {
        api_version: Some(Drift::api_version(&()).into()),
        kind: Some(Drift::kind(&()).into()),
        name: Some(name.to_owned()),
        namespace: Some(namespace.into()),
        ..Default::default()
    };
    let (regarding, secondary) = match &event.regarding {
        Regarding::Provisioned => (p.object_ref(&()), None),
        Regarding::ProvisionedAbout(name) => (p.object_ref(&()), Some(drift(name))),
        Regarding::Drift(name) => (drift(name), None),
    };
    let kube_event = events::Event {
        type_: if event.warning { EventType::Warning } else { EventType::Normal },
        reason: event.reason.into(),
        note: Some(event.message.chars().take(1024).collect()),
        action: event.action.into(),
        secondary,
    };
    match ctx.recorder.publish(&kube_event, &regarding).await {
        Ok(()) => ctx.metrics.writes.count("event"),
        // An Event is a courtesy: losing one must not fail or repeat the reconcile.
        Err(error) if namespace_terminating(&error) => {
            tracing::debug!(%error, reason = event.reason, "the namespace is being deleted; Event dropped")
        }
        Err(error) => tracing::warn!(%error, reason = event.reason, "cannot publish Event"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{CloudProvisionedSpec, Fields, ResourceRef};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry};

    #[test]
    fn a_map_emptied_after_a_cold_start_gives_its_room_back() {
        let mut map: HashMap<String, u32> = (0..10_000).map(|i| (format!("ns/web-{i}"), i)).collect();
        let full = map.capacity();
        for i in 0..9_990 {
            remove_and_shrink(&mut map, &format!("ns/web-{i}"));
        }
        assert_eq!(map.len(), 10);
        assert!(map.capacity() < full / 100, "{} of {full} kept", map.capacity());
        remove_and_shrink(&mut map, "ns/no-such-object");
        assert_eq!((map.len(), map.get("ns/web-9999")), (10, Some(&9999)), "nothing else removed");
    }

    #[test]
    fn adopt_keeps_fields_this_manager_already_owns() {
        let mut p = CloudProvisioned::new(
            "web-1",
            CloudProvisionedSpec {
                resource_ref: ResourceRef { name: "r".into() },
                desired: Fields::try_from(json!({"size_slug": "a", "region": "nyc3", "vcpus": 2})).unwrap(),
                ..Default::default()
            },
        );
        p.metadata.resource_version = Some("42".into());
        p.metadata.managed_fields = Some(vec![
            ManagedFieldsEntry {
                manager: Some(FIELD_MANAGER.into()),
                operation: Some("Apply".into()),
                fields_v1: Some(FieldsV1(json!({"f:spec": {"f:desired": {"f:size_slug": {}}}}))),
                ..Default::default()
            },
            ManagedFieldsEntry {
                manager: Some("kubectl".into()),
                operation: Some("Apply".into()),
                fields_v1: Some(FieldsV1(json!({"f:spec": {"f:desired": {"f:region": {}}}}))),
                ..Default::default()
            },
        ]);
        let body = adopt_body(&p, json!({"vcpus": 4}).as_object().unwrap());
        assert_eq!(body["spec"]["desired"], json!({"size_slug": "a", "vcpus": 4}));
        assert_eq!(body["metadata"]["resourceVersion"], "42");
    }
}
