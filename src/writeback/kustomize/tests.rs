use super::*;
use crate::writeback::commit::tests::change;

const WEB: &str =
    "kind: CloudProvisioned\nmetadata: {name: web-1, namespace: team-a}\nspec:\n  desired: {size_slug: s-1vcpu-1gb}\n";
const SMP: &str = "kind: CloudProvisioned\nmetadata: {name: web-1}\nspec:\n  desired: {size_slug: s-8vcpu-16gb}\n";

fn blobs(files: &[(&str, &str)]) -> Vec<Blob> {
    let blob = |(path, text): &(&str, &str)| Blob {
        path: path.to_string(),
        mode: "100644".into(),
        oid: format!("oid-{path}"),
        size: text.len() as u64,
    };
    files.iter().map(blob).collect()
}

/// The walk as git.rs runs it, with `files` as the repository; also the rounds it took.
fn walk_with(files: &[(&str, &str)], root: &str, limits: Limits) -> Result<(Plan, usize), TreeError> {
    let mut walk = Walk::new(blobs(files), root, limits)?;
    for round in 0.. {
        let next = walk.to_read()?;
        if next.is_empty() {
            return Ok((walk.finish(), round));
        }
        let texts = next
            .iter()
            .filter_map(|b| files.iter().find(|(p, _)| *p == b.path))
            .map(|(p, t)| (p.to_string(), t.to_string()))
            .collect();
        walk.feed(texts)?;
    }
    unreachable!()
}

fn walk(files: &[(&str, &str)], root: &str) -> Plan {
    walk_with(files, root, Limits::default()).unwrap().0
}

fn manifests(plan: &Plan) -> Vec<&str> {
    plan.manifests.iter().map(|b| b.path.as_str()).collect()
}

fn overlay(kustomization: &str) -> Vec<(&'static str, String)> {
    vec![
        ("fleet/production/kustomization.yaml", kustomization.to_owned()),
        ("fleet/base/kustomization.yaml", "resources: [web.yaml]\n".to_owned()),
        ("fleet/base/web.yaml", WEB.to_owned()),
        ("fleet/base/unused.yaml", "kind: ConfigMap\n".to_owned()),
    ]
}

fn refusal(kustomization: &str) -> Option<String> {
    let files = overlay(kustomization);
    let files: Vec<(&str, &str)> = files.iter().map(|(p, t)| (*p, t.as_str())).collect();
    touching(&walk(&files, "fleet/production"), &change())
}

#[test]
fn an_overlay_is_followed_into_its_base_and_only_the_listed_files_are_read() {
    let files = overlay("resources: [../base]\n");
    let files: Vec<(&str, &str)> = files.iter().map(|(p, t)| (*p, t.as_str())).collect();
    let (plan, rounds) = walk_with(&files, "fleet/production", Limits::default()).unwrap();
    assert_eq!(manifests(&plan), ["fleet/base/web.yaml"]);
    assert_eq!(
        plan.searched,
        ["fleet/production/kustomization.yaml", "fleet/base/kustomization.yaml", "fleet/base/web.yaml"]
    );
    assert_eq!(rounds, 2, "one round per level of kustomizations");
    assert_eq!(touching(&plan, &change()), None);
}

#[test]
fn without_a_kustomization_file_every_yaml_file_under_the_path_is_read() {
    let plan = walk(&[("apps/web.yaml", WEB), ("apps/x/other.yml", "a: b\n"), ("base/w.yaml", WEB)], "apps");
    assert_eq!(manifests(&plan), ["apps/web.yaml", "apps/x/other.yml"]);
    assert_eq!(plan.searched, ["apps/web.yaml", "apps/x/other.yml"]);
    assert!(is_kustomized(&blobs(&[("apps/Kustomization", "")]), "apps"));
    assert!(!is_kustomized(&blobs(&[("apps/x/kustomization.yaml", "")]), "apps"));
}

#[test]
fn components_and_the_other_kustomization_names_are_followed() {
    let plan = walk(
        &[
            ("app/kustomization.yml", "resources: [./web.yaml]\ncomponents: [../comp]\n"),
            ("app/web.yaml", WEB),
            ("comp/Kustomization", "kind: Component\nresources: [extra.yaml]\n"),
            ("comp/extra.yaml", "kind: ConfigMap\n"),
        ],
        "app",
    );
    assert_eq!(manifests(&plan), ["app/web.yaml", "comp/extra.yaml"]);
}

#[test]
fn remote_escaping_missing_and_plain_folders_are_passed_over_with_the_reason() {
    let kustomization = "resources:\n- https://example.invalid/x.yaml\n- github.com/org/repo/deploy?ref=v1\n- ../../../etc\n- missing.yaml\n- plain\n- web.yaml\n";
    let plan = walk(&[("a/kustomization.yaml", kustomization), ("a/web.yaml", WEB), ("a/plain/x.yaml", WEB)], "a");
    assert_eq!(manifests(&plan), ["a/web.yaml"]);
    assert_eq!(
        plan.passed_over,
        [
            ("https://example.invalid/x.yaml".to_owned(), "a remote resource, not followed"),
            ("github.com/org/repo/deploy?ref=v1".to_owned(), "a remote resource, not followed"),
            ("a/../../../etc".to_owned(), "outside the repository, not followed"),
            ("a/missing.yaml".to_owned(), "not in the repository"),
            ("a/plain".to_owned(), "a folder without a kustomization file, not followed"),
        ]
    );
}

#[test]
fn cycles_end_and_depth_is_bounded() {
    let plan = walk(
        &[
            ("a/kustomization.yaml", "resources: [../b, web.yaml]\n"),
            ("b/kustomization.yaml", "resources: [../a]\n"),
            ("a/web.yaml", WEB),
        ],
        "a",
    );
    assert_eq!(manifests(&plan), ["a/web.yaml"]);
    let chain: Vec<(String, String)> = (0..=MAX_DEPTH + 1)
        .map(|i| (format!("k{i}/kustomization.yaml"), format!("resources: [../k{}]\n", i + 1)))
        .collect();
    let chain: Vec<(&str, &str)> = chain.iter().map(|(p, t)| (p.as_str(), t.as_str())).collect();
    let (plan, rounds) = walk_with(&chain, "k0", Limits::default()).unwrap();
    assert_eq!(rounds, MAX_DEPTH + 1);
    assert_eq!(plan.passed_over, [(format!("k{}", MAX_DEPTH + 1), "more kustomizations deep than are followed")]);
}

#[test]
fn the_bounds_of_the_search_hold_for_all_files_together() {
    let files = overlay("resources: [../base]\n");
    let files: Vec<(&str, &str)> = files.iter().map(|(p, t)| (*p, t.as_str())).collect();
    let two = Limits { files: 2, ..Limits::default() };
    assert!(matches!(walk_with(&files, "fleet/production", two), Err(TreeError::TooManyFiles { limit: 2, .. })));
    let small = Limits { total_bytes: 60, ..Limits::default() };
    assert!(matches!(walk_with(&files, "fleet/production", small), Err(TreeError::TooManyBytes { .. })));
    let mut link = blobs(&files);
    link[2].mode = "120000".into();
    let mut walk = Walk::new(link, "fleet/production", Limits::default()).unwrap();
    let texts = |paths: Vec<Blob>| -> Vec<(String, String)> {
        paths.iter().map(|b| (b.path.clone(), files.iter().find(|(p, _)| *p == b.path).unwrap().1.to_owned())).collect()
    };
    while let next = walk.to_read().unwrap()
        && !next.is_empty()
    {
        walk.feed(texts(next)).unwrap();
    }
    let plan = walk.finish();
    assert!(plan.manifests.is_empty());
    assert_eq!(plan.passed_over, [("fleet/base/web.yaml".to_owned(), "a symbolic link, not followed")]);
}

#[test]
fn an_inline_strategic_merge_patch_of_the_field_is_named() {
    let patch = format!("resources: [../base]\npatches:\n- patch: |\n{}", indent(SMP));
    assert_eq!(
        refusal(&patch).unwrap(),
        "spec.desired.size_slug of CloudProvisioned team-a/web-1 is changed by the patch in fleet/production/kustomization.yaml (patches[0]): change it there, it is left for a person"
    );
    let other_field = patch.replace("size_slug: s-8vcpu-16gb", "region: ams3");
    assert_eq!(refusal(&other_field), None, "a patch of another field leaves this one alone");
    let other_object = patch.replace("name: web-1", "name: web-2");
    assert_eq!(refusal(&other_object), None);
    let replace = patch.replace("desired: {size_slug: s-8vcpu-16gb}", "$patch: replace\n  desired: {}");
    assert!(refusal(&replace).unwrap().contains("may be changed by the patch in"));
}

#[test]
fn targets_select_by_kind_and_name_and_anything_unsure_selects() {
    let targeted = |target: &str| {
        refusal(&format!(
            "resources: [../base]\npatches:\n- target: {target}\n  patch: |\n    - op: replace\n      path: /spec/desired/size_slug\n      value: s-8vcpu-16gb\n"
        ))
    };
    assert!(targeted("{kind: CloudProvisioned, name: web-1}").unwrap().contains("is changed by the patch"));
    assert!(targeted("{kind: CloudProvisioned, name: web-.*}").is_some(), "a name pattern may match");
    assert!(targeted("{labelSelector: tier=web}").is_some(), "labels are not known here");
    assert_eq!(targeted("{kind: Deployment}"), None);
    assert_eq!(targeted("{kind: CloudProvisioned, name: web-2}"), None);
}

#[test]
fn json6902_operations_on_the_field_or_a_parent_are_named() {
    let change = change();
    let op = |json: &str| operation_effect(&serde_json::from_str(json).unwrap(), &change.field);
    assert_eq!(op(r#"{"op": "replace", "path": "/spec/desired/size_slug", "value": "x"}"#), Some(Effect::Sets));
    assert_eq!(op(r#"{"op": "add", "path": "/spec/desired", "value": {}}"#), Some(Effect::May));
    assert_eq!(op(r#"{"op": "remove", "path": "/spec"}"#), Some(Effect::May));
    assert_eq!(op(r#"{"op": "move", "from": "/spec/desired/size_slug", "path": "/x"}"#), Some(Effect::Sets));
    assert_eq!(op(r#"{"op": "replace", "path": "/spec/desired/region", "value": "x"}"#), None);
    assert_eq!(op(r#"{"op": "test", "path": "/spec/desired/size_slug", "value": "x"}"#), None);
    assert_eq!(op(r#"{"op": "replace", "path": "/metadata/labels/a~1b", "value": "x"}"#), None);
}

#[test]
fn patch_files_are_read_and_named() {
    let files = [
        (
            "o/kustomization.yaml",
            "resources: [../b]\npatchesStrategicMerge: [size.yaml]\npatchesJson6902:\n- target: {kind: CloudProvisioned, name: web-1}\n  path: ops.yaml\n",
        ),
        ("o/size.yaml", "kind: CloudProvisioned\nmetadata: {name: web-1}\nspec: {desired: {region: ams3}}\n"),
        ("o/ops.yaml", "- {op: replace, path: /spec/desired/size_slug, value: s-8}\n"),
        ("b/kustomization.yaml", "resources: [web.yaml]\n"),
        ("b/web.yaml", WEB),
    ];
    let plan = walk(&files, "o");
    assert_eq!(manifests(&plan), ["b/web.yaml"], "a patch file is no manifest");
    assert!(plan.searched.contains(&"o/ops.yaml".to_owned()) && plan.searched.contains(&"o/size.yaml".to_owned()));
    assert_eq!(
        touching(&plan, &change()).unwrap(),
        "spec.desired.size_slug of CloudProvisioned team-a/web-1 is changed by the patch o/ops.yaml (patchesJson6902[0] of o/kustomization.yaml): change it there, it is left for a person"
    );
    let missing = refusal("resources: [../base]\npatchesStrategicMerge: [gone.yaml]\n").unwrap();
    assert!(missing.contains("may be changed by the patch \"gone.yaml\" (patchesStrategicMerge[0] of fleet/production/kustomization.yaml), which cannot be read"), "{missing}");
}

#[test]
fn replacements_plugins_and_unreadable_kustomizations_are_named() {
    let replacement = "resources: [../base]\nreplacements:\n- source: {kind: ConfigMap, name: sizes, fieldPath: data.web}\n  targets:\n  - select: {kind: CloudProvisioned}\n    fieldPaths: [spec.desired.size_slug]\n";
    assert!(
        refusal(replacement)
            .unwrap()
            .contains("is changed by the replacements in fleet/production/kustomization.yaml (replacements[0])")
    );
    assert_eq!(refusal(&replacement.replace("spec.desired.size_slug", "spec.desired.region")), None);
    assert_eq!(refusal(&replacement.replace("kind: CloudProvisioned", "kind: Deployment")), None);
    assert_eq!(field_path_effect("spec.*", "size_slug"), Some(Effect::May));
    assert_eq!(field_path_effect("spec.[a.b].size_slug", "size_slug"), Some(Effect::Sets));
    let plugin = refusal("resources: [../base]\ntransformers: [transformer.yaml]\n").unwrap();
    assert!(
        plugin.contains("may be changed by the plugin in fleet/production/kustomization.yaml (transformers[0])"),
        "{plugin}"
    );
    let broken = refusal("resources: [../base\n").unwrap();
    assert!(broken.starts_with("whether spec.desired.size_slug of CloudProvisioned team-a/web-1 is changed cannot be told: fleet/production/kustomization.yaml cannot be read (not valid YAML"), "{broken}");
    assert_eq!(
        refusal("resources: [../base]\nconfigMapGenerator: [{name: x, literals: [a=b]}]\nnamePrefix: prod-\n"),
        None
    );
}

#[test]
fn the_decision_names_the_files_searched() {
    let files = overlay("resources: [../base]\n");
    let files: Vec<(&str, &str)> = files.iter().map(|(p, t)| (*p, t.as_str())).collect();
    let plan = walk(&files, "fleet/production");
    let other = crate::writeback::commit::Change { name: "web-9".into(), ..change() };
    let texts = vec![("fleet/base/web.yaml".to_owned(), WEB.to_owned())];
    let Decision::NotWritable(why) = decide(&plan, &texts, &other, "fleet/production", None) else { panic!() };
    assert!(why.contains("(3 YAML files searched: fleet/production/kustomization.yaml, fleet/base/kustomization.yaml, fleet/base/web.yaml)"), "{why}");
    assert!(matches!(decide(&plan, &texts, &change(), "fleet/production", None), Decision::Edit { .. }));
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    {l}\n")).collect()
}

#[test]
fn a_kustomization_namespace_moves_documents_and_the_outermost_one_wins() {
    let decision = |overlay: &str, base: &str| {
        let files = [("o/kustomization.yaml", overlay), ("b/kustomization.yaml", base), ("b/web.yaml", WEB)];
        let plan = walk(&files, "o");
        let texts = vec![("b/web.yaml".to_owned(), WEB.to_owned())];
        decide(&plan, &texts, &change(), "o", None)
    };
    let elsewhere = decision("namespace: team-b\nresources: [../b]\n", "resources: [web.yaml]\n");
    assert!(matches!(&elsewhere, Decision::NotWritable(why) if why.contains("is not written in a plain manifest")));
    let outer = decision("namespace: team-a\nresources: [../b]\n", "namespace: team-b\nresources: [web.yaml]\n");
    assert!(matches!(outer, Decision::Edit { .. }), "{outer:?}");
    let inner = decision("resources: [../b]\n", "namespace: team-b\nresources: [web.yaml]\n");
    assert!(matches!(inner, Decision::NotWritable(_)), "{inner:?}");
}
