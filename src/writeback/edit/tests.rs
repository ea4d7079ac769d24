use super::*;
use proptest::prelude::*;
use serde_json::json;

const TARGET: EditTarget<'static> =
    EditTarget { name: "web-1", namespace: "team-a", default_namespace: None, field: "size_slug" };

/// The edit, as a diff: the lines that changed (old, new).
fn changed_lines(before: &str, after: &str) -> Vec<(String, String)> {
    let (old, new): (Vec<&str>, Vec<&str>) =
        (before.split_inclusive('\n').collect(), after.split_inclusive('\n').collect());
    assert_eq!(old.len(), new.len(), "the edit changed the number of lines:\n{after}");
    old.iter().zip(&new).filter(|(o, n)| o != n).map(|(o, n)| (o.to_string(), n.to_string())).collect()
}

fn one_line_edit(before: &str, value: Value, old_line: &str, new_line: &str) {
    let after = edit(before, &TARGET, &value).unwrap_or_else(|e| panic!("{e}\n{before}"));
    assert_eq!(changed_lines(before, &after), [(old_line.to_owned(), new_line.to_owned())], "\n{after}");
}

#[test]
fn a_plain_value_in_a_commented_block_manifest() {
    let before = "# the web tier\napiVersion: arcadia.cloud/v1alpha1\nkind: CloudProvisioned\nmetadata:\n  name: web-1   # owned by team a\nspec:\n  resourceRef: {name: do-1}\n  desired:\n    # bigger in December\n    size_slug: s-1vcpu-1gb  # see ticket 42\n    region: nyc3\n";
    one_line_edit(
        before,
        json!("s-2vcpu-4gb"),
        "    size_slug: s-1vcpu-1gb  # see ticket 42\n",
        "    size_slug: s-2vcpu-4gb  # see ticket 42\n",
    );
}

#[test]
fn quoting_styles_are_kept() {
    let doc =
        |v: &str| format!("kind: CloudProvisioned\nmetadata: {{name: web-1}}\nspec:\n  desired:\n    size_slug: {v}\n");
    for (old, value, new) in [
        ("'s-1'", json!("it's"), "'it''s'"),
        ("\"s-1\"", json!("s-2"), "\"s-2\""),
        ("s-1", json!("on"), "\"on\""),
        ("s-1", json!("1.0"), "\"1.0\""),
        ("s-1", json!("0755"), "\"0755\""),
        ("s-1", json!(4), "4"),
        ("s-1", json!(true), "true"),
        ("s-1", Value::Null, "null"),
        ("'s-1'", json!("line\nbreak"), "\"line\\nbreak\""),
    ] {
        let before = doc(old);
        one_line_edit(&before, value, &format!("    size_slug: {old}\n"), &format!("    size_slug: {new}\n"));
    }
}

#[test]
fn flow_maps_and_lists_stay_flow() {
    let before = "kind: CloudProvisioned\nmetadata: {name: web-1, namespace: team-a}\nspec: {resourceRef: {name: do-1}, desired: {size_slug: s-1, region: nyc3}}\n";
    one_line_edit(
        before,
        json!("s-2"),
        "spec: {resourceRef: {name: do-1}, desired: {size_slug: s-1, region: nyc3}}\n",
        "spec: {resourceRef: {name: do-1}, desired: {size_slug: s-2, region: nyc3}}\n",
    );
    let tags = "kind: CloudProvisioned\nmetadata: {name: web-1}\nspec:\n  desired:\n    size_slug: [web, prod]\n";
    one_line_edit(
        tags,
        json!(["web", "prod", "k8s:x"]),
        "    size_slug: [web, prod]\n",
        "    size_slug: [web, prod, \"k8s:x\"]\n",
    );
}

#[test]
fn a_block_list_keeps_its_indentation() {
    let before = "kind: CloudProvisioned\nmetadata:\n  name: web-1\nspec:\n  desired:\n    size_slug:\n      - web\n      - prod\n    region: nyc3\n";
    let after = edit(before, &TARGET, &json!(["web", "db"])).unwrap();
    assert_eq!(after, before.replace("      - prod\n", "      - db\n"));
    let grown = edit(before, &TARGET, &json!(["web", "prod", "db"])).unwrap();
    assert_eq!(grown, before.replace("      - prod\n", "      - prod\n      - db\n"));
}

#[test]
fn other_documents_and_crlf_line_endings_are_untouched() {
    let before = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: web-1}\ndata: {size_slug: s-1}\n---\nkind: CloudProvisioned\nmetadata:\n  name: web-2\nspec:\n  desired: {size_slug: s-1}\n---\nkind: CloudProvisioned\nmetadata:\n  name: web-1\nspec:\n  desired: {size_slug: s-1}\n...\n";
    one_line_edit(before, json!("s-9"), "  desired: {size_slug: s-1}\n", "  desired: {size_slug: s-9}\n");
    let after = edit(before, &TARGET, &json!("s-9")).unwrap();
    assert!(after.starts_with("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: web-1}\ndata: {size_slug: s-1}\n---\nkind: CloudProvisioned\nmetadata:\n  name: web-2\nspec:\n  desired: {size_slug: s-1}\n"));

    let crlf = "kind: CloudProvisioned\r\nmetadata:\r\n  name: web-1\r\nspec:\r\n  desired:\r\n    size_slug: s-1\r\n    tags:\r\n      - a\r\n";
    let after = edit(crlf, &TARGET, &json!("s-2")).unwrap();
    assert_eq!(after, crlf.replace("size_slug: s-1", "size_slug: s-2"));
    let tags = EditTarget { field: "tags", ..TARGET };
    let after = edit(crlf, &tags, &json!(["a", "b"])).unwrap();
    assert_eq!(after, crlf.replace("      - a\r\n", "      - a\r\n      - b\r\n"));
}

#[test]
fn anchors_aliases_and_block_scalars_are_left_to_people() {
    let doc = |desired: &str| {
        format!(
            "kind: CloudProvisioned\nmetadata: {{name: web-1}}\nsizes: {{small: &small s-1}}\nspec:\n  desired:\n{desired}"
        )
    };
    for (desired, why) in [
        ("    size_slug: *small\n", "a YAML alias"),
        ("    size_slug: &mine s-1\n    other: *mine\n", "a YAML anchor other values refer to"),
        ("    size_slug: |\n      s-1\n", "a block scalar"),
        ("    size_slug: {slug: s-1}\n", "a map"),
    ] {
        let error = edit(&doc(desired), &TARGET, &json!("s-2")).unwrap_err();
        assert!(matches!(error, EditError::Unsupported { .. }), "{error}");
        assert!(error.to_string().contains(why), "{error}");
    }
}

#[test]
fn a_field_set_elsewhere_or_another_object_changes_nothing() {
    // A kustomize patch: the field comes from another file.
    let patch_base = "kind: CloudProvisioned\nmetadata: {name: web-1}\nspec:\n  desired: {region: nyc3}\n";
    assert_eq!(
        edit(patch_base, &TARGET, &json!("s-2")).unwrap_err().to_string(),
        "spec.desired.size_slug is not written in the document of CloudProvisioned web-1 (the field is not in spec.desired)"
    );
    let other_namespace =
        "kind: CloudProvisioned\nmetadata: {name: web-1, namespace: team-b}\nspec:\n  desired: {size_slug: s-1}\n";
    assert_eq!(edit(other_namespace, &TARGET, &json!("s-2")), Err(EditError::NotHere("web-1".into())));
    let helm = "kind: CloudProvisioned\nmetadata:\n  name: {{ .Values.name }}\nspec:\n  desired: {size_slug: {{ .Values.size }}}\n";
    assert!(matches!(edit(helm, &TARGET, &json!("s-2")), Err(EditError::Yaml(_) | EditError::NotHere(_))));
    let twice = format!(
        "{other}---\n{other}",
        other = "kind: CloudProvisioned\nmetadata: {name: web-1}\nspec:\n  desired: {size_slug: s-1}\n"
    );
    assert_eq!(edit(&twice, &TARGET, &json!("s-2")), Err(EditError::Ambiguous { name: "web-1".into(), count: 2 }));
}

fn scalar_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        "[a-z][a-z0-9-]{0,12}".prop_map(Value::from),
        "[ -~]{0,12}".prop_map(Value::from),
        prop::sample::select(vec!["on", "off", "yes", "1.0", "0755", "null", "~", "-", "a: b", "#x", "it's", "\"q\""])
            .prop_map(Value::from),
        any::<i32>().prop_map(Value::from),
        any::<bool>().prop_map(Value::from),
        Just(Value::Null),
    ]
}

fn written(v: &Value, style: usize) -> String {
    match (v, style % 3) {
        (Value::String(s), 1) => format!("'{}'", s.replace('\'', "''")),
        (Value::String(s), 2) => Value::String(s.clone()).to_string(),
        (Value::String(s), _) if !needs_quotes(s) => s.clone(),
        (other, _) => yaml_scalar(other),
    }
}

proptest! {
    /// Whatever the old and new values and however the file is written, the
    /// edited file reads back as the original with exactly that value changed.
    #[test]
    fn the_edit_changes_exactly_one_value(
        old in scalar_value(), new in scalar_value(), style in 0usize..3, flow in any::<bool>(), crlf in any::<bool>(),
    ) {
        let old_text = written(&old, style);
        let body = if flow {
            format!("kind: CloudProvisioned\nmetadata: {{name: web-1}}  # c\nspec:\n  desired: {{region: nyc3, size_slug: {old_text}, tags: [a]}}\n")
        } else {
            format!("kind: CloudProvisioned\nmetadata:\n  name: web-1\nspec:\n  desired:\n    region: nyc3\n    size_slug: {old_text}   # note\n    tags:\n      - a\n")
        };
        let text = format!("kind: ConfigMap\nmetadata: {{name: x}}\n---\n{body}");
        let text = if crlf { text.replace('\n', "\r\n") } else { text };
        let before = read_json(&text).unwrap();
        let after_text = edit(&text, &TARGET, &new).unwrap();
        let after = read_json(&after_text).unwrap();
        let mut expected = before.clone();
        expected[1]["spec"]["desired"]["size_slug"] = new.clone();
        prop_assert_eq!(after, expected);
        prop_assert_eq!(after_text.lines().count(), text.lines().count());
    }
}

#[test]
fn the_current_value_is_read_from_the_target_document() {
    let text = "kind: ConfigMap\nmetadata: {name: web-1}\n---\n---\nkind: CloudProvisioned\nmetadata: {name: web-1}\nspec:\n  desired: {size_slug: s-1, vcpus: 2}\n";
    assert_eq!(current_value(text, &TARGET), Ok(json!("s-1")));
    assert_eq!(current_value(text, &EditTarget { field: "vcpus", ..TARGET }), Ok(json!(2)));
}

#[test]
fn a_document_without_a_namespace_is_the_object_only_where_the_tool_puts_it() {
    let text = "kind: CloudProvisioned\nmetadata: {name: web-1}\nspec:\n  desired: {size_slug: s-1}\n";
    let flux_into = |ns| EditTarget { default_namespace: Some(ns), ..TARGET };
    assert_eq!(current_value(text, &flux_into("team-a")), Ok(json!("s-1")));
    assert_eq!(current_value(text, &flux_into("team-b")), Err(EditError::NotHere("web-1".into())));
    let named =
        "kind: CloudProvisioned\nmetadata: {name: web-1, namespace: team-b}\nspec:\n  desired: {size_slug: s-1}\n";
    assert_eq!(current_value(named, &TARGET), Err(EditError::NotHere("web-1".into())));
}

#[test]
fn where_a_document_must_name_the_namespace_one_naming_none_is_never_the_object() {
    let required = EditTarget { default_namespace: Some(NAMESPACE_REQUIRED), ..TARGET };
    let unnamed = "kind: CloudProvisioned\nmetadata: {name: web-1}\nspec:\n  desired: {size_slug: s-1}\n";
    let refused = EditError::NamespaceRequired { name: "web-1".into(), namespace: "team-a".into() };
    assert_eq!(current_value(unnamed, &required), Err(refused.clone()));
    assert_eq!(edit(unnamed, &required, &json!("s-2")), Err(refused.clone()));
    assert_eq!(
        refused.to_string(),
        "the document of CloudProvisioned web-1 names no namespace: with the controller's credentials a document must name namespace team-a"
    );
    // Without the requirement the same document is taken for the object, whatever its namespace.
    assert_eq!(current_value(unnamed, &TARGET), Ok(json!("s-1")));

    let named = unnamed.replace("{name: web-1}", "{name: web-1, namespace: team-a}");
    assert_eq!(current_value(&named, &required), Ok(json!("s-1")));
    assert!(edit(&named, &required, &json!("s-2")).unwrap().contains("size_slug: s-2"));
    let elsewhere = unnamed.replace("{name: web-1}", "{name: web-1, namespace: team-b}");
    assert_eq!(current_value(&elsewhere, &required), Err(EditError::NotHere("web-1".into())));
    let other_object = unnamed.replace("web-1", "web-2");
    assert_eq!(current_value(&other_object, &required), Err(EditError::NotHere("web-1".into())));
    // The document naming the namespace is the one edited, beside another tenant's naming none.
    let both = format!("{unnamed}---\n{named}");
    let edited = edit(&both, &required, &json!("s-2")).unwrap();
    assert_eq!(edited, format!("{unnamed}---\n{}", named.replace("s-1", "s-2")));
}
