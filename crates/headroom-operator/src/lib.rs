//! `headroom operator`: the `CapacityPolicy` custom resource and its
//! controller. Each policy is one `[[targets]]` table of `headroom.toml`
//! ([`policy`]); each reconcile is one step of the engine's runner for it
//! ([`controller`]); what it saw, predicts and did goes into the policy's
//! status ([`status`]), its audit log on the operator's volume, Events and
//! the operator's metrics ([`metrics`], served by [`http`]). With several
//! replicas, only the holder of the Lease acts ([`leader`]).
//!
//! ```text
//! crd       the CapacityPolicy type, its schema and printer columns; `headroom operator crd`
//! policy    spec → Target + Config + Prometheus queries (defaults and checks are the engine's)
//! status    conditions, peak, ETA, last decision/action, Events: plain functions
//! controller reconcile, error policy, cleanup (HPA restore), the watches
//! leader    the Lease (kube-lease-manager)
//! metrics   /metrics; http: /healthz, /readyz
//! ```

pub mod controller;
pub mod crd;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod policy;
pub mod status;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use kube::Client;
use tokio_util::sync::CancellationToken;
use tracing::info;

pub use controller::{Context, Sources, prometheus_sources};
pub use leader::{Election, Leadership, LeaseOptions};

/// How `headroom operator run` was started.
#[derive(Debug, Clone)]
pub struct Options {
    /// Address of `/healthz`, `/readyz`, `/metrics`.
    pub listen: SocketAddr,
    /// Audit logs live under `<state_dir>/audit/` (a PersistentVolume).
    pub state_dir: PathBuf,
    /// Model and secrets defaults for policies that do not name their own.
    pub defaults: policy::Defaults,
    /// Only this namespace's policies (default: every namespace).
    pub namespace: Option<String>,
    /// The Lease to hold, or none (one replica, no election).
    pub lease: Option<LeaseOptions>,
    /// This replica's name in Events (its pod name).
    pub instance: Option<String>,
}

/// [`run`] with the client of the environment: the pod's service account
/// in a cluster, else `KUBECONFIG` or `~/.kube/config`.
pub async fn run_with_default_client(options: Options, stop: CancellationToken) -> Result<(), String> {
    let client = Client::try_default().await.map_err(|e| {
        format!(
            "no Kubernetes API to talk to (in a pod: its service account; outside: KUBECONFIG or ~/.kube/config): {e}"
        )
    })?;
    run(client, options, stop).await
}

/// Runs the operator until `stop`: the endpoints, the election (if any) and
/// the controller; on stop, the controller finishes the reconciles in
/// flight and the lease is released.
pub async fn run(client: Client, options: Options, stop: CancellationToken) -> Result<(), String> {
    run_with(client, options, prometheus_sources(), stop).await
}

/// [`run`] with another source of history (recorded series in a test against a real cluster).
pub async fn run_with(
    client: Client,
    options: Options,
    sources: Sources,
    stop: CancellationToken,
) -> Result<(), String> {
    let election = match &options.lease {
        Some(lease) => Some(
            Election::start(client.clone(), lease)
                .await
                .map_err(|e| format!("leader election on lease {}/{}: {e}", lease.namespace, lease.name))?,
        ),
        None => None,
    };
    let leadership = election.as_ref().map_or_else(Leadership::always, |e| e.leadership.clone());
    let ctx = Arc::new(Context::new(
        client,
        options.defaults.clone(),
        options.state_dir.clone(),
        sources,
        leadership.clone(),
        options.instance.clone(),
    ));
    let ready = Arc::new(AtomicBool::new(false));
    let probe = http::Probe { metrics: ctx.metrics.clone(), ready: ready.clone() };
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", options.listen))?;
    let server_stop = stop.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, http::router(probe))
            .with_graceful_shutdown(async move { server_stop.cancelled().await })
            .await
    });
    let metrics = ctx.metrics.clone();
    let watch_leader = leadership.clone();
    let gauge = tokio::spawn(async move {
        loop {
            metrics.set_leader(watch_leader.is_leader());
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    info!(listen = %options.listen, namespace = ?options.namespace, election = options.lease.is_some(), "operator started");
    ready.store(true, std::sync::atomic::Ordering::Relaxed);
    controller::run(ctx, options.namespace.clone(), stop.clone()).await;
    gauge.abort();
    drop(leadership);
    if let Some(e) = election {
        e.release(Duration::from_secs(5)).await;
    }
    let _ = server.await;
    Ok(())
}
