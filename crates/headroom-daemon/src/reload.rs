//! Hot reload: SIGHUP, `POST /-/reload` and a watch on the config file all
//! ask one task, which re-reads the file, validates it in full, and only
//! then puts it in force (atomically; jobs take the config at their start,
//! so it applies at the next job). An invalid file is refused with every
//! problem logged by key path and value, counted on `/metrics`
//! (`headroom_config_last_reload_successful` 0), and the old config keeps
//! running.
//!
//! The watch polls a hash of the file's contents every `daemon.watch`
//! (reading through symlinks each time, so a file replaced by rename or a
//! Kubernetes ConfigMap's symlink swap is seen), and waits a second for the
//! contents to settle before reloading.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use headroom_core::Fnv1a64;
use headroom_engine::Settings;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::state::{Daemon, ReloadReply, unix_seconds};

/// How long the file must stay the same before a changed config is loaded.
pub const SETTLE: Duration = Duration::from_secs(1);

/// Starts the reload task (and the SIGHUP listener and file watch feeding it).
pub fn start(d: Arc<Daemon>, stop: CancellationToken) -> (mpsc::Sender<ReloadReply>, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::channel::<ReloadReply>(8);
    let task = {
        let d = d.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            loop {
                let reply = tokio::select! {
                    () = stop.cancelled() => return,
                    r = rx.recv() => match r { Some(r) => r, None => return },
                };
                let _ = reply.send(apply(&d));
            }
        })
    };
    #[cfg(unix)]
    tokio::spawn(on_sighup(d.clone(), tx.clone(), stop.clone()));
    tokio::spawn(watch(d, tx.clone(), stop));
    (tx, task)
}

/// Reads, validates and puts in force the config file; on any problem the
/// config in force stays.
pub fn apply(d: &Daemon) -> Result<(), Vec<String>> {
    crate::notify::reloading();
    let path = &d.options.config;
    // What is read now is what the file watch compares with from now on, so
    // a reload by SIGHUP or POST is not done again by the watch (and a
    // refused file is not refused again until it changes).
    d.set_config_hash(content_hash(path));
    let result = Settings::load(path);
    let outcome = match result {
        Ok(new) => {
            let old = d.settings();
            for what in needs_restart(&old, &new) {
                tracing::warn!(
                    "{what} changed: it applies when the daemon restarts; the rest of the config applies now"
                );
            }
            d.replace_settings(new);
            d.metrics.config_last_reload_successful.set(1);
            d.metrics.config_last_reload_success_time.set(unix_seconds());
            tracing::info!(config = %path.display(), "config reloaded");
            Ok(())
        }
        Err(e) => {
            let problems = match e {
                headroom_remediate::Error::Invalid { problems, .. } => {
                    problems.iter().map(ToString::to_string).collect()
                }
                other => vec![other.to_string()],
            };
            for p in &problems {
                tracing::error!(config = %path.display(), "reload refused: {p}");
            }
            d.metrics.config_last_reload_successful.set(0);
            d.metrics.error("reload");
            Err(problems)
        }
    };
    d.status().last_reload = Some(crate::state::ReloadRecord {
        at: headroom_core::format_ts(headroom_actuate::audit::wall_clock_ms()),
        successful: outcome.is_ok(),
        problems: outcome.as_ref().err().cloned().unwrap_or_default(),
    });
    crate::notify::ready(d);
    outcome
}

/// The settings read only at start-up that differ between `old` and `new`.
fn needs_restart(old: &Settings, new: &Settings) -> Vec<&'static str> {
    let mut out = Vec::new();
    if old.store.path != new.store.path {
        out.push("store.path");
    }
    if old.audit.path != new.audit.path {
        out.push("audit.path");
    }
    if old.daemon.listen != new.daemon.listen {
        out.push("daemon.listen");
    }
    if old.processes != new.processes {
        out.push("[[processes]]");
    }
    out
}

#[cfg(unix)]
async fn on_sighup(d: Arc<Daemon>, tx: mpsc::Sender<ReloadReply>, stop: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP: reload with POST /-/reload or by editing the file");
        return;
    };
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = hup.recv() => {}
        }
        tracing::info!(config = %d.options.config.display(), "SIGHUP: reloading the config");
        let (reply, _answer) = tokio::sync::oneshot::channel();
        if tx.send(reply).await.is_err() {
            return;
        }
    }
}

/// A hash of the file's contents (None: it cannot be read right now).
pub fn content_hash(path: &Path) -> Option<u64> {
    let bytes = std::fs::read(path).ok()?;
    let mut h = Fnv1a64::default();
    std::hash::Hasher::write(&mut h, &bytes);
    Some(std::hash::Hasher::finish(&h))
}

async fn watch(d: Arc<Daemon>, tx: mpsc::Sender<ReloadReply>, stop: CancellationToken) {
    let path = d.options.config.clone();
    d.set_config_hash(content_hash(&path));
    loop {
        let (every, on) = {
            let s = d.settings();
            (s.daemon.watch.0, s.daemon.watch_config)
        };
        if !on {
            // Watching is off; check again later in case a reload turns it on.
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(Duration::from_secs(30)) => continue,
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        let now = content_hash(&path);
        if now.is_none() || now == d.config_hash() {
            continue;
        }
        tokio::time::sleep(SETTLE).await;
        if content_hash(&path) != now {
            continue; // still being written: next round
        }
        tracing::info!(config = %path.display(), "the config file changed: reloading");
        let (reply, answer) = tokio::sync::oneshot::channel();
        if tx.send(reply).await.is_err() {
            return;
        }
        // `apply` records what it read: a refused file is not retried until it changes again.
        let _ = answer.await;
    }
}
