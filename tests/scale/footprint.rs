//! Bytes per cached object: the harness counts every allocation (a global
//! allocator that wraps the system's), lists the objects the controller
//! caches, compacts them as its watches do and fills a store of the kind it
//! uses. The figure is what the heap holds per object, store entry included;
//! the allocator's rounding of each allocation comes on top (a few bytes with
//! mimalloc's size classes, 8 to 27 with glibc's malloc), which is why the
//! allocations are counted too.

use arcadia_drift::accept::AcceptSettings;
use arcadia_drift::api::{CloudProvisioned, CloudResource};
use arcadia_drift::controller::caches::{compact_provisioned, compact_resource};
use arcadia_drift::runtime::relist::InPlace;
use kube::api::{Api, ListParams};
use kube::runtime::watcher::Event;
use kube::{Client, Resource};
#[path = "../common/counting_alloc.rs"]
mod counting_alloc;

#[global_allocator]
static COUNTING: counting_alloc::Counting = counting_alloc::Counting;

/// Heap bytes and allocations per object that a store of `objects` holds.
/// Other threads allocate too, so the harness measures while it is otherwise idle.
fn per_object<K>(mut objects: Vec<K>, compact: impl FnMut(&mut K)) -> (usize, usize)
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    objects.iter_mut().for_each(compact);
    let n = objects.len().max(1) as isize;
    let (store, mut writer) = InPlace::<K>::store();
    let (bytes, allocations) = counting_alloc::held();
    writer.apply(&Event::Init);
    for object in &objects {
        writer.apply(&Event::InitApply(object.clone()));
    }
    writer.apply(&Event::InitDone);
    let (bytes_now, allocations_now) = counting_alloc::held();
    let held = (bytes_now - bytes) / n;
    let count = (allocations_now - allocations) / n;
    assert_eq!(store.state().len(), objects.len(), "the store holds every object");
    (held.max(0) as usize, count.max(0) as usize)
}

/// "cache: X B per CloudProvisioned (n allocations), Y B per CloudResource (m)".
pub async fn of_caches(client: &Client, ns: &str) -> String {
    let provisioned = Api::<CloudProvisioned>::namespaced(client.clone(), ns).list(&ListParams::default()).await;
    let resources = Api::<CloudResource>::all(client.clone()).list(&ListParams::default()).await;
    let managers = AcceptSettings::default().gitops_managers;
    let compact = |p: &mut CloudProvisioned| compact_provisioned(p, &managers);
    let (p_bytes, p_allocs) = per_object(provisioned.expect("listing CloudProvisioneds").items, compact);
    let (r_bytes, r_allocs) = per_object(resources.expect("listing CloudResources").items, compact_resource);
    format!(
        "cache {p_bytes} B per CloudProvisioned ({p_allocs} allocations), {r_bytes} B per CloudResource ({r_allocs})"
    )
}
