//! What happened: an instance's [`Event`]s, the in-memory log that keeps
//! them, and the restart-counter series made from them.

use std::collections::VecDeque;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::Mutex;

use headroom_core::{SeriesData, SeriesKey};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use super::{fail, lock};
use crate::error::Result;

/// Events kept in memory; older ones are dropped first.
const EVENTS_KEPT: usize = 10_000;

/// Something that happened to one instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// The process name (the entity is `proc/<name>`).
    pub process: String,
    /// The instance number.
    pub instance: u32,
    /// When, ms since the epoch.
    pub at_ms: i64,
    /// What.
    pub kind: EventKind,
}

/// What happened to an instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    /// A child was started.
    Started {
        /// Its pid (also its process group).
        pid: u32,
    },
    /// A child could not be started (no such program, output file not
    /// writable, cgroup refused it); counts as an exit.
    StartFailed {
        /// The operating system's answer.
        why: String,
    },
    /// The child exited with a code.
    Exited {
        /// The exit code.
        code: i32,
    },
    /// The child was ended by a signal (other than an OOM kill).
    Killed {
        /// The signal number.
        signal: i32,
    },
    /// The kernel's OOM killer ended the child: it died by SIGKILL (or, a
    /// shell reporting one, with code 137) while its cgroup's `oom_kill` count rose.
    OomKilled,
    /// The instance will be started again after this wait.
    Restarting {
        /// The wait, ms.
        after_ms: u64,
    },
    /// Too many starts within the start limit's interval: not started again (`failed`).
    StartLimitHit,
    /// The instance was stopped because it was asked to (scale-in, restart, shutdown).
    Stopped,
}

/// The cumulative restart counter of process `name` (entity `proc/<name>`,
/// metric `restarts`) from `events`: 0 at its first event, then one point per
/// `Restarting` event. This is the series the restart-loop and OOM detectors read.
pub fn restart_series(name: &str, events: &[Event]) -> Result<SeriesData> {
    let key = SeriesKey::new(format!("proc/{name}"), "restarts").map_err(|e| fail(name, e.to_string()))?;
    let mut series = SeriesData::new(key);
    let mut count = 0u64;
    for event in events.iter().filter(|e| e.process == name) {
        if series.is_empty() {
            series.push(event.at_ms, 0.0);
        }
        if matches!(event.kind, EventKind::Restarting { .. }) {
            count += 1;
            series.push(event.at_ms, count as f64);
        }
    }
    Ok(series)
}

/// How a child's end reads: an OOM kill when it died by SIGKILL (or a shell
/// reported one, code 137) while its cgroup's OOM-kill count rose.
pub(super) fn exit_kind(status: ExitStatus, oom_rose: bool) -> EventKind {
    const SIGKILL: i32 = 9;
    match (status.code(), status.signal()) {
        (_, Some(SIGKILL)) | (Some(137), _) if oom_rose => EventKind::OomKilled,
        (Some(code), _) => EventKind::Exited { code },
        (None, Some(signal)) => EventKind::Killed { signal },
        (None, None) => EventKind::Exited { code: -1 },
    }
}

/// The in-memory event log, with a channel for live readers.
#[derive(Debug)]
pub(super) struct EventLog {
    kept: Mutex<VecDeque<Event>>,
    live: broadcast::Sender<Event>,
}

impl EventLog {
    pub(super) fn new() -> Self {
        Self { kept: Mutex::new(VecDeque::new()), live: broadcast::channel(1024).0 }
    }

    pub(super) fn push(&self, event: Event) {
        let mut kept = lock(&self.kept);
        if kept.len() == EVENTS_KEPT {
            kept.pop_front();
        }
        kept.push_back(event.clone());
        let _ = self.live.send(event);
    }

    /// Every event kept, oldest first.
    pub(super) fn kept(&self) -> Vec<Event> {
        lock(&self.kept).iter().cloned().collect()
    }

    /// Events from now on, as they are pushed.
    pub(super) fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.live.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exits_are_told_apart() {
        let code = |c: i32| ExitStatus::from_raw(c << 8);
        let signal = |s: i32| ExitStatus::from_raw(s);
        assert_eq!(exit_kind(code(3), false), EventKind::Exited { code: 3 });
        assert_eq!(exit_kind(signal(15), false), EventKind::Killed { signal: 15 });
        assert_eq!(exit_kind(signal(9), false), EventKind::Killed { signal: 9 }, "SIGKILL without an OOM kill");
        assert_eq!(exit_kind(signal(9), true), EventKind::OomKilled);
        assert_eq!(exit_kind(code(137), true), EventKind::OomKilled, "a shell whose child was OOM-killed");
        assert_eq!(exit_kind(code(137), false), EventKind::Exited { code: 137 });
        assert_eq!(exit_kind(signal(15), true), EventKind::Killed { signal: 15 }, "only SIGKILL is the OOM killer's");
    }

    #[test]
    fn restart_events_become_a_counter_series() {
        let ev = |process: &str, at_ms, kind| Event { process: process.into(), instance: 0, at_ms, kind };
        let events = vec![
            ev("web", 1000, EventKind::Started { pid: 10 }),
            ev("db", 1100, EventKind::Started { pid: 11 }),
            ev("web", 1200, EventKind::Exited { code: 1 }),
            ev("web", 1200, EventKind::Restarting { after_ms: 100 }),
            ev("web", 1300, EventKind::Started { pid: 12 }),
            ev("web", 1400, EventKind::OomKilled),
            ev("web", 1400, EventKind::Restarting { after_ms: 200 }),
        ];
        let s = restart_series("web", &events).unwrap();
        assert_eq!(s.key.entity, "proc/web");
        assert_eq!(s.key.metric, "restarts");
        assert_eq!(s.ts, vec![1000, 1200, 1400]);
        assert_eq!(s.values, vec![0.0, 1.0, 2.0]);
        assert_eq!(restart_series("db", &events).unwrap().values, vec![0.0]);
    }
}
