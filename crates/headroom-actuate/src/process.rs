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
//! **Invariant:** the supervisor never leaves a child running that it no
//! longer tracks: a stopped instance's process group (and cgroup) is killed
//! and its cgroup removed.

#![cfg(unix)]

use std::collections::{BTreeMap, VecDeque};
use std::fs;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use headroom_core::Span;
use headroom_core::{Action, Decision, SeriesData, SeriesKey};
use headroom_remediate::config::{Platform, SYSTEMD_START_LIMIT, StartLimit, Target};
use nix::errno::Errno;
use nix::sys::signal::{Signal, kill, killpg};
use serde::{Deserialize, Serialize};
use tokio::process::{Child, Command};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{Instrument, error, info, info_span, warn};

use crate::actuator::{Actuator, Applied, Observed, describe};
use crate::cgroup::{CgroupParent, MemoryCgroup as Cgroup, nix_pid};
use crate::error::{Error, Result};
use crate::guard::Claims;
use headroom_core::BoxFuture;

/// The actuator's name, in errors and logs.
const ACTUATOR: &str = "process";
/// The environment variable that tells each child its instance number (0, 1, …).
pub const INSTANCE_ENV: &str = "HEADROOM_INSTANCE";
/// Events kept in memory; older ones are dropped first.
const EVENTS_KEPT: usize = 10_000;

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

    fn validate(&self) -> Result<()> {
        let problems = self.problems();
        if problems.is_empty() { Ok(()) } else { Err(fail(&self.name, problems.join("; "))) }
    }
}

fn fail(target: &str, why: impl Into<String>) -> Error {
    Error::Actuator { actuator: ACTUATOR.into(), target: target.into(), why: why.into() }
}

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

    fn summary(&self) -> String {
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
fn exit_kind(status: ExitStatus, oom_rose: bool) -> EventKind {
    const SIGKILL: i32 = 9;
    match (status.code(), status.signal()) {
        (_, Some(SIGKILL)) | (Some(137), _) if oom_rose => EventKind::OomKilled,
        (Some(code), _) => EventKind::Exited { code },
        (None, Some(signal)) => EventKind::Killed { signal },
        (None, None) => EventKind::Exited { code: -1 },
    }
}

/// The starts an instance made within the start limit's interval.
#[derive(Debug)]
struct StartWindow {
    limit: StartLimit,
    starts: VecDeque<Instant>,
}

impl StartWindow {
    fn new(limit: StartLimit) -> Self {
        Self { limit, starts: VecDeque::new() }
    }

    /// Counts a start at `now`, unless `burst` starts already fell within
    /// the interval before it (then nothing is counted and it says no).
    fn try_start(&mut self, now: Instant) -> bool {
        while self.starts.front().is_some_and(|t| now.duration_since(*t) >= self.limit.interval.0) {
            self.starts.pop_front();
        }
        if self.starts.len() >= self.limit.burst as usize {
            return false;
        }
        self.starts.push_back(now);
        true
    }
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Locks a mutex, carrying on with the data if a thread panicked while holding it.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Signals a child we have not reaped yet (so its pid is still its own), and its process group.
fn signal_child(pid: u32, signal: Signal) {
    let Some(p) = nix_pid(pid) else { return };
    for result in [kill(p, signal), killpg(p, signal)] {
        if let Err(e) = result
            && e != Errno::ESRCH
        {
            warn!(pid, ?signal, error = %e, "could not signal a child");
        }
    }
}

/// Kills what is left of a reaped child's process group (its own children).
fn kill_group(pid: u32) {
    if let Some(p) = nix_pid(pid) {
        let _ = killpg(p, Signal::SIGKILL);
    }
}

/// The in-memory event log, with a channel for live readers.
#[derive(Debug)]
struct EventLog {
    kept: Mutex<VecDeque<Event>>,
    live: broadcast::Sender<Event>,
}

impl EventLog {
    fn new() -> Self {
        Self { kept: Mutex::new(VecDeque::new()), live: broadcast::channel(1024).0 }
    }

    fn push(&self, event: Event) {
        let mut kept = lock(&self.kept);
        if kept.len() == EVENTS_KEPT {
            kept.pop_front();
        }
        kept.push_back(event.clone());
        let _ = self.live.send(event);
    }
}

/// What an instance task is asked to do.
#[derive(Debug)]
enum Cmd {
    /// Stop gracefully and end; answered once stopped and cleaned up.
    Stop(oneshot::Sender<()>),
    /// Stop gracefully (if running) and start again; answered with the new pid.
    Restart(Ack),
}

/// Answered when the instance's next start succeeded (its pid) or failed (why).
type Ack = oneshot::Sender<std::result::Result<u32, String>>;

fn reply(ack: &mut Option<Ack>, answer: std::result::Result<u32, String>) {
    if let Some(ack) = ack.take() {
        let _ = ack.send(answer);
    }
}

/// A running child.
#[derive(Debug)]
struct Running {
    child: Child,
    pid: u32,
    /// The cgroup's OOM-kill count before it started.
    oom_before: Option<u64>,
}

/// What the task does after handling a command while no child runs.
enum Then {
    Start,
    Quit,
}

/// One instance: its task's state.
#[derive(Debug)]
struct InstanceTask {
    spec: Arc<ProcessSpec>,
    index: u32,
    phase: Arc<Mutex<Phase>>,
    restarts: Arc<AtomicU64>,
    log: Arc<EventLog>,
    cgroup: Option<Cgroup>,
}

impl InstanceTask {
    fn set(&self, phase: Phase) {
        *lock(&self.phase) = phase;
    }

    fn emit(&self, kind: EventKind) {
        let (process, instance) = (self.spec.name.as_str(), self.index);
        match &kind {
            EventKind::Started { pid } => info!(process, instance, pid, "started"),
            EventKind::StartFailed { why } => warn!(process, instance, why, "could not start"),
            EventKind::Exited { code } => info!(process, instance, code, "exited"),
            EventKind::Killed { signal } => info!(process, instance, signal, "killed by a signal"),
            EventKind::OomKilled => warn!(process, instance, "killed by the OOM killer"),
            EventKind::Restarting { after_ms } => info!(process, instance, after_ms, "restarting"),
            EventKind::StartLimitHit => error!(
                process,
                instance,
                burst = self.spec.start_limit.burst,
                interval = %self.spec.start_limit.interval,
                "start limit hit: not restarted (failed)"
            ),
            EventKind::Stopped => info!(process, instance, "stopped"),
        }
        self.log.push(Event { process: process.to_owned(), instance, at_ms: now_ms(), kind });
    }

    async fn run(mut self, mut cmds: mpsc::UnboundedReceiver<Cmd>, mut ack: Option<Ack>) {
        let mut window = StartWindow::new(self.spec.start_limit);
        // Consecutive automatic restarts, for the backoff.
        let mut consecutive = 0u32;
        loop {
            if !window.try_start(Instant::now()) {
                self.set(Phase::Failed);
                self.emit(EventKind::StartLimitHit);
                let limit = self.spec.start_limit;
                reply(
                    &mut ack,
                    Err(format!(
                        "start limit hit ({} starts within {}): not started; try again once the interval has passed",
                        limit.burst, limit.interval
                    )),
                );
                let cmd = cmds.recv().await;
                match self.idle(cmd, &mut ack).await {
                    Then::Start => continue,
                    Then::Quit => return,
                }
            }
            self.set(Phase::Starting);
            match self.spawn().await {
                Err(why) => {
                    self.emit(EventKind::StartFailed { why: why.clone() });
                    reply(&mut ack, Err(why));
                }
                Ok(mut running) => {
                    let pid = running.pid;
                    self.set(Phase::Running { pid });
                    self.emit(EventKind::Started { pid });
                    reply(&mut ack, Ok(pid));
                    let began = Instant::now();
                    let asked = tokio::select! {
                        status = running.child.wait() => {
                            kill_group(pid);
                            self.report_exit(status, running.oom_before);
                            if began.elapsed() >= self.spec.restart_backoff.max.0 {
                                consecutive = 0;
                            }
                            None
                        }
                        cmd = cmds.recv() => Some(cmd),
                    };
                    if let Some(cmd) = asked {
                        let status = self.stop_child(&mut running).await;
                        self.report_exit(status, running.oom_before);
                        drop(running);
                        if matches!(cmd, Some(Cmd::Restart(_))) {
                            self.set(Phase::Stopped);
                            self.emit(EventKind::Stopped);
                        }
                        match self.idle(cmd, &mut ack).await {
                            Then::Start => {
                                consecutive = 0;
                                continue;
                            }
                            Then::Quit => return,
                        }
                    }
                }
            }
            // It exited by itself, or could not start: again, after the backoff.
            let delay = self.spec.restart_backoff.delay(consecutive);
            consecutive = consecutive.saturating_add(1);
            let after_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
            self.restarts.fetch_add(1, Ordering::Relaxed);
            self.set(Phase::Restarting { at_ms: now_ms().saturating_add(after_ms as i64) });
            self.emit(EventKind::Restarting { after_ms });
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                cmd = cmds.recv() => match self.idle(cmd, &mut ack).await {
                    Then::Start => consecutive = 0,
                    Then::Quit => return,
                },
            }
        }
    }

    /// A command while no child runs (stopped by us, waiting to restart, failed).
    async fn idle(&mut self, cmd: Option<Cmd>, ack: &mut Option<Ack>) -> Then {
        match cmd {
            Some(Cmd::Restart(next)) => {
                *ack = Some(next);
                Then::Start
            }
            Some(Cmd::Stop(done)) => {
                self.finish().await;
                let _ = done.send(());
                Then::Quit
            }
            None => {
                self.finish().await;
                Then::Quit
            }
        }
    }

    /// Stopped for good: the event, the cgroup removed.
    async fn finish(&mut self) {
        self.set(Phase::Stopped);
        self.emit(EventKind::Stopped);
        if let Some(cgroup) = self.cgroup.take() {
            cgroup.remove().await;
        }
    }

    /// Starts the child: directly, in its own process group, in the cgroup if any.
    async fn spawn(&self) -> std::result::Result<Running, String> {
        let spec = &*self.spec;
        let (program, args) = spec.command.split_first().ok_or("the command is empty")?;
        let mut cmd = Command::new(program);
        cmd.args(args)
            .envs(&spec.env)
            .env(INSTANCE_ENV, self.index.to_string())
            .stdin(Stdio::null())
            .process_group(0)
            .kill_on_drop(true);
        if let Some(dir) = &spec.cwd {
            cmd.current_dir(dir);
        }
        if let Some(path) = &spec.stdout {
            cmd.stdout(append_to(path)?);
        }
        if let Some(path) = &spec.stderr {
            cmd.stderr(append_to(path)?);
        }
        let oom_before = self.cgroup.as_ref().and_then(Cgroup::oom_kills);
        let mut child = cmd.spawn().map_err(|e| format!("cannot run {program:?}: {e}"))?;
        let pid = child.id().ok_or("the child was gone before its pid was read")?;
        if let Some(cgroup) = &self.cgroup
            && let Err(e) = cgroup.add(pid)
            && e.raw_os_error() != Some(Errno::ESRCH as i32)
        {
            // Never run it unlimited: kill it and count a failed start.
            signal_child(pid, Signal::SIGKILL);
            let _ = child.wait().await;
            kill_group(pid);
            return Err(format!("cannot move pid {pid} into {}: {e}", cgroup.dir().display()));
        }
        Ok(Running { child, pid, oom_before })
    }

    /// SIGTERM to the child and its process group, SIGKILL after `stop_timeout`.
    async fn stop_child(&self, running: &mut Running) -> io::Result<ExitStatus> {
        let pid = running.pid;
        self.set(Phase::Stopping { pid });
        signal_child(pid, Signal::SIGTERM);
        let timeout = self.spec.stop_timeout;
        let status = match tokio::time::timeout(timeout.0, running.child.wait()).await {
            Ok(status) => status,
            Err(_) => {
                warn!(process = %self.spec.name, instance = self.index, pid, %timeout, "no exit after SIGTERM: SIGKILL");
                signal_child(pid, Signal::SIGKILL);
                running.child.wait().await
            }
        };
        kill_group(pid);
        status
    }

    fn report_exit(&self, status: io::Result<ExitStatus>, oom_before: Option<u64>) {
        let kind = match status {
            Ok(status) => {
                let oom_after = self.cgroup.as_ref().and_then(Cgroup::oom_kills);
                let rose = matches!((oom_before, oom_after), (Some(b), Some(a)) if a > b);
                exit_kind(status, rose)
            }
            Err(e) => {
                warn!(process = %self.spec.name, instance = self.index, error = %e, "could not wait for the child");
                EventKind::Exited { code: -1 }
            }
        };
        self.emit(kind);
    }
}

fn append_to(path: &Path) -> std::result::Result<Stdio, String> {
    fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map(Stdio::from)
        .map_err(|e| format!("cannot open {} to append output: {e}", path.display()))
}

/// One instance, seen from the supervisor.
#[derive(Debug)]
struct Slot {
    phase: Arc<Mutex<Phase>>,
    cmds: mpsc::UnboundedSender<Cmd>,
    task: JoinHandle<()>,
    cgroup: Option<PathBuf>,
}

/// One supervised process.
#[derive(Debug)]
struct Proc {
    spec: Arc<ProcessSpec>,
    cgroup_parent: Option<CgroupParent>,
    restarts: Arc<AtomicU64>,
    slots: Mutex<BTreeMap<u32, Slot>>,
}

impl Proc {
    fn status(&self) -> Status {
        let instances = lock(&self.slots)
            .iter()
            .map(|(index, slot)| InstanceStatus {
                index: *index,
                phase: *lock(&slot.phase),
                cgroup: slot.cgroup.clone(),
            })
            .collect();
        Status {
            name: self.spec.name.clone(),
            instances,
            restarts: self.restarts.load(Ordering::Relaxed),
            start_limit: self.spec.start_limit,
        }
    }
}

#[derive(Debug)]
struct Inner {
    procs: BTreeMap<String, Proc>,
    log: Arc<EventLog>,
    /// Serialises scaling, restarts and shutdown.
    ops: tokio::sync::Mutex<()>,
    closed: AtomicBool,
    done: watch::Sender<bool>,
}

impl Inner {
    fn proc(&self, name: &str) -> Result<&Proc> {
        self.procs.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.procs.keys().map(String::as_str).collect();
            fail(name, format!("no process of that name is supervised (supervised: {known:?})"))
        })
    }

    fn check_open(&self, name: &str) -> Result<()> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(fail(name, "the supervisor is shut down: it starts nothing more"));
        }
        Ok(())
    }

    /// Adds an instance (the smallest free number) and starts it; the
    /// receiver answers once its first start succeeded or failed.
    fn add_instance(&self, proc: &Proc) -> Result<oneshot::Receiver<std::result::Result<u32, String>>> {
        let spec = &proc.spec;
        let mut slots = lock(&proc.slots);
        let index = (0..).find(|i| !slots.contains_key(i)).unwrap_or(0);
        let cgroup = match (&proc.cgroup_parent, spec.memory_limit_bytes) {
            (Some(parent), Some(limit)) => {
                let name = format!("headroom-{}-{}-{index}", spec.name, std::process::id());
                Some(Cgroup::create(parent, &name, limit).map_err(|why| {
                    fail(
                        &spec.name,
                        format!(
                            "{why}; memory limits need root (or a delegated cgroup) and a writable cgroup filesystem"
                        ),
                    )
                })?)
            }
            _ => None,
        };
        let phase = Arc::new(Mutex::new(Phase::Starting));
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (ack_tx, ack_rx) = oneshot::channel();
        let cgroup_dir = cgroup.as_ref().map(|c| c.dir().to_path_buf());
        let task = InstanceTask {
            spec: spec.clone(),
            index,
            phase: phase.clone(),
            restarts: proc.restarts.clone(),
            log: self.log.clone(),
            cgroup,
        };
        let span = info_span!("instance", process = %spec.name, instance = index);
        let handle = tokio::spawn(task.run(cmd_rx, Some(ack_tx)).instrument(span));
        slots.insert(index, Slot { phase, cmds: cmd_tx, task: handle, cgroup: cgroup_dir });
        Ok(ack_rx)
    }

    /// Stops the numbered instances together and forgets them.
    async fn stop_instances(&self, proc: &Proc, indices: &[u32]) {
        let mut waits = Vec::new();
        {
            let slots = lock(&proc.slots);
            for index in indices {
                if let Some(slot) = slots.get(index) {
                    let (tx, rx) = oneshot::channel();
                    let _ = slot.cmds.send(Cmd::Stop(tx));
                    waits.push(rx);
                }
            }
        }
        for rx in waits {
            let _ = rx.await;
        }
        let removed: Vec<Slot> = {
            let mut slots = lock(&proc.slots);
            indices.iter().filter_map(|i| slots.remove(i)).collect()
        };
        for slot in removed {
            let _ = slot.task.await;
        }
    }

    /// Sets the instance count of `proc` to `n`; returns the count before.
    async fn scale_locked(&self, proc: &Proc, n: u32) -> Result<u32> {
        let name = &proc.spec.name;
        self.check_open(name)?;
        let from = lock(&proc.slots).len() as u32;
        if n > from {
            let mut waits = Vec::new();
            for _ in from..n {
                waits.push(self.add_instance(proc)?);
            }
            let mut failed = Vec::new();
            for rx in waits {
                match rx.await {
                    Ok(Ok(_pid)) => {}
                    Ok(Err(why)) => failed.push(why),
                    Err(_) => failed.push("its task ended".into()),
                }
            }
            if !failed.is_empty() {
                return Err(fail(
                    name,
                    format!(
                        "scaled from {from} to {n} instances, but {} did not start: {}",
                        failed.len(),
                        failed.join("; ")
                    ),
                ));
            }
            info!(process = %name, from, to = n, "scaled out");
        } else if n < from {
            // Failed instances go first, then the highest numbers.
            let mut order: Vec<(bool, u32)> =
                lock(&proc.slots).iter().map(|(i, s)| (*lock(&s.phase) != Phase::Failed, *i)).collect();
            order.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
            let victims: Vec<u32> = order.iter().take((from - n) as usize).map(|(_, i)| *i).collect();
            self.stop_instances(proc, &victims).await;
            info!(process = %name, from, to = n, stopped = ?victims, "scaled in");
        }
        Ok(from)
    }

    /// Restarts every instance of `proc`, one at a time; returns how many.
    async fn restart_locked(&self, proc: &Proc) -> Result<u32> {
        let name = &proc.spec.name;
        self.check_open(name)?;
        let indices: Vec<u32> = lock(&proc.slots).keys().copied().collect();
        let mut failed = Vec::new();
        for index in &indices {
            let (tx, rx) = oneshot::channel();
            let sent = lock(&proc.slots).get(index).is_some_and(|slot| slot.cmds.send(Cmd::Restart(tx)).is_ok());
            if !sent {
                failed.push(format!("instance {index}: its task has ended"));
                continue;
            }
            match rx.await {
                Ok(Ok(pid)) => info!(process = %name, instance = index, pid, "restarted"),
                Ok(Err(why)) => failed.push(format!("instance {index}: {why}")),
                Err(_) => failed.push(format!("instance {index}: its task ended")),
            }
        }
        if failed.is_empty() {
            Ok(indices.len() as u32)
        } else {
            Err(fail(name, format!("restart: {}", failed.join("; "))))
        }
    }

    async fn shutdown(&self) {
        let _ops = self.ops.lock().await;
        if self.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        info!(processes = self.procs.len(), "supervisor shutting down: stopping every instance");
        let mut waits = Vec::new();
        for proc in self.procs.values() {
            for slot in lock(&proc.slots).values() {
                let (tx, rx) = oneshot::channel();
                let _ = slot.cmds.send(Cmd::Stop(tx));
                waits.push(rx);
            }
        }
        for rx in waits {
            let _ = rx.await;
        }
        for proc in self.procs.values() {
            let slots = std::mem::take(&mut *lock(&proc.slots));
            for slot in slots.into_values() {
                let _ = slot.task.await;
            }
        }
        self.done.send_replace(true);
        info!("supervisor stopped");
    }
}

/// Runs and watches the configured processes. Create it with
/// [`Supervisor::start`] inside a tokio runtime.
///
/// Dropping it kills every child at once (SIGKILL, no grace): call
/// [`Supervisor::shutdown`] (or send `true` on its shutdown channel) to stop
/// them gracefully first.
#[derive(Debug)]
pub struct Supervisor {
    inner: Arc<Inner>,
    watcher: JoinHandle<()>,
}

impl Supervisor {
    /// Starts `instances` instances of every spec. When `shutdown` reads
    /// `true`, every instance is stopped gracefully and nothing more is
    /// started (a dropped sender never shuts it down).
    ///
    /// Errors: an invalid spec, two specs with one name, no usable cgroup for
    /// a memory limit, or an instance that could not start (what was started is stopped again).
    pub async fn start(specs: Vec<ProcessSpec>, mut shutdown: watch::Receiver<bool>) -> Result<Self> {
        let mut procs = BTreeMap::new();
        for spec in specs {
            spec.validate()?;
            let cgroup_parent = match spec.memory_limit_bytes {
                Some(_) => Some(
                    CgroupParent::find(spec.cgroup_parent.as_deref())
                        .map_err(|why| fail(&spec.name, format!("memory_limit_bytes needs a memory cgroup: {why}")))?,
                ),
                None => None,
            };
            let name = spec.name.clone();
            let proc = Proc {
                spec: Arc::new(spec),
                cgroup_parent,
                restarts: Arc::new(AtomicU64::new(0)),
                slots: Mutex::new(BTreeMap::new()),
            };
            if procs.insert(name.clone(), proc).is_some() {
                return Err(fail(&name, "two processes have this name: names must be unique"));
            }
        }
        let inner = Arc::new(Inner {
            procs,
            log: Arc::new(EventLog::new()),
            ops: tokio::sync::Mutex::new(()),
            closed: AtomicBool::new(false),
            done: watch::channel(false).0,
        });
        let watcher = {
            let inner = inner.clone();
            tokio::spawn(async move {
                loop {
                    if *shutdown.borrow_and_update() {
                        inner.shutdown().await;
                        return;
                    }
                    if shutdown.changed().await.is_err() {
                        return;
                    }
                }
            })
        };
        let supervisor = Self { inner, watcher };
        let started = async {
            let _ops = supervisor.inner.ops.lock().await;
            for proc in supervisor.inner.procs.values() {
                supervisor.inner.scale_locked(proc, proc.spec.instances).await?;
            }
            Ok::<_, Error>(())
        };
        if let Err(e) = started.await {
            supervisor.shutdown().await;
            return Err(e);
        }
        Ok(supervisor)
    }

    /// The supervised processes' specs.
    pub fn specs(&self) -> Vec<&ProcessSpec> {
        self.inner.procs.values().map(|p| &*p.spec).collect()
    }

    /// Process `name` now.
    pub fn status(&self, name: &str) -> Result<Status> {
        Ok(self.inner.proc(name)?.status())
    }

    /// Every event kept (the newest 10,000), oldest first.
    pub fn events(&self) -> Vec<Event> {
        lock(&self.inner.log.kept).iter().cloned().collect()
    }

    /// Events from now on, as they happen (a slow reader loses the oldest).
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.inner.log.live.subscribe()
    }

    /// The restart counter of `name` from the kept events (see [`restart_series`]).
    pub fn restart_series(&self, name: &str) -> Result<SeriesData> {
        self.inner.proc(name)?;
        restart_series(name, &self.events())
    }

    /// Sets the instance count of `name` to `n`: new instances are started
    /// (answered once each has started), surplus ones are stopped gracefully
    /// (failed ones first, then the highest numbers). Returns the count before.
    pub async fn scale(&self, name: &str, n: u32) -> Result<u32> {
        let _ops = self.inner.ops.lock().await;
        self.inner.scale_locked(self.inner.proc(name)?, n).await
    }

    /// Restarts every instance of `name` gracefully, one at a time (a failed
    /// one is started again if its start limit allows). Returns how many.
    pub async fn restart(&self, name: &str) -> Result<u32> {
        let _ops = self.inner.ops.lock().await;
        self.inner.restart_locked(self.inner.proc(name)?).await
    }

    /// Stops every instance gracefully, removes their cgroups and starts
    /// nothing more. Returns once all are stopped.
    pub async fn shutdown(&self) {
        self.inner.shutdown().await;
    }

    /// Waits until the supervisor has shut down (by [`Supervisor::shutdown`] or its channel).
    pub async fn join(&self) {
        let mut done = self.inner.done.subscribe();
        let _ = done.wait_for(|d| *d).await;
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.watcher.abort();
        for proc in self.inner.procs.values() {
            for slot in lock(&proc.slots).values() {
                if let Some(pid) = lock(&slot.phase).pid() {
                    signal_child(pid, Signal::SIGKILL);
                }
                // The task's child is killed when dropped, and its cgroup emptied and removed.
                slot.task.abort();
            }
        }
    }
}

/// The [`Actuator`] over a [`Supervisor`]: targets with `platform =
/// "process"` and entity `proc/<name>`. `ScaleTo n` sets the instance count,
/// `Restart` restarts every instance gracefully, one at a time. A decision
/// id already applied, or a scale to the current count, changes nothing;
/// one change at a time is in flight per process (a second waits for the
/// first to end).
#[derive(Debug)]
pub struct ProcessActuator {
    supervisor: Arc<Supervisor>,
    /// Decision ids applied, and the processes being changed now.
    claims: Claims,
}

impl ProcessActuator {
    /// An actuator acting through `supervisor`.
    pub fn new(supervisor: Arc<Supervisor>) -> Self {
        Self { supervisor, claims: Claims::new() }
    }

    /// The supervisor acted through.
    pub fn supervisor(&self) -> &Supervisor {
        &self.supervisor
    }

    /// The supervised process `target` names: its entity `proc/<name>`.
    fn process<'t>(&self, target: &'t Target) -> Result<&'t str> {
        if target.platform != Platform::Process {
            return Err(fail(
                &target.name,
                format!("platform is {}: the process actuator acts on platform = \"process\" only", target.platform),
            ));
        }
        let name = target
            .entity
            .strip_prefix("proc/")
            .ok_or_else(|| fail(&target.name, format!("entity {:?} is not proc/<name>", target.entity)))?;
        self.supervisor.inner.proc(name)?;
        Ok(name)
    }
}

impl Actuator for ProcessActuator {
    fn name(&self) -> &str {
        ACTUATOR
    }

    fn observe<'a>(&'a self, target: &'a Target) -> BoxFuture<'a, Result<Observed>> {
        Box::pin(async move {
            let status = self.supervisor.status(self.process(target)?)?;
            Ok(Observed {
                replicas: Some(status.live()),
                state: Some(status.state().into()),
                restarts: Some(status.restarts),
                start_limit: Some(status.start_limit),
                detail: Some(status.summary()),
            })
        })
    }

    fn plan<'a>(&'a self, target: &'a Target, decision: &'a Decision) -> BoxFuture<'a, Result<String>> {
        Box::pin(async move {
            let name = self.process(target)?;
            if self.claims.is_done(&decision.id) {
                return Ok(format!("decision {} was already applied: nothing to do", decision.id));
            }
            let proc = self.supervisor.inner.proc(name)?;
            let now = proc.status().instances.len() as u32;
            let stop_timeout = proc.spec.stop_timeout;
            Ok(match decision.action {
                Action::None => format!("nothing for {}", target.name),
                Action::ScaleTo { replicas } if replicas == now => {
                    format!("{} already has {now} instances: nothing to do", target.entity)
                }
                Action::ScaleTo { replicas } if replicas > now => {
                    format!(
                        "would scale {} from {now} to {replicas} instances (start {})",
                        target.entity,
                        replicas - now
                    )
                }
                Action::ScaleTo { replicas } => format!(
                    "would scale {} from {now} to {replicas} instances (stop {}: SIGTERM, SIGKILL after {stop_timeout})",
                    target.entity,
                    now - replicas
                ),
                Action::Restart => format!(
                    "would restart the {now} instances of {} one at a time (SIGTERM, SIGKILL after {stop_timeout}, start)",
                    target.entity
                ),
            })
        })
    }

    fn apply<'a>(&'a self, target: &'a Target, decision: &'a Decision) -> BoxFuture<'a, Result<Applied>> {
        let span =
            info_span!("process.apply", target = %target.name, decision = %decision.id, action = %decision.action);
        Box::pin(
            async move {
                let name = self.process(target)?;
                let Some(ticket) = self.claims.claim_when_free(&decision.id, name).await else {
                    return Ok(Applied {
                        changed: false,
                        detail: format!("decision {} was already applied: not repeated", decision.id),
                    });
                };
                let result = match decision.action {
                    Action::None => Applied { changed: false, detail: describe(target, decision) },
                    Action::ScaleTo { replicas } => {
                        let from = self.supervisor.scale(name, replicas).await?;
                        if from == replicas {
                            Applied {
                                changed: false,
                                detail: format!("{} already had {replicas} instances", target.entity),
                            }
                        } else {
                            Applied {
                                changed: true,
                                detail: format!("scaled {} from {from} to {replicas} instances", target.entity),
                            }
                        }
                    }
                    Action::Restart => {
                        let n = self.supervisor.restart(name).await?;
                        Applied { changed: n > 0, detail: format!("restarted {n} instances of {}", target.entity) }
                    }
                };
                // An error above dropped the ticket: the decision may be tried again.
                ticket.done();
                Ok(result)
            }
            .instrument(span),
        )
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
    fn the_start_limit_counts_starts_within_its_interval() {
        let mut w = StartWindow::new(StartLimit { burst: 3, interval: span(1000) });
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        assert!(w.try_start(at(0)) && w.try_start(at(100)) && w.try_start(at(200)));
        assert!(!w.try_start(at(300)), "a fourth start within 1 s");
        assert!(!w.try_start(at(999)));
        assert!(w.try_start(at(1000)), "the first start has left the interval");
        assert!(!w.try_start(at(1050)));
    }

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
