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
    /// 1 while this replica holds the providers' Lease (sharded replicas only).
    providers_leader: Gauge,
    /// Times this replica stepped down because it could not confirm its lease in time.
    pub step_downs: Counter,
}

impl Default for Health {
    fn default() -> Self {
        Self {
            role: AtomicU8::new(Role::Starting as u8),
            synced: AtomicBool::new(false),
            leader: Gauge::default(),
            providers_leader: Gauge::default(),
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
    /// A health state whose role is also exported as the `leader` gauge,
    /// labelled with the shard's name on a named shard's replica, so that an
    /// alert can tell which shard has no leader.
    /// `providers_leader` is exported only by a replica that elects the
    /// providers' Lease (`providers_elected`).
    pub fn register(registry: &mut Registry, shard: Option<&str>, providers_elected: bool) -> Self {
        let health = Self::default();
        let per_shard = match shard {
            Some(name) => registry.sub_registry_with_label(("shard".into(), name.to_owned().into())),
            None => &mut *registry,
        };
        per_shard.register("leader", "1 while this replica holds the leader lease", health.leader.clone());
        if providers_elected {
            registry.register(
                "providers_leader",
                "1 while this replica holds the providers' lease and so runs the inventory syncers and the reverter",
                health.providers_leader.clone(),
            );
        }
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

    /// The seat of the providers' election, which `/readyz` does not answer for.
    pub fn providers_seat(&self) -> ProvidersSeat<'_> {
        ProvidersSeat(self)
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

/// Where one leader election reports its role and its step-downs.
pub trait Seat: Sync {
    fn set_role(&self, role: Role);
    fn stepped_down(&self);
}

/// The replica's own election: its role answers `/readyz`.
impl Seat for Health {
    fn set_role(&self, role: Role) {
        Health::set_role(self, role);
    }
    fn stepped_down(&self) {
        self.step_downs.inc();
    }
}

/// The providers' election of a sharded replica: only its gauge.
pub struct ProvidersSeat<'a>(&'a Health);

impl Seat for ProvidersSeat<'_> {
    fn set_role(&self, role: Role) {
        self.0.providers_leader.set(i64::from(role == Role::Leading));
    }
    fn stepped_down(&self) {
        self.0.step_downs.inc();
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
