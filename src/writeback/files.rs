//! Which file of a checkout to change, decided from the files' texts. Pure.

use super::commit::Change;
use super::edit::{self, EditError, EditTarget};
use crate::detect::{loosely_equal, render_value};
use serde_json::Value;

/// What to do with a checkout for one change.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// Write `text` to `path`.
    Edit { path: String, text: String },
    /// The file already holds the accepted value: nothing to commit.
    AlreadyInGit { path: String },
    /// Git's value changed since the accept: nothing is pushed.
    GitChanged { path: String, now: Value },
    /// Git's text is a Flux `${VAR}` substitution: the variable holds the value, not the file.
    Substituted { path: String, variable: String },
    /// No file can be changed safely; the reason names the files searched.
    NotWritable(String),
}

/// Decides over `(path, text)` of every manifest under the searched folder;
/// `listed` names every file read (kustomization files too), for the message.
pub fn decide(
    files: &[(String, String)],
    listed: &[String],
    change: &Change,
    searched: &str,
    default_namespace: Option<&str>,
) -> Decision {
    let target =
        EditTarget { name: &change.name, namespace: &change.namespace, default_namespace, field: &change.field };
    let mut found: Vec<(&str, &str, Result<Value, EditError>)> = Vec::new();
    let mut unreadable = Vec::new();
    for (path, text) in files {
        match edit::current_value(text, &target) {
            Err(EditError::NotHere(_)) => {}
            Err(EditError::Yaml(_)) => unreadable.push(path.as_str()),
            other => found.push((path, text, other)),
        }
    }
    // A namespace-less document of the name is another object, unless no
    // document names this one: then it is why nothing was found.
    if found.iter().any(|(_, _, r)| !matches!(r, Err(EditError::NamespaceRequired { .. }))) {
        found.retain(|(_, _, r)| !matches!(r, Err(EditError::NamespaceRequired { .. })));
    }
    let object = format!("CloudProvisioned {}/{}", change.namespace, change.name);
    let (path, text, current) = match found.as_slice() {
        [] => return Decision::NotWritable(not_found(&object, searched, listed, &unreadable)),
        [one] => one,
        many => {
            let paths: Vec<&str> = many.iter().map(|(p, _, _)| *p).collect();
            return Decision::NotWritable(format!(
                "{object} is in {} files ({}), e.g. a base and a patch: left for a person to change",
                paths.len(),
                paths.join(", ")
            ));
        }
    };
    let path = path.to_string();
    match current {
        Err(error) => Decision::NotWritable(format!("{path}: {error}")),
        Ok(now) if substitution(now).is_some() => {
            Decision::Substituted { path, variable: substitution(now).unwrap_or_default().to_owned() }
        }
        Ok(now) if loosely_equal(now, &change.value) => Decision::AlreadyInGit { path },
        Ok(now) if !loosely_equal(now, &change.spec_value) => Decision::GitChanged { path, now: now.clone() },
        Ok(_) => match edit::edit(text, &target, &change.value) {
            Ok(text) => Decision::Edit { path, text },
            Err(error) => Decision::NotWritable(format!("{path}: {error}")),
        },
    }
}

/// The variable of a Flux post-build substitution (`${VAR}`, `${VAR:=default}`) in `value`.
pub fn substitution(value: &Value) -> Option<&str> {
    let text = value.as_str()?;
    let start = text.find("${")? + 2;
    let end = start + text[start..].find('}')?;
    let name = text[start..end].split([':', '=']).next()?;
    let valid = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    valid.then_some(name)
}

fn not_found(object: &str, searched: &str, listed: &[String], unreadable: &[&str]) -> String {
    let count = listed.len();
    let mut message = format!(
        "{object} is not written in a plain manifest under {searched:?} ({count} YAML file{} searched",
        if count == 1 { "" } else { "s" }
    );
    if count > 0 {
        message.push_str(&format!(": {}", shortened(listed)));
    }
    if !unreadable.is_empty() {
        let shown: Vec<&str> = unreadable.iter().take(5).copied().collect();
        message.push_str(&format!("; not plain YAML, e.g. templates: {}", shown.join(", ")));
    }
    message.push_str("); it may come from a kustomize patch, a Helm chart or generated files");
    message
}

/// The first five names, and how many more.
fn shortened(names: &[String]) -> String {
    let shown: Vec<&str> = names.iter().take(5).map(String::as_str).collect();
    match names.len() - shown.len() {
        0 => shown.join(", "),
        more => format!("{} and {more} more", shown.join(", ")),
    }
}

/// How a decision reads in a Drift's message.
pub fn describe_git_change(path: &str, now: &Value, change: &Change) -> String {
    format!(
        "Git's spec.desired.{} in {path} is now {} (it was {} when the value {} was accepted); nothing was pushed",
        change.field,
        render_value(now),
        render_value(&change.spec_value),
        render_value(&change.value)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn change() -> Change {
        Change { value: json!("s-2"), spec_value: json!("s-1"), ..crate::writeback::commit::tests::change() }
    }

    const TEMPLATE: &str = "{{- if .Values.enabled }}\nkind: CloudProvisioned\n{{- end }}\n";

    fn doc(size: &str) -> String {
        format!("kind: CloudProvisioned\nmetadata: {{name: web-1}}\nspec:\n  desired: {{size_slug: {size}}}\n")
    }

    fn files(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(p, t)| (p.to_string(), t.to_string())).collect()
    }

    /// Decides with every file given listed as searched.
    fn decide(files: &[(String, String)], change: &Change, searched: &str, ns: Option<&str>) -> Decision {
        let listed: Vec<String> = files.iter().map(|(p, _)| p.clone()).collect();
        super::decide(files, &listed, change, searched, ns)
    }

    #[test]
    fn the_one_file_holding_the_object_is_edited() {
        let fs = files(&[("other.yaml", "kind: ConfigMap\n"), ("web.yaml", &doc("s-1")), ("chart.yaml", TEMPLATE)]);
        assert_eq!(decide(&fs, &change(), "apps", None), Decision::Edit { path: "web.yaml".into(), text: doc("s-2") });
    }

    /// Where a document must name the namespace, another tenant's
    /// namespace-less document of the same name is passed over when this
    /// object's own document is found, and said when it is all there is.
    #[test]
    fn a_namespace_less_namesake_is_passed_over_beside_the_objects_own_document() {
        let ns = change().namespace;
        let own = doc("s-1").replace("metadata: {name: web-1}", &format!("metadata: {{name: web-1, namespace: {ns}}}"));
        let required = Some(crate::writeback::edit::NAMESPACE_REQUIRED);
        let fs = files(&[("a.yaml", &own), ("b.yaml", &doc("s-1"))]);
        let Decision::Edit { path, .. } = decide(&fs, &change(), "apps", required) else { panic!("not edited") };
        assert_eq!(path, "a.yaml");
        let Decision::NotWritable(why) = decide(&files(&[("b.yaml", &doc("s-1"))]), &change(), "apps", required) else {
            panic!("edited a namespace-less document")
        };
        assert!(why.contains("names no namespace"), "{why}");
    }

    #[test]
    fn already_in_git_changed_in_git_or_nowhere() {
        assert_eq!(
            decide(&files(&[("web.yaml", &doc("s-2"))]), &change(), "apps", None),
            Decision::AlreadyInGit { path: "web.yaml".into() }
        );
        assert_eq!(
            decide(&files(&[("web.yaml", &doc("s-9"))]), &change(), "apps", None),
            Decision::GitChanged { path: "web.yaml".into(), now: json!("s-9") }
        );
        let Decision::NotWritable(why) = decide(&files(&[("t.yaml", TEMPLATE)]), &change(), "apps", None) else {
            panic!()
        };
        assert!(why.contains("not written in a plain manifest under \"apps\" (1 YAML file searched: t.yaml; not plain YAML, e.g. templates: t.yaml)"), "{why}");
    }

    #[test]
    fn a_flux_substitution_is_never_mistaken_for_a_change_in_git() {
        let text = "kind: CloudProvisioned\nmetadata: {name: web-1}\nspec:\n  desired:\n    size_slug: ${WEB5_SIZE}\n";
        assert_eq!(
            decide(&files(&[("web.yaml", text)]), &change(), "apps", None),
            Decision::Substituted { path: "web.yaml".into(), variable: "WEB5_SIZE".into() }
        );
        assert_eq!(substitution(&json!("${SIZE:=s-1vcpu-1gb}")), Some("SIZE"));
        assert_eq!(substitution(&json!("s-1vcpu-1gb")), None);
        assert_eq!(substitution(&json!("${}")), None);
    }

    #[test]
    fn a_base_and_a_patch_are_left_alone() {
        let patch = "kind: CloudProvisioned\nmetadata: {name: web-1}\nspec:\n  desired: {region: ams3}\n";
        let Decision::NotWritable(why) =
            decide(&files(&[("base.yaml", &doc("s-1")), ("patch.yaml", patch)]), &change(), ".", None)
        else {
            panic!()
        };
        assert!(why.contains("is in 2 files (base.yaml, patch.yaml)"), "{why}");
    }
}
