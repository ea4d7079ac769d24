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
use super::json_text::{Entries, JsonStr, JsonText, Members, Read};
use serde_json::{Number, Value};
use std::collections::BTreeMap;

/// One value to compare, wherever it is held: a serde_json value, the text of
/// a cached [`super::Fields`], or a live resource's typed fields. Each rule
/// below is written once, against this view.
#[derive(Clone, Copy)]
enum Node<'a> {
    Missing,
    Value(&'a Value),
    Json(JsonText<'a>),
    Text(&'a str),
    Texts(&'a [String]),
    Pairs(&'a BTreeMap<String, String>),
}

/// A scalar seen through the loose rules.
#[derive(Clone, Copy)]
enum Scalar<'a> {
    Empty,
    Bool(bool),
    Num(Num<'a>),
    Str(JsonStr<'a>),
}

/// A number, parsed or as written.
#[derive(Clone, Copy)]
enum Num<'a> {
    Parsed(&'a Number),
    Written(&'a str),
}

impl Num<'_> {
    fn integer(self) -> Option<i128> {
        match self {
            Num::Parsed(n) => n.as_i64().map(i128::from).or_else(|| n.as_u64().map(i128::from)),
            Num::Written(text) => text.parse().ok(),
        }
    }

    fn float(self) -> Option<f64> {
        match self {
            Num::Parsed(n) => n.as_f64(),
            Num::Written(text) => text.parse().ok(),
        }
    }
}

/// A list's members or an object's entries, from wherever they are held.
#[derive(Clone)]
enum Items<'a> {
    Values(std::slice::Iter<'a, Value>),
    Json(Members<'a>),
    Texts(std::slice::Iter<'a, String>),
}

impl<'a> Iterator for Items<'a> {
    type Item = Node<'a>;

    fn next(&mut self) -> Option<Node<'a>> {
        match self {
            Items::Values(i) => i.next().map(Node::Value),
            Items::Json(i) => i.next().map(Node::Json),
            Items::Texts(i) => i.next().map(|s| Node::Text(s)),
        }
    }
}

#[derive(Clone)]
enum Keyed<'a> {
    Values(serde_json::map::Iter<'a>),
    Json(Entries<'a>),
    Pairs(std::collections::btree_map::Iter<'a, String, String>),
}

impl<'a> Iterator for Keyed<'a> {
    type Item = (JsonStr<'a>, Node<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Keyed::Values(i) => i.next().map(|(k, v)| (JsonStr::Plain(k), Node::Value(v))),
            Keyed::Json(i) => i.next().map(|(k, v)| (k, Node::Json(v))),
            Keyed::Pairs(i) => i.next().map(|(k, v)| (JsonStr::Plain(k), Node::Text(v))),
        }
    }
}

/// What a node is, one level deep.
enum Shape<'a> {
    Scalar(Scalar<'a>),
    List(Items<'a>),
    Object(Keyed<'a>),
}

impl<'a> Node<'a> {
    fn shape(self) -> Shape<'a> {
        match self {
            Node::Missing => Shape::Scalar(Scalar::Empty),
            Node::Text(s) => Shape::Scalar(Scalar::of_str(JsonStr::Plain(s))),
            Node::Texts(list) => Shape::List(Items::Texts(list.iter())),
            Node::Pairs(map) => Shape::Object(Keyed::Pairs(map.iter())),
            Node::Value(v) => match v {
                Value::Null => Shape::Scalar(Scalar::Empty),
                Value::Bool(b) => Shape::Scalar(Scalar::Bool(*b)),
                Value::Number(n) => Shape::Scalar(Scalar::Num(Num::Parsed(n))),
                Value::String(s) => Shape::Scalar(Scalar::of_str(JsonStr::Plain(s))),
                Value::Array(items) => Shape::List(Items::Values(items.iter())),
                Value::Object(map) => Shape::Object(Keyed::Values(map.iter())),
            },
            Node::Json(text) => match text.read() {
                Read::Null => Shape::Scalar(Scalar::Empty),
                Read::Bool(b) => Shape::Scalar(Scalar::Bool(b)),
                Read::Number(n) => Shape::Scalar(Scalar::Num(Num::Written(n))),
                Read::Str(s) => Shape::Scalar(Scalar::of_str(s)),
                Read::List(members) => Shape::List(Items::Json(members)),
                Read::Object(entries) => Shape::Object(Keyed::Json(entries)),
            },
        }
    }

    /// The value of `key` in an object (missing when absent).
    fn entry(mut entries: Keyed<'a>, key: JsonStr<'_>) -> Node<'a> {
        entries.find(|(k, _)| k.same(key)).map_or(Node::Missing, |(_, v)| v)
    }
}

impl<'a> Scalar<'a> {
    fn of_str(s: JsonStr<'a>) -> Self {
        if s.is_empty() { Scalar::Empty } else { Scalar::Str(s) }
    }
}

fn scalars_equal(a: Scalar<'_>, b: Scalar<'_>) -> bool {
    use Scalar::*;
    match (a, b) {
        (Empty, Empty) => true,
        (Bool(x), Bool(y)) => x == y,
        (Bool(x), Str(s)) | (Str(s), Bool(x)) => s.plain() == Some(if x { "true" } else { "false" }),
        (Num(x), Num(y)) => numbers_equal(x, y),
        // A string that needed escaping holds a quote, a backslash or a control
        // character, so it never reads as a number.
        (Num(n), Str(s)) | (Str(s), Num(n)) => s.plain().is_some_and(|s| number_equals_text(n, s)),
        (Str(x), Str(y)) => x.same(y),
        _ => false,
    }
}

fn numbers_equal(a: Num<'_>, b: Num<'_>) -> bool {
    match (a.integer(), b.integer()) {
        (Some(x), Some(y)) => x == y,
        _ => a.float() == b.float(),
    }
}

/// A number equals a string when the string is the number's text or, read as
/// a number, has the same value. Non-finite readings ("NaN", "inf") never match.
fn number_equals_text(n: Num<'_>, s: &str) -> bool {
    if let (Some(x), Ok(y)) = (n.integer(), s.parse::<i128>()) {
        return x == y;
    }
    match (n.float(), s.parse::<f64>()) {
        (Some(x), Ok(y)) if y.is_finite() => x == y,
        _ => false,
    }
}

/// The one comparison every public function below is a view of.
fn nodes_equal(a: Node<'_>, b: Node<'_>) -> bool {
    if let (Node::Json(x), Node::Json(y)) = (a, b) {
        if x == y {
            // The same canonical text is the same value, and a value equals itself.
            return true;
        }
        if x.as_str().starts_with('"') && y.as_str().starts_with('"') {
            // Two strings (empty or not) are equal exactly when spelled alike.
            return false;
        }
    }
    match (a.shape(), b.shape()) {
        (Shape::List(x), Shape::List(y)) => same_set(x, y),
        (Shape::Object(x), Shape::Object(y)) => same_entries(x, y),
        (Shape::Scalar(x), Shape::Scalar(y)) => scalars_equal(x, y),
        _ => false,
    }
}

/// Objects compare key by key; an absent key equals null.
fn same_entries(x: Keyed<'_>, y: Keyed<'_>) -> bool {
    x.clone().all(|(k, v)| nodes_equal(v, Node::entry(y.clone(), k)))
        && y.filter(|(k, _)| !x.clone().any(|(xk, _)| xk.same(*k))).all(|(_, v)| nodes_equal(v, Node::Missing))
}

/// Loose equality of two JSON values.
pub fn loosely_equal(a: &Value, b: &Value) -> bool {
    nodes_equal(Node::Value(a), Node::Value(b))
}

/// Loose equality of a desired value with a resolved live value.
pub fn observed_equal(expected: &Value, observed: &Observed<'_>) -> bool {
    nodes_equal(Node::Value(expected), Node::of(observed))
}

/// Loose equality of a desired value held as text with a resolved live value;
/// it allocates nothing.
pub fn json_equal(expected: JsonText<'_>, observed: &Observed<'_>) -> bool {
    nodes_equal(Node::Json(expected), Node::of(observed))
}

impl<'a> Node<'a> {
    fn of(observed: &Observed<'a>) -> Self {
        match *observed {
            Observed::Missing => Node::Missing,
            Observed::Text(s) => Node::Text(s),
            Observed::Texts(list) => Node::Texts(list),
            Observed::Pairs(map) => Node::Pairs(map),
            Observed::Json(text) => Node::Json(text),
        }
    }
}

/// Set equality: every member of each list has an equal one in the other.
/// Quadratic, but the lists compared here (tags, ids) are short, and it needs
/// neither a hash nor an order for values that are only loosely equal. Lists
/// of up to [`ON_STACK`] members are split once onto the stack; longer ones
/// are walked again for each member.
fn same_set(a: Items<'_>, mut b: Items<'_>) -> bool {
    let (mut xs, mut ys) = ([Node::Missing; ON_STACK], [Node::Missing; ON_STACK]);
    match (split_onto(a.clone(), &mut xs), split_onto(b.clone(), &mut ys)) {
        (Some(x), Some(y)) => covers(x, y) && covers(y, x),
        _ => a.clone().all(|x| b.clone().any(|y| nodes_equal(x, y))) && b.all(|y| a.clone().any(|x| nodes_equal(x, y))),
    }
}

const ON_STACK: usize = 8;

fn split_onto<'a, 's>(items: Items<'a>, slots: &'s mut [Node<'a>; ON_STACK]) -> Option<&'s [Node<'a>]> {
    let mut n = 0;
    for item in items {
        *slots.get_mut(n)? = item;
        n += 1;
    }
    Some(&slots[..n])
}

/// Every member of `a` has an equal one in `b`.
fn covers(a: &[Node<'_>], b: &[Node<'_>]) -> bool {
    a.iter().all(|x| b.iter().any(|y| nodes_equal(*x, *y)))
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
    fn lists_longer_than_the_stack_holds_compare_as_sets_too() {
        let up: Vec<u32> = (0..40).collect();
        let down: Vec<String> = (0..40).rev().map(|i| i.to_string()).collect();
        let short: Vec<u32> = (1..40).collect();
        assert!(eq(json!(up), json!(down)));
        assert!(!eq(json!(short), json!(down)));
        let fields: crate::detect::Fields =
            [("up", json!(up)), ("down", json!(down)), ("short", json!(short))].into_iter().collect();
        let read = |k| fields.json(k).unwrap();
        assert!(json_equal(read("up"), &Observed::Json(read("down"))));
        assert!(!json_equal(read("short"), &Observed::Json(read("down"))));
        assert!(!json_equal(read("down"), &Observed::Json(read("short"))));
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
