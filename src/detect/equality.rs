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
#[derive(Clone, Copy, Default)]
enum Node<'a> {
    #[default]
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
                Read::List(members) => Shape::List(Items::Json(members)),
                Read::Object(entries) => Shape::Object(Keyed::Json(entries)),
                scalar => Shape::Scalar(Scalar::of_read(scalar).expect("neither a list nor an object")),
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

    /// The scalar a text holds; `None` for a list or an object.
    fn of_read(read: Read<'a>) -> Option<Self> {
        Some(match read {
            Read::Null => Scalar::Empty,
            Read::Bool(b) => Scalar::Bool(b),
            Read::Number(n) => Scalar::Num(Num::Written(n)),
            Read::Str(s) => Scalar::of_str(s),
            Read::List(_) | Read::Object(_) => return None,
        })
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
    if let (Num::Written(x), Num::Written(y)) = (a, b)
        && same_decimal(x, y)
    {
        return true;
    }
    match (a.integer(), b.integer()) {
        (Some(x), Some(y)) => x == y,
        _ => a.float() == b.float(),
    }
}

/// Whether two decimals without an exponent are written alike but for
/// leading zeros of the whole part and trailing zeros of the fraction
/// (`4096` and `4096.0`): the same value, known without parsing either. Any
/// other pair is left to the parsed comparison.
fn same_decimal(x: &str, y: &str) -> bool {
    x == y || matches!((decimal(x), decimal(y)), (Some(a), Some(b)) if a == b)
}

/// A decimal's sign, whole digits without leading zeros and fraction digits
/// without trailing zeros; `None` for anything else.
fn decimal(text: &str) -> Option<(bool, &str, &str)> {
    let (negative, digits) = text.strip_prefix('-').map_or((false, text), |rest| (true, rest));
    let dot = digits.bytes().position(|b| b == b'.');
    let (whole, fraction) = dot.map_or((digits, ""), |at| (&digits[..at], &digits[at + 1..]));
    let all_digits = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
    (!whole.is_empty() && all_digits(whole) && all_digits(fraction))
        .then(|| (negative, whole.trim_start_matches('0'), fraction.trim_end_matches('0')))
}

/// A number equals a string when the string is the number's text or, read as
/// a number, has the same value. Non-finite readings ("NaN", "inf") never match.
fn number_equals_text(n: Num<'_>, s: &str) -> bool {
    if let Num::Written(text) = n
        && same_decimal(text, s)
    {
        return true;
    }
    if let (Some(x), Ok(y)) = (n.integer(), s.parse::<i128>()) {
        return x == y;
    }
    match (n.float(), s.parse::<f64>()) {
        (Some(x), Ok(y)) if y.is_finite() => x == y,
        _ => false,
    }
}

/// The one comparison every public function below is a view of. The pairs a
/// comparison meets most (a desired value held as text against a live one
/// held as text, a string or a list of strings) take a short way first.
fn nodes_equal(a: Node<'_>, b: Node<'_>) -> bool {
    match (a, b) {
        (Node::Json(x), Node::Json(y)) => texts_equal(x, y),
        // A string against a live string: equal exactly when the strings are
        // (two empty ones included).
        (Node::Json(x), Node::Text(t)) | (Node::Text(t), Node::Json(x)) if x.is_string() => {
            x.string().same(JsonStr::Plain(t))
        }
        (Node::Json(x), Node::Texts(list)) | (Node::Texts(list), Node::Json(x)) if x.is_list() => {
            let live = list.iter().map(String::as_str);
            same_set(x.members(), live, |a, t| nodes_equal(Node::Json(a), Node::Text(t)))
        }
        _ => shapes_equal(a.shape(), b.shape()),
    }
}

/// Two values held as text. The same canonical text is the same value, and
/// two strings (empty or not) are equal exactly when spelled alike: most
/// pairs are settled by that alone, so it is kept small enough to inline.
#[inline]
fn texts_equal(x: JsonText<'_>, y: JsonText<'_>) -> bool {
    x == y || (!(x.is_string() && y.is_string()) && texts_loosely_equal(x, y))
}

fn texts_loosely_equal(x: JsonText<'_>, y: JsonText<'_>) -> bool {
    match (x.read(), y.read()) {
        (Read::List(a), Read::List(b)) => same_set(a, b, texts_equal),
        (Read::Object(a), Read::Object(b)) => same_json_entries(a, b),
        (a, b) => match (Scalar::of_read(a), Scalar::of_read(b)) {
            (Some(a), Some(b)) => scalars_equal(a, b),
            _ => false,
        },
    }
}

fn shapes_equal(a: Shape<'_>, b: Shape<'_>) -> bool {
    match (a, b) {
        (Shape::List(x), Shape::List(y)) => same_set(x, y, nodes_equal),
        (Shape::Object(x), Shape::Object(y)) => same_entries(x, y),
        (Shape::Scalar(x), Shape::Scalar(y)) => scalars_equal(x, y),
        _ => false,
    }
}

/// Objects compare key by key; an absent key equals null.
fn same_entries(x: Keyed<'_>, y: Keyed<'_>) -> bool {
    in_step(x.clone(), y.clone(), nodes_equal).unwrap_or_else(|| same_entries_by_key(x, y))
}

/// Two objects held as text: the same walk, without the general one's dispatch.
fn same_json_entries(x: Entries<'_>, y: Entries<'_>) -> bool {
    in_step(x.clone(), y.clone(), texts_equal).unwrap_or_else(|| same_entries_by_key(Keyed::Json(x), Keyed::Json(y)))
}

/// Entries walked side by side, the common case: every view keeps its keys
/// sorted, so objects with the same keys meet them in step. `None` where the
/// keys part ways or one side ends first: then each key is looked up instead.
fn in_step<'a, V>(
    mut xs: impl Iterator<Item = (JsonStr<'a>, V)>,
    mut ys: impl Iterator<Item = (JsonStr<'a>, V)>,
    eq: impl Fn(V, V) -> bool,
) -> Option<bool> {
    loop {
        match (xs.next(), ys.next()) {
            (Some((xk, xv)), Some((yk, yv))) if xk.same(yk) => {
                if !eq(xv, yv) {
                    return Some(false);
                }
            }
            (None, None) => return Some(true),
            _ => return None,
        }
    }
}

fn same_entries_by_key(x: Keyed<'_>, y: Keyed<'_>) -> bool {
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
fn same_set<A, B>(
    a: impl Iterator<Item = A> + Clone,
    b: impl Iterator<Item = B> + Clone,
    eq: impl Fn(A, B) -> bool,
) -> bool
where
    A: Copy + Default,
    B: Copy + Default,
{
    let (mut xs, mut ys) = ([A::default(); ON_STACK], [B::default(); ON_STACK]);
    match (split_onto(a.clone(), &mut xs), split_onto(b.clone(), &mut ys)) {
        (Some(x), Some(y)) => same_members(x, y, eq),
        _ => a.clone().all(|x| b.clone().any(|y| eq(x, y))) && b.clone().all(|y| a.clone().any(|x| eq(x, y))),
    }
}

const ON_STACK: usize = 8;

fn split_onto<T>(items: impl Iterator<Item = T>, slots: &mut [T; ON_STACK]) -> Option<&[T]> {
    let mut n = 0;
    for item in items {
        *slots.get_mut(n)? = item;
        n += 1;
    }
    Some(&slots[..n])
}

/// Set equality of two split lists. Members equal pair by pair in order cost
/// one pass; after them each member of `x` is looked for in `y`, and only the
/// members of `y` that no search met are looked for in `x`.
fn same_members<A: Copy, B: Copy>(x: &[A], y: &[B], eq: impl Fn(A, B) -> bool) -> bool {
    let paired = x.iter().zip(y).take_while(|(a, b)| eq(**a, **b)).count();
    if paired == x.len() && paired == y.len() {
        return true;
    }
    let mut met = [false; ON_STACK];
    met[..paired].fill(true);
    let mut found = |a: A| y.iter().position(|b| eq(a, *b)).inspect(|&j| met[j] = true).is_some();
    x[paired..].iter().all(|a| found(*a)) && y.iter().zip(met).all(|(b, met)| met || x.iter().any(|a| eq(*a, *b)))
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
    fn decimals_written_alike_but_for_zeros_are_equal_without_parsing() {
        assert!(same_decimal("4096.0", "4096"));
        assert!(same_decimal("007.50", "7.5"));
        assert!(same_decimal("-0.0", "-0"));
        assert!(!same_decimal("-1", "1"));
        assert!(!same_decimal("1e3", "1000"), "exponents are left to the parsed comparison");
        assert!(!same_decimal("1.5", "15"));
        assert!(!same_decimal(".5", "0.5"), "not a JSON number: left to the parsed comparison");
        assert!(!same_decimal("1.2.3", "1.2.3.0"));
        // What it leaves alone is still compared by value.
        assert!(eq(json!(1000), json!("1e3")));
        assert!(eq(json!(0), json!("-0")));
        assert!(eq(json!(4096.0), json!("4096")));
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
