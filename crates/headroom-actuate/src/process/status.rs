//! Where each instance is: its [`Phase`], and a process's [`Status`].

use std::path::PathBuf;

use headroom_remediate::config::StartLimit;
use serde::{Deserialize, Serialize};

/// Where an instance is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Phase {
    /// Being started.
    Starting,
    /// Running.
    Running {
        /// The child's pid.
        pid: u32,
    },
    /// Waiting out the backoff before a restart.
    Restarting {
        /// When it will be started, ms since the epoch.
        at_ms: i64,
    },
    /// Asked to stop, not exited yet.
    Stopping {
        /// The child's pid.
        pid: u32,
    },
    /// The start limit was hit; not started again until asked.
    Failed,
    /// Stopped for good.
    Stopped,
}

impl Phase {
    /// The child's pid, while there is one.
    pub fn pid(&self) -> Option<u32> {
        match self {
            Phase::Running { pid } | Phase::Stopping { pid } => Some(*pid),
            _ => None,
        }
    }
}

/// One instance now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceStatus {
    /// The instance number.
    pub index: u32,
    /// Where it is.
    pub phase: Phase,
    /// Its memory cgroup, with `memory_limit_bytes`.
    pub cgroup: Option<PathBuf>,
}

/// One process now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// The process name.
    pub name: String,
    /// Its instances, by number.
    pub instances: Vec<InstanceStatus>,
    /// Automatic restarts so far, all instances together (never decreases).
    pub restarts: u64,
    /// The start limit each instance has.
    pub start_limit: StartLimit,
}

impl Status {
    /// Instances running or waiting to restart (not failed).
    pub fn live(&self) -> u32 {
        self.instances.iter().filter(|i| !matches!(i.phase, Phase::Failed | Phase::Stopped)).count() as u32
    }

    /// The pids of the running children, by instance number.
    pub fn pids(&self) -> Vec<u32> {
        self.instances.iter().filter_map(|i| i.phase.pid()).collect()
    }

    /// In one word: `stopped` (no instances), `failed` (one has hit its start
    /// limit), `running` (all run) or `restarting` (some wait to restart).
    pub fn state(&self) -> &'static str {
        if self.instances.is_empty() {
            "stopped"
        } else if self.instances.iter().any(|i| i.phase == Phase::Failed) {
            "failed"
        } else if self.instances.iter().all(|i| matches!(i.phase, Phase::Running { .. })) {
            "running"
        } else {
            "restarting"
        }
    }

    /// One line for `observe`: counts per phase, restarts and pids.
    pub(super) fn summary(&self) -> String {
        let count = |f: fn(&Phase) -> bool| self.instances.iter().filter(|i| f(&i.phase)).count();
        format!(
            "{} instances: {} running, {} restarting, {} failed; {} restarts; pids {:?}",
            self.instances.len(),
            count(|p| matches!(p, Phase::Running { .. })),
            count(|p| matches!(p, Phase::Restarting { .. } | Phase::Starting)),
            count(|p| *p == Phase::Failed),
            self.restarts,
            self.pids()
        )
    }
}
