//! Whether `status.pendingGitChanges` is the controller's own record. The
//! entries change the value that is compared and reverted, and a status can be
//! written by anyone granted `cloudprovisioneds/status`, so they count only
//! while the status subresource's managedFields say the controller's field
//! manager owns the list (it is atomic: any other writer's change of it takes
//! the ownership away). A forged list is ignored, and the controller's next
//! status write drops it.

use crate::api::{CloudProvisioned, FIELD_MANAGER, Fields, PendingGitChange};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
use kube::ResourceExt;

/// `status.pendingGitChanges` last written by another field manager than the controller's.
#[derive(Debug, PartialEq, thiserror::Error)]
#[error(
    "status.pendingGitChanges of CloudProvisioned {object} was written by {writer}, not by the controller ({FIELD_MANAGER}): its entries ({fields}) are ignored, and each field is compared against spec.desired"
)]
pub struct ForgedPending {
    /// `namespace/name`.
    pub object: String,
    pub writer: String,
    /// The fields of the ignored entries, comma-separated.
    pub fields: String,
}

/// The pending changes the controller recorded itself, or why the ones in
/// the status are not: they were last written by another field manager.
pub fn trusted_pending(p: &CloudProvisioned) -> Result<&[PendingGitChange], ForgedPending> {
    let pending = p.status.as_ref().map(|s| s.pending_git_changes.as_slice()).unwrap_or_default();
    if pending.is_empty() {
        return Ok(pending);
    }
    let owners: Vec<&str> =
        p.managed_fields().iter().filter(|m| owns_pending(m)).filter_map(|m| m.manager.as_deref()).collect();
    if owners.contains(&FIELD_MANAGER) {
        return Ok(pending);
    }
    let writer = if owners.is_empty() { "an unknown field manager".to_owned() } else { owners.join(", ") };
    let fields: Vec<&str> = pending.iter().map(|e| e.field.as_str()).collect();
    Err(ForgedPending {
        object: format!("{}/{}", p.namespace().unwrap_or_default(), p.name_any()),
        writer,
        fields: fields.join(", "),
    })
}

/// The desired values as the controller compares them: `spec.desired` with
/// the pending changes it recorded itself laid over it (those the spec has
/// not caught up with or moved away from), and why others were ignored.
pub fn desired(p: &CloudProvisioned) -> (Fields, Option<ForgedPending>) {
    let mut desired = p.spec.desired.clone();
    let (trusted, ignored) = match trusted_pending(p) {
        Ok(entries) => (entries, None),
        Err(why) => (&[][..], Some(why)),
    };
    for entry in trusted.iter().filter(|e| super::settle(e, &p.spec.desired) == super::Settled::Pending) {
        desired.insert(entry.field.clone(), entry.value.clone());
    }
    (desired, ignored)
}

/// A managedFields entry of the status subresource that owns `status.pendingGitChanges`.
pub fn owns_pending(m: &ManagedFieldsEntry) -> bool {
    m.subresource.as_deref() == Some("status")
        && m.fields_v1.as_ref().and_then(|f| f.0.get("f:status")?.get("f:pendingGitChanges")).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{CloudProvisionedSpec, CloudProvisionedStatus, ResourceRef};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, Time};
    use serde_json::json;

    fn entry(manager: &str, subresource: Option<&str>, fields: serde_json::Value) -> ManagedFieldsEntry {
        ManagedFieldsEntry {
            manager: Some(manager.into()),
            operation: Some("Apply".into()),
            subresource: subresource.map(Into::into),
            fields_v1: Some(FieldsV1(fields)),
            ..Default::default()
        }
    }

    fn with_pending(managed: Vec<ManagedFieldsEntry>) -> CloudProvisioned {
        let spec = CloudProvisionedSpec {
            resource_ref: ResourceRef { name: "digitalocean-droplet-1".into() },
            ..Default::default()
        };
        let mut p = CloudProvisioned::new("web-1", spec);
        p.metadata.namespace = Some("team-a".into());
        p.metadata.managed_fields = Some(managed);
        let change = PendingGitChange {
            field: "size_slug".into(),
            value: json!("s-32vcpu-192gb"),
            drift: "web-1-size-slug-1".into(),
            accepted_by: "alice".into(),
            accepted_time: Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
            spec_value: json!("s-1vcpu-1gb"),
        };
        p.status = Some(CloudProvisionedStatus { pending_git_changes: vec![change], ..Default::default() });
        p
    }

    fn pending() -> serde_json::Value {
        json!({"f:status": {"f:pendingGitChanges": {}}})
    }

    #[test]
    fn entries_count_only_when_the_controller_owns_the_list() {
        let ours = with_pending(vec![entry(FIELD_MANAGER, Some("status"), pending())]);
        assert_eq!(trusted_pending(&ours).unwrap().len(), 1);
        // Shared ownership (another applier wrote the same value) still holds our value.
        let shared = with_pending(vec![
            entry("kubectl", Some("status"), pending()),
            entry(FIELD_MANAGER, Some("status"), pending()),
        ]);
        assert_eq!(trusted_pending(&shared).unwrap().len(), 1);
    }

    #[test]
    fn a_list_written_by_another_manager_is_ignored_and_says_by_whom() {
        let forged = with_pending(vec![
            entry(FIELD_MANAGER, Some("status"), json!({"f:status": {"f:conditions": {}}})),
            entry("tenant-bot", Some("status"), pending()),
        ]);
        let why = trusted_pending(&forged).unwrap_err().to_string();
        assert!(why.contains("written by tenant-bot") && why.contains("(size_slug)"), "{why}");
        // Our ownership of a spec field does not vouch for the status.
        let spec_only =
            with_pending(vec![entry(FIELD_MANAGER, None, json!({"f:status": {"f:pendingGitChanges": {}}}))]);
        assert!(trusted_pending(&spec_only).unwrap_err().to_string().contains("an unknown field manager"));
        let none = with_pending(Vec::new());
        assert!(trusted_pending(&none).is_err());
    }
}
