//! The periodic re-check of every CloudProvisioned, as one stream that walks
//! the cache over each interval. A reconcile that ended with
//! `Action::requeue(interval)` would instead leave one entry per object in
//! kube-runtime's scheduler (a delay-queue slot and a copy of the object's
//! reference, about 800 bytes each: 8 MB at 10,000 objects) for the whole
//! interval. Walking the cache keeps only the names of the current pass, and
//! spreads the checks evenly, so a resync never arrives as one burst.

use futures::Stream;
use kube::Resource;
use kube::runtime::reflector::{ObjectRef, Store};
use std::time::Duration;
use tokio::time::Instant;

/// Every object in `store`, once per `interval`, evenly spaced; the first
/// pass starts one interval from now (the initial list has just checked all).
pub fn every<K>(store: Store<K>, interval: Duration) -> impl Stream<Item = ObjectRef<K>> + Send + 'static
where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    let pass = Pass { names: Names::default(), taken: 0, next: Instant::now() + interval, gap: interval };
    futures::stream::unfold((store, pass), move |(store, mut pass)| async move {
        loop {
            tokio::time::sleep_until(pass.next).await;
            if let Some(next) = pass.take() {
                pass.next += pass.gap;
                return Some((next, (store, pass)));
            }
            pass = Pass::over(&store, interval);
        }
    })
}

/// One walk over the cache: the names it had when the pass began (names, not
/// the objects, so a pass never keeps an old copy of an object alive).
struct Pass {
    names: Names,
    taken: usize,
    next: Instant,
    gap: Duration,
}

impl Pass {
    fn over<K: Resource<DynamicType = ()> + Clone>(store: &Store<K>, interval: Duration) -> Self {
        let mut names = Names::default();
        for o in store.state() {
            names.push(o.meta().namespace.as_deref(), o.meta().name.as_deref().unwrap_or_default());
        }
        let gap = interval / u32::try_from(names.len().max(1)).unwrap_or(u32::MAX);
        // An empty cache is looked at again after a whole interval, not at once
        // (which would walk it in a loop while there is nothing to check).
        let next = if names.is_empty() { Instant::now() + interval } else { Instant::now() };
        Pass { names, taken: 0, next, gap }
    }

    fn take<K: Resource<DynamicType = ()>>(&mut self) -> Option<ObjectRef<K>> {
        let (namespace, name) = self.names.get(self.taken)?;
        self.taken += 1;
        let name = ObjectRef::new(name);
        Some(match namespace {
            Some(ns) => name.within(ns),
            None => name,
        })
    }
}

/// Names and namespaces packed in one string: no allocation per object
/// (an `ObjectRef` each, with its two strings, was 1.8 MB at 10,000 objects).
#[derive(Default)]
struct Names {
    text: String,
    /// Per object: where its namespace ends and its name ends in `text`;
    /// `None` for a cluster-scoped one.
    ends: Vec<(Option<u32>, u32)>,
}

impl Names {
    fn push(&mut self, namespace: Option<&str>, name: &str) {
        let namespace_end = namespace.map(|ns| {
            self.text.push_str(ns);
            offset(&self.text)
        });
        self.text.push_str(name);
        self.ends.push((namespace_end, offset(&self.text)));
    }

    fn get(&self, i: usize) -> Option<(Option<&str>, &str)> {
        let (namespace_end, name_end) = *self.ends.get(i)?;
        let start = match i.checked_sub(1) {
            Some(before) => self.ends[before].1 as usize,
            None => 0,
        };
        Some(match namespace_end {
            Some(ns) => (Some(&self.text[start..ns as usize]), &self.text[ns as usize..name_end as usize]),
            None => (None, &self.text[start..name_end as usize]),
        })
    }

    fn len(&self) -> usize {
        self.ends.len()
    }

    fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }
}

/// Names of Kubernetes objects are short, and a cache of them far below 4 GiB.
fn offset(text: &str) -> u32 {
    u32::try_from(text.len()).expect("the names of a cache under 4 GiB")
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::runtime::reflector::store::Writer;
    use kube::runtime::watcher::Event;

    fn cm(name: &str) -> ConfigMap {
        let mut c = ConfigMap::default();
        c.metadata.name = Some(name.into());
        c.metadata.namespace = Some("ns".into());
        c
    }

    #[test]
    fn names_come_back_as_they_went_in() {
        let mut names = Names::default();
        names.push(Some("team-a"), "web-1");
        names.push(None, "digitalocean-droplet-1");
        names.push(Some(""), "x");
        names.push(Some("b"), "");
        assert_eq!(names.len(), 4);
        assert_eq!(names.get(0), Some((Some("team-a"), "web-1")));
        assert_eq!(names.get(1), Some((None, "digitalocean-droplet-1")));
        assert_eq!(names.get(2), Some((Some(""), "x")));
        assert_eq!(names.get(3), Some((Some("b"), "")));
        assert_eq!(names.get(4), None);
    }

    #[tokio::test(start_paused = true)]
    async fn an_empty_cache_is_looked_at_again_after_a_whole_interval() {
        let mut writer = Writer::<ConfigMap>::default();
        for e in [Event::Init, Event::InitDone] {
            writer.apply_watcher_event(&e);
        }
        let (reader, started) = (writer.as_reader(), Instant::now());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(70)).await;
            writer.apply_watcher_event(&Event::Apply(cm("late")));
            std::future::pending::<()>().await;
        });
        let mut stream = Box::pin(every(reader, Duration::from_secs(60)));
        let first = stream.next().await.unwrap();
        // Empty at 60 s: the next look is at 120 s, where the object added at 70 s is found.
        assert_eq!((first.name.as_str(), started.elapsed().as_secs()), ("late", 120));
    }

    #[tokio::test(start_paused = true)]
    async fn each_object_once_per_interval_evenly_spaced_and_later_objects_in_the_next_pass() {
        let mut writer = Writer::<ConfigMap>::default();
        for e in [Event::Init, Event::InitApply(cm("a")), Event::InitApply(cm("b")), Event::InitDone] {
            writer.apply_watcher_event(&e);
        }
        let started = Instant::now();
        let mut stream = Box::pin(every(writer.as_reader(), Duration::from_secs(60)));
        let (mut names, mut times) = (Vec::new(), Vec::new());
        for _ in 0..2 {
            names.push(stream.next().await.unwrap().name);
            times.push(started.elapsed().as_secs());
        }
        // The cache's order is a hash map's: which object comes first is not fixed.
        names.sort();
        assert_eq!(names, ["a", "b"], "each object once");
        assert_eq!(times, [60, 90], "the first pass after one interval, 30 s apart");

        writer.apply_watcher_event(&Event::Apply(cm("c")));
        writer.apply_watcher_event(&Event::Delete(cm("a")));
        let mut second = Vec::new();
        for _ in 0..2 {
            second.push(stream.next().await.unwrap().name);
        }
        second.sort();
        assert_eq!(second, ["b", "c"], "the next pass takes the cache as it is then");
        assert_eq!(started.elapsed().as_secs(), 150, "the second pass begins when the first ends");
    }
}
