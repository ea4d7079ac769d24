use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// What was asked of the cloud: the fields of one CloudResource that must
/// hold the given values.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "arcadia.cloud",
    version = "v1alpha1",
    kind = "CloudProvisioned",
    plural = "cloudprovisioneds",
    singular = "cloudprovisioned",
    shortname = "cprov",
    category = "arcadia",
    namespaced,
    status = "CloudProvisionedStatus",
    doc = "The desired state of one cloud resource; arcadia-drift reports every divergence as a Drift.",
    printcolumn(name = "Resource", type_ = "string", json_path = ".spec.resourceRef.name"),
    printcolumn(name = "In-Sync", type_ = "string", json_path = ".status.conditions[?(@.type==\"InSync\")].status"),
    printcolumn(name = "Drifts", type_ = "integer", json_path = ".status.openDrifts"),
    printcolumn(name = "Drifted", type_ = "string", json_path = ".status.driftedFields", priority = 1),
    printcolumn(name = "Generation", type_ = "integer", json_path = ".metadata.generation"),
    printcolumn(name = "Checked", type_ = "date", json_path = ".status.lastCheckedTime", priority = 1),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct CloudProvisionedSpec {
    /// The CloudResource (cluster-scoped) that holds the live state.
    pub resource_ref: ResourceRef,
    /// Flat map: field name => expected value (any JSON). Only these keys are checked.
    #[schemars(schema_with = "super::schema::desired_map")]
    pub desired: super::Fields,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct ResourceRef {
    /// Name of a CloudResource, e.g. `digitalocean-droplet-3164444`.
    #[x_kube(validation = Rule::new("size(self) > 0 && size(self) <= 253").message("resourceRef.name must name a CloudResource (1 to 253 characters)"))]
    pub name: String,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CloudProvisionedStatus {
    /// The `metadata.generation` of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// When the spec was last compared with the live state and something changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_checked_time: Option<Time>,
    #[serde(default)]
    pub open_drifts: i32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drifted_fields: Vec<String>,
    /// At least `InSync` and `ResourceFound`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}
