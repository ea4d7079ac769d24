//! Objects a tenant can write that must not take the controller down or
//! reach beyond the tenant: a deeply nested `spec.desired`, made-up field
//! names by the hundred; and a token given in the environment, which must not
//! stay readable there. Against the real API server and the real binary.

mod common;

use arcadia_drift::api::Drift;
use common::controller::ControllerProcess;
use common::eventually;
use kube::api::{Api, ListParams};
use serde_json::{Value, json};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

fn nested(levels: usize) -> Value {
    (0..levels).fold(json!("bottom"), |inner, _| json!({ "a": inner }))
}

#[tokio::test]
async fn a_200_level_desired_value_does_not_stop_start_up_and_gets_a_condition() {
    let client = common::client().await;
    let ns = common::namespace(&client, "deep").await;
    // Created before the controller starts, so the first list holds it.
    common::mirror_droplet(&client, &format!("{ns}-deep"), "s-1vcpu-1gb", Some("nyc3")).await;
    // Through kubectl: this test's own typed client could not decode the answer either.
    let deep = json!({
        "apiVersion": "arcadia.cloud/v1alpha1", "kind": "CloudProvisioned",
        "metadata": {"name": "deep", "namespace": ns},
        "spec": {"resourceRef": {"name": format!("{ns}-deep")}, "desired": {"region": "nyc3", "meta": nested(200)}},
    });
    let file = std::env::temp_dir().join(format!("{ns}-deep.json"));
    std::fs::write(&file, deep.to_string()).unwrap();
    common::kubectl_ok(&["apply", "--server-side", "-f", file.to_str().unwrap()]);
    common::mirror_droplet(&client, &format!("{ns}-web"), "s-2vcpu-4gb", Some("nyc3")).await;
    common::provision(&client, &ns, "web", &format!("{ns}-web"), json!({"size_slug": "s-1vcpu-1gb"})).await;

    let controller = ControllerProcess::start(&ns, &[]);

    let drifts: Api<Drift> = Api::namespaced(client.clone(), &ns);
    eventually(WAIT, "the well-formed object drifts", || async {
        let list = drifts.list(&ListParams::default().labels("arcadia.cloud/provisioned=web")).await.ok()?;
        (list.items.len() == 1).then_some(())
    })
    .await;
    let (status, reason, message) = eventually(WAIT, "the deep object's condition", || async {
        let path = r#"jsonpath={range .status.conditions[?(@.type=="InSync")]}{.status}|{.reason}|{.message}{end}"#;
        let out = common::kubectl_ok(&["get", "cloudprovisioned", "deep", "-n", &ns, "-o", path]);
        let mut parts = out.splitn(3, '|').map(str::to_owned);
        Some((parts.next()?, parts.next()?, parts.next()?))
    })
    .await;
    assert_eq!((status.as_str(), reason.as_str()), ("Unknown", "InvalidSpec"), "{message}");
    assert_eq!(message, "spec.desired.meta is nested deeper than 32 levels: it is not read");
    let deep_drifts = drifts.list(&ListParams::default().labels("arcadia.cloud/provisioned=deep")).await.unwrap();
    assert!(deep_drifts.items.is_empty());
    assert!(controller.get("/healthz").is_some());
    // The object itself is untouched: nothing of the tenant's spec is lost.
    let stored = common::kubectl_ok(&["get", "cloudprovisioned", "deep", "-n", &ns, "-o", "json"]);
    assert_eq!(stored.matches("\"a\":").count(), 200);
}

#[tokio::test]
async fn made_up_fields_by_the_hundred_open_at_most_32_drifts_and_say_the_rest() {
    let client = common::client().await;
    let ns = common::namespace(&client, "many").await;
    common::mirror_droplet(&client, &format!("{ns}-web"), "s-1vcpu-1gb", Some("nyc3")).await;
    let desired: serde_json::Map<String, Value> = (0..256).map(|i| (format!("made-up-{i:03}"), json!("x"))).collect();
    common::provision(&client, &ns, "web", &format!("{ns}-web"), Value::Object(desired)).await;
    let controller = ControllerProcess::start(&ns, &[]);

    let api: Api<arcadia_drift::api::CloudProvisioned> = Api::namespaced(client.clone(), &ns);
    let message = eventually(WAIT, "the InSync condition", || async {
        let p = api.get("web").await.ok()?;
        let c = p.status?.conditions.into_iter().find(|c| c.type_ == "InSync" && c.reason == "Drifted")?;
        Some(c.message)
    })
    .await;
    assert!(
        message.contains("; 224 more drifted fields have no Drift (at most 32 are open per object): made-up-032, "),
        "{message}"
    );
    let drifts: Api<Drift> = Api::namespaced(client.clone(), &ns);
    assert_eq!(drifts.list(&ListParams::default()).await.unwrap().items.len(), 32);
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), &ns);
    let detected = events.list(&ListParams::default()).await.unwrap().items;
    let detected = detected.iter().filter(|e| e.reason.as_deref() == Some("DriftDetected")).count();
    assert!(detected <= 32, "{detected} DriftDetected Events");
    // The field label is one of --metrics-fields or "other": made-up names never become series.
    let metrics = eventually(WAIT, "the open Drifts in the metrics", || async {
        let metrics = controller.get("/metrics")?;
        metrics.lines().any(|l| l.starts_with("arcadia_drift_open_drifts_by{") && l.contains(&ns)).then_some(metrics)
    })
    .await;
    let series: Vec<&str> =
        metrics.lines().filter(|l| l.starts_with("arcadia_drift_open_drifts_by{") && l.contains(&ns)).collect();
    assert!(!metrics.contains("made-up-"), "a made-up field name is a label value");
    assert!(series.len() <= 2 && series.iter().all(|l| l.contains("field=\"other\"")), "{series:?}");
}

#[tokio::test]
async fn a_planted_actor_is_removed_and_the_later_accept_is_credited_to_its_maker() {
    let client = common::client().await;
    let ns = common::namespace(&client, "actor").await;
    common::mirror_droplet(&client, &format!("{ns}-web"), "s-2vcpu-4gb", Some("nyc3")).await;
    common::provision(&client, &ns, "web", &format!("{ns}-web"), json!({"size_slug": "s-1vcpu-1gb"})).await;
    let _controller = ControllerProcess::start(&ns, &[]);
    let drifts: Api<Drift> = Api::namespaced(client.clone(), &ns);
    let name = eventually(WAIT, "the drift", || async {
        drifts.list(&ListParams::default()).await.ok()?.items.first().map(kube::ResourceExt::name_any)
    })
    .await;

    common::kubectl_ok(&["annotate", "drift", &name, "-n", &ns, "arcadia.cloud/accepted-by=mallory"]);
    eventually(WAIT, "the planted actor removed", || async {
        let d = drifts.get(&name).await.ok()?;
        (!d.metadata.annotations.unwrap_or_default().contains_key("arcadia.cloud/accepted-by")).then_some(())
    })
    .await;
    common::kubectl_ok(&[
        "annotate",
        "drift",
        &name,
        "-n",
        &ns,
        "arcadia.cloud/accept=true",
        "arcadia.cloud/accepted-by=alice",
    ]);
    let by = eventually(WAIT, "the accept", || async {
        let s = drifts.get(&name).await.ok()?.status?;
        (s.phase == arcadia_drift::api::DriftPhase::Accepted).then_some(s.resolved_by)
    })
    .await;
    assert_eq!(by.as_deref(), Some("alice"));
    let events =
        common::kubectl_ok(&["get", "events", "-n", &ns, "--field-selector", "reason=ActorRemoved", "-o", "name"]);
    assert_eq!(events.lines().count(), 1, "{events}");
}

#[tokio::test]
async fn another_tenants_resource_shows_none_of_that_tenants_names() {
    // A controller of every namespace, so on a control plane of this test's own.
    let plane = common::own_plane::ControlPlane::up("");
    let client = plane.client().await;
    common::install_crds(&client).await;
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    for ns in ["team-a", "team-b"] {
        let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
        namespaces.create(&Default::default(), &serde_json::from_value(body).unwrap()).await.unwrap();
    }
    // team-a holds the claim on the droplet; team-b points its own object at it.
    let resource = "digitalocean-droplet-shared";
    common::mirror_droplet(&client, resource, "s-2vcpu-4gb", Some("nyc3")).await;
    let tags = json!({"apiVersion": "arcadia.cloud/v1alpha1", "kind": "CloudResource", "status": {"tags": ["arcadia-ns:team-a"]}});
    let cres: Api<arcadia_drift::api::CloudResource> = Api::all(client.clone());
    cres.patch_status(resource, &kube::api::PatchParams::apply("test-tags").force(), &kube::api::Patch::Apply(tags))
        .await
        .unwrap();
    common::provision(&client, "team-a", "secret-project", resource, json!({"size_slug": "s-4vcpu-8gb"})).await;
    common::provision(&client, "team-b", "prying", resource, json!({"size_slug": "s-1vcpu-1gb"})).await;
    let kubeconfig = plane.kubeconfig.to_str().unwrap().to_owned();
    let _controller = ControllerProcess::start_cluster_wide(&[], &[("KUBECONFIG", &kubeconfig)]);

    let conflict = |ns: &'static str, name: &'static str| {
        let api: Api<arcadia_drift::api::CloudProvisioned> = Api::namespaced(client.clone(), ns);
        async move {
            let status = api.get(name).await.ok()?.status?;
            let found = status.conditions.iter().any(|c| c.type_ == "InSync");
            found.then(|| status.conditions.into_iter().find(|c| c.type_ == "DesiredConflict"))
        }
    };
    let seen_by_b = eventually(WAIT, "team-b's object checked", || conflict("team-b", "prying")).await;
    let message = seen_by_b.expect("team-a holds the claim, so it counts").message;
    assert!(message.contains("size_slug: a CloudProvisioned of the namespace that holds the claim"), "{message}");
    let b_side = plane.ok("kubectl", &["get", "cloudprovisioneds,drifts,events", "-n", "team-b", "-o", "yaml"]);
    assert!(!b_side.contains("secret-project") && !b_side.contains("team-a/"), "{b_side}");
    let seen_by_a = eventually(WAIT, "team-a's object checked", || conflict("team-a", "secret-project")).await;
    assert!(seen_by_a.is_none(), "team-b holds no claim, so it does not count: {seen_by_a:?}");
}

#[tokio::test]
async fn a_token_given_in_the_environment_is_used_and_gone_from_proc_environ() {
    use common::fake_do::{FakeDo, TOKEN, droplet};
    let fake = FakeDo::start().await;
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let id = 1_000_000_000 + (nanos % 1_000_000_000) as u64;
    fake.add("/v2/droplets", droplet(id, "environ-web", "s-1vcpu-1gb", "nyc3", &[]));
    let client = common::client().await;
    let ns = common::namespace(&client, "environ").await;
    let source = format!("environ-{}", common::unique_suffix());
    let args = ["--digitalocean-api-url", &fake.url, "--inventory-source", &source];
    let controller = ControllerProcess::start_with_env(&ns, &args, &[("DIGITALOCEAN_TOKEN", TOKEN)]);

    let mirrored: Api<arcadia_drift::api::CloudResource> = Api::all(client.clone());
    let name = format!("digitalocean-droplet-{id}");
    eventually(WAIT, "the droplet mirrored with the token", || async { mirrored.get(&name).await.ok() }).await;
    // Without CAP_SYS_PTRACE the non-dumpable controller's environ is not
    // readable at all; with it (root, as in CI) its content must not hold the token.
    match std::fs::read(format!("/proc/{}/environ", controller.pid())) {
        Ok(environ) => {
            let shown = String::from_utf8_lossy(&environ);
            assert!(!shown.contains(TOKEN), "the token is readable in /proc/<pid>/environ");
            assert!(shown.contains("DIGITALOCEAN_TOKEN=\0"), "its value is overwritten where it was");
        }
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied, "{e}"),
    }
}
