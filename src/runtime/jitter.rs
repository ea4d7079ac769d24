use std::time::Duration;

/// `base` stretched by up to ±10%, differently per call, so periodic work of
/// many objects (or replicas) does not arrive together.
pub fn jittered(base: Duration) -> Duration {
    base.mul_f64(1.0 + fastrand::f64() * 0.2 - 0.1)
}

/// A number that differs per call, for names of temporary things.
pub fn unique() -> u64 {
    fastrand::u64(..)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_within_ten_percent_and_spreads() {
        let all: Vec<Duration> = (0..200).map(|_| jittered(Duration::from_secs(300))).collect();
        assert!(all.iter().all(|d| *d >= Duration::from_secs(270) && *d <= Duration::from_secs(330)), "{all:?}");
        let distinct: std::collections::BTreeSet<_> = all.iter().collect();
        assert!(distinct.len() > 100, "only {} distinct delays", distinct.len());
    }
}
