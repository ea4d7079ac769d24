use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// What was asked of the cloud: the fields of one CloudResource that must
/// hold the given values.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
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
    doc = "The desired state of one cloud resource; arcadia-drift reports every divergence as a Drift. The annotation arcadia.cloud/accept-mode (spec, overlay or auto) chooses how an accept is recorded: written into spec.desired, or held in status.pendingGitChanges until Git holds it.",
    printcolumn(name = "Resource", type_ = "string", json_path = ".spec.resourceRef.name"),
    printcolumn(name = "In-Sync", type_ = "string", json_path = ".status.conditions[?(@.type==\"InSync\")].status"),
    printcolumn(name = "Drifts", type_ = "integer", json_path = ".status.openDrifts"),
    printcolumn(name = "Drifted", type_ = "string", json_path = ".status.driftedFields", priority = 1),
    printcolumn(
        name = "Pending-Git",
        type_ = "string",
        json_path = ".status.pendingGitChanges[*].field",
        description = "Fields accepted in overlay mode that Git does not hold yet"
    ),
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
    /// Known, legitimate differences to leave out of the comparison; each needs a reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub ignore: Vec<super::IgnoreRule>,
    /// Per field: `exact` (the default: loose equality) or `contains` (the
    /// live list must include every desired member).
    #[serde(default, rename = "match", skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub match_: std::collections::BTreeMap<String, super::MatchMode>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct ResourceRef {
    /// Name of a CloudResource, e.g. `digitalocean-droplet-3164444`.
    #[x_kube(validation = Rule::new("size(self) > 0 && size(self) <= 253").message(RESOURCE_REF_RULE))]
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
    /// The DriftPolicies that apply to this object.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<String>,
    /// Differences that ignore rules left out at the last comparison, per rule and field.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignored_differences: Vec<super::IgnoredDifference>,
    /// Values accepted in overlay mode that the spec (Git) does not hold yet.
    /// The controller compares each field against its accepted value until the
    /// spec equals it (merged) or changes it to another value (Git wins).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending_git_changes: Vec<PendingGitChange>,
    /// At least `InSync`, `ResourceFound` and `GitInSync`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// One accepted value waiting to be committed to Git.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PendingGitChange {
    /// The key of `spec.desired`.
    pub field: String,
    /// The accepted (live) value, to be committed as `spec.desired.<field>`.
    #[serde(default, deserialize_with = "crate::detect::bounded_value")]
    #[schemars(schema_with = "super::schema::any_value")]
    pub value: serde_json::Value,
    /// The Drift that was accepted.
    pub drift: String,
    pub accepted_by: String,
    pub accepted_time: Time,
    /// The value `spec.desired.<field>` held at accept time: a spec change to
    /// any other value supersedes the entry.
    #[serde(default, deserialize_with = "crate::detect::bounded_value")]
    #[schemars(schema_with = "super::schema::any_value")]
    pub spec_value: serde_json::Value,
}

/// The longest field name of `spec.desired`: field names become Drift names,
/// labels and Event texts, so a tenant cannot make them arbitrarily long.
pub const MAX_FIELD_NAME: usize = 63;

/// The API server's message for an empty or over-long `resourceRef.name`.
const RESOURCE_REF_RULE: &str = "resourceRef.name must name a CloudResource (1 to 253 characters)";

/// What makes a CloudProvisioned spec unusable. The API server refuses most
/// of these through the schema; the controller and `check` say the same for
/// objects that reach them another way (older CRDs, files).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SpecProblem {
    #[error("spec.{RESOURCE_REF_RULE}")]
    NoResourceRef,
    #[error("spec.resourceRef.name {0:?} is not a valid CloudResource name (lowercase letters, digits, '-' and '.')")]
    InvalidResourceRef(String),
    #[error("spec.desired must name at least one field to check")]
    NothingDesired,
    #[error("spec.desired has an empty field name {0:?}")]
    EmptyFieldName(String),
    #[error("spec.desired has a field name of {0} characters; at most {MAX_FIELD_NAME} are allowed")]
    FieldNameTooLong(usize),
    #[error("spec.desired.{0} is nested deeper than {depth} levels: it is not read", depth = crate::detect::MAX_VALUE_DEPTH)]
    TooDeep(String),
    #[error("spec.ignore[{index}] ({field}) has no reason: say why the difference is legitimate")]
    IgnoreWithoutReason { index: usize, field: String },
    #[error("spec.ignore[{index}] ({field}): {problem}")]
    BadIgnoreRule { index: usize, field: String, problem: crate::detect::rules::RuleError },
}

impl CloudProvisionedSpec {
    /// The one check of a spec, shared by the controller and the offline `check`.
    pub fn validate(&self) -> Result<(), SpecProblem> {
        let name = &self.resource_ref.name;
        if name.is_empty() || name.len() > 253 {
            return Err(SpecProblem::NoResourceRef);
        }
        if !is_dns_subdomain(name) {
            return Err(SpecProblem::InvalidResourceRef(name.clone()));
        }
        if self.desired.is_empty() {
            return Err(SpecProblem::NothingDesired);
        }
        if let Some(bad) = self.desired.keys().find(|k| k.trim().is_empty()) {
            return Err(SpecProblem::EmptyFieldName(bad.to_owned()));
        }
        if let Some(long) = self.desired.keys().find(|k| k.chars().count() > MAX_FIELD_NAME) {
            return Err(SpecProblem::FieldNameTooLong(long.chars().count()));
        }
        if let Some(deep) = self.desired.too_deep() {
            return Err(SpecProblem::TooDeep(deep.to_owned()));
        }
        for (index, rule) in self.ignore.iter().enumerate() {
            let field = rule.field.clone();
            if rule.reason.trim().is_empty() {
                return Err(SpecProblem::IgnoreWithoutReason { index, field });
            }
            crate::detect::rules::check_rule(&rule.paths, &rule.values)
                .map_err(|problem| SpecProblem::BadIgnoreRule { index, field, problem })?;
        }
        Ok(())
    }
}

/// An object name as Kubernetes requires of cluster-scoped objects.
fn is_dns_subdomain(name: &str) -> bool {
    name.split('.').all(|part| {
        !part.is_empty()
            && part.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !part.starts_with('-')
            && !part.ends_with('-')
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(name: &str, desired: serde_json::Value) -> CloudProvisionedSpec {
        CloudProvisionedSpec {
            resource_ref: ResourceRef { name: name.into() },
            desired: super::super::Fields::try_from(desired).unwrap(),
            ..Default::default()
        }
    }

    #[test]
    fn each_problem_has_its_message() {
        assert_eq!(spec("do-1", json!({"region": "nyc3"})).validate(), Ok(()));
        let cases = [
            (spec("", json!({"a": 1})), "spec.resourceRef.name must name a CloudResource (1 to 253 characters)"),
            (
                spec("Not_A/Name", json!({"a": 1})),
                "spec.resourceRef.name \"Not_A/Name\" is not a valid CloudResource name",
            ),
            (spec("do-1", json!({})), "spec.desired must name at least one field to check"),
            (spec("do-1", json!({" ": 1})), "spec.desired has an empty field name \" \""),
            (spec("do-1", json!({"x".repeat(64): 1})), "spec.desired has a field name of 64 characters; at most 63"),
        ];
        for (spec, message) in cases {
            let problem = spec.validate().unwrap_err().to_string();
            assert!(problem.starts_with(message), "{problem}");
        }
    }
}
