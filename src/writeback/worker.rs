//! The write-back worker: takes accepted values to commit, finds where each
//! object's manifest lives and with which credentials, commits and pushes,
//! and keeps each outcome for the controller to record on the Drift. Runs on
//! the leader only, one write-back at a time.

use super::commit::Change;
use super::edit;
use super::git::{self, Credentials, GitError, GitSettings, Pushed, Remote};
use super::metrics::WritebackMetrics;
use super::remote_url;
use super::source::{self, Origin};
use crate::api::{ANNOTATION_GIT_CREDENTIALS, CloudProvisioned, GitCommit};
use crate::runtime::Stop;
use crate::runtime::fence::Fence;
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, mpsc};

#[derive(Clone, Debug)]
pub struct WritebackSettings {
    pub git: GitSettings,
    /// `--git-credentials-secret NAMESPACE/NAME`, for objects without the annotation.
    pub credentials_secret: Option<(String, String)>,
    /// `--git-allowed-remotes`: the only remotes a write-back goes to unless
    /// the object names credentials of its own namespace.
    pub allowed_remotes: Vec<String>,
    /// Where Argo CD Applications live (`--argocd-namespace`).
    pub argocd_namespace: String,
}

/// One accepted value to write back, with what the object says of its origin.
#[derive(Clone, Debug)]
pub struct Job {
    pub change: Change,
    pub annotations: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
}

/// What a write-back came to.
#[derive(Clone, Debug, PartialEq)]
pub enum WritebackOutcome {
    /// In Git: committed now, found committed, or Git held the value already.
    Pushed(GitCommit),
    /// Never to be written back: recorded on the Drift (`status.git.refused`).
    Refused(GitCommit),
    /// A later accept, a merge or Git replaced this one before it was pushed: dropped.
    Superseded,
    /// The refusal recorded on the Drift no longer holds (its remote is allowed
    /// now): write it back again.
    Reconsider,
    Failed {
        message: String,
        transient: bool,
    },
    /// Nothing says where the manifest lives: no write-back.
    NoOrigin(String),
}

/// An object the write-back needs could not be read.
#[derive(Debug, thiserror::Error)]
#[error("reading {object}: {source}")]
struct Unread {
    object: String,
    source: kube::Error,
}

struct Entry {
    outcome: Option<WritebackOutcome>,
    attempts: u32,
    retry_at: Option<Instant>,
}

/// The handle the controller holds: ask for write-backs, read their outcomes.
#[derive(Clone)]
pub struct Writeback {
    entries: Arc<Mutex<HashMap<String, Entry>>>,
    queue: Arc<Mutex<Queue>>,
    wake: Arc<Notify>,
    allowed_remotes: Arc<[String]>,
}

/// Jobs waiting, at most one per (namespace, name, field): a newer accept of
/// a field replaces the job of an older one, so only the current decision is
/// ever committed.
#[derive(Default)]
struct Queue {
    order: VecDeque<Key>,
    jobs: HashMap<Key, Job>,
}

type Key = (String, String, String);

impl Queue {
    /// Queues `job` in the place of its field's older job, if any, which it returns.
    fn push(&mut self, job: Job) -> Option<Job> {
        let key = (job.change.namespace.clone(), job.change.name.clone(), job.change.field.clone());
        let replaced = self.jobs.insert(key.clone(), job);
        if replaced.is_none() {
            self.order.push_back(key);
        }
        replaced
    }

    fn pop(&mut self) -> Option<Job> {
        let key = self.order.pop_front()?;
        self.jobs.remove(&key)
    }
}

/// How a refusal for a remote outside `--git-allowed-remotes` ends.
const NOT_ALLOWED: &str = "is not in --git-allowed-remotes";

/// Outcomes kept in memory at most; the final ones are on the Drifts too.
const MAX_ENTRIES: usize = 4096;

/// The worker half; [`Worker::run`] it on the leader.
pub struct Worker {
    client: Client,
    settings: WritebackSettings,
    metrics: WritebackMetrics,
    entries: Arc<Mutex<HashMap<String, Entry>>>,
    queue: Arc<Mutex<Queue>>,
    wake: Arc<Notify>,
    /// `(namespace, name)` of a CloudProvisioned whose write-back has an outcome.
    done: mpsc::UnboundedSender<(String, String)>,
    /// Whether this replica may push now (see [`Fence`]).
    fence: Fence,
}

pub fn writeback(
    client: Client,
    settings: WritebackSettings,
    metrics: WritebackMetrics,
    done: mpsc::UnboundedSender<(String, String)>,
    fence: Fence,
) -> (Writeback, Worker) {
    let entries: Arc<Mutex<HashMap<String, Entry>>> = Arc::default();
    let (queue, wake): (Arc<Mutex<Queue>>, Arc<Notify>) = Default::default();
    let allowed_remotes = settings.allowed_remotes.clone().into();
    let handle = Writeback { entries: entries.clone(), queue: queue.clone(), wake: wake.clone(), allowed_remotes };
    (handle, Worker { client, settings, metrics, entries, queue, wake, done, fence })
}

impl Writeback {
    /// The outcome of the write-back of an accept, once there is one.
    pub fn outcome(&self, accept_id: &str) -> Option<WritebackOutcome> {
        self.entries.lock().expect("write-back lock poisoned").get(accept_id).and_then(|e| e.outcome.clone())
    }

    /// Whether a refusal recorded on a Drift was for a remote this controller
    /// now allows (`--git-allowed-remotes` changed since): the one refusal
    /// whose cause can go away without a new accept.
    pub fn allows_now(&self, refused: &GitCommit) -> bool {
        let for_remote = refused.refused.as_deref().is_some_and(|why| why.ends_with(NOT_ALLOWED));
        for_remote && remote_url::allowed_by(&refused.url, &self.allowed_remotes)
    }

    /// Queues a write-back unless it is queued or done already, or waits out a backoff.
    pub fn request(&self, job: Job) {
        let mut entries = self.entries.lock().expect("write-back lock poisoned");
        if entries.len() >= MAX_ENTRIES {
            // Final outcomes are recorded on their Drifts, which are not asked about again.
            entries.retain(|_, e| matches!(e.outcome, None | Some(WritebackOutcome::Failed { .. })));
        }
        let entry =
            entries.entry(job.change.accept_id.clone()).or_insert(Entry { outcome: None, attempts: 0, retry_at: None });
        let due = match (&entry.outcome, entry.retry_at) {
            (None, _) => entry.attempts == 0,
            (Some(WritebackOutcome::Failed { transient: true, .. }), Some(at)) => Instant::now() >= at,
            _ => false,
        };
        if due {
            entry.retry_at = None;
            entry.attempts += 1;
            entry.outcome = entry.outcome.take().filter(|_| entry.attempts > 1);
            let accept_id = job.change.accept_id.clone();
            let replaced = self.queue.lock().expect("write-back queue lock poisoned").push(job);
            // A replaced job never runs, so its entry would never get an outcome nor leave.
            if let Some(old) = replaced.filter(|old| old.change.accept_id != accept_id) {
                entries.remove(&old.change.accept_id);
            }
            self.wake.notify_one();
        }
    }
}

/// Forgets a job dropped without an outcome, so that it is neither kept
/// for ever nor taken for one in flight when it is asked for again.
fn forget(entries: &Mutex<HashMap<String, Entry>>, accept_id: &str) {
    entries.lock().expect("write-back lock poisoned").remove(accept_id);
}

impl Worker {
    /// Pushes queued write-backs one at a time until `stop` is raised; a push
    /// in flight then finishes (a safe point), and nothing more starts.
    pub async fn run(self, stop: Stop) {
        git::remove_leftovers();
        while !stop.is_raised() {
            let next = self.queue.lock().expect("write-back queue lock poisoned").pop();
            let Some(job) = next else {
                tokio::select! {
                    _ = self.wake.notified() => continue,
                    _ = stop.clone().stopped() => return,
                }
            };
            let outcome = self.write_back(&job).await;
            if !self.fence.holds() {
                // Stepping down: the next leader's controller asks for it again.
                tracing::info!(field = %job.change.field, "not recording a write-back outcome: this replica no longer holds the lease");
                forget(&self.entries, &job.change.accept_id);
                continue;
            }
            self.record(&job, outcome);
        }
    }

    /// Whether `change` is still the object's pending overlay entry for its
    /// field: a later accept, a merge or a supersede makes it stale.
    async fn still_current(&self, change: &Change) -> Result<bool, Unread> {
        let api: Api<CloudProvisioned> = Api::namespaced(self.client.clone(), &change.namespace);
        let object = api.get_opt(&change.name).await.map_err(|source| Unread {
            object: format!("CloudProvisioned {}/{}", change.namespace, change.name),
            source,
        })?;
        let Some(p) = object else { return Ok(false) };
        let pending = crate::accept::provenance::trusted_pending(&p).unwrap_or_default();
        Ok(pending.iter().any(|e| {
            e.field == change.field && e.drift == change.drift && crate::detect::loosely_equal(&e.value, &change.value)
        }))
    }

    async fn write_back(&self, job: &Job) -> WritebackOutcome {
        let change = &job.change;
        let origin = match source::origin(&change.namespace, &job.annotations, &job.labels) {
            Ok(origin) => origin,
            Err(why) => return refused_for(&why.to_string()),
        };
        let annotated = matches!(origin, Origin::Annotated(_));
        let Resolved { mut remote, flux_secret, kustomization } = match self.remote(origin, change).await {
            Ok(Some(resolved)) => resolved,
            Ok(None) => return WritebackOutcome::NoOrigin("nothing says where the manifest lives in Git".into()),
            Err(error) => return error,
        };
        let own_secret = job.annotations.get(ANNOTATION_GIT_CREDENTIALS).map(|n| (change.namespace.clone(), n.clone()));
        if annotated && own_secret.is_none() {
            // The platform's credentials where a tenant's annotations point: a
            // document naming no namespace there may be another tenant's object.
            remote.default_namespace = Some(edit::NAMESPACE_REQUIRED.to_owned());
        }
        // The tenant's own Secret for its own remote, Flux's for Flux's repository;
        // the controller-wide one only where the platform allows it.
        let secret = match own_secret.or(flux_secret) {
            Some(secret) => Some(secret),
            None if remote_url::allowed_by(&remote.url, &self.settings.allowed_remotes) => {
                self.settings.credentials_secret.clone()
            }
            None => {
                self.metrics.count_push("refused");
                return refused(&remote, format!("{} {NOT_ALLOWED}", remote.url));
            }
        };
        let credentials = match self.credentials(secret).await {
            Ok(credentials) => credentials,
            Err(error) => return error,
        };
        // An unreadable object is no reason to drop a write-back: git's own checks still hold.
        // A replica that no longer holds the lease pushes nothing (the next leader will).
        let still_current = || async {
            let _ = self.fence.confirm().await;
            self.fence.holds() && self.still_current(change).await.unwrap_or(true)
        };
        let pushed =
            git::write_back_while(&self.settings.git, &remote, credentials.as_ref(), change, still_current).await;
        self.metrics.count_push(match &pushed {
            Ok(Pushed::Committed { .. }) => "committed",
            Ok(Pushed::AlreadyCommitted { .. }) => "already_committed",
            Ok(Pushed::AlreadyInGit { .. }) => "already_in_git",
            Err(GitError::Refused(_) | GitError::NotWritable(_) | GitError::Substituted { .. }) => "refused",
            Err(GitError::Superseded) => "superseded",
            Err(_) => "failed",
        });
        match pushed {
            Ok(pushed) => WritebackOutcome::Pushed(record(&remote, pushed)),
            Err(GitError::Substituted { path, field, variable }) => {
                let (why, variable) = source::substitution_refusal(&path, &field, &variable, kustomization.as_ref());
                WritebackOutcome::Refused(GitCommit { flux_variable: Some(variable), ..refusal(&remote, why) })
            }
            Err(error @ (GitError::Refused(_) | GitError::NotWritable(_))) => refused(&remote, error.to_string()),
            Err(GitError::Superseded) => WritebackOutcome::Superseded,
            Err(error) => WritebackOutcome::Failed { transient: error.is_transient(), message: error.to_string() },
        }
    }

    /// The remote for an origin, once the GitOps tool vouches for the object,
    /// and the Secret Flux reads it with; Flux and Argo CD objects are read
    /// only when their CRDs exist.
    async fn remote(&self, origin: Origin, change: &Change) -> Result<Option<Resolved>, WritebackOutcome> {
        let failed = |error: Unread| WritebackOutcome::Failed { message: error.to_string(), transient: true };
        match origin {
            Origin::Unknown => Ok(None),
            Origin::Annotated(remote) => Ok(Some(Resolved { remote, flux_secret: None, kustomization: None })),
            Origin::Flux { namespace: ks_ns, name } => {
                let ks = self
                    .object(("kustomize.toolkit.fluxcd.io", "v1", "Kustomization"), &ks_ns, &name)
                    .await
                    .map_err(failed)?;
                let Some(ks) = ks else { return Ok(None) };
                let (repo_ns, repo) = source::flux_source(&ks, &ks_ns).map_err(|e| refused_for(&e.to_string()))?;
                let gvk = ("source.toolkit.fluxcd.io", "v1", "GitRepository");
                let Some(repository) = self.object(gvk, &repo_ns, &repo).await.map_err(failed)? else {
                    return Ok(None);
                };
                let remote = source::from_flux(&ks, &repository).map_err(|e| refused_for(&e.to_string()))?;
                source::flux_vouches(&ks, &change.namespace, &change.name)
                    .map_err(|e| refused(&remote, e.to_string()))?;
                let flux_secret = source::flux_secret(&repository);
                Ok(Some(Resolved { remote, flux_secret, kustomization: Some(ks) }))
            }
            Origin::Argo { app } => {
                let (app_ns, app) = source::argo_app(&app, &self.settings.argocd_namespace);
                let gvk = ("argoproj.io", "v1alpha1", "Application");
                let Some(app) = self.object(gvk, &app_ns, &app).await.map_err(failed)? else { return Ok(None) };
                let remote = source::from_argo(&app).map_err(|e| refused_for(&e.to_string()))?;
                source::argo_vouches(&app, &change.namespace, &change.name)
                    .map_err(|e| refused(&remote, e.to_string()))?;
                Ok(Some(Resolved { remote, flux_secret: None, kustomization: None }))
            }
        }
    }

    /// A namespaced object of another tool as JSON; `None` when it (or its CRD) does not exist.
    async fn object(
        &self,
        (group, version, kind): (&str, &str, &str),
        ns: &str,
        name: &str,
    ) -> Result<Option<serde_json::Value>, Unread> {
        let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind));
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), ns, &resource);
        match api.get_opt(name).await {
            Ok(found) => Ok(found.map(|o| serde_json::to_value(o).unwrap_or_default())),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(None),
            Err(source) => Err(Unread { object: format!("{kind} {ns}/{name}"), source }),
        }
    }

    /// The push credentials from `secret` (namespace, name), if any.
    async fn credentials(&self, secret: Option<(String, String)>) -> Result<Option<Credentials>, WritebackOutcome> {
        let Some((ns, name)) = secret else { return Ok(None) };
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &ns);
        let secret = api.get(&name).await.map_err(|error| WritebackOutcome::Failed {
            message: format!("cannot read the Git credentials Secret {ns}/{name}: {error}"),
            transient: true,
        })?;
        let data = secret.data.unwrap_or_default();
        let field = |key: &str| data.get(key).map(|v| String::from_utf8_lossy(&v.0).into_owned());
        match (field("username"), field("password"), field("identity"), field("known_hosts")) {
            (_, _, Some(identity), Some(known_hosts)) => Ok(Some(Credentials::Ssh { identity, known_hosts })),
            (_, _, Some(_), None) => Err(WritebackOutcome::Failed {
                message: format!(
                    "the Git credentials Secret {ns}/{name} has an identity but no known_hosts: host keys are never trusted blindly"
                ),
                transient: false,
            }),
            (Some(username), Some(password), None, _) => Ok(Some(Credentials::Basic { username, password })),
            _ => Err(WritebackOutcome::Failed {
                message: format!(
                    "the Git credentials Secret {ns}/{name} has neither username and password (HTTPS) nor identity and known_hosts (SSH)"
                ),
                transient: false,
            }),
        }
    }

    fn record(&self, job: &Job, outcome: WritebackOutcome) {
        let change = &job.change;
        match &outcome {
            WritebackOutcome::Pushed(commit) => {
                tracing::info!(object = %format!("{}/{}", change.namespace, change.name), field = %change.field, commit = %commit.commit, branch = %commit.branch, "accepted value written to Git")
            }
            WritebackOutcome::Failed { message, .. } => {
                tracing::warn!(object = %format!("{}/{}", change.namespace, change.name), field = %change.field, error = %message, "Git write-back failed; the overlay holds")
            }
            WritebackOutcome::Superseded | WritebackOutcome::Reconsider => {
                tracing::info!(object = %format!("{}/{}", change.namespace, change.name), field = %change.field, "write-back dropped: the accept is no longer the pending change")
            }
            WritebackOutcome::Refused(refused) => {
                tracing::warn!(object = %format!("{}/{}", change.namespace, change.name), field = %change.field, why = refused.refused.as_deref().unwrap_or_default(), "Git write-back refused; the overlay holds")
            }
            WritebackOutcome::NoOrigin(why) => {
                tracing::debug!(object = %format!("{}/{}", change.namespace, change.name), why, "no Git write-back")
            }
        }
        let retry_in = {
            let mut entries = self.entries.lock().expect("write-back lock poisoned");
            let entry =
                entries.entry(change.accept_id.clone()).or_insert(Entry { outcome: None, attempts: 1, retry_at: None });
            let retry_in =
                matches!(outcome, WritebackOutcome::Failed { transient: true, .. }).then(|| backoff(entry.attempts));
            entry.retry_at = retry_in.map(|d| Instant::now() + d);
            entry.outcome = Some(outcome);
            retry_in
        };
        let object = (change.namespace.clone(), change.name.clone());
        let _ = self.done.send(object.clone());
        if let Some(wait) = retry_in {
            let done = self.done.clone();
            tokio::spawn(async move {
                tokio::time::sleep(wait).await;
                let _ = done.send(object);
            });
        }
    }
}

/// 15s, 30s, 60s, ... up to 10 minutes between attempts.
fn backoff(attempts: u32) -> Duration {
    Duration::from_secs(15u64.saturating_mul(1 << attempts.saturating_sub(1).min(6)).min(600))
}

fn record(remote: &Remote, pushed: Pushed) -> GitCommit {
    let (branch, commit, path) = match pushed {
        Pushed::Committed { branch, commit, path } => (branch, commit, path),
        Pushed::AlreadyCommitted { branch, commit } => (branch, commit, String::new()),
        Pushed::AlreadyInGit { branch, path } => (branch, String::new(), path),
    };
    let pushed_time = crate::api::now();
    GitCommit { url: remote.url.clone(), branch, commit, path, refused: None, pushed_time, flux_variable: None }
}

/// A write-back refused for good, kept on the Drift (`status.git.refused`).
fn refused(remote: &Remote, why: String) -> WritebackOutcome {
    WritebackOutcome::Refused(refusal(remote, why))
}

/// The record of a refused write-back, as `status.git` keeps it.
fn refusal(remote: &Remote, why: String) -> GitCommit {
    GitCommit {
        url: remote.url.clone(),
        branch: remote.branch.clone(),
        commit: String::new(),
        path: String::new(),
        refused: Some(format!("write-back refused: {why}")),
        pushed_time: crate::api::now(),
        flux_variable: None,
    }
}

/// A refusal decided before any remote is known.
fn refused_for(why: &str) -> WritebackOutcome {
    refused(
        &Remote { url: String::new(), branch: String::new(), path: String::new(), default_namespace: None },
        why.into(),
    )
}

/// Where an origin leads: the remote, the Secret its GitOps tool reads it
/// with, and a Flux origin's Kustomization (its substitutions).
struct Resolved {
    remote: Remote,
    flux_secret: Option<(String, String)>,
    kustomization: Option<serde_json::Value>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn job(field: &str, value: &str) -> Job {
        let change = Change { field: field.into(), value: json!(value), ..crate::writeback::commit::tests::change() };
        Job { change, annotations: BTreeMap::new(), labels: BTreeMap::new() }
    }

    #[test]
    fn a_newer_accept_of_a_field_replaces_the_queued_one_in_its_place() {
        let mut queue = Queue::default();
        queue.push(job("size_slug", "v1"));
        queue.push(job("region", "ams3"));
        queue.push(job("size_slug", "v2"));
        let popped: Vec<(String, serde_json::Value)> =
            std::iter::from_fn(|| queue.pop()).map(|j| (j.change.field, j.change.value)).collect();
        assert_eq!(popped, [("size_slug".into(), json!("v2")), ("region".into(), json!("ams3"))]);
    }

    fn handle() -> Writeback {
        let (entries, queue, wake) = Default::default();
        Writeback { entries, queue, wake, allowed_remotes: Arc::new([]) }
    }

    fn accepted(field: &str, value: &str, accept_id: &str) -> Job {
        let mut job = job(field, value);
        job.change.accept_id = accept_id.into();
        job
    }

    fn kept(w: &Writeback) -> Vec<String> {
        let mut ids: Vec<String> = w.entries.lock().unwrap().keys().cloned().collect();
        ids.sort();
        ids
    }

    #[test]
    fn a_job_replaced_in_the_queue_or_dropped_with_the_lease_leaves_no_entry() {
        let w = handle();
        w.request(accepted("size_slug", "v1", "a1"));
        w.request(accepted("region", "ams3", "r1"));
        assert_eq!(kept(&w), ["a1", "r1"]);
        // V2 replaces V1 in the queue: V1 will never run, so it is not kept waiting for an outcome.
        w.request(accepted("size_slug", "v2", "a2"));
        assert_eq!(kept(&w), ["a2", "r1"]);
        let popped: Vec<String> =
            std::iter::from_fn(|| w.queue.lock().unwrap().pop()).map(|j| j.change.accept_id).collect();
        assert_eq!(popped, ["a2", "r1"]);

        // Asked again while in flight: not queued twice.
        w.request(accepted("size_slug", "v2", "a2"));
        assert!(w.queue.lock().unwrap().pop().is_none());
        // The lease is lost before its outcome: forgotten, and queued again when asked.
        forget(&w.entries, "a2");
        assert_eq!(kept(&w), ["r1"]);
        w.request(accepted("size_slug", "v2", "a2"));
        assert_eq!(w.queue.lock().unwrap().pop().map(|j| j.change.accept_id).as_deref(), Some("a2"));
    }
}
