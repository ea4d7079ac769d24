//! The reverter's steps: each reads or writes the provider or the Drift, and
//! records what happened in the saga's record.

use super::{RevertError, Reverter, Saga};
use crate::api::{self, Drift, DriftPhase, REVERTER_FIELD_MANAGER, SagaState, StepState};
use crate::detect::{loosely_equal, render_value};
use crate::inventory::digitalocean::DoType;
use crate::inventory::metrics::ResultLabel;
use crate::revert::saga;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::ObjectRef;
use serde_json::json;
use std::time::Instant;

impl Reverter {
    /// The saga of a Reverting drift: its record, or a new one from the approved plan.
    pub(super) async fn load(&self, drift: &ObjectRef<Drift>) -> Result<Option<Saga>, RevertError> {
        let namespace = drift.namespace.clone().unwrap_or_default();
        let api: Api<Drift> = Api::namespaced(self.client.clone(), &namespace);
        let name = format!("{namespace}/{}", drift.name);
        let d = api.get_opt(&drift.name).await.map_err(|source| RevertError::Read { drift: name.clone(), source })?;
        let Some((d, status)) = d.and_then(|d| d.status.clone().map(|s| (d, s))) else { return Ok(None) };
        let Some(episode) = status.detected_time.clone().filter(|_| status.phase == DriftPhase::Reverting) else {
            return Ok(None);
        };
        let record = crate::revert::current_record(&status).cloned().unwrap_or_else(|| {
            let who = status.resolved_by.clone().unwrap_or_else(|| "unknown".into());
            saga::start(&status.revert_plan, &episode, &who, &api::now())
        });
        let resource = self.syncer.resources().get(&ObjectRef::new(&d.spec.resource_ref.name));
        let target = resource.as_ref().and_then(|r| Some((DoType::parse(&r.spec.type_)?, r.spec.id.clone())));
        let mut saga = Saga {
            drift: drift.clone(),
            api,
            field: d.spec.field.clone(),
            actual: status.actual.clone(),
            type_: target.as_ref().map_or(DoType::Droplet, |t| t.0),
            id: target.as_ref().map(|t| t.1.clone()).unwrap_or_default(),
            record,
        };
        if target.is_none() {
            let why = format!(
                "CloudResource {} is not a DigitalOcean resource the inventory knows",
                d.spec.resource_ref.name
            );
            saga.record.message = Some(why);
            saga.record.steps.iter_mut().for_each(|s| s.state = StepState::Skipped);
            self.end(&mut saga, SagaState::Failed).await?;
            return Ok(None);
        }
        Ok(Some(saga))
    }

    /// Writes the record; nothing the reverter does is waited on before this returns.
    pub(super) async fn write(&self, saga: &Saga) -> Result<(), RevertError> {
        let body = json!({"apiVersion": "arcadia.cloud/v1alpha1", "kind": "Drift", "status": {"revert": saga.record}});
        let params = PatchParams::apply(REVERTER_FIELD_MANAGER).force();
        let drift = format!("{}/{}", saga.drift.namespace.clone().unwrap_or_default(), saga.drift.name);
        saga.api
            .patch_status(&saga.drift.name, &params, &Patch::Apply(body))
            .await
            .map_err(|source| RevertError::Record { drift, source })?;
        self.syncer.metrics().writes.count("drift_status");
        Ok(())
    }

    /// Before the first call: the resource still has the live value the plan
    /// was made from, and no action of its own is in progress. `Some(why)` stops the saga untouched.
    pub(super) async fn preflight(&self, saga: &mut Saga) -> Result<Option<String>, RevertError> {
        let source = self.syncer.source();
        let live = match source.get(saga.type_, &saga.id).await {
            Ok(Some(live)) => live,
            Ok(None) => return Ok(Some("the resource is gone from DigitalOcean (404); nothing was touched".into())),
            Err(e) => return Ok(Some(format!("cannot read the resource before reverting ({e}); nothing was touched"))),
        };
        let now = live.status.live_view().resolve(&saga.field).to_value();
        if !loosely_equal(&now, &saga.actual) {
            let _ = self.syncer.refresh(saga.type_, &saga.id).await;
            return Ok(Some(format!(
                "the live value moved from {} to {} since the plan was made; nothing was touched: approve again once status.revertPlan shows the new plan",
                render_value(&saga.actual),
                render_value(&now)
            )));
        }
        self.wait_until_idle(saga).await
    }

    /// Waits while the resource has an action of its own in progress.
    async fn wait_until_idle(&self, saga: &mut Saga) -> Result<Option<String>, RevertError> {
        if !matches!(saga.type_, DoType::Droplet | DoType::Volume) {
            return Ok(None);
        }
        let started = Instant::now();
        loop {
            let busy = match self.syncer.source().resource_actions(saga.type_, &saga.id).await {
                Ok(actions) => actions.into_iter().find(|a| a.status == "in-progress"),
                Err(e) => {
                    return Ok(Some(format!(
                        "cannot read the resource's actions before reverting ({e}); nothing was touched"
                    )));
                }
            };
            let Some(action) = busy else {
                // The wait is over; the message is for failures from here on.
                saga.record.message = None;
                return Ok(None);
            };
            if started.elapsed() > self.settings.busy_timeout {
                return Ok(Some(format!(
                    "DigitalOcean action {} ({}) is still in progress on the resource after {}s; nothing was touched",
                    action.id,
                    action.kind,
                    self.settings.busy_timeout.as_secs()
                )));
            }
            let waiting =
                format!("waiting for DigitalOcean action {} ({}) in progress on the resource", action.id, action.kind);
            if saga.record.message.as_ref() != Some(&waiting) {
                saga.record.message = Some(waiting);
                self.write(saga).await?;
            }
            tokio::time::sleep(self.settings.poll_interval).await;
        }
    }

    /// Records step `i` as sending, sends it, and records the answer.
    pub(super) async fn send(&self, saga: &mut Saga, i: usize) -> Result<(), RevertError> {
        saga::sending(&mut saga.record, i, &api::now());
        self.write(saga).await?;
        let requests_before = self.syncer.source().client.requests_sent();
        let answer = self.syncer.source().call(&saga.record.steps[i].call).await;
        self.count_requests(requests_before);
        match answer {
            Ok(action) => saga::sent(&mut saga.record, i, action),
            Err(error) => saga::fail(&mut saga.record, i, error.to_string()),
        }
        self.write(saga).await
    }

    /// Step `i` may have been sent before a restart: adopt its action if the
    /// resource shows one of the same type started since, else send it again.
    pub(super) async fn recover(&self, saga: &mut Saga, i: usize) -> Result<(), RevertError> {
        let step = &saga.record.steps[i];
        let kind = step.call.body.get("type").and_then(|t| t.as_str()).unwrap_or_default().to_owned();
        let since = step.sent_time.as_ref().map(|t| t.0.as_second() - 60).unwrap_or(i64::MIN);
        let actions = match self.syncer.source().resource_actions(saga.type_, &saga.id).await {
            Ok(actions) => actions,
            Err(error) => {
                tracing::info!(%error, "cannot read the resource's actions to resume a revert; asking again");
                tokio::time::sleep(self.settings.poll_interval).await;
                return Ok(());
            }
        };
        let started = |a: &crate::inventory::feed::Action| {
            a.started_at
                .as_deref()
                .and_then(|s| s.parse::<k8s_openapi::jiff::Timestamp>().ok())
                .is_some_and(|t| t.as_second() >= since)
        };
        let found = actions.iter().find(|a| (a.kind == kind || a.kind == format!("{kind}_volume")) && started(a));
        match found {
            Some(action) => saga::sent(&mut saga.record, i, Some(action.id)),
            None => saga.record.steps[i].state = StepState::Pending,
        }
        self.write(saga).await
    }

    /// Waits for the action of step `i` to end, and records how it ended.
    pub(super) async fn poll(&self, saga: &mut Saga, i: usize, action: u64) -> Result<(), RevertError> {
        loop {
            let requests_before = self.syncer.source().client.requests_sent();
            let read = self.syncer.source().action(action).await;
            self.count_requests(requests_before);
            match read {
                Ok(Some(a)) if a.status == "in-progress" => {}
                Ok(Some(a)) => {
                    saga::action_ended(&mut saga.record, i, a.status == "completed");
                    return self.write(saga).await;
                }
                Ok(None) => {
                    saga::fail(&mut saga.record, i, format!("DigitalOcean action {action} is gone (404)"));
                    return self.write(saga).await;
                }
                Err(error) => tracing::info!(%error, action, "cannot read a revert's action; asking again"),
            }
            tokio::time::sleep(self.settings.poll_interval).await;
        }
    }

    /// Ends the saga; after a success, the resource is read again at once so
    /// the drift can close as Reverted without waiting for the next sync.
    pub(super) async fn end(&self, saga: &mut Saga, state: SagaState) -> Result<(), RevertError> {
        saga::finish(&mut saga.record, state, &api::now());
        self.write(saga).await?;
        let result = if state == SagaState::Succeeded { "succeeded" } else { "failed" };
        self.syncer.metrics().reverts.get_or_create(&ResultLabel { result }).inc();
        tracing::info!(drift = %saga.drift.name, result, message = ?saga.record.message, "revert saga ended");
        if state == SagaState::Succeeded
            && let Err(error) = self.syncer.refresh(saga.type_, &saga.id).await
        {
            tracing::warn!(%error, "cannot read the resource after a revert; the next sync will");
        }
        Ok(())
    }

    fn count_requests(&self, before: u64) {
        let sent = self.syncer.source().client.requests_sent() - before;
        self.syncer.metrics().digitalocean_requests.inc_by(sent);
    }
}
