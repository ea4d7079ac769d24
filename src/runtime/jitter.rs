use std::hash::BuildHasher;
use std::time::Duration;

/// `base` stretched by up to ±10%, differently per call and per key, so
/// periodic work of many objects (or replicas) does not arrive together.
pub fn jittered(base: Duration, key: &str) -> Duration {
    // RandomState is seeded per process and per instance: enough spread for
    // scheduling, and no dependency on a random number crate.
    let draw = std::collections::hash_map::RandomState::new().hash_one(key);
    let spread = (draw % 2001) as f64 / 10_000.0 - 0.1;
    base.mul_f64(1.0 + spread)
}

/// A number that differs per call, for names of temporary things.
pub fn unique() -> u64 {
    std::collections::hash_map::RandomState::new().hash_one(std::time::SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_within_ten_percent_and_spreads() {
        let all: Vec<Duration> = (0..200).map(|i| jittered(Duration::from_secs(300), &format!("obj-{i}"))).collect();
        assert!(all.iter().all(|d| *d >= Duration::from_secs(270) && *d <= Duration::from_secs(330)), "{all:?}");
        let distinct: std::collections::BTreeSet<_> = all.iter().collect();
        assert!(distinct.len() > 100, "only {} distinct delays", distinct.len());
    }
}
