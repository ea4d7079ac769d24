//! The reverter: drives each approved revert saga (a Drift in phase
//! Reverting) through the [`Actuator`] of the resource's provider. What to
//! do next is the pure [`crate::revert::saga`]'s decision; this module sends
//! the calls, follows what they started, and writes the record (`status.revert`, under its
//! own field manager) before every wait, so a reverter killed anywhere
//! resumes from the record. Sagas share the syncer's request budget.

use super::metrics::InventoryMetrics;
use super::syncer::Syncer;
use crate::api::{CloudResource, Drift, DriftPhase, RevertRecord, SagaState, StepState};
use crate::providers::contract::Actuator;
use crate::revert::saga::{self, Move};
use crate::runtime::Stop;
use crate::runtime::fence::Fence;
use kube::api::Api;
use kube::runtime::reflector::{ObjectRef, Store};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;

#[derive(Clone, Debug)]
pub struct ReverterSettings {
    /// `--max-concurrent-reverts`.
    pub max_concurrent: usize,
    /// How often an action in progress is read again, and Drifts are scanned for new approvals.
    pub poll_interval: Duration,
    /// How long a revert waits for an action of the resource's own to end before it gives up.
    pub busy_timeout: Duration,
    /// `--revert-step-timeout`: how long one step may stay without an outcome
    /// (retries and action polls included) before it fails and the saga compensates.
    pub step_timeout: Duration,
    /// `--revert-claim`, checked again before a saga starts.
    pub claim: crate::revert::Claim,
}

impl Default for ReverterSettings {
    fn default() -> Self {
        Self {
            max_concurrent: 2,
            poll_interval: Duration::from_secs(2),
            busy_timeout: Duration::from_secs(600),
            step_timeout: Duration::from_secs(15 * 60),
            claim: crate::revert::Claim::Tag,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RevertError {
    #[error("writing status.revert of Drift {drift}: {source}")]
    Record { drift: String, source: kube::Error },
    #[error("reading Drift {drift}: {source}")]
    Read { drift: String, source: kube::Error },
    #[error("reading {object} to derive a revert's plan: {source}")]
    ReadInput { object: String, source: kube::Error },
    #[error(
        "status.revert of Drift {drift} changed under this reverter (another replica drives the saga); this one stops"
    )]
    Superseded { drift: String },
    #[error("Drift {drift} changed under five writes of status.revert in a row; the saga resumes from its record")]
    Busy { drift: String },
    #[error("this replica no longer holds the leader lease; the saga of Drift {drift} stops here, untouched")]
    NotLeading { drift: String },
    #[error("shutting down; the saga of Drift {drift} stops at a safe point and resumes from its record")]
    Stopping { drift: String },
}

/// How soon the saga's next move runs.
enum Pace {
    Now,
    /// An action is in progress: ask again after the poll interval.
    Wait,
    /// A request failed for now: ask again after a growing pause.
    Backoff,
}

/// The longest pause between two tries of a step.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// One provider's part in reverts: its actuator, and the syncer that reads
/// again what a saga changed.
#[derive(Clone)]
pub struct Arm {
    pub actuator: Arc<dyn Actuator>,
    pub syncer: Arc<Syncer>,
}

pub struct Reverter {
    client: kube::Client,
    /// One per configured provider.
    arms: Vec<Arm>,
    /// The CloudResource cache every syncer shares.
    resources: Store<CloudResource>,
    metrics: InventoryMetrics,
    drifts: Store<Drift>,
    settings: ReverterSettings,
    running: Mutex<HashSet<ObjectRef<Drift>>>,
    /// Whether this replica may send a call now (see [`Fence`]).
    fence: Fence,
    /// Raised on shutdown: sagas stop at their next safe point.
    stop: Stop,
}

/// One saga being driven: the Drift, the resource, and the record.
struct Saga {
    drift: ObjectRef<Drift>,
    api: Api<Drift>,
    field: String,
    /// The live value the plan was derived from (the CloudResource's).
    actual: serde_json::Value,
    /// The value the plan writes (spec.desired's, with pending Git changes).
    desired: Option<serde_json::Value>,
    /// The provider's part; `None` only in a saga refused before it runs.
    arm: Option<Arm>,
    provider: String,
    type_: String,
    id: String,
    record: RevertRecord,
    /// The Drift's resourceVersion after the last write: every write of the
    /// record is conditional on it, so a second reverter cannot move a step.
    resource_version: Option<String>,
    /// The record as last written (or read): a conflict that left it unchanged is no other actor's.
    written: Option<RevertRecord>,
    /// When this reverter last sent a call (the record keeps the first send only).
    last_sent: Option<std::time::Instant>,
}

impl Saga {
    /// The provider's part of a saga that runs (a refused one never gets here).
    fn arm(&self) -> &Arm {
        self.arm.as_ref().expect("a saga that runs has its provider's part")
    }

    fn target(&self) -> crate::providers::contract::Target<'_> {
        crate::providers::contract::Target { provider: &self.provider, type_: &self.type_, id: &self.id }
    }

    fn planner(&self) -> &'static dyn crate::providers::contract::Planner {
        self.arm().actuator.planner()
    }
}

impl Reverter {
    /// A reverter over the providers of `arms`, which share one CloudResource cache.
    pub fn new(
        client: kube::Client,
        arms: Vec<Arm>,
        drifts: Store<Drift>,
        settings: ReverterSettings,
        (fence, stop): (Fence, Stop),
    ) -> Self {
        let (resources, metrics) = match arms.first() {
            Some(arm) => (arm.syncer.resources().clone(), arm.syncer.metrics().clone()),
            None => (kube::runtime::reflector::store().0, InventoryMetrics::default()),
        };
        Self { client, arms, resources, metrics, drifts, settings, running: Mutex::default(), fence, stop }
    }

    /// The part of `provider`, when it is configured here.
    fn arm(&self, provider: &str) -> Option<&Arm> {
        self.arms.iter().find(|a| a.actuator.planner().provider() == provider)
    }

    /// Starts a saga for every Reverting drift that has none running, at most
    /// `max_concurrent` at a time, until the stop flag is raised; then waits
    /// for the running sagas to reach a safe point (a step recorded, before
    /// the next is sent). Dropped, it aborts them.
    pub async fn run(self: Arc<Self>) {
        let permits = Arc::new(Semaphore::new(self.settings.max_concurrent.max(1)));
        let mut sagas = tokio::task::JoinSet::new();
        loop {
            for drift in self.due() {
                let (this, permits) = (self.clone(), permits.clone());
                sagas.spawn(async move {
                    let _permit = permits.acquire_owned().await;
                    if let Err(error) = this.drive(&drift).await {
                        tracing::warn!(%error, "revert saga interrupted; it resumes from its record");
                    }
                    this.running.lock().expect("running lock poisoned").remove(&drift);
                });
            }
            while sagas.try_join_next().is_some() {}
            if self.stop.sleep(self.settings.poll_interval).await {
                break;
            }
        }
        while sagas.join_next().await.is_some() {}
    }

    /// Reverting drifts whose saga has not ended and is not running here.
    fn due(&self) -> Vec<ObjectRef<Drift>> {
        let mut running = self.running.lock().expect("running lock poisoned");
        self.drifts
            .state()
            .iter()
            .filter(|d| d.status.as_ref().is_some_and(|s| s.phase == DriftPhase::Reverting))
            .filter(|d| {
                d.status.as_ref().and_then(crate::revert::current_record).is_none_or(|r| r.state == SagaState::Running)
            })
            .map(|d| ObjectRef::from_obj(d.as_ref()))
            .filter(|r| running.insert(r.clone()))
            .collect()
    }

    async fn drive(&self, drift: &ObjectRef<Drift>) -> Result<(), RevertError> {
        let Some(mut saga) = self.load(drift).await? else { return Ok(()) };
        // Never sent (a step retried after no answer is Pending again, yet may have happened).
        if saga.record.steps.iter().all(|s| s.state == StepState::Pending && s.sent_time.is_none()) {
            self.write(&mut saga).await?;
            if let Some(why) = self.preflight(&mut saga).await? {
                saga.record.message = Some(why);
                saga.record.steps.iter_mut().for_each(|s| s.state = StepState::Skipped);
                return self.end(&mut saga, SagaState::Failed).await;
            }
        }
        let mut failures = 0;
        loop {
            if self.stop.is_raised() {
                return Err(RevertError::Stopping { drift: saga.drift.name.clone() });
            }
            let next = saga::next(&saga.record);
            if let Some(i) =
                next.step().filter(|i| saga::overdue(&saga.record, *i, &crate::api::now(), self.settings.step_timeout))
            {
                self.give_up(&mut saga, i).await?;
                continue;
            }
            let pace = match next {
                Move::Send(i) => self.send(&mut saga, i).await?,
                Move::Recover(i) => self.recover(&mut saga, i).await?,
                Move::Poll(i, action) => self.poll(&mut saga, i, action).await?,
                Move::Finish(state) => return self.end(&mut saga, state).await,
                Move::Done => return Ok(()),
            };
            failures = if matches!(pace, Pace::Backoff) { failures + 1 } else { 0 };
            self.stop.sleep(self.pause(&pace, failures)).await;
        }
    }

    fn pause(&self, pace: &Pace, failures: u32) -> Duration {
        match pace {
            Pace::Now => Duration::ZERO,
            Pace::Wait => self.settings.poll_interval,
            Pace::Backoff => self.settings.poll_interval.saturating_mul(1 << failures.min(6)).min(MAX_BACKOFF),
        }
    }
}

mod steps;
