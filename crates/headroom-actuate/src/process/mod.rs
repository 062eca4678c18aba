//! headroom's own process supervisor (like nssm), for hosts with no service
//! manager and for tests, and the [`ProcessActuator`] that scales and
//! restarts what it runs.
//!
//! A [`Supervisor`] runs N instances of each configured [`ProcessSpec`] (the
//! entity is `proc/<name>`): the command is run directly, never through a
//! shell, each instance in its own process group (and, with
//! `memory_limit_bytes`, in its own memory cgroup, v1 or v2, so that the
//! kernel's OOM killer acts for real). An instance that exits without being
//! asked to is restarted after a backoff (initial, doubling, capped), until
//! the start limit is hit (more than `burst` starts within `interval`): it is
//! then `failed` and left alone, as systemd does. Stopping is graceful:
//! SIGTERM to the instance's process group, SIGKILL after `stop_timeout`.
//!
//! Everything that happens is an [`Event`] (started, exited, killed,
//! OOM-killed, restarting, start limit hit, stopped), kept in memory
//! ([`Supervisor::events`], [`Supervisor::subscribe`]) and turned into the
//! restart-counter series the detectors read ([`restart_series`]).
//!
//! Each instance is one tokio task. The supervisor stops every child when
//! its shutdown channel says so ([`Supervisor::start`]), on
//! [`Supervisor::shutdown`], and when it is dropped (SIGKILL, no grace).
//!
//! Modules: `spec` (what to run: [`ProcessSpec`], [`Backoff`], their
//! checks), `event` (what happened: [`Event`], the in-memory log,
//! [`restart_series`]), `status` (where each instance is: [`Phase`],
//! [`Status`]), `instance` (one instance's task: start, watch, back off,
//! stop), `supervisor` ([`Supervisor`]: the instances of every process,
//! scaling, restarts, shutdown) and `actuator` ([`ProcessActuator`]).
//!
//! **Invariant:** the supervisor never leaves a child running that it no
//! longer tracks: a stopped instance's process group (and cgroup) is killed
//! and its cgroup removed.

#![cfg(unix)]

mod actuator;
mod event;
mod instance;
mod spec;
mod status;
mod supervisor;

use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::Error;

pub use actuator::ProcessActuator;
pub use event::{Event, EventKind, restart_series};
pub use spec::{Backoff, INSTANCE_ENV, ProcessSpec};
pub use status::{InstanceStatus, Phase, Status};
pub use supervisor::Supervisor;

/// The actuator's name, in errors and logs.
const ACTUATOR: &str = "process";

fn fail(target: &str, why: impl Into<String>) -> Error {
    Error::Actuator { actuator: ACTUATOR.into(), target: target.into(), why: why.into() }
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Locks a mutex, carrying on with the data if a thread panicked while holding it.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
