//! The host source against the real machine: a real busy process, real
//! cancellation, and a real systemd (booted in a sandbox by scripts/testing/systemd-sandbox.sh)
//! running a busy unit.
#![cfg(target_os = "linux")]

use std::fs::File;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use headroom_collect::Source;
use headroom_collect::host::{HostConfig, HostSource};
use headroom_core::{SeriesData, Span};
use headroom_testing::systemd::Sandbox;
use tokio_util::sync::CancellationToken;

const INTERVAL: Duration = Duration::from_millis(500);
const RUN: Duration = Duration::from_secs(3);
const MIB: f64 = 1024.0 * 1024.0;

/// Tests that run a busy loop hold this lock, across test threads and test
/// processes (nextest), so two busy loops never compete for the cores.
fn busy_lock() -> File {
    let file = File::create(std::env::temp_dir().join("headroom-collect-host-tests.lock")).unwrap();
    file.lock().unwrap();
    file
}

/// A child process killed (by its PID) and reaped when dropped.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts two busy processes under one name nothing else on the machine has:
/// copies of `yes` called `hrbusy<pid>` (under the kernel's 15-byte limit),
/// writing to /dev/null. Two, so that their sum stays well above half a core
/// even when a build keeps both cores busy, and so that summing by name is
/// exercised on real processes.
fn busy_processes(dir: &Path) -> (String, Vec<KillOnDrop>) {
    let name = format!("hrbusy{}", std::process::id());
    let exe = dir.join(&name);
    std::fs::copy("/usr/bin/yes", &exe).expect("copy /usr/bin/yes");
    let children = (0..2)
        .map(|_| KillOnDrop(Command::new(&exe).stdout(Stdio::null()).spawn().expect("start a busy process")))
        .collect();
    (name, children)
}

fn logical_cpus() -> usize {
    let stat = std::fs::read_to_string("/proc/stat").unwrap();
    stat.lines().filter(|l| l.starts_with("cpu") && !l.starts_with("cpu ")).count()
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

fn find<'a>(series: &'a [SeriesData], entity: &str, metric: &str) -> &'a SeriesData {
    series.iter().find(|s| s.key.entity == entity && s.key.metric == metric).unwrap_or_else(|| {
        let keys: Vec<String> = series.iter().map(|s| s.key.to_string()).collect();
        panic!("no series {entity}:{metric}; got {keys:?}")
    })
}

fn mean(s: &SeriesData) -> f64 {
    s.values.iter().sum::<f64>() / s.values.len() as f64
}

fn bounded(processes: Vec<String>, units: Vec<String>, all_units: bool) -> HostConfig {
    HostConfig { interval: Span(INTERVAL), duration: Some(Span(RUN)), processes, units, all_units }
}

#[tokio::test]
async fn host_source_samples_busy_processes_and_the_host_every_interval() {
    let _lock = busy_lock();
    let dir = tempfile::tempdir().unwrap();
    let (name, _children) = busy_processes(dir.path());
    let source = HostSource::new(bounded(vec![name.clone(), "hr-never-runs".into()], vec![], false)).unwrap();

    let started = now_ms();
    let frame = source.collect(&CancellationToken::new()).await.unwrap();
    let series = frame.series().unwrap();

    let cpu = find(&series, &format!("proc/{name}"), "cpu");
    let memory = find(&series, &format!("proc/{name}"), "memory");
    assert_eq!(cpu.len(), 6, "3 s at 500 ms: {:?}", cpu.ts);
    assert!(mean(cpu) > 0.5, "busy processes cpu {:?}", cpu.values);
    let cpus = logical_cpus() as f64;
    // CPU time over wall time between two reads: a few percent of timing jitter either way.
    assert!(cpu.values.iter().all(|&c| c <= cpus * 1.05), "busy processes cpu {:?} on {cpus} CPUs", cpu.values);
    assert!(memory.values.iter().all(|&m| m > 0.0), "busy processes memory {:?}", memory.values);

    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let host = format!("host/{}", hostname.trim());
    assert_eq!(source.host_entity(), host);
    let host_cpu = find(&series, &host, "cpu");
    let host_memory = find(&series, &host, "memory");
    assert!(mean(host_cpu) > 0.0, "host cpu {:?}", host_cpu.values);
    assert!(host_cpu.values.iter().all(|&c| c <= cpus + 0.05), "host cpu {:?} on {cpus} CPUs", host_cpu.values);
    assert!(host_memory.values.iter().all(|&m| m > MIB), "host memory {:?}", host_memory.values);

    // The first sample comes one interval after the start (CPU needs two readings), then one per interval.
    assert_eq!(host_cpu.ts, cpu.ts);
    assert!(cpu.ts[0] >= started + 450, "first sample {} ms after the start", cpu.ts[0] - started);
    for pair in cpu.ts.windows(2) {
        let gap = pair[1] - pair[0];
        assert!((400..=1500).contains(&gap), "gap {gap} ms in {:?}", cpu.ts);
    }

    // A process that never ran has no series at all (not zeros).
    assert!(!series.iter().any(|s| s.key.entity == "proc/hr-never-runs"));
    assert_eq!(series.len(), 4);
}

#[tokio::test]
async fn host_source_cancelled_returns_promptly_with_the_samples_taken() {
    let cfg = HostConfig {
        interval: Span(Duration::from_millis(250)),
        duration: Some(Span(Duration::from_secs(60))),
        ..HostConfig::default()
    };
    let source = HostSource::new(cfg).unwrap();
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        trigger.cancel();
    });

    let started = Instant::now();
    let frame = source.collect(&cancel).await.unwrap();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(2), "returned {took:?} after the start, cancelled at 1 s");
    let series = frame.series().unwrap();
    let cpu = find(&series, &source.host_entity(), "cpu");
    assert!((1..=5).contains(&cpu.len()), "{} samples in 1 s at 250 ms", cpu.len());
    assert_eq!(find(&series, &source.host_entity(), "memory").len(), cpu.len());
}

#[tokio::test]
async fn host_source_cancelled_before_the_first_sample_returns_an_empty_frame() {
    let source = HostSource::new(HostConfig::default()).unwrap();
    let cancel = CancellationToken::new();
    cancel.cancel();
    let started = Instant::now();
    let frame = source.collect(&cancel).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(frame.is_empty());
}

/// A real systemd (`headroom_testing::systemd`) running the unit file
/// `unit`. Never skipped: this test fails when the sandbox cannot start.
fn start_sandbox(unit: &Path) -> Sandbox {
    let script = Sandbox::script();
    assert!(
        script.is_file(),
        "{} not found: set HEADROOM_SYSTEMD_SANDBOX to the systemd sandbox script (default: scripts/testing/systemd-sandbox.sh)",
        script.display()
    );
    Sandbox::start(&[], &[], &[unit]).unwrap_or_else(|why| panic!("systemd sandbox did not start: {why}"))
}

/// Waits (at most 10 s) until `unit` is active in `sandbox`.
fn wait_active(sandbox: &Sandbox, unit: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while sandbox.exec(&["systemctl", "is-active", unit]).1 != "active" {
        assert!(Instant::now() < deadline, "{unit} did not become active: {}", sandbox.status(unit));
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test]
async fn host_source_follows_a_busy_unit_of_a_real_systemd_through_its_cgroup() {
    let _lock = busy_lock();
    let dir = tempfile::tempdir().unwrap();
    let unit = dir.path().join("demo.service");
    std::fs::write(&unit, "[Unit]\nDescription=two busy loops\n[Service]\nExecStart=/bin/sh -c \"(while :; do :; done) & while :; do :; done\"\n")
        .unwrap();
    let sandbox = start_sandbox(&unit);
    wait_active(&sandbox, "demo.service");

    let cfg = bounded(vec![], vec!["demo.service".into(), "absent.service".into()], true);
    let frame = HostSource::new(cfg).unwrap().collect(&CancellationToken::new()).await.unwrap();
    let series = frame.series().unwrap();

    let cpu = find(&series, "systemd/demo.service", "cpu");
    let memory = find(&series, "systemd/demo.service", "memory");
    assert_eq!(cpu.len(), 6, "{:?}", cpu.ts);
    assert!(mean(cpu) > 0.5, "demo.service cpu {:?}", cpu.values);
    assert!(memory.values.iter().all(|&m| m > 0.0), "demo.service memory {:?}", memory.values);
    // `all_units` also follows the sandbox's other units, e.g. its D-Bus daemon.
    assert!(!find(&series, "systemd/dbus.service", "memory").is_empty());
    assert!(!series.iter().any(|s| s.key.entity == "systemd/absent.service"));
}
