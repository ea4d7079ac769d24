//! Loose equality, the comparison rules of `spec.desired` against live values:
//! - scalars compare by their string form (`2` equals `"2"`, `true` equals `"true"`);
//! - null, `""` and a missing value are all equal;
//! - numbers compare by value (`1` equals `1.0`, `"2.0"` equals `2`);
//! - lists compare as sets (order and duplicates ignored);
//! - objects compare key by key with the same rules (an absent key equals null).
//!
//! Nothing here allocates: each rule compares in place, so a comparison costs
//! the same whether the values came from a watch cache or a manifest.

use super::Observed;
use serde_json::{Number, Value};

/// A scalar seen through the loose rules.
#[derive(Clone, Copy)]
enum Scalar<'a> {
    Empty,
    Bool(bool),
    Num(&'a Number),
    Str(&'a str),
}

impl<'a> Scalar<'a> {
    fn of(v: &'a Value) -> Option<Self> {
        match v {
            Value::Null => Some(Scalar::Empty),
            Value::Bool(b) => Some(Scalar::Bool(*b)),
            Value::Number(n) => Some(Scalar::Num(n)),
            Value::String(s) if s.is_empty() => Some(Scalar::Empty),
            Value::String(s) => Some(Scalar::Str(s)),
            Value::Array(_) | Value::Object(_) => None,
        }
    }

    fn of_text(s: &'a str) -> Self {
        if s.is_empty() { Scalar::Empty } else { Scalar::Str(s) }
    }
}

fn scalars_equal(a: Scalar<'_>, b: Scalar<'_>) -> bool {
    use Scalar::*;
    match (a, b) {
        (Empty, Empty) => true,
        (Bool(x), Bool(y)) => x == y,
        (Bool(x), Str(s)) | (Str(s), Bool(x)) => s == if x { "true" } else { "false" },
        (Num(x), Num(y)) => numbers_equal(x, y),
        (Num(n), Str(s)) | (Str(s), Num(n)) => number_equals_text(n, s),
        (Str(x), Str(y)) => x == y,
        _ => false,
    }
}

fn numbers_equal(a: &Number, b: &Number) -> bool {
    match (integer(a), integer(b)) {
        (Some(x), Some(y)) => x == y,
        _ => a.as_f64() == b.as_f64(),
    }
}

fn integer(n: &Number) -> Option<i128> {
    n.as_i64().map(i128::from).or_else(|| n.as_u64().map(i128::from))
}

/// A number equals a string when the string is the number's text or, read as
/// a number, has the same value. Non-finite readings ("NaN", "inf") never match.
fn number_equals_text(n: &Number, s: &str) -> bool {
    if let (Some(x), Ok(y)) = (integer(n), s.parse::<i128>()) {
        return x == y;
    }
    match (n.as_f64(), s.parse::<f64>()) {
        (Some(x), Ok(y)) if y.is_finite() => x == y,
        _ => false,
    }
}

/// Loose equality of two JSON values.
pub fn loosely_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Array(x), Value::Array(y)) => same_set(x, y, loosely_equal),
        (Value::Object(x), Value::Object(y)) => {
            let null = Value::Null;
            x.iter().all(|(k, v)| loosely_equal(v, y.get(k).unwrap_or(&null)))
                && y.iter().filter(|(k, _)| !x.contains_key(*k)).all(|(_, v)| loosely_equal(v, &null))
        }
        _ => match (Scalar::of(a), Scalar::of(b)) {
            (Some(x), Some(y)) => scalars_equal(x, y),
            _ => false,
        },
    }
}

/// Loose equality of a desired value with a resolved live value.
pub fn observed_equal(expected: &Value, observed: &Observed<'_>) -> bool {
    match observed {
        Observed::Missing => matches!(Scalar::of(expected), Some(Scalar::Empty)),
        Observed::Json(v) => loosely_equal(expected, v),
        Observed::Text(s) => Scalar::of(expected).is_some_and(|e| scalars_equal(e, Scalar::of_text(s))),
        Observed::Texts(list) => match expected {
            Value::Array(items) => {
                same_set(items, list, |v, s| Scalar::of(v).is_some_and(|e| scalars_equal(e, Scalar::of_text(s))))
            }
            _ => false,
        },
    }
}

/// Set equality under `eq`: every element of each side has an equal one on the
/// other. Quadratic, but the lists compared here (tags, ids) are short, and
/// it needs neither a hash nor an order for values that are only loosely equal.
fn same_set<A, B>(a: &[A], b: &[B], eq: impl Fn(&A, &B) -> bool) -> bool {
    a.iter().all(|x| b.iter().any(|y| eq(x, y))) && b.iter().all(|y| a.iter().any(|x| eq(x, y)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn eq(a: Value, b: Value) -> bool {
        let forward = loosely_equal(&a, &b);
        assert_eq!(forward, loosely_equal(&b, &a), "loose equality must be symmetric: {a} vs {b}");
        forward
    }

    #[test]
    fn scalars_compare_by_string_form() {
        assert!(eq(json!(2), json!("2")));
        assert!(eq(json!(true), json!("true")));
        assert!(eq(json!(false), json!("false")));
        assert!(eq(json!("nyc3"), json!("nyc3")));
        assert!(!eq(json!("nyc3"), json!("NYC3")));
        assert!(!eq(json!(true), json!("True")));
        assert!(!eq(json!(true), json!(1)));
        assert!(!eq(json!(-3), json!("3")));
    }

    #[test]
    fn null_empty_string_and_missing_are_equal() {
        assert!(eq(json!(null), json!("")));
        assert!(eq(json!(null), json!(null)));
        assert!(observed_equal(&json!(null), &Observed::Missing));
        assert!(observed_equal(&json!(""), &Observed::Missing));
        assert!(observed_equal(&json!(null), &Observed::Text("")));
        assert!(!observed_equal(&json!("x"), &Observed::Missing));
        assert!(!observed_equal(&json!(0), &Observed::Missing));
        assert!(!observed_equal(&json!(false), &Observed::Missing));
        assert!(!eq(json!(null), json!(0)));
        assert!(!eq(json!(null), json!([])));
    }

    #[test]
    fn numbers_compare_by_value() {
        assert!(eq(json!(1), json!(1.0)));
        assert!(eq(json!(4096), json!("4096")));
        assert!(eq(json!(2), json!("2.0")));
        assert!(eq(json!(1000), json!("1e3")));
        assert!(eq(json!(0.5), json!("0.5")));
        assert!(!eq(json!(1), json!(1.5)));
        assert!(!eq(json!(1), json!("1.5")));
        assert!(!eq(json!(1), json!("one")));
        assert!(eq(json!(u64::MAX), json!(u64::MAX)));
        assert!(!eq(json!(u64::MAX), json!(u64::MAX - 1)));
        assert!(eq(json!(i64::MIN), json!(i64::MIN.to_string())));
    }

    #[test]
    fn non_finite_text_never_equals_a_number() {
        assert!(!eq(json!(1), json!("NaN")));
        assert!(!eq(json!(1e308), json!("inf")));
        assert!(!eq(json!(1e308), json!("1e400")));
    }

    #[test]
    fn lists_compare_as_sets() {
        assert!(eq(json!(["web", "prod"]), json!(["prod", "web"])));
        assert!(eq(json!(["web", "web", "prod"]), json!(["prod", "web"])));
        assert!(eq(json!([]), json!([])));
        assert!(eq(json!([1, "2"]), json!(["1", 2.0])));
        assert!(!eq(json!(["web"]), json!(["web", "prod"])));
        assert!(!eq(json!(["web"]), json!("web")));
        assert!(!eq(json!([]), json!({})));
    }

    #[test]
    fn live_text_lists_compare_as_sets() {
        let tags = vec!["web".to_string(), "prod".to_string()];
        assert!(observed_equal(&json!(["prod", "web", "prod"]), &Observed::Texts(&tags)));
        assert!(!observed_equal(&json!(["prod"]), &Observed::Texts(&tags)));
        assert!(!observed_equal(&json!("web,prod"), &Observed::Texts(&tags)));
        assert!(observed_equal(&json!([]), &Observed::Texts(&[])));
    }

    #[test]
    fn objects_compare_key_by_key() {
        assert!(eq(json!({"a": 1, "b": ["x", "y"]}), json!({"b": ["y", "x"], "a": "1"})));
        assert!(eq(json!({"a": 1, "b": null}), json!({"a": 1})));
        assert!(!eq(json!({"a": 1}), json!({"a": 2})));
        assert!(!eq(json!({"a": 1}), json!({"a": 1, "b": 2})));
        assert!(!eq(json!({"a": 1}), json!("a")));
    }

    #[test]
    fn observed_text_follows_scalar_rules() {
        assert!(observed_equal(&json!(2), &Observed::Text("2")));
        assert!(observed_equal(&json!("active"), &Observed::Text("active")));
        assert!(!observed_equal(&json!(["active"]), &Observed::Text("active")));
        assert!(!observed_equal(&json!({"x": 1}), &Observed::Text("x")));
    }
}
