//! Leader election: only the replica holding the `coordination.k8s.io/v1`
//! Lease reconciles (crate `kube-lease-manager`, which renews it with
//! server-side apply). A replica that loses the lease stops acting at once:
//! every reconcile asks [`Leadership::is_leader`] first, and a step in
//! flight is interrupted between decisions ([`Leadership::watch_loss`]).
//! A graceful shutdown releases the lease so another replica takes over
//! without waiting for it to expire.

use std::time::Duration;

use headroom_core::Interrupt;
use kube::Client;
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, DropGuard};
use tracing::{info, warn};

/// Whether this replica may act, as the lease says now.
#[derive(Debug, Clone)]
pub struct Leadership {
    rx: watch::Receiver<bool>,
}

impl Leadership {
    /// Always the leader: one replica, leader election off.
    pub fn always() -> Self {
        Self { rx: watch::channel(true).1 }
    }

    /// Leadership as `rx` reports it (true: holds the lease).
    pub fn from_channel(rx: watch::Receiver<bool>) -> Self {
        Self { rx }
    }

    /// Whether this replica holds the lease now.
    pub fn is_leader(&self) -> bool {
        *self.rx.borrow()
    }

    /// An [`Interrupt`] raised the moment leadership is lost (at once when
    /// not the leader now); it stops watching when the guard is dropped.
    pub fn watch_loss(&self) -> LossWatch {
        let interrupt = Interrupt::new();
        if !self.is_leader() {
            interrupt.raise(15);
            return LossWatch { interrupt, task: None };
        }
        let mut rx = self.rx.clone();
        let raised = interrupt.clone();
        let task = tokio::spawn(async move {
            while rx.changed().await.is_ok() {
                if !*rx.borrow() {
                    warn!("lost the lease: stopping between decisions");
                    raised.raise(15);
                    return;
                }
            }
        });
        LossWatch { interrupt, task: Some(task) }
    }
}

/// An interrupt raised when leadership is lost; see [`Leadership::watch_loss`].
#[derive(Debug)]
pub struct LossWatch {
    /// Raised when the lease is lost.
    pub interrupt: Interrupt,
    task: Option<JoinHandle<()>>,
}

impl Drop for LossWatch {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

/// Where the lease is and who this replica is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseOptions {
    /// The lease's namespace (the operator's own: `POD_NAMESPACE`).
    pub namespace: String,
    /// The lease's name (`headroom-operator`).
    pub name: String,
    /// This replica's identity (its pod name: `POD_NAME`).
    pub identity: String,
    /// How long a lease holds without renewal (default 15 s).
    pub duration: Duration,
    /// How long before expiry the holder renews (default 5 s).
    pub grace: Duration,
}

/// The running election: its leadership and the task that keeps the lease.
#[derive(Debug)]
pub struct Election {
    /// Leadership as the lease says.
    pub leadership: Leadership,
    task: JoinHandle<kube_lease_manager::Result<LeaseManager>>,
    /// Stops the task that logs leadership changes. That task holds a
    /// receiver of the leadership channel, and the lease task releases the
    /// lease only once every receiver is gone: it must end first.
    log: DropGuard,
}

impl Election {
    /// Starts competing for the lease (created when missing).
    pub async fn start(client: Client, options: &LeaseOptions) -> kube_lease_manager::Result<Self> {
        // The crate's builder does not check grace < duration; a grace as long
        // as the lease would renew without pause.
        let duration = options.duration.as_secs().max(2);
        let grace = options.grace.as_secs().clamp(1, duration - 1);
        let manager = LeaseManagerBuilder::new(client, &options.name)
            .with_namespace(&options.namespace)
            .with_identity(&options.identity)
            .with_field_manager(format!("headroom-operator-{}", options.identity))
            .with_duration(duration)
            .with_grace(grace)
            .build()
            .await?;
        let (rx, task) = manager.watch().await;
        let mut log = rx.clone();
        let identity = options.identity.clone();
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = stopped.cancelled() => return,
                    changed = log.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        let leader = *log.borrow_and_update();
                        info!(identity = %identity, leader, "lease {}", if leader { "acquired" } else { "lost" });
                    }
                }
            }
        });
        Ok(Self { leadership: Leadership::from_channel(rx), task, log: stop.drop_guard() })
    }

    /// Releases the lease (if held) once every copy of the leadership is
    /// dropped, waiting at most `timeout`.
    pub async fn release(self, timeout: Duration) {
        drop(self.leadership);
        drop(self.log);
        match tokio::time::timeout(timeout, self.task).await {
            Ok(Ok(Ok(_))) => info!("lease released"),
            Ok(Ok(Err(e))) => warn!(error = %e, "could not release the lease"),
            Ok(Err(e)) => warn!(error = %e, "the lease task ended abnormally"),
            Err(_) => warn!("the lease was not released in time: it expires on its own"),
        }
    }
}
