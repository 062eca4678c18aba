//! Memory cgroups (v1 and v2) for supervised processes and for tests that
//! need a real OOM kill: find where headroom may make them, create one with a
//! memory limit and no swap, move processes in, read usage and the OOM-kill
//! count, and remove it (killing what is left) when done.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tracing::warn;

/// How long removing a cgroup waits for its last processes to go.
const CGROUP_REMOVE_WAIT: Duration = Duration::from_secs(2);

/// `pid` as a nix pid, never 0 or 1 (signalling those would reach a process group or init).
pub(crate) fn nix_pid(pid: u32) -> Option<Pid> {
    i32::try_from(pid).ok().filter(|p| *p > 1).map(Pid::from_raw)
}

/// The cgroup version of a hierarchy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupVersion {
    /// cgroup v1: a separate `memory` hierarchy.
    V1,
    /// cgroup v2: one unified hierarchy.
    V2,
}

/// The directory instance cgroups are made in.
#[derive(Debug, Clone)]
pub struct CgroupParent {
    dir: PathBuf,
    version: CgroupVersion,
}

impl CgroupParent {
    /// `configured`, or the supervisor's own memory cgroup. On v2, enables
    /// the memory controller for its children. The error says what failed.
    pub fn find(configured: Option<&Path>) -> std::result::Result<Self, String> {
        let parent = match configured {
            Some(dir) if dir.join("cgroup.controllers").is_file() => {
                Self { dir: dir.to_owned(), version: CgroupVersion::V2 }
            }
            Some(dir) if dir.join("memory.limit_in_bytes").is_file() => {
                Self { dir: dir.to_owned(), version: CgroupVersion::V1 }
            }
            Some(dir) => {
                return Err(format!(
                    "cgroup_parent {} is neither a cgroup v2 directory nor a cgroup v1 memory directory",
                    dir.display()
                ));
            }
            None => Self::own()?,
        };
        if parent.version == CgroupVersion::V2 {
            let control = parent.dir.join("cgroup.subtree_control");
            let enabled = fs::read_to_string(&control).map_err(|e| format!("reading {}: {e}", control.display()))?;
            if !enabled.split_whitespace().any(|c| c == "memory") {
                fs::write(&control, "+memory").map_err(|e| {
                    format!(
                        "enabling the memory controller in {}: {e} (on cgroup v2 it must be delegated, and the \
                         cgroup must have no processes of its own: set cgroup_parent to such a cgroup)",
                        control.display()
                    )
                })?;
            }
        }
        Ok(parent)
    }

    /// The memory cgroup this process is in.
    pub fn own() -> std::result::Result<Self, String> {
        let own = fs::read_to_string("/proc/self/cgroup").map_err(|e| format!("reading /proc/self/cgroup: {e}"))?;
        let root = Path::new("/sys/fs/cgroup");
        if root.join("cgroup.controllers").is_file() {
            let path = own.lines().find_map(|l| l.strip_prefix("0::")).ok_or("no `0::` line in /proc/self/cgroup")?;
            return Ok(Self { dir: root.join(path.trim_start_matches('/')), version: CgroupVersion::V2 });
        }
        let path = own
            .lines()
            .find_map(|l| {
                let mut fields = l.splitn(3, ':');
                let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
                controllers.split(',').any(|c| c == "memory").then_some(path)
            })
            .ok_or("no memory controller in /proc/self/cgroup (neither cgroup v2 nor a v1 memory hierarchy)")?;
        Ok(Self { dir: root.join("memory").join(path.trim_start_matches('/')), version: CgroupVersion::V1 })
    }
}

/// A memory cgroup made by headroom; dropped, it kills what is left in it and removes it.
#[derive(Debug)]
pub struct MemoryCgroup {
    dir: PathBuf,
    version: CgroupVersion,
    removed: bool,
}

impl MemoryCgroup {
    /// Creates `parent/name` with a memory limit of `limit` bytes and no swap.
    pub fn create(parent: &CgroupParent, name: &str, limit: u64) -> std::result::Result<Self, String> {
        let dir = parent.dir.join(name);
        // A leftover of an earlier supervisor with the same pid: remove it (fails if in use).
        let _ = fs::remove_dir(&dir);
        fs::create_dir(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let cgroup = Self { dir, version: parent.version, removed: false };
        let write = |file: &str, value: &str| fs::write(cgroup.dir.join(file), value);
        let (limit_file, swap_file, swap_value) = match cgroup.version {
            CgroupVersion::V1 => ("memory.limit_in_bytes", "memory.memsw.limit_in_bytes", limit.to_string()),
            CgroupVersion::V2 => ("memory.max", "memory.swap.max", "0".to_owned()),
        };
        write(limit_file, &limit.to_string())
            .map_err(|e| format!("setting {} to {limit}: {e}", cgroup.dir.join(limit_file).display()))?;
        // No swap, so a child over the limit is killed instead of swapped out; the
        // file is missing (or refuses) when the kernel does not account swap: then there is none.
        if cgroup.dir.join(swap_file).exists() {
            let _ = write(swap_file, &swap_value);
        }
        if cgroup.version == CgroupVersion::V1 {
            // v1: what a child charged before it was moved in moves with it.
            let _ = write("memory.move_charge_at_immigrate", "3");
        }
        Ok(cgroup)
    }

    /// Moves process `pid` into the cgroup.
    pub fn add(&self, pid: u32) -> io::Result<()> {
        fs::write(self.dir.join("cgroup.procs"), pid.to_string())
    }

    /// The cgroup's directory (its `cgroup.procs` is where a process moves itself in).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Memory charged to the cgroup now, bytes (`memory.usage_in_bytes` on v1,
    /// `memory.current` on v2); None if it cannot be read.
    pub fn usage(&self) -> Option<u64> {
        let file = match self.version {
            CgroupVersion::V1 => "memory.usage_in_bytes",
            CgroupVersion::V2 => "memory.current",
        };
        fs::read_to_string(self.dir.join(file)).ok()?.trim().parse().ok()
    }

    /// How many processes the kernel's OOM killer has killed in it (None: the kernel does not say).
    pub fn oom_kills(&self) -> Option<u64> {
        let file = match self.version {
            CgroupVersion::V1 => "memory.oom_control",
            CgroupVersion::V2 => "memory.events",
        };
        let text = fs::read_to_string(self.dir.join(file)).ok()?;
        text.lines().find_map(|l| l.strip_prefix("oom_kill ")).and_then(|n| n.trim().parse().ok())
    }

    /// SIGKILL to every process still in it (they are in it, so their pids are theirs).
    pub fn kill_all(&self) {
        let Ok(text) = fs::read_to_string(self.dir.join("cgroup.procs")) else { return };
        for pid in text.lines().filter_map(|l| l.trim().parse::<u32>().ok()).filter_map(nix_pid) {
            let _ = kill(pid, Signal::SIGKILL);
        }
    }

    /// One try: SIGKILL to what is left, then remove the directory (already gone counts as removed).
    fn kill_and_remove(&self) -> io::Result<()> {
        self.kill_all();
        match fs::remove_dir(&self.dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Kills what is left in it and removes it, waiting a little for the processes to go.
    pub async fn remove(mut self) {
        let deadline = Instant::now() + CGROUP_REMOVE_WAIT;
        loop {
            match self.kill_and_remove() {
                Ok(()) => break,
                Err(e) if Instant::now() >= deadline => {
                    warn!(cgroup = %self.dir.display(), error = %e, "could not remove an instance cgroup");
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
        self.removed = true;
    }
}

impl Drop for MemoryCgroup {
    fn drop(&mut self) {
        if self.removed {
            return;
        }
        // Dropped without `remove` (the supervisor was dropped): best effort, briefly.
        for _ in 0..50 {
            if self.kill_and_remove().is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        warn!(cgroup = %self.dir.display(), "could not remove an instance cgroup");
    }
}
