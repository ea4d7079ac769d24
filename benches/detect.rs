//! The detection core's speed and allocations: comparisons per second for a
//! 20-field spec with lists and nested attrs, and heap allocations per
//! comparison counted by a wrapping global allocator; the same object under
//! ignore rules; and policy matching for 10,000 objects against 1,000
//! DriftPolicies, indexed and by a plain scan; and the planning of an
//! unchanged re-sync of 10,000 droplets against 10,000 mirrored ones.
//!
//!   cargo bench --bench detect

use arcadia_drift::api::{
    CloudProvisioned, CloudProvisionedSpec, CloudResource, CloudResourceSpec, DriftPolicy, DriftPolicySpec, Fields,
    IgnoreRule, PolicySelector, ResourceRef, Severity,
};
use arcadia_drift::detect::{LiveView, detect};
use arcadia_drift::policy::{PolicyIndex, differences, effective};
use criterion::{Criterion, Throughput, criterion_group};
use serde_json::json;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

#[path = "../tests/common/counting_alloc.rs"]
mod counting_alloc;

#[global_allocator]
static GLOBAL: counting_alloc::Counting = counting_alloc::Counting;

struct Fixture {
    desired: Fields,
    tags: Vec<String>,
    attrs: Fields,
}

/// 20 desired fields: the top-level ones, scalars of every kind in attrs
/// (some written as strings), two lists and a nested object.
fn fixture(drifted: usize) -> Fixture {
    let attrs = json!({
        "image": "ubuntu-24-04-x64", "vcpus": 2, "memory": 4096, "disk": 80, "locked": false,
        "vpc_uuid": "760e09ef-dc84-11e8-981e-3cfdfeaae000", "public_ipv4": "192.241.165.154",
        "private_ipv4": "10.128.192.124", "backups": true, "monitoring": true, "ipv6": false,
        "volume_ids": ["506f78a4-e098-11e5-ad9f-000f53306ae1", "606f78a4-e098-11e5-ad9f-000f53306ae1"],
        "features": ["backups", "private_networking", "ipv6", "monitoring"],
        "kernel": {"id": 7515, "name": "Ubuntu 24.04 x64", "version": "6.8.0"},
        "price_hourly": 0.03571
    });
    let mut desired = json!({
        "name": "web-1", "region": "nyc3", "status": "active", "size_slug": "s-2vcpu-4gb",
        "tags": ["prod", "web", "env:prod"],
        "image": "ubuntu-24-04-x64", "vcpus": "2", "memory": 4096.0, "disk": 80, "locked": "false",
        "vpc_uuid": "760e09ef-dc84-11e8-981e-3cfdfeaae000", "public_ipv4": "192.241.165.154",
        "private_ipv4": "10.128.192.124", "backups": "true", "monitoring": true,
        "volume_ids": ["606f78a4-e098-11e5-ad9f-000f53306ae1", "506f78a4-e098-11e5-ad9f-000f53306ae1"],
        "features": ["ipv6", "monitoring", "backups", "private_networking"],
        "kernel": {"version": "6.8.0", "name": "Ubuntu 24.04 x64", "id": "7515"},
        "price_hourly": "0.03571", "ipv6": "false"
    });
    for key in ["size_slug", "vcpus", "tags"].iter().take(drifted) {
        desired[*key] = json!("something-else");
    }
    Fixture {
        desired: Fields::try_from(desired).unwrap(),
        tags: vec!["web".into(), "prod".into(), "env:prod".into()],
        attrs: Fields::try_from(attrs).unwrap(),
    }
}

impl Fixture {
    fn live(&self) -> LiveView<'_> {
        LiveView {
            name: Some("web-1"),
            region: Some("nyc3"),
            status: Some("active"),
            size: Some("s-2vcpu-4gb"),
            tags: Some(&self.tags),
            tag_map: None,
            attrs: Some(&self.attrs),
        }
    }
}

fn allocations_per_comparison(f: &Fixture) -> f64 {
    let live = f.live();
    let rounds = 10_000;
    let before = counting_alloc::made();
    for _ in 0..rounds {
        black_box(detect(black_box(&f.desired), black_box(&live)));
    }
    (counting_alloc::made() - before) as f64 / rounds as f64
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("detect_20_fields");
    group.throughput(Throughput::Elements(1));
    for drifted in [0, 1, 3] {
        let f = fixture(drifted);
        assert_eq!(detect(&f.desired, &f.live()).len(), drifted, "the fixture drifts in {drifted} fields");
        group.bench_function(format!("{drifted}_drifted"), |b| {
            let live = f.live();
            b.iter(|| detect(black_box(&f.desired), black_box(&live)))
        });
    }
    group.finish();
}

/// The same comparison the controller makes for an object with rules: two
/// ignore rules (a list glob and a path), every field through its rules.
fn bench_with_rules(c: &mut Criterion) {
    let f = fixture(0);
    let mut p = provisioned(0, 0);
    p.spec.ignore = vec![
        IgnoreRule { field: "tags".into(), values: vec!["k8s:*".into()], reason: "DOKS".into(), ..Default::default() },
        IgnoreRule {
            field: "kernel".into(),
            paths: vec!["/version".into()],
            reason: "patches".into(),
            ..Default::default()
        },
    ];
    let rules = effective(&p, None, &[]);
    let mut group = c.benchmark_group("detect_20_fields");
    group.throughput(Throughput::Elements(1));
    group.bench_function("0_drifted_with_2_ignore_rules", |b| {
        let live = f.live();
        b.iter(|| differences(black_box(&f.desired), black_box(&live), &rules))
    });
    group.finish();
}

criterion_group!(benches, bench, bench_with_rules);

fn provisioned(i: usize, namespaces: usize) -> CloudProvisioned {
    let mut p = CloudProvisioned::new(
        &format!("p-{i}"),
        CloudProvisionedSpec { resource_ref: ResourceRef { name: format!("r-{i}") }, ..Default::default() },
    );
    p.metadata.namespace = Some(format!("team-{}", i % namespaces.max(1)));
    p.metadata.labels = Some([("tier".to_string(), if i.is_multiple_of(2) { "web" } else { "db" }.to_string())].into());
    p
}

/// 1,000 policies: 990 over 100 namespaces (by namespace, label and type) and 10 cluster-wide.
fn policies() -> Vec<Arc<DriftPolicy>> {
    (0..1000usize)
        .map(|i| {
            let selector = if i < 990 {
                PolicySelector {
                    namespaces: vec![format!("team-{}", i % 100)],
                    type_: Some(if i.is_multiple_of(3) { "droplet" } else { "volume" }.into()),
                    ..Default::default()
                }
            } else {
                PolicySelector::default()
            };
            let spec = DriftPolicySpec {
                selector,
                ignore: vec![IgnoreRule {
                    field: "tags".into(),
                    values: vec!["k8s:*".into()],
                    reason: "r".into(),
                    ..Default::default()
                }],
                severity: [("size_slug".to_string(), Severity::Critical)].into(),
                ..Default::default()
            };
            Arc::new(DriftPolicy::new(&format!("policy-{i:04}"), spec))
        })
        .collect()
}

/// Effective rules for 10,000 objects: through the namespace index, and by scanning every policy.
fn policy_matching_figures() {
    let all = policies();
    let objects: Vec<CloudProvisioned> = (0..10_000).map(|i| provisioned(i, 100)).collect();
    let resource = CloudResource::new(
        "r",
        CloudResourceSpec { provider: "digitalocean".into(), type_: "droplet".into(), id: "1".into(), region: None },
    );
    let started = Instant::now();
    let index = PolicyIndex::new(all.iter().cloned());
    let built = started.elapsed();
    let started = Instant::now();
    let mut applied = 0;
    for p in &objects {
        let candidates = index.candidates(p.metadata.namespace.as_deref().unwrap_or_default());
        applied += effective(p, Some(&resource), &candidates).policies.len();
    }
    let indexed = started.elapsed();
    let started = Instant::now();
    let mut scanned = 0;
    for p in &objects {
        scanned += effective(p, Some(&resource), &all).policies.len();
    }
    let scan = started.elapsed();
    assert_eq!(applied, scanned, "the index finds what a scan finds");
    println!(
        "policy matching, 10,000 objects x 1,000 policies: index built in {:.2} ms; indexed {:.1} ms ({:.2} us/object); plain scan {:.1} ms ({:.2} us/object); {} policy applications",
        built.as_secs_f64() * 1e3,
        indexed.as_secs_f64() * 1e3,
        indexed.as_secs_f64() * 1e6 / 10_000.0,
        scan.as_secs_f64() * 1e3,
        scan.as_secs_f64() * 1e6 / 10_000.0,
        applied
    );
}

/// The planning half of an unchanged 10,000-droplet re-sync (no I/O): the
/// listing against the mirrored CloudResources, which must be linear.
fn resync_planning_figures() {
    use arcadia_drift::api::{CloudResourceStatus, LABEL_SOURCE};
    use arcadia_drift::inventory::plan::{LiveResource, plan_sync, resource_name};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    let now = Time(k8s_openapi::jiff::Timestamp::from_second(1_800_000_000).unwrap());
    let status = |i: usize| CloudResourceStatus {
        name: Some(format!("web-{i}")),
        size_slug: Some("s-1vcpu-1gb".into()),
        region: Some("nyc3".into()),
        synced_time: Some(now.clone()),
        ..Default::default()
    };
    let mirrored: Vec<Arc<CloudResource>> = (0..10_000)
        .map(|i| {
            let id = (3_000_000 + i).to_string();
            let spec = CloudResourceSpec {
                provider: "digitalocean".into(),
                type_: "droplet".into(),
                id: id.clone(),
                region: None,
            };
            let mut r = CloudResource::new(&resource_name("digitalocean", "droplet", &id), spec);
            r.metadata.labels = Some([(LABEL_SOURCE.to_string(), "do".to_string())].into());
            r.status = Some(status(i));
            Arc::new(r)
        })
        .collect();
    let listed = || -> Vec<LiveResource> {
        (0..10_000)
            .map(|i| LiveResource {
                type_: "droplet",
                region: None,
                id: (3_000_000 + i).to_string(),
                status: status(i),
            })
            .collect()
    };
    let refresh = std::time::Duration::from_secs(3600);
    let rounds = 5;
    let mut took = std::time::Duration::ZERO;
    for _ in 0..rounds {
        let listing = listed();
        let started = Instant::now();
        let plan = plan_sync("do", "digitalocean", "droplet", listing, &mirrored, &now, refresh);
        took += started.elapsed();
        assert!(plan.writes.is_empty() && plan.absent.is_empty(), "an unchanged re-sync writes nothing");
    }
    println!(
        "re-sync planning, 10,000 droplets listed against 10,000 mirrored: {:.1} ms per sync (mean of {rounds})",
        took.as_secs_f64() * 1e3 / f64::from(rounds)
    );
}

fn main() {
    resync_planning_figures();
    for drifted in [0, 1, 3] {
        println!(
            "allocations per comparison (20 fields, {drifted} drifted): {:.1}",
            allocations_per_comparison(&fixture(drifted))
        );
    }
    policy_matching_figures();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
