//! The `Valid` condition of a DriftPolicy: what the schema could not refuse
//! (a label selector operator without values, a path that is no JSON pointer)
//! is said here, and such a policy is left out while the others keep working.

use crate::api::{ConditionStatus, DriftPolicy, FIELD_MANAGER};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;

/// The condition a policy should carry now.
pub fn valid_condition(policy: &DriftPolicy, now: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time) -> Condition {
    let (status, reason, message) = match crate::policy::validate(policy) {
        Ok(()) => (ConditionStatus::True, "Valid", "the policy applies to the objects its selector picks".to_owned()),
        Err(problem) => {
            (ConditionStatus::False, "Invalid", format!("{problem}; the policy is left out until it is fixed"))
        }
    };
    let old = policy.status.as_ref().and_then(|s| s.conditions.iter().find(|c| c.type_ == "Valid"));
    Condition {
        type_: "Valid".into(),
        status: status.as_str().into(),
        reason: reason.into(),
        message,
        observed_generation: policy.metadata.generation,
        last_transition_time: old
            .filter(|c| ConditionStatus::of(c) == Some(status))
            .map(|c| c.last_transition_time.clone())
            .unwrap_or_else(|| now.clone()),
    }
}

/// Writes the condition when it differs from what the policy carries.
pub async fn report(client: Client, policy: DriftPolicy) {
    let condition = valid_condition(&policy, &crate::api::now());
    let current = policy.status.as_ref().and_then(|s| s.conditions.iter().find(|c| c.type_ == "Valid"));
    let same = current.is_some_and(|c| {
        c.status == condition.status
            && c.message == condition.message
            && c.observed_generation == condition.observed_generation
    });
    if same {
        return;
    }
    if ConditionStatus::of(&condition) == Some(ConditionStatus::False) {
        tracing::warn!(policy = %policy.name_any(), problem = %condition.message, "invalid DriftPolicy");
    }
    let body =
        json!({"apiVersion": "arcadia.cloud/v1alpha1", "kind": "DriftPolicy", "status": {"conditions": [condition]}});
    let api: Api<DriftPolicy> = Api::all(client);
    if let Err(error) =
        api.patch_status(&policy.name_any(), &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(body)).await
    {
        tracing::warn!(%error, policy = %policy.name_any(), "cannot write the DriftPolicy's Valid condition");
    }
}
