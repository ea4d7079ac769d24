//! Where an object's manifest lives in Git, in this order: the object's own
//! `arcadia.cloud/git-*` annotations; the Flux Kustomization that applied it
//! (and its GitRepository); the Argo CD Application that tracks it. Pure: the
//! Flux and Argo CD objects are read by the caller and passed in as JSON.

use super::git::Remote;
use crate::api::{
    ANNOTATION_GIT_BRANCH, ANNOTATION_GIT_PATH, ANNOTATION_GIT_URL, ARGOCD_TRACKING_ID, FLUX_KUSTOMIZATION_NAMESPACE,
    FLUX_LABELS, FluxVariable, GitCommit,
};
use serde_json::Value;
use std::collections::BTreeMap;

/// Why the object's origin cannot be written back to, in words for
/// `status.git.refused`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    #[error("{ARGOCD_TRACKING_ID} {id:?} names no Application")]
    NoApplication { id: String },
    #[error("the Kustomization's source is a {kind:?}, not a GitRepository")]
    NotAGitRepository { kind: String },
    #[error("the Kustomization's sourceRef has no name")]
    UnnamedSource,
    #[error("the GitRepository has no spec.url")]
    NoUrl,
    #[error("the GitRepository follows a tag or a commit, not a branch: nothing to push to")]
    NotABranch,
    #[error("the Application has no spec.source.repoURL (multi-source Applications are not supported)")]
    NoRepoUrl,
    #[error(
        "the Application's targetRevision is HEAD: name the branch with the arcadia.cloud/git-branch annotation and arcadia.cloud/git-url"
    )]
    HeadRevision,
    /// The Kustomization or Application does not list the object: its labels or tracking id are no proof.
    #[error("{0}")]
    NotVouched(String),
}

/// What the object says about where it comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum Origin {
    /// The object's own annotations.
    Annotated(Remote),
    /// Applied by the Flux Kustomization `namespace/name`.
    Flux { namespace: String, name: String },
    /// Tracked by the Argo CD Application of this name.
    Argo { app: String },
    /// Nothing says: write-back does not happen.
    Unknown,
}

/// Reads the origin from the object's namespace, annotations and labels.
pub fn origin(
    namespace: &str,
    annotations: &BTreeMap<String, String>,
    labels: &BTreeMap<String, String>,
) -> Result<Origin, SourceError> {
    if let Some(url) = annotations.get(ANNOTATION_GIT_URL).filter(|u| !u.trim().is_empty()) {
        let branch = annotations.get(ANNOTATION_GIT_BRANCH).map(|b| b.trim()).filter(|b| !b.is_empty());
        let path = annotations.get(ANNOTATION_GIT_PATH).map(|p| p.trim()).filter(|p| !p.is_empty());
        return Ok(Origin::Annotated(Remote {
            url: url.trim().to_owned(),
            branch: branch.unwrap_or("main").to_owned(),
            path: path.unwrap_or(".").to_owned(),
            default_namespace: None,
        }));
    }
    if let Some(name) = labels.get(FLUX_LABELS[0]) {
        let ns = labels.get(FLUX_KUSTOMIZATION_NAMESPACE).cloned().unwrap_or_else(|| namespace.to_owned());
        return Ok(Origin::Flux { namespace: ns, name: name.clone() });
    }
    if let Some(id) = annotations.get(ARGOCD_TRACKING_ID) {
        // <app>:<group>/<kind>:<namespace>/<name>; <app> is <namespace>_<name> for apps outside argocd's namespace.
        let app = id.split(':').next().filter(|a| !a.is_empty());
        let app = app.ok_or_else(|| SourceError::NoApplication { id: id.clone() })?;
        return Ok(Origin::Argo { app: app.to_owned() });
    }
    Ok(Origin::Unknown)
}

/// The GitRepository a Flux Kustomization reads: `(namespace, name)`.
pub fn flux_source(kustomization: &Value, namespace: &str) -> Result<(String, String), SourceError> {
    let source = &kustomization["spec"]["sourceRef"];
    let kind = source["kind"].as_str().unwrap_or_default();
    if kind != "GitRepository" {
        return Err(SourceError::NotAGitRepository { kind: kind.to_owned() });
    }
    let name = source["name"].as_str().ok_or(SourceError::UnnamedSource)?;
    let ns = source["namespace"].as_str().unwrap_or(namespace);
    Ok((ns.to_owned(), name.to_owned()))
}

/// The remote of a Flux Kustomization and its GitRepository.
pub fn from_flux(kustomization: &Value, repository: &Value) -> Result<Remote, SourceError> {
    let url = repository["spec"]["url"].as_str().ok_or(SourceError::NoUrl)?;
    let reference = &repository["spec"]["ref"];
    let branch = match (reference["branch"].as_str(), reference["name"].as_str()) {
        (Some(branch), _) => branch.to_owned(),
        (None, Some(name)) if name.starts_with("refs/heads/") => name.trim_start_matches("refs/heads/").to_owned(),
        (None, None) if reference.get("tag").is_none() && reference.get("commit").is_none() => "master".to_owned(),
        _ => return Err(SourceError::NotABranch),
    };
    let path = kustomization["spec"]["path"].as_str().unwrap_or("./");
    // Flux puts a document that names no namespace in targetNamespace, else the Kustomization's own.
    let default_namespace = kustomization["spec"]["targetNamespace"]
        .as_str()
        .or(kustomization["metadata"]["namespace"].as_str())
        .map(str::to_owned);
    Ok(Remote { url: url.to_owned(), branch, path: path.to_owned(), default_namespace })
}

/// Where a Flux Kustomization sets `variable`, for a refusal's advice.
pub fn flux_variable(kustomization: &Value, variable: &str) -> String {
    let name = format!(
        "the Kustomization {}/{}",
        kustomization["metadata"]["namespace"].as_str().unwrap_or_default(),
        kustomization["metadata"]["name"].as_str().unwrap_or_default()
    );
    let Some(post_build) = kustomization["spec"].get("postBuild") else {
        // Flux substitutes only where a postBuild is given.
        return format!(
            "{name} has no postBuild, so Flux substitutes nothing: set the variable in its postBuild.substitute, not the manifest"
        );
    };
    if let Some(value) = post_build["substitute"][variable].as_str() {
        return format!(
            "{name} sets it in postBuild.substitute ({variable}: {value}): change the variable there, not the manifest"
        );
    }
    let from: Vec<String> = post_build["substituteFrom"]
        .as_array()
        .map(|all| {
            all.iter()
                .map(|s| format!("{} {}", s["kind"].as_str().unwrap_or("?"), s["name"].as_str().unwrap_or("?")))
                .collect()
        })
        .unwrap_or_default();
    if from.is_empty() {
        return format!(
            "no postBuild of {name} sets it, so its default in the manifest applies: set the variable in postBuild.substitute, not the manifest"
        );
    }
    format!(
        "{name} takes it from postBuild.substituteFrom ({}): change the variable there, not the manifest",
        from.join(", ")
    )
}

/// How a substitution refusal names its variable; read back only from records
/// written before `status.git.fluxVariable` (schema version 9).
const SUBSTITUTION: &str = " is the Flux substitution ${";
const NOT_A_VALUE: &str = "}, not a value; nothing was pushed; ";

/// The refusal of a field whose text in Git is the Flux substitution
/// `${variable}`, and the variable: it holds the value, so the advice says
/// where it is set (by `kustomization`, when the origin is a Flux one).
pub fn substitution_refusal(
    path: &str,
    field: &str,
    variable: &str,
    kustomization: Option<&Value>,
) -> (String, FluxVariable) {
    let set_in = match kustomization {
        Some(ks) => flux_variable(ks, variable),
        None => "the Flux Kustomization that applies this file sets it (postBuild.substitute or substituteFrom): change the variable there, not the manifest".to_owned(),
    };
    let why = format!("spec.desired.{field} in {path}{SUBSTITUTION}{variable}{NOT_A_VALUE}{set_in}");
    (why, FluxVariable { name: variable.to_owned(), set_in })
}

/// The Flux variable of a refused write-back: recorded since schema version 9;
/// read back from the refusal's words on a record written before, so that an
/// upgrade loses no advice.
pub fn refused_flux_variable(record: &GitCommit) -> Option<FluxVariable> {
    if record.flux_variable.is_some() {
        return record.flux_variable.clone();
    }
    // Only a refusal about a field's text: other refusals may quote a tenant's words.
    let refused = record.refused.as_deref()?.strip_prefix("write-back refused: spec.desired.")?;
    let (_, rest) = refused.split_once(SUBSTITUTION)?;
    let (name, set_in) = rest.split_once(NOT_A_VALUE)?;
    Some(FluxVariable { name: name.to_owned(), set_in: set_in.to_owned() })
}

/// The Secret (in the GitRepository's namespace) Flux itself reads the repository with.
pub fn flux_secret(repository: &Value) -> Option<(String, String)> {
    let name = repository["spec"]["secretRef"]["name"].as_str().filter(|n| !n.is_empty())?;
    let namespace = repository["metadata"]["namespace"].as_str()?;
    Some((namespace.to_owned(), name.to_owned()))
}

/// Labels anyone may set are no proof: a Kustomization vouches for an object
/// only when its `status.inventory` lists it.
pub fn flux_vouches(kustomization: &Value, namespace: &str, name: &str) -> Result<(), SourceError> {
    let id = format!("{namespace}_{name}_{}_CloudProvisioned", crate::api::GROUP);
    let entries = kustomization["status"]["inventory"]["entries"].as_array();
    if entries.is_some_and(|all| all.iter().any(|e| e["id"].as_str() == Some(id.as_str()))) {
        return Ok(());
    }
    Err(SourceError::NotVouched(format!(
        "the Flux Kustomization {}/{} does not list this object in status.inventory (no entry {id}): its labels are no proof that Flux applies it",
        kustomization["metadata"]["namespace"].as_str().unwrap_or_default(),
        kustomization["metadata"]["name"].as_str().unwrap_or_default(),
    )))
}

/// As [`flux_vouches`], from an Argo CD Application's `status.resources`.
pub fn argo_vouches(app: &Value, namespace: &str, name: &str) -> Result<(), SourceError> {
    let listed = app["status"]["resources"].as_array().is_some_and(|all| {
        all.iter().any(|r| {
            r["group"].as_str() == Some(crate::api::GROUP)
                && r["kind"].as_str() == Some("CloudProvisioned")
                && r["namespace"].as_str() == Some(namespace)
                && r["name"].as_str() == Some(name)
        })
    });
    if listed {
        return Ok(());
    }
    Err(SourceError::NotVouched(format!(
        "the Argo CD Application {}/{} does not list CloudProvisioned {namespace}/{name} in status.resources: its tracking id is no proof that Argo CD applies it",
        app["metadata"]["namespace"].as_str().unwrap_or_default(),
        app["metadata"]["name"].as_str().unwrap_or_default(),
    )))
}

/// The remote of an Argo CD Application (its single source).
pub fn from_argo(app: &Value) -> Result<Remote, SourceError> {
    let source = &app["spec"]["source"];
    let url = source["repoURL"].as_str().ok_or(SourceError::NoRepoUrl)?;
    let revision = source["targetRevision"].as_str().unwrap_or("HEAD");
    if revision.is_empty() || revision == "HEAD" {
        return Err(SourceError::HeadRevision);
    }
    let path = source["path"].as_str().unwrap_or(".");
    let default_namespace = app["spec"]["destination"]["namespace"].as_str().map(str::to_owned);
    Ok(Remote { url: url.to_owned(), branch: revision.to_owned(), path: path.to_owned(), default_namespace })
}

/// The Application's name and namespace from the tracking id's app part.
pub fn argo_app(app: &str, argocd_namespace: &str) -> (String, String) {
    match app.split_once('_') {
        Some((ns, name)) => (ns.to_owned(), name.to_owned()),
        None => (argocd_namespace.to_owned(), app.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn annotations_win_then_flux_then_argo() {
        let a = map(&[(ANNOTATION_GIT_URL, "https://git.example/infra.git"), (ANNOTATION_GIT_PATH, "apps/web.yaml")]);
        let flux = map(&[(FLUX_LABELS[0], "infra"), (FLUX_KUSTOMIZATION_NAMESPACE, "flux-system")]);
        assert_eq!(
            origin("team-a", &a, &flux),
            Ok(Origin::Annotated(Remote {
                url: "https://git.example/infra.git".into(),
                branch: "main".into(),
                path: "apps/web.yaml".into(),
                default_namespace: None,
            }))
        );
        assert_eq!(
            origin("team-a", &map(&[]), &flux),
            Ok(Origin::Flux { namespace: "flux-system".into(), name: "infra".into() })
        );
        let argo = map(&[(ARGOCD_TRACKING_ID, "apps_web:arcadia.cloud/CloudProvisioned:team-a/web-1")]);
        assert_eq!(origin("team-a", &argo, &map(&[])), Ok(Origin::Argo { app: "apps_web".into() }));
        assert_eq!(argo_app("apps_web", "argocd"), ("apps".into(), "web".into()));
        assert_eq!(argo_app("web", "argocd"), ("argocd".into(), "web".into()));
        assert_eq!(origin("team-a", &map(&[]), &map(&[])), Ok(Origin::Unknown));
    }

    #[test]
    fn a_gitops_tool_vouches_only_for_what_its_inventory_lists() {
        let ks = json!({
            "metadata": {"namespace": "flux-system", "name": "infra"},
            "spec": {"path": "./apps", "targetNamespace": "team-a", "sourceRef": {"kind": "GitRepository", "name": "infra"}},
            "status": {"inventory": {"entries": [{"id": "team-a_web-1_arcadia.cloud_CloudProvisioned", "v": "v1alpha1"}]}},
        });
        assert_eq!(flux_vouches(&ks, "team-a", "web-1"), Ok(()));
        let error = flux_vouches(&ks, "team-b", "web-1").unwrap_err().to_string();
        assert!(error.contains("Kustomization flux-system/infra does not list this object in status.inventory (no entry team-b_web-1_arcadia.cloud_CloudProvisioned)"), "{error}");
        let repo = json!({"metadata": {"namespace": "flux-system"}, "spec": {"url": "u", "ref": {"branch": "main"}, "secretRef": {"name": "flux-git"}}});
        assert_eq!(from_flux(&ks, &repo).unwrap().default_namespace.as_deref(), Some("team-a"));
        assert_eq!(flux_secret(&repo), Some(("flux-system".into(), "flux-git".into())));

        let app = json!({
            "metadata": {"namespace": "argocd", "name": "web"},
            "spec": {"source": {"repoURL": "u", "targetRevision": "main"}, "destination": {"namespace": "team-a"}},
            "status": {"resources": [{"group": "arcadia.cloud", "kind": "CloudProvisioned", "namespace": "team-a", "name": "web-1"}]},
        });
        assert_eq!(argo_vouches(&app, "team-a", "web-1"), Ok(()));
        assert!(
            argo_vouches(&app, "team-a", "web-2")
                .unwrap_err()
                .to_string()
                .contains("does not list CloudProvisioned team-a/web-2")
        );
        assert_eq!(from_argo(&app).unwrap().default_namespace.as_deref(), Some("team-a"));
    }

    #[test]
    fn flux_and_argo_objects_give_url_branch_and_path() {
        let ks = json!({"spec": {"path": "./apps", "sourceRef": {"kind": "GitRepository", "name": "infra"}}});
        assert_eq!(flux_source(&ks, "flux-system"), Ok(("flux-system".into(), "infra".into())));
        let repo = json!({"spec": {"url": "https://git.example/infra.git", "ref": {"branch": "prod"}}});
        assert_eq!(
            from_flux(&ks, &repo).unwrap(),
            Remote {
                url: "https://git.example/infra.git".into(),
                branch: "prod".into(),
                path: "./apps".into(),
                default_namespace: None,
            }
        );
        let tagged = json!({"spec": {"url": "u", "ref": {"tag": "v1"}}});
        assert_eq!(from_flux(&ks, &tagged), Err(SourceError::NotABranch));
        let oci = json!({"spec": {"sourceRef": {"kind": "OCIRepository", "name": "x"}}});
        assert!(flux_source(&oci, "ns").is_err());
        let app = json!({"spec": {"source": {"repoURL": "https://git.example/infra.git", "targetRevision": "main", "path": "apps"}}});
        assert_eq!(from_argo(&app).unwrap().path, "apps");
        let head = json!({"spec": {"source": {"repoURL": "u", "targetRevision": "HEAD"}}});
        assert_eq!(from_argo(&head), Err(SourceError::HeadRevision));
    }

    #[test]
    fn a_substitution_refusal_says_where_the_variable_is_set() {
        let ks = |spec: Value| json!({"metadata": {"namespace": "flux-system", "name": "infra"}, "spec": spec});
        let set = ks(json!({"postBuild": {"substitute": {"WEB5_SIZE": "s-1vcpu-1gb"}}}));
        assert_eq!(
            flux_variable(&set, "WEB5_SIZE"),
            "the Kustomization flux-system/infra sets it in postBuild.substitute (WEB5_SIZE: s-1vcpu-1gb): change the variable there, not the manifest"
        );
        let from = ks(json!({"postBuild": {"substitute": {"OTHER": "x"}, "substituteFrom": [
            {"kind": "ConfigMap", "name": "cluster-vars"}, {"kind": "Secret", "name": "cluster-secrets"}]}}));
        assert_eq!(
            flux_variable(&from, "WEB5_SIZE"),
            "the Kustomization flux-system/infra takes it from postBuild.substituteFrom (ConfigMap cluster-vars, Secret cluster-secrets): change the variable there, not the manifest"
        );
        let none = ks(json!({"path": "./apps"}));
        assert_eq!(
            flux_variable(&none, "WEB5_SIZE"),
            "the Kustomization flux-system/infra has no postBuild, so Flux substitutes nothing: set the variable in its postBuild.substitute, not the manifest"
        );
        let unset = ks(json!({"postBuild": {"substitute": {"OTHER": "x"}}}));
        assert!(flux_variable(&unset, "WEB5_SIZE").starts_with(
            "no postBuild of the Kustomization flux-system/infra sets it, so its default in the manifest applies"
        ));

        // The refusal names the variable and the advice, and records both.
        let (refused, variable) = substitution_refusal("apps/web.yaml", "size_slug", "WEB5_SIZE", Some(&from));
        let set_in = flux_variable(&from, "WEB5_SIZE");
        assert_eq!(
            refused,
            format!(
                "spec.desired.size_slug in apps/web.yaml is the Flux substitution ${{WEB5_SIZE}}, not a value; nothing was pushed; {set_in}"
            )
        );
        assert_eq!(variable, FluxVariable { name: "WEB5_SIZE".into(), set_in: set_in.clone() });
        let (_, annotated) = substitution_refusal("web.yaml", "size_slug", "SIZE", None);
        assert!(annotated.set_in.starts_with("the Flux Kustomization that applies this file sets it"));

        // A record written before schema version 9 has only the words: read back, they give the same.
        let record = |refused: &str, flux_variable: Option<FluxVariable>| GitCommit {
            url: String::new(),
            branch: String::new(),
            commit: String::new(),
            refused: Some(format!("write-back refused: {refused}")),
            path: String::new(),
            pushed_time: crate::api::now(),
            flux_variable,
        };
        assert_eq!(refused_flux_variable(&record(&refused, None)), Some(variable.clone()));
        assert_eq!(refused_flux_variable(&record("other words", Some(variable.clone()))), Some(variable));
        let other = record("https://x.example/a.git is not in --git-allowed-remotes", None);
        assert_eq!(refused_flux_variable(&other), None);
        // Words that only quote the pattern (a tenant's path, say) are not read as one.
        let quoted = record("the path x is the Flux substitution ${X}, not a value; nothing was pushed; y", None);
        assert_eq!(refused_flux_variable(&quoted), None);
    }
}
