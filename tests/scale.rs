//! The scale harness. By default (in the test command) a quick run with
//! N = 200 that asserts correctness only: every expected drift is found and a
//! settled controller writes nothing. `scripts/scale` runs it for real
//! (N = 1,000 and 10,000, release build, a fresh control plane, an API server
//! outage) and prints the figures that docs/performance.md records.
//!
//! Each run: N CloudResources and N CloudProvisioneds with 20 desired fields,
//! 5% of them drifted; cold convergence of the real controller against the
//! floor (the same writes, with the same bodies, by a bare client loop, while
//! the harness watches its namespace as it will watch the controller's);
//! steady-state writes and CPU over a full resync; detection latency over 100
//! changes; peak RSS. `ARCADIA_SCALE_CONVERGENCE_ONLY=1` stops each run after
//! convergence, for profiling it. `ARCADIA_SCALE_SHARDS=K` splits the
//! CloudProvisioneds between K replicas (`--shard s1` … and the rest): the
//! figures are their sums, memory each replica's.

mod common;
#[path = "scale/footprint.rs"]
mod footprint;

use arcadia_drift::api::{
    CloudProvisioned, CloudProvisionedSpec, CloudResource, CloudResourceSpec, CloudResourceStatus, Drift, DriftPhase,
    DriftStatus, Fields, ResourceRef, now,
};
use common::controller::ControllerProcess;
use futures::StreamExt;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CONCURRENCY: usize = 8;

/// A deadline of `seconds` per 10,000 objects (at least `seconds`): the work grows with N.
fn per_10k(n: usize, seconds: u64) -> Duration {
    Duration::from_secs(seconds * (n as u64).div_ceil(10_000).max(1))
}

struct Run {
    n: usize,
    resync: Duration,
    outage: Option<Duration>,
}

fn runs() -> Vec<Run> {
    match std::env::var("ARCADIA_SCALE_N") {
        Ok(list) => list
            .split(',')
            .map(|n| Run {
                n: n.trim().parse().expect("ARCADIA_SCALE_N is a comma-separated list of sizes"),
                resync: Duration::from_secs(60),
                outage: Some(Duration::from_secs(30)),
            })
            .collect(),
        Err(_) => vec![Run { n: 200, resync: Duration::from_secs(8), outage: None }],
    }
}

/// How many replicas share the objects (`ARCADIA_SCALE_SHARDS`, default 1).
fn shard_count() -> usize {
    std::env::var("ARCADIA_SCALE_SHARDS").map_or(1, |k| k.parse().expect("ARCADIA_SCALE_SHARDS is a number"))
}

/// The shard of object `i`: every K-th is the rest's (unlabelled).
fn shard_of(i: usize, k: usize) -> Option<String> {
    (k > 1 && !i.is_multiple_of(k)).then(|| format!("s{}", i % k))
}

/// The controllers of one run, one per shard; figures are summed over them.
struct Fleet(Vec<ControllerProcess>);

impl Fleet {
    fn start(ns: &str, args: &[&str], k: usize) -> Fleet {
        let named: Vec<String> = (1..k).map(|s| format!("s{s}")).collect();
        let exclude = format!("--exclude-shards={}", named.join(","));
        let mut rest = args.to_vec();
        if k > 1 {
            rest.push(&exclude);
        }
        let mut fleet = vec![ControllerProcess::start(ns, &rest)];
        for name in &named {
            fleet.push(ControllerProcess::start(ns, &[args, &["--shard", name]].concat()));
        }
        Fleet(fleet)
    }

    fn metric(&self, name: &str) -> f64 {
        self.0.iter().map(|c| c.metric(name)).sum()
    }

    fn cpu_seconds(&self) -> f64 {
        self.0.iter().map(ControllerProcess::cpu_seconds).sum()
    }

    /// The largest replica's (RSS, peak RSS) in kB.
    fn memory(&self) -> (u64, u64) {
        let each: Vec<(u64, u64)> = self.0.iter().map(ControllerProcess::memory).collect();
        (each.iter().map(|m| m.0).max().unwrap_or(0), each.iter().map(|m| m.1).max().unwrap_or(0))
    }

    /// Each replica's RSS in MB, when there are several.
    fn each_rss(&self) -> String {
        if self.0.len() < 2 {
            return String::new();
        }
        let each: Vec<String> = self.0.iter().map(|c| format!("{:.1}", c.memory().0 as f64 / 1024.0)).collect();
        format!(" (largest of {} shards: {} MB)", self.0.len(), each.join(" / "))
    }

    fn reset_peak(&self) {
        self.0.iter().for_each(ControllerProcess::reset_peak);
    }
}

fn drifted(i: usize) -> bool {
    i.is_multiple_of(20)
}

fn live(i: usize, size: &str) -> CloudResourceStatus {
    CloudResourceStatus {
        name: Some(format!("web-{i}")),
        region: Some("nyc3".into()),
        status: Some("active".into()),
        size: Some(size.into()),
        size_slug: Some(size.into()),
        tags: Some(vec!["web".into(), format!("team-{}", i % 10)]),
        tag_map: None,
        attrs: Some(attrs()),
        missing: false,
        synced_time: Some(now()),
    }
}

fn attrs() -> Fields {
    Fields::try_from(json!({
        "image": "ubuntu-24-04-x64", "vcpus": 2, "memory": 4096, "disk": 80, "locked": false,
        "vpc_uuid": "760e09ef-dc84-11e8-981e-3cfdfeaae000", "public_ipv4": "192.241.165.154",
        "private_ipv4": "10.128.192.124", "backups": true, "monitoring": true, "ipv6": false,
        "volume_ids": ["506f78a4-e098-11e5-ad9f-000f53306ae1"], "features": ["backups", "ipv6"],
        "kernel": {"id": 7515, "version": "6.8.0"}, "price_hourly": 0.03571
    }))
    .unwrap()
}

/// 20 desired fields; the drifted 5% ask for another size.
fn desired(i: usize) -> Fields {
    let mut d = attrs();
    d.insert("name", json!(format!("web-{i}")));
    d.insert("region", json!("nyc3"));
    d.insert("status", json!("active"));
    d.insert("size_slug", json!(if drifted(i) { "s-1vcpu-1gb" } else { "s-2vcpu-4gb" }));
    d.insert("tags", json!([format!("team-{}", i % 10), "web"]));
    assert_eq!(d.len(), 20);
    d
}

async fn set_live(client: &Client, name: &str, status: &CloudResourceStatus) {
    let body = json!({"apiVersion": "arcadia.cloud/v1alpha1", "kind": "CloudResource", "status": status});
    Api::<CloudResource>::all(client.clone())
        .patch_status(name, &PatchParams::apply("scale-syncer").force(), &Patch::Apply(body))
        .await
        .unwrap_or_else(|e| panic!("status of {name}: {e}"));
}

/// Creates the objects; returns the uid of each CloudProvisioned in the floor's namespace.
async fn setup(client: &Client, run_id: &str, ns: &str, floor_ns: &str, n: usize) -> HashMap<usize, String> {
    futures::stream::iter(0..n)
        .map(|i| async move {
            let name = format!("scale-{run_id}-{i}");
            let spec = CloudResourceSpec {
                provider: "digitalocean".into(),
                type_: "droplet".into(),
                id: i.to_string(),
                region: None,
            };
            Api::<CloudResource>::all(client.clone())
                .create(&PostParams::default(), &CloudResource::new(&name, spec))
                .await
                .unwrap_or_else(|e| panic!("creating {name}: {e}"));
            set_live(client, &name, &live(i, "s-2vcpu-4gb")).await;
            let mut uid = String::new();
            for target in [ns, floor_ns] {
                let spec = CloudProvisionedSpec {
                    resource_ref: ResourceRef { name: name.clone() },
                    desired: desired(i),
                    ..Default::default()
                };
                let mut p = CloudProvisioned::new(&format!("web-{i}"), spec);
                if let Some(shard) = shard_of(i, shard_count()).filter(|_| target == ns) {
                    p.labels_mut().insert(arcadia_drift::api::LABEL_SHARD.into(), shard);
                }
                let created = Api::<CloudProvisioned>::namespaced(client.clone(), target)
                    .create(&PostParams::default(), &p)
                    .await
                    .unwrap_or_else(|e| panic!("creating CloudProvisioned web-{i}: {e}"));
                uid = created.uid().expect("a created object has a uid");
            }
            (i, uid)
        })
        .buffer_unordered(16)
        .collect()
        .await
}

/// The floor: the writes a converging controller must make (a status per
/// CloudProvisioned; object, status and Event per drift), with the same
/// bodies, by a bare client loop.
async fn floor(client: &Client, ns: &str, n: usize, uids: &HashMap<usize, String>) -> (Duration, usize) {
    let started = Instant::now();
    let writes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    futures::stream::iter(0..n)
        .map(|i| {
            let writes = writes.clone();
            async move {
                let apply = PatchParams::apply("floor").force();
                let name = format!("web-{i}");
                let resource = format!("scale-floor-{i}");
                let p = Api::<CloudProvisioned>::namespaced(client.clone(), ns);
                if drifted(i) {
                    let drift = format!("{name}-size-slug");
                    let d = Api::<Drift>::namespaced(client.clone(), ns);
                    let owner = json!({"apiVersion": "arcadia.cloud/v1alpha1", "kind": "CloudProvisioned",
                        "name": name, "uid": uids[&i], "controller": true});
                    let body = json!({"apiVersion": "arcadia.cloud/v1alpha1", "kind": "Drift",
                        "metadata": {"name": drift, "labels": {"arcadia.cloud/provisioned": name, "arcadia.cloud/phase": "Open"},
                                     "ownerReferences": [owner]},
                        "spec": {"provisionedRef": {"name": name}, "resourceRef": {"name": resource}, "field": "size_slug"}});
                    d.patch(&drift, &apply, &Patch::Apply(body)).await.unwrap();
                    let status = DriftStatus {
                        expected: json!("s-1vcpu-1gb"),
                        actual: json!("s-2vcpu-4gb"),
                        detected_time: Some(now()),
                        ..Default::default()
                    };
                    d.patch_status(&drift, &apply, &Patch::Apply(json!({"apiVersion": "arcadia.cloud/v1alpha1", "kind": "Drift", "status": status})))
                        .await
                        .unwrap();
                    let event = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event",
                        "metadata": {"name": format!("{name}.floor"), "namespace": ns},
                        "eventTime": now().0.to_string().replace('Z', ".000000Z"), "reason": "DriftDetected", "action": "Detect",
                        "type": "Warning", "note": "size_slug: expected s-1vcpu-1gb, live value is s-2vcpu-4gb",
                        "reportingController": "floor", "reportingInstance": "floor",
                        "regarding": {"apiVersion": "arcadia.cloud/v1alpha1", "kind": "CloudProvisioned", "name": name,
                                      "namespace": ns, "uid": uids[&i]}});
                    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), ns);
                    events.create(&PostParams::default(), &serde_json::from_value(event).unwrap()).await.unwrap();
                    writes.fetch_add(3, std::sync::atomic::Ordering::Relaxed);
                }
                let condition = |type_: &str, status: &str, reason: &str, message: &str| {
                    json!({"type": type_, "status": status, "reason": reason, "message": message,
                           "observedGeneration": 1, "lastTransitionTime": now()})
                };
                let in_sync = if drifted(i) {
                    condition("InSync", "False", "Drifted", "1 drifted: size_slug")
                } else {
                    condition("InSync", "True", "InSync", "all 20 desired fields match")
                };
                let mut status = json!({
                    "observedGeneration": 1, "lastCheckedTime": now(), "openDrifts": i32::from(drifted(i)),
                    "conditions": [
                        in_sync,
                        condition("ResourceFound", "True", "Found", &format!("CloudResource {resource} found")),
                        condition("InventoryFresh", "True", "Fresh", "the live state is recent enough to close drifts"),
                    ]});
                if drifted(i) {
                    status["driftedFields"] = json!(["size_slug"]);
                }
                let status = json!({"apiVersion": "arcadia.cloud/v1alpha1", "kind": "CloudProvisioned", "status": status});
                p.patch_status(&name, &apply, &Patch::Apply(status)).await.unwrap();
                writes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect::<Vec<_>>()
        .await;
    (started.elapsed(), writes.load(std::sync::atomic::Ordering::Relaxed))
}

/// What the harness's own watches have seen in the measured namespace.
#[derive(Default)]
struct Seen {
    with_status: std::collections::HashSet<String>,
    open: HashMap<String, (Value, String, String)>,
    /// First time each `actual` value was seen on a drift.
    actual_at: HashMap<String, Instant>,
}

fn watch_namespace(client: &Client, ns: &str) -> Arc<Mutex<Seen>> {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let p = watcher(Api::<CloudProvisioned>::namespaced(client.clone(), ns), watcher::Config::default())
        .backoff(harness_backoff())
        .applied_objects();
    let s = seen.clone();
    // Errors (an outage) are retried by the watcher's backoff; keep consuming.
    tokio::spawn(p.for_each(move |p| {
        if let Ok(p) = p
            && p.status.as_ref().is_some_and(|st| st.observed_generation.is_some())
        {
            s.lock().unwrap().with_status.insert(p.name_any());
        }
        async {}
    }));
    let d = watcher(Api::<Drift>::namespaced(client.clone(), ns), watcher::Config::default())
        .backoff(harness_backoff())
        .applied_objects();
    let s = seen.clone();
    tokio::spawn(d.for_each(move |d| {
        if let Ok(d) = d
            && let Some(st) = &d.status
        {
            let mut s = s.lock().unwrap();
            if let Value::String(actual) = &st.actual {
                s.actual_at.entry(actual.clone()).or_insert_with(Instant::now);
            }
            if st.phase == DriftPhase::Open {
                s.open.insert(
                    d.name_any(),
                    (st.actual.clone(), d.spec.provisioned_ref.name.clone(), d.spec.field.clone()),
                );
            } else {
                s.open.remove(&d.name_any());
            }
        }
        async {}
    }));
    seen
}

/// The harness watches retry every second, so what they report after an
/// outage is the controller's recovery, not their own backoff.
fn harness_backoff() -> impl kube::runtime::utils::Backoff {
    kube::runtime::utils::ResetTimerBackoff::new(
        kube::runtime::watcher::ExponentialBackoff::from(
            backon::ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(500))
                .with_max_delay(Duration::from_secs(1))
                .without_max_times(),
        ),
        Duration::from_secs(60),
    )
}

/// Writes to arcadia.cloud objects, as the API server counts them.
async fn apiserver_writes(client: &Client) -> f64 {
    let req = http::Request::get("/metrics").body(Vec::new()).unwrap();
    let text = client.request_text(req).await.expect("API server /metrics");
    text.lines()
        .filter(|l| l.starts_with("apiserver_request_total{") && l.contains("group=\"arcadia.cloud\""))
        .filter(|l| ["POST", "PUT", "PATCH", "DELETE"].iter().any(|v| l.contains(&format!("verb=\"{v}\""))))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// CPU seconds used so far by kube-apiserver and etcd, whose work the floor
/// and the controller both cause.
fn server_cpu() -> f64 {
    let dir = common::kubeconfig().parent().expect("the control plane directory");
    ["kube-apiserver", "etcd"]
        .iter()
        .map(|name| {
            let pid = std::fs::read_to_string(dir.join(format!("{name}.pid"))).unwrap_or_default();
            common::controller::cpu_seconds(pid.trim().parse().unwrap_or(0))
        })
        .sum()
}

fn control_plane(cmd: &str) {
    let out = std::process::Command::new(common::repo_root().join("scripts/control-plane")).arg(cmd).output().unwrap();
    assert!(out.status.success(), "control-plane {cmd}: {}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale() {
    let client = common::client().await;
    let mut table = Vec::new();
    for run in runs() {
        let n = run.n;
        let expected = (0..n).filter(|i| drifted(*i)).count();
        let run_id = common::unique_suffix();
        let ns = common::namespace(&client, &format!("scale-{n}")).await;
        let floor_ns = common::namespace(&client, &format!("floor-{n}")).await;
        let t = Instant::now();
        let floor_uids = setup(&client, &run_id, &ns, &floor_ns, n).await;
        eprintln!("[N={n}] setup: {} objects in {:?}", 3 * n, t.elapsed());

        // The floor is observed exactly as the controller will be, so that the
        // API server's cost of serving the harness's watches is in both.
        let _floor_seen = watch_namespace(&client, &floor_ns);
        tokio::time::sleep(Duration::from_millis(500)).await;
        let server_cpu_before_floor = server_cpu();
        let (floor_time, floor_writes) = floor(&client, &floor_ns, n, &floor_uids).await;
        let floor_server_cpu = server_cpu() - server_cpu_before_floor;
        let seen = watch_namespace(&client, &ns);
        tokio::time::sleep(Duration::from_millis(500)).await;

        // Cold convergence.
        let resync = format!("{}s", run.resync.as_secs());
        let server_cpu_before = server_cpu();
        let started = Instant::now();
        let controller = Fleet::start(
            &ns,
            &[
                "--resync-interval",
                &resync,
                "--concurrency",
                &CONCURRENCY.to_string(),
                "--leader-election=false",
                "--api-qps",
                "2000",
                "--api-burst",
                "4000",
            ],
            shard_count(),
        );
        let converged = common::eventually(per_10k(n, 600), "cold convergence", || async {
            let s = seen.lock().unwrap();
            (s.with_status.len() == n && s.open.len() == expected).then(|| started.elapsed())
        })
        .await;
        let ((_, peak_converging_kb), cpu_converged) = (controller.memory(), controller.cpu_seconds());
        let convergence_server_cpu = server_cpu() - server_cpu_before;
        let convergence_writes = controller.metric("arcadia_drift_api_writes_total");
        if std::env::var_os("ARCADIA_SCALE_CONVERGENCE_ONLY").is_some() {
            // For profiling cold convergence: skip the rest of the run.
            eprintln!(
                "N={n}: convergence {:.2}s | floor {:.2}s | ratio {:.2} | API server + etcd CPU s: floor \
                 {floor_server_cpu:.2}, convergence {convergence_server_cpu:.2} | controller {cpu_converged:.2} CPU s, \
                 {} reconciles | log {}",
                converged.as_secs_f64(),
                floor_time.as_secs_f64(),
                converged.as_secs_f64() / floor_time.as_secs_f64(),
                controller.metric("arcadia_drift_reconciles_total"),
                controller.0[0].log.display()
            );
            continue;
        }

        // Steady state: one full pass of the periodic re-check (the first
        // begins one interval after the start, and takes the interval) plus margin.
        let first_pass = started + run.resync;
        tokio::time::sleep_until(first_pass.max(Instant::now() + Duration::from_secs(2)).into()).await;
        let (w0, r0, a0, cpu0) = (
            controller.metric("arcadia_drift_api_writes_total"),
            controller.metric("arcadia_drift_reconciles_total"),
            apiserver_writes(&client).await,
            controller.cpu_seconds(),
        );
        tokio::time::sleep(run.resync + Duration::from_secs(5)).await;
        let (w1, r1, a1, cpu1) = (
            controller.metric("arcadia_drift_api_writes_total"),
            controller.metric("arcadia_drift_reconciles_total"),
            apiserver_writes(&client).await,
            controller.cpu_seconds(),
        );
        // Settled: converged, then a full resync that changed nothing.
        let (settled_kb, _) = controller.memory();
        let steady_writes = w1 - w0;
        assert!(r1 - r0 >= n as f64, "a full resync ran: {} reconciles for {n} objects", r1 - r0);
        assert_eq!(steady_writes, 0.0, "zero writes in steady state");

        // Detection latency: 100 changes spread over the objects, each to a new size.
        let mut sent = Vec::new();
        for k in 0..100 {
            let i = k * n / 100 + 1;
            let marker = format!("lat-{run_id}-{k}");
            let at = Instant::now();
            set_live(&client, &format!("scale-{run_id}-{i}"), &live(i, &marker)).await;
            sent.push((marker, at));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut latencies = common::eventually(Duration::from_secs(60), "all 100 changes seen", || async {
            let s = seen.lock().unwrap();
            sent.iter()
                .map(|(m, at)| s.actual_at.get(m).map(|seen| seen.duration_since(*at)))
                .collect::<Option<Vec<_>>>()
        })
        .await;
        latencies.sort();
        let (p50, p99) = (latencies[49], latencies[98]);

        // An API server outage while a wave of drifts is being written.
        let mut outage_note = String::from("-");
        let mut total_expected = expected + 100;
        if let Some(outage) = run.outage {
            controller.reset_peak();
            let errors_before = controller.metric("arcadia_drift_watch_errors_total")
                + controller.metric("arcadia_drift_reconcile_errors_total");
            let wave: Vec<usize> = (0..n).filter(|i| i % 20 == 10).collect();
            futures::stream::iter(wave.iter().copied())
                .map(|i| {
                    let client = client.clone();
                    let name = format!("scale-{run_id}-{i}");
                    async move { set_live(&client, &name, &live(i, "s-wave")).await }
                })
                .buffer_unordered(16)
                .collect::<Vec<_>>()
                .await;
            control_plane("stop-apiserver");
            let down = Instant::now();
            tokio::time::sleep(outage).await;
            control_plane("start-apiserver");
            total_expected += wave.len();
            let recovered = common::eventually(per_10k(n, 300), "recovery after the outage", || async {
                let s = seen.lock().unwrap();
                (s.open.len() == total_expected).then(|| down.elapsed())
            })
            .await;
            let errors = controller.metric("arcadia_drift_watch_errors_total")
                + controller.metric("arcadia_drift_reconcile_errors_total")
                - errors_before;
            assert!(errors > 0.0, "the error metrics show the outage");
            let (_, outage_peak_kb) = controller.memory();
            outage_note = format!(
                "{}s outage: all {} drifts {:.1}s after it began, {errors} errors counted, peak RSS {:.1} MB (x{:.2} settled)",
                outage.as_secs(),
                total_expected,
                recovered.as_secs_f64(),
                outage_peak_kb as f64 / 1024.0,
                outage_peak_kb as f64 / settled_kb as f64,
            );
        } else {
            common::eventually(Duration::from_secs(30), "latency drifts settled", || async {
                (seen.lock().unwrap().open.len() == total_expected).then_some(())
            })
            .await;
        }

        // Exactly the expected drifts: one per (CloudProvisioned, field), none lost.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let all = Api::<Drift>::namespaced(client.clone(), &ns).list(&ListParams::default()).await.unwrap().items;
        let mut per_field: HashMap<(String, String), usize> = HashMap::new();
        for d in &all {
            *per_field.entry((d.spec.provisioned_ref.name.clone(), d.spec.field.clone())).or_default() += 1;
        }
        assert!(per_field.values().all(|c| *c == 1), "no duplicate drifts");
        let open = all.iter().filter(|d| d.status.as_ref().is_some_and(|s| s.phase == DriftPhase::Open)).count();
        assert_eq!(open, total_expected, "every drift found, none lost");

        let cache = footprint::of_caches(&client, &ns).await;
        let line = format!(
            "N={n}: convergence {:.2}s ({convergence_writes} writes) | floor {:.2}s ({floor_writes} writes) | ratio {:.2} | \
             API server + etcd CPU s: floor {floor_server_cpu:.2}, convergence {convergence_server_cpu:.2}, controller {cpu_converged:.2} | \
             steady over a {}s resync: {steady_writes} controller writes, {} API-server writes to arcadia.cloud, {:.2} CPU s, {} reconciles | \
             latency p50 {:?} p99 {:?} | RSS settled {:.1} MB{}, peak while converging {:.1} MB | {cache} | {outage_note}",
            converged.as_secs_f64(),
            floor_time.as_secs_f64(),
            converged.as_secs_f64() / floor_time.as_secs_f64(),
            run.resync.as_secs(),
            a1 - a0,
            cpu1 - cpu0,
            r1 - r0,
            p50,
            p99,
            settled_kb as f64 / 1024.0,
            controller.each_rss(),
            peak_converging_kb as f64 / 1024.0,
        );
        eprintln!("{line}");
        table.push(line);
    }
    eprintln!("\nscale summary:\n{}", table.join("\n"));
}
