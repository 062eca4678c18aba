//! The [`Supervisor`]: the instances of every configured process, and
//! scaling, restarts and shutdown over them (one at a time).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use headroom_core::SeriesData;
use nix::sys::signal::Signal;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{Instrument, info, info_span};

use super::event::EventLog;
use super::instance::{Cmd, InstanceTask, signal_child};
use super::{Event, InstanceStatus, Phase, ProcessSpec, Status, fail, lock, restart_series};
use crate::cgroup::{CgroupParent, MemoryCgroup as Cgroup};
use crate::error::{Error, Result};

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
pub(super) struct Proc {
    /// What it runs.
    pub(super) spec: Arc<ProcessSpec>,
    cgroup_parent: Option<CgroupParent>,
    restarts: Arc<AtomicU64>,
    slots: Mutex<BTreeMap<u32, Slot>>,
}

impl Proc {
    /// A checked `spec` with no instances yet (and, with a memory limit, the
    /// cgroup its instances' cgroups are made in).
    fn new(spec: ProcessSpec) -> Result<Self> {
        spec.validate()?;
        let cgroup_parent = match spec.memory_limit_bytes {
            Some(_) => Some(
                CgroupParent::find(spec.cgroup_parent.as_deref())
                    .map_err(|why| fail(&spec.name, format!("memory_limit_bytes needs a memory cgroup: {why}")))?,
            ),
            None => None,
        };
        Ok(Proc {
            spec: Arc::new(spec),
            cgroup_parent,
            restarts: Arc::new(AtomicU64::new(0)),
            slots: Mutex::new(BTreeMap::new()),
        })
    }

    /// The process now: its instances' phases and its restarts.
    pub(super) fn status(&self) -> Status {
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

/// What the supervisor and its shutdown watcher share.
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
        self.check_open(&proc.spec.name)?;
        let from = lock(&proc.slots).len() as u32;
        if n > from {
            self.scale_out(proc, from, n).await?;
        } else if n < from {
            self.scale_in(proc, from, n).await;
        }
        Ok(from)
    }

    /// Starts instances from `from` up to `n`, all at once; an error says
    /// which did not start (the others keep running).
    async fn scale_out(&self, proc: &Proc, from: u32, n: u32) -> Result<()> {
        let name = &proc.spec.name;
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
        Ok(())
    }

    /// Stops `from - n` instances gracefully: failed ones first, then the highest numbers.
    async fn scale_in(&self, proc: &Proc, from: u32, n: u32) {
        let mut order: Vec<(bool, u32)> =
            lock(&proc.slots).iter().map(|(i, s)| (*lock(&s.phase) != Phase::Failed, *i)).collect();
        order.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        let victims: Vec<u32> = order.iter().take((from - n) as usize).map(|(_, i)| *i).collect();
        self.stop_instances(proc, &victims).await;
        info!(process = %proc.spec.name, from, to = n, stopped = ?victims, "scaled in");
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
    pub async fn start(specs: Vec<ProcessSpec>, shutdown: watch::Receiver<bool>) -> Result<Self> {
        let mut procs = BTreeMap::new();
        for spec in specs {
            let name = spec.name.clone();
            if procs.insert(name.clone(), Proc::new(spec)?).is_some() {
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
        let watcher = tokio::spawn(shut_down_on(inner.clone(), shutdown));
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
        self.inner.log.kept()
    }

    /// Events from now on, as they happen (a slow reader loses the oldest).
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.inner.log.subscribe()
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

    /// The supervised process `name` (an error names the supervised ones).
    pub(super) fn proc(&self, name: &str) -> Result<&Proc> {
        self.inner.proc(name)
    }
}

/// Shuts `inner` down once `shutdown` reads `true` (a dropped sender never does).
async fn shut_down_on(inner: Arc<Inner>, mut shutdown: watch::Receiver<bool>) {
    loop {
        if *shutdown.borrow_and_update() {
            inner.shutdown().await;
            return;
        }
        if shutdown.changed().await.is_err() {
            return;
        }
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
