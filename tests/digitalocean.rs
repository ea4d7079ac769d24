//! The DigitalOcean inventory against a fake of the API served on loopback:
//! pagination, rate limits, retries, malformed and partial answers, and the
//! sync into CloudResource objects on the real local control plane.

mod common;

use arcadia_drift::api::{CloudProvisioned, CloudResource, CloudResourceSpec, Fields, LABEL_SOURCE};
use arcadia_drift::inventory::InventoryMetrics;
use arcadia_drift::inventory::{SyncSettings, Syncer};
use arcadia_drift::providers::digitalocean::client::{ClientConfig, DoClient, DoError, Token};
use arcadia_drift::providers::digitalocean::{DigitalOcean, DoType};
use common::fake_do::{FakeDo, Fault, TOKEN, droplet};
use futures::StreamExt;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use serde_json::json;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

fn config(fake: &FakeDo) -> ClientConfig {
    let mut c = ClientConfig::new(&fake.url, Token::new(TOKEN));
    c.requests_per_second = 1000.0;
    c.burst = 1000.0;
    c.backoff = Duration::from_millis(20);
    c.timeout = Duration::from_secs(5);
    c
}

fn do_source(fake: &FakeDo) -> DigitalOcean {
    DigitalOcean::new(DoClient::new(config(fake)).unwrap(), vec![DoType::Droplet])
}

/// Droplet ids unique across tests and runs (CloudResources are cluster-scoped).
fn fresh_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let base =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_micros() as u64 % 1_000_000_000;
    base * 1000 + NEXT.fetch_add(1, Ordering::Relaxed)
}

#[tokio::test]
async fn lists_three_pages_and_gpu_droplets() {
    let fake = FakeDo::start().await;
    fake.with(|s| s.page_size = 2);
    for i in 1..=5 {
        fake.add("/v2/droplets", droplet(i, &format!("web-{i}"), "s-1vcpu-1gb", "nyc3", &["web"]));
    }
    fake.add_gpu(droplet(99, "gpu-1", "gpu-h100x1-80gb", "tor1", &[]));
    let listing = do_source(&fake).list(DoType::Droplet).await.unwrap();
    let ids: Vec<_> = listing.items.iter().map(|o| o.id.as_str()).collect();
    assert_eq!(ids, ["1", "2", "3", "4", "5", "99"]);
    assert_eq!(listing.requests, 4, "three pages of droplets and one of GPU droplets");
    assert!(!listing.short);
    let requests = fake.requests();
    assert_eq!(requests[0], "/v2/droplets?per_page=200");
    assert_eq!(requests[1], "/v2/droplets?page=2&per_page=2", "follows links.pages.next on our own host");
    assert_eq!(requests[3], "/v2/droplets?type=gpus&per_page=200");
}

#[tokio::test]
async fn an_item_added_between_pages_is_listed_once() {
    let fake = FakeDo::start().await;
    fake.with(|s| s.page_size = 2);
    for i in 1..=4 {
        fake.add("/v2/droplets", droplet(i, "d", "s-1", "nyc3", &[]));
    }
    // Inserted at the front after page 1: offset paging shows droplet 2 again on page 2.
    fake.insert_after_page(1, droplet(50, "new", "s-1", "nyc3", &[]));
    let listing = do_source(&fake).list(DoType::Droplet).await.unwrap();
    let mut ids: Vec<_> = listing.items.iter().map(|o| o.id.clone()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), listing.items.len(), "no duplicates");
    assert!(listing.items.iter().any(|o| o.id == "4"));
}

#[tokio::test]
async fn honours_retry_after_on_429() {
    let fake = FakeDo::start().await;
    fake.add("/v2/droplets", droplet(1, "d", "s-1", "nyc3", &[]));
    fake.fault(Fault::Status(429, Some(1)));
    let started = Instant::now();
    let listing = do_source(&fake).list(DoType::Droplet).await.unwrap();
    assert_eq!(listing.items.len(), 1);
    assert!(started.elapsed() >= Duration::from_secs(1), "waited the retry-after: {:?}", started.elapsed());
}

#[tokio::test]
async fn retries_server_errors_and_truncated_bodies() {
    let fake = FakeDo::start().await;
    fake.add("/v2/droplets", droplet(1, "d", "s-1", "nyc3", &[]));
    fake.fault(Fault::Status(500, None));
    fake.fault(Fault::Status(503, None));
    fake.fault(Fault::Truncated);
    let do_client = do_source(&fake);
    let listing = do_client.list(DoType::Droplet).await.unwrap();
    assert_eq!(listing.items.len(), 1);
    assert_eq!(do_client.client.requests_sent(), 5, "three failures, then the two pages of the listing");
    assert_eq!(do_client.client.rate_limit().limit, Some(5000), "rate-limit headers are read");

    for _ in 0..5 {
        fake.fault(Fault::Status(500, None));
    }
    let err = do_client.list(DoType::Droplet).await.unwrap_err();
    assert!(matches!(err, DoError::Server { status: 500, attempts: 5, .. }), "{err}");
    assert!(err.to_string().starts_with("GET /v2/droplets?per_page=200: server error 500 after 5 attempts"), "{err}");
}

#[tokio::test]
async fn malformed_json_and_a_bad_token_are_clear_errors() {
    let fake = FakeDo::start().await;
    fake.fault(Fault::Malformed);
    let err = do_source(&fake).list(DoType::Droplet).await.unwrap_err();
    assert!(matches!(err, DoError::Malformed { .. }));
    assert!(
        err.to_string().starts_with("GET /v2/droplets?per_page=200: the response is not the documented JSON"),
        "{err}"
    );

    let mut bad = config(&fake);
    bad = ClientConfig { token: Token::new("dop_v1_wrong_secret"), ..bad };
    let err =
        DigitalOcean::new(DoClient::new(bad).unwrap(), vec![DoType::Droplet]).list(DoType::Droplet).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, DoError::Unauthorized { .. }));
    assert!(text.contains("token is invalid or expired") && text.contains("Unable to authenticate you."), "{text}");
    assert!(!text.contains("wrong_secret"), "the token never appears: {text}");
}

#[tokio::test]
async fn other_collections_map_as_documented() {
    let fake = FakeDo::start().await;
    fake.add("/v2/volumes", json!({"id": "506f78a4-e098-11e5-ad9f-000f53306ae1", "name": "example", "size_gigabytes": 10,
        "droplet_ids": [3164444], "region": {"name": "New York 1", "slug": "nyc1"}, "filesystem_type": "ext4", "tags": ["aninterstingtag"]}));
    fake.add("/v2/load_balancers", json!({"id": "4de7ac8b-495b-4884-9a69-1050c6793cd6", "name": "example-lb-01", "ip": "104.131.186.241",
        "size_unit": 3, "status": "new", "region": {"name": "New York 3", "slug": "nyc3"}, "droplet_ids": [3164444], "tag": "",
        "forwarding_rules": [{"entry_protocol": "http", "entry_port": 80, "target_protocol": "http", "target_port": 80}]}));
    fake.add("/v2/databases", json!({"id": "9cc10173-e9ea-4176-9dbc-a4cee4c4ff30", "name": "backend", "engine": "pg", "version": "14",
        "num_nodes": 1, "size": "db-s-2vcpu-4gb", "region": "nyc3", "status": "online",
        "connection": {"uri": "postgres://doadmin:wv78n3zpz42xezdk@host:25060/defaultdb", "password": "wv78n3zpz42xezdk"}}));
    fake.add(
        "/v2/kubernetes/clusters",
        json!({"id": "bd5f5959-5e1e-4205-a714-a914373942af", "name": "prod-cluster-01", "region": "nyc1",
        "version": "1.18.6-do.0", "node_pools": [{"name": "frontend-pool", "size": "s-1vcpu-2gb", "count": 3}],
        "status": {"state": "provisioning", "message": "provisioning"}}),
    );
    fake.add(
        "/v2/firewalls",
        json!({"id": "bb4b2611-3d72-467b-8602-280330ecd65c", "name": "firewall", "status": "succeeded",
        "droplet_ids": [8043964], "tags": []}),
    );
    let do_client = do_source(&fake);
    let volume = &do_client.list(DoType::Volume).await.unwrap().items[0];
    assert_eq!(volume.status.region.as_deref(), Some("nyc1"));
    let lb = &do_client.list(DoType::LoadBalancer).await.unwrap().items[0];
    assert_eq!((lb.type_, lb.status.status.as_deref()), ("load_balancer", Some("new")));
    let db = &do_client.list(DoType::Database).await.unwrap().items[0];
    assert_eq!(db.status.size_slug.as_deref(), Some("db-s-2vcpu-4gb"));
    assert!(!serde_json::to_string(&db.status).unwrap().contains("wv78n3zpz42xezdk"), "credentials are never stored");
    let k8s = &do_client.list(DoType::KubernetesCluster).await.unwrap().items[0];
    assert_eq!(k8s.status.status.as_deref(), Some("provisioning"));
    let fw = &do_client.list(DoType::Firewall).await.unwrap().items[0];
    assert_eq!(fw.status.status.as_deref(), Some("succeeded"));
    assert!(do_client.get(DoType::Droplet, "12345").await.unwrap().is_none(), "404 on a direct GET is None");
}

/// A syncer writing into the real control plane, with a cache of
/// CloudResources as `run` has: compacted as the controller's (no uid, no
/// resourceVersion).
async fn syncer(fake: &FakeDo, source: &str) -> (Syncer, kube::Client) {
    let client = common::client().await;
    let (reader, writer) = reflector::store();
    let stream = watcher(Api::<CloudResource>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .modify(arcadia_drift::controller::caches::compact_resource)
        .reflect(writer)
        .applied_objects();
    tokio::spawn(stream.for_each(|_| async {}));
    reader.wait_until_ready().await.unwrap();
    let settings = SyncSettings {
        source: source.into(),
        interval: Duration::from_secs(3600),
        feed_interval: None,
        state_namespace: "default".into(),
        refresh_after: Duration::from_secs(1800),
        missing_retention: Duration::from_secs(2),
    };
    let source = std::sync::Arc::new(do_source(fake));
    let syncer = Syncer::new(client.clone(), source, reader, settings, InventoryMetrics::default());
    (syncer, client)
}

/// A droplet's actions come newest first, whatever order and however many
/// pages the API answers with (it documents no order).
#[tokio::test]
async fn a_droplets_actions_are_read_newest_first_across_pages() {
    let fake = FakeDo::start().await;
    let id = fresh_id();
    fake.add("/v2/droplets", droplet(id, "web", "s-1vcpu-1gb", "nyc3", &[]));
    let ids: Vec<u64> = (0..250).map(|_| fake.record_action(id, "droplet", "reboot", "completed")).collect();
    let actions = do_source(&fake).resource_actions(DoType::Droplet, &id.to_string()).await.unwrap();
    assert_eq!(actions.len(), 250, "every page read");
    assert_eq!(actions[0].id, *ids.last().unwrap(), "the newest first");
    assert!(actions.windows(2).all(|w| w[0].id > w[1].id));
    let pages = fake.requests().iter().filter(|r| r.starts_with(&format!("/v2/droplets/{id}/actions"))).count();
    assert_eq!(pages, 2, "200 a page");
}

/// A cache of one namespace's CloudProvisioneds (the controller's holds every
/// namespace's; the shared control plane also holds other tests' hostile ones).
async fn provisioned_cache(client: &kube::Client, ns: &str) -> reflector::Store<CloudProvisioned> {
    let (reader, writer) = reflector::store();
    let stream = watcher(Api::<CloudProvisioned>::namespaced(client.clone(), ns), watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .applied_objects();
    tokio::spawn(stream.for_each(|_| async {}));
    reader.wait_until_ready().await.unwrap();
    reader
}

/// A missing CloudResource no CloudProvisioned names is deleted after
/// --missing-retention (2 s here); one that is named stays, and so does one
/// that is not missing.
#[tokio::test]
async fn missing_and_unreferenced_resources_are_collected_after_the_retention() {
    let fake = FakeDo::start().await;
    let ids: Vec<u64> = (0..3).map(|_| fresh_id()).collect();
    for id in &ids {
        fake.add("/v2/droplets", droplet(*id, "web", "s-1vcpu-1gb", "nyc3", &[]));
    }
    let source = format!("test-{}", common::unique_suffix());
    let (syncer, client) = syncer(&fake, &source).await;
    let ns = common::namespace(&client, "collect").await;
    let syncer = syncer.collecting(provisioned_cache(&client, &ns).await);
    syncer.sync_once().await;
    let names: Vec<String> = ids.iter().map(|id| format!("digitalocean-droplet-{id}")).collect();
    cached(&client, &names[2], |_| true).await;
    let named = json!({"apiVersion": "arcadia.cloud/v1alpha1", "kind": "CloudProvisioned", "metadata": {"name": "web"},
        "spec": {"resourceRef": {"name": names[1]}, "desired": {"size_slug": "s-1vcpu-1gb"}}});
    Api::<CloudProvisioned>::namespaced(client.clone(), &ns)
        .patch("web", &PatchParams::apply("test"), &Patch::Apply(named))
        .await
        .unwrap();
    fake.remove_droplet(ids[0]);
    fake.remove_droplet(ids[1]);
    assert_eq!(syncer.sync_once().await.marked_missing, 2);
    cached(&client, &names[1], |r| r.status.as_ref().is_some_and(|s| s.missing)).await;
    syncer.sync_once().await;
    assert!(cloud_resource(&client, &names[0]).await.is_some(), "not before the retention");
    tokio::time::sleep(Duration::from_secs(3)).await;
    syncer.sync_once().await;
    common::eventually(Duration::from_secs(10), "the unreferenced one deleted", || async {
        cloud_resource(&client, &names[0]).await.is_none().then_some(())
    })
    .await;
    assert!(cloud_resource(&client, &names[1]).await.is_some(), "named by a CloudProvisioned: kept");
    assert!(cloud_resource(&client, &names[2]).await.is_some(), "not missing: kept");
    assert_eq!(syncer.metrics().collected.get(), 1);
}

async fn cloud_resource(client: &kube::Client, name: &str) -> Option<CloudResource> {
    Api::<CloudResource>::all(client.clone()).get_opt(name).await.unwrap()
}

/// Waits until the syncer's cache has seen `check` hold for the object.
async fn cached(client: &kube::Client, name: &str, check: impl Fn(&CloudResource) -> bool) {
    common::eventually(Duration::from_secs(10), name, || async {
        cloud_resource(client, name).await.filter(|r| check(r)).map(|_| ())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn sync_mirrors_droplets_and_marks_missing_only_on_proof() {
    let fake = FakeDo::start().await;
    fake.with(|s| s.page_size = 2);
    let ids: Vec<u64> = (0..3).map(|_| fresh_id()).collect();
    for (i, id) in ids.iter().enumerate() {
        fake.add("/v2/droplets", droplet(*id, &format!("web-{i}"), "s-1vcpu-1gb", "nyc3", &["web"]));
    }
    let source = format!("test-{}", common::unique_suffix());
    let (syncer, client) = syncer(&fake, &source).await;
    let report = syncer.sync_once().await;
    assert_eq!((report.listed, report.written, report.marked_missing), (3, 3, 0), "{report:?}");
    let name = format!("digitalocean-droplet-{}", ids[0]);
    let r = cloud_resource(&client, &name).await.expect("mirrored");
    assert_eq!(
        r.spec,
        CloudResourceSpec {
            provider: "digitalocean".into(),
            type_: "droplet".into(),
            id: ids[0].to_string(),
            region: None
        }
    );
    assert_eq!(r.labels().get(LABEL_SOURCE), Some(&source));
    let status = r.status.unwrap();
    assert_eq!(
        (status.size_slug.as_deref(), status.region.as_deref(), status.missing),
        (Some("s-1vcpu-1gb"), Some("nyc3"), false)
    );
    assert!(status.synced_time.is_some());
    cached(&client, &format!("digitalocean-droplet-{}", ids[2]), |_| true).await;

    // Nothing changed: nothing written.
    let quiet = syncer.sync_once().await;
    assert_eq!(quiet.written, 0, "{quiet:?}");

    // A listing that fails half-way (page 2 answers 500 to every retry) marks nothing missing.
    fake.remove_droplet(ids[1]);
    fake.with(|s| s.page_size = 1);
    fake.fail_page(2, 500, 5);
    let partial = syncer.sync_once().await;
    assert_eq!(partial.failed_types, ["droplet"], "{partial:?}");
    assert_eq!(partial.marked_missing, 0);
    assert!(
        !cloud_resource(&client, &format!("digitalocean-droplet-{}", ids[1])).await.unwrap().status.unwrap().missing
    );

    // A complete listing without it, confirmed by a 404 on a direct GET: missing.
    fake.with(|s| s.page_size = 200);
    let complete = syncer.sync_once().await;
    assert_eq!(complete.marked_missing, 1, "{complete:?}");
    let gone = cloud_resource(&client, &format!("digitalocean-droplet-{}", ids[1])).await.unwrap();
    let status = gone.status.unwrap();
    assert!(status.missing);
    assert_eq!(status.size_slug.as_deref(), Some("s-1vcpu-1gb"), "the last known state is kept");
    assert!(fake.requests().iter().any(|r| r == &format!("/v2/droplets/{}", ids[1])), "confirmed by a direct GET");

    // Objects of another source are never marked missing by this one.
    let other = format!("digitalocean-droplet-{}", fresh_id());
    let foreign = json!({"apiVersion": "arcadia.cloud/v1alpha1", "kind": "CloudResource",
        "metadata": {"name": other, "labels": {LABEL_SOURCE: "another-account"}},
        "spec": {"provider": "digitalocean", "type": "droplet", "id": "1"}});
    Api::<CloudResource>::all(client.clone())
        .patch(&other, &PatchParams::apply("test"), &Patch::Apply(foreign))
        .await
        .unwrap();
    cached(&client, &other, |_| true).await;
    assert_eq!(syncer.sync_once().await.marked_missing, 0);
}

#[tokio::test]
async fn requests_and_wall_time_for_1000_droplets() {
    let fake = FakeDo::start().await;
    for i in 0..1000 {
        fake.add("/v2/droplets", droplet(fresh_id(), &format!("bulk-{i}"), "s-1vcpu-1gb", "nyc3", &["bulk"]));
    }
    let (syncer, _client) = syncer(&fake, &format!("bulk-{}", common::unique_suffix())).await;
    let first = syncer.sync_once().await;
    assert_eq!((first.listed, first.written), (1000, 1000));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let second = syncer.sync_once().await;
    eprintln!(
        "1,000 droplets against the fake: first sync {} DigitalOcean requests, {} CloudResource writes, {:?}; \
         unchanged re-sync {} requests, {} writes, {:?}",
        first.requests, first.written, first.took, second.requests, second.written, second.took
    );
    assert_eq!(first.requests, 6, "five pages of 200 and one GPU page");
    assert_eq!(second.written, 0);
}

/// End to end: `arcadia-drift run` with a token syncs the fake account; a
/// droplet resized by hand becomes a Drift, a deleted one a missing resource.
#[tokio::test]
async fn a_resized_droplet_becomes_a_drift_and_a_deleted_one_goes_missing() {
    use arcadia_drift::api::{CloudProvisioned, CloudProvisionedSpec, Drift, DriftPhase, ResourceRef};
    use common::controller::ControllerProcess;
    use kube::api::{ListParams, PostParams};

    let fake = FakeDo::start().await;
    let id = fresh_id();
    fake.add("/v2/droplets", droplet(id, "web-1", "s-1vcpu-1gb", "nyc3", &["web"]));
    let client = common::client().await;
    let ns = common::namespace(&client, "do-e2e").await;
    let resource = format!("digitalocean-droplet-{id}");
    let spec = CloudProvisionedSpec {
        resource_ref: ResourceRef { name: resource.clone() },
        desired: Fields::try_from(json!({"size_slug": "s-1vcpu-1gb", "region": "nyc3", "tags": ["web"]})).unwrap(),
        ..Default::default()
    };
    Api::<CloudProvisioned>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &CloudProvisioned::new("web-1", spec))
        .await
        .unwrap();
    let source = format!("e2e-{}", common::unique_suffix());
    let controller = ControllerProcess::start_with_env(
        &ns,
        &["--digitalocean-api-url", &fake.url, "--inventory-sync-interval", "1s", "--inventory-source", &source],
        &[("DIGITALOCEAN_TOKEN", TOKEN)],
    );
    let provisioned: Api<CloudProvisioned> = Api::namespaced(client.clone(), &ns);
    let condition = |p: &CloudProvisioned, t: &str| {
        p.status.as_ref()?.conditions.iter().find(|c| c.type_ == t).map(|c| (c.status.clone(), c.reason.clone()))
    };
    common::eventually(Duration::from_secs(30), "in sync with the mirrored droplet", || async {
        let p = provisioned.get("web-1").await.ok()?;
        (condition(&p, "InSync")?.0 == "True").then_some(())
    })
    .await;

    fake.resize_droplet(id, "s-2vcpu-4gb");
    let drift = common::eventually(Duration::from_secs(30), "a size_slug drift", || async {
        let drifts = Api::<Drift>::namespaced(client.clone(), &ns).list(&ListParams::default()).await.ok()?;
        drifts.items.into_iter().find(|d| d.status.as_ref().is_some_and(|s| s.phase == DriftPhase::Open))
    })
    .await;
    assert_eq!(drift.spec.field, "size_slug");
    assert_eq!(drift.status.unwrap().actual, json!("s-2vcpu-4gb"));

    fake.remove_droplet(id);
    common::eventually(Duration::from_secs(30), "the droplet reported gone", || async {
        let p = provisioned.get("web-1").await.ok()?;
        (condition(&p, "ResourceFound")? == ("False".to_string(), "GoneFromProvider".to_string())).then_some(())
    })
    .await;
    let drifts = Api::<Drift>::namespaced(client.clone(), &ns).list(&ListParams::default()).await.unwrap();
    assert_eq!(drifts.items.len(), 1, "reported as the resource being gone, not as drifts per field");
    assert!(controller.metric("arcadia_drift_digitalocean_requests_total") > 0.0);
    assert!(!controller.log_text().contains(TOKEN), "the token never appears in the log");
}

/// One poll of the syncer's change feed from `position`: the cursor is
/// opaque to the syncer, and read here as the position it encodes.
async fn poll(syncer: &Syncer, position: &mut arcadia_drift::providers::digitalocean::feed::Position) {
    use arcadia_drift::providers::digitalocean::feed::{decode, encode};
    let mut cursor = encode(position);
    syncer.poll_feed(syncer.source().feed().expect("DigitalOcean has a feed"), &mut cursor).await;
    *position = decode(&cursor);
}

/// The actions feed: a completed action refreshes its droplet without a full
/// listing, one in progress waits for its end, a 404 after an action is proof
/// of deletion, and the position survives a restart without re-reading history.
#[tokio::test]
async fn the_actions_feed_refreshes_what_changed_and_keeps_its_place() {
    use arcadia_drift::providers::digitalocean::feed::Position;
    let fake = FakeDo::start().await;
    let (a, b) = (fresh_id(), fresh_id());
    fake.add("/v2/droplets", droplet(a, "a", "s-1vcpu-1gb", "nyc3", &[]));
    fake.add("/v2/droplets", droplet(b, "b", "s-1vcpu-1gb", "nyc3", &[]));
    fake.record_action(999, "droplet", "create", "completed");
    let source = format!("feed-{}", common::unique_suffix());
    let (syncer, client) = syncer(&fake, &source).await;
    syncer.sync_once().await;
    let (name_a, name_b) = (format!("digitalocean-droplet-{a}"), format!("digitalocean-droplet-{b}"));
    cached(&client, &name_a, |_| true).await;
    cached(&client, &name_b, |_| true).await;

    let mut position = Position::default();
    poll(&syncer, &mut position).await;
    assert!(position.last_seen.is_some(), "the first poll starts at the newest action");

    fake.resize_droplet(a, "s-2vcpu-4gb");
    fake.record_action(a, "droplet", "resize", "completed");
    let running = fake.record_action(b, "droplet", "power_off", "in-progress");
    let before = fake.requests().len();
    poll(&syncer, &mut position).await;
    let requests: Vec<String> = fake.requests()[before..].to_vec();
    assert!(requests.iter().all(|r| !r.starts_with("/v2/droplets?")), "no full listing: {requests:?}");
    assert!(requests.iter().any(|r| r == &format!("/v2/droplets/{a}")), "{requests:?}");
    cached(&client, &name_a, |r| r.status.as_ref().and_then(|s| s.size_slug.as_deref()) == Some("s-2vcpu-4gb")).await;
    assert_eq!(position.in_progress.keys().copied().collect::<Vec<_>>(), [running]);

    fake.remove_droplet(b);
    fake.finish_action(running, "completed");
    poll(&syncer, &mut position).await;
    cached(&client, &name_b, |r| r.status.as_ref().is_some_and(|s| s.missing)).await;
    assert!(position.in_progress.is_empty());

    // An action in progress that scrolled off the page and that the API then
    // forgets (404) is not waited on for ever: its droplet is read again.
    let forgotten = fake.record_action(a, "droplet", "reboot", "in-progress");
    poll(&syncer, &mut position).await;
    assert!(position.in_progress.contains_key(&forgotten));
    for _ in 0..60 {
        fake.record_action(999, "droplet", "create", "completed");
    }
    fake.forget_action(forgotten);
    let before = fake.requests().len();
    poll(&syncer, &mut position).await;
    assert!(position.in_progress.is_empty(), "{position:?}");
    assert!(fake.requests()[before..].iter().any(|r| r == &format!("/v2/droplets/{a}")), "its droplet read again");

    // A refresh that fails is tried again at the next poll, though the position moved on.
    fake.resize_droplet(a, "s-4vcpu-8gb");
    fake.record_action(a, "droplet", "resize", "completed");
    fake.with(|s| s.fail_get_once.insert(format!("/v2/droplets/{a}"), 403));
    poll(&syncer, &mut position).await;
    let moved = position.last_seen;
    poll(&syncer, &mut position).await;
    assert_eq!(position.last_seen, moved, "no new action");
    cached(&client, &name_a, |r| r.status.as_ref().and_then(|s| s.size_slug.as_deref()) == Some("s-4vcpu-8gb")).await;

    // A failed poll changes nothing and marks nothing.
    fake.fault(Fault::Status(500, None));
    let kept = position.clone();
    poll(&syncer, &mut position).await;
    assert_eq!(position, kept);
}

/// End to end: with the full sync at 5 minutes, a resize recorded in the
/// actions feed reaches the Drift within seconds, and the feed's position is
/// kept in a ConfigMap for the next leader.
#[tokio::test]
async fn a_resize_in_the_actions_feed_becomes_a_drift_in_seconds() {
    use arcadia_drift::api::{CloudProvisioned, CloudProvisionedSpec, Drift, DriftPhase, ResourceRef};
    use common::controller::ControllerProcess;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::{ListParams, PostParams};

    let fake = FakeDo::start().await;
    let id = fresh_id();
    fake.add("/v2/droplets", droplet(id, "web-1", "s-1vcpu-1gb", "nyc3", &["web"]));
    fake.record_action(id, "droplet", "create", "completed");
    let client = common::client().await;
    let ns = common::namespace(&client, "do-feed").await;
    let spec = CloudProvisionedSpec {
        resource_ref: ResourceRef { name: format!("digitalocean-droplet-{id}") },
        desired: Fields::try_from(json!({"size_slug": "s-1vcpu-1gb"})).unwrap(),
        ..Default::default()
    };
    Api::<CloudProvisioned>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &CloudProvisioned::new("web-1", spec))
        .await
        .unwrap();
    let source = format!("feed-e2e-{}", common::unique_suffix());
    let args = [
        "--digitalocean-api-url",
        &fake.url,
        "--inventory-sync-interval",
        "5m",
        "--digitalocean-actions-interval",
        "1s",
        "--inventory-source",
        &source,
    ];
    let _controller = ControllerProcess::start_with_env(&ns, &args, &[("DIGITALOCEAN_TOKEN", TOKEN)]);
    let map_name = format!("arcadia-drift-actions-{source}");
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    common::eventually(Duration::from_secs(30), "the feed's position kept", || async {
        maps.get_opt(&map_name).await.ok()?
    })
    .await;

    fake.resize_droplet(id, "s-2vcpu-4gb");
    fake.record_action(id, "droplet", "resize", "completed");
    let started = std::time::Instant::now();
    let drift = common::eventually(Duration::from_secs(20), "the drift from the feed", || async {
        let drifts = Api::<Drift>::namespaced(client.clone(), &ns).list(&ListParams::default()).await.ok()?;
        drifts.items.into_iter().find(|d| d.status.as_ref().is_some_and(|s| s.phase == DriftPhase::Open))
    })
    .await;
    eprintln!("resize to Drift through the actions feed: {:?}", started.elapsed());
    assert_eq!(drift.status.unwrap().actual, json!("s-2vcpu-4gb"));
}
