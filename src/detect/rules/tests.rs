use super::*;
use crate::detect::Fields;
use proptest::prelude::*;
use serde_json::json;

fn attrs(v: Value) -> Fields {
    Fields::try_from(v).unwrap()
}

fn rule<'a>(id: &'a str, field: &'a str, paths: &'a [String], values: &'a [String]) -> IgnoreRule<'a> {
    IgnoreRule { id, field, paths, values }
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[test]
fn an_autoscaled_node_count_is_ignored_but_a_resized_pool_is_not() {
    let live_attrs = attrs(json!({"node_pools": [{"name": "p", "size": "s-2", "count": 5}]}));
    let live = LiveView { attrs: Some(&live_attrs), ..LiveView::default() };
    let desired = json!([{"name": "p", "size": "s-2", "count": 3}]);
    let paths = strings(&["/*/count"]);
    let rules = FieldRules { ignore: vec![rule("spec.ignore[0]", "node_pools", &paths, &[])], ..Default::default() };
    assert_eq!(compare_field("node_pools", &desired, &live, &rules), Compared::Ignored(vec!["spec.ignore[0]".into()]));
    let resized = json!([{"name": "p", "size": "s-4", "count": 3}]);
    assert!(matches!(compare_field("node_pools", &resized, &live, &rules), Compared::Drifted(_)));
    let equal = json!([{"name": "p", "size": "s-2", "count": 5}]);
    assert_eq!(compare_field("node_pools", &equal, &live, &rules), Compared::InSync, "nothing was ignored");
}

#[test]
fn tags_added_by_tooling_are_left_out_by_glob() {
    let tags = strings(&["web", "k8s", "k8s:0f4c", "k8s:worker"]);
    let live = LiveView { tags: Some(&tags), ..LiveView::default() };
    let globs = strings(&["k8s", "k8s:*"]);
    let rules = FieldRules { ignore: vec![rule("r", "tags", &[], &globs)], ..Default::default() };
    assert_eq!(compare_field("tags", &json!(["web"]), &live, &rules), Compared::Ignored(vec!["r".into()]));
    assert!(matches!(compare_field("tags", &json!(["web", "db"]), &live, &rules), Compared::Drifted(_)));
}

#[test]
fn contains_lets_extra_members_be() {
    let tags = strings(&["web", "prod", "extra"]);
    let live = LiveView { tags: Some(&tags), ..LiveView::default() };
    let contains = FieldRules { mode: MatchMode::Contains, ..Default::default() };
    assert_eq!(compare_field("tags", &json!(["prod", "web"]), &live, &contains), Compared::InSync);
    assert!(matches!(compare_field("tags", &json!(["web", "db"]), &live, &contains), Compared::Drifted(_)));
    assert!(matches!(compare_field("tags", &json!(["web"]), &live, &FieldRules::default()), Compared::Drifted(_)));
}

#[test]
fn a_whole_field_rule_ignores_any_difference() {
    let live = LiveView { status: Some("off"), ..LiveView::default() };
    let rules = FieldRules { ignore: vec![rule("power", "status", &[], &[])], ..Default::default() };
    assert_eq!(compare_field("status", &json!("active"), &live, &rules), Compared::Ignored(vec!["power".into()]));
    assert_eq!(compare_field("status", &json!("off"), &live, &rules), Compared::InSync);
}

#[test]
fn globs_and_pointers() {
    assert!(glob_match("k8s:*", "k8s:worker") && glob_match("*", "") && glob_match("a*b*c", "aXbYc"));
    assert!(!glob_match("k8s:*", "k8s") && !glob_match("a*b", "a") && !glob_match("web", "web2"));
    assert!(check_rule(&strings(&["/a/0", "/*/count"]), &strings(&["k8s:*"])).is_ok());
    assert_eq!(
        check_rule(&strings(&["a/b"]), &[]).map_err(|e| e.to_string()),
        Err("path \"a/b\" is not a JSON pointer (it must start with '/')".into())
    );
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![any::<i8>().prop_map(Value::from), "[a-c]{0,2}".prop_map(Value::from), Just(Value::Null)];
    leaf.prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            prop::collection::btree_map("[a-c]", inner, 0..3).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    /// Ignoring one key never changes what the other keys decide.
    #[test]
    fn ignoring_a_path_never_changes_the_verdict_of_the_other_paths(
        a in json_value(), b in json_value(), x in json_value(), y in json_value(),
    ) {
        let desired = json!({"keep": a, "noise": x});
        let live_attrs = attrs(json!({"f": {"keep": b, "noise": y}}));
        let live = LiveView { attrs: Some(&live_attrs), ..LiveView::default() };
        let paths = strings(&["/noise"]);
        let rules = FieldRules { ignore: vec![rule("r", "f", &paths, &[])], ..Default::default() };
        let drifted = matches!(compare_field("f", &desired, &live, &rules), Compared::Drifted(_));
        prop_assert_eq!(drifted, !loosely_equal(&desired["keep"], &live_attrs.get("f").unwrap()["keep"]));
    }

    /// `contains` with the live list equal to the desired one behaves as `exact`.
    #[test]
    fn contains_on_equal_lists_is_exact(list in prop::collection::vec("[a-d]{1,2}", 0..5)) {
        let live = LiveView { tags: Some(&list), ..LiveView::default() };
        let desired = Value::from(list.clone());
        let contains = FieldRules { mode: MatchMode::Contains, ..Default::default() };
        prop_assert_eq!(compare_field("tags", &desired, &live, &contains), compare_field("tags", &desired, &live, &FieldRules::default()));
    }

    /// A glob that matches nothing changes nothing.
    #[test]
    fn a_glob_matching_nothing_changes_nothing(list in prop::collection::vec("[a-d]{1,2}", 0..5), want in prop::collection::vec("[a-d]{1,2}", 0..5)) {
        let live = LiveView { tags: Some(&list), ..LiveView::default() };
        let globs = strings(&["zz*"]);
        let rules = FieldRules { ignore: vec![rule("r", "tags", &[], &globs)], ..Default::default() };
        let desired = Value::from(want);
        let plain = compare_field("tags", &desired, &live, &FieldRules::default());
        let with = compare_field("tags", &desired, &live, &rules);
        prop_assert_eq!(with, plain);
    }
}
