//! The policies a reconcile looks at, found by namespace instead of by a scan
//! of every policy: most policies name their namespaces, and an object only
//! meets those of its own namespace and the cluster-wide ones.

use crate::api::DriftPolicy;
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Debug, Default)]
pub struct PolicyIndex {
    by_namespace: HashMap<String, Vec<Arc<DriftPolicy>>>,
    everywhere: Vec<Arc<DriftPolicy>>,
}

impl PolicyIndex {
    pub fn new(policies: impl IntoIterator<Item = Arc<DriftPolicy>>) -> Self {
        let mut index = PolicyIndex::default();
        for policy in policies {
            let namespaces = &policy.spec.selector.namespaces;
            if namespaces.is_empty() {
                index.everywhere.push(policy.clone());
            }
            for ns in namespaces {
                index.by_namespace.entry(ns.clone()).or_default().push(policy.clone());
            }
        }
        index
    }

    /// The policies that may select an object of `namespace`; the selector decides.
    pub fn candidates(&self, namespace: &str) -> Vec<Arc<DriftPolicy>> {
        let mut out = self.everywhere.clone();
        out.extend(self.by_namespace.get(namespace).into_iter().flatten().cloned());
        out
    }

    pub fn len(&self) -> usize {
        self.everywhere.len() + self.by_namespace.values().map(Vec::len).sum::<usize>()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
