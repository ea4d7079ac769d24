//! `arcadia-drift run` against the real local control plane: the drift
//! lifecycle, accept, missing and stale inventory, restarts, two replicas.
//! Each test has its own namespace and its own controller process.

mod common;

use arcadia_drift::api::{
    ANNOTATION_ACCEPT, ANNOTATION_ACCEPTED_BY, CloudProvisioned, CloudProvisionedSpec, CloudResource,
    CloudResourceSpec, CloudResourceStatus, Drift, DriftPhase, FIELD_MANAGER, Fields, LABEL_PHASE, ResourceRef, now,
};
use common::controller::ControllerProcess;
use common::eventually;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(30);

fn ago(seconds: i64) -> Time {
    let t = now();
    Time(k8s_openapi::jiff::Timestamp::from_second(t.0.as_second() - seconds).unwrap())
}

fn live(size: &str, tags: &[&str], synced: Time) -> CloudResourceStatus {
    CloudResourceStatus {
        name: Some("web".into()),
        region: Some("nyc3".into()),
        status: Some("active".into()),
        // As a syncer before schema version 7 wrote it: `sizeSlug` alone still compares.
        size: None,
        size_slug: Some(size.into()),
        tags: Some(tags.iter().map(|t| t.to_string()).collect()),
        tag_map: None,
        attrs: Some(Fields::try_from(json!({"vcpus": 2, "image": "ubuntu-24-04-x64"})).unwrap()),
        missing: false,
        synced_time: Some(synced),
    }
}

/// Creates a CloudResource with a unique name and writes its live state as a syncer would.
async fn resource(client: &Client, status: CloudResourceStatus) -> String {
    let id = common::unique_suffix();
    let name = format!("digitalocean-droplet-{id}");
    let api: Api<CloudResource> = Api::all(client.clone());
    let spec = CloudResourceSpec { provider: "digitalocean".into(), type_: "droplet".into(), id, region: None };
    api.create(&PostParams::default(), &CloudResource::new(&name, spec)).await.expect("create CloudResource");
    set_live(client, &name, status).await;
    name
}

async fn set_live(client: &Client, name: &str, status: CloudResourceStatus) {
    let api: Api<CloudResource> = Api::all(client.clone());
    let body = json!({"apiVersion": "arcadia.cloud/v1alpha1", "kind": "CloudResource", "status": status});
    api.patch_status(name, &PatchParams::apply("test-syncer").force(), &Patch::Apply(body))
        .await
        .expect("write CloudResource status");
}

async fn provisioned(client: &Client, ns: &str, name: &str, resource: &str, desired: Value) -> CloudProvisioned {
    let spec = CloudProvisionedSpec {
        resource_ref: ResourceRef { name: resource.into() },
        desired: Fields::try_from(desired).expect("desired is an object"),
        ..Default::default()
    };
    Api::<CloudProvisioned>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &CloudProvisioned::new(name, spec))
        .await
        .expect("create CloudProvisioned")
}

async fn drifts(client: &Client, ns: &str) -> Vec<Drift> {
    Api::<Drift>::namespaced(client.clone(), ns).list(&ListParams::default()).await.expect("list drifts").items
}

async fn drifts_in(client: &Client, ns: &str, phase: DriftPhase) -> Vec<Drift> {
    drifts(client, ns).await.into_iter().filter(|d| d.status.as_ref().is_some_and(|s| s.phase == phase)).collect()
}

async fn get_provisioned(client: &Client, ns: &str, name: &str) -> CloudProvisioned {
    Api::<CloudProvisioned>::namespaced(client.clone(), ns).get(name).await.expect("get CloudProvisioned")
}

async fn events(client: &Client, ns: &str, reason: &str) -> Vec<Event> {
    Api::<Event>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .expect("list events")
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .collect()
}

fn event_count(events: &[Event]) -> i32 {
    events.iter().map(|e| e.series.as_ref().map_or(1, |s| s.count)).sum()
}

/// Events are published after the writes they describe: wait for `count` of them.
async fn await_events(client: &Client, ns: &str, reason: &str, count: i32) -> Vec<Event> {
    eventually(WAIT, &format!("{count} {reason} Event(s)"), || async {
        let found = events(client, ns, reason).await;
        (event_count(&found) >= count).then_some(found)
    })
    .await
}

async fn annotate_accept(client: &Client, ns: &str, drift: &str, by: Option<&str>) {
    let mut annotations = serde_json::Map::new();
    annotations.insert(ANNOTATION_ACCEPT.into(), json!("true"));
    if let Some(by) = by {
        annotations.insert(ANNOTATION_ACCEPTED_BY.into(), json!(by));
    }
    Api::<Drift>::namespaced(client.clone(), ns)
        .patch(drift, &PatchParams::default(), &Patch::Merge(json!({"metadata": {"annotations": annotations}})))
        .await
        .expect("annotate drift");
}

fn condition(p: &CloudProvisioned, type_: &str) -> Option<(String, String)> {
    p.status.as_ref()?.conditions.iter().find(|c| c.type_ == type_).map(|c| (c.status.clone(), c.reason.clone()))
}

/// The whole lifecycle, end to end: detect, accept, in sync, then a quiet steady state.
#[tokio::test]
async fn detect_then_accept_then_in_sync() {
    let client = common::client().await;
    let ns = common::namespace(&client, "smoke").await;
    let res = resource(&client, live("s-2vcpu-4gb", &["web"], now())).await;
    provisioned(&client, &ns, "web-1", &res, json!({"size_slug": "s-1vcpu-1gb", "region": "nyc3"})).await;
    let controller = ControllerProcess::start(&ns, &[]);

    let open = eventually(WAIT, "one open size_slug drift", || async {
        let open = drifts_in(&client, &ns, DriftPhase::Open).await;
        (!open.is_empty()).then_some(open)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let all = drifts(&client, &ns).await;
    assert_eq!(all.len(), 1, "exactly one Drift: {all:?}");
    let drift = &all[0];
    assert_eq!(drift.spec.field, "size_slug");
    assert_eq!(open[0].name_any(), drift.name_any());
    let status = drift.status.as_ref().unwrap();
    assert_eq!((&status.expected, &status.actual), (&json!("s-1vcpu-1gb"), &json!("s-2vcpu-4gb")));
    assert!(status.detected_time.is_some());
    assert_eq!(drift.labels().get(LABEL_PHASE).map(String::as_str), Some("Open"));
    let owner = &drift.owner_references()[0];
    assert_eq!((owner.kind.as_str(), owner.name.as_str(), owner.controller), ("CloudProvisioned", "web-1", Some(true)));
    let detected = await_events(&client, &ns, "DriftDetected", 1).await;
    assert_eq!(event_count(&detected), 1, "one DriftDetected Event: {detected:?}");
    assert_eq!(detected[0].regarding.as_ref().and_then(|r| r.name.as_deref()), Some("web-1"));
    let p = get_provisioned(&client, &ns, "web-1").await;
    assert_eq!(condition(&p, "InSync"), Some(("False".into(), "Drifted".into())));
    assert_eq!(p.status.as_ref().unwrap().drifted_fields, ["size_slug"]);

    let drift_name = drift.name_any();
    annotate_accept(&client, &ns, &drift_name, Some("alice")).await;
    let accepted = eventually(WAIT, "the drift Accepted", || async {
        let d = Api::<Drift>::namespaced(client.clone(), &ns).get(&drift_name).await.ok()?;
        (d.status.as_ref()?.phase == DriftPhase::Accepted && !d.annotations().contains_key(ANNOTATION_ACCEPT))
            .then_some(d)
    })
    .await;
    let status = accepted.status.unwrap();
    assert_eq!(status.resolved_by.as_deref(), Some("alice"));
    assert!(status.resolved_time.is_some());
    assert!(status.message.unwrap().contains("commit `spec.desired.size_slug: s-2vcpu-4gb` to Git"));
    let p = eventually(WAIT, "the parent in sync at generation 2", || async {
        let p = get_provisioned(&client, &ns, "web-1").await;
        (p.status.as_ref()?.observed_generation == Some(2) && condition(&p, "InSync")?.0 == "True").then_some(p)
    })
    .await;
    assert_eq!(p.spec.desired.get("size_slug").unwrap_or_default(), json!("s-2vcpu-4gb"));
    assert_eq!(p.metadata.generation, Some(2));
    let managers: Vec<_> = p.managed_fields().iter().filter_map(|m| m.manager.clone()).collect();
    assert!(managers.iter().any(|m| m == FIELD_MANAGER), "the accept is written under our field manager: {managers:?}");
    assert_eq!(p.status.unwrap().open_drifts, 0);
    assert!(drifts_in(&client, &ns, DriftPhase::Open).await.is_empty());
    assert_eq!(event_count(&await_events(&client, &ns, "DriftAccepted", 1).await), 1);

    // Settled: a full resync later, nothing is written.
    let writes = controller.metric("arcadia_drift_api_writes_total");
    let reconciles = controller.metric("arcadia_drift_reconciles_total");
    tokio::time::sleep(Duration::from_secs(7)).await;
    let steady_reconciles = controller.metric("arcadia_drift_reconciles_total") - reconciles;
    let steady_writes = controller.metric("arcadia_drift_api_writes_total") - writes;
    eprintln!("steady state: {steady_reconciles} reconciles, {steady_writes} API writes");
    assert!(steady_reconciles >= 2.0, "periodic resync reconciles ran");
    assert_eq!(steady_writes, 0.0, "zero writes in steady state");

    // The sweep summary lives on as metrics.
    let text = controller.get("/metrics").unwrap();
    for name in [
        "arcadia_drift_checked_total",
        "arcadia_drift_new_drift_total",
        "arcadia_drift_resolved_stale_total",
        "arcadia_drift_open_drifts",
        "arcadia_drift_reconcile_duration_seconds_bucket",
        "arcadia_drift_reconciles_total{result=\"ok\"}",
    ] {
        assert!(text.contains(name), "{name} missing from /metrics:\n{text}");
    }
    assert_eq!(controller.metric("arcadia_drift_new_drift_total"), 1.0);
    assert_eq!(controller.metric("arcadia_drift_accepted_total"), 1.0);
    assert_eq!(controller.get("/readyz").as_deref(), Some("ok: leading"));
}

#[tokio::test]
async fn moving_actual_then_fixed_elsewhere_closes_as_stale() {
    let client = common::client().await;
    let ns = common::namespace(&client, "stale").await;
    let res = resource(&client, live("s-2vcpu-4gb", &["web"], now())).await;
    provisioned(&client, &ns, "web-1", &res, json!({"size_slug": "s-1vcpu-1gb"})).await;
    let _controller = ControllerProcess::start(&ns, &[]);
    let first =
        eventually(WAIT, "an open drift", || async { drifts_in(&client, &ns, DriftPhase::Open).await.pop() }).await;

    let started = Instant::now();
    set_live(&client, &res, live("s-4vcpu-8gb", &["web"], now())).await;
    let moved = eventually(WAIT, "actual to follow the live value", || async {
        let d = drifts_in(&client, &ns, DriftPhase::Open).await.pop()?;
        (d.status.as_ref()?.actual == json!("s-4vcpu-8gb")).then_some(d)
    })
    .await;
    eprintln!("latency, CloudResource status change -> Drift updated: {:?}", started.elapsed());
    assert_eq!(moved.name_any(), first.name_any(), "the same Drift, not a second one");

    // Latency over more changes, watched from outside as a user would see it.
    let drift_api: Api<Drift> = Api::namespaced(client.clone(), &ns);
    let mut latencies = Vec::new();
    for i in 0..20 {
        let size = format!("s-{}vcpu", 10 + i);
        let started = Instant::now();
        set_live(&client, &res, live(&size, &["web"], now())).await;
        // A tight poll, so the figure is the controller's latency rather than the poll interval.
        loop {
            let d = drift_api.get(&first.name_any()).await.unwrap();
            if d.status.is_some_and(|s| s.actual == json!(size)) {
                break;
            }
            assert!(started.elapsed() < WAIT, "the drift did not follow {size}");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        latencies.push(started.elapsed());
    }
    latencies.sort();
    eprintln!(
        "latency over 20 changes (status patch -> Drift read back): p50 {:?}, max {:?}",
        latencies[10], latencies[19]
    );
    set_live(&client, &res, live("s-4vcpu-8gb", &["web"], now())).await;
    assert_eq!(drifts(&client, &ns).await.len(), 1);
    assert!(event_count(&await_events(&client, &ns, "DriftChanged", 1).await) >= 1);

    set_live(&client, &res, live("s-1vcpu-1gb", &["web"], now())).await;
    let stale = eventually(WAIT, "the drift closed as Stale", || async {
        drifts_in(&client, &ns, DriftPhase::Stale).await.pop()
    })
    .await;
    assert!(stale.status.as_ref().unwrap().resolved_time.is_some());
    assert_eq!(stale.labels().get(LABEL_PHASE).map(String::as_str), Some("Stale"));
    assert_eq!(event_count(&await_events(&client, &ns, "DriftResolved", 1).await), 1);
    let p = get_provisioned(&client, &ns, "web-1").await;
    assert_eq!(condition(&p, "InSync"), Some(("True".into(), "InSync".into())));

    // Drifting again reuses the object and keeps the closed episode as history.
    set_live(&client, &res, live("s-8vcpu-16gb", &["web"], now())).await;
    let reopened =
        eventually(WAIT, "the drift reopened", || async { drifts_in(&client, &ns, DriftPhase::Open).await.pop() })
            .await;
    assert_eq!(reopened.name_any(), first.name_any());
    assert_eq!(reopened.status.unwrap().history[0].phase, DriftPhase::Stale);
}

#[tokio::test]
async fn list_order_missing_resources_and_stale_inventory() {
    let client = common::client().await;
    let ns = common::namespace(&client, "inventory").await;
    let tagged = resource(&client, live("s-1", &["web", "prod"], now())).await;
    provisioned(&client, &ns, "reordered", &tagged, json!({"tags": ["prod", "web", "prod"], "vcpus": "2"})).await;
    provisioned(&client, &ns, "ghost", "digitalocean-droplet-does-not-exist", json!({"size_slug": "a", "region": "b"}))
        .await;
    let old = resource(&client, live("s-2vcpu-4gb", &[], ago(7200))).await;
    provisioned(&client, &ns, "old", &old, json!({"size_slug": "s-1vcpu-1gb"})).await;
    let _controller = ControllerProcess::start(&ns, &[]);

    let p = eventually(WAIT, "reordered lists in sync", || async {
        let p = get_provisioned(&client, &ns, "reordered").await;
        condition(&p, "InSync").filter(|c| c.0 == "True").map(|_| p)
    })
    .await;
    assert_eq!(p.status.unwrap().open_drifts, 0);

    let ghost = eventually(WAIT, "the missing resource reported", || async {
        let p = get_provisioned(&client, &ns, "ghost").await;
        condition(&p, "ResourceFound").filter(|c| c.0 == "False").map(|_| p)
    })
    .await;
    assert_eq!(condition(&ghost, "ResourceFound").unwrap().1, "NotFound");
    assert_eq!(condition(&ghost, "InSync").unwrap().0, "Unknown");

    // Stale inventory opens a drift, but its fix cannot close it while the inventory stays old.
    eventually(WAIT, "a drift from old inventory", || async {
        let open = drifts_in(&client, &ns, DriftPhase::Open).await;
        open.iter().any(|d| d.spec.provisioned_ref.name == "old").then_some(())
    })
    .await;
    set_live(&client, &old, live("s-1vcpu-1gb", &[], ago(7200))).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let open: Vec<_> = drifts_in(&client, &ns, DriftPhase::Open).await;
    assert_eq!(open.len(), 1, "not closed as Stale from stale inventory: {open:?}");
    let p = get_provisioned(&client, &ns, "old").await;
    assert_eq!(condition(&p, "InventoryFresh"), Some(("False".into(), "InventoryStale".into())));
    // Fresh inventory closes it.
    set_live(&client, &old, live("s-1vcpu-1gb", &[], now())).await;
    eventually(WAIT, "closed once the inventory is fresh", || async {
        drifts_in(&client, &ns, DriftPhase::Stale).await.pop()
    })
    .await;

    // A resource that disappears from the provider: reported once, no drift per field.
    set_live(&client, &tagged, CloudResourceStatus { missing: true, ..live("s-1", &["web", "prod"], now()) }).await;
    eventually(WAIT, "gone from the provider", || async {
        let p = get_provisioned(&client, &ns, "reordered").await;
        condition(&p, "ResourceFound").filter(|c| c.1 == "GoneFromProvider")
    })
    .await;
    assert_eq!(drifts(&client, &ns).await.len(), 1, "only the drift of `old` exists");
    let missing = await_events(&client, &ns, "ResourceMissing", 2).await;
    let about: Vec<_> = missing
        .iter()
        .map(|e| {
            (e.regarding.as_ref().and_then(|r| r.name.clone()), e.note.clone(), e.series.as_ref().map(|s| s.count))
        })
        .collect();
    assert_eq!(missing.len(), 2, "one per missing resource: {about:?}");
}

#[tokio::test]
async fn accept_refusals_change_nothing_and_say_why() {
    let client = common::client().await;
    let ns = common::namespace(&client, "refuse").await;
    let res = resource(&client, live("s-2vcpu-4gb", &[], now())).await;
    provisioned(&client, &ns, "web-1", &res, json!({"size_slug": "s-1vcpu-1gb"})).await;
    let mut controller = ControllerProcess::start(&ns, &[]);
    let drift =
        eventually(WAIT, "an open drift", || async { drifts_in(&client, &ns, DriftPhase::Open).await.pop() }).await;
    let name = drift.name_any();

    // The live value moves while the controller is down, then someone accepts the recorded value.
    assert_eq!(controller.terminate(), Some(0), "graceful exit on SIGTERM");
    set_live(&client, &res, live("s-4vcpu-8gb", &[], now())).await;
    annotate_accept(&client, &ns, &name, None).await;
    let _controller = ControllerProcess::start(&ns, &[]);
    let refused = eventually(WAIT, "the accept refused", || async {
        let d = Api::<Drift>::namespaced(client.clone(), &ns).get(&name).await.ok()?;
        (!d.annotations().contains_key(ANNOTATION_ACCEPT)).then_some(d)
    })
    .await;
    let status = refused.status.unwrap();
    assert_eq!(status.phase, DriftPhase::Open);
    assert!(status.message.unwrap().contains("the live value moved from s-2vcpu-4gb to s-4vcpu-8gb"));
    assert_eq!(
        get_provisioned(&client, &ns, "web-1").await.spec.desired.get("size_slug").unwrap_or_default(),
        json!("s-1vcpu-1gb")
    );
    assert_eq!(get_provisioned(&client, &ns, "web-1").await.metadata.generation, Some(1));

    // Fixed elsewhere: Stale. Accepting a Stale drift is refused too.
    set_live(&client, &res, live("s-1vcpu-1gb", &[], now())).await;
    eventually(WAIT, "Stale", || async { drifts_in(&client, &ns, DriftPhase::Stale).await.pop() }).await;
    annotate_accept(&client, &ns, &name, Some("bob")).await;
    let refused = eventually(WAIT, "the accept of a Stale drift refused", || async {
        let d = Api::<Drift>::namespaced(client.clone(), &ns).get(&name).await.ok()?;
        (!d.annotations().contains_key(ANNOTATION_ACCEPT)).then_some(d)
    })
    .await;
    let status = refused.status.unwrap();
    assert_eq!(status.phase, DriftPhase::Stale);
    assert!(status.resolved_by.is_none());
    assert!(status.message.unwrap().starts_with("accept refused: the drift is Stale"));
    assert_eq!(get_provisioned(&client, &ns, "web-1").await.metadata.generation, Some(1));
    let refusals = await_events(&client, &ns, "AcceptRefused", 2).await;
    assert_eq!(event_count(&refusals), 2, "{refusals:?}");
    assert!(refusals.iter().all(|e| e.type_.as_deref() == Some("Warning")));
}

#[tokio::test]
async fn a_killed_controller_resumes_without_duplicates_and_finishes_an_accept() {
    let client = common::client().await;
    let ns = common::namespace(&client, "restart").await;
    let res = resource(&client, live("s-2vcpu-4gb", &["web"], now())).await;
    for i in 0..15 {
        provisioned(&client, &ns, &format!("web-{i}"), &res, json!({"size_slug": "s-1vcpu-1gb", "tags": ["db"]})).await;
    }
    let mut controller = ControllerProcess::start(&ns, &[]);
    eventually(WAIT, "the first drifts written", || async { (!drifts(&client, &ns).await.is_empty()).then_some(()) })
        .await;
    controller.kill();
    let _controller = ControllerProcess::start(&ns, &[]);
    let open = eventually(WAIT, "30 open drifts", || async {
        let open = drifts_in(&client, &ns, DriftPhase::Open).await;
        (open.len() >= 30).then_some(open)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let all = drifts(&client, &ns).await;
    assert_eq!(all.len(), 30, "one Drift per (provisioned, field), none duplicated");
    assert_eq!(open.len(), 30);

    // A half-done accept: the parent already holds the live value, the drift is still Open and annotated.
    drop(_controller);
    let target = all.iter().find(|d| d.spec.provisioned_ref.name == "web-0" && d.spec.field == "size_slug").unwrap();
    let adopt = json!({"apiVersion": "arcadia.cloud/v1alpha1", "kind": "CloudProvisioned", "spec": {"desired": {"size_slug": "s-2vcpu-4gb"}}});
    Api::<CloudProvisioned>::namespaced(client.clone(), &ns)
        .patch("web-0", &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(adopt))
        .await
        .unwrap();
    annotate_accept(&client, &ns, &target.name_any(), Some("carol")).await;
    let _controller = ControllerProcess::start(&ns, &[]);
    let done = eventually(WAIT, "the accept finished", || async {
        let d = Api::<Drift>::namespaced(client.clone(), &ns).get(&target.name_any()).await.ok()?;
        (d.status.as_ref()?.phase != DriftPhase::Open).then_some(d)
    })
    .await;
    let status = done.status.unwrap();
    assert_eq!(status.phase, DriftPhase::Accepted, "never closed as Stale");
    assert_eq!(status.resolved_by.as_deref(), Some("carol"));
}

#[tokio::test]
async fn of_two_replicas_only_the_leader_writes_and_the_other_takes_over() {
    let client = common::client().await;
    let ns = common::namespace(&client, "ha").await;
    let res = resource(&client, live("s-2vcpu-4gb", &[], now())).await;
    provisioned(&client, &ns, "web-1", &res, json!({"size_slug": "s-1vcpu-1gb"})).await;
    let mut a = ControllerProcess::start(&ns, &["--identity", "replica-a"]);
    let b = ControllerProcess::start(&ns, &["--identity", "replica-b"]);
    eventually(WAIT, "a drift", || async { drifts_in(&client, &ns, DriftPhase::Open).await.pop() }).await;
    let (leader, standby) = eventually(WAIT, "one leader", || async {
        match (a.metric("arcadia_drift_leader"), b.metric("arcadia_drift_leader")) {
            (x, y) if x == 1.0 && y == 0.0 => Some(("a", "b")),
            (x, y) if x == 0.0 && y == 1.0 => Some(("b", "a")),
            _ => None,
        }
    })
    .await;
    let (lead, stand) = if leader == "a" { (&a, &b) } else { (&b, &a) };
    assert!(lead.metric("arcadia_drift_api_writes_total") > 0.0);
    assert_eq!(stand.metric("arcadia_drift_api_writes_total"), 0.0, "the standby ({standby}) writes nothing");
    // The standby says so once it waits on the lease (it may still be starting when the leader is known).
    eventually(WAIT, "the standby's /readyz", || async {
        (stand.get("/readyz").as_deref() == Some("ok: standby, waiting for the leader lease")).then_some(())
    })
    .await;

    // Kill the leader without a chance to release the lease; the standby takes over.
    let (mut survivor, killed_at) = if leader == "a" {
        a.kill();
        (b, Instant::now())
    } else {
        drop(b);
        (a, Instant::now())
    };
    set_live(&client, &res, live("s-4vcpu-8gb", &[], now())).await;
    eventually(WAIT, "the new leader updates the drift", || async {
        let d = drifts_in(&client, &ns, DriftPhase::Open).await.pop()?;
        (d.status.as_ref()?.actual == json!("s-4vcpu-8gb")).then_some(())
    })
    .await;
    eprintln!("takeover after SIGKILL of the leader (lease 3s): {:?}", killed_at.elapsed());
    assert_eq!(survivor.metric("arcadia_drift_leader"), 1.0);
    assert_eq!(survivor.terminate(), Some(0));
}

#[tokio::test]
async fn a_malformed_object_gets_a_condition_and_the_good_ones_still_reconcile() {
    let client = common::client().await;
    let ns = common::namespace(&client, "malformed").await;
    let res = resource(&client, live("s-2vcpu-4gb", &[], now())).await;
    provisioned(&client, &ns, "bad", "Not_A_Valid/Name", json!({"size_slug": "x"})).await;
    provisioned(&client, &ns, "good", &res, json!({"size_slug": "s-1vcpu-1gb"})).await;
    let _controller = ControllerProcess::start(&ns, &[]);
    let bad = eventually(WAIT, "a condition on the malformed object", || async {
        let p = get_provisioned(&client, &ns, "bad").await;
        condition(&p, "InSync").map(|_| p)
    })
    .await;
    let c = bad.status.unwrap().conditions.into_iter().find(|c| c.type_ == "InSync").unwrap();
    assert_eq!((c.status.as_str(), c.reason.as_str()), ("Unknown", "InvalidSpec"));
    assert!(c.message.contains("\"Not_A_Valid/Name\" is not a valid CloudResource name"), "{}", c.message);
    eventually(WAIT, "the good one drifted", || async {
        drifts_in(&client, &ns, DriftPhase::Open).await.into_iter().find(|d| d.spec.provisioned_ref.name == "good")
    })
    .await;
}

#[tokio::test]
async fn readyz_says_ready_only_once_the_leader_caches_are_synced() {
    let client = common::client().await;
    let ns = common::namespace(&client, "ready").await;
    // A request budget of one every 2s stretches the initial lists over
    // seconds, so the window between "serving" and "synced" can be seen.
    let controller =
        ControllerProcess::start(&ns, &["--leader-election", "false", "--api-qps", "0.5", "--api-burst", "1"]);
    let first = controller.get("/readyz");
    assert_eq!(first.as_deref(), Some("starting: leading, caches not yet synced"), "log:\n{}", controller.log_text());
    eventually(WAIT, "ready", || async { (controller.get("/readyz").as_deref() == Some("ok: leading")).then_some(()) })
        .await;
    assert!(
        controller.log_text().contains("caches synced; reconciling"),
        "ready before the caches said they were synced; log:\n{}",
        controller.log_text()
    );
    assert_eq!(controller.metric("arcadia_drift_leader"), 1.0);
}

/// The fence a leader checks right before it acts: open only while this
/// replica holds the Lease, as read from the API server, and for the renew
/// deadline after that read at most, by a clock that runs on while the
/// process is stopped.
#[tokio::test]
async fn the_fence_holds_only_for_the_holder_and_only_for_the_renew_deadline() {
    use arcadia_drift::runtime::fence::Fence;
    use k8s_openapi::api::coordination::v1::Lease;
    let client = common::client().await;
    let ns = common::namespace(&client, "fence").await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
    let lease = |holder: &str| {
        json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "arcadia-drift"},
            "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15,
                "renewTime": k8s_openapi::jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()}})
    };
    let apply = |body: Value| {
        let leases = leases.clone();
        async move { leases.patch("arcadia-drift", &PatchParams::apply("test").force(), &Patch::Apply(body)).await.unwrap() }
    };
    let fence = Fence::on_lease(leases.clone(), "arcadia-drift", "replica-a", Duration::from_secs(2));
    assert!(!fence.holds(), "closed until confirmed");
    assert!(fence.confirm().await.unwrap_err().to_string().contains("cannot read Lease"), "no Lease yet");
    apply(lease("replica-b")).await;
    let refused = fence.confirm().await.unwrap_err().to_string();
    assert!(refused.contains("held by \"replica-b\""), "{refused}");
    assert!(!fence.holds());
    apply(lease("replica-a")).await;
    fence.confirm().await.unwrap();
    assert!(fence.holds());
    // Nothing confirms it for longer than the renew deadline (a stopped process, a partition): it closes.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert!(!fence.holds(), "closed past the renew deadline");
    // Taken over meanwhile: a confirmation closes it at once.
    fence.confirm().await.unwrap();
    apply(lease("replica-b")).await;
    assert!(fence.confirm().await.is_err() && !fence.holds());
}

/// `kubectl wait --for=condition=Ready` works on a CloudProvisioned as on
/// any kstatus-compatible object: True in sync, False with the reason while
/// drifted, True again once the live value is back.
#[tokio::test]
async fn kubectl_wait_for_ready_follows_the_drift() {
    let client = common::client().await;
    let ns = common::namespace(&client, "ready").await;
    let res = resource(&client, live("s-1vcpu-1gb", &[], now())).await;
    provisioned(&client, &ns, "web-ok", &res, json!({"size_slug": "s-1vcpu-1gb"})).await;
    provisioned(&client, &ns, "web-drifted", &res, json!({"size_slug": "s-2vcpu-4gb"})).await;
    let _controller = ControllerProcess::start(&ns, &[]);
    let wait = |name: &str, condition: &str| {
        common::kubectl(&[
            "wait",
            "-n",
            &ns,
            &format!("--for=condition={condition}"),
            "--timeout=60s",
            &format!("cloudprovisioned/{name}"),
        ])
    };
    let ok = wait("web-ok", "Ready");
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    let drifted = wait("web-drifted", "Ready=False");
    assert!(drifted.status.success(), "{}", String::from_utf8_lossy(&drifted.stderr));
    let reason = common::kubectl_ok(&[
        "get",
        "-n",
        &ns,
        "cloudprovisioned/web-drifted",
        "-o",
        "jsonpath={.status.conditions[?(@.type==\"Ready\")].reason}",
    ]);
    assert_eq!(reason, "Drifted");
    let generation = common::kubectl_ok(&[
        "get",
        "-n",
        &ns,
        "cloudprovisioned/web-drifted",
        "-o",
        "jsonpath={.metadata.generation} {.status.conditions[?(@.type==\"Ready\")].observedGeneration}",
    ]);
    let (g, observed) = generation.split_once(' ').unwrap();
    assert_eq!(g, observed, "observedGeneration is the spec's generation");
    set_live(&client, &res, live("s-2vcpu-4gb", &[], now())).await;
    let back = wait("web-drifted", "Ready");
    assert!(back.status.success(), "{}", String::from_utf8_lossy(&back.stderr));
}

/// The decisions of a namespace outlive a restore that recreates every
/// CloudProvisioned and Drift without status (Velero's default for custom
/// resources): an ignored and a snoozed drift come back as they were, and an
/// overlay accept not yet in Git is still pending; nothing reopens.
#[tokio::test]
async fn decisions_survive_a_restore_without_status() {
    let client = common::client().await;
    let ns = common::namespace(&client, "restore").await;
    let res = resource(&client, live("s-2vcpu-4gb", &["env:prod"], now())).await;
    provisioned(&client, &ns, "web-ign", &res, json!({"size_slug": "s-1vcpu-1gb"})).await;
    provisioned(&client, &ns, "web-snz", &res, json!({"region": "ams3"})).await;
    let acc = provisioned(&client, &ns, "web-acc", &res, json!({"tags": ["env:dev"]})).await;
    let mut controller = ControllerProcess::start(&ns, &["--accept-mode", "overlay"]);
    let drifts_api: Api<Drift> = Api::namespaced(client.clone(), &ns);
    let drift_of = |owner: &str| {
        let (drifts_api, owner) = (drifts_api.clone(), owner.to_owned());
        async move {
            eventually(WAIT, &format!("the Drift of {owner}"), || async {
                let all = drifts_api.list(&ListParams::default()).await.ok()?.items;
                all.into_iter().find(|d| d.spec.provisioned_ref.name == owner && d.status.is_some())
            })
            .await
        }
    };
    let annotate = |name: String, annotations: Value| {
        let drifts_api = drifts_api.clone();
        async move {
            let patch = json!({"metadata": {"annotations": annotations}});
            drifts_api.patch(&name, &PatchParams::default(), &Patch::Merge(patch)).await.unwrap();
        }
    };
    let until = (k8s_openapi::jiff::Timestamp::now() + k8s_openapi::jiff::SignedDuration::from_hours(2)).to_string();
    annotate(
        drift_of("web-ign").await.name_any(),
        json!({"arcadia.cloud/ignore": "true", "arcadia.cloud/ignore-reason": "load test"}),
    )
    .await;
    annotate(drift_of("web-snz").await.name_any(), json!({"arcadia.cloud/snooze-until": until})).await;
    annotate_accept(&client, &ns, &drift_of("web-acc").await.name_any(), Some("alice")).await;
    let phase_of = |owner: &'static str, want: DriftPhase| {
        let drifts_api = drifts_api.clone();
        async move {
            eventually(WAIT, &format!("{owner} {want}"), || async {
                let all = drifts_api.list(&ListParams::default()).await.ok()?.items;
                all.into_iter().find(|d| {
                    d.spec.provisioned_ref.name == owner && d.status.as_ref().is_some_and(|s| s.phase == want)
                })
            })
            .await
        }
    };
    phase_of("web-ign", DriftPhase::Ignored).await;
    phase_of("web-snz", DriftPhase::Snoozed).await;
    phase_of("web-acc", DriftPhase::Accepted).await;
    let provisioned_api: Api<CloudProvisioned> = Api::namespaced(client.clone(), &ns);
    eventually(WAIT, "the overlay accept pending", || async {
        let p = provisioned_api.get(&acc.name_any()).await.ok()?;
        (!p.status?.pending_git_changes.is_empty()).then_some(())
    })
    .await;
    // Let the journal be written (it is the reconcile's last write), then restore.
    tokio::time::sleep(Duration::from_secs(2)).await;
    controller.kill();
    let backup_p = provisioned_api.list(&ListParams::default()).await.unwrap().items;
    let backup_d = drifts_api.list(&ListParams::default()).await.unwrap().items;
    for p in &backup_p {
        provisioned_api.delete(&p.name_any(), &Default::default()).await.unwrap();
    }
    for d in &backup_d {
        let _ = drifts_api.delete(&d.name_any(), &Default::default()).await;
    }
    eventually(WAIT, "everything deleted", || async {
        let left = provisioned_api.list(&ListParams::default()).await.ok()?.items.len()
            + drifts_api.list(&ListParams::default()).await.ok()?.items.len();
        (left == 0).then_some(())
    })
    .await;
    let mut uids = std::collections::BTreeMap::new();
    for p in backup_p {
        let fresh = CloudProvisioned::new(&p.name_any(), p.spec.clone());
        let created = provisioned_api.create(&PostParams::default(), &fresh).await.unwrap();
        uids.insert(p.uid().unwrap(), created.uid().unwrap());
    }
    for d in backup_d {
        let mut fresh = Drift::new(&d.name_any(), d.spec.clone());
        fresh.metadata.labels = d.metadata.labels.clone();
        let mut owners = d.metadata.owner_references.clone().unwrap_or_default();
        owners.iter_mut().for_each(|o| o.uid = uids.get(&o.uid).cloned().unwrap_or_default());
        fresh.metadata.owner_references = Some(owners);
        drifts_api.create(&PostParams::default(), &fresh).await.unwrap();
    }
    let _controller = ControllerProcess::start(&ns, &["--accept-mode", "overlay"]);
    let ign = phase_of("web-ign", DriftPhase::Ignored).await;
    assert!(ign.status.unwrap().message.unwrap().contains("restored from the decision journal"));
    phase_of("web-snz", DriftPhase::Snoozed).await;
    let pending = eventually(WAIT, "the overlay accept pending again", || async {
        let p = provisioned_api.get("web-acc").await.ok()?;
        let pending = p.status?.pending_git_changes;
        (!pending.is_empty()).then_some(pending)
    })
    .await;
    assert_eq!(pending[0].value, json!(["env:prod"]));
    tokio::time::sleep(Duration::from_secs(4)).await;
    let open = drifts_in(&client, &ns, DriftPhase::Open).await;
    assert!(open.is_empty(), "nothing reopened: {open:?}");
    assert!(!events(&client, &ns, "DecisionRestored").await.is_empty(), "the restore is said in an Event");
}

/// The CloudProvisioned watch lags 35 s behind the API server (longer than
/// the 30 s a reconcile waits for its own writes to show): two overlay
/// accepts in that window keep both entries, nothing reopens, and no spec
/// change is made up: a write planned on the old copy fails its
/// resourceVersion precondition and is planned again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_watch_neither_reopens_nor_loses_an_overlay_accept() {
    let client = common::client().await;
    let ns = common::namespace(&client, "lag").await;
    let res = resource(&client, live("s-2vcpu-4gb", &[], now())).await;
    provisioned(&client, &ns, "web-1", &res, json!({"size_slug": "s-1vcpu-1gb", "region": "ams3"})).await;
    let proxy = common::lagging_proxy::LaggingProxy::start(client.clone(), "cloudprovisioneds").await;
    let kubeconfig = proxy.kubeconfig();
    let _controller = ControllerProcess::start_with_env(
        &ns,
        &["--accept-mode", "overlay", "--resync-interval", "1h"],
        &[("KUBECONFIG", kubeconfig.to_str().unwrap())],
    );
    let both = eventually(WAIT, "two Open drifts", || async {
        let open = drifts_in(&client, &ns, DriftPhase::Open).await;
        (open.len() == 2).then_some(open)
    })
    .await;
    *proxy.lag.lock().unwrap() = Duration::from_secs(35);
    for d in &both {
        annotate_accept(&client, &ns, &d.name_any(), Some("alice")).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let provisioned_api: Api<CloudProvisioned> = Api::namespaced(client.clone(), &ns);
    let pending = eventually(Duration::from_secs(120), "both overlay accepts pending", || async {
        let p = provisioned_api.get("web-1").await.ok()?;
        let pending = p.status?.pending_git_changes;
        (pending.len() == 2).then_some(pending)
    })
    .await;
    let mut fields: Vec<&str> = pending.iter().map(|e| e.field.as_str()).collect();
    fields.sort();
    assert_eq!(fields, ["region", "size_slug"]);
    *proxy.lag.lock().unwrap() = Duration::ZERO;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let accepted = drifts_in(&client, &ns, DriftPhase::Accepted).await;
    assert_eq!(accepted.len(), 2, "both accepted: {accepted:?}");
    assert_eq!(event_count(&events(&client, &ns, "DriftDetected").await), 2, "no episode reopened");
    for d in accepted {
        let message = d.status.unwrap().message.unwrap_or_default();
        assert!(!message.contains("spec change"), "no spec change was made up: {message}");
    }
}
