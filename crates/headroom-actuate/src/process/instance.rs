//! One instance: the tokio task that starts the child, watches it, restarts
//! it after a backoff (until the start limit), and stops it when asked.

use std::collections::VecDeque;
use std::fs;
use std::io;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use headroom_remediate::config::StartLimit;
use nix::errno::Errno;
use nix::sys::signal::{Signal, kill, killpg};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot};
use tracing::{error, info, warn};

use super::event::{EventLog, exit_kind};
use super::{Event, EventKind, INSTANCE_ENV, Phase, ProcessSpec, lock, now_ms};
use crate::cgroup::{MemoryCgroup as Cgroup, nix_pid};

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

/// Signals a child we have not reaped yet (so its pid is still its own), and its process group.
pub(super) fn signal_child(pid: u32, signal: Signal) {
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

/// What an instance task is asked to do.
#[derive(Debug)]
pub(super) enum Cmd {
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

/// How one start of the child ended.
enum Ended {
    /// It could not start, or exited by itself: it is restarted after the
    /// backoff. `reset`: it ran at least the backoff's `max`, so the backoff
    /// starts again from `initial`.
    ByItself { reset: bool },
    /// A command stopped it: then it starts again at once, or quits.
    Asked(Then),
}

/// One instance: its task's state.
#[derive(Debug)]
pub(super) struct InstanceTask {
    /// What to run.
    pub(super) spec: Arc<ProcessSpec>,
    /// The instance number (`HEADROOM_INSTANCE`).
    pub(super) index: u32,
    /// Where it is, shared with the supervisor.
    pub(super) phase: Arc<Mutex<Phase>>,
    /// The process's automatic restarts, all instances together.
    pub(super) restarts: Arc<AtomicU64>,
    /// Where its events go.
    pub(super) log: Arc<EventLog>,
    /// Its memory cgroup, with `memory_limit_bytes`; removed when it stops for good.
    pub(super) cgroup: Option<Cgroup>,
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

    /// The instance's life: start, watch, back off, start again; until the
    /// start limit is hit (then it waits for a command) or it is stopped.
    /// `ack` is answered once the first start succeeded or failed.
    pub(super) async fn run(mut self, mut cmds: mpsc::UnboundedReceiver<Cmd>, mut ack: Option<Ack>) {
        let mut window = StartWindow::new(self.spec.start_limit);
        // Consecutive automatic restarts, for the backoff.
        let mut consecutive = 0u32;
        loop {
            if !window.try_start(Instant::now()) {
                match self.start_limit_hit(&mut cmds, &mut ack).await {
                    Then::Start => continue,
                    Then::Quit => return,
                }
            }
            match self.run_once(&mut cmds, &mut ack).await {
                Ended::ByItself { reset } => {
                    if reset {
                        consecutive = 0;
                    }
                }
                Ended::Asked(Then::Start) => {
                    consecutive = 0;
                    continue;
                }
                Ended::Asked(Then::Quit) => return,
            }
            // It exited by itself, or could not start: again, after the backoff.
            let delay = self.spec.restart_backoff.delay(consecutive);
            consecutive = consecutive.saturating_add(1);
            match self.wait_to_restart(delay, &mut cmds, &mut ack).await {
                None => {}
                Some(Then::Start) => consecutive = 0,
                Some(Then::Quit) => return,
            }
        }
    }

    /// The start limit is hit: `failed`, and the start waiting on `ack` is
    /// refused; nothing more until a command restarts or stops it.
    async fn start_limit_hit(&mut self, cmds: &mut mpsc::UnboundedReceiver<Cmd>, ack: &mut Option<Ack>) -> Then {
        self.set(Phase::Failed);
        self.emit(EventKind::StartLimitHit);
        let limit = self.spec.start_limit;
        reply(
            ack,
            Err(format!(
                "start limit hit ({} starts within {}): not started; try again once the interval has passed",
                limit.burst, limit.interval
            )),
        );
        let cmd = cmds.recv().await;
        self.idle(cmd, ack).await
    }

    /// Starts the child (answering `ack` with its pid, or why not) and waits
    /// until it exits by itself or a command comes (then it is stopped first).
    async fn run_once(&mut self, cmds: &mut mpsc::UnboundedReceiver<Cmd>, ack: &mut Option<Ack>) -> Ended {
        self.set(Phase::Starting);
        let mut running = match self.spawn().await {
            Ok(running) => running,
            Err(why) => {
                self.emit(EventKind::StartFailed { why: why.clone() });
                reply(ack, Err(why));
                return Ended::ByItself { reset: false };
            }
        };
        let pid = running.pid;
        self.set(Phase::Running { pid });
        self.emit(EventKind::Started { pid });
        reply(ack, Ok(pid));
        let began = Instant::now();
        let cmd = tokio::select! {
            status = running.child.wait() => {
                kill_group(pid);
                self.report_exit(status, running.oom_before);
                return Ended::ByItself { reset: began.elapsed() >= self.spec.restart_backoff.max.0 };
            }
            cmd = cmds.recv() => cmd,
        };
        let status = self.stop_child(&mut running).await;
        self.report_exit(status, running.oom_before);
        drop(running);
        if matches!(cmd, Some(Cmd::Restart(_))) {
            self.set(Phase::Stopped);
            self.emit(EventKind::Stopped);
        }
        Ended::Asked(self.idle(cmd, ack).await)
    }

    /// Counts an automatic restart and waits `delay` before it: `None` once
    /// waited out, what a command said when one came first.
    async fn wait_to_restart(
        &mut self,
        delay: Duration,
        cmds: &mut mpsc::UnboundedReceiver<Cmd>,
        ack: &mut Option<Ack>,
    ) -> Option<Then> {
        let after_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.restarts.fetch_add(1, Ordering::Relaxed);
        self.set(Phase::Restarting { at_ms: now_ms().saturating_add(after_ms as i64) });
        self.emit(EventKind::Restarting { after_ms });
        tokio::select! {
            () = tokio::time::sleep(delay) => None,
            cmd = cmds.recv() => Some(self.idle(cmd, ack).await),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn span(ms: i64) -> headroom_core::Span {
        headroom_core::Span::from_ms(ms)
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
}
