//! systemd readiness (`sd_notify`; each call does nothing when
//! `NOTIFY_SOCKET` is unset, so the daemon runs the same outside systemd):
//! `READY=1` once serving, `STATUS=` a one-line summary, `RELOADING=1` with
//! `MONOTONIC_USEC` before a reload and `READY=1` after it, `STOPPING=1` on
//! shutdown, and `WATCHDOG=1` at half the unit's `WatchdogSec=` while the
//! scheduler is alive.

use std::sync::Arc;
use std::time::Duration;

use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;

use crate::state::Daemon;

fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::debug!("sd_notify: {e}");
    }
}

/// Serving (after start-up, and after each reload), with a summary.
pub fn ready(d: &Daemon) {
    let status = summary(d);
    send(&[NotifyState::Ready, NotifyState::Status(&status)]);
}

/// A reload begins.
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(_) => send(&[NotifyState::Reloading]),
    }
}

/// Shutdown begins.
pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("stopping: finishing the action in flight")]);
}

/// One line: targets, readiness, jobs' last results.
pub fn summary(d: &Daemon) -> String {
    let settings = d.settings();
    let status = d.status();
    let jobs: Vec<String> = status
        .jobs
        .iter()
        .map(|(job, s)| format!("{job} {}", if s.last_error.is_some() { "failing" } else { "ok" }))
        .collect();
    format!(
        "{} targets, {} sources, {}{}",
        settings.policy.targets.len(),
        settings.sources.len(),
        if d.ready() { "ready" } else { "starting" },
        if jobs.is_empty() { String::new() } else { format!("; {}", jobs.join(", ")) }
    )
}

/// Sends `WATCHDOG=1` (and the summary) at half the watchdog interval
/// while the job scheduler runs; returns at once when no watchdog is set.
pub async fn watchdog(d: Arc<Daemon>, stop: CancellationToken) {
    let Some(interval) = sd_notify::watchdog_enabled() else { return };
    let half = (interval / 2).max(Duration::from_millis(100));
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(half) => {}
        }
        let status = summary(&d);
        send(&[NotifyState::Watchdog, NotifyState::Status(&status)]);
    }
}
