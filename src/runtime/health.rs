//! What `/readyz` answers. A replica is ready to serve as the leader only
//! once it holds the lease *and* its caches hold a complete list; a standby
//! is ready too (it is healthy and can take over), and says so.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Role {
    Starting = 0,
    /// Waiting for the leader lease.
    Standby = 1,
    /// Holding the lease (or running without leader election).
    Leading = 2,
    ShuttingDown = 3,
}

#[derive(Debug)]
pub struct Health {
    role: AtomicU8,
    synced: AtomicBool,
    leader: Gauge,
    /// Times this replica stepped down because it could not confirm its lease in time.
    pub step_downs: Counter,
}

impl Default for Health {
    fn default() -> Self {
        Self {
            role: AtomicU8::new(Role::Starting as u8),
            synced: AtomicBool::new(false),
            leader: Gauge::default(),
            step_downs: Counter::default(),
        }
    }
}

/// A `/readyz` answer: ready or not, and the line to say.
#[derive(Debug, PartialEq, Eq)]
pub struct Readiness {
    pub ready: bool,
    pub message: &'static str,
}

impl Health {
    /// A health state whose role is also exported as the `leader` gauge.
    pub fn register(registry: &mut Registry) -> Self {
        let health = Self::default();
        registry.register("leader", "1 while this replica holds the leader lease", health.leader.clone());
        registry.register(
            "leader_step_downs",
            "Times this replica stopped acting because it had not confirmed its lease within the renew deadline",
            health.step_downs.clone(),
        );
        health
    }

    pub fn set_role(&self, role: Role) {
        self.role.store(role as u8, Ordering::Relaxed);
        self.leader.set(i64::from(role == Role::Leading));
    }

    /// Called once the caches a leader decides on have listed everything.
    pub fn set_synced(&self) {
        self.synced.store(true, Ordering::Relaxed);
    }

    pub fn role(&self) -> Role {
        match self.role.load(Ordering::Relaxed) {
            1 => Role::Standby,
            2 => Role::Leading,
            3 => Role::ShuttingDown,
            _ => Role::Starting,
        }
    }

    pub fn readiness(&self) -> Readiness {
        let (ready, message) = match (self.role(), self.synced.load(Ordering::Relaxed)) {
            (Role::Leading, true) => (true, "ok: leading"),
            (Role::Standby, _) => (true, "ok: standby, waiting for the leader lease"),
            (Role::ShuttingDown, _) => (false, "shutting down"),
            (Role::Leading, false) => (false, "starting: leading, caches not yet synced"),
            (Role::Starting, _) => (false, "starting: caches not yet synced"),
        };
        Readiness { ready, message }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leader_is_ready_only_once_synced() {
        let health = Health::default();
        assert!(!health.readiness().ready);
        health.set_role(Role::Standby);
        assert_eq!(health.readiness().message, "ok: standby, waiting for the leader lease");
        health.set_role(Role::Leading);
        assert!(!health.readiness().ready, "leading but not synced");
        health.set_synced();
        assert_eq!(health.readiness(), Readiness { ready: true, message: "ok: leading" });
        health.set_role(Role::ShuttingDown);
        assert!(!health.readiness().ready);
    }
}
