//! Whether this replica may act on the world now: send a cloud call, push to
//! Git. Holding the lease when work began does not say so at the moment of a
//! call: a leader paused past its lease (a stopped process, a stalled node, a
//! partition) resumes believing it leads while a standby already acts. The
//! fence is confirmed by reading the Lease, and holds from when that read was
//! sent for the renew deadline at most, and never past the lease's own expiry.
//! It is measured on the monotonic clock, which runs on while a process is
//! stopped, so a replica that wakes up late finds its fence closed.

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone)]
pub struct Fence(Option<Arc<LeaseFence>>);

struct LeaseFence {
    leases: Api<Lease>,
    name: String,
    identity: String,
    renew_deadline: Duration,
    state: Mutex<Confirmed>,
}

/// The last confirmation applied: until when it holds, and when it was asked
/// (an older answer that arrives later does not undo a newer one).
#[derive(Default)]
struct Confirmed {
    holds_until: Option<Instant>,
    asked: Option<Instant>,
}

impl Fence {
    /// No leader election: the only replica always holds.
    pub fn open() -> Self {
        Fence(None)
    }

    /// A fence on the Lease `name` that `identity` holds; closed until confirmed.
    pub fn on_lease(leases: Api<Lease>, name: &str, identity: &str, renew_deadline: Duration) -> Self {
        Fence(Some(Arc::new(LeaseFence {
            leases,
            name: name.to_owned(),
            identity: identity.to_owned(),
            renew_deadline,
            state: Mutex::default(),
        })))
    }

    /// True while the last confirmation still holds.
    pub fn holds(&self) -> bool {
        let Some(f) = &self.0 else { return true };
        f.state.lock().expect("fence lock poisoned").holds_until.is_some_and(|until| Instant::now() < until)
    }

    /// Reads the Lease now; it holds when this replica is the holder and the
    /// lease has not expired. A failed read leaves the last confirmation as it was.
    pub async fn confirm(&self) -> Result<(), FenceError> {
        let Some(f) = &self.0 else { return Ok(()) };
        let asked = (Instant::now(), Timestamp::now());
        let lease =
            f.leases.get(&f.name).await.map_err(|source| FenceError::Unreadable { lease: f.name.clone(), source })?;
        let spec = lease.spec.unwrap_or_default();
        let until = held_for(&f.identity, &spec, asked.1, f.renew_deadline).map(|left| asked.0 + left);
        let not_held = |why| FenceError::NotHeld { lease: f.name.clone(), why };
        let mut state = f.state.lock().expect("fence lock poisoned");
        if state.asked.is_some_and(|newer| newer > asked.0) {
            return until.map(|_| ()).map_err(not_held);
        }
        state.asked = Some(asked.0);
        match until {
            Ok(until) => {
                state.holds_until = Some(state.holds_until.map_or(until, |known| known.max(until)));
                Ok(())
            }
            Err(why) => {
                state.holds_until = None;
                Err(not_held(why))
            }
        }
    }
}

/// Why the fence could not be confirmed.
#[derive(Debug, thiserror::Error)]
pub enum FenceError {
    #[error("cannot read Lease {lease}: {source}")]
    Unreadable { lease: String, source: kube::Error },
    #[error("Lease {lease}: {why}")]
    NotHeld { lease: String, why: NotHeld },
}

/// Why a Lease, as read, does not let this replica act.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NotHeld {
    #[error("held by {holder:?}, not by this replica ({identity})")]
    HeldByAnother { holder: String, identity: String },
    #[error("never renewed")]
    NeverRenewed,
    #[error("expired at {0}")]
    Expired(Timestamp),
}

/// How long past `read_at` the lease read as `spec` lets `identity` act:
/// the renew deadline, cut at the lease's expiry (renewTime + duration).
pub fn held_for(
    identity: &str,
    spec: &k8s_openapi::api::coordination::v1::LeaseSpec,
    read_at: Timestamp,
    renew_deadline: Duration,
) -> Result<Duration, NotHeld> {
    let holder = spec.holder_identity.as_deref().unwrap_or_default();
    if holder != identity {
        return Err(NotHeld::HeldByAnother { holder: holder.to_owned(), identity: identity.to_owned() });
    }
    let renewed = spec.renew_time.as_ref().or(spec.acquire_time.as_ref()).ok_or(NotHeld::NeverRenewed)?.0;
    let duration = Duration::from_secs(u64::try_from(spec.lease_duration_seconds.unwrap_or(0)).unwrap_or(0));
    let expires = renewed + duration;
    let left = expires.duration_since(read_at);
    if left.is_negative() {
        return Err(NotHeld::Expired(expires));
    }
    let left = Duration::try_from(left).unwrap_or_default();
    Ok(left.min(renew_deadline))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::coordination::v1::LeaseSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;

    fn lease(holder: &str, renewed: i64) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            renew_time: Some(MicroTime(Timestamp::from_second(1_800_000_000 + renewed).unwrap())),
            lease_duration_seconds: Some(15),
            ..Default::default()
        }
    }

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + second).unwrap()
    }

    #[test]
    fn a_fresh_lease_holds_for_the_renew_deadline_and_never_past_its_expiry() {
        let deadline = Duration::from_secs(10);
        assert_eq!(held_for("a", &lease("a", 0), at(1), deadline), Ok(deadline));
        assert_eq!(held_for("a", &lease("a", 0), at(12), deadline), Ok(Duration::from_secs(3)), "expires at 15");
        assert_eq!(held_for("a", &lease("a", 0), at(16), deadline), Err(NotHeld::Expired(at(15))));
        let other = held_for("a", &lease("b", 0), at(1), deadline).unwrap_err();
        assert_eq!(other.to_string(), "held by \"b\", not by this replica (a)");
        let never = LeaseSpec { holder_identity: Some("a".into()), ..Default::default() };
        assert_eq!(held_for("a", &never, at(1), deadline), Err(NotHeld::NeverRenewed));
    }

    #[test]
    fn without_leader_election_the_fence_always_holds() {
        assert!(Fence::open().holds());
    }
}
