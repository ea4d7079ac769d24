use super::{Fields, JsonText};
use serde_json::Value;
use std::collections::BTreeMap;

/// A borrowed view of one live resource: the typed top-level fields every
/// provider fills, plus free-form `attrs`. Borrowing keeps a comparison free
/// of copies; callers build it from whatever holds the live state.
#[derive(Clone, Copy, Debug, Default)]
pub struct LiveView<'a> {
    pub name: Option<&'a str>,
    pub region: Option<&'a str>,
    pub status: Option<&'a str>,
    pub size: Option<&'a str>,
    /// Plain tags, a set.
    pub tags: Option<&'a [String]>,
    /// Key/value tags, a map.
    pub tag_map: Option<&'a BTreeMap<String, String>>,
    pub attrs: Option<&'a Fields>,
}

/// A live value found for a desired key.
#[derive(Clone, Debug, PartialEq)]
pub enum Observed<'a> {
    /// Neither a top-level field nor an attr of that name.
    Missing,
    Text(&'a str),
    Texts(&'a [String]),
    /// Key/value tags.
    Pairs(&'a BTreeMap<String, String>),
    /// From `attrs`, read in place.
    Json(JsonText<'a>),
}

impl<'a> LiveView<'a> {
    /// Resolves a desired key: first a top-level field by its snake_case or
    /// camelCase name, then the key as written in `attrs`. A top-level field
    /// that is unset falls through to `attrs`, so a provider may report any
    /// field in either place. `size_slug` and `sizeSlug`, DigitalOcean's words
    /// that specs written before providers use, name `size`; `tags` are the
    /// plain ones when the provider has them, else the key/value ones.
    pub fn resolve(&self, key: &str) -> Observed<'a> {
        self.top(key).or_else(|| self.attrs.and_then(|a| a.json(key)).map(Observed::Json)).unwrap_or(Observed::Missing)
    }

    /// [`LiveView::resolve`] with the key's value in `attrs` already found
    /// ([`Fields::json_entries_with`]).
    pub fn resolve_with(&self, key: &str, attr: Option<JsonText<'a>>) -> Observed<'a> {
        self.top(key).or_else(|| attr.map(Observed::Json)).unwrap_or(Observed::Missing)
    }

    fn top(&self, key: &str) -> Option<Observed<'a>> {
        if !matches!(key.as_bytes().first(), Some(b'n' | b'r' | b's' | b't')) {
            // Most keys name no top-level field, and their first byte says so.
            return None;
        }
        match key {
            "name" => self.name.map(Observed::Text),
            "region" => self.region.map(Observed::Text),
            "status" => self.status.map(Observed::Text),
            "size" | "size_slug" | "sizeSlug" => self.size.map(Observed::Text),
            "tags" => self.tags.map(Observed::Texts).or_else(|| self.tag_map.map(Observed::Pairs)),
            _ => None,
        }
    }
}

impl Observed<'_> {
    /// The observed value as owned JSON, `null` when missing.
    pub fn to_value(self) -> Value {
        match self {
            Observed::Missing => Value::Null,
            Observed::Text(s) => Value::String(s.to_owned()),
            Observed::Texts(list) => Value::Array(list.iter().cloned().map(Value::String).collect()),
            Observed::Pairs(map) => map.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect(),
            Observed::Json(text) => text.to_value(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn top_level_fields_resolve_by_snake_and_camel_name() {
        let live = LiveView { size: Some("s-1"), ..LiveView::default() };
        assert_eq!(live.resolve("size_slug"), Observed::Text("s-1"));
        assert_eq!(live.resolve("sizeSlug"), Observed::Text("s-1"));
        assert_eq!(live.resolve("size"), Observed::Text("s-1"));
    }

    #[test]
    fn top_level_wins_over_attrs() {
        let attrs = Fields::try_from(json!({"region": "ams3"})).unwrap();
        let live = LiveView { region: Some("nyc3"), attrs: Some(&attrs), ..LiveView::default() };
        assert_eq!(live.resolve("region"), Observed::Text("nyc3"));
    }

    #[test]
    fn unset_top_level_falls_through_to_attrs() {
        let attrs = Fields::try_from(json!({"region": "ams3"})).unwrap();
        let live = LiveView { attrs: Some(&attrs), ..LiveView::default() };
        assert_eq!(live.resolve("region"), Observed::Json(JsonText(r#""ams3""#)));
    }

    #[test]
    fn other_keys_resolve_in_attrs_exactly() {
        let attrs = Fields::try_from(json!({"vcpus": 2, "vpc_uuid": "u"})).unwrap();
        let live = LiveView { attrs: Some(&attrs), ..LiveView::default() };
        assert_eq!(live.resolve("vcpus").to_value(), json!(2));
        assert_eq!(live.resolve("vpcUuid"), Observed::Missing);
        assert_eq!(live.resolve("memory"), Observed::Missing);
    }

    #[test]
    fn resolving_with_the_joined_attr_answers_as_resolve_does() {
        let attrs = Fields::try_from(json!({"region": "ams3", "vcpus": 2, "image": "u", "tags": ["t"]})).unwrap();
        let tags = vec!["a".to_string()];
        let live = LiveView { size: Some("s-1"), tags: Some(&tags), attrs: Some(&attrs), ..LiveView::default() };
        let desired =
            Fields::try_from(json!({"image": 1, "memory": 1, "region": 1, "size_slug": 1, "tags": 1, "zone": 1}))
                .unwrap();
        for (key, _, attr) in desired.json_entries_with(live.attrs) {
            assert_eq!(live.resolve_with(key, attr), live.resolve(key), "{key}");
        }
    }

    #[test]
    fn tags_resolve_as_a_list() {
        let tags = vec!["a".to_string()];
        let live = LiveView { tags: Some(&tags), ..LiveView::default() };
        assert_eq!(live.resolve("tags").to_value(), json!(["a"]));
        assert_eq!(LiveView::default().resolve("tags").to_value(), Value::Null);
    }

    #[test]
    fn key_value_tags_resolve_as_a_map_and_compare_as_one() {
        let map: BTreeMap<String, String> =
            [("team".to_string(), "web".to_string()), ("env".to_string(), "prod".to_string())].into();
        let live = LiveView { tag_map: Some(&map), ..LiveView::default() };
        assert_eq!(live.resolve("tags").to_value(), json!({"env": "prod", "team": "web"}));
        let same =
            crate::detect::equality::observed_equal(&json!({"team": "web", "env": "prod"}), &live.resolve("tags"));
        assert!(same, "key order does not matter");
        let other =
            crate::detect::equality::observed_equal(&json!({"team": "db", "env": "prod"}), &live.resolve("tags"));
        assert!(!other, "a changed value is a drift");
    }
}
