//! A real out-of-memory kill, found by the OOM detector.
//!
//! The unit tests of [`detect::oom_kill`] use hand-made series. This test has
//! the kernel make one: it creates a memory cgroup limited to 64 MiB, runs a
//! child in it that allocates and touches 1 MiB every 10 ms until the kernel's
//! OOM killer kills it (SIGKILL), restarts it at once like a supervisor with
//! `Restart=always`, and samples the cgroup's memory usage and its own restart
//! counter every 20 ms with wall-clock timestamps. It then proves on that trace:
//!
//! * the deaths were real OOM kills: SIGKILL, and the cgroup's own `oom_kill`
//!   count rose by one per death;
//! * with the default [`OomConfig`] (near 0.9 of the limit, drop to 0.2 of it)
//!   `oom_kill` finds every kill, at the first sample near zero after the last
//!   one near the limit, with that sample as the peak, dated within a sample
//!   interval or two of the moment the supervisor saw the child die, and
//!   `restarted`;
//! * it finds nothing in the trace cut at the last sample before the first kill.
//!
//! **How a drop is sampled.** The kernel takes 5–10 ms here to free a killed
//! child's memory, and the supervisor can reap the child only after that. So a
//! 20 ms sampler sees one of three shapes (measured over 260 kills):
//!
//! * *clean* (~77 %): near the limit, then near zero at the first sample after
//!   the reap, which also counts the restart: `restarted` is true;
//! * *early* (~5 %): memory already freed but the child not yet reaped: the
//!   drop is found one sample earlier, and the restart is counted one sample
//!   after it, which `oom_kill` sees only if that sample is no more than one
//!   interval after the drop (`restarted` is false when it came 1 ms later);
//! * *torn* (~18 %): a sample caught the memory half freed (e.g. 63 → 27 →
//!   0.2 MiB). The detector accepts a fall over up to `DROP_SPAN` samples, so
//!   it finds these too (before it did, it missed about one real kill in five).
//!
//! The supervisor restarts the child until two kills were clean (at most 8
//! kills, ~6 s); it usually takes 2 or 3 kills, 1.7–2.5 s.
//!
//! The child is this test binary itself, re-run with `HEADROOM_OOM_TEST_CHILD`
//! naming the cgroup; it allocates only after checking it is in that cgroup,
//! and gives up at 1 GiB. It needs root and a writable cgroup filesystem (v1,
//! as on the development machine, or v2). Without them the test fails and says
//! why; `HEADROOM_SKIP_CGROUP_TESTS=1` skips it. What was seen is printed:
//!
//! ```text
//! cargo nextest run --workspace -E 'binary(oom_cgroup)' --no-capture
//! ```

use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use headroom_actuate::cgroup::{CgroupParent, MemoryCgroup};
use headroom_core::{SeriesData, SeriesKey};
use headroom_remediate::detect::{self, OomConfig};

/// The cgroup's memory limit.
const LIMIT: u64 = 64 << 20;
const MIB: f64 = (1u64 << 20) as f64;
/// The child allocates and touches `STEP` bytes every `STEP_EVERY`: 100 MiB/s,
/// so it reaches the limit in about 0.7 s and moves ~2 MiB between two
/// samples, well within the top tenth of the limit (6.4 MiB).
const STEP: usize = 1 << 20;
const STEP_EVERY: Duration = Duration::from_millis(10);
/// The child stops (exits with code 4) if it was not killed by then: it is not limited.
const CHILD_CAP: usize = 1 << 30;
const SAMPLE_EVERY: Duration = Duration::from_millis(20);
/// The supervisor stops once this many kills were sampled cleanly (a one-step drop) …
const CLEAN_KILLS: usize = 2;
/// … or after this many kills in all.
const MAX_KILLS: usize = 8;
/// How long the last child runs after its restart before the supervisor stops.
const TAIL: Duration = Duration::from_millis(200);
/// The whole trace must be done by then (it takes 1.7–2.5 s, at most ~6 s).
const DEADLINE: Duration = Duration::from_secs(15);

const CHILD_ENV: &str = "HEADROOM_OOM_TEST_CHILD";
const SKIP_ENV: &str = "HEADROOM_SKIP_CGROUP_TESTS";
/// The name of the test below: the child re-runs this binary with `--exact TEST`.
const TEST: &str = "a_real_oom_kill_in_a_memory_cgroup_is_found_in_its_memory_trace";

#[test]
fn a_real_oom_kill_in_a_memory_cgroup_is_found_in_its_memory_trace() {
    if let Some(cgroup) = std::env::var_os(CHILD_ENV) {
        allocate_until_killed(&cgroup.to_string_lossy());
    }
    if std::env::var(SKIP_ENV).is_ok_and(|v| v == "1") {
        println!("skipped: {SKIP_ENV}=1");
        return;
    }
    let cg = Cgroup::create(LIMIT).unwrap_or_else(|why| {
        panic!(
            "cannot set up a memory cgroup for the OOM test: {why}\n\
             This test needs root and a writable cgroup filesystem (v1 memory controller, or v2 with \
             `memory` delegated). Set {SKIP_ENV}=1 to skip it where there is none."
        )
    });
    let oom_kills_before = cg.oom_kills();
    let started = Instant::now();
    let trace = supervise(&cg);
    let took = started.elapsed();
    let oom_kills = cg.oom_kills() - oom_kills_before;

    let limit = LIMIT as f64;
    let cfg = OomConfig::default();
    let (ts, values) = (&trace.memory.ts, &trace.memory.values);
    let t0 = ts[0];
    let mut intervals: Vec<i64> = ts.windows(2).map(|w| w[1] - w[0]).collect();
    intervals.sort_unstable();
    println!(
        "{}, limit {:.0} MiB: {} samples over {} ms in {took:.2?} (interval median {} ms, max {} ms), \
         highest {:.1} MiB; {} deaths, {} restarts, cgroup oom_kill +{oom_kills}",
        cg.dir().display(),
        limit / MIB,
        ts.len(),
        ts[ts.len() - 1] - t0,
        intervals[intervals.len() / 2],
        intervals[intervals.len() - 1],
        values.iter().copied().fold(0.0, f64::max) / MIB,
        trace.deaths.len(),
        trace.restarts.values[ts.len() - 1],
    );

    // The deaths were the kernel's OOM kills, not anything else.
    for death in &trace.deaths {
        assert_eq!(death.status.signal(), Some(9), "the child died otherwise than by SIGKILL: {:?}", death.status);
    }
    assert_eq!(oom_kills, trace.deaths.len() as u64, "the cgroup's oom_kill count rose by {oom_kills}\n{trace}");
    let clean = trace.deaths.iter().filter(|d| d.drop == Sampled::Clean).count();
    assert!(clean >= 1, "none of {} kills was sampled cleanly\n{trace}", trace.deaths.len());

    // Cut at the last sample near the limit before the first kill, there is nothing to find.
    let first = &trace.deaths[0];
    assert_eq!(detect::oom_kill(&trace.memory, limit, Some(&trace.restarts), &cfg, ts[first.near]).unwrap(), None);

    // Each kill, in the trace cut half-way up the next climb (the last: the whole trace).
    for (i, death) in trace.deaths.iter().enumerate() {
        let now_ms = trace.deaths.get(i + 1).map_or(ts[ts.len() - 1], |next| (death.at_ms + next.at_ms) / 2);
        let found = detect::oom_kill(&trace.memory, limit, Some(&trace.restarts), &cfg, now_ms).unwrap();
        let shape: Vec<String> = (death.near..=death.sample)
            .map(|j| {
                format!("{:.1} MiB at +{} ms (restarts {})", values[j] / MIB, ts[j] - t0, trace.restarts.values[j])
            })
            .collect();
        println!(
            "kill {} ({:?}): {}; the supervisor saw the child die at +{} ms; detector: {}",
            i + 1,
            death.drop,
            shape.join(" → "),
            death.at_ms - t0,
            found.as_ref().map_or("nothing".to_owned(), |o| format!(
                "peak {:.1} MiB ({:.0} % of the limit), drop at +{} ms, restarted {}",
                o.peak / MIB,
                100.0 * o.peak / limit,
                o.drop_at_ms - t0,
                o.restarted
            )),
        );
        // Found, at the first sample near zero after the last one near the limit.
        let oom = found.unwrap_or_else(|| panic!("kill {} ({:?}) not found\n{trace}", i + 1, death.drop));
        let low = (death.near + 1..values.len()).find(|&k| values[k] <= cfg.drop_to * limit).expect("a drop");
        assert_eq!((oom.drop_at_ms, oom.peak, oom.limit), (ts[low], values[death.near], limit), "{trace}");
        assert!(oom.peak >= cfg.near_limit * limit);
        // The supervisor saw the death within a sample interval or two of the drop.
        let interval = (ts[low] - ts[death.near]) / (low - death.near) as i64;
        assert!(
            (oom.drop_at_ms - death.at_ms).abs() <= 2 * interval.max(ts[death.sample] - ts[low]),
            "kill {} dropped at +{} ms, but the child was seen dying at +{} ms\n{trace}",
            i + 1,
            oom.drop_at_ms - t0,
            death.at_ms - t0
        );
        // The supervisor counts the restart at its first sample after the reap: at most
        // one sample after the drop, within the two intervals the detector allows.
        assert!(oom.restarted, "kill {} ({:?}): restart not seen\n{trace}", i + 1, death.drop);
    }
}

/// How a kill's drop was sampled.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Sampled {
    /// From near the limit (≥ 0.9) to near zero (≤ 0.2) at the first sample
    /// after the supervisor reaped the child, so with the restart counted.
    Clean,
    /// The same drop one sample earlier: the kernel had freed the memory but
    /// the child was not yet reaped, so the restart is counted one sample later.
    Early,
    /// A sample caught the memory half freed: no one-step drop.
    Torn,
}

/// One child death the supervisor saw.
#[derive(Debug)]
struct Death {
    /// When the supervisor reaped it.
    at_ms: i64,
    status: ExitStatus,
    /// The index of the first sample taken after (the one with the restart counted).
    sample: usize,
    /// The index of the last sample before it near the limit (≥ 0.9).
    near: usize,
    drop: Sampled,
}

/// What the supervisor recorded.
struct Trace {
    /// The cgroup's memory usage, bytes.
    memory: SeriesData,
    /// The supervisor's restart counter, sampled with the memory.
    restarts: SeriesData,
    deaths: Vec<Death>,
}

impl std::fmt::Display for Trace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let t0 = self.memory.ts.first().copied().unwrap_or(0);
        for ((t, m), r) in self.memory.ts.iter().zip(&self.memory.values).zip(&self.restarts.values) {
            writeln!(f, "  +{:5} ms {:6.1} MiB restarts {r}", t - t0, m / MIB)?;
        }
        write!(f, "  deaths: {:?}", self.deaths)
    }
}

/// Runs the child in `cg`, restarting it at once each time it dies, until
/// `CLEAN_KILLS` kills were sampled cleanly or there were `MAX_KILLS`; then
/// lets the last one run `TAIL` and stops it. Meanwhile samples the cgroup's
/// memory and the restart counter every `SAMPLE_EVERY`.
///
/// Each round first reaps a dead child (restarting it and counting the
/// restart), then samples: a sample never shows the memory of a child already
/// reaped next to a counter that has not counted its restart yet.
fn supervise(cg: &Cgroup) -> Trace {
    let entity = "proc/oom-test";
    let mut memory = SeriesData::new(SeriesKey::new(entity, "memory").unwrap());
    let mut restarts = SeriesData::new(SeriesKey::new(entity, "restarts").unwrap());
    let mut deaths: Vec<Death> = Vec::new();
    // Real timestamps that never go backwards: the wall clock at the start plus a monotonic clock.
    let start = Instant::now();
    let epoch_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
    let now_ms = || epoch_ms + start.elapsed().as_millis() as i64;
    let limit = LIMIT as f64;

    let mut child = Supervised(Some(spawn(cg)));
    let mut stop_at = None;
    let mut next = Instant::now();
    loop {
        let died = child.try_wait().map(|status| (now_ms(), status));
        if let Some((_, status)) = died {
            assert!(
                status.signal() == Some(9),
                "the child ended with {status:?}, not killed (see its stderr above)\n{}",
                Trace { memory, restarts, deaths }
            );
            // Restart at once. The restarted child needs ~130 ms to reach 0.2 of the
            // limit, so the sample below still shows the drop; a supervisor with a
            // backoff (systemd's RestartSec, Kubernetes' CrashLoopBackOff) would only
            // leave memory at zero longer.
            child.0 = Some(spawn(cg));
        }
        let t = now_ms();
        memory.push(t, cg.usage() as f64);
        restarts.push(t, (deaths.len() + usize::from(died.is_some())) as f64);
        if let Some((at_ms, status)) = died {
            let sample = memory.len() - 1;
            let values = &memory.values;
            let from = deaths.last().map_or(0, |d| d.sample);
            let Some(near) = (from..sample).rev().find(|&j| values[j] >= 0.9 * limit) else {
                panic!(
                    "memory never came near the limit before the child died\n{}",
                    Trace { memory, restarts, deaths }
                );
            };
            let drop = match (values[near + 1] <= 0.2 * limit, near + 1 == sample) {
                (true, true) => Sampled::Clean,
                (true, false) => Sampled::Early,
                (false, _) => Sampled::Torn,
            };
            deaths.push(Death { at_ms, status, sample, near, drop });
            let clean = deaths.iter().filter(|d| d.drop == Sampled::Clean).count();
            if stop_at.is_none() && (clean == CLEAN_KILLS || deaths.len() == MAX_KILLS) {
                stop_at = Some(Instant::now() + TAIL);
            }
        }
        if stop_at.is_some_and(|s| Instant::now() >= s) {
            break;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "the supervisor was not done within {DEADLINE:?}\n{}",
            Trace { memory, restarts, deaths }
        );
        next += SAMPLE_EVERY;
        match next.checked_duration_since(Instant::now()) {
            Some(wait) => thread::sleep(wait),
            // Behind (a busy machine): sample again soon, in a later millisecond.
            None => {
                next = Instant::now();
                thread::sleep(Duration::from_millis(1));
            }
        }
    }
    drop(child); // stops the last child
    Trace { memory, restarts, deaths }
}

/// Starts the allocating child in `cg`: a shell that moves itself into the
/// cgroup, then execs this test binary in child mode, so nothing is
/// allocated outside the limit.
fn spawn(cg: &Cgroup) -> Child {
    let exe = std::env::current_exe().unwrap();
    Command::new("sh")
        .args(["-c", r#"echo $$ > "$0" && exec "$@""#])
        .arg(cg.dir().join("cgroup.procs"))
        .arg(exe)
        .args(["--exact", TEST, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, cg.dir().file_name().unwrap())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start sh: {e}"))
}

/// The child: checks it is in the cgroup named `cgroup`, then allocates and
/// touches memory steadily until it is killed. Never returns.
fn allocate_until_killed(cgroup: &str) -> ! {
    let own = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    if !own.lines().any(|line| line.ends_with(&format!("/{cgroup}"))) {
        eprintln!("oom child: not in the cgroup {cgroup}, not allocating; /proc/self/cgroup:\n{own}");
        std::process::exit(3);
    }
    let mut held: Vec<Vec<u8>> = Vec::new();
    while held.len() * STEP < CHILD_CAP {
        held.push(vec![0xa5; STEP]); // written, so every page is really there (not the shared zero page)
        std::hint::black_box(&held);
        thread::sleep(STEP_EVERY);
    }
    eprintln!("oom child: allocated {} MiB without being killed", CHILD_CAP >> 20);
    std::process::exit(4);
}

/// The running child; dropping it kills it (by its pid) and reaps it.
struct Supervised(Option<Child>);

impl Supervised {
    fn try_wait(&mut self) -> Option<ExitStatus> {
        let status = self.0.as_mut()?.try_wait().expect("waiting for the child")?;
        self.0 = None;
        Some(status)
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A memory cgroup made for this test (`headroom-oom-<pid>` under our own one)
/// by headroom's own cgroup code (the process supervisor's); dropping it removes it.
struct Cgroup(MemoryCgroup);

impl Cgroup {
    /// Creates the cgroup under the one this process is in, with a memory limit
    /// and no swap. The error says what failed.
    fn create(limit: u64) -> Result<Self, String> {
        let parent = CgroupParent::find(None)?;
        MemoryCgroup::create(&parent, &format!("headroom-oom-{}", std::process::id()), limit).map(Cgroup)
    }

    fn dir(&self) -> &Path {
        self.0.dir()
    }

    /// Memory charged to the cgroup now, bytes.
    fn usage(&self) -> u64 {
        self.0.usage().unwrap_or_else(|| panic!("reading the memory usage of {}", self.dir().display()))
    }

    /// How many processes the kernel's OOM killer has killed in the cgroup.
    fn oom_kills(&self) -> u64 {
        self.0
            .oom_kills()
            .unwrap_or_else(|| panic!("no oom_kill count in {} (a kernel older than 4.13?)", self.dir().display()))
    }
}
