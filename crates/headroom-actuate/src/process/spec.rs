//! What to run: a [`ProcessSpec`] (command, environment, instances, restart
//! backoff, start limit, stop timeout, memory limit) and its checks.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use headroom_core::Span;
use headroom_remediate::config::{SYSTEMD_START_LIMIT, StartLimit};
use serde::{Deserialize, Serialize};

use super::fail;
use crate::error::Result;

/// The environment variable that tells each child its instance number (0, 1, …).
pub const INSTANCE_ENV: &str = "HEADROOM_INSTANCE";

/// One supervised command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessSpec {
    /// Name: letters, digits, `.`, `_` and `-`. The entity is `proc/<name>`.
    pub name: String,
    /// The program and its arguments, run as they are (never through a shell).
    pub command: Vec<String>,
    /// Variables added to the supervisor's own environment (`HEADROOM_INSTANCE`
    /// is set too: the instance number, from 0).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// The working directory (default: the supervisor's).
    #[serde(default)]
    pub cwd: Option<PathBuf>,
    /// File the children's standard output is appended to (default: the supervisor's).
    #[serde(default)]
    pub stdout: Option<PathBuf>,
    /// File the children's standard error is appended to (default: the supervisor's).
    #[serde(default)]
    pub stderr: Option<PathBuf>,
    /// Instances started with the supervisor.
    #[serde(default = "default_instances")]
    pub instances: u32,
    /// The wait before restarting an instance that exited by itself.
    #[serde(default)]
    pub restart_backoff: Backoff,
    /// An instance started more than `burst` times within `interval` is not
    /// started again (`failed`). Default: systemd's, 5 in 10 s.
    #[serde(default = "default_start_limit")]
    pub start_limit: StartLimit,
    /// How long a child has between SIGTERM and SIGKILL.
    #[serde(default = "default_stop_timeout")]
    pub stop_timeout: Span,
    /// Memory limit per instance, bytes: each instance runs in its own memory
    /// cgroup with this limit and no swap. Needs a writable cgroup filesystem.
    #[serde(default)]
    pub memory_limit_bytes: Option<u64>,
    /// The cgroup directory instance cgroups are made in (default: the
    /// supervisor's own memory cgroup). On cgroup v2 it must have the memory
    /// controller delegated and no processes of its own.
    #[serde(default)]
    pub cgroup_parent: Option<PathBuf>,
}

fn default_instances() -> u32 {
    1
}

fn default_start_limit() -> StartLimit {
    SYSTEMD_START_LIMIT
}

fn default_stop_timeout() -> Span {
    Span(Duration::from_secs(10))
}

/// The wait before an automatic restart: `initial`, doubled at each
/// consecutive restart, at most `max`. A run that lasted at least `max`
/// starts the sequence again from `initial`, and so does an asked-for restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backoff {
    /// The first wait.
    #[serde(default = "default_backoff_initial")]
    pub initial: Span,
    /// The longest wait.
    #[serde(default = "default_backoff_max")]
    pub max: Span,
}

fn default_backoff_initial() -> Span {
    Span(Duration::from_secs(1))
}

fn default_backoff_max() -> Span {
    Span(Duration::from_secs(60))
}

impl Default for Backoff {
    fn default() -> Self {
        Self { initial: default_backoff_initial(), max: default_backoff_max() }
    }
}

impl Backoff {
    /// The wait before the restart that follows `previous` consecutive ones.
    pub fn delay(&self, previous: u32) -> Duration {
        let doubled = self.initial.0.saturating_mul(1u32.checked_shl(previous.min(31)).unwrap_or(u32::MAX));
        doubled.min(self.max.0)
    }
}

impl ProcessSpec {
    /// A spec with every default: one instance of `command`.
    pub fn new(name: &str, command: &[&str]) -> Self {
        Self {
            name: name.into(),
            command: command.iter().map(|s| (*s).to_owned()).collect(),
            env: BTreeMap::new(),
            cwd: None,
            stdout: None,
            stderr: None,
            instances: default_instances(),
            restart_backoff: Backoff::default(),
            start_limit: default_start_limit(),
            stop_timeout: default_stop_timeout(),
            memory_limit_bytes: None,
            cgroup_parent: None,
        }
    }

    /// The entity the process is known by: `proc/<name>`.
    pub fn entity(&self) -> String {
        format!("proc/{}", self.name)
    }

    /// Every value that cannot be used, as `field: value: why`.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let ok_name = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        if self.name.is_empty() || !self.name.chars().all(ok_name) {
            out.push(format!("name: {:?}: use letters, digits, '.', '_' and '-' only", self.name));
        }
        match self.command.first() {
            None => out.push("command: []: needs at least the program".into()),
            Some(p) if p.is_empty() => out.push("command[0]: \"\": the program cannot be empty".into()),
            Some(_) => {}
        }
        let b = self.restart_backoff;
        if b.initial.0.is_zero() {
            out.push("restart_backoff.initial: \"0s\": must be longer than 0s".into());
        }
        if b.initial > b.max {
            out.push(format!("restart_backoff.initial: \"{}\": is longer than max = \"{}\"", b.initial, b.max));
        }
        if self.start_limit.burst == 0 {
            out.push("start_limit.burst: 0: must be at least 1".into());
        }
        if self.start_limit.interval.0.is_zero() {
            out.push("start_limit.interval: \"0s\": must be longer than 0s".into());
        }
        if self.stop_timeout.0.is_zero() {
            out.push("stop_timeout: \"0s\": must be longer than 0s (children need a moment to exit)".into());
        }
        if let Some(limit) = self.memory_limit_bytes
            && limit < 1 << 20
        {
            out.push(format!("memory_limit_bytes: {limit}: must be at least 1 MiB (1048576)"));
        }
        out
    }

    pub(super) fn validate(&self) -> Result<()> {
        let problems = self.problems();
        if problems.is_empty() { Ok(()) } else { Err(fail(&self.name, problems.join("; "))) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(ms: i64) -> Span {
        Span::from_ms(ms)
    }

    #[test]
    fn the_backoff_doubles_up_to_its_cap() {
        let b = Backoff { initial: span(100), max: span(1000) };
        let waits: Vec<u128> = (0..6).map(|n| b.delay(n).as_millis()).collect();
        assert_eq!(waits, vec![100, 200, 400, 800, 1000, 1000]);
        assert_eq!(b.delay(u32::MAX).as_millis(), 1000, "no overflow");
    }

    #[test]
    fn specs_read_from_toml_with_defaults_and_every_problem_is_named() {
        let spec: ProcessSpec = serde_json::from_value(serde_json::json!({
            "name": "web",
            "command": ["/usr/bin/web", "--port", "8080"],
            "restart_backoff": { "initial": "250ms" },
            "memory_limit_bytes": 67108864u64,
        }))
        .unwrap();
        assert_eq!(spec.instances, 1);
        assert_eq!(spec.restart_backoff, Backoff { initial: span(250), max: span(60_000) });
        assert_eq!(spec.start_limit, SYSTEMD_START_LIMIT);
        assert_eq!(spec.stop_timeout, span(10_000));
        assert_eq!(spec.entity(), "proc/web");
        assert!(spec.problems().is_empty(), "{:?}", spec.problems());
        let unknown =
            serde_json::from_value::<ProcessSpec>(serde_json::json!({"name": "a", "command": ["x"], "shell": true}));
        assert!(unknown.unwrap_err().to_string().contains("shell"));

        let mut bad = ProcessSpec::new("a b/c", &[]);
        bad.restart_backoff = Backoff { initial: span(5000), max: span(1000) };
        bad.start_limit.burst = 0;
        bad.memory_limit_bytes = Some(4096);
        let problems = bad.problems().join("\n");
        for want in [
            "name: \"a b/c\"",
            "command: []",
            "restart_backoff.initial",
            "start_limit.burst",
            "memory_limit_bytes: 4096",
        ] {
            assert!(problems.contains(want), "{want} missing from:\n{problems}");
        }
    }
}
