use tokio::sync::watch;

/// A stop flag that turns true once, on SIGTERM or Ctrl-C (or when told).
#[derive(Clone)]
pub struct Stop(watch::Receiver<bool>);

impl Stop {
    /// A flag raised by the process's termination signals.
    pub fn on_signals() -> Self {
        let (tx, rx) = watch::channel(false);
        tokio::spawn(async move {
            termination_signal().await;
            tracing::info!("shutdown requested; finishing in-flight work");
            let _ = tx.send(true);
        });
        Stop(rx)
    }

    /// A flag and the sender that raises it (for tests and embedding).
    pub fn manual() -> (watch::Sender<bool>, Self) {
        let (tx, rx) = watch::channel(false);
        (tx, Stop(rx))
    }

    /// A flag raised with this one, or earlier by the returned sender: a
    /// part of the process that must stop on its own stops the rest with it.
    pub fn or_raised_by_hand(&self) -> (watch::Sender<bool>, Self) {
        let (tx, rx) = watch::channel(self.is_raised());
        let (parent, raise) = (self.clone(), tx.clone());
        tokio::spawn(async move {
            tokio::select! {
                () = parent.stopped() => { let _ = raise.send(true); }
                () = raise.closed() => {}
            }
        });
        (tx, Stop(rx))
    }

    pub fn is_raised(&self) -> bool {
        *self.0.borrow()
    }

    /// Sleeps for `pause`, or less if the flag is raised meanwhile; true when it was.
    pub async fn sleep(&self, pause: std::time::Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(pause) => self.is_raised(),
            _ = self.clone().stopped() => true,
        }
    }

    /// Completes once the flag is raised (at once if it already is).
    pub async fn stopped(self) {
        let mut rx = self.0;
        let _ = rx.wait_for(|stop| *stop).await;
    }
}

async fn termination_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing a SIGTERM handler");
        tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
