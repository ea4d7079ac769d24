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
    doc = "A divergence between a CloudProvisioned's desired field and the live CloudResource. Annotate arcadia.cloud/accept=true (optionally arcadia.cloud/accepted-by) to adopt the live value.",
    printcolumn(name = "Provisioned", type_ = "string", json_path = ".spec.provisionedRef.name", priority = 1),
    printcolumn(name = "Field", type_ = "string", json_path = ".spec.field"),
    printcolumn(name = "Expected", type_ = "string", json_path = ".status.expected"),
    printcolumn(name = "Actual", type_ = "string", json_path = ".status.actual"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Severity", type_ = "string", json_path = ".metadata.labels.arcadia\\.cloud/severity"),
    printcolumn(name = "Resolved-By", type_ = "string", json_path = ".status.resolvedBy", priority = 1),
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
    /// Put off until `arcadia.cloud/snooze-until`; Open again then if it still drifts.
    Snoozed,
    /// Lived with: by a person (`arcadia.cloud/ignore`) for as long as the live
    /// value stays the one ignored, or by an ignore rule of a DriftPolicy.
    Ignored,
    /// A revert was approved; its saga (`status.revert`) is putting the live value back.
    Reverting,
    /// The revert failed (`status.message` has the provider's answer); stays so
    /// while the live value is the one the revert left. Revert or accept again.
    RevertFailed,
}

impl DriftPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            DriftPhase::Open => "Open",
            DriftPhase::Accepted => "Accepted",
            DriftPhase::Stale => "Stale",
            DriftPhase::Reverted => "Reverted",
            DriftPhase::Snoozed => "Snoozed",
            DriftPhase::Ignored => "Ignored",
            DriftPhase::Reverting => "Reverting",
            DriftPhase::RevertFailed => "RevertFailed",
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
    #[serde(default, deserialize_with = "crate::detect::bounded_value")]
    #[schemars(schema_with = "super::schema::any_value")]
    pub expected: Value,
    /// The live value (any JSON); follows the live state while Open.
    #[serde(default, deserialize_with = "crate::detect::bounded_value")]
    #[schemars(schema_with = "super::schema::any_value")]
    pub actual: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detected_time: Option<Time>,
    /// Set when the drift leaves Open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_time: Option<Time>,
    /// Who accepted (the user the chart's admission policy stamped), or the
    /// field manager whose spec change accepted it; "unknown" when not known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_by: Option<String>,
    /// How an accept was recorded: `spec` (written into the CloudProvisioned's
    /// spec) or `overlay` (held in its `status.pendingGitChanges`).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "known_or_none")]
    pub accept_mode: Option<AcceptedInto>,
    /// Human-readable state: what to commit to Git after an accept, or why an accept was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Until when the drift is snoozed (phase Snoozed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snoozed_until: Option<Time>,
    /// Parts of the field's value that ignore rules left out of the comparison.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignored: Vec<super::IgnoredDifference>,
    /// Where an overlay accept was committed to Git (Git write-back).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git: Option<GitCommit>,
    /// The provider calls a revert of this drift would make, in order: the
    /// preview a person approves with `arcadia.cloud/revert=<revertPlanDigest>`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub revert_plan: Vec<super::ProviderCall>,
    /// The digest of `revertPlan` (32 hex digits of SHA-256): an approval
    /// names it, so it approves exactly this plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revert_plan_digest: Option<String>,
    /// Why the field cannot be reverted, or what a revert of it needs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revert_note: Option<String>,
    /// The revert saga: each step, the provider's action and its state.
    /// Written only by the reverter (field manager `arcadia-drift-reverter`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revert: Option<super::RevertRecord>,
    /// When the revert under way was approved: a saga record started before
    /// it belongs to an earlier approval (a RevertFailed drift approved again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revert_approved_time: Option<Time>,
    /// Earlier episodes of this same field, newest first, bounded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<DriftEpisode>,
}

/// The commit that carries an accepted value to Git, or why there is none.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GitCommit {
    /// The repository (no credentials in it).
    pub url: String,
    /// The branch pushed to: the object's branch, or a review branch.
    pub branch: String,
    /// Empty when Git already held the value, or when the write-back was refused.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub commit: String,
    /// Why this accept is never written back (a remote not allowed, no file to
    /// change): recorded so that no restart tries it again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
    /// The file changed, relative to the repository root (empty when Git already held the value).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path: String,
    pub pushed_time: Time,
    /// Set when the write-back was refused because the field's text in Git is a
    /// Flux `${VAR}` substitution: the variable holds the value, not the manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flux_variable: Option<FluxVariable>,
}

/// A Flux post-build variable that holds an accepted field's value in Git.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FluxVariable {
    /// The variable's name, as in `${NAME}`.
    pub name: String,
    /// Where it is set (the Kustomization's postBuild), and to change it there.
    pub set_in: String,
}

/// A past, resolved episode of a Drift, kept as history when the field drifts again.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DriftEpisode {
    pub phase: DriftPhase,
    #[serde(default, deserialize_with = "crate::detect::bounded_value")]
    #[schemars(schema_with = "super::schema::any_value")]
    pub expected: Value,
    #[serde(default, deserialize_with = "crate::detect::bounded_value")]
    #[schemars(schema_with = "super::schema::any_value")]
    pub actual: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detected_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_by: Option<String>,
}

impl Drift {
    /// The deterministic name of the one Drift object that tracks `field` of the
    /// CloudProvisioned `provisioned`: readable, a valid object name, and unique
    /// per field (a stable FNV-1a hash of the exact field name tells apart
    /// fields that read the same once sanitized, such as `size_slug` and `size-slug`).
    pub fn name_for(provisioned: &str, field: &str) -> String {
        let slug: String =
            field.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).collect();
        let slug: Vec<&str> = slug.split('-').filter(|s| !s.is_empty()).collect();
        let slug: String = slug.join("-").chars().take(48).collect();
        let slug = slug.trim_end_matches('-');
        let hash = super::fnv1a(field);
        let suffix = format!("{slug}-{hash:08x}");
        // 253 is the limit for object names; keep the whole suffix, trim the prefix.
        let room = 253usize.saturating_sub(suffix.len() + 1);
        let prefix: String = provisioned.chars().take(room).collect();
        let prefix = prefix.trim_end_matches(['-', '.']);
        if slug.is_empty() { format!("{prefix}-{hash:08x}") } else { format!("{prefix}-{suffix}") }
    }

    /// Whether an operator asked to accept this drift.
    pub fn accept_requested(&self) -> bool {
        self.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(super::ANNOTATION_ACCEPT))
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    }

    /// Who asked; "unknown" when the annotation does not say.
    pub fn accepted_by(&self) -> String {
        self.actor(super::ANNOTATION_ACCEPTED_BY)
    }

    /// Who approved a revert; "unknown" when the annotation does not say.
    pub fn reverted_by(&self) -> String {
        self.actor(super::ANNOTATION_REVERTED_BY)
    }

    fn actor(&self, annotation: &str) -> String {
        self.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(annotation))
            .filter(|v| !v.is_empty())
            .cloned()
            .unwrap_or_else(|| "unknown".into())
    }
}

/// Where an accept was recorded (`status.acceptMode`): the accept mode once
/// `auto` is decided.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AcceptedInto {
    /// Written into the CloudProvisioned's `spec.desired`.
    Spec,
    /// Held in the CloudProvisioned's `status.pendingGitChanges` until Git catches up.
    Overlay,
}

/// A value this build does not know reads as none: a Drift whose status was
/// written with another word (by hand, or before the schema said which)
/// still reads, so one object never stops the watch of all of them.
fn known_or_none<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    let value = Option::<Value>::deserialize(deserializer)?;
    Ok(value.and_then(|v| serde_json::from_value(v).ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Saga records written by a running release must read back after an
    /// upgrade, and mean the same: the wire form of a step is pinned.
    #[test]
    fn a_saga_steps_wire_form_is_pinned() {
        use crate::api::{ProviderCall, RevertStep, StepState};
        let step = RevertStep {
            call: ProviderCall {
                method: "POST".into(),
                path: "/v2/droplets/3164445/actions".into(),
                body: serde_json::json!({"type": "power_on"}),
                description: "power the droplet on".into(),
                waits_for_action: true,
            },
            compensation: true,
            state: StepState::InProgress,
            handle: None,
            action_id: Some(11),
            sent_time: None,
            message: None,
        };
        let wire = serde_json::json!({
            "call": {"method": "POST", "path": "/v2/droplets/3164445/actions", "body": {"type": "power_on"},
                     "description": "power the droplet on", "waitsForAction": true},
            "compensation": true, "state": "InProgress", "actionId": 11,
        });
        assert_eq!(serde_json::to_value(&step).unwrap(), wire);
        assert_eq!(serde_json::from_value::<RevertStep>(wire).unwrap(), step);
    }

    #[test]
    fn names_are_deterministic_valid_and_distinct_per_field() {
        let a = Drift::name_for("web-1", "size_slug");
        assert_eq!(a, Drift::name_for("web-1", "size_slug"));
        assert!(a.starts_with("web-1-size-slug-"), "{a}");
        assert_ne!(a, Drift::name_for("web-1", "size-slug"));
        assert_ne!(a, Drift::name_for("web-1", "sizeSlug"));
        let odd = Drift::name_for("web-1", "Ünïcode/x.y");
        assert!(odd.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'), "{odd}");
        let only_symbols = Drift::name_for("web-1", "__");
        assert!(only_symbols.starts_with("web-1-") && !only_symbols.contains("--"), "{only_symbols}");
        let long = Drift::name_for(&"p".repeat(300), &"f_".repeat(300));
        assert!(long.len() <= 253, "{}", long.len());
    }

    #[test]
    fn an_accept_mode_this_build_does_not_know_reads_as_none_and_the_status_still_reads() {
        let status = |mode: &str| -> DriftStatus {
            serde_json::from_value(serde_json::json!({"phase": "Accepted", "acceptMode": mode})).unwrap()
        };
        assert_eq!(status("overlay").accept_mode, Some(AcceptedInto::Overlay));
        assert_eq!(status("spec").accept_mode, Some(AcceptedInto::Spec));
        let odd = status("sideways");
        assert_eq!((odd.phase, odd.accept_mode), (DriftPhase::Accepted, None));
        let written = serde_json::to_value(DriftStatus { accept_mode: Some(AcceptedInto::Overlay), ..odd }).unwrap();
        assert_eq!(written["acceptMode"], "overlay");
    }
}
