//! Property tests for the invariants of the detection core: a value never
//! drifts from itself, from its JSON round trip, or (for lists) from any
//! permutation of itself.

use super::Fields;
use super::{LiveView, Observed, detect, json_equal, loosely_equal};
use proptest::prelude::*;
use serde_json::{Value, json};

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter("JSON has no NaN or infinity", |f| f.is_finite()).prop_map(Value::from),
        "[a-z0-9 ._-]{0,12}".prop_map(Value::String),
        any::<String>().prop_map(Value::String),
    ]
}

fn json() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,8}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A value written another way that loose equality accepts: numbers and
/// booleans as strings, `2` as `2.0`, lists reversed with a duplicate, objects
/// with an extra null key; `bits` picks which.
fn loosened(v: &Value, bits: &mut u64) -> Value {
    *bits = bits.rotate_left(3) ^ 0x9E37_79B9_7F4A_7C15;
    let pick = *bits % 4;
    match v {
        Value::Number(n) if pick == 0 => Value::String(n.to_string()),
        Value::Number(n) if pick == 1 && n.is_i64() => Value::from(n.as_i64().unwrap_or_default() as f64),
        Value::Bool(b) if pick == 0 => Value::String(b.to_string()),
        Value::Array(items) => {
            let mut out: Vec<Value> = items.iter().rev().map(|i| loosened(i, bits)).collect();
            if pick == 2
                && let Some(first) = out.first().cloned()
            {
                out.push(first);
            }
            Value::Array(out)
        }
        Value::Object(map) => {
            let mut out: serde_json::Map<String, Value> =
                map.iter().map(|(k, i)| (k.clone(), loosened(i, bits))).collect();
            if pick == 3 {
                out.insert("zz_absent".into(), Value::Null);
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

proptest! {
    /// The short ways the comparison over text takes (pairs in order, keys in
    /// step, decimals alike) agree with the parsed comparison on values that
    /// are equal only loosely, and on such values with one leaf changed.
    #[test]
    fn loosely_equal_values_read_in_place_compare_as_parsed_ones(a in json(), seed in any::<u64>()) {
        let mut bits = seed;
        let b = loosened(&a, &mut bits);
        let changed = match &b {
            Value::Array(items) if !items.is_empty() => Value::Array(items[1..].to_vec()),
            Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), json!([v]))).collect()),
            other => json!([other]),
        };
        let fields: Fields = [("a", a.clone()), ("b", b.clone()), ("c", changed.clone())].into_iter().collect();
        let read = |k| fields.json(k).unwrap();
        prop_assert!(loosely_equal(&a, &b), "{} vs {}", a, b);
        prop_assert!(json_equal(read("a"), &Observed::Json(read("b"))), "{} vs {}", a, b);
        prop_assert!(json_equal(read("b"), &Observed::Json(read("a"))), "{} vs {}", b, a);
        prop_assert_eq!(json_equal(read("a"), &Observed::Json(read("c"))), loosely_equal(&a, &changed));
    }

    #[test]
    fn a_value_equals_itself(v in json()) {
        prop_assert!(loosely_equal(&v, &v));
    }

    #[test]
    fn a_value_equals_its_json_round_trip(v in json()) {
        let back: Value = serde_json::from_str(&serde_json::to_string(&v).unwrap()).unwrap();
        prop_assert!(loosely_equal(&v, &back));
    }

    #[test]
    fn a_list_equals_any_permutation_of_itself_with_duplicates(
        items in prop::collection::vec(json(), 0..8),
        seed in any::<u64>(),
        dup in any::<prop::sample::Index>(),
    ) {
        let mut shuffled = items.clone();
        // A deterministic Fisher-Yates from the seed: proptest shrinks the seed.
        let mut state = seed | 1;
        for i in (1..shuffled.len()).rev() {
            state ^= state << 13; state ^= state >> 7; state ^= state << 17;
            shuffled.swap(i, (state % (i as u64 + 1)) as usize);
        }
        if !items.is_empty() {
            shuffled.push(items[dup.index(items.len())].clone());
        }
        prop_assert!(loosely_equal(&Value::Array(items), &Value::Array(shuffled)));
    }

    /// The comparison in place over the cached text agrees with the one over
    /// parsed values, for any pair of values and any live string.
    #[test]
    fn values_read_in_place_compare_as_parsed_ones(a in json(), b in json(), s in any::<String>()) {
        let fields: Fields = [("a", a.clone()), ("b", b.clone())].into_iter().collect();
        let (ja, jb) = (fields.json("a").unwrap(), fields.json("b").unwrap());
        prop_assert!(json_equal(ja, &Observed::Json(ja)));
        prop_assert_eq!(json_equal(ja, &Observed::Json(jb)), loosely_equal(&a, &b));
        prop_assert_eq!(json_equal(ja, &Observed::Text(&s)), loosely_equal(&a, &Value::String(s.clone())));
        let mixed = [s.clone(), "x".to_string()];
        prop_assert_eq!(json_equal(ja, &Observed::Texts(&mixed)), loosely_equal(&a, &Value::from(mixed.to_vec())));
    }

    #[test]
    fn loose_equality_is_symmetric(a in json(), b in json()) {
        prop_assert_eq!(loosely_equal(&a, &b), loosely_equal(&b, &a));
    }

    #[test]
    fn a_desired_state_copied_from_live_never_drifts(
        desired in prop::collection::btree_map("[a-z_]{1,10}", json(), 0..10),
        tags in prop::collection::vec("[a-z]{1,5}", 0..4),
    ) {
        let mut desired: Fields = desired.into_iter().collect();
        let attrs = desired.clone();
        desired.insert("tags", Value::from(tags.iter().rev().cloned().collect::<Vec<_>>()));
        let live = LiveView { tags: Some(&tags), attrs: Some(&attrs), ..LiveView::default() };
        prop_assert_eq!(detect(&desired, &live), vec![]);
    }
}
