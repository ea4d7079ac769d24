//! [`Fields`]: a flat map from field name to any JSON value, the type of
//! `spec.desired` and `status.attrs`.
//!
//! It serializes exactly like a JSON object, but is held compactly: every key
//! and its value's compact JSON text laid end to end in one string, sorted by
//! key, with one small index of where each ends. The controller caches one
//! per CloudProvisioned and one per CloudResource; held as serde_json values,
//! 20 fields took about 2 KB in some 40 allocations (a nested object alone is
//! a 632-byte B-tree node), and at 10,000 objects of each kind that was half
//! of the controller's memory. Held as text they take about a quarter, in two
//! allocations. A value is parsed when it is read with [`Fields::get`]; the
//! comparison reads it in place instead ([`Fields::json`]).

use super::JsonText;
use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};
use std::fmt;

/// Where one entry's key and value end in the text (the key starts where the
/// previous value ended).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Span {
    key_end: u32,
    value_end: u32,
}

/// Equal exactly when the maps are: values are written canonically (objects
/// with sorted keys), so equal values have equal text.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Fields {
    text: Box<str>,
    spans: Box<[Span]>,
}

impl Fields {
    /// The value of `key`, parsed from its text.
    pub fn get(&self, key: &str) -> Option<Value> {
        self.position(key).ok().map(|i| self.value_at(i))
    }

    /// The value of `key` as its JSON text, read in place.
    pub fn json(&self, key: &str) -> Option<JsonText<'_>> {
        self.position(key).ok().map(|i| JsonText(self.value_text(i)))
    }

    /// Entries in key order, each value as its JSON text and with the value
    /// `other` holds for the same key: both maps are sorted, so one pass over
    /// both finds them, where a search for each key would cost more than
    /// comparing most values.
    pub fn json_entries_with<'a>(&'a self, other: Option<&'a Fields>) -> Joined<'a> {
        let walk = |fields| Walk { fields, at: 0, start: 0 };
        Joined { left: walk(self), right: other.map(walk) }
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.position(key).is_ok()
    }

    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Entries in key order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, Value)> + '_ {
        (0..self.len()).map(|i| (self.key_at(i), self.value_at(i)))
    }

    pub fn keys(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        (0..self.len()).map(|i| self.key_at(i))
    }

    /// Sets `key` to `value`; returns the value it replaces.
    pub fn insert(&mut self, key: impl Into<String>, value: Value) -> Option<Value> {
        let key = key.into();
        let old = self.get(&key);
        let mut entries: Vec<(String, Value)> = self.iter().map(|(k, v)| (k.to_owned(), v)).collect();
        entries.push((key, value));
        *self = Fields::from_entries(entries);
        old
    }

    /// Sorts, de-duplicates (the last of equal keys wins, as in a JSON object
    /// read by serde_json) and writes the entries out.
    fn from_entries(mut entries: Vec<(String, Value)>) -> Self {
        // Stable, so equal keys keep their order; `dedup_by` then moves the
        // later value into the entry it keeps.
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        entries.dedup_by(|later, kept| {
            let same = later.0 == kept.0;
            if same {
                std::mem::swap(later, kept);
            }
            same
        });
        let mut text = String::new();
        let mut spans = Vec::with_capacity(entries.len());
        for (key, value) in &entries {
            text.push_str(key);
            let key_end = offset(&text);
            text.push_str(&value.to_string());
            spans.push(Span { key_end, value_end: offset(&text) });
        }
        Fields { text: text.into_boxed_str(), spans: spans.into_boxed_slice() }
    }

    fn start_of(&self, i: usize) -> usize {
        if i == 0 { 0 } else { self.spans[i - 1].value_end as usize }
    }

    fn key_at(&self, i: usize) -> &str {
        &self.text[self.start_of(i)..self.spans[i].key_end as usize]
    }

    fn value_at(&self, i: usize) -> Value {
        JsonText(self.value_text(i)).to_value()
    }

    fn value_text(&self, i: usize) -> &str {
        &self.text[self.spans[i].key_end as usize..self.spans[i].value_end as usize]
    }

    fn position(&self, key: &str) -> Result<usize, usize> {
        let (mut low, mut high) = (0, self.len());
        while low < high {
            let mid = (low + high) / 2;
            match self.key_at(mid).cmp(key) {
                std::cmp::Ordering::Less => low = mid + 1,
                std::cmp::Ordering::Greater => high = mid,
                std::cmp::Ordering::Equal => return Ok(mid),
            }
        }
        Err(low)
    }
}

/// The entries of one map, each with the value a second map holds for the
/// same key ([`Fields::json_entries_with`]).
pub struct Joined<'a> {
    left: Walk<'a>,
    right: Option<Walk<'a>>,
}

impl<'a> Iterator for Joined<'a> {
    type Item = (&'a str, JsonText<'a>, Option<JsonText<'a>>);

    fn next(&mut self) -> Option<Self::Item> {
        let key = self.left.key()?;
        let value = self.left.value();
        self.left.advance();
        let matched = self.right.as_mut().and_then(|right| right.seek(key.as_bytes()));
        Some((key, value, matched))
    }
}

/// A walk over a map's entries that keeps where the current key starts.
struct Walk<'a> {
    fields: &'a Fields,
    at: usize,
    start: usize,
}

impl<'a> Walk<'a> {
    fn key(&self) -> Option<&'a str> {
        let span = self.fields.spans.get(self.at)?;
        Some(&self.fields.text[self.start..span.key_end as usize])
    }

    fn value(&self) -> JsonText<'a> {
        let span = self.fields.spans[self.at];
        JsonText(&self.fields.text[span.key_end as usize..span.value_end as usize])
    }

    fn advance(&mut self) {
        self.start = self.fields.spans[self.at].value_end as usize;
        self.at += 1;
    }

    /// Steps past the keys up to `key`; the value of `key`, if it is there.
    /// Keys are compared as bytes, which is a `str`'s order.
    fn seek(&mut self, key: &[u8]) -> Option<JsonText<'a>> {
        let bytes = self.fields.text.as_bytes();
        while let Some(span) = self.fields.spans.get(self.at) {
            match key_order(&bytes[self.start..span.key_end as usize], key) {
                std::cmp::Ordering::Less => self.advance(),
                std::cmp::Ordering::Equal => {
                    // Keys are unique and asked in order: it is not asked again.
                    let value = self.value();
                    self.advance();
                    return Some(value);
                }
                std::cmp::Ordering::Greater => return None,
            }
        }
        None
    }
}

/// The order of two keys (a `str`'s order is its bytes'). Keys mostly differ
/// in their first byte, which settles it without a call to compare the rest.
#[inline]
fn key_order(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    match (a.first(), b.first()) {
        (Some(x), Some(y)) if x != y => x.cmp(y),
        _ => a.cmp(b),
    }
}

/// The text's length as an offset. Fields come from Kubernetes objects, which
/// the API server caps far below 4 GiB.
fn offset(text: &str) -> u32 {
    u32::try_from(text.len()).expect("a map of fields under 4 GiB")
}

/// Later duplicates win, as in a JSON object read by serde_json.
impl<K: Into<String>> FromIterator<(K, Value)> for Fields {
    fn from_iter<I: IntoIterator<Item = (K, Value)>>(iter: I) -> Self {
        Fields::from_entries(iter.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }
}

impl<K: Into<String>> Extend<(K, Value)> for Fields {
    fn extend<I: IntoIterator<Item = (K, Value)>>(&mut self, iter: I) {
        let entries = self.iter().map(|(k, v)| (k.to_owned(), v)).collect::<Vec<_>>();
        *self = Fields::from_entries(entries.into_iter().chain(iter.into_iter().map(|(k, v)| (k.into(), v))).collect());
    }
}

impl From<Map<String, Value>> for Fields {
    fn from(map: Map<String, Value>) -> Self {
        map.into_iter().collect()
    }
}

/// A JSON object becomes its fields; anything else is handed back.
impl TryFrom<Value> for Fields {
    type Error = Value;

    fn try_from(value: Value) -> Result<Self, Value> {
        match value {
            Value::Object(map) => Ok(map.into()),
            other => Err(other),
        }
    }
}

impl From<Fields> for Map<String, Value> {
    fn from(fields: Fields) -> Self {
        fields.iter().map(|(k, v)| (k.to_owned(), v)).collect()
    }
}

impl From<&Fields> for Value {
    fn from(fields: &Fields) -> Self {
        Value::Object(fields.iter().map(|(k, v)| (k.to_owned(), v)).collect())
    }
}

impl fmt::Debug for Fields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl Serialize for Fields {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.len()))?;
        for (k, v) in self.iter() {
            map.serialize_entry(k, &v)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Fields {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FieldsVisitor;

        impl<'de> Visitor<'de> for FieldsVisitor {
            type Value = Fields;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map of field names to values")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Fields, A::Error> {
                let mut entries: Vec<(String, Value)> = Vec::with_capacity(access.size_hint().unwrap_or(0).min(256));
                while let Some(key) = access.next_key::<String>()? {
                    let value = access.next_value_seed(Bounded { depth: 1 })?;
                    entries.push((key, value));
                }
                Ok(Fields::from_entries(entries))
            }
        }

        deserializer.deserialize_map(FieldsVisitor)
    }
}

/// How deep a field's value may nest. Anything deeper is read past (without
/// recursion) and held as [`TOO_DEEP`], so one hostile object can neither
/// exhaust the stack nor make a whole list undecodable.
pub const MAX_VALUE_DEPTH: usize = 32;

/// What a value nested deeper than [`MAX_VALUE_DEPTH`] is held as.
pub const TOO_DEEP: &str = "\u{0}arcadia-drift: nested too deep";

impl Fields {
    /// The first field whose value was nested too deep to be read.
    pub fn too_deep(&self) -> Option<&str> {
        let marker = format!("\"{}\"", TOO_DEEP.replace('\u{0}', "\\u0000"));
        (0..self.len()).find(|&i| self.value_text(i).contains(&marker)).map(|i| self.key_at(i))
    }
}

/// Reads any JSON value as [`Fields`] reads its values: at most
/// [`MAX_VALUE_DEPTH`] levels deep (`#[serde(deserialize_with)]`).
pub fn bounded_value<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Value, D::Error> {
    serde::de::DeserializeSeed::deserialize(Bounded { depth: 1 }, deserializer)
}

/// A value read at most [`MAX_VALUE_DEPTH`] levels deep.
struct Bounded {
    depth: usize,
}

impl<'de> serde::de::DeserializeSeed<'de> for Bounded {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        if self.depth > MAX_VALUE_DEPTH {
            // serde_json skips a value with a loop, not recursion.
            serde::de::IgnoredAny::deserialize(deserializer)?;
            return Ok(Value::String(TOO_DEEP.to_owned()));
        }
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Bounded {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        serde::de::DeserializeSeed::deserialize(self, deserializer)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = access.next_element_seed(Bounded { depth: self.depth + 1 })? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            let value = access.next_value_seed(Bounded { depth: self.depth + 1 })?;
            map.insert(key, value);
        }
        Ok(Value::Object(map))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_value_nested_past_the_bound_is_held_as_too_deep_without_recursion() {
        let deep = |levels: usize| (0..levels).fold(String::from("1"), |inner, _| format!("{{\"a\":{inner}}}"));
        let text = format!("{{\"ok\":{},\"meta\":{}}}", deep(MAX_VALUE_DEPTH - 1), deep(100_000));
        let fields: Fields = serde_json::from_str(&text).unwrap();
        assert_eq!(fields.too_deep(), Some("meta"));
        assert_eq!(fields.get("ok").unwrap().to_string(), deep(MAX_VALUE_DEPTH - 1));
        let shallow: Fields = serde_json::from_str(&format!("{{\"ok\":{}}}", deep(5))).unwrap();
        assert_eq!(shallow.too_deep(), None);
        // Inside a list deeper than the bound: the object around it still decodes.
        let list: Vec<Fields> = serde_json::from_str(&format!("[{text},{{\"b\":2}}]")).unwrap();
        assert_eq!(list[1].get("b"), Some(json!(2)));
    }

    #[test]
    fn round_trips_as_a_json_object_in_key_order() {
        let fields: Fields = serde_json::from_value(json!({"b": [1, 2], "a": {"x": null}, "c": "s"})).unwrap();
        assert_eq!(fields.keys().collect::<Vec<_>>(), ["a", "b", "c"]);
        assert_eq!(serde_json::to_string(&fields).unwrap(), r#"{"a":{"x":null},"b":[1,2],"c":"s"}"#);
        assert_eq!(fields.get("b"), Some(json!([1, 2])));
        assert_eq!(fields.get("a"), Some(json!({"x": null})));
        assert!(fields.get("nope").is_none());
    }

    #[test]
    fn the_last_of_duplicate_keys_wins_as_in_serde_json() {
        let fields: Fields = serde_json::from_str(r#"{"a": 1, "b": 2, "a": 3}"#).unwrap();
        let map: Map<String, Value> = serde_json::from_str(r#"{"a": 1, "b": 2, "a": 3}"#).unwrap();
        assert_eq!(Map::from(fields), map);
    }

    #[test]
    fn insert_keeps_the_order_and_replaces() {
        let mut fields: Fields = [("m", json!(1))].into_iter().collect();
        assert_eq!(fields.insert("a", json!(2)), None);
        assert_eq!(fields.insert("z", json!(3)), None);
        assert_eq!(fields.insert("m", json!(4)), Some(json!(1)));
        assert_eq!(format!("{fields:?}"), r#"{"a": Number(2), "m": Number(4), "z": Number(3)}"#);
    }

    #[test]
    fn equal_maps_are_equal_whatever_order_they_were_written_in() {
        let a: Fields = serde_json::from_str(r#"{"k": {"b": 1, "a": [1.5, "x"]}, "j": null}"#).unwrap();
        let b: Fields = serde_json::from_str(r#"{"j": null, "k": {"a": [1.5, "x"], "b": 1}}"#).unwrap();
        assert_eq!(a, b);
        let c: Fields = serde_json::from_str(r#"{"j": null, "k": {"a": [1.5, "x"], "b": 2}}"#).unwrap();
        assert_ne!(a, c);
    }

    #[test]
    fn keys_and_values_with_any_characters_read_back() {
        let value = json!({"naïve \"key\"": "tab\t", "": [{"z": 1e300, "a": -0.1}], "u": u64::MAX, "i": i64::MIN});
        let fields = Fields::try_from(value.clone()).unwrap();
        assert_eq!(Value::from(&fields), value);
        assert_eq!(fields.keys().collect::<Vec<_>>(), ["", "i", "naïve \"key\"", "u"]);
        assert_eq!(fields.get("naïve \"key\""), Some(json!("tab\t")));
    }

    #[test]
    fn entries_come_with_the_other_maps_value_for_the_same_key() {
        let left: Fields = serde_json::from_value(json!({"a": 1, "c": 3, "d": [4], "f": 6})).unwrap();
        let right: Fields = serde_json::from_value(json!({"b": 20, "c": 30, "e": 50, "f": "60", "g": 70})).unwrap();
        let joined: Vec<(&str, &str, Option<&str>)> =
            left.json_entries_with(Some(&right)).map(|(k, v, o)| (k, v.as_str(), o.map(JsonText::as_str))).collect();
        assert_eq!(joined, [("a", "1", None), ("c", "3", Some("30")), ("d", "[4]", None), ("f", "6", Some("\"60\""))]);
        assert!(left.json_entries_with(None).all(|(_, _, o)| o.is_none()));
        assert_eq!(Fields::default().json_entries_with(Some(&right)).count(), 0);
        assert!(right.json_entries_with(Some(&Fields::default())).all(|(_, _, o)| o.is_none()));
    }

    #[test]
    fn rejects_what_is_not_a_map() {
        let err = serde_json::from_value::<Fields>(json!("size_slug")).unwrap_err();
        assert!(err.to_string().contains("a map of field names to values"), "{err}");
    }
}
