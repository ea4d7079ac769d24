//! The one registry every component registers its own metrics on (under the
//! `arcadia_drift_` prefix), and the counter of API writes they share.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

pub const PREFIX: &str = "arcadia_drift";

pub fn registry() -> Registry {
    Registry::with_prefix(PREFIX)
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: &'static str,
}

/// Writes this process sent to the API server, by kind; the controller and
/// the inventory syncer each count their own through a clone.
#[derive(Clone, Debug, Default)]
pub struct ApiWrites(Family<KindLabel, Counter>);

impl ApiWrites {
    pub fn register(registry: &mut Registry) -> Self {
        let writes = Self::default();
        registry.register("api_writes", "Writes this controller sent to the API server, by kind", writes.0.clone());
        writes
    }

    pub fn count(&self, kind: &'static str) {
        self.0.get_or_create(&KindLabel { kind }).inc();
    }
}

pub fn render(registry: &Registry) -> String {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, registry).expect("writing to a String cannot fail");
    out
}
