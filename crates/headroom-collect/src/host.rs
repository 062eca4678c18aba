//! The host source: samples this machine (Linux or Windows) with `sysinfo`,
//! for boxes without Prometheus.
//!
//! Entities and metrics (CPU in cores, memory in bytes):
//!
//! * `host/<hostname>` — `cpu`: cores busy (global usage × logical CPUs);
//!   `memory`: used bytes (total − available).
//! * `proc/<name>` — every process of that name, summed: `cpu` (CPU time
//!   used since the previous sample over the wall time in between) and
//!   `memory` (resident set size).
//! * `systemd/<unit>` (Linux only) — every process whose cgroup names that
//!   unit (see [`unit_from_cgroup`]), summed the same way.
//!
//! A sample is taken every `interval`, stamped with the UTC wall clock. CPU
//! usage is a difference between two readings, so the source reads once when
//! it starts and emits its first sample one interval later. A selected process
//! or unit that is not running at a sample has no point at that sample (never
//! a zero). On cancellation, or when `duration` is over, everything sampled so
//! far is returned: sampled points are never thrown away.
//!
//! A process's CPU is the CPU time it used since the previous sample over the
//! wall time in between; a process that started since then counts all of its
//! CPU time. Threads are not processes here: each process is counted once.
//! Process names are matched as the system reports them (see
//! [`HostConfig::processes`]); units are found on Linux only, from
//! `/proc/<pid>/cgroup`.
//!
//! A run without `duration` keeps every point in memory until it is
//! cancelled, as the frame is returned whole.
//!
//! Decisions (naming, matching, aggregation, validation, cgroup parsing) are
//! plain functions tested without a machine; `Sampler` is the only part that
//! reads the system.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::FutureExt;
use headroom_core::BoxFuture;
use headroom_core::series::check_name;
use headroom_core::{SampleFrame, SeriesData, SeriesKey, Span};
use serde::{Deserialize, Serialize};
use sysinfo::{CpuRefreshKind, MemoryRefreshKind, ProcessRefreshKind, ProcessesToUpdate, System, ThreadKind};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::error::{Error, Result};
use crate::source::Source;

/// The shortest accepted `interval`: sysinfo does not re-read CPU times more
/// often than this (its `MINIMUM_CPU_UPDATE_INTERVAL` on Linux and Windows),
/// so a shorter interval would repeat stale CPU values.
pub const MIN_INTERVAL: Span = Span(Duration::from_millis(200));

/// Bytes of a process name the Linux kernel keeps (`TASK_COMM_LEN` − 1);
/// longer names are seen truncated to this length.
const LINUX_COMM_LEN: usize = 15;

/// Configuration of the host source.
///
/// Durations are written as text (`15s`, `500ms`, `1h30m`) or as an integer
/// number of milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostConfig {
    /// Time between two samples; at least 200 ms. Default `15s`.
    #[serde(default = "default_interval", deserialize_with = "Span::text_or_millis")]
    pub interval: Span,

    /// How long to sample: `duration / interval` samples (rounded down) are
    /// taken, the last one `duration` after the start. Absent: sample until
    /// cancelled. Must not be shorter than `interval`.
    #[serde(default = "default_duration", deserialize_with = "Span::text_or_millis_opt")]
    pub duration: Option<Span>,

    /// Process names to follow, each as `proc/<name>`, summing every process
    /// of that name. On Linux a name longer than 15 bytes also matches
    /// processes whose (kernel-truncated) name is its first 15 bytes; on
    /// Windows the match ignores case and a trailing `.exe`.
    #[serde(default = "default_processes")]
    pub processes: Vec<String>,

    /// systemd units to follow (Linux only), e.g. `nginx.service`, each as
    /// `systemd/<unit>`, summing every process whose cgroup names that unit.
    /// Only `.service` and `.scope` units hold processes.
    #[serde(default = "default_units")]
    pub units: Vec<String>,

    /// Follow every systemd unit seen holding a process (Linux only), in
    /// addition to `units`.
    #[serde(default = "default_all_units")]
    pub all_units: bool,
}

fn default_interval() -> Span {
    Span::from_secs(15)
}

fn default_duration() -> Option<Span> {
    None
}

fn default_processes() -> Vec<String> {
    Vec::new()
}

fn default_units() -> Vec<String> {
    Vec::new()
}

fn default_all_units() -> bool {
    false
}

impl Default for HostConfig {
    fn default() -> Self {
        Self {
            interval: default_interval(),
            duration: default_duration(),
            processes: default_processes(),
            units: default_units(),
            all_units: default_all_units(),
        }
    }
}

impl HostConfig {
    /// Checks the configuration for this platform; the error names the field and the value.
    pub fn validate(&self) -> Result<()> {
        validate(self, cfg!(target_os = "linux"))
    }

    /// Whether any process or unit is followed (and so the process table must be read).
    fn follows_processes(&self) -> bool {
        !self.processes.is_empty() || self.follows_units()
    }

    /// Whether processes must be mapped to their systemd unit.
    fn follows_units(&self) -> bool {
        !self.units.is_empty() || self.all_units
    }

    /// How many samples a bounded run takes (`None`: until cancelled).
    fn sample_count(&self) -> Option<u64> {
        let interval = self.interval.0.as_millis().max(1);
        self.duration.map(|d| u64::try_from(d.0.as_millis() / interval).unwrap_or(u64::MAX))
    }
}

/// [`HostConfig::validate`] with the platform passed in, so every rule is testable anywhere.
fn validate(cfg: &HostConfig, linux: bool) -> Result<()> {
    if cfg.interval < MIN_INTERVAL {
        return Err(Error::Config(format!(
            "interval: {} is below the minimum of {}: CPU usage is measured between two readings \
             and the system does not re-read CPU times more often",
            cfg.interval, MIN_INTERVAL
        )));
    }
    if let Some(d) = cfg.duration
        && d < cfg.interval
    {
        return Err(Error::Config(format!(
            "duration: {} is shorter than the interval ({}), so no sample would be taken",
            d, cfg.interval
        )));
    }
    check_list("processes", &cfg.processes)?;
    check_list("units", &cfg.units)?;
    if !linux && cfg.follows_units() {
        let field = if cfg.units.is_empty() { "all_units: true" } else { "units" };
        return Err(Error::Config(format!(
            "{field}: systemd units can only be followed on Linux; follow the service's processes \
             by name with `processes` instead"
        )));
    }
    for (i, unit) in cfg.units.iter().enumerate() {
        match unit.rsplit_once('.') {
            Some((stem, "service" | "scope")) if !stem.is_empty() => {}
            Some((stem, kind @ ("slice" | "socket" | "timer" | "target" | "mount" | "path" | "device" | "swap")))
                if !stem.is_empty() =>
            {
                return Err(Error::Config(format!(
                    "units[{i}]: {unit:?} is a .{kind} unit, which holds no processes; \
                     follow the .service or .scope units instead"
                )));
            }
            _ => {
                return Err(Error::Config(format!(
                    "units[{i}]: {unit:?} is not a unit name; write it with its type, e.g. \"{unit}.service\""
                )));
            }
        }
    }
    Ok(())
}

/// Each name must be a valid part of an entity name and listed once.
fn check_list(field: &str, names: &[String]) -> Result<()> {
    let mut seen = BTreeSet::new();
    for (i, name) in names.iter().enumerate() {
        if let Err(e) = check_name("entity", name) {
            let why = match e {
                headroom_core::Error::Name { why, .. } => why.to_owned(),
                other => other.to_string(),
            };
            return Err(Error::Config(format!("{field}[{i}]: {name:?} cannot be part of an entity name: {why}")));
        }
        if !seen.insert(name.as_str()) {
            return Err(Error::Config(format!("{field}[{i}]: {name:?} is listed twice")));
        }
    }
    Ok(())
}

/// The entity of the machine itself.
fn host_entity(hostname: &str) -> String {
    format!("host/{hostname}")
}

/// The entity of the processes selected by `name`.
fn proc_entity(name: &str) -> String {
    format!("proc/{name}")
}

/// The entity of a systemd unit.
fn unit_entity(unit: &str) -> String {
    format!("systemd/{unit}")
}

/// Whether a process seen with name `observed` is one the user selected as `selected`.
///
/// Exact match, plus: on Linux the kernel keeps only the first 15 bytes of a
/// name, so a longer selected name matches its 15-byte prefix; on Windows names
/// are case-insensitive and `nginx` selects `nginx.exe`.
fn process_name_matches(selected: &str, observed: &str, windows: bool) -> bool {
    if windows {
        let bare = match observed.len().checked_sub(4) {
            Some(cut) if observed.is_char_boundary(cut) && observed[cut..].eq_ignore_ascii_case(".exe") => {
                &observed[..cut]
            }
            _ => observed,
        };
        return observed.eq_ignore_ascii_case(selected) || bare.eq_ignore_ascii_case(selected);
    }
    observed == selected
        || (observed.len() == LINUX_COMM_LEN
            && selected.len() > LINUX_COMM_LEN
            && selected.as_bytes().starts_with(observed.as_bytes()))
}

/// The systemd unit a process belongs to, from the text of its `/proc/<pid>/cgroup`.
///
/// The path is taken from systemd's own hierarchy: the `name=systemd` line
/// (cgroup v1, and hybrid mode), else the unified `0::` line (cgroup v2).
/// Lines of other v1 controllers are ignored: they need not follow systemd's
/// layout (containers, hand-made groups).
///
/// Within the path, the innermost `*.service` component is the unit, so
/// processes in sub-groups a service made for itself count for the service,
/// and everything under a user manager (`user@1000.service/app.slice/x.scope`)
/// counts for the manager, as `systemctl status` shows it. Only when no
/// service encloses the process is the innermost `*.scope` the unit (login
/// sessions, containers, `systemd-run --scope`). Slices are never units here:
/// they group units and hold no processes of their own. A root path, a path of
/// slices only, or text without systemd's hierarchy gives `None`.
pub fn unit_from_cgroup(text: &str) -> Option<String> {
    let mut named = None;
    let mut unified = None;
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if controllers == "name=systemd" {
            named = Some(path);
        } else if id == "0" && controllers.is_empty() {
            unified = Some(path);
        }
    }
    named.and_then(unit_from_path).or_else(|| unified.and_then(unit_from_path))
}

/// The unit of one cgroup path (see [`unit_from_cgroup`]).
fn unit_from_path(path: &str) -> Option<String> {
    let path = path.trim_end().trim_end_matches(" (deleted)");
    let units =
        |suffix: &str| path.split('/').rev().find(|c| c.len() > suffix.len() && c.ends_with(suffix)).map(str::to_owned);
    units(".service").or_else(|| units(".scope"))
}

/// One process at one sample: what the aggregation needs.
#[derive(Debug, Clone, PartialEq)]
struct ProcessSample {
    /// The name the system reports.
    name: String,
    /// Its systemd unit, when units are followed and it has one.
    unit: Option<String>,
    /// CPU in cores.
    cpu: f64,
    /// Resident set size, bytes.
    memory: f64,
}

/// CPU and memory of one entity at one sample.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Usage {
    /// Cores busy.
    cpu: f64,
    /// Bytes.
    memory: f64,
}

impl Usage {
    fn add(&mut self, p: &ProcessSample) {
        self.cpu += p.cpu;
        self.memory += p.memory;
    }
}

/// Cores busy from a global usage percentage (0–100 of all CPUs) and the number of logical CPUs.
fn cores_busy(global_percent: f32, logical_cpus: usize) -> f64 {
    f64::from(global_percent) / 100.0 * logical_cpus as f64
}

/// Cores a process used between two readings `elapsed_ms` apart: the CPU time
/// it used in between over the wall time in between, at most `logical_cpus`.
///
/// A process absent from the previous reading started since, so all of its CPU
/// time falls in the interval. (sysinfo's own per-process percentage reads 0
/// for a process whose previous reading had no CPU time yet, e.g. one that had
/// just started: that would put a false zero into the series.)
fn process_cores(previous_cpu_ms: Option<u64>, cpu_ms: u64, elapsed_ms: f64, logical_cpus: usize) -> f64 {
    if elapsed_ms <= 0.0 {
        return 0.0;
    }
    let used = cpu_ms.saturating_sub(previous_cpu_ms.unwrap_or(0)) as f64;
    (used / elapsed_ms).min(logical_cpus.max(1) as f64)
}

/// Used memory: total − available, never negative.
fn used_memory(total: u64, available: u64) -> f64 {
    total.saturating_sub(available) as f64
}

/// Sums the processes into the selected `proc/…` and `systemd/…` entities.
/// Entities with no process at this sample are absent (no point, not zero).
fn aggregate(cfg: &HostConfig, windows: bool, procs: &[ProcessSample]) -> BTreeMap<String, Usage> {
    let mut out: BTreeMap<String, Usage> = BTreeMap::new();
    for p in procs {
        for name in &cfg.processes {
            if process_name_matches(name, &p.name, windows) {
                out.entry(proc_entity(name)).or_default().add(p);
            }
        }
        if let Some(unit) = &p.unit
            && (cfg.all_units || cfg.units.contains(unit))
        {
            out.entry(unit_entity(unit)).or_default().add(p);
        }
    }
    out
}

/// The selected processes and units that never had a point.
fn never_seen<'a>(cfg: &'a HostConfig, seen: &BTreeSet<String>) -> Vec<(&'static str, &'a str)> {
    let procs = cfg.processes.iter().filter(|n| !seen.contains(&proc_entity(n))).map(|n| ("process", n.as_str()));
    let units = cfg.units.iter().filter(|u| !seen.contains(&unit_entity(u))).map(|u| ("unit", u.as_str()));
    procs.chain(units).collect()
}

/// Every point sampled so far, per series.
#[derive(Debug, Default)]
struct Recorder {
    series: BTreeMap<(String, &'static str), SeriesData>,
    seen: BTreeSet<String>,
    samples: usize,
}

impl Recorder {
    fn record(&mut self, ts: i64, entity: &str, usage: Usage) {
        for (metric, value) in [("cpu", usage.cpu), ("memory", usage.memory)] {
            let slot = self.series.entry((entity.to_owned(), metric));
            let series = match slot {
                std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::btree_map::Entry::Vacant(e) => match SeriesKey::new(entity, metric) {
                    Ok(key) => e.insert(SeriesData::new(key)),
                    Err(err) => {
                        debug!(entity, error = %err, "skipping a unit whose name cannot be an entity");
                        return;
                    }
                },
            };
            series.push(ts, value);
        }
        self.seen.insert(entity.to_owned());
    }

    fn record_snapshot(&mut self, cfg: &HostConfig, host: &str, windows: bool, snap: &Snapshot) {
        self.record(snap.ts, host, snap.host);
        for (entity, usage) in aggregate(cfg, windows, &snap.procs) {
            self.record(snap.ts, &entity, usage);
        }
        self.samples += 1;
    }

    fn into_frame(self) -> Result<SampleFrame> {
        Ok(SampleFrame::from_series(self.series.values())?)
    }
}

/// One reading of the machine.
#[derive(Debug)]
struct Snapshot {
    /// UTC epoch ms.
    ts: i64,
    host: Usage,
    procs: Vec<ProcessSample>,
}

/// A process across readings: its PID and start time (a reused PID is another process).
type ProcessId = (u32, u64);

/// Reads the system through sysinfo, refreshing only what the configuration needs.
struct Sampler {
    sys: System,
    processes: bool,
    units: bool,
    /// CPU time (ms) of every process at the previous reading.
    cpu_ms: HashMap<ProcessId, u64>,
    /// When the process table was last read.
    read_at: Option<std::time::Instant>,
}

impl fmt::Debug for Sampler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sampler").field("processes", &self.processes).field("units", &self.units).finish()
    }
}

impl Sampler {
    fn new(cfg: &HostConfig) -> Result<Self> {
        let sys = System::new().map_err(|e| Error::Host(format!("cannot read system information: {e}")))?;
        Ok(Self {
            sys,
            processes: cfg.follows_processes(),
            units: cfg.follows_units(),
            cpu_ms: HashMap::new(),
            read_at: None,
        })
    }

    /// The first reading: the reference the first sample's CPU usage is measured from.
    fn prime(&mut self) {
        self.refresh();
    }

    /// Re-reads CPU times, memory and (when followed) the process table, and
    /// returns the followed processes with their CPU usage since the previous reading.
    fn refresh(&mut self) -> Vec<ProcessSample> {
        self.sys.refresh_cpu_specifics(CpuRefreshKind::nothing().with_usage());
        self.sys.refresh_memory_specifics(MemoryRefreshKind::nothing().with_ram());
        if !self.processes {
            return Vec::new();
        }
        // Without tasks: threads would otherwise be listed as processes of the same name.
        let kind = ProcessRefreshKind::nothing().without_tasks().with_cpu().with_memory();
        self.sys.refresh_processes_specifics(ProcessesToUpdate::All, true, kind);
        let now = std::time::Instant::now();
        let elapsed_ms = self.read_at.map(|at| (now - at).as_secs_f64() * 1000.0);
        self.read_at = Some(now);

        let cpus = self.sys.cpus().len();
        let mut cpu_ms = HashMap::with_capacity(self.sys.processes().len());
        let mut out = Vec::new();
        for p in self.sys.processes().values().filter(|p| p.thread_kind() != Some(ThreadKind::Userland)) {
            let id = (p.pid().as_u32(), p.start_time());
            let used = p.accumulated_cpu_time();
            cpu_ms.insert(id, used);
            let Some(elapsed_ms) = elapsed_ms else { continue };
            out.push(ProcessSample {
                name: p.name().to_string_lossy().into_owned(),
                unit: if self.units { read_unit(id.0) } else { None },
                cpu: process_cores(self.cpu_ms.get(&id).copied(), used, elapsed_ms, cpus),
                memory: p.memory() as f64,
            });
        }
        self.cpu_ms = cpu_ms;
        out
    }

    /// Refreshes and reads one sample.
    fn sample(&mut self) -> Snapshot {
        let procs = self.refresh();
        let ts = now_ms();
        let host = Usage {
            cpu: cores_busy(self.sys.global_cpu_usage(), self.sys.cpus().len()),
            memory: used_memory(self.sys.total_memory(), self.sys.available_memory()),
        };
        Snapshot { ts, host, procs }
    }
}

/// The systemd unit of a live process; `None` when it has none or has exited.
#[cfg(target_os = "linux")]
fn read_unit(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok().and_then(|text| unit_from_cgroup(&text))
}

/// Units are followed only on Linux (refused by validation elsewhere).
#[cfg(not(target_os = "linux"))]
fn read_unit(_pid: u32) -> Option<String> {
    None
}

/// The UTC wall clock in epoch milliseconds.
fn now_ms() -> i64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

/// The machine's name from sysinfo, or `localhost` (with a warning) when it has none usable.
fn resolve_hostname() -> String {
    match System::host_name() {
        Ok(name) if check_name("entity", &name).is_ok() => name,
        Ok(name) => {
            warn!(hostname = ?name, "host name cannot be used in an entity name; using \"localhost\"");
            "localhost".to_owned()
        }
        Err(e) => {
            warn!(error = %e, "cannot read the host name; using \"localhost\"");
            "localhost".to_owned()
        }
    }
}

/// Runs `f` on the sampler off the async runtime (reading /proc is blocking IO).
async fn blocking<T: Send + 'static>(
    mut sampler: Sampler,
    f: impl FnOnce(&mut Sampler) -> T + Send + 'static,
) -> Result<(Sampler, T)> {
    tokio::task::spawn_blocking(move || {
        let out = f(&mut sampler);
        (sampler, out)
    })
    .await
    .map_err(|e| Error::Host(format!("the sampling thread failed: {e}")))
}

/// Samples this machine (see the module docs). Built from a [`HostConfig`].
#[derive(Debug, Clone)]
pub struct HostSource {
    cfg: HostConfig,
    hostname: String,
}

impl HostSource {
    /// Validates `cfg` and resolves the host name.
    pub fn new(cfg: HostConfig) -> Result<Self> {
        cfg.validate()?;
        Ok(Self { cfg, hostname: resolve_hostname() })
    }

    /// The configuration this source runs with.
    pub fn config(&self) -> &HostConfig {
        &self.cfg
    }

    /// The entity of the machine, `host/<hostname>`.
    pub fn host_entity(&self) -> String {
        host_entity(&self.hostname)
    }

    async fn run(&self, cancel: &CancellationToken) -> Result<SampleFrame> {
        let cfg = &self.cfg;
        let host = self.host_entity();
        let windows = cfg!(windows);
        let mut recorder = Recorder::default();
        let wanted = cfg.sample_count();
        info!(source = %self.describe(), samples = ?wanted, "host sampling started");

        // Prime: CPU usage is a difference, so the first reading only sets the reference.
        let start = Instant::now();
        let (mut sampler, ()) = blocking(Sampler::new(cfg)?, Sampler::prime).await?;
        let mut ticker = tokio::time::interval_at(start + cfg.interval.0, cfg.interval.0);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);

        while wanted.is_none_or(|n| (recorder.samples as u64) < n) {
            tokio::select! {
                biased;
                () = cancel.cancelled() => {
                    info!(samples = recorder.samples, "host sampling cancelled; returning the samples taken");
                    break;
                }
                _ = ticker.tick() => {}
            }
            let (s, snap) = blocking(sampler, Sampler::sample).await?;
            sampler = s;
            recorder.record_snapshot(cfg, &host, windows, &snap);
            if recorder.samples == 1 {
                for (kind, name) in never_seen(cfg, &recorder.seen) {
                    info!(kind, name, "selected {kind} not running at the first sample; it is picked up if it starts");
                }
            }
        }

        if recorder.samples > 0 {
            for (kind, name) in never_seen(cfg, &recorder.seen) {
                warn!(kind, name, samples = recorder.samples, "selected {kind} was never seen; it has no series");
            }
        }
        debug!(samples = recorder.samples, series = recorder.series.len(), "host sampling finished");
        recorder.into_frame()
    }
}

impl Source for HostSource {
    fn describe(&self) -> String {
        let cfg = &self.cfg;
        let mut out = format!("host {} every {}", self.hostname, cfg.interval);
        if let Some(d) = cfg.duration {
            out.push_str(&format!(" for {d}"));
        }
        if !cfg.processes.is_empty() {
            out.push_str(&format!("; processes {}", cfg.processes.join(", ")));
        }
        if !cfg.units.is_empty() {
            out.push_str(&format!("; units {}", cfg.units.join(", ")));
        }
        if cfg.all_units {
            out.push_str("; all units");
        }
        out
    }

    /// Samples until `duration` is over or `cancel` fires, and returns every
    /// point taken (also when cancelled).
    fn collect<'a>(&'a self, cancel: &'a CancellationToken) -> BoxFuture<'a, Result<SampleFrame>> {
        self.run(cancel).boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: &str) -> Result<HostConfig, serde_json::Error> {
        serde_json::from_str(json)
    }

    fn linux(cfg: &HostConfig) -> String {
        validate(cfg, true).unwrap_err().to_string()
    }

    fn proc(name: &str, unit: Option<&str>, cpu: f64, memory: f64) -> ProcessSample {
        ProcessSample { name: name.into(), unit: unit.map(Into::into), cpu, memory }
    }

    // --- cgroup parsing -------------------------------------------------------------------

    #[test]
    fn cgroup_v1_uses_the_systemd_hierarchy() {
        let text = "12:pids:/system.slice/nginx.service\n\
                    4:memory:/docker/0123abcd\n\
                    2:cpu,cpuacct:/system.slice/nginx.service\n\
                    1:name=systemd:/system.slice/nginx.service\n";
        assert_eq!(unit_from_cgroup(text).as_deref(), Some("nginx.service"));
        // Other controllers alone are not systemd's view.
        assert_eq!(unit_from_cgroup("4:memory:/system.slice/nginx.service\n"), None);
    }

    #[test]
    fn cgroup_v2_and_hybrid() {
        assert_eq!(unit_from_cgroup("0::/system.slice/nginx.service\n").as_deref(), Some("nginx.service"));
        let hybrid = "1:name=systemd:/system.slice/cron.service\n0::/system.slice/cron.service\n";
        assert_eq!(unit_from_cgroup(hybrid).as_deref(), Some("cron.service"));
        // This machine's shape: systemd's hierarchy at the root, a unit only on the unified line.
        let split = "9:name=systemd:/\n4:memory:/process_api/934c\n0::/system.slice/demo.service\n";
        assert_eq!(unit_from_cgroup(split).as_deref(), Some("demo.service"));
        let deleted = "0::/system.slice/gone.service (deleted)\n";
        assert_eq!(unit_from_cgroup(deleted).as_deref(), Some("gone.service"));
    }

    #[test]
    fn user_units_and_nested_groups_take_the_innermost_service() {
        let user = "0::/user.slice/user-1000.slice/user@1000.service/app.slice/syncthing.service\n";
        assert_eq!(unit_from_cgroup(user).as_deref(), Some("syncthing.service"));
        let template = "0::/system.slice/system-getty.slice/getty@tty1.service\n";
        assert_eq!(unit_from_cgroup(template).as_deref(), Some("getty@tty1.service"));
        let delegated = "0::/system.slice/containerd.service/kubepods/burstable/pod42\n";
        assert_eq!(unit_from_cgroup(delegated).as_deref(), Some("containerd.service"));
    }

    #[test]
    fn scopes_count_only_when_no_service_encloses_them() {
        let app = "0::/user.slice/user-1000.slice/user@1000.service/app.slice/app-firefox-1234.scope\n";
        assert_eq!(unit_from_cgroup(app).as_deref(), Some("user@1000.service"));
        let session = "1:name=systemd:/user.slice/user-1000.slice/session-3.scope\n";
        assert_eq!(unit_from_cgroup(session).as_deref(), Some("session-3.scope"));
        let container = "0::/system.slice/docker-0123abcd.scope\n";
        assert_eq!(unit_from_cgroup(container).as_deref(), Some("docker-0123abcd.scope"));
        assert_eq!(unit_from_cgroup("0::/init.scope\n").as_deref(), Some("init.scope"));
    }

    #[test]
    fn no_unit() {
        for text in [
            "",
            "0::/\n",
            "0::/user.slice\n",
            "1:name=systemd:/system.slice\n0::/system.slice\n",
            "0::/system.slice/.service\n",
            "garbage\n",
            "9:name=systemd:/\n4:memory:/process_api/934c1ef1c587b42e9686fcd1eacf972f\n0::/\n",
        ] {
            assert_eq!(unit_from_cgroup(text), None, "{text:?}");
        }
    }

    // --- names and aggregation ------------------------------------------------------------

    #[test]
    fn entity_names() {
        assert_eq!(host_entity("vm"), "host/vm");
        assert_eq!(proc_entity("nginx"), "proc/nginx");
        assert_eq!(unit_entity("nginx.service"), "systemd/nginx.service");
    }

    #[test]
    fn process_names_match_exactly_or_as_the_platform_shows_them() {
        assert!(process_name_matches("nginx", "nginx", false));
        assert!(!process_name_matches("nginx", "nginx2", false));
        assert!(!process_name_matches("nginx", "Nginx", false));
        // Linux truncates names to 15 bytes.
        assert!(process_name_matches("headroom-collector", "headroom-collec", false));
        assert!(!process_name_matches("headroom-collector", "headroom-colle", false));
        assert!(!process_name_matches("headroom-collec", "headroom-collector", false));
        // Windows: case-insensitive, `.exe` optional.
        assert!(process_name_matches("nginx", "NGINX.EXE", true));
        assert!(process_name_matches("nginx.exe", "nginx.exe", true));
        assert!(!process_name_matches("nginx", "nginx-helper.exe", true));
        assert!(!process_name_matches("nginx", "nginx.exe", false));
    }

    #[test]
    fn processes_of_one_name_are_summed() {
        let cfg = HostConfig { processes: vec!["postgres".into(), "redis".into()], ..HostConfig::default() };
        let procs = [
            proc("postgres", None, 0.5, 100.0),
            proc("postgres", None, 0.25, 50.0),
            proc("postgres", None, 0.0, 10.0),
            proc("bash", None, 1.0, 7.0),
        ];
        let got = aggregate(&cfg, false, &procs);
        assert_eq!(got.len(), 1, "redis is absent: no point, not zero: {got:?}");
        let pg = got["proc/postgres"];
        assert!((pg.cpu - 0.75).abs() < 1e-12);
        assert!((pg.memory - 160.0).abs() < 1e-9);
    }

    #[test]
    fn units_sum_their_processes_and_all_units_follows_every_one() {
        let procs = [
            proc("nginx", Some("nginx.service"), 0.5, 100.0),
            proc("nginx", Some("nginx.service"), 0.5, 100.0),
            proc("sshd", Some("ssh.service"), 0.1, 10.0),
            proc("bash", None, 1.0, 7.0),
        ];
        let cfg = HostConfig {
            processes: vec!["nginx".into()],
            units: vec!["nginx.service".into(), "absent.service".into()],
            ..HostConfig::default()
        };
        let got = aggregate(&cfg, false, &procs);
        assert_eq!(got.keys().collect::<Vec<_>>(), ["proc/nginx", "systemd/nginx.service"]);
        assert!((got["systemd/nginx.service"].cpu - 1.0).abs() < 1e-12);
        assert_eq!(got["proc/nginx"], got["systemd/nginx.service"]);

        let all = HostConfig { all_units: true, ..HostConfig::default() };
        let got = aggregate(&all, false, &procs);
        assert_eq!(got.keys().collect::<Vec<_>>(), ["systemd/nginx.service", "systemd/ssh.service"]);

        let seen: BTreeSet<String> = aggregate(&cfg, false, &procs).into_keys().collect();
        assert_eq!(never_seen(&cfg, &seen), [("unit", "absent.service")]);
    }

    #[test]
    fn host_usage() {
        assert!((cores_busy(50.0, 4) - 2.0).abs() < 1e-12);
        assert!((cores_busy(100.0, 2) - 2.0).abs() < 1e-12);
        assert_eq!(used_memory(8 << 30, 6 << 30), (2u64 << 30) as f64);
        assert_eq!(used_memory(1, 2), 0.0);
    }

    #[test]
    fn process_cpu_is_cpu_time_over_wall_time() {
        assert!((process_cores(Some(1_000), 1_450, 500.0, 2) - 0.9).abs() < 1e-12);
        // New since the previous reading: all its CPU time is in the interval.
        assert!((process_cores(None, 250, 500.0, 2) - 0.5).abs() < 1e-12);
        // Idle, a counter that went backwards, or no time elapsed: zero, never negative.
        assert_eq!(process_cores(Some(40), 40, 500.0, 2), 0.0);
        assert_eq!(process_cores(Some(50), 40, 500.0, 2), 0.0);
        assert_eq!(process_cores(Some(0), 40, 0.0, 2), 0.0);
        // Never more than every CPU busy.
        assert_eq!(process_cores(None, 100_000, 500.0, 2), 2.0);
    }

    #[test]
    fn recorder_keeps_absent_entities_pointless() {
        let cfg = HostConfig { processes: vec!["a".into()], ..HostConfig::default() };
        let mut rec = Recorder::default();
        let host = Usage { cpu: 1.0, memory: 2.0 };
        rec.record_snapshot(&cfg, "host/vm", false, &Snapshot { ts: 1000, host, procs: vec![] });
        let procs = vec![proc("a", None, 0.5, 3.0)];
        rec.record_snapshot(&cfg, "host/vm", false, &Snapshot { ts: 2000, host, procs });
        let series = rec.into_frame().unwrap().series().unwrap();
        let find = |e: &str, m: &str| series.iter().find(|s| s.key.entity == e && s.key.metric == m).unwrap();
        assert_eq!(find("host/vm", "cpu").ts, [1000, 2000]);
        assert_eq!(find("proc/a", "cpu").ts, [2000]);
        assert_eq!(find("proc/a", "memory").values, [3.0]);
        assert_eq!(series.len(), 4);
    }

    // --- configuration --------------------------------------------------------------------

    #[test]
    fn config_defaults_and_duration_forms() {
        let cfg = config("{}").unwrap();
        assert_eq!(cfg, HostConfig::default());
        assert_eq!(cfg.interval, Span::from_secs(15));
        assert_eq!(cfg.duration, None);
        assert_eq!(cfg.sample_count(), None);

        let cfg = config(r#"{"interval": "500ms", "duration": "3s", "processes": ["nginx"]}"#).unwrap();
        assert_eq!(cfg.interval, Span::from_ms(500));
        assert_eq!(cfg.duration, Some(Span::from_secs(3)));
        assert_eq!(cfg.sample_count(), Some(6));
        let back = serde_json::to_string(&cfg).unwrap();
        assert!(back.contains(r#""interval":"500ms""#), "{back}");
        assert_eq!(config(&back).unwrap(), cfg);

        let cfg = config(r#"{"interval": 250, "duration": 1100}"#).unwrap();
        assert_eq!(cfg.interval, Span::from_ms(250));
        assert_eq!(cfg.sample_count(), Some(4));
        assert_eq!(config(r#"{"duration": null}"#).unwrap().duration, None);
    }

    #[test]
    fn config_parse_errors_name_the_problem() {
        let err = config(r#"{"intervall": "1s"}"#).unwrap_err().to_string();
        assert!(err.contains("unknown field `intervall`"), "{err}");
        let err = config(r#"{"interval": "5x"}"#).unwrap_err().to_string();
        assert!(err.contains("\"5x\""), "{err}");
        let err = config(r#"{"interval": 0}"#).unwrap_err().to_string();
        assert!(err.contains("must be positive"), "{err}");
        let err = config(r#"{"duration": -5}"#).unwrap_err().to_string();
        assert!(err.contains("must be positive"), "{err}");
    }

    #[test]
    fn validation_errors_name_field_and_value() {
        let ok = HostConfig {
            interval: MIN_INTERVAL,
            duration: Some(MIN_INTERVAL),
            processes: vec!["nginx".into()],
            units: vec!["nginx.service".into(), "session-3.scope".into()],
            all_units: true,
        };
        validate(&ok, true).unwrap();

        let err = linux(&HostConfig { interval: Span::from_ms(100), ..HostConfig::default() });
        assert!(err.contains("interval: 100ms is below the minimum of 200ms"), "{err}");

        let err = linux(&HostConfig {
            interval: Span::from_secs(15),
            duration: Some(Span::from_secs(10)),
            ..HostConfig::default()
        });
        assert!(err.contains("duration: 10s is shorter than the interval (15s)"), "{err}");

        let err = linux(&HostConfig { processes: vec!["a".into(), " b".into()], ..HostConfig::default() });
        assert!(err.contains("processes[1]: \" b\""), "{err}");
        let err = linux(&HostConfig { processes: vec!["a".into(), "a".into()], ..HostConfig::default() });
        assert!(err.contains("processes[1]: \"a\" is listed twice"), "{err}");
        let err = linux(&HostConfig { processes: vec![String::new()], ..HostConfig::default() });
        assert!(err.contains("processes[0]: \"\""), "{err}");

        let err = linux(&HostConfig { units: vec!["nginx".into()], ..HostConfig::default() });
        assert!(err.contains("units[0]: \"nginx\" is not a unit name") && err.contains("nginx.service"), "{err}");
        let err = linux(&HostConfig { units: vec!["system.slice".into()], ..HostConfig::default() });
        assert!(err.contains("units[0]: \"system.slice\" is a .slice unit"), "{err}");
        let err = linux(&HostConfig { units: vec![".service".into()], ..HostConfig::default() });
        assert!(err.contains("units[0]: \".service\" is not a unit name"), "{err}");
    }

    #[test]
    fn units_are_refused_off_linux() {
        let units = HostConfig { units: vec!["nginx.service".into()], ..HostConfig::default() };
        let err = validate(&units, false).unwrap_err().to_string();
        assert!(err.contains("units: systemd units can only be followed on Linux"), "{err}");
        let all = HostConfig { all_units: true, ..HostConfig::default() };
        let err = validate(&all, false).unwrap_err().to_string();
        assert!(err.contains("all_units: true: systemd units can only be followed on Linux"), "{err}");
        let procs = HostConfig { processes: vec!["nginx".into()], ..HostConfig::default() };
        validate(&procs, false).unwrap();
    }
}
