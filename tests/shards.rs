//! Shards against the real local control plane: `--shard NAME` and
//! `--exclude-shards` split the CloudProvisioneds (and their Drifts) between
//! replicas, each shard with a leader of its own; a CloudProvisioned moved to
//! another shard takes its Drifts along with their history; bad shard flags
//! are refused before anything runs; a shard without providers caches only
//! the CloudResources its objects name; of two shards given provider flags,
//! only the holder of the providers' Lease calls the provider.

mod common;

use arcadia_drift::api::{
    CloudProvisioned, CloudProvisionedSpec, CloudResource, CloudResourceSpec, CloudResourceStatus, Drift, DriftPhase,
    Fields, LABEL_SHARD, ResourceRef, now,
};
use common::controller::ControllerProcess;
use common::eventually;
use common::fake_do::{FakeDo, TOKEN};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(40);

async fn drifted_resource(client: &Client) -> String {
    let id = common::unique_suffix();
    let name = format!("digitalocean-droplet-{id}");
    let api: Api<CloudResource> = Api::all(client.clone());
    let spec = CloudResourceSpec { provider: "digitalocean".into(), type_: "droplet".into(), id, region: None };
    api.create(&PostParams::default(), &CloudResource::new(&name, spec)).await.expect("create CloudResource");
    let status =
        CloudResourceStatus { size_slug: Some("s-2vcpu-4gb".into()), synced_time: Some(now()), ..Default::default() };
    let body = json!({"apiVersion": "arcadia.cloud/v1alpha1", "kind": "CloudResource", "status": status});
    api.patch_status(&name, &PatchParams::apply("test-syncer").force(), &Patch::Apply(body))
        .await
        .expect("write CloudResource status");
    name
}

/// A CloudProvisioned of `shard` whose new CloudResource drifts; the resource's name.
async fn provisioned(client: &Client, ns: &str, name: &str, shard: Option<&str>) -> String {
    let resource = drifted_resource(client).await;
    let spec = CloudProvisionedSpec {
        resource_ref: ResourceRef { name: resource.clone() },
        desired: Fields::try_from(json!({"size_slug": "s-1vcpu-1gb"})).unwrap(),
        ..Default::default()
    };
    let mut p = CloudProvisioned::new(name, spec);
    if let Some(shard) = shard {
        p.labels_mut().insert(LABEL_SHARD.into(), shard.into());
    }
    Api::<CloudProvisioned>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &p)
        .await
        .expect("create CloudProvisioned");
    resource
}

async fn drift_of(client: &Client, ns: &str, provisioned: &str) -> Option<Drift> {
    let drifts = Api::<Drift>::namespaced(client.clone(), ns).list(&ListParams::default()).await.expect("list drifts");
    drifts.items.into_iter().find(|d| d.spec.provisioned_ref.name == provisioned && d.status.is_some())
}

/// Which controllers (by `--identity`) reported a drift of `provisioned` detected.
async fn detected_by(client: &Client, ns: &str, provisioned: &str) -> Vec<String> {
    let events = Api::<Event>::namespaced(client.clone(), ns).list(&ListParams::default()).await.expect("events");
    let mut by: Vec<String> = events
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("DriftDetected"))
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(provisioned))
        .filter_map(|e| e.reporting_instance)
        .collect();
    by.dedup();
    by
}

async fn holder(client: &Client, ns: &str, lease: &str) -> Option<String> {
    let lease = Api::<Lease>::namespaced(client.clone(), ns).get_opt(lease).await.expect("get lease")?;
    lease.spec?.holder_identity
}

#[tokio::test]
async fn two_shards_split_the_work_each_with_its_own_leader_and_a_moved_object_keeps_its_drift() {
    let client = common::client().await;
    let ns = common::namespace(&client, "shards").await;
    provisioned(&client, &ns, "plain", None).await;
    provisioned(&client, &ns, "eu", Some("eu")).await;
    provisioned(&client, &ns, "typo", Some("nobody-runs-this")).await;
    let rest = ControllerProcess::start(&ns, &["--identity", "rest", "--exclude-shards", "eu"]);
    let eu = ControllerProcess::start(&ns, &["--identity", "eu-1", "--shard", "eu"]);

    let cases = [("plain", None, "rest"), ("eu", Some("eu"), "eu-1"), ("typo", Some("nobody-runs-this"), "rest")];
    for (object, label, by) in cases {
        let drift = eventually(WAIT, &format!("the drift of {object}"), || drift_of(&client, &ns, object)).await;
        let carried = drift.labels().get(LABEL_SHARD).map(String::as_str);
        assert_eq!(carried, label, "a Drift carries its object's shard");
        let reporters = eventually(WAIT, "its DriftDetected Event", || async {
            Some(detected_by(&client, &ns, object).await).filter(|r| !r.is_empty())
        })
        .await;
        assert_eq!(reporters, [by], "{object} is handled by its shard's replica only");
    }
    assert_eq!(holder(&client, &ns, "arcadia-drift").await.as_deref(), Some("rest"));
    assert_eq!(holder(&client, &ns, "arcadia-drift-eu").await.as_deref(), Some("eu-1"), "a lease per shard");
    assert_eq!(rest.metric("arcadia_drift_leader"), 1.0);
    assert_eq!(eu.metric("arcadia_drift_leader"), 1.0);

    // An operator's decision on the drift, then the object moves to the other shard.
    let before = drift_of(&client, &ns, "plain").await.unwrap();
    let drifts: Api<Drift> = Api::namespaced(client.clone(), &ns);
    let ignore = json!({"metadata": {"annotations": {"arcadia.cloud/ignore": "true", "arcadia.cloud/ignore-reason": "load test"}}});
    drifts.patch(&before.name_any(), &PatchParams::default(), &Patch::Merge(ignore)).await.unwrap();
    eventually(WAIT, "the drift ignored", || async {
        let d = drift_of(&client, &ns, "plain").await?;
        (d.status?.phase == DriftPhase::Ignored).then_some(())
    })
    .await;
    let detected = drift_of(&client, &ns, "plain").await.unwrap().status.unwrap().detected_time;
    let moved = move_to_eu(&client, &ns, "plain").await;
    assert_eq!(moved.name_any(), before.name_any(), "the same Drift, not a new one");
    // Give the new shard a few resyncs (3 s each): the decision and its history stay.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let after = drift_of(&client, &ns, "plain").await.unwrap();
    let status = after.status.unwrap();
    assert_eq!(status.phase, DriftPhase::Ignored, "the operator's decision moved with the object");
    assert_eq!(status.detected_time, detected, "its history too");
    let all = drifts.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(all.iter().filter(|d| d.spec.provisioned_ref.name == "plain").count(), 1, "no second Drift");
}

/// Relabels the object into shard eu; its Drift once relabelled too.
async fn move_to_eu(client: &Client, ns: &str, object: &str) -> Drift {
    let body = json!({"metadata": {"labels": {LABEL_SHARD: "eu"}}});
    Api::<CloudProvisioned>::namespaced(client.clone(), ns)
        .patch(object, &PatchParams::default(), &Patch::Merge(body))
        .await
        .unwrap();
    eventually(WAIT, "the drift relabelled into shard eu", || async {
        let d = drift_of(client, ns, object).await?;
        (d.labels().get(LABEL_SHARD).map(String::as_str) == Some("eu")).then_some(d)
    })
    .await
}

/// The live value of `resource` set to `size`, as a syncer would write it.
async fn set_live_size(client: &Client, resource: &str, size: &str) {
    let status = CloudResourceStatus { size_slug: Some(size.into()), synced_time: Some(now()), ..Default::default() };
    let body = json!({"apiVersion": "arcadia.cloud/v1alpha1", "kind": "CloudResource", "status": status});
    Api::<CloudResource>::all(client.clone())
        .patch_status(resource, &PatchParams::apply("test-syncer").force(), &Patch::Apply(body))
        .await
        .expect("set the live value");
}

/// A drift closed before its object moves (an ignored one whose field came
/// back in sync) gives the new shard no reason to look for it: the shard the
/// object left hands it over, history and all.
#[tokio::test]
async fn a_closed_drift_moves_with_its_object_pushed_by_the_shard_it_left() {
    let client = common::client().await;
    let ns = common::namespace(&client, "shard-handoff").await;
    let resource = provisioned(&client, &ns, "quiet", None).await;
    let _rest = ControllerProcess::start(&ns, &["--identity", "rest", "--exclude-shards", "eu"]);
    let eu = ControllerProcess::start(&ns, &["--identity", "eu-1", "--shard", "eu"]);
    let drift = eventually(WAIT, "the drift of quiet", || drift_of(&client, &ns, "quiet")).await;
    let drifts: Api<Drift> = Api::namespaced(client.clone(), &ns);
    let ignore =
        json!({"metadata": {"annotations": {"arcadia.cloud/ignore": "true", "arcadia.cloud/ignore-reason": "test"}}});
    drifts.patch(&drift.name_any(), &PatchParams::default(), &Patch::Merge(ignore)).await.unwrap();
    eventually(WAIT, "the drift ignored", || async {
        (drift_of(&client, &ns, "quiet").await?.status?.phase == DriftPhase::Ignored).then_some(())
    })
    .await;
    set_live_size(&client, &resource, "s-1vcpu-1gb").await;
    let closed = eventually(WAIT, "the drift closed, the field in sync", || async {
        let status = drift_of(&client, &ns, "quiet").await?.status?;
        (status.phase == DriftPhase::Stale).then_some(status)
    })
    .await;

    let moved = move_to_eu(&client, &ns, "quiet").await;
    assert_eq!(moved.name_any(), drift.name_any(), "the same Drift");
    let status = moved.status.unwrap();
    assert_eq!((status.phase, status.detected_time), (closed.phase, closed.detected_time), "as it was");
    assert!(eu.log_text().lines().all(|l| !l.contains("moved Drifts into this shard")), "eu had no need to pull it");
    // In shard eu now: drifting again reopens this Drift there.
    set_live_size(&client, &resource, "s-8vcpu-16gb").await;
    eventually(WAIT, "shard eu reopening it", || async {
        let d = drift_of(&client, &ns, "quiet").await?;
        (d.status?.phase == DriftPhase::Open).then_some(())
    })
    .await;
    let all = drifts.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(all.len(), 1, "no second Drift");
}

/// A log line without its colours.
fn plain(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            chars.by_ref().take_while(|c| *c != 'm').for_each(drop);
        } else {
            out.push(c);
        }
    }
    out
}

#[tokio::test]
async fn a_shard_without_providers_caches_only_the_cloud_resources_its_objects_name() {
    let client = common::client().await;
    let ns = common::namespace(&client, "shard-cache").await;
    provisioned(&client, &ns, "eu-1", Some("eu")).await;
    provisioned(&client, &ns, "elsewhere", None).await;
    drifted_resource(&client).await;
    let eu = ControllerProcess::start(&ns, &["--identity", "eu-cache", "--shard", "eu"]);
    eventually(WAIT, "the drift of eu-1", || drift_of(&client, &ns, "eu-1")).await;
    let synced = eventually(WAIT, "the caches-synced log line", || async {
        eu.log_text().lines().map(plain).find(|l| l.contains("caches synced; reconciling"))
    })
    .await;
    // Of the cluster's CloudResources (these three and every other test's), the one eu-1 names.
    assert!(synced.contains("cloudresources=1 "), "{synced}");

    // An object the shard takes on after its list: its CloudResource was left
    // out, so it is read; from then on the watch keeps it.
    let resource = provisioned(&client, &ns, "eu-2", Some("eu")).await;
    let drift = eventually(WAIT, "the drift of eu-2", || drift_of(&client, &ns, "eu-2")).await;
    assert_eq!(drift.status.unwrap().actual, json!("s-2vcpu-4gb"));
    let moved =
        CloudResourceStatus { size_slug: Some("s-4vcpu-8gb".into()), synced_time: Some(now()), ..Default::default() };
    let body = json!({"apiVersion": "arcadia.cloud/v1alpha1", "kind": "CloudResource", "status": moved});
    Api::<CloudResource>::all(client.clone())
        .patch_status(&resource, &PatchParams::apply("test-syncer").force(), &Patch::Apply(body))
        .await
        .expect("move the live value");
    eventually(WAIT, "the drift following the new live value", || async {
        let d = drift_of(&client, &ns, "eu-2").await?;
        (d.status?.actual == json!("s-4vcpu-8gb")).then_some(())
    })
    .await;
    assert_eq!(eu.metric("arcadia_drift_leader"), 1.0);
    assert!(eu.get("/metrics").unwrap().contains("arcadia_drift_leader{shard=\"eu\"} 1"), "labelled with its shard");
}

/// A replica of `shard` (`--shard eu`, or the rest) with DigitalOcean's flags,
/// against its own fake, so what each one sends is counted apart.
fn with_provider(ns: &str, identity: &str, shard: [&str; 2], fake: &FakeDo, source: &str) -> ControllerProcess {
    let mut args = vec!["--identity", identity, "--digitalocean-api-url", &fake.url, "--inventory-source", source];
    args.extend(["--inventory-sync-interval", "1s"]);
    args.extend(shard);
    ControllerProcess::start_with_env(ns, &args, &[("DIGITALOCEAN_TOKEN", TOKEN)])
}

fn listings(fake: &FakeDo) -> usize {
    fake.requests().iter().filter(|r| r.starts_with("/v2/droplets")).count()
}

#[tokio::test]
async fn of_two_shards_given_provider_flags_only_the_holder_of_the_providers_lease_calls_the_provider() {
    let client = common::client().await;
    let ns = common::namespace(&client, "shard-providers").await;
    let source = format!("e2e-{}", common::unique_suffix());
    let (rest_fake, eu_fake) = (FakeDo::start().await, FakeDo::start().await);
    let rest = with_provider(&ns, "rest", ["--exclude-shards", "eu"], &rest_fake, &source);
    let eu = with_provider(&ns, "eu-1", ["--shard", "eu"], &eu_fake, &source);
    let first =
        eventually(WAIT, "a holder of the providers' lease", || holder(&client, &ns, "arcadia-drift-providers")).await;
    let (mut holding, waiting, holding_fake, waiting_fake) = match first.as_str() {
        "rest" => (rest, eu, &rest_fake, &eu_fake),
        _ => (eu, rest, &eu_fake, &rest_fake),
    };
    eventually(WAIT, "three syncs by the holder", || async { (listings(holding_fake) >= 3).then_some(()) }).await;
    assert_eq!(waiting_fake.requests(), Vec::<String>::new(), "the other replica calls nothing");
    assert_eq!(holding.metric("arcadia_drift_providers_leader "), 1.0);
    assert_eq!(waiting.metric("arcadia_drift_providers_leader "), 0.0);
    assert_eq!(waiting.metric("arcadia_drift_leader"), 1.0, "it leads its own shard all the same");
    assert!(waiting.log_text().contains("sharded: the providers run on the replica that holds their lease"));

    // The holder dies without letting go: the other takes over once the lease expires.
    holding.kill();
    let sent_by_the_dead = listings(holding_fake);
    eventually(WAIT, "the other replica syncing", || async { (listings(waiting_fake) >= 2).then_some(()) }).await;
    let second = holder(&client, &ns, "arcadia-drift-providers").await;
    assert_ne!(second.as_deref(), Some(first.as_str()), "the lease moved");
    assert_eq!(waiting.metric("arcadia_drift_providers_leader "), 1.0);
    assert_eq!(listings(holding_fake), sent_by_the_dead, "nothing from the old holder after it stopped");

    // Another takes the providers' lease: the replica stops whole, as on
    // SIGTERM, and exits with the error, so that no two actors call.
    let mut waiting = waiting;
    let renewed = k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(now().0);
    let stolen = json!({"spec": {"holderIdentity": "someone-else", "renewTime": renewed}});
    Api::<Lease>::namespaced(client.clone(), &ns)
        .patch("arcadia-drift-providers", &PatchParams::default(), &Patch::Merge(stolen))
        .await
        .expect("take the providers' lease");
    let code = waiting.wait_exit(WAIT).unwrap_or_else(|| panic!("still running; log:\n{}", waiting.log_text()));
    assert_ne!(code, Some(0), "exits with the error");
    let log: Vec<String> = waiting.log_text().lines().map(plain).collect();
    assert!(log.iter().any(|l| l.contains("stopping: a task of the leader failed")), "{log:#?}");
    assert!(
        log.iter().any(|l| l.contains("lost the leader lease") && l.contains("arcadia-drift-providers")),
        "{log:#?}"
    );
}

#[test]
fn bad_shard_flags_are_refused_before_anything_runs() {
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_arcadia-drift"))
            .args(["run", "--metrics-addr", "127.0.0.1:0"])
            .args(args)
            .env("KUBECONFIG", "/nonexistent")
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (code, err) = run(&["--shard", "eu west"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("shard name \"eu west\" is not a label value"), "{err}");
    let (code, err) = run(&["--exclude-shards", "ok,-bad"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("\"-bad\" is not a label value"), "{err}");
    let (code, err) = run(&["--shard", "providers"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("shard name \"providers\" is reserved"), "{err}");
    let (code, err) = run(&["--shard", "eu", "--exclude-shards", "us"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("cannot be used with"), "{err}");
}
