//! `headroom run`: the engine's runner, unattended.
//!
//! Three scheduled jobs share one validated `headroom.toml`
//! ([`headroom_engine::Settings`]):
//!
//! * **collect** (every minute): every `[[sources]]` table, concurrently,
//!   into the store; the store compacted to its retention once an hour;
//! * **forecast** (every hour): the targets' series from the store, through
//!   the model registry ([`headroom_engine::runner::forecast`]);
//! * **act** (every minute): the latest forecasts and fresh samples through
//!   [`headroom_engine::runner::step`] — decide, settle intents a crash left,
//!   carry each decision out through the audit log (dry-run unless both
//!   `--enforce` and the target's `mode = "enforce"`).
//!
//! Around them: the process supervisor for `[[processes]]`, the HTTP
//! endpoint ([`http`]: `/metrics`, `/healthz`, `/readyz`, `/api/v1/…`,
//! `POST /-/reload`), hot reload ([`reload`]: SIGHUP, HTTP, a file watch),
//! systemd readiness ([`notify`]) and graceful shutdown. The daemon
//! implements none of the cycle: it schedules the engine's runner.

pub mod http;
pub mod jobs;
pub mod metrics;
pub mod notify;
pub mod reload;
pub mod scheduler;
pub mod state;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use headroom_actuate::process::Supervisor;
use headroom_actuate::{AuditLog, AuditOptions, Platforms};
use headroom_core::Interrupt;
use headroom_engine::Settings;
use tokio_util::sync::CancellationToken;

pub use state::Daemon;

/// What went wrong starting or running the daemon.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The config file cannot be used.
    #[error(transparent)]
    Config(#[from] headroom_remediate::Error),
    /// The audit log or the process supervisor could not be started.
    #[error(transparent)]
    Actuate(#[from] headroom_actuate::Error),
    /// The store could not be opened.
    #[error(transparent)]
    Collect(#[from] headroom_collect::Error),
    /// The HTTP endpoint could not be bound.
    #[error("daemon.listen = {addr}: cannot listen: {source}")]
    Listen {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// How the daemon was started.
#[derive(Debug, Clone)]
pub struct Options {
    /// The config file (re-read on reload).
    pub config: PathBuf,
    /// Carry out decisions of targets whose config says `mode = "enforce"`;
    /// without it every decision is recorded as a dry run. Fixed for the
    /// daemon's lifetime: a reload cannot turn it on.
    pub enforce: bool,
}

/// The `[[processes]]` to start, each at the instance count the audit log
/// last recorded an enforced scale of its target to (so a restart of the
/// daemon does not undo a scale-out the policy will not repeat: the same
/// decision id is never carried out twice), within the target's bounds;
/// else at its configured count.
pub fn restored_instances(
    settings: &Settings,
    ledger: &headroom_remediate::audit::Ledger,
) -> Vec<headroom_actuate::process::ProcessSpec> {
    use headroom_core::{Action, Mode};
    use headroom_remediate::config::Platform;
    use headroom_remediate::state::Outcome;
    let history = ledger.history();
    let mut specs = settings.processes.clone();
    for spec in &mut specs {
        let entity = format!("proc/{}", spec.name);
        let Some(t) = settings.policy.targets.iter().find(|t| t.platform == Platform::Process && t.entity == entity)
        else {
            continue;
        };
        let last = history
            .iter()
            .filter(|a| a.target == t.name && a.mode == Mode::Enforce && a.outcome == Outcome::Succeeded)
            .filter_map(|a| match a.action {
                Action::ScaleTo { replicas } => Some((a.at_ms, replicas)),
                _ => None,
            })
            .max_by_key(|(at, _)| *at);
        if let Some((_, n)) = last {
            let n = n.clamp(t.min_replicas, t.max_replicas);
            if n != spec.instances {
                tracing::info!(process = %spec.name, instances = n, configured = spec.instances, "starting at the count the audit log last scaled it to");
                spec.instances = n;
            }
        }
    }
    specs
}

/// How a shutdown went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shutdown {
    /// Every job ended within `daemon.shutdown_timeout` (false: some were
    /// stopped where they were; a Windows service then exits non-zero).
    pub clean: bool,
}

/// Runs the daemon until `stop` is cancelled, then shuts down gracefully:
/// `/readyz` turns 503, no job starts again, the act job finishes the
/// action in flight (at most `daemon.shutdown_timeout`), supervised
/// children are stopped (SIGTERM, then SIGKILL after their stop timeout),
/// and the audit log (synced at every record) is closed.
pub async fn run(options: Options, stop: CancellationToken) -> Result<Shutdown, Error> {
    let settings = Settings::load(&options.config)?;
    let (log, opened) = AuditLog::open(&settings.audit.path, AuditOptions::default())?;
    for s in &opened.skipped {
        tracing::warn!(audit = %settings.audit.path.display(), "{s}");
    }
    let store = headroom_collect::store::Store::open(&settings.store.path)?.with_cancel(stop.clone());
    let (sup_stop, sup_watch) = tokio::sync::watch::channel(false);
    let specs = restored_instances(&settings, log.ledger());
    let supervisor = Arc::new(Supervisor::start(specs, sup_watch).await?);
    let platforms = Platforms::new().with_supervisor(supervisor.clone());
    let listener = tokio::net::TcpListener::bind(settings.daemon.listen)
        .await
        .map_err(|source| Error::Listen { addr: settings.daemon.listen, source })?;
    let listen = listener.local_addr().unwrap_or(settings.daemon.listen);
    let interrupt = Interrupt::new();
    let daemon = Arc::new(Daemon::new(options, settings, store, log, platforms, supervisor.clone(), interrupt.clone()));
    daemon.metrics.config_last_reload_successful.set(1);
    daemon.metrics.config_last_reload_success_time.set(state::unix_seconds());
    tracing::info!(%listen, config = %daemon.options.config.display(), enforce = daemon.options.enforce, "headroom daemon started");

    let jobs_stop = stop.child_token();
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(jobs::schedule(daemon.clone(), jobs_stop.clone()));
    let (reloads, reload_task) = reload::start(daemon.clone(), jobs_stop.clone());
    daemon.set_reloads(reloads);
    let http_stop = CancellationToken::new();
    let server = tokio::spawn(http::serve(listener, daemon.clone(), http_stop.clone()));
    let watchdog = tokio::spawn(notify::watchdog(daemon.clone(), jobs_stop.clone()));
    notify::ready(&daemon);

    stop.cancelled().await;
    // Shutdown: not ready, no new job, the action in flight finishes.
    daemon.begin_shutdown();
    notify::stopping();
    interrupt.raise(15);
    let timeout: Duration = daemon.settings().daemon.shutdown_timeout.0;
    let drained = tokio::time::timeout(timeout, async { while tasks.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(timeout = ?timeout, "jobs still running after daemon.shutdown_timeout: stopped where they were");
        tasks.abort_all();
    }
    reload_task.abort();
    watchdog.abort();
    let _ = sup_stop.send(true);
    supervisor.join().await;
    http_stop.cancel();
    let _ = server.await;
    tracing::info!(clean = drained.is_ok(), "headroom daemon stopped");
    Ok(Shutdown { clean: drained.is_ok() })
}
