//! Drifts a moved CloudProvisioned left behind. When an object is relabelled
//! into another shard, that shard pulls the object's Drifts over as soon as
//! it is about to write one (see `reconcile`). A Drift whose field is back in
//! sync (an Ignored or Snoozed one, say) gives it no reason to: so the shard
//! the object left pushes them too. Once per resync interval it looks for
//! Drifts in its cache whose CloudProvisioned its cache no longer holds,
//! reads each such object, and, if it now belongs to another shard,
//! relabels its Drifts with that shard. Objects deleted, or not yet in the
//! cache, are left alone. Steady state costs no request: no Drift is left
//! behind.

use super::shard::Shard;
use crate::api::{CloudProvisioned, Drift, LABEL_SHARD};
use crate::runtime::Stop;
use crate::runtime::metrics::ApiWrites;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// A CloudProvisioned's namespace and name.
type Owner = (String, String);

/// The cached Drifts, by owner, whose CloudProvisioned `held` says the
/// provisioned cache lacks.
pub fn left_behind(drifts: &[Arc<Drift>], held: impl Fn(&str, &str) -> bool) -> BTreeMap<Owner, Vec<String>> {
    let mut out: BTreeMap<Owner, Vec<String>> = BTreeMap::new();
    for d in drifts {
        let namespace = d.namespace().unwrap_or_default();
        let owner = &d.spec.provisioned_ref.name;
        if !held(&namespace, owner) {
            out.entry((namespace, owner.clone())).or_default().push(d.name_any());
        }
    }
    out
}

/// The shard label the Drifts of `p` should carry, when `p` now belongs to
/// a shard other than `ours`: `Some(None)` for the rest (no label).
pub fn moved_to(ours: &Shard, p: &CloudProvisioned) -> Option<Option<String>> {
    (!ours.holds(p.metadata.labels.as_ref())).then(|| p.labels().get(LABEL_SHARD).cloned())
}

/// Hands Drifts left behind over to their objects' new shards, once per
/// `interval`, until `stop`.
pub async fn run(
    (client, writes): (Client, ApiWrites),
    (provisioned, drifts): (Store<CloudProvisioned>, Store<Drift>),
    shard: Shard,
    interval: Duration,
    stop: Stop,
) {
    let pass = async {
        // Before the CloudProvisioned cache is complete, every Drift would look left behind.
        if provisioned.wait_until_ready().await.is_err() {
            return;
        }
        loop {
            tokio::time::sleep(interval).await;
            let held = |ns: &str, name: &str| provisioned.get(&ObjectRef::new(name).within(ns)).is_some();
            for ((namespace, owner), names) in left_behind(&drifts.state(), held) {
                hand_over((&client, &writes), &shard, (&namespace, &owner), &names).await;
            }
        }
    };
    tokio::select! {
        () = pass => {}
        () = stop.stopped() => {}
    }
}

/// Gives a Drift the shard label `label` (none: the rest), counting the write.
/// Both ways a Drift follows its moved object (this pass, and the new
/// shard's reconcile) move it with this.
pub async fn relabel(api: &Api<Drift>, name: &str, label: Option<&str>, writes: &ApiWrites) -> kube::Result<()> {
    let body = json!({"metadata": {"labels": {LABEL_SHARD: label}}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(body)).await?;
    writes.count("drift");
    Ok(())
}

/// Reads the object; when another shard holds it now, relabels its Drifts.
/// A failure is logged and tried again at the next pass.
async fn hand_over(
    (client, writes): (&Client, &ApiWrites),
    shard: &Shard,
    (namespace, owner): (&str, &str),
    drifts: &[String],
) {
    let object = format!("{namespace}/{owner}");
    let p = match Api::<CloudProvisioned>::namespaced(client.clone(), namespace).get_opt(owner).await {
        Ok(Some(p)) => p,
        // Deleted: its Drifts go with it (ownerReferences).
        Ok(None) => return,
        Err(error) => {
            tracing::warn!(%error, object, "cannot read a CloudProvisioned this shard's Drifts name; trying again next pass");
            return;
        }
    };
    let Some(label) = moved_to(shard, &p) else { return };
    let api: Api<Drift> = Api::namespaced(client.clone(), namespace);
    for name in drifts {
        if let Err(error) = relabel(&api, name, label.as_deref(), writes).await {
            tracing::warn!(%error, drift = %name, object, "cannot move a Drift to its object's shard; trying again next pass");
            return;
        }
    }
    tracing::info!(
        object,
        moved = drifts.len(),
        to = label.as_deref().unwrap_or("(the rest)"),
        "moved Drifts left behind to their CloudProvisioned's new shard"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{CloudProvisionedSpec, DriftSpec, ProvisionedRef, ResourceRef};

    fn drift(namespace: &str, name: &str, owner: &str) -> Arc<Drift> {
        let spec = DriftSpec {
            provisioned_ref: ProvisionedRef { name: owner.into() },
            resource_ref: ResourceRef { name: "r".into() },
            field: "size_slug".into(),
        };
        let mut d = Drift::new(name, spec);
        d.metadata.namespace = Some(namespace.into());
        Arc::new(d)
    }

    fn labelled(shard: Option<&str>) -> CloudProvisioned {
        let mut p = CloudProvisioned::new("web", CloudProvisionedSpec::default());
        if let Some(shard) = shard {
            p.labels_mut().insert(LABEL_SHARD.into(), shard.into());
        }
        p
    }

    #[test]
    fn only_drifts_whose_object_the_cache_lacks_are_left_behind() {
        let drifts = [drift("a", "web-size", "web"), drift("a", "web-tags", "web"), drift("b", "db-size", "db")];
        let held = |ns: &str, name: &str| (ns, name) == ("b", "db");
        let left = left_behind(&drifts, held);
        assert_eq!(left.len(), 1);
        assert_eq!(left[&("a".to_owned(), "web".to_owned())], ["web-size", "web-tags"]);
        assert!(left_behind(&drifts, |_, _| true).is_empty(), "nothing left behind in steady state");
    }

    #[test]
    fn an_object_moves_only_to_a_shard_other_than_ours() {
        let eu = Shard::Named("eu".into());
        let rest = Shard::Rest(vec!["eu".into()]);
        assert_eq!(moved_to(&eu, &labelled(None)), Some(None), "from eu to the rest: the label goes");
        assert_eq!(moved_to(&eu, &labelled(Some("us"))), Some(Some("us".into())));
        assert_eq!(moved_to(&eu, &labelled(Some("eu"))), None, "still ours: the cache is behind");
        assert_eq!(moved_to(&rest, &labelled(Some("eu"))), Some(Some("eu".into())));
        assert_eq!(moved_to(&rest, &labelled(Some("nobody"))), None, "a shard nobody runs stays with the rest");
    }
}
