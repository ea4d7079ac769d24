//! An in-memory index fed by a watch: key => the objects that carry that key.
//! The controller keeps two: CloudResource name => the CloudProvisioneds that
//! reference it, and CloudProvisioned => its Drifts. Pure, so it is tested
//! without a cluster.

use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::Arc;

/// An object by `namespace/name` (or `name` when cluster-scoped): one shared
/// string where an `ObjectRef` holds two (and, from `ObjectRef::from`, a uid
/// and a resourceVersion too).
type Id = Arc<str>;

pub struct RefIndex<K: Resource<DynamicType = ()>> {
    // One entry per object at 10,000s of objects, so kept small: each object's
    // id and each key is one string shared by both maps, and a key's objects
    // a Vec (most keys have one object).
    by_key: HashMap<Arc<str>, Vec<Id>>,
    key_of: HashMap<Id, Arc<str>>,
    /// Objects seen since the last `Init` of a relist; swapped in at `InitDone`
    /// so objects deleted while the watch was down drop out.
    relist: Option<Vec<(Id, Arc<str>)>>,
    key_fn: fn(&K) -> Option<String>,
    kind: PhantomData<fn() -> K>,
}

impl<K> RefIndex<K>
where
    K: Resource<DynamicType = ()> + Clone,
{
    pub fn new(key_fn: fn(&K) -> Option<String>) -> Self {
        Self { by_key: HashMap::new(), key_of: HashMap::new(), relist: None, key_fn, kind: PhantomData }
    }

    pub fn on_event(&mut self, event: &watcher::Event<K>) {
        match event {
            watcher::Event::Apply(obj) => self.upsert(id_of(obj), self.key(obj)),
            watcher::Event::Delete(obj) => self.remove(&id_of(obj)),
            watcher::Event::Init => self.relist = Some(Vec::new()),
            watcher::Event::InitApply(obj) => {
                if let Some(key) = self.key(obj) {
                    self.relist.get_or_insert_with(Vec::new).push((id_of(obj), key));
                }
            }
            watcher::Event::InitDone => {
                let entries = self.relist.take().unwrap_or_default();
                self.by_key.clear();
                self.key_of.clear();
                for (obj, key) in entries {
                    self.upsert(obj, Some(key));
                }
                self.by_key.shrink_to_fit();
                self.key_of.shrink_to_fit();
            }
        }
    }

    fn key(&self, obj: &K) -> Option<Arc<str>> {
        (self.key_fn)(obj).map(Arc::from)
    }

    fn upsert(&mut self, obj: Id, key: Option<Arc<str>>) {
        if self.key_of.get(&obj) == key.as_ref() {
            return;
        }
        self.remove(&obj);
        if let Some(key) = key {
            // Objects with the same key share the key's string.
            let (key, objects) = match self.by_key.get_key_value(&key) {
                Some((shared, _)) => (shared.clone(), self.by_key.get_mut(&key).expect("just found")),
                None => (key.clone(), self.by_key.entry(key).or_default()),
            };
            objects.push(obj.clone());
            self.key_of.insert(obj, key);
        }
    }

    fn remove(&mut self, obj: &Id) {
        if let Some(old) = self.key_of.remove(obj)
            && let Some(objects) = self.by_key.get_mut(&old)
        {
            objects.retain(|o| o != obj);
            if objects.is_empty() {
                self.by_key.remove(&old);
            }
        }
    }

    pub fn get(&self, key: &str) -> Vec<ObjectRef<K>> {
        self.by_key.get(key).map(|ids| ids.iter().map(|id| object_ref(id)).collect()).unwrap_or_default()
    }

    /// Whether any object carries `key`.
    pub fn contains(&self, key: &str) -> bool {
        self.by_key.contains_key(key)
    }

    pub fn len(&self) -> usize {
        self.key_of.len()
    }

    pub fn is_empty(&self) -> bool {
        self.key_of.is_empty()
    }
}

fn id_of<K: Resource<DynamicType = ()>>(obj: &K) -> Id {
    match obj.namespace() {
        Some(ns) => Arc::from(format!("{ns}/{}", obj.name_any())),
        None => Arc::from(obj.name_any()),
    }
}

/// Names and namespaces hold no `/`, so the id splits back unambiguously.
fn object_ref<K: Resource<DynamicType = ()>>(id: &str) -> ObjectRef<K> {
    match id.split_once('/') {
        Some((ns, name)) => ObjectRef::new(name).within(ns),
        None => ObjectRef::new(id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{CloudProvisioned, CloudProvisionedSpec, ResourceRef};
    use kube::api::ObjectMeta;

    fn cprov(name: &str, resource: &str) -> CloudProvisioned {
        let mut p = CloudProvisioned::new(
            name,
            CloudProvisionedSpec {
                resource_ref: ResourceRef { name: resource.into() },
                desired: Default::default(),
                ..Default::default()
            },
        );
        p.metadata = ObjectMeta { name: Some(name.into()), namespace: Some("ns".into()), ..Default::default() };
        p
    }

    fn index() -> RefIndex<CloudProvisioned> {
        RefIndex::new(|p| Some(p.spec.resource_ref.name.clone()))
    }

    fn names(refs: Vec<ObjectRef<CloudProvisioned>>) -> Vec<String> {
        let mut v: Vec<String> = refs.into_iter().map(|r| r.name).collect();
        v.sort();
        v
    }

    #[test]
    fn maps_keys_to_objects_and_follows_changes() {
        let mut idx = index();
        idx.on_event(&watcher::Event::Apply(cprov("a", "r1")));
        idx.on_event(&watcher::Event::Apply(cprov("b", "r1")));
        assert_eq!(names(idx.get("r1")), ["a", "b"]);
        idx.on_event(&watcher::Event::Apply(cprov("b", "r2")));
        assert_eq!(names(idx.get("r1")), ["a"]);
        assert_eq!(names(idx.get("r2")), ["b"]);
        idx.on_event(&watcher::Event::Delete(cprov("a", "r1")));
        assert!(idx.get("r1").is_empty());
        assert_eq!(idx.len(), 1);
    }

    #[test]
    fn a_relist_drops_objects_deleted_while_disconnected() {
        let mut idx = index();
        idx.on_event(&watcher::Event::Apply(cprov("a", "r1")));
        idx.on_event(&watcher::Event::Apply(cprov("b", "r1")));
        idx.on_event(&watcher::Event::Init);
        idx.on_event(&watcher::Event::InitApply(cprov("b", "r1")));
        assert_eq!(names(idx.get("r1")), ["a", "b"], "the old view serves until the relist is complete");
        idx.on_event(&watcher::Event::InitDone);
        assert_eq!(names(idx.get("r1")), ["b"]);
    }
}
