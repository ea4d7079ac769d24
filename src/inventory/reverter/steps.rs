//! The reverter's steps: each reads or writes the provider or the Drift, and
//! records what happened in the saga's record.

use super::{RevertError, Reverter, Saga};
use crate::accept::provenance;
use crate::api::{
    self, CloudProvisioned, CloudResource, Drift, DriftPhase, DriftPolicy, REVERTER_FIELD_MANAGER, RevertRecord,
    SagaState, StepState,
};
use crate::detect::{loosely_equal, render_value};
use crate::inventory::digitalocean::DoType;
use crate::inventory::metrics::ResultLabel;
use crate::policy;
use crate::revert::execution::{self, Decision, Evidence};
use crate::revert::{Preview, Target, saga};
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::reflector::ObjectRef;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Instant;

/// What a saga's plan is derived from, read when it is loaded.
struct Basis {
    /// The plan for the field now, or why there is none.
    preview: Result<Preview, String>,
    claim: Result<(), String>,
    resource: Option<Arc<CloudResource>>,
    resource_name: String,
    /// The live value the plan was derived from: the saga stops if DigitalOcean shows another.
    actual: Value,
}

impl Basis {
    fn refused(why: String) -> Self {
        let claim = Err(why.clone());
        Basis { preview: Err(why), claim, resource: None, resource_name: String::new(), actual: Value::Null }
    }
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
            derived: basis.preview.as_ref().map_err(String::as_str),
            target: resource.map(|r| Target { type_: &r.spec.type_, id: &r.spec.id }),
            claim: basis.claim.clone(),
            now: &now,
        });
        let target = resource.and_then(|r| Some((DoType::parse(&r.spec.type_)?, r.spec.id.clone())));
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
        let (record, run) = match (decision, &target) {
            (Decision::Idle, _) => return Ok(None),
            (Decision::Run(record), Some(_)) => (record, true),
            (Decision::Run(_), None) => (
                refused(format!(
                    "CloudResource {} is not a DigitalOcean resource the inventory knows; nothing was sent",
                    basis.resource_name
                )),
                false,
            ),
            (Decision::Refuse(why), _) => (refused(why), false),
        };
        let (type_, id) = target.unwrap_or((DoType::Droplet, String::new()));
        let mut saga =
            Saga { drift: drift.clone(), api, field: d.spec.field.clone(), actual: basis.actual, type_, id, record };
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
            return Ok(Basis::refused(format!("{object} is gone")));
        };
        if d.name_any() != Drift::name_for(owner, field) {
            return Ok(Basis::refused(format!("the Drift is not the one {object} keeps for {field}")));
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
        let resource = self.syncer.resources().get(&ObjectRef::new(&resource_name));
        let rules = policy::effective(&p, resource.as_deref(), &policies);
        let preview = crate::revert::derive(resource.as_deref(), &resource_name, field, &desired, &rules.field(field));
        let status = resource.as_ref().and_then(|r| r.status.as_ref());
        let tags = status.and_then(|s| s.tags.clone()).unwrap_or_default();
        let claim = crate::revert::claim_holds(self.settings.claim, &namespace, &tags);
        let actual = resource.as_ref().and_then(|r| r.live().ok()).map(|v| v.resolve(field).to_value());
        Ok(Basis { preview, claim, resource, resource_name, actual: actual.unwrap_or_default() })
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
