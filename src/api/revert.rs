//! The revert parts of a Drift's status: the preview (`status.revertPlan`)
//! and the saga's record (`status.revert`), which the reverter alone writes.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The field manager of the reverter, the only writer of `status.revert`.
/// The reconciler never writes that field, so neither can undo the other's record.
pub const REVERTER_FIELD_MANAGER: &str = "arcadia-drift-reverter";

/// One request to the provider's API, exactly as it would be sent.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ProviderCall {
    /// `POST`, `PUT` or `DELETE`.
    pub method: String,
    /// The path under the API's base URL, e.g. `/v2/droplets/3164444/actions`.
    pub path: String,
    /// The JSON body; absent for none.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    #[schemars(schema_with = "super::schema::any_value")]
    pub body: Value,
    /// What the call does, in words.
    pub description: String,
    /// The provider answers with an action to wait for (DigitalOcean's `action` object).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub waits_for_action: bool,
}

/// How far a revert saga got.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SagaState {
    #[default]
    Running,
    /// Every step completed; the Drift becomes Reverted once the live value is the desired one.
    Succeeded,
    /// A step failed; its compensation (if any) ran; nothing else was touched.
    Failed,
}

/// Where one step stands. Written before each wait, so a restarted reverter
/// resumes exactly there.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StepState {
    /// Not sent yet.
    #[default]
    Pending,
    /// About to be sent (recorded first): after a crash here, the reverter
    /// looks for the action before it sends the call again.
    Sending,
    /// Sent; the provider's action is still in progress.
    InProgress,
    Completed,
    Failed,
    /// A failure before it meant this step was never sent.
    Skipped,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RevertStep {
    pub call: ProviderCall,
    /// Run only to undo an earlier step after a failure (powering a droplet back on).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub compensation: bool,
    pub state: StepState,
    /// The provider's handle on the work this call started (an action, an
    /// operation), in its own words: read until the work ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handle: Option<String>,
    /// The handle when it is a number, as records before schema version 7
    /// kept it (DigitalOcean action ids; signed, so the schema carries no
    /// `minimum` that Helm would render differently). Still written for one
    /// release; read when `handle` is absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_time: Option<Time>,
    /// The provider's message on failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The record of one revert saga, for one episode of the drift.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RevertRecord {
    /// The episode reverted (its `detectedTime`): a record of an earlier episode is history.
    pub episode: Time,
    pub approved_by: String,
    /// The digest of the approved plan (`arcadia.cloud/revert=<digest>`): the
    /// steps' calls must hash to it, or they are not run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_digest: Option<String>,
    pub started_time: Time,
    pub state: SagaState,
    pub steps: Vec<RevertStep>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_time: Option<Time>,
    /// Why it failed, or what it is waiting for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl RevertStep {
    /// The handle of the work this step started: `handle`, or a record's
    /// `actionId` from before schema version 7.
    pub fn handle(&self) -> Option<String> {
        self.handle.clone().or_else(|| self.action_id.map(|id| id.to_string()))
    }
}
