//! The one-value edit of a manifest in Git: find the YAML document of one
//! CloudProvisioned and change the value of `spec.desired.<field>`, leaving
//! every other byte of the file as it was (comments, key order, indentation,
//! quoting, flow or block style, other documents, line endings).
//!
//! The file is read with a YAML parser that reports where each node stands
//! in the text; only that node's bytes are replaced. The result is parsed
//! again and compared with the original, document by document: an edit that
//! would change anything but the one value is refused.

mod tree;

use crate::detect::{needs_quotes, yaml_scalar};
use serde_json::Value;
use tree::{Node, NodeKind, parse_documents};

/// Which object and field to change.
#[derive(Clone, Debug, PartialEq)]
pub struct EditTarget<'a> {
    pub name: &'a str,
    /// The object's namespace: a document naming another namespace is not it.
    pub namespace: &'a str,
    /// The namespace a document naming none gets from the tool that applies
    /// it; `None`: unknown (`kubectl apply -n`), such a document may be it;
    /// [`NAMESPACE_REQUIRED`]: such a document is never it.
    pub default_namespace: Option<&'a str>,
    pub field: &'a str,
}

/// The `default_namespace` under which only a document naming the object's
/// namespace is the object's: where the object's own annotations point the
/// controller's credentials, a document naming none may be another tenant's.
pub const NAMESPACE_REQUIRED: &str = "";

/// Why a file was not edited.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum EditError {
    #[error("not valid YAML: {0}")]
    Yaml(#[from] NotYaml),
    #[error("no document of CloudProvisioned {0}")]
    NotHere(String),
    #[error(
        "the document of CloudProvisioned {name} names no namespace: with the controller's credentials a document must name namespace {namespace}"
    )]
    NamespaceRequired { name: String, namespace: String },
    #[error("CloudProvisioned {name} is in this file {count} times")]
    Ambiguous { name: String, count: usize },
    #[error("spec.desired.{field} is not written in the document of CloudProvisioned {name} ({why})")]
    NotLiteral { name: String, field: String, why: &'static str },
    #[error("spec.desired.{field} of CloudProvisioned {name} is {why}; it is left for a person to change")]
    Unsupported { name: String, field: String, why: &'static str },
    #[error("the edit would change more than spec.desired.{0}; nothing was changed")]
    Unsafe(String),
}

/// The file with `spec.desired.<field>` of `target` set to `value`.
pub fn edit(text: &str, target: &EditTarget<'_>, value: &Value) -> Result<String, EditError> {
    let docs = parse_documents(text)?;
    let matching: Vec<&Node> = docs.iter().filter(|d| is_target(d, target)).collect();
    let doc = match matching.as_slice() {
        [] => return Err(not_here(&docs, target)),
        [one] => *one,
        many => return Err(EditError::Ambiguous { name: target.name.to_owned(), count: many.len() }),
    };
    let node = locate(doc, target)?;
    let replacement = render(text, node, value, target)?;
    let mut edited = String::with_capacity(text.len() + replacement.len());
    edited.push_str(&text[..node.span.start]);
    edited.push_str(&replacement);
    edited.push_str(&text[node.span.end..]);
    verify(text, &edited, target, value)?;
    Ok(edited)
}

fn is_target(doc: &Node, target: &EditTarget<'_>) -> bool {
    named(doc, target.name).is_some_and(|namespace| in_namespace(namespace.as_deref(), target))
}

/// The namespace a `CloudProvisioned` document of this name names, if it is one.
fn named(doc: &Node, name: &str) -> Option<Option<String>> {
    let text_of = |node: Option<&Node>| node.and_then(Node::scalar).map(str::to_owned);
    let metadata = doc.get("metadata");
    let is_it = text_of(doc.get("kind")).as_deref() == Some("CloudProvisioned")
        && text_of(metadata.and_then(|m| m.get("name"))).as_deref() == Some(name);
    is_it.then(|| text_of(metadata.and_then(|m| m.get("namespace"))))
}

/// Whether a document naming `namespace` (or none) lands in the target's namespace.
fn in_namespace(namespace: Option<&str>, target: &EditTarget<'_>) -> bool {
    match (namespace, target.default_namespace) {
        (Some(ns), _) => ns == target.namespace,
        (None, Some(NAMESPACE_REQUIRED)) => false,
        (None, default) => default.is_none_or(|ns| ns == target.namespace),
    }
}

/// Why no document is the target's: a document of its name that names no
/// namespace, where one must, is said as such (the file is not passed over).
fn not_here(docs: &[Node], target: &EditTarget<'_>) -> EditError {
    let required = target.default_namespace == Some(NAMESPACE_REQUIRED);
    if required && docs.iter().any(|d| named(d, target.name) == Some(None)) {
        return EditError::NamespaceRequired { name: target.name.to_owned(), namespace: target.namespace.to_owned() };
    }
    EditError::NotHere(target.name.to_owned())
}

/// The value node of `spec.desired.<field>`, if it is written here and can be changed in place.
fn locate<'d>(doc: &'d Node, target: &EditTarget<'_>) -> Result<&'d Node, EditError> {
    let not_literal = |why| EditError::NotLiteral { name: target.name.into(), field: target.field.into(), why };
    let unsupported = |why| EditError::Unsupported { name: target.name.into(), field: target.field.into(), why };
    let desired = doc.get("spec").and_then(|s| s.get("desired")).ok_or_else(|| not_literal("no spec.desired map"))?;
    if desired.anchored() || matches!(desired.kind, NodeKind::Alias) {
        return Err(unsupported("inside a map shared through a YAML anchor"));
    }
    let node = desired.get(target.field).ok_or_else(|| not_literal("the field is not in spec.desired"))?;
    match &node.kind {
        NodeKind::Alias => Err(unsupported("a YAML alias")),
        _ if node.anchored() => Err(unsupported("a YAML anchor other values refer to")),
        NodeKind::BlockScalar => Err(unsupported("a block scalar (| or >)")),
        NodeKind::Map { .. } => Err(unsupported("a map")),
        _ => Ok(node),
    }
}

/// The new text for the node's bytes, in the style the node was written in.
fn render(text: &str, node: &Node, value: &Value, target: &EditTarget<'_>) -> Result<String, EditError> {
    let unsupported = |why| EditError::Unsupported { name: target.name.into(), field: target.field.into(), why };
    match (&node.kind, value) {
        (NodeKind::Scalar { quote, .. }, Value::String(s)) => Ok(quoted_like(s, *quote)),
        (NodeKind::Scalar { .. }, Value::Object(_)) => Err(unsupported("to become a map")),
        (NodeKind::Seq { flow: false, .. }, Value::Array(items)) => block_sequence(text, node, items),
        (NodeKind::Seq { flow: false, .. }, _) => Err(unsupported("a block list that would become a scalar")),
        (NodeKind::Seq { flow: true, .. }, Value::Array(items)) => {
            Ok(format!("[{}]", items.iter().map(yaml_scalar).collect::<Vec<_>>().join(", ")))
        }
        (_, other) => Ok(yaml_scalar(other)),
    }
}

/// A string in the node's own quoting where that reads back the same, else
/// double-quoted.
fn quoted_like(s: &str, quote: Option<char>) -> String {
    let printable = !s.chars().any(char::is_control);
    match quote {
        Some('\'') if printable => format!("'{}'", s.replace('\'', "''")),
        Some('"') => Value::String(s.to_owned()).to_string(),
        _ if !needs_quotes(s) => s.to_owned(),
        _ => Value::String(s.to_owned()).to_string(),
    }
}

/// A block list keeps its block form, each item on a line of its own at the
/// indentation (and line ending) of the list it replaces.
fn block_sequence(text: &str, node: &Node, items: &[Value]) -> Result<String, EditError> {
    if items.is_empty() {
        return Ok("[]".into());
    }
    let line_start = text[..node.span.start].rfind('\n').map_or(0, |i| i + 1);
    let indent = &text[line_start..node.span.start];
    let newline = if text.contains("\r\n") { "\r\n" } else { "\n" };
    let items: Vec<String> = items.iter().map(|v| format!("- {}", yaml_scalar(v))).collect();
    Ok(items.join(&format!("{newline}{indent}")))
}

/// Parses both texts and checks that they differ in exactly the one value.
fn verify(before: &str, after: &str, target: &EditTarget<'_>, value: &Value) -> Result<(), EditError> {
    let unsafe_edit = || EditError::Unsafe(target.field.to_owned());
    let old = read_json(before)?;
    let new = read_json(after).map_err(|_| unsafe_edit())?;
    if old.len() != new.len() {
        return Err(unsafe_edit());
    }
    let mut changed = 0;
    for (o, n) in old.iter().zip(&new) {
        if o == n {
            continue;
        }
        let mut expected = o.clone();
        match expected.pointer_mut(&format!("/spec/desired/{}", pointer_escape(target.field))) {
            Some(slot) => *slot = value.clone(),
            None => return Err(unsafe_edit()),
        }
        if &expected != n {
            return Err(unsafe_edit());
        }
        changed += 1;
    }
    if changed > 1 { Err(unsafe_edit()) } else { Ok(()) }
}

fn pointer_escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// Every document of a file as JSON, as a YAML reader sees it.
pub fn read_json(text: &str) -> Result<Vec<Value>, NotYaml> {
    let options = serde_saphyr::options! { with_snippet: false };
    serde_saphyr::from_multiple_with_options(text, options).map_err(|e| NotYaml::said(e.to_string()))
}

/// A text no YAML reader takes, in the reader's words (on one line).
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct NotYaml(String);

impl NotYaml {
    pub(super) fn said(words: String) -> NotYaml {
        NotYaml(words.replace('\n', " "))
    }
}

#[cfg(test)]
mod tests;

/// The value `spec.desired.<field>` of `target` has in this file now.
pub fn current_value(text: &str, target: &EditTarget<'_>) -> Result<Value, EditError> {
    let docs = parse_documents(text)?;
    let matching: Vec<&Node> = docs.iter().filter(|d| is_target(d, target)).collect();
    match matching.as_slice() {
        [] => return Err(not_here(&docs, target)),
        [one] => locate(one, target)?,
        many => return Err(EditError::Ambiguous { name: target.name.to_owned(), count: many.len() }),
    };
    let json = read_json(text)?;
    let is_it = |d: &&Value| {
        d["kind"] == "CloudProvisioned"
            && d["metadata"]["name"] == target.name
            && in_namespace(d["metadata"]["namespace"].as_str(), target)
    };
    let doc = json.iter().find(is_it).ok_or_else(|| EditError::NotHere(target.name.to_owned()))?;
    let pointer = format!("/spec/desired/{}", pointer_escape(target.field));
    Ok(doc.pointer(&pointer).cloned().unwrap_or(Value::Null))
}
