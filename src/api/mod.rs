//! The three custom resources of the `arcadia.cloud/v1alpha1` API, and the
//! label and annotation keys that are part of the public contract.

// clippy reads repeated `printcolumn(type_ = ...)` arguments of the derive as
// duplicated attributes; they are separate columns.
#[allow(clippy::duplicated_attributes)]
mod cloud_provisioned;
#[allow(clippy::duplicated_attributes)]
mod cloud_resource;
#[allow(clippy::duplicated_attributes)]
mod drift;
pub mod lifecycle;
#[allow(clippy::duplicated_attributes)]
mod policy;
mod revert;
mod schema;

/// The type of `spec.desired` and `status.attrs`; defined by the detection core, which compares it.
pub use crate::detect::Fields;
pub use cloud_provisioned::{
    CloudProvisioned, CloudProvisionedSpec, CloudProvisionedStatus, PendingGitChange, ResourceRef, SpecProblem,
};
pub use cloud_resource::{Absence, CloudResource, CloudResourceSpec, CloudResourceStatus};
pub use drift::{
    AcceptedInto, Drift, DriftEpisode, DriftPhase, DriftSpec, DriftStatus, FluxVariable, GitCommit, ProvisionedRef,
};
pub use policy::{
    DriftPolicy, DriftPolicySpec, DriftPolicyStatus, IgnoreRule, IgnoredDifference, MatchMode, PolicySelector, Severity,
};
pub use revert::{ProviderCall, REVERTER_FIELD_MANAGER, RevertRecord, RevertStep, SagaState, StepState};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

pub const GROUP: &str = "arcadia.cloud";
pub const VERSION: &str = "v1alpha1";

/// Label on every Drift: the name of the CloudProvisioned it belongs to.
pub const LABEL_PROVISIONED: &str = "arcadia.cloud/provisioned";
/// Label on every Drift: its current phase, so `-l arcadia.cloud/phase=Open` is the inbox.
pub const LABEL_PHASE: &str = "arcadia.cloud/phase";
/// Label on a CloudProvisioned: the shard (`--shard`) that handles it; its
/// Drifts carry it too. Unlabelled objects belong to the unnamed shard.
pub const LABEL_SHARD: &str = "arcadia.cloud/shard";
/// Label on every Drift: how much it matters (`critical`, `warning`, `info`).
pub const LABEL_SEVERITY: &str = "arcadia.cloud/severity";
/// Annotation on a Drift: snooze it until this RFC 3339 time (phase Snoozed).
pub const ANNOTATION_SNOOZE_UNTIL: &str = "arcadia.cloud/snooze-until";
/// Annotation on a Drift: live with this live value (phase Ignored), with
/// [`ANNOTATION_IGNORE_REASON`] saying why.
pub const ANNOTATION_IGNORE: &str = "arcadia.cloud/ignore";
pub const ANNOTATION_IGNORE_REASON: &str = "arcadia.cloud/ignore-reason";
/// Label on every CloudResource a syncer writes: which inventory source owns it.
/// A syncer only ever marks missing the objects of its own source.
pub const LABEL_SOURCE: &str = "arcadia.cloud/source";
/// Annotation an operator sets on a Drift to adopt the live value.
pub const ANNOTATION_ACCEPT: &str = "arcadia.cloud/accept";
/// Annotation naming who accepted; "unknown" when absent (the chart's
/// admission policy stamps it with the requesting user).
pub const ANNOTATION_ACCEPTED_BY: &str = "arcadia.cloud/accepted-by";
/// Annotation an operator sets on an Open Drift to put the live value back
/// to the desired one through the provider (`status.revertPlan` shows how).
pub const ANNOTATION_REVERT: &str = "arcadia.cloud/revert";
/// Annotation naming who approved a revert (stamped by the chart's admission policy).
pub const ANNOTATION_REVERTED_BY: &str = "arcadia.cloud/reverted-by";
/// Annotation allowing a revert that stops the resource for a while (a droplet resize).
pub const ANNOTATION_REVERT_ALLOW_DOWNTIME: &str = "arcadia.cloud/revert-allow-downtime";
/// Condition on a CloudProvisioned: another one names the same CloudResource
/// with a different desired value for a field, so neither may revert it.
pub const CONDITION_DESIRED_CONFLICT: &str = "DesiredConflict";
/// Annotation on a CloudProvisioned choosing how an accept is recorded:
/// `spec`, `overlay` or `auto` (see [`AcceptMode`]).
pub const ANNOTATION_ACCEPT_MODE: &str = "arcadia.cloud/accept-mode";
/// Annotations on a CloudProvisioned naming where its manifest lives in Git
/// (URL, branch, and a file or a folder to search) and the Secret (in its
/// namespace, Flux GitRepository format) with the credentials to push there.
pub const ANNOTATION_GIT_URL: &str = "arcadia.cloud/git-url";
pub const ANNOTATION_GIT_BRANCH: &str = "arcadia.cloud/git-branch";
pub const ANNOTATION_GIT_PATH: &str = "arcadia.cloud/git-path";
pub const ANNOTATION_GIT_CREDENTIALS: &str = "arcadia.cloud/git-credentials";
/// Flux's label naming the namespace of the Kustomization that applied an object.
pub const FLUX_KUSTOMIZATION_NAMESPACE: &str = "kustomize.toolkit.fluxcd.io/namespace";
/// Argo CD's resource tracking annotation: the object is applied by an Argo CD Application.
pub const ARGOCD_TRACKING_ID: &str = "argocd.argoproj.io/tracking-id";
/// Flux's labels on what a Kustomization or a HelmRelease applied.
pub const FLUX_LABELS: [&str; 2] = ["kustomize.toolkit.fluxcd.io/name", "helm.toolkit.fluxcd.io/name"];
/// The field managers of GitOps tools that apply manifests from Git (the default of `--gitops-managers`).
pub const DEFAULT_GITOPS_MANAGERS: [&str; 4] =
    ["argocd-controller", "argocd-application-controller", "kustomize-controller", "helm-controller"];

/// A condition's `status`, which Kubernetes keeps as text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

impl ConditionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ConditionStatus::True => "True",
            ConditionStatus::False => "False",
            ConditionStatus::Unknown => "Unknown",
        }
    }

    /// The status `condition` carries; `None` for text Kubernetes does not define.
    pub fn of(condition: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition) -> Option<Self> {
        [ConditionStatus::True, ConditionStatus::False, ConditionStatus::Unknown]
            .into_iter()
            .find(|s| s.as_str() == condition.status)
    }
}

/// How an accept is recorded (annotation [`ANNOTATION_ACCEPT_MODE`], flag `--accept-mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcceptMode {
    /// The accepted value is written into `spec.desired`: for objects nobody applies from Git.
    Spec,
    /// The spec is left alone; the accepted value is held in `status.pendingGitChanges`
    /// and compared against until Git (the spec) catches up.
    Overlay,
    /// `overlay` when a GitOps tool manages the object, `spec` otherwise.
    Auto,
}

impl AcceptMode {
    pub const WORDS: [&str; 3] = ["spec", "overlay", "auto"];

    pub fn parse(word: &str) -> Option<Self> {
        match word.trim() {
            "spec" => Some(AcceptMode::Spec),
            "overlay" => Some(AcceptMode::Overlay),
            "auto" => Some(AcceptMode::Auto),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AcceptMode::Spec => "spec",
            AcceptMode::Overlay => "overlay",
            AcceptMode::Auto => "auto",
        }
    }
}

/// Field manager for every write the project makes (server-side apply and patches).
pub const FIELD_MANAGER: &str = "arcadia-drift";

/// Annotation on each CRD: the version of the schemas it carries. The
/// controller refuses to run against CRDs older than its own (their schemas
/// would prune the fields it writes); newer ones are fine.
pub const ANNOTATION_SCHEMA_VERSION: &str = "arcadia.cloud/schema-version";
/// The version of the CRD schemas this build generates. Bump it with every
/// change of a schema; `tests/crds.rs` fails until [`SCHEMA_FINGERPRINT`] is
/// updated along with it. Version 1 was never marked.
pub const SCHEMA_VERSION: u32 = 9;
/// FNV-1a of the generated CRD specs, to catch a schema change without a version bump.
pub const SCHEMA_FINGERPRINT: &str = "1b9b03c0";

/// All CRDs of the API, in the order `arcadia-drift crds` prints them, each
/// marked with [`SCHEMA_VERSION`].
pub fn crds() -> Vec<CustomResourceDefinition> {
    let mut crds = vec![CloudResource::crd(), CloudProvisioned::crd(), Drift::crd(), DriftPolicy::crd()];
    for crd in &mut crds {
        crd.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(ANNOTATION_SCHEMA_VERSION.into(), SCHEMA_VERSION.to_string());
    }
    crds
}

/// The fingerprint of the CRD specs as this build generates them.
pub fn schema_fingerprint() -> String {
    let specs: Vec<_> = crds().into_iter().map(|c| c.spec).collect();
    let json = serde_json::to_string(&specs).expect("CRD specs serialize");
    format!("{:08x}", fnv1a(&json))
}

/// The CRDs as multi-document YAML, exactly what is committed under `crds/`.
pub fn crds_yaml() -> Result<String, serde_saphyr::ser::Error> {
    let mut out = String::new();
    for crd in crds() {
        out.push_str("---\n");
        out.push_str(&serde_saphyr::to_string(&crd)?);
    }
    Ok(out)
}

/// The current time at the precision the API server stores (whole seconds), so
/// a status built here compares equal to the same status read back.
pub fn now() -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Time {
    let now = k8s_openapi::jiff::Timestamp::now();
    k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        k8s_openapi::jiff::Timestamp::from_second(now.as_second()).unwrap_or(now),
    )
}

/// FNV-1a, 32 bits: a hash that never changes between builds or platforms,
/// for names and label values that must stay the same across restarts.
pub(crate) fn fnv1a(text: &str) -> u32 {
    text.bytes().fold(0x811c_9dc5_u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193))
}

/// A label value for an object name: the name itself when it fits the
/// 63-character limit of label values, else a prefix plus a stable hash.
pub fn label_value(name: &str) -> String {
    if name.len() <= 63 {
        return name.to_owned();
    }
    let prefix: String = name.chars().take(54).collect();
    format!("{}-{:08x}", prefix.trim_end_matches(['-', '.']), fnv1a(name))
}
