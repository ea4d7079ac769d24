//! Reading CloudProvisioned and CloudResource manifests from multi-document
//! YAML (or JSON), as `kubectl get -o yaml` or a GitOps repository holds them.
//! YAML is parsed with serde-saphyr (serde_yaml is unmaintained).

use crate::api::{CloudProvisioned, CloudResource, DriftPolicy, GROUP, VERSION};
use serde_json::Value;
use std::path::Path;

/// One object read from a manifest file.
#[derive(Clone, Debug)]
pub enum Manifest {
    Provisioned(CloudProvisioned),
    Resource(CloudResource),
    Policy(DriftPolicy),
}

/// What went wrong reading a manifest; every message names the file and,
/// where there is one, the document (1-based) and the object.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{path}: cannot read the file: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}: not valid YAML: {message}")]
    Yaml { path: String, message: String },
    #[error("{path}: document {doc}: expected a Kubernetes object (a mapping with apiVersion and kind), found {found}")]
    NotAnObject { path: String, doc: usize, found: &'static str },
    #[error(
        "{path}: document {doc}: unsupported kind {kind:?} of apiVersion {api_version:?}; expected CloudProvisioned, CloudResource or DriftPolicy of {GROUP}/{VERSION}"
    )]
    UnknownKind { path: String, doc: usize, api_version: String, kind: String },
    #[error("{path}: document {doc}: {kind} {name:?}: {message}")]
    Invalid { path: String, doc: usize, kind: String, name: String, message: String },
}

/// Reads every CloudProvisioned and CloudResource in a file. `List` documents
/// (as `kubectl get -o yaml` prints them) are flattened; empty documents are ignored.
pub fn read_file(path: &Path) -> Result<Vec<Manifest>, ManifestError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| ManifestError::Read { path: path.display().to_string(), source })?;
    parse(&text, &path.display().to_string())
}

/// Parses manifests from text; `origin` names the source in errors.
pub fn parse(text: &str, origin: &str) -> Result<Vec<Manifest>, ManifestError> {
    let options = serde_saphyr::options! { with_snippet: false };
    let docs: Vec<Value> = serde_saphyr::from_multiple_with_options(text, options)
        .map_err(|e| ManifestError::Yaml { path: origin.to_owned(), message: one_line(&e.to_string()) })?;
    let mut out = Vec::new();
    for (i, mut doc) in docs.into_iter().enumerate() {
        let doc_no = i + 1;
        match doc {
            Value::Null => continue,
            Value::Object(_) => {}
            other => {
                return Err(ManifestError::NotAnObject { path: origin.into(), doc: doc_no, found: json_type(&other) });
            }
        }
        if is_list(&doc) {
            let items = match doc.get_mut("items").map(Value::take) {
                Some(Value::Array(items)) => items,
                Some(Value::Null) | None => Vec::new(),
                Some(other) => {
                    return Err(ManifestError::NotAnObject {
                        path: origin.into(),
                        doc: doc_no,
                        found: json_type(&other),
                    });
                }
            };
            for item in items {
                out.push(object(item, origin, doc_no)?);
            }
        } else {
            out.push(object(doc, origin, doc_no)?);
        }
    }
    Ok(out)
}

fn is_list(doc: &Value) -> bool {
    let kind = doc.get("kind").and_then(Value::as_str).unwrap_or_default();
    kind == "List" || (kind.ends_with("List") && doc.get("items").is_some())
}

fn object(doc: Value, origin: &str, doc_no: usize) -> Result<Manifest, ManifestError> {
    if !doc.is_object() {
        return Err(ManifestError::NotAnObject { path: origin.into(), doc: doc_no, found: json_type(&doc) });
    }
    let text = |key: &str| doc.get(key).and_then(Value::as_str).unwrap_or_default().to_owned();
    let (api_version, kind) = (text("apiVersion"), text("kind"));
    let name = doc.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_owned();
    let invalid = |message: String| ManifestError::Invalid {
        path: origin.into(),
        doc: doc_no,
        kind: kind.clone(),
        name: name.clone(),
        message,
    };
    if api_version != format!("{GROUP}/{VERSION}") {
        return Err(ManifestError::UnknownKind { path: origin.into(), doc: doc_no, api_version, kind });
    }
    let manifest = match kind.as_str() {
        "CloudProvisioned" => serde_json::from_value(doc).map(Manifest::Provisioned),
        "CloudResource" => serde_json::from_value(doc).map(Manifest::Resource),
        "DriftPolicy" => serde_json::from_value(doc).map(Manifest::Policy),
        _ => {
            return Err(ManifestError::UnknownKind { path: origin.into(), doc: doc_no, api_version, kind });
        }
    }
    .map_err(|e| invalid(e.to_string()))?;
    if name.is_empty() {
        return Err(invalid("metadata.name is required".into()));
    }
    Ok(manifest)
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "an empty document",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// Error texts from parsers can span lines; a CLI error is one line.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
---
apiVersion: arcadia.cloud/v1alpha1
kind: CloudResource
metadata: {name: digitalocean-droplet-1}
spec: {provider: digitalocean, type: droplet, id: "1"}
status: {sizeSlug: s-1vcpu-1gb, tags: [a]}
---
apiVersion: arcadia.cloud/v1alpha1
kind: CloudProvisioned
metadata: {name: web-1, namespace: team-a}
spec:
  resourceRef: {name: digitalocean-droplet-1}
  desired: {size_slug: s-1vcpu-1gb, vcpus: 2}
"#;

    #[test]
    fn reads_both_kinds_from_one_stream() {
        let all = parse(GOOD, "good.yaml").unwrap();
        assert!(matches!(&all[0], Manifest::Resource(r) if r.spec.id == "1"));
        assert!(
            matches!(&all[1], Manifest::Provisioned(p) if p.spec.desired.get("vcpus") == Some(serde_json::json!(2)))
        );
    }

    #[test]
    fn flattens_lists() {
        let list = r#"
apiVersion: v1
kind: List
items:
- apiVersion: arcadia.cloud/v1alpha1
  kind: CloudResource
  metadata: {name: r}
  spec: {provider: p, type: t, id: "1"}
"#;
        assert_eq!(parse(list, "l.yaml").unwrap().len(), 1);
    }

    #[test]
    fn unknown_kind_names_file_document_and_kind() {
        let text = "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n";
        let err = parse(text, "x.yaml").unwrap_err().to_string();
        assert_eq!(
            err,
            "x.yaml: document 1: unsupported kind \"ConfigMap\" of apiVersion \"v1\"; expected CloudProvisioned, CloudResource or DriftPolicy of arcadia.cloud/v1alpha1"
        );
    }

    #[test]
    fn malformed_yaml_is_one_line_naming_the_file() {
        let err = parse("a: [1, 2\nb: {", "bad.yaml").unwrap_err().to_string();
        assert!(err.starts_with("bad.yaml: not valid YAML: "), "{err}");
        assert!(!err.contains('\n'), "{err}");
    }

    #[test]
    fn malformed_spec_names_the_object() {
        let text = "apiVersion: arcadia.cloud/v1alpha1\nkind: CloudProvisioned\nmetadata: {name: web-1}\nspec: {desired: {a: 1}}\n";
        let err = parse(text, "p.yaml").unwrap_err().to_string();
        assert!(
            err.starts_with("p.yaml: document 1: CloudProvisioned \"web-1\": missing field `resourceRef`"),
            "{err}"
        );
    }

    #[test]
    fn a_scalar_document_is_rejected() {
        let err = parse("just text", "s.yaml").unwrap_err().to_string();
        assert!(err.contains("found a string"), "{err}");
    }

    #[test]
    fn empty_documents_are_ignored() {
        assert!(parse("---\n---\n", "e.yaml").unwrap().is_empty());
    }
}
