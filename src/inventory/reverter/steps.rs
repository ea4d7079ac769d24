//! The reverter's steps: each reads or writes the provider or the Drift, and
//! records what happened in the saga's record.

use super::{Pace, RevertError, Reverter, Saga};
use crate::accept::provenance;
use crate::api::{
    self, CloudProvisioned, CloudResource, Drift, DriftPhase, DriftPolicy, REVERTER_FIELD_MANAGER, RevertRecord,
    SagaState, StepState,
};
use crate::detect::{loosely_equal, render_value};
use crate::inventory::metrics::ResultLabel;
use crate::policy;
use crate::providers::contract::{ErrorClass, Handle, Progress, ProviderError};
use crate::revert::execution::NoPlan;
use crate::revert::execution::{self, Decision, Evidence};
use crate::revert::{NotClaimed, Preview, Target, saga};
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::reflector::ObjectRef;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Instant;

/// What a saga's plan is derived from, read when it is loaded.
struct Basis {
    /// The plan for the field now, or why there is none.
    preview: Result<Preview, NoPlan>,
    claim: Result<(), NotClaimed>,
    resource: Option<Arc<CloudResource>>,
    resource_name: String,
    /// The live value the plan was derived from: the saga stops if the provider shows another.
    actual: Value,
    /// The value the plan writes (the desired one).
    desired: Option<Value>,
}

impl Basis {
    /// No plan: the claim is never asked, since a saga without a plan is refused first.
    fn refused(why: NoPlan) -> Self {
        Basis {
            preview: Err(why),
            claim: Ok(()),
            resource: None,
            resource_name: String::new(),
            actual: Value::Null,
            desired: None,
        }
    }
}

/// The approved calls carry attributes besides the reverted field (a
/// firewall's PUT carries its droplets, tags and the other rules): made from
/// the inventory's copy, they could write back what changed since. The plan
/// is made again from the resource as just read; any difference stops the
/// saga, naming it. Tags are planned against the live tags under the rules,
/// and moved tags already stop it, so they are not made again here.
fn stale_bodies(saga: &Saga, live: &crate::detect::LiveView<'_>) -> Option<String> {
    let desired = saga.desired.as_ref().filter(|_| saga.field != "tags")?;
    let target = saga.target();
    let approved: Vec<api::ProviderCall> =
        saga.record.steps.iter().filter(|s| !s.compensation).map(|s| s.call.clone()).collect();
    let why = match crate::revert::preview(target, &saga.field, desired, live, &Default::default()) {
        Ok(fresh) if fresh.calls == approved => return None,
        Ok(fresh) => crate::revert::differences(&approved, &fresh.calls).join("; "),
        Err(why) => why.to_string(),
    };
    Some(format!(
        "the resource changed since the plan was made, and the approved calls would write stale values: {why}; nothing was touched: approve again once status.revertPlan shows the new plan"
    ))
}

impl Reverter {
    /// The saga of a Reverting drift: its record, or a new one from the plan
    /// derived here and the approval (see [`crate::revert::execution`]). A
    /// saga refused here ends Failed before anything is sent.
    pub(super) async fn load(&self, drift: &ObjectRef<Drift>) -> Result<Option<Saga>, RevertError> {
        let namespace = drift.namespace.clone().unwrap_or_default();
        let api: Api<Drift> = Api::namespaced(self.client.clone(), &namespace);
        let name = format!("{namespace}/{}", drift.name);
        let d = api.get_opt(&drift.name).await.map_err(|source| RevertError::Read { drift: name.clone(), source })?;
        let Some((d, episode)) = d.and_then(|d| {
            let episode = d.status.as_ref().filter(|s| s.phase == DriftPhase::Reverting)?.detected_time.clone()?;
            Some((d, episode))
        }) else {
            return Ok(None);
        };
        let basis = self.basis(&d).await?;
        let resource = basis.resource.as_deref();
        let now = api::now();
        let decision = execution::admit(&Evidence {
            drift: &d,
            derived: basis.preview.as_ref(),
            target: resource.map(|r| Target { provider: &r.spec.provider, type_: &r.spec.type_, id: &r.spec.id }),
            claim: basis.claim.clone(),
            now: &now,
        });
        let arm = resource.and_then(|r| self.arm(&r.spec.provider)).cloned();
        let refused = |why: String| RevertRecord {
            episode: episode.clone(),
            approved_by: d.reverted_by(),
            approved_digest: None,
            started_time: now.clone(),
            state: SagaState::Running,
            steps: Vec::new(),
            finished_time: None,
            message: Some(why),
        };
        let (record, run) = match (decision, &arm) {
            (Decision::Idle, _) => return Ok(None),
            (Decision::Run(record), Some(_)) => (record, true),
            (Decision::Run(_), None) => (
                refused(format!(
                    "CloudResource {} is a {:?} resource, a provider this controller is not configured for; nothing was sent",
                    basis.resource_name,
                    resource.map(|r| r.spec.provider.as_str()).unwrap_or_default()
                )),
                false,
            ),
            (Decision::Refuse(why), _) => (refused(why), false),
        };
        let spec = resource.map(|r| r.spec.clone());
        let spec = spec.unwrap_or(api::CloudResourceSpec {
            provider: String::new(),
            type_: String::new(),
            id: String::new(),
            region: None,
        });
        let mut saga = Saga {
            drift: drift.clone(),
            api,
            field: d.spec.field.clone(),
            actual: basis.actual,
            desired: basis.desired,
            arm,
            provider: spec.provider,
            type_: spec.type_,
            id: spec.id,
            record,
            resource_version: d.resource_version(),
            written: d.status.as_ref().and_then(|s| s.revert.clone()),
            last_sent: None,
        };
        if !run {
            tracing::warn!(drift = %name, message = ?saga.record.message, "revert refused before anything was sent");
            self.end(&mut saga, SagaState::Failed).await?;
            return Ok(None);
        }
        Ok(Some(saga))
    }

    /// What the plan is derived from, read now: the CloudProvisioned (its
    /// spec, and the pending changes the controller recorded itself), the
    /// CloudResource it names, and the DriftPolicies; and the claim.
    async fn basis(&self, d: &Drift) -> Result<Basis, RevertError> {
        let namespace = d.namespace().unwrap_or_default();
        let (owner, field) = (&d.spec.provisioned_ref.name, d.spec.field.as_str());
        let provisioned: Api<CloudProvisioned> = Api::namespaced(self.client.clone(), &namespace);
        let object = format!("CloudProvisioned {namespace}/{owner}");
        let read = |source| RevertError::ReadInput { object: object.clone(), source };
        let Some(p) = provisioned.get_opt(owner).await.map_err(read)? else {
            return Ok(Basis::refused(NoPlan::Gone { object }));
        };
        if d.name_any() != Drift::name_for(owner, field) {
            return Ok(Basis::refused(NoPlan::NotItsDrift { object, field: field.to_owned() }));
        }
        let policies: Vec<Arc<DriftPolicy>> = Api::<DriftPolicy>::all(self.client.clone())
            .list(&ListParams::default())
            .await
            .map_err(|source| RevertError::ReadInput { object: "DriftPolicies".into(), source })?
            .items
            .into_iter()
            .map(Arc::new)
            .collect();
        let (desired, ignored) = provenance::desired(&p);
        if let Some(why) = ignored {
            tracing::warn!("{why}");
        }
        let resource_name = p.spec.resource_ref.name.clone();
        let resource = self.resources.get(&ObjectRef::new(&resource_name));
        let rules = policy::effective(&p, resource.as_deref(), &policies);
        let preview = crate::revert::derive(resource.as_deref(), &resource_name, field, &desired, &rules.field(field))
            .map_err(NoPlan::from);
        let owned = crate::revert::Owned::of(resource.as_deref());
        let claim = crate::revert::claim_holds(self.settings.claim, &namespace, owned);
        let actual = resource.as_ref().and_then(|r| r.live().ok()).map(|v| v.resolve(field).to_value());
        let desired = desired.get(field);
        Ok(Basis { preview, claim, resource, resource_name, actual: actual.unwrap_or_default(), desired })
    }

    /// Writes the record, on the condition that the Drift is the version
    /// this reverter last wrote or read; nothing it does is waited on before
    /// this returns. A conflict that left the record as this reverter wrote
    /// it (the controller wrote other fields) is retried on the new version;
    /// one that changed it means another reverter acts, and this one stops.
    pub(super) async fn write(&self, saga: &mut Saga) -> Result<(), RevertError> {
        let params = PatchParams::apply(REVERTER_FIELD_MANAGER).force();
        let drift = format!("{}/{}", saga.drift.namespace.clone().unwrap_or_default(), saga.drift.name);
        for _ in 0..5 {
            let mut body =
                json!({"apiVersion": "arcadia.cloud/v1alpha1", "kind": "Drift", "status": {"revert": saga.record}});
            if let Some(version) = &saga.resource_version {
                body["metadata"] = json!({"resourceVersion": version});
            }
            match saga.api.patch_status(&saga.drift.name, &params, &Patch::Apply(body)).await {
                Ok(written) => {
                    self.metrics.writes.count("drift_status");
                    saga.resource_version = written.resource_version();
                    saga.written = Some(saga.record.clone());
                    return Ok(());
                }
                Err(kube::Error::Api(e)) if e.code == 409 => {
                    let fresh = saga
                        .api
                        .get(&saga.drift.name)
                        .await
                        .map_err(|source| RevertError::Read { drift: drift.clone(), source })?;
                    if fresh.status.as_ref().and_then(|s| s.revert.as_ref()) != saga.written.as_ref() {
                        tracing::warn!(%drift, "status.revert changed under this reverter; it stops driving the saga");
                        return Err(RevertError::Superseded { drift });
                    }
                    saga.resource_version = fresh.resource_version();
                }
                Err(source) => return Err(RevertError::Record { drift, source }),
            }
        }
        Err(RevertError::Busy { drift })
    }

    /// Before the first call: the resource still has the live value the plan
    /// was made from, and no action of its own is in progress. `Some(why)` stops the saga untouched.
    pub(super) async fn preflight(&self, saga: &mut Saga) -> Result<Option<String>, RevertError> {
        let (source, display) = (saga.arm().syncer.source(), saga.planner().display());
        let live = match self.read_patiently(|| source.get(&saga.type_, &saga.id)).await {
            Err(_) if self.stop.is_raised() => return Err(RevertError::Stopping { drift: saga.drift.name.clone() }),
            Ok(Some(live)) => live,
            Ok(None) => return Ok(Some(format!("the resource is gone from {display} (404); nothing was touched"))),
            Err(e) => return Ok(Some(format!("cannot read the resource before reverting ({e}); nothing was touched"))),
        };
        let now = live.status.live_view().resolve(&saga.field).to_value();
        if !loosely_equal(&now, &saga.actual) {
            let _ = saga.arm().syncer.refresh(&saga.type_, &saga.id).await;
            return Ok(Some(format!(
                "the live value moved from {} to {} since the plan was made; nothing was touched: approve again once status.revertPlan shows the new plan",
                render_value(&saga.actual),
                render_value(&now)
            )));
        }
        if let Some(why) = stale_bodies(saga, &live.status.live_view()) {
            let _ = saga.arm().syncer.refresh(&saga.type_, &saga.id).await;
            return Ok(Some(why));
        }
        let busy = self.wait_until_idle(saga).await?;
        Ok(busy.map(|why| format!("{why}; nothing was touched")))
    }

    /// A read before the first call, asked again while the provider refuses
    /// it for now (429, 5xx), until the step deadline; a permanent error is final.
    async fn read_patiently<T, Fut>(&self, read: impl Fn() -> Fut) -> Result<T, ProviderError>
    where
        Fut: Future<Output = Result<T, ProviderError>>,
    {
        let started = Instant::now();
        let mut failures = 0;
        loop {
            match read().await {
                Err(e) if e.class == ErrorClass::Transient && started.elapsed() < self.settings.step_timeout => {
                    failures += 1;
                    tracing::info!(error = %e, "the provider refused a read for now; asking again before the revert starts");
                    if self.stop.sleep(self.pause(&Pace::Backoff, failures)).await {
                        return Err(e);
                    }
                }
                other => return other,
            }
        }
    }

    /// Waits while the resource has work of its own in progress.
    async fn wait_until_idle(&self, saga: &mut Saga) -> Result<Option<String>, RevertError> {
        let (started, before) = (Instant::now(), saga.record.message.clone());
        let actuator = saga.arm().actuator.clone();
        loop {
            let busy = match self.read_patiently(|| actuator.busy(saga.target())).await {
                Ok(busy) => busy,
                Err(_) if self.stop.is_raised() => {
                    return Err(RevertError::Stopping { drift: saga.drift.name.clone() });
                }
                Err(e) => {
                    return Ok(Some(format!("cannot read the resource's actions ({e})")));
                }
            };
            let Some(work) = busy else {
                // The wait is over; the message is for failures from here on.
                saga.record.message = before;
                return Ok(None);
            };
            if started.elapsed() > self.settings.busy_timeout {
                return Ok(Some(format!(
                    "{work} is still in progress on the resource after {}s",
                    self.settings.busy_timeout.as_secs()
                )));
            }
            let waiting = format!("waiting for {work} in progress on the resource");
            if saga.record.message.as_ref() != Some(&waiting) {
                saga.record.message = Some(waiting);
                self.write(saga).await?;
            }
            // Each read may be several pages of the resource's history: ask less often than the saga polls.
            if self.stop.sleep(self.settings.poll_interval.saturating_mul(5)).await {
                return Err(RevertError::Stopping { drift: saga.drift.name.clone() });
            }
        }
    }

    /// Records step `i` as sending, sends it, and records what the answer
    /// says by its class: done, refused (the step fails), refused for now
    /// (sent again later) or unknown (its action is looked for first).
    pub(super) async fn send(&self, saga: &mut Saga, i: usize) -> Result<Pace, RevertError> {
        let planner = saga.planner();
        // A compensation sent while the failed step's action still locks the droplet would be refused (422).
        if saga.record.steps[i].compensation
            && let Some(why) = self.wait_until_idle(saga).await?
        {
            saga::fail(&mut saga.record, planner, i, why);
            self.write(saga).await?;
            return Ok(Pace::Now);
        }
        // Only the replica that holds the lease now sends: a leader paused past
        // its lease finds its fence closed here, and again just before the request leaves.
        let drift = saga.drift.name.clone();
        let not_leading = || RevertError::NotLeading { drift: drift.clone() };
        if let Err(why) = self.fence.confirm().await {
            tracing::debug!(%why, "cannot confirm the lease before a revert step");
        }
        if !self.fence.holds() {
            return Err(not_leading());
        }
        saga::sending(&mut saga.record, i, &api::now());
        self.write(saga).await?;
        let actuator = saga.arm().actuator.clone();
        let fence = || self.fence.holds();
        saga.last_sent = Some(Instant::now());
        let answer = actuator.send(&saga.record.steps[i].call, &fence).await;
        self.count_requests(saga);
        let pace = match answer {
            Err(error) if error.fenced => return Err(not_leading()),
            Ok(handle) => {
                saga::sent(&mut saga.record, i, handle);
                Pace::Now
            }
            Err(error) => match error.class {
                ErrorClass::Permanent => {
                    saga::fail(&mut saga.record, planner, i, error.to_string());
                    Pace::Now
                }
                ErrorClass::Transient => {
                    saga::retry_later(&mut saga.record, i, format!("{error}; sending it again"));
                    Pace::Backoff
                }
                ErrorClass::Unknown => {
                    let why = format!("{error}; it may have happened: looking for its action before sending it again");
                    saga::unanswered(&mut saga.record, i, why);
                    Pace::Backoff
                }
            },
        };
        self.write(saga).await?;
        Ok(pace)
    }

    /// Step `i` may have been sent (a restart, or an answer lost): adopt what
    /// it started if the provider shows it since the send, else send it again.
    pub(super) async fn recover(&self, saga: &mut Saga, i: usize) -> Result<Pace, RevertError> {
        let step = &saga.record.steps[i];
        let since = step.sent_time.as_ref().map(|t| t.0.as_second() - 60).unwrap_or(i64::MIN);
        let actuator = saga.arm().actuator.clone();
        let found = match actuator.started_since(saga.target(), &step.call, since).await {
            Ok(found) => found,
            Err(error) => {
                let why = format!("cannot read the resource's actions to learn whether the step happened: {error}");
                return self.read_failed(saga, i, why, &error).await;
            }
        };
        match found {
            Some(handle) => saga::sent(&mut saga.record, i, Some(handle)),
            // A slow answer may come with a slow listing: until the window is
            // past, finding nothing yet does not prove the call was not carried out.
            None if self.within_answer_window(saga, i) => return Ok(Pace::Wait),
            None => saga.record.steps[i].state = StepState::Pending,
        }
        self.write(saga).await?;
        Ok(Pace::Now)
    }

    /// Reads where step `i`'s work stands once, and records how it ended.
    pub(super) async fn poll(&self, saga: &mut Saga, i: usize, handle: Handle) -> Result<Pace, RevertError> {
        let actuator = saga.arm().actuator.clone();
        let read = actuator.progress(&handle).await;
        self.count_requests(saga);
        let planner = saga.planner();
        match read {
            Ok(Some(Progress::Running)) => return Ok(Pace::Wait),
            Ok(Some(Progress::Ended { succeeded })) => saga::action_ended(&mut saga.record, planner, i, succeeded),
            Ok(None) => {
                let why = format!("{} is gone (404)", actuator.describe(&handle));
                saga::abandon(&mut saga.record, planner, i, why)
            }
            Err(error) => {
                let why = format!("cannot read {}: {error}", actuator.describe(&handle));
                return self.read_failed(saga, i, why, &error).await;
            }
        }
        self.write(saga).await?;
        Ok(Pace::Now)
    }

    /// A read the saga needs failed: for now (kept as the step's last error,
    /// and asked again), or for good (the step is given up, and compensated).
    async fn read_failed(
        &self,
        saga: &mut Saga,
        i: usize,
        why: String,
        error: &ProviderError,
    ) -> Result<Pace, RevertError> {
        let planner = saga.planner();
        if error.class == ErrorClass::Transient {
            tracing::info!(drift = %saga.drift.name, "{why}; asking again");
            saga.record.steps[i].message = Some(why);
            return Ok(Pace::Backoff);
        }
        saga::abandon(&mut saga.record, planner, i, why);
        self.write(saga).await?;
        Ok(Pace::Now)
    }

    /// Whether step `i`'s last send (this reverter's, else the first one
    /// recorded) is recent enough that its action may not show yet.
    fn within_answer_window(&self, saga: &Saga, i: usize) -> bool {
        let window = saga.arm().actuator.answer_window();
        match saga.last_sent {
            Some(at) => at.elapsed() < window,
            None => saga.record.steps[i].sent_time.as_ref().is_some_and(|t| {
                let elapsed = api::now().0.as_second() - t.0.as_second();
                elapsed < i64::try_from(window.as_secs()).unwrap_or(i64::MAX)
            }),
        }
    }

    /// Step `i` has had no outcome within `--revert-step-timeout`: it fails,
    /// and what it may have done is compensated (a step ever sent may have
    /// happened: a shutdown is undone, loudly if that fails too).
    pub(super) async fn give_up(&self, saga: &mut Saga, i: usize) -> Result<(), RevertError> {
        let planner = saga.planner();
        let step = &saga.record.steps[i];
        let last = step.message.as_ref().map(|m| format!(" (last: {m})")).unwrap_or_default();
        let why = format!("no outcome within --revert-step-timeout ({}s){last}", self.settings.step_timeout.as_secs());
        if step.sent_time.is_none() {
            saga::fail(&mut saga.record, planner, i, why);
        } else {
            saga::abandon(&mut saga.record, planner, i, why);
        }
        self.write(saga).await
    }

    /// Ends the saga; after a success, the resource is read again at once so
    /// the drift can close as Reverted without waiting for the next sync.
    pub(super) async fn end(&self, saga: &mut Saga, state: SagaState) -> Result<(), RevertError> {
        saga::finish(&mut saga.record, state, &api::now());
        self.write(saga).await?;
        let result = match state {
            SagaState::Succeeded => "succeeded",
            _ if saga::compensation_failed(&saga.record) => "compensation_failed",
            _ => "failed",
        };
        self.metrics.reverts.get_or_create(&ResultLabel { result }).inc();
        if result == "compensation_failed" {
            tracing::error!(drift = %saga.drift.name, message = ?saga.record.message, "a revert's compensation failed: the resource may be left powered off");
        } else {
            tracing::info!(drift = %saga.drift.name, result, message = ?saga.record.message, "revert saga ended");
        }
        if state == SagaState::Succeeded
            && let Some(arm) = &saga.arm
            && let Err(error) = arm.syncer.refresh(&saga.type_, &saga.id).await
        {
            tracing::warn!(%error, "cannot read the resource after a revert; the next sync will");
        }
        Ok(())
    }

    /// Counts the requests the saga's provider has sent so far (every
    /// read of a saga included: the count is the client's own).
    fn count_requests(&self, saga: &Saga) {
        self.metrics.requests(saga.arm().syncer.source(), saga.arm().actuator.requests_sent());
    }
}
