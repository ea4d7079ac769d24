//! Accept modes: how an accepted live value is recorded, and how a value
//! accepted in overlay mode meets Git again. Pure decisions over the
//! CloudProvisioned as the caches hold it; the controller's plan calls them.
//!
//! - `spec`: the accepted value is written into `spec.desired`.
//! - `overlay`: the spec is not touched; the value waits in
//!   `status.pendingGitChanges` and is compared against until the spec holds
//!   it (merged) or changes the field to something else (superseded: Git wins).
//! - `auto`: `overlay` when a GitOps tool manages the object, else `spec`.

pub mod provenance;

use crate::api::{
    ANNOTATION_ACCEPT_MODE, ARGOCD_TRACKING_ID, AcceptMode, CloudProvisioned, DEFAULT_GITOPS_MANAGERS, FIELD_MANAGER,
    FLUX_LABELS, Fields, PendingGitChange,
};
use crate::detect::{loosely_equal, yaml_scalar};
use kube::ResourceExt;
use serde_json::Value;
use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq)]
pub struct AcceptSettings {
    /// `--accept-mode`: the mode of objects without the annotation.
    pub default_mode: AcceptMode,
    /// `--gitops-managers`: field managers that apply manifests from Git.
    pub gitops_managers: Vec<String>,
}

impl Default for AcceptSettings {
    fn default() -> Self {
        Self {
            default_mode: AcceptMode::Auto,
            gitops_managers: DEFAULT_GITOPS_MANAGERS.iter().map(|m| m.to_string()).collect(),
        }
    }
}

/// The mode an accept uses (never `Auto`), and why, in words for status messages.
#[derive(Clone, Debug, PartialEq)]
pub struct ModeChoice {
    pub mode: AcceptMode,
    pub why: String,
}

/// An `arcadia.cloud/accept-mode` annotation whose word is no mode.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{ANNOTATION_ACCEPT_MODE} {word:?} on CloudProvisioned {object} is not one of {words}", words = AcceptMode::WORDS.join(", "))]
pub struct UnknownMode {
    pub word: String,
    pub object: String,
}

/// Decides the accept mode of `p`; an unknown annotation value is an error
/// that names it, so a typo never silently picks a mode.
pub fn choose_mode(p: &CloudProvisioned, settings: &AcceptSettings) -> Result<ModeChoice, UnknownMode> {
    let (mode, source) = match p.annotations().get(ANNOTATION_ACCEPT_MODE) {
        Some(word) => {
            let mode =
                AcceptMode::parse(word).ok_or_else(|| UnknownMode { word: word.clone(), object: p.name_any() })?;
            (mode, format!("the {ANNOTATION_ACCEPT_MODE} annotation"))
        }
        None => (settings.default_mode, "--accept-mode".to_owned()),
    };
    Ok(match mode {
        AcceptMode::Auto => match gitops_manager(p, &settings.gitops_managers) {
            Some(tool) => ModeChoice { mode: AcceptMode::Overlay, why: format!("auto, from {source}: {tool}") },
            None => ModeChoice {
                mode: AcceptMode::Spec,
                why: format!("auto, from {source}: no GitOps tool manages the object"),
            },
        },
        mode => ModeChoice { mode, why: format!("set by {source}") },
    })
}

/// Which GitOps tool manages `p`, in words, if one does.
pub fn gitops_manager(p: &CloudProvisioned, managers: &[String]) -> Option<String> {
    let by_manager = p
        .managed_fields()
        .iter()
        .filter_map(|m| m.manager.as_deref())
        .find(|m| managers.iter().any(|g| g == m))
        .map(|m| format!("managed by the field manager {m}"));
    let by_argo = p.annotations().get(ARGOCD_TRACKING_ID).map(|_| format!("tracked by Argo CD ({ARGOCD_TRACKING_ID})"));
    let by_flux =
        FLUX_LABELS.iter().find_map(|label| p.labels().get(*label).map(|v| format!("applied by Flux ({label}={v})")));
    by_manager.or(by_argo).or(by_flux)
}

/// What became of a pending entry now that the spec is what it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settled {
    /// Git does not hold the accepted value yet, and has not moved either.
    Pending,
    /// The spec now holds the accepted value.
    Merged,
    /// The spec changed the field to another value (or dropped it): Git wins.
    Superseded,
}

pub fn settle(entry: &PendingGitChange, spec: &Fields) -> Settled {
    match spec.get(&entry.field) {
        Some(now) if loosely_equal(&now, &entry.value) => Settled::Merged,
        Some(now) if loosely_equal(&now, &entry.spec_value) => Settled::Pending,
        _ => Settled::Superseded,
    }
}

/// The field managers that own each `spec.desired` key, from full
/// `managedFields` (the caches strip them): another manager than this
/// controller when there is one, the most recent writer first.
pub fn field_owners(p: &CloudProvisioned) -> BTreeMap<String, String> {
    let mut entries: Vec<_> = p.managed_fields().iter().filter(|m| m.subresource.is_none()).collect();
    // Ours last and oldest last, so the first owner written per field is the one reported.
    entries.sort_by_key(|m| (m.manager.as_deref() == Some(FIELD_MANAGER), std::cmp::Reverse(m.time.clone())));
    let mut owners = BTreeMap::new();
    for entry in entries {
        let (Some(manager), Some(fields)) = (&entry.manager, &entry.fields_v1) else { continue };
        let Some(desired) = fields.0.get("f:spec").and_then(|s| s.get("f:desired")).and_then(Value::as_object) else {
            continue;
        };
        for key in desired.keys().filter_map(|k| k.strip_prefix("f:")) {
            owners.entry(key.to_owned()).or_insert_with(|| manager.clone());
        }
    }
    owners
}

/// `spec.desired.<field>: <value>` as a line to commit, with the value in a
/// YAML form that reads back as the same JSON value.
pub fn commit_line(field: &str, value: &Value) -> String {
    format!("spec.desired.{field}: {}", yaml_scalar(value))
}

#[cfg(test)]
mod tests;
