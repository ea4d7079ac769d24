//! The decision journal: the operator decisions that must outlive the
//! objects' status. A restore that recreates CloudProvisioneds and Drifts
//! without their status subresource (Velero's default for custom resources)
//! would otherwise reopen every ignored or snoozed drift and forget every
//! overlay accept not yet in Git. The journal keeps those decisions in
//! ConfigMaps in the controller's own namespace, which tenants cannot write:
//! an ignore decision keyed by CloudProvisioned, field and CloudResource, and
//! honoured only while the live value is the one it was made for; a snooze
//! until its time; a pending Git change until Git has it. Entries outlive the
//! objects (a restore deletes and recreates them) and go when the decision
//! ends, or, past [`MAX_ENTRIES`] in a namespace, oldest first.
//!
//! This module is pure: what entries a plan implies, and what a restored
//! entry means. The controller's `journal` module reads and writes them.

use crate::api::{CloudProvisioned, DriftPhase, DriftStatus, PendingGitChange};
use crate::detect::loosely_equal;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// Entries kept per namespace at most (a ConfigMap holds 1 MiB).
pub const MAX_ENTRIES: usize = 1000;
/// The longest message an entry keeps (an ignore reason is a tenant's text).
const MAX_MESSAGE: usize = 512;

fn shortened(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

/// One kept decision.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    pub provisioned: String,
    pub field: String,
    /// The CloudResource the object named: a decision is for that resource only.
    pub resource: String,
    pub kept_time: Time,
    #[serde(flatten)]
    pub decision: Decision,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "camelCase")]
pub enum Decision {
    /// Ignored for as long as the live value is `actual`.
    Ignored {
        actual: Value,
        message: Option<String>,
        resolved_by: Option<String>,
        detected_time: Option<Time>,
    },
    Snoozed {
        until: Time,
        actual: Value,
        detected_time: Option<Time>,
    },
    /// An overlay accept not in Git yet.
    PendingGit {
        change: PendingGitChange,
    },
}

/// The journal key of a decision: namespace, then a hash of what it is
/// about (ConfigMap keys are short and plain).
pub fn key(namespace: &str, provisioned: &str, field: &str, pending: bool) -> String {
    let kind = if pending { "pending" } else { "drift" };
    format!("{namespace}.{kind}.{:08x}", crate::api::fnv1a(&format!("{provisioned}/{field}")))
}

/// The entries this object's journal should hold after a plan, by key, each
/// `None` to remove: its ignored and snoozed drifts and its pending changes,
/// and the removal of its entries whose decision ended.
pub fn wanted<'a>(
    p: &CloudProvisioned,
    drifts: impl IntoIterator<Item = (&'a str, &'a DriftStatus)>,
    pending: &[PendingGitChange],
    kept: &BTreeMap<String, Entry>,
    now: &Time,
) -> BTreeMap<String, Option<Entry>> {
    let (namespace, name, resource) = (p.namespace().unwrap_or_default(), p.name_any(), &p.spec.resource_ref.name);
    let entry = |field: &str, decision| Entry {
        provisioned: name.clone(),
        field: field.to_owned(),
        resource: resource.clone(),
        kept_time: now.clone(),
        decision,
    };
    // Pending changes: the plan's list is the whole truth for this object.
    let mut out: BTreeMap<String, Option<Entry>> = kept
        .iter()
        .filter(|(_, e)| e.provisioned == name && &e.resource == resource)
        .filter(|(_, e)| matches!(e.decision, Decision::PendingGit { .. }))
        .map(|(k, _)| (k.clone(), None))
        .collect();
    // Drift decisions: only a field whose Drift is tracked says whether its
    // decision still holds; an untracked one (restored without status, or
    // not compared while the resource is missing) keeps its entry.
    for (field, s) in drifts {
        let k = key(&namespace, &name, field, false);
        if kept.contains_key(&k) {
            out.insert(k.clone(), None);
        }
        let decision = match s.phase {
            DriftPhase::Ignored if s.ignored.is_empty() => Decision::Ignored {
                actual: s.actual.clone(),
                message: s.message.as_deref().map(|m| shortened(m, MAX_MESSAGE)),
                resolved_by: s.resolved_by.clone(),
                detected_time: s.detected_time.clone(),
            },
            DriftPhase::Snoozed => match &s.snoozed_until {
                Some(until) => Decision::Snoozed {
                    until: until.clone(),
                    actual: s.actual.clone(),
                    detected_time: s.detected_time.clone(),
                },
                None => continue,
            },
            _ => continue,
        };
        out.insert(key(&namespace, &name, field, false), Some(entry(field, decision)));
    }
    for change in pending {
        let decision = Decision::PendingGit { change: change.clone() };
        out.insert(key(&namespace, &name, &change.field, true), Some(entry(&change.field, decision)));
    }
    // Unchanged entries keep their time, so a quiet reconcile writes nothing.
    for (k, v) in out.iter_mut() {
        if let (Some(new), Some(old)) = (v.as_mut(), kept.get(k))
            && (Entry { kept_time: old.kept_time.clone(), ..new.clone() }) == *old
        {
            new.kept_time = old.kept_time.clone();
        }
    }
    out
}

/// The status a newly drifted field takes from a kept decision about it:
/// Ignored while the live value is the one it was ignored at, Snoozed until
/// its time; `None` when no decision applies.
pub fn restored(entry: &Entry, actual: &Value, now: &Time) -> Option<(DriftPhase, DriftStatus)> {
    match &entry.decision {
        Decision::Ignored { actual: kept, message, resolved_by, detected_time } if loosely_equal(kept, actual) => {
            let message = message.clone().unwrap_or_else(|| "ignored".into());
            Some((
                DriftPhase::Ignored,
                DriftStatus {
                    phase: DriftPhase::Ignored,
                    actual: actual.clone(),
                    message: Some(format!("{message} (restored from the decision journal)")),
                    resolved_by: resolved_by.clone(),
                    detected_time: detected_time.clone(),
                    ..Default::default()
                },
            ))
        }
        Decision::Snoozed { until, actual: kept, detected_time } if until.0 > now.0 && loosely_equal(kept, actual) => {
            Some((
                DriftPhase::Snoozed,
                DriftStatus {
                    phase: DriftPhase::Snoozed,
                    actual: actual.clone(),
                    snoozed_until: Some(until.clone()),
                    message: Some(format!(
                        "snoozed until {}; Open again then if it still drifts (restored from the decision journal)",
                        until.0
                    )),
                    detected_time: detected_time.clone(),
                    ..Default::default()
                },
            ))
        }
        _ => None,
    }
}

/// The pending Git changes kept for `p`, for when its status lost them.
pub fn pending_for(p: &CloudProvisioned, kept: &BTreeMap<String, Entry>) -> Vec<PendingGitChange> {
    let (name, resource) = (p.name_any(), &p.spec.resource_ref.name);
    kept.values()
        .filter(|e| e.provisioned == name && &e.resource == resource)
        .filter_map(|e| match &e.decision {
            Decision::PendingGit { change } => Some(change.clone()),
            _ => None,
        })
        .collect()
}

/// The kept decision about `field` of `p`, if any.
pub fn about<'a>(p: &CloudProvisioned, field: &str, kept: &'a BTreeMap<String, Entry>) -> Option<&'a Entry> {
    let k = key(&p.namespace().unwrap_or_default(), &p.name_any(), field, false);
    kept.get(&k).filter(|e| e.provisioned == p.name_any() && e.resource == p.spec.resource_ref.name && e.field == field)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{CloudProvisionedSpec, Fields, ResourceRef};
    use serde_json::json;

    fn at(s: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(1_800_000_000 + s).unwrap())
    }

    fn provisioned() -> CloudProvisioned {
        let spec = CloudProvisionedSpec {
            resource_ref: ResourceRef { name: "digitalocean-droplet-1".into() },
            desired: Fields::try_from(json!({"size_slug": "s-1vcpu-1gb"})).unwrap(),
            ..Default::default()
        };
        let mut p = CloudProvisioned::new("web-1", spec);
        p.metadata.namespace = Some("team-a".into());
        p
    }

    fn ignored(actual: &str) -> DriftStatus {
        DriftStatus {
            phase: DriftPhase::Ignored,
            actual: json!(actual),
            message: Some("ignored: load test".into()),
            resolved_by: Some("alice".into()),
            ..Default::default()
        }
    }

    #[test]
    fn an_ignore_is_kept_while_it_lasts_and_removed_when_it_ends() {
        let p = provisioned();
        let status = ignored("s-2vcpu-4gb");
        let first = wanted(&p, [("size_slug", &status)], &[], &BTreeMap::new(), &at(0));
        let k = key("team-a", "web-1", "size_slug", false);
        let entry = first[&k].clone().unwrap();
        assert!(matches!(entry.decision, Decision::Ignored { .. }));
        let kept = BTreeMap::from([(k.clone(), entry.clone())]);
        let again = wanted(&p, [("size_slug", &status)], &[], &kept, &at(50));
        assert_eq!(again[&k].as_ref(), Some(&entry), "unchanged, with its first time: nothing to write");
        let open = DriftStatus { phase: DriftPhase::Open, ..status };
        assert_eq!(wanted(&p, [("size_slug", &open)], &[], &kept, &at(60))[&k], None, "reopened: removed");
        // Another object's entries are not this one's to remove.
        let mut other = provisioned();
        other.metadata.name = Some("web-2".into());
        assert!(wanted(&other, [], &[], &kept, &at(60)).is_empty());
        // A field whose Drift is not tracked (restored without status) keeps its decision.
        assert!(wanted(&p, [], &[], &kept, &at(60)).is_empty());
    }

    #[test]
    fn a_kept_ignore_comes_back_only_for_the_same_live_value_and_a_snooze_only_before_its_time() {
        let p = provisioned();
        let k = key("team-a", "web-1", "size_slug", false);
        let kept = wanted(&p, [("size_slug", &ignored("s-2vcpu-4gb"))], &[], &BTreeMap::new(), &at(0));
        let entry = kept[&k].clone().unwrap();
        let (phase, status) = restored(&entry, &json!("s-2vcpu-4gb"), &at(10)).unwrap();
        assert_eq!((phase, status.resolved_by.as_deref()), (DriftPhase::Ignored, Some("alice")));
        assert!(status.message.unwrap().contains("restored from the decision journal"));
        assert_eq!(restored(&entry, &json!("s-8vcpu-16gb"), &at(10)), None, "a new live value is a new drift");

        let snoozed = DriftStatus {
            phase: DriftPhase::Snoozed,
            actual: json!("s-2vcpu-4gb"),
            snoozed_until: Some(at(100)),
            ..Default::default()
        };
        let entry = wanted(&p, [("size_slug", &snoozed)], &[], &BTreeMap::new(), &at(0))[&k].clone().unwrap();
        assert_eq!(restored(&entry, &json!("s-2vcpu-4gb"), &at(50)).unwrap().0, DriftPhase::Snoozed);
        assert_eq!(restored(&entry, &json!("s-2vcpu-4gb"), &at(101)), None, "past its time: Open");
    }

    #[test]
    fn pending_git_changes_are_kept_for_their_object_and_resource_only() {
        let p = provisioned();
        let change = PendingGitChange {
            field: "size_slug".into(),
            value: json!("s-2vcpu-4gb"),
            drift: "web-1-size-slug-1".into(),
            accepted_by: "alice".into(),
            accepted_time: at(0),
            spec_value: json!("s-1vcpu-1gb"),
        };
        let kept: BTreeMap<String, Entry> = wanted(&p, [], std::slice::from_ref(&change), &BTreeMap::new(), &at(0))
            .into_iter()
            .filter_map(|(k, v)| Some((k, v?)))
            .collect();
        assert_eq!(pending_for(&p, &kept), [change]);
        let mut elsewhere = provisioned();
        elsewhere.spec.resource_ref.name = "digitalocean-droplet-2".into();
        assert!(pending_for(&elsewhere, &kept).is_empty(), "a decision is for the resource it was made on");
    }
}
