//! The pure heart of arcadia-drift: compare a desired field map with one live
//! resource. No I/O and no Kubernetes types live here, so every rule is tested
//! (and benchmarked) without a cluster.
//!
//! Semantics:
//! - only the keys present in the desired map are checked;
//! - a key resolves to a top-level live field first (by snake or camel name),
//!   then to a key of the free-form `attrs` ([`LiveView::resolve`]);
//! - values compare loosely ([`loosely_equal`]).

mod equality;
mod fields;
mod json_text;
mod live;
#[cfg(test)]
mod properties;
mod render;
pub mod rules;

pub use equality::{json_equal, loosely_equal, observed_equal};
pub use fields::{Fields, MAX_VALUE_DEPTH, TOO_DEEP, bounded_value};
pub use json_text::JsonText;
pub use live::{LiveView, Observed};
pub use render::{needs_quotes, render_value, yaml_scalar};
pub use rules::{Compared, FieldRules, IgnoreRule, MatchMode, compare_field};

use serde_json::Value;

/// One desired field whose live value differs.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldDrift {
    pub field: String,
    pub expected: Value,
    /// The live value; `Value::Null` when the live resource lacks the field.
    pub actual: Value,
}

/// Every mismatched field of `desired` against `live`, in key order. Fields
/// in sync cost no allocation; each drifted one is copied out.
pub fn detect(desired: &Fields, live: &LiveView<'_>) -> Vec<FieldDrift> {
    let entries = desired.json_entries_with(live.attrs);
    entries.filter_map(|(field, expected, attr)| field_drift(field, expected, live.resolve_with(field, attr))).collect()
}

/// How one desired field differs from its resolved live value under loose
/// equality, if it does.
pub fn field_drift(field: &str, expected: JsonText<'_>, observed: Observed<'_>) -> Option<FieldDrift> {
    (!json_equal(expected, &observed)).then(|| FieldDrift {
        field: field.to_owned(),
        expected: expected.to_value(),
        actual: observed.to_value(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Fields {
        Fields::try_from(v).expect("an object")
    }

    fn droplet_tags() -> Vec<String> {
        vec!["web".into(), "prod".into()]
    }

    #[test]
    fn drifted_size_slug_next_to_in_sync_region() {
        let tags = droplet_tags();
        let attrs = map(json!({"image": "ubuntu-24-04-x64", "vcpus": 2}));
        let live = LiveView {
            name: Some("web-1"),
            region: Some("nyc3"),
            status: Some("active"),
            size: Some("s-2vcpu-4gb"),
            tags: Some(&tags),
            tag_map: None,
            attrs: Some(&attrs),
        };
        let desired =
            map(json!({"size_slug": "s-1vcpu-1gb", "region": "nyc3", "vcpus": "2", "tags": ["prod", "web", "web"]}));
        assert_eq!(
            detect(&desired, &live),
            vec![FieldDrift {
                field: "size_slug".into(),
                expected: json!("s-1vcpu-1gb"),
                actual: json!("s-2vcpu-4gb"),
            }]
        );
    }

    #[test]
    fn only_declared_keys_are_checked() {
        let live = LiveView { region: Some("nyc3"), status: Some("off"), ..LiveView::default() };
        assert!(detect(&map(json!({"region": "nyc3"})), &live).is_empty());
    }

    #[test]
    fn a_desired_field_the_resource_lacks_drifts_with_null_actual() {
        let live = LiveView::default();
        let drifts = detect(&map(json!({"backups": true})), &live);
        assert_eq!(drifts[0].actual, Value::Null);
        assert_eq!(drifts[0].expected, json!(true));
    }

    #[test]
    fn a_desired_empty_value_matches_a_missing_field() {
        let live = LiveView::default();
        assert!(detect(&map(json!({"backups": null, "vpc": ""})), &live).is_empty());
    }

    #[test]
    fn drifts_come_in_key_order() {
        let live = LiveView::default();
        let fields: Vec<_> =
            detect(&map(json!({"zeta": 1, "alpha": 2, "mid": 3})), &live).into_iter().map(|d| d.field).collect();
        assert_eq!(fields, ["alpha", "mid", "zeta"]);
    }
}
