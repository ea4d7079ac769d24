//! Leader election on a Lease, so that of several replicas only one writes.

use super::Stop;
use super::fence::Fence;
use super::health::{Role, Seat};
use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub name: String,
    pub namespace: String,
    /// How long a lease lasts without renewal: the takeover time when a leader dies.
    pub duration: Duration,
    /// This replica's name in the lease.
    pub identity: String,
    /// Field manager of the lease writes.
    pub field_manager: String,
}

#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error("leader election on Lease {namespace}/{name} failed: {source}")]
    Lease { namespace: String, name: String, source: kube_lease_manager::LeaseManagerError },
    #[error("lost the leader lease {namespace}/{name}; exiting so that only one replica writes")]
    Lost { namespace: String, name: String },
    #[error(
        "stepped down: the leader lease {namespace}/{name} was not confirmed within the renew deadline ({why}); exiting so that only one replica writes"
    )]
    SteppedDown { namespace: String, name: String, why: String },
}

impl LeaseConfig {
    /// How long a leader acts without confirming its lease: two thirds of
    /// the lease, as client-go's RenewDeadline (10s of 15s).
    pub fn renew_deadline(&self) -> Duration {
        self.duration.mul_f64(2.0 / 3.0)
    }

    /// The fence of this lease (see [`Fence`]).
    pub fn fence(&self, client: Client) -> Fence {
        let leases = kube::Api::namespaced(client, &self.namespace);
        Fence::on_lease(leases, &self.name, &self.identity, self.renew_deadline())
    }
}

/// Waits for the lease, then runs `work` while holding it, telling `seat`
/// its role. Returns when
/// `work` ends or, before the lease is won, when `stop` is raised; fails with
/// [`LeaderError::Lost`] when the lease is lost while working, and with
/// [`LeaderError::SteppedDown`] when `fence` (this lease's) has not been
/// confirmed within the renew deadline. Leaving releases the lease, so a
/// standby takes over at once; `work` is dropped first, so whatever it
/// spawned into a `JoinSet` is stopped before then.
pub async fn while_leading<E>(
    client: Client,
    (config, fence): (&LeaseConfig, &Fence),
    seat: &impl Seat,
    stop: Stop,
    work: impl Future<Output = Result<(), E>>,
) -> Result<(), E>
where
    E: From<LeaderError>,
{
    let lease_error =
        |source| LeaderError::Lease { namespace: config.namespace.clone(), name: config.name.clone(), source };
    let secs = config.duration.as_secs().max(2);
    let manager = LeaseManagerBuilder::new(client, &config.name)
        .with_namespace(&config.namespace)
        .with_identity(&config.identity)
        .with_duration(secs)
        .with_grace((secs / 3).max(1))
        .with_field_manager(config.field_manager.clone())
        .build()
        .await
        .map_err(lease_error)?;
    let (mut leading, lease_task) = manager.watch().await;
    seat.set_role(Role::Standby);
    tracing::info!(identity = %config.identity, lease = %config.name, "waiting for the leader lease");
    let release = |leading, task| async move {
        drop(leading);
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    };
    let lost = || LeaderError::Lost { namespace: config.namespace.clone(), name: config.name.clone() };
    let won = tokio::select! {
        won = leading.wait_for(|leader| *leader) => Some(won.is_ok()),
        _ = stop.stopped() => None,
    };
    match won {
        Some(true) => {}
        // The lease manager is gone: nothing guarantees we are the only writer.
        Some(false) => {
            release(leading, lease_task).await;
            return Err(lost().into());
        }
        None => {
            release(leading, lease_task).await;
            return Ok(());
        }
    }
    tracing::info!(identity = %config.identity, "acquired the leader lease");
    seat.set_role(Role::Leading);
    let mut watching = leading.clone();
    let stepped_down = |why: String| {
        tracing::error!(identity = %config.identity, %why, "stepping down: the lease was not confirmed within the renew deadline; this replica stops acting");
        seat.stepped_down();
        LeaderError::SteppedDown { namespace: config.namespace.clone(), name: config.name.clone(), why }
    };
    let outcome = tokio::select! {
        result = work => result,
        _ = watching.wait_for(|leader| !*leader) => Err(lost().into()),
        why = keep_confirmed(fence, config) => Err(stepped_down(why).into()),
    };
    seat.set_role(Role::ShuttingDown);
    // Every receiver must be gone for the lease manager to release the lease.
    drop(watching);
    release(leading, lease_task).await;
    outcome
}

/// Confirms the fence every sixth of the lease; returns why, once it no
/// longer holds (a lease held by another, not renewed, or unreadable for
/// the renew deadline, or this process stopped past it).
async fn keep_confirmed(fence: &Fence, config: &LeaseConfig) -> String {
    let every = (config.duration / 6).max(Duration::from_millis(200));
    let started = std::time::Instant::now();
    loop {
        let confirmed = fence.confirm().await;
        // Just won: the first confirmation may take a renewal to show.
        if !fence.holds() && started.elapsed() > config.renew_deadline() {
            return match confirmed {
                Err(why) => why.to_string(),
                Ok(()) => format!("the last confirmation is older than {:?}", config.renew_deadline()),
            };
        }
        tokio::time::sleep(every).await;
    }
}
