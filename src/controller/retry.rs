//! What a failed reconcile means, and when it is tried again. A conflict
//! means the caches were behind a concurrent write: try again soon. A 429, a
//! 5xx or no answer is transient: back off exponentially per object. Any
//! other 4xx will fail the same way until something changes: back off as
//! well, and say so once on the object (`Reconciled=False`) instead of in
//! the log on every try.

use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    Conflict,
    Transient,
    Permanent,
}

pub fn class_of(error: &kube::Error) -> ErrorClass {
    match error {
        kube::Error::Api(s) if s.code == 409 => ErrorClass::Conflict,
        kube::Error::Api(s) if s.code == 429 || s.code >= 500 => ErrorClass::Transient,
        kube::Error::Api(s) if (400..500).contains(&s.code) => ErrorClass::Permanent,
        _ => ErrorClass::Transient,
    }
}

/// The first retry of a failing object, doubled on each failure in a row.
pub const FIRST_RETRY: Duration = Duration::from_secs(1);
/// The longest wait between two tries.
pub const MAX_RETRY: Duration = Duration::from_secs(300);

/// How long to wait after the `failures`-th failure in a row (counting from 1).
pub fn backoff(class: ErrorClass, failures: u32) -> Duration {
    if class == ErrorClass::Conflict {
        return FIRST_RETRY;
    }
    FIRST_RETRY.saturating_mul(1 << failures.saturating_sub(1).min(16)).min(MAX_RETRY)
}

/// The condition a permanent failure sets on the CloudProvisioned.
pub const CONDITION_RECONCILED: &str = "Reconciled";

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: u16) -> kube::Error {
        kube::Error::Api(kube::core::Status::failure("refused", "Invalid").with_code(code).boxed())
    }

    #[test]
    fn errors_are_classed_by_what_trying_again_can_change() {
        assert_eq!(class_of(&api(409)), ErrorClass::Conflict);
        assert_eq!(class_of(&api(429)), ErrorClass::Transient);
        assert_eq!(class_of(&api(503)), ErrorClass::Transient);
        for code in [400, 403, 404, 422] {
            assert_eq!(class_of(&api(code)), ErrorClass::Permanent, "{code}");
        }
    }

    #[test]
    fn retries_back_off_from_one_second_to_five_minutes_and_conflicts_stay_quick() {
        let waits: Vec<u64> = (1..=11).map(|n| backoff(ErrorClass::Transient, n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        assert_eq!(backoff(ErrorClass::Permanent, 40), MAX_RETRY);
        assert_eq!(backoff(ErrorClass::Conflict, 9), FIRST_RETRY);
    }
}
