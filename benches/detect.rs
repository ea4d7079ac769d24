//! The detection core's speed and allocations: comparisons per second for a
//! 20-field spec with lists and nested attrs, and heap allocations per
//! comparison counted by a wrapping global allocator.
//!
//!   cargo bench --bench detect

use arcadia_drift::api::Fields;
use arcadia_drift::detect::{LiveView, detect};
use criterion::{Criterion, Throughput, criterion_group};
use serde_json::json;
use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};

struct Counting;
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

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
            size_slug: Some("s-2vcpu-4gb"),
            tags: Some(&self.tags),
            attrs: Some(&self.attrs),
        }
    }
}

fn allocations_per_comparison(f: &Fixture) -> f64 {
    let live = f.live();
    let rounds = 10_000;
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for _ in 0..rounds {
        black_box(detect(black_box(&f.desired), black_box(&live)));
    }
    (ALLOCATIONS.load(Ordering::Relaxed) - before) as f64 / rounds as f64
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

criterion_group!(benches, bench);

fn main() {
    for drifted in [0, 1, 3] {
        println!(
            "allocations per comparison (20 fields, {drifted} drifted): {:.1}",
            allocations_per_comparison(&fixture(drifted))
        );
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
