//! The CRD YAML committed under crds/ is exactly what the code generates.
//! Regenerate with: cargo run -- crds > crds/arcadia.cloud.yaml (and copy it to charts/arcadia-drift/files/crds.yaml)

#[test]
fn committed_crds_match_the_code() {
    let generated = arcadia_drift::api::crds_yaml().expect("render CRDs");
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("crds/arcadia.cloud.yaml");
    let committed = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    assert!(
        generated == committed,
        "crds/arcadia.cloud.yaml differs from the Rust types; regenerate it with\n  cargo run -- crds > crds/arcadia.cloud.yaml"
    );
}

#[test]
fn a_schema_change_comes_with_a_new_schema_version() {
    use arcadia_drift::api::{SCHEMA_FINGERPRINT, SCHEMA_VERSION, schema_fingerprint};
    let now = schema_fingerprint();
    assert_eq!(
        now, SCHEMA_FINGERPRINT,
        "the CRD schemas changed: bump api::SCHEMA_VERSION (now {SCHEMA_VERSION}) and set api::SCHEMA_FINGERPRINT to {now:?}"
    );
    for crd in arcadia_drift::api::crds() {
        let marked = crd.metadata.annotations.unwrap_or_default().get("arcadia.cloud/schema-version").cloned();
        assert_eq!(marked, Some(SCHEMA_VERSION.to_string()));
    }
}

#[test]
fn crd_names_follow_the_contract() {
    let names: Vec<_> = arcadia_drift::api::crds()
        .into_iter()
        .map(|c| {
            let n = c.spec.names;
            (c.spec.scope, n.kind, n.plural, n.singular.unwrap_or_default(), n.short_names.unwrap_or_default())
        })
        .collect();
    let s = |v: &str| v.to_string();
    assert_eq!(
        names,
        [
            (s("Cluster"), s("CloudResource"), s("cloudresources"), s("cloudresource"), vec![s("cres")]),
            (s("Namespaced"), s("CloudProvisioned"), s("cloudprovisioneds"), s("cloudprovisioned"), vec![s("cprov")]),
            (s("Namespaced"), s("Drift"), s("drifts"), s("drift"), vec![s("dft")]),
            (s("Cluster"), s("DriftPolicy"), s("driftpolicies"), s("driftpolicy"), vec![s("dpol")]),
        ]
    );
}
