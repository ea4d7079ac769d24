//! Cloud to Drift: the time from a change in the cloud (a droplet resize
//! completing) to the Drift's `actual` showing it, with the real controller
//! and syncer against a fake DigitalOcean API that records each change in its
//! actions feed, in progress first and completed after a delay, as the real
//! API does.
//!
//! In the suite (quick form): 20 droplets, 3 changes, the feed at 1s; it
//! asserts only that every change arrives. The figures come from
//!
//!   ARCADIA_FEED_BENCH=full cargo test --test feed_latency -- --nocapture
//!
//! 1,000 droplets, 100 changes spread over 300 s (one every 3 s: the GETs fit
//! the client's default budget of 2,500 requests/hour), in three configurations side
//! by side: the feed at 10s (full sync 5m), the feed off with the full sync at
//! 5m, and off with the sync at 30s. It prints p50/p99 and the DigitalOcean
//! requests per hour of each.

mod common;

use arcadia_drift::api::{CloudProvisioned, Drift, DriftPhase};
use common::controller::ControllerProcess;
use common::fake_do::{FakeDo, TOKEN, droplet};
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Scenario {
    droplets: u64,
    changes: u64,
    /// Changes are spread evenly over this window.
    spread: Duration,
    /// How long an action stays in progress before the droplet changes.
    completion: Duration,
}

struct Config {
    name: &'static str,
    sync: &'static str,
    feed: &'static str,
    /// How long to count requests with nothing changing, before the changes
    /// (zero: not measured).
    idle: Duration,
}

struct Measured {
    latencies: Vec<Duration>,
    requests_per_hour: f64,
    idle_requests_per_hour: Option<f64>,
}

/// Requests per hour the controller sends while nothing changes in the cloud.
async fn idle_requests_per_hour(fake: &FakeDo, window: Duration) -> Option<f64> {
    if window.is_zero() {
        return None;
    }
    let before = fake.requests().len();
    tokio::time::sleep(window).await;
    let requests = fake.requests().len() - before;
    Some(requests as f64 * 3600.0 / window.as_secs_f64())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index]
}

async fn run(scenario: &Scenario, config: &Config) -> Measured {
    let fake = Arc::new(FakeDo::start().await);
    let base = 7_000_000
        + (std::process::id() as u64 % 1000) * 10_000
        + (Instant::now().elapsed().as_nanos() as u64 % 1000) * 10;
    let ids: Vec<u64> = (0..scenario.droplets).map(|i| base * 1000 + i).collect();
    for &id in &ids {
        fake.add("/v2/droplets", droplet(id, &format!("d-{id}"), "s-1vcpu-1gb", "nyc3", &[]));
    }
    fake.record_action(ids[0], "droplet", "create", "completed");
    let client = common::client().await;
    let ns = common::namespace(&client, &format!("feed-{}", config.name)).await;
    let provisioned: Api<CloudProvisioned> = Api::namespaced(client.clone(), &ns);
    for &id in &ids {
        let body = json!({
            "apiVersion": "arcadia.cloud/v1alpha1", "kind": "CloudProvisioned", "metadata": {"name": format!("d-{id}")},
            "spec": {"resourceRef": {"name": format!("digitalocean-droplet-{id}")}, "desired": {"size_slug": "s-1vcpu-1gb"}},
        });
        provisioned.patch(&format!("d-{id}"), &PatchParams::apply("bench"), &Patch::Apply(body)).await.unwrap();
    }
    let source = format!("bench-{}-{}", config.name, common::unique_suffix());
    let args = [
        "--digitalocean-api-url",
        &fake.url,
        "--inventory-sync-interval",
        config.sync,
        "--digitalocean-actions-interval",
        config.feed,
        "--inventory-source",
        &source,
        "--max-inventory-age",
        "2h",
    ];
    let _controller = ControllerProcess::start_with_env(&ns, &args, &[("DIGITALOCEAN_TOKEN", TOKEN)]);
    // Settled: every object checked in sync before the first change.
    common::eventually(Duration::from_secs(120), "every object in sync", || async {
        let all = provisioned.list(&ListParams::default()).await.ok()?.items;
        let in_sync = all
            .iter()
            .filter(|p| {
                p.status
                    .as_ref()
                    .is_some_and(|s| s.conditions.iter().any(|c| c.type_ == "InSync" && c.status == "True"))
            })
            .count();
        (in_sync == ids.len()).then_some(())
    })
    .await;
    let idle_requests_per_hour = idle_requests_per_hour(&fake, config.idle).await;

    let requests_before = fake.requests().len();
    let started = Instant::now();
    let changed: Vec<u64> = (0..scenario.changes).map(|i| ids[(i * 7 % scenario.droplets) as usize]).collect();
    let completed_at: Arc<std::sync::Mutex<BTreeMap<u64, Instant>>> = Arc::default();
    for (i, &id) in changed.iter().enumerate() {
        let (fake, done, completion) = (fake.clone(), completed_at.clone(), scenario.completion);
        let start = scenario.spread.mul_f64(i as f64 / scenario.changes as f64);
        tokio::spawn(async move {
            tokio::time::sleep(start).await;
            let action = fake.record_action(id, "droplet", "resize", "in-progress");
            tokio::time::sleep(completion).await;
            fake.resize_droplet(id, "s-2vcpu-4gb");
            fake.finish_action(action, "completed");
            done.lock().unwrap().insert(id, Instant::now());
        });
    }
    let drifts: Api<Drift> = Api::namespaced(client.clone(), &ns);
    let mut seen: BTreeMap<u64, Instant> = BTreeMap::new();
    let deadline = Instant::now() + scenario.spread + Duration::from_secs(420);
    while seen.len() < changed.len() && Instant::now() < deadline {
        for d in drifts.list(&ListParams::default()).await.unwrap().items {
            let status = d.status.as_ref();
            if status.is_some_and(|s| s.phase == DriftPhase::Open && s.actual == json!("s-2vcpu-4gb")) {
                let id: u64 = d.spec.provisioned_ref.name.trim_start_matches("d-").parse().unwrap();
                seen.entry(id).or_insert_with(Instant::now);
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(seen.len(), changed.len(), "{}: every change reached its Drift", config.name);
    let elapsed = started.elapsed();
    let completed = completed_at.lock().unwrap().clone();
    let mut latencies: Vec<Duration> =
        seen.iter().map(|(id, at)| at.saturating_duration_since(completed[id])).collect();
    latencies.sort();
    let requests = &fake.requests()[requests_before..];
    let mut by_kind: BTreeMap<String, usize> = BTreeMap::new();
    for r in requests {
        let path = r.split('?').next().unwrap_or_default();
        let kind = if path.starts_with("/v2/droplets/") { "/v2/droplets/{id}" } else { path };
        *by_kind.entry(kind.to_owned()).or_default() += 1;
    }
    println!("{}: requests by path during the changes: {by_kind:?}", config.name);
    Measured {
        latencies,
        requests_per_hour: requests.len() as f64 * 3600.0 / elapsed.as_secs_f64(),
        idle_requests_per_hour,
    }
}

#[tokio::test]
async fn cloud_changes_reach_their_drifts_through_the_actions_feed() {
    let mode = std::env::var("ARCADIA_FEED_BENCH").unwrap_or_default();
    // ARCADIA_FEED_BENCH=feed: the feed's configuration only; =<name> (e.g. sync-30s): that one only.
    let only = match mode.as_str() {
        "feed" => Some("feed-10s"),
        "full" | "" => None,
        name => Some(name),
    };
    let full = mode == "full" || only.is_some();
    let (scenario, configs) = if full {
        (
            Scenario {
                droplets: 1000,
                changes: 100,
                spread: Duration::from_secs(300),
                completion: Duration::from_secs(3),
            },
            vec![
                // Idle windows long enough to hold one full sync.
                Config { name: "feed-10s", sync: "5m", feed: "10s", idle: Duration::from_secs(310) },
                Config { name: "sync-5m", sync: "5m", feed: "0", idle: Duration::ZERO },
                Config { name: "sync-30s", sync: "30s", feed: "0", idle: Duration::from_secs(60) },
            ],
        )
    } else {
        (
            Scenario {
                droplets: 20,
                changes: 3,
                spread: Duration::from_secs(2),
                completion: Duration::from_millis(500),
            },
            vec![Config { name: "feed-1s", sync: "5m", feed: "1s", idle: Duration::ZERO }],
        )
    };
    let configs: Vec<Config> = configs.into_iter().filter(|c| only.is_none_or(|name| c.name == name)).collect();
    assert!(
        !configs.is_empty(),
        "ARCADIA_FEED_BENCH={mode}: no such configuration (full, feed, feed-10s, sync-5m, sync-30s)"
    );
    for config in &configs {
        let m = run(&scenario, config).await;
        println!(
            "{}: {} changes over {} droplets: p50 {:.1}s, p99 {:.1}s, max {:.1}s; {:.0} DigitalOcean requests/hour",
            config.name,
            scenario.changes,
            scenario.droplets,
            percentile(&m.latencies, 0.50).as_secs_f64(),
            percentile(&m.latencies, 0.99).as_secs_f64(),
            m.latencies.last().unwrap().as_secs_f64(),
            m.requests_per_hour
        );
        if let Some(idle) = m.idle_requests_per_hour {
            println!("{}: {idle:.0} DigitalOcean requests/hour with nothing changing", config.name);
        }
    }
}
