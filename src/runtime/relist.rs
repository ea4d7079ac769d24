//! A reflector store that applies a relist in place. kube-runtime's writer
//! collects a relist (after a watch expired, or the API server was away) in a
//! second map and swaps it in at the end, so two copies of every object live
//! at once exactly when the controller has to catch up. Here the first list
//! fills the store as kube-runtime does (it is empty then, so there is one
//! copy), and every later relist upserts each object as it arrives and, at
//! its end, removes what it did not contain. Readers never miss an object
//! that still exists, and a deletion during the outage is seen once the
//! relist ends.

use kube::Resource;
use kube::runtime::reflector::store::Writer;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher::Event;
use std::collections::HashSet;
use std::hash::Hash;

pub struct InPlace<K>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + Hash + Clone,
{
    writer: Writer<K>,
    store: Store<K>,
    dyntype: K::DynamicType,
    /// The first complete list has been applied.
    listed: bool,
    /// The objects a relist in progress has delivered so far.
    seen: Option<HashSet<ObjectRef<K>>>,
}

impl<K> InPlace<K>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + Hash + Clone + Default,
{
    /// A store and the in-place writer that fills it.
    pub fn store() -> (Store<K>, Self) {
        let writer = Writer::default();
        let store = writer.as_reader();
        let dyntype = K::DynamicType::default();
        (store.clone(), Self { writer, store, dyntype, listed: false, seen: None })
    }

    pub fn apply(&mut self, event: &Event<K>) {
        if !self.listed {
            self.listed = matches!(event, Event::InitDone);
            self.writer.apply_watcher_event(event);
            return;
        }
        match event {
            Event::Init => self.seen = Some(HashSet::new()),
            Event::InitApply(obj) => {
                let key = self.key(obj);
                self.seen.get_or_insert_with(HashSet::new).insert(key);
                self.writer.apply_watcher_event(&Event::Apply(obj.clone()));
            }
            Event::InitDone => {
                let seen = self.seen.take().unwrap_or_default();
                for obj in self.store.state() {
                    if !seen.contains(&self.key(&obj)) {
                        self.writer.apply_watcher_event(&Event::Delete(obj.as_ref().clone()));
                    }
                }
            }
            other => self.writer.apply_watcher_event(other),
        }
    }

    /// Name and namespace only: the uid and resourceVersion `to_object_ref` copies are not needed to compare.
    fn key(&self, obj: &K) -> ObjectRef<K> {
        let key = ObjectRef::new_with(&obj.meta().name.clone().unwrap_or_default(), self.dyntype.clone());
        match &obj.meta().namespace {
            Some(ns) => key.within(ns),
            None => key,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;

    fn cm(name: &str, value: &str) -> ConfigMap {
        let mut c = ConfigMap::default();
        c.metadata.name = Some(name.into());
        c.metadata.namespace = Some("ns".into());
        c.data = Some([("v".to_string(), value.to_string())].into());
        c
    }

    fn value(store: &Store<ConfigMap>, name: &str) -> Option<String> {
        let obj = store.get(&ObjectRef::new(name).within("ns"))?;
        obj.data.as_ref()?.get("v").cloned()
    }

    #[test]
    fn a_relist_updates_in_place_and_removes_what_it_lacks_only_at_its_end() {
        let (store, mut writer) = InPlace::<ConfigMap>::store();
        for e in [Event::Init, Event::InitApply(cm("a", "1")), Event::InitApply(cm("b", "1")), Event::InitDone] {
            writer.apply(&e);
        }
        assert_eq!((value(&store, "a"), value(&store, "b")), (Some("1".into()), Some("1".into())));

        // The watch failed; while it was down, a changed and b was deleted.
        writer.apply(&Event::Init);
        assert_eq!(store.state().len(), 2, "nothing disappears when a relist starts");
        writer.apply(&Event::InitApply(cm("a", "2")));
        assert_eq!(value(&store, "a").as_deref(), Some("2"), "applied as it arrives");
        assert_eq!(value(&store, "b").as_deref(), Some("1"), "b is kept until the relist proves it gone");
        writer.apply(&Event::InitApply(cm("c", "1")));
        writer.apply(&Event::InitDone);
        assert_eq!(value(&store, "b"), None, "gone at the relist's end");
        assert_eq!(store.state().len(), 2);

        // Ordinary events after a relist.
        writer.apply(&Event::Apply(cm("c", "3")));
        writer.apply(&Event::Delete(cm("a", "2")));
        assert_eq!((value(&store, "a"), value(&store, "c").as_deref()), (None, Some("3")));
    }
}
