//! [`Fields`]: a flat map from field name to any JSON value, the type of
//! `spec.desired` and `status.attrs`.
//!
//! It serializes exactly like a JSON object, but is held as one sorted,
//! exactly-sized slice instead of serde_json's B-tree. The controller caches
//! one per CloudProvisioned and one per CloudResource, and at 10,000 of each a
//! B-tree's half-empty 632-byte nodes were a fifth of its memory. Lookups are
//! a binary search over a handful of keys.

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};
use std::fmt;

#[derive(Clone, Default, PartialEq)]
pub struct Fields(Box<[(Box<str>, Value)]>);

impl Fields {
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.position(key).ok().map(|i| &self.0[i].1)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.position(key).is_ok()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Entries in key order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &Value)> {
        self.0.iter().map(|(k, v)| (k.as_ref(), v))
    }

    pub fn keys(&self) -> impl ExactSizeIterator<Item = &str> {
        self.0.iter().map(|(k, _)| k.as_ref())
    }

    /// Sets `key` to `value`; returns the value it replaces.
    pub fn insert(&mut self, key: impl Into<Box<str>>, value: Value) -> Option<Value> {
        let key = key.into();
        match self.position(&key) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i].1, value)),
            Err(i) => {
                let mut entries = std::mem::take(&mut self.0).into_vec();
                entries.insert(i, (key, value));
                self.0 = entries.into_boxed_slice();
                None
            }
        }
    }

    /// Sorts and de-duplicates in place (this runs on every watch event).
    fn from_entries(mut entries: Vec<(Box<str>, Value)>) -> Self {
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
        Fields(entries.into_boxed_slice())
    }

    fn position(&self, key: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(k, _)| k.as_ref().cmp(key))
    }
}

impl std::ops::Index<&str> for Fields {
    type Output = Value;

    /// Like indexing a `serde_json::Value`: `Null` for an absent key.
    fn index(&self, key: &str) -> &Value {
        static NULL: Value = Value::Null;
        self.get(key).unwrap_or(&NULL)
    }
}

/// Later duplicates win, as in a JSON object read by serde_json.
impl<K: Into<Box<str>>> FromIterator<(K, Value)> for Fields {
    fn from_iter<I: IntoIterator<Item = (K, Value)>>(iter: I) -> Self {
        Fields::from_entries(iter.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }
}

impl<K: Into<Box<str>>> Extend<(K, Value)> for Fields {
    fn extend<I: IntoIterator<Item = (K, Value)>>(&mut self, iter: I) {
        for (k, v) in iter {
            self.insert(k, v);
        }
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
        fields.0.into_vec().into_iter().map(|(k, v)| (k.into_string(), v)).collect()
    }
}

impl<'a> IntoIterator for &'a Fields {
    type Item = (&'a str, &'a Value);
    type IntoIter = std::iter::Map<std::slice::Iter<'a, (Box<str>, Value)>, fn(&'a (Box<str>, Value)) -> Self::Item>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(k, v)| (k.as_ref(), v))
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
            map.serialize_entry(k, v)?;
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
                let mut entries: Vec<(Box<str>, Value)> = Vec::with_capacity(access.size_hint().unwrap_or(0).min(256));
                while let Some((k, v)) = access.next_entry::<String, Value>()? {
                    entries.push((k.into_boxed_str(), v));
                }
                Ok(Fields::from_entries(entries))
            }
        }

        deserializer.deserialize_map(FieldsVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trips_as_a_json_object_in_key_order() {
        let fields: Fields = serde_json::from_value(json!({"b": [1, 2], "a": {"x": null}, "c": "s"})).unwrap();
        assert_eq!(fields.keys().collect::<Vec<_>>(), ["a", "b", "c"]);
        assert_eq!(serde_json::to_string(&fields).unwrap(), r#"{"a":{"x":null},"b":[1,2],"c":"s"}"#);
        assert_eq!(fields["b"], json!([1, 2]));
        assert_eq!(fields["nope"], Value::Null);
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
    fn rejects_what_is_not_a_map() {
        let err = serde_json::from_value::<Fields>(json!("size_slug")).unwrap_err();
        assert!(err.to_string().contains("a map of field names to values"), "{err}");
    }
}
