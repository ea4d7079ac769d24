//! The write-back's Prometheus metrics, registered on the process's shared registry.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

#[derive(Clone, Debug, Default)]
pub struct WritebackMetrics {
    pub pushes: Family<ResultLabel, Counter>,
}

impl WritebackMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "git_pushes",
            "Git write-backs by result: committed, already_committed, already_in_git, refused, superseded, failed",
            m.pushes.clone(),
        );
        m
    }

    pub fn count_push(&self, result: &'static str) {
        self.pushes.get_or_create(&ResultLabel { result }).inc();
    }
}
