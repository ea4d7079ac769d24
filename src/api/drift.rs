use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One drifted field of one CloudProvisioned. Owned by that CloudProvisioned,
/// so deleting it deletes its drifts.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "arcadia.cloud",
    version = "v1alpha1",
    kind = "Drift",
    plural = "drifts",
    singular = "drift",
    shortname = "dft",
    category = "arcadia",
    namespaced,
    status = "DriftStatus",
    selectable = ".status.phase",
    selectable = ".spec.field",
    doc = "A divergence between a CloudProvisioned's desired field and the live CloudResource.",
    printcolumn(
        name = "Provisioned",
        type_ = "string",
        json_path = ".spec.provisionedRef.name",
        priority = 1
    ),
    printcolumn(name = "Field", type_ = "string", json_path = ".spec.field"),
    printcolumn(name = "Expected", type_ = "string", json_path = ".status.expected"),
    printcolumn(name = "Actual", type_ = "string", json_path = ".status.actual"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Resolved-By",
        type_ = "string",
        json_path = ".status.resolvedBy",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".status.detectedTime",
        description = "Time since this episode of the drift was detected"
    )
)]
#[x_kube(validation = Rule::new("self == oldSelf").message("spec is immutable: a Drift always describes the same field of the same CloudProvisioned"))]
#[serde(rename_all = "camelCase")]
pub struct DriftSpec {
    pub provisioned_ref: ProvisionedRef,
    pub resource_ref: super::ResourceRef,
    /// The key of `spec.desired` that drifted.
    #[x_kube(validation = Rule::new("size(self) > 0").message("spec.field must not be empty"))]
    pub field: String,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct ProvisionedRef {
    /// Name of the CloudProvisioned in the Drift's own namespace.
    #[x_kube(validation = Rule::new("size(self) > 0").message("provisionedRef.name must not be empty"))]
    pub name: String,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum DriftPhase {
    /// Diverged now; waiting for someone to act.
    #[default]
    Open,
    /// The live value was adopted as the new desired value.
    Accepted,
    /// The field matched again (fixed elsewhere) before anyone acted.
    Stale,
    /// The live value was put back to the desired one through the provider.
    Reverted,
}

impl DriftPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            DriftPhase::Open => "Open",
            DriftPhase::Accepted => "Accepted",
            DriftPhase::Stale => "Stale",
            DriftPhase::Reverted => "Reverted",
        }
    }
}

impl std::fmt::Display for DriftPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DriftStatus {
    pub phase: DriftPhase,
    /// The desired value when the drift was recorded (any JSON).
    #[serde(default)]
    #[schemars(schema_with = "super::schema::any_value")]
    pub expected: Value,
    /// The live value (any JSON); follows the live state while Open.
    #[serde(default)]
    #[schemars(schema_with = "super::schema::any_value")]
    pub actual: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detected_time: Option<Time>,
    /// Set when the drift leaves Open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_time: Option<Time>,
    /// Who accepted; "operator" when unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_by: Option<String>,
    /// Human-readable state: what to commit to Git after an accept, or why an accept was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Earlier episodes of this same field, newest first, bounded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<DriftEpisode>,
}

/// A past, resolved episode of a Drift, kept as history when the field drifts again.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DriftEpisode {
    pub phase: DriftPhase,
    #[serde(default)]
    #[schemars(schema_with = "super::schema::any_value")]
    pub expected: Value,
    #[serde(default)]
    #[schemars(schema_with = "super::schema::any_value")]
    pub actual: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detected_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_by: Option<String>,
}
