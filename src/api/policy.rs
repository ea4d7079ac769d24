//! Drift policy: the rules that tell noise from drift, per object
//! (`spec.ignore`, `spec.match` of a CloudProvisioned) and across objects
//! (the cluster-scoped DriftPolicy), and how much a drift matters (severity).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Leave out a known, legitimate difference. With neither `paths` nor
/// `values`, the whole field is ignored.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct IgnoreRule {
    /// The key of `spec.desired` this rule is about.
    #[x_kube(validation = Rule::new("size(self) > 0").message("an ignore rule must name a field"))]
    #[schemars(length(max = 253))]
    pub field: String,
    /// JSON pointers into the field's value to leave out, `*` for any list
    /// index or key, e.g. `/*/count` (a DOKS node pool's autoscaled count).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(validation = Rule::new("self.all(p, p.startsWith('/'))").message("ignore paths are JSON pointers: each starts with '/'"))]
    #[schemars(length(max = 32), inner(length(max = 512)))]
    pub paths: Vec<String>,
    /// Globs (`*` any characters) of list members to leave out before
    /// comparing, e.g. `k8s:*` (tags DigitalOcean Kubernetes adds).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(validation = Rule::new("self.all(v, size(v) > 0)").message("ignore value globs must not be empty"))]
    #[schemars(length(max = 64), inner(length(max = 253)))]
    pub values: Vec<String>,
    /// Why this difference is legitimate. Required: an ignore without a reason is not accepted.
    #[x_kube(validation = Rule::new("size(self.trim()) > 0").message("an ignore rule needs a reason"))]
    #[schemars(length(max = 1024))]
    pub reason: String,
}

/// How a field's desired and live values compare.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum MatchMode {
    /// Loose equality (lists compare as sets): the default.
    #[default]
    Exact,
    /// The live list must include every desired member; extra members are not drift.
    Contains,
}

impl From<MatchMode> for crate::detect::MatchMode {
    fn from(mode: MatchMode) -> Self {
        match mode {
            MatchMode::Exact => crate::detect::MatchMode::Exact,
            MatchMode::Contains => crate::detect::MatchMode::Contains,
        }
    }
}

/// How much a drift of a field matters: Events of `critical` drifts are
/// Warnings, of `info` Normal; the label `arcadia.cloud/severity` carries it.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Critical,
    #[default]
    Warning,
    Info,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }
}

/// Rules across many CloudProvisioneds. Several policies may select one
/// object: ignore rules add up; for `match` and `severity` the most specific
/// policy (the most selector criteria) wins, then the alphabetically first.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "arcadia.cloud",
    version = "v1alpha1",
    kind = "DriftPolicy",
    plural = "driftpolicies",
    singular = "driftpolicy",
    shortname = "dpol",
    category = "arcadia",
    status = "DriftPolicyStatus",
    doc = "Ignore rules, match modes and severities for the CloudProvisioneds a selector picks.",
    printcolumn(name = "Valid", type_ = "string", json_path = ".status.conditions[?(@.type==\"Valid\")].status"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct DriftPolicySpec {
    /// Which CloudProvisioneds the policy applies to; an empty selector selects all.
    #[serde(default)]
    pub selector: PolicySelector,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub ignore: Vec<IgnoreRule>,
    /// Per field: `exact` or `contains`.
    #[serde(default, rename = "match", skip_serializing_if = "BTreeMap::is_empty")]
    pub match_: BTreeMap<String, MatchMode>,
    /// Per field: `critical`, `warning` (the default) or `info`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub severity: BTreeMap<String, Severity>,
}

/// Every given criterion must hold.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PolicySelector {
    /// Namespaces of the CloudProvisioneds (any when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// Labels of the CloudProvisioneds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<LabelSelector>,
    /// The provider of the CloudResource, e.g. `digitalocean`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// The type of the CloudResource, e.g. `kubernetes_cluster`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct DriftPolicyStatus {
    /// `Valid`: whether the controller can apply the policy, and if not, why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// Differences a comparison left out, per rule, so that a rule that hides
/// too much can be seen.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct IgnoredDifference {
    /// The rule: `spec.ignore[i]` or `DriftPolicy/<name>/ignore[i]`.
    pub rule: String,
    pub field: String,
}
