//! The process supervisor and its actuator, with real child processes.
//!
//! The commands under test are small real programs (`sleep`, `sh -c …`, and
//! this test binary re-run as a memory hog); the supervisor itself never uses
//! a shell. Each test checks what a user would see: pids that exist (or no
//! longer do) in /proc, files a child wrote, the events and counters the
//! supervisor reports. The OOM test needs root and a writable cgroup
//! filesystem; it fails and says why unless `HEADROOM_SKIP_CGROUP_TESTS=1`.
//!
//! ```text
//! cargo nextest run --workspace -E 'binary(process)' --no-capture
//! ```

use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use headroom_actuate::Actuator;
use headroom_actuate::process::{Backoff, Event, EventKind, Phase, ProcessActuator, ProcessSpec, Supervisor};
use headroom_core::Span;
use headroom_core::{Action, Decision};
use headroom_remediate::config::{Platform, StartLimit, Target};
use headroom_remediate::detect::{self, RestartLoopConfig};
use headroom_testing::fixtures;
use tokio::sync::watch;

const SKIP_ENV: &str = "HEADROOM_SKIP_CGROUP_TESTS";
const OOM_CHILD_ENV: &str = "HEADROOM_PROCESS_TEST_OOM_CHILD";
/// The OOM test's name: its child re-runs this binary with `--exact OOM_TEST`.
const OOM_TEST: &str = "a_child_over_its_memory_limit_is_reported_as_oom_killed";

fn ms(n: i64) -> Span {
    Span::from_ms(n)
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

fn target(name: &str) -> Target {
    Target::new(name, Platform::Process, &format!("proc/{name}"), "cpu")
}

fn decision(target: &Target, action: Action, window_start_ms: i64) -> Decision {
    fixtures::decision(&target.name, &target.entity, action).window(window_start_ms).decided_at(window_start_ms).build()
}

async fn start(specs: Vec<ProcessSpec>) -> (Arc<Supervisor>, watch::Sender<bool>) {
    let (tx, rx) = watch::channel(false);
    (Arc::new(Supervisor::start(specs, rx).await.expect("starting the supervisor")), tx)
}

/// Polls `check` every 10 ms until it answers, or fails saying what was awaited.
async fn until<T>(what: &str, within: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(found) = check() {
            return found;
        }
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The process's state letter in /proc (`R`, `S`, `Z`…), None when there is no such process.
fn proc_state(pid: u32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ").and_then(|(_, rest)| rest.chars().next())
}

/// The process's group, from /proc.
fn proc_group(pid: u32) -> Option<u32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ")?.1.split_whitespace().nth(2)?.parse().ok()
}

fn proc_comm(pid: u32) -> String {
    fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default().trim().to_owned()
}

/// Every process in group `pgrp`.
fn group_members(pgrp: u32) -> Vec<u32> {
    let Ok(dir) = fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| proc_group(*pid) == Some(pgrp) && proc_state(*pid) != Some('Z'))
        .collect()
}

fn kinds(events: &[Event], process: &str) -> Vec<EventKind> {
    events.iter().filter(|e| e.process == process).map(|e| e.kind.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_that_exits_at_once_is_restarted_with_growing_gaps_until_its_start_limit_fails_it() {
    let mut spec = ProcessSpec::new("crashy", &["sh", "-c", "exit 3"]);
    spec.restart_backoff = Backoff { initial: ms(100), max: ms(2000) };
    spec.start_limit = StartLimit { burst: 4, interval: ms(30_000) };
    let (sup, _tx) = start(vec![spec]).await;
    let act = ProcessActuator::new(sup.clone());
    let t = target("crashy");

    until("the start limit hit", Duration::from_secs(10), || {
        sup.events().iter().any(|e| e.kind == EventKind::StartLimitHit).then_some(())
    })
    .await;
    let events = sup.events();
    let starts: Vec<i64> =
        events.iter().filter(|e| matches!(e.kind, EventKind::Started { .. })).map(|e| e.at_ms).collect();
    let waits: Vec<u64> = events
        .iter()
        .filter_map(|e| match e.kind {
            EventKind::Restarting { after_ms } => Some(after_ms),
            _ => None,
        })
        .collect();
    let gaps: Vec<i64> = starts.windows(2).map(|w| w[1] - w[0]).collect();
    let hit_at = events.iter().find(|e| e.kind == EventKind::StartLimitHit).unwrap().at_ms;
    println!(
        "starts {:?} ms apart, waits {waits:?} ms, limit hit {} ms after the last start",
        gaps,
        hit_at - starts[3]
    );

    // Four starts (the burst), each exit seen with its code, each followed by a doubled wait.
    assert_eq!(starts.len(), 4, "{events:#?}");
    assert_eq!(kinds(&events, "crashy").iter().filter(|k| **k == EventKind::Exited { code: 3 }).count(), 4);
    assert_eq!(waits, vec![100, 200, 400, 800]);
    for (gap, wait) in gaps.iter().zip(&waits) {
        assert!(*gap >= *wait as i64 - 2, "started again {gap} ms after the last start, before the {wait} ms wait");
        assert!(*gap < *wait as i64 + 600, "started again only {gap} ms after the last start ({wait} ms wait)");
    }
    assert!(gaps.windows(2).all(|g| g[1] > g[0]), "gaps do not grow: {gaps:?}");
    // The fifth start, due after the 800 ms wait, is refused: failed, and nothing more starts.
    assert!(hit_at - starts[3] >= 800 - 2, "limit hit {} ms after the last start", hit_at - starts[3]);
    assert_eq!(events.last().unwrap().kind, EventKind::StartLimitHit, "{events:#?}");
    let status = sup.status("crashy").unwrap();
    assert_eq!((status.state(), status.restarts, status.live()), ("failed", 4, 0));
    assert_eq!(status.instances[0].phase, Phase::Failed);

    // What the engine sees: the platform's state and counter, and a restart loop in the samples.
    let observed = act.observe(&t).await.unwrap();
    assert_eq!(observed.state.as_deref(), Some("failed"));
    assert_eq!((observed.replicas, observed.restarts), (Some(0), Some(4)));
    assert_eq!(observed.start_limit, Some(StartLimit { burst: 4, interval: ms(30_000) }));
    let series = sup.restart_series("crashy").unwrap();
    assert_eq!(series.key.entity, "proc/crashy");
    let found = detect::restart_loop(&series, &RestartLoopConfig::default(), now_ms()).unwrap();
    assert_eq!(found.map(|l| l.restarts), Some(4), "{series:?}");

    // Like systemd, an asked-for start within the interval is refused too.
    let err = act.apply(&t, &decision(&t, Action::Restart, 1)).await.unwrap_err().to_string();
    assert!(err.contains("start limit"), "{err}");
    sup.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_1_to_3_to_1_starts_and_stops_real_processes() {
    let spec = ProcessSpec::new("sleeper", &["sleep", "30"]);
    let (sup, _tx) = start(vec![spec]).await;
    let act = ProcessActuator::new(sup.clone());
    let t = target("sleeper");
    let first = sup.status("sleeper").unwrap().pids();
    assert_eq!(first.len(), 1);

    let up = act.apply(&t, &decision(&t, Action::ScaleTo { replicas: 3 }, 1)).await.unwrap();
    assert!(up.changed, "{up:?}");
    let pids = sup.status("sleeper").unwrap().pids();
    assert_eq!(pids.len(), 3);
    assert_eq!(pids[0], first[0], "instance 0 kept running");
    for (i, pid) in pids.iter().enumerate() {
        // The spawn returns as soon as the child has begun its exec; /proc shows the new
        // program a moment later.
        let want = format!("HEADROOM_INSTANCE={i}");
        until(&format!("pid {pid} running sleep with {want}"), Duration::from_secs(2), || {
            let environ = fs::read(format!("/proc/{pid}/environ")).ok()?;
            (proc_comm(*pid) == "sleep" && environ.split(|b| *b == 0).any(|v| v == want.as_bytes())).then_some(())
        })
        .await;
        assert!(matches!(proc_state(*pid), Some('S' | 'R')), "pid {pid}: {:?}", proc_state(*pid));
        assert_eq!(proc_group(*pid), Some(*pid), "each instance leads its own process group");
    }
    let observed = act.observe(&t).await.unwrap();
    assert_eq!((observed.replicas, observed.state.as_deref()), (Some(3), Some("running")));

    let began = Instant::now();
    let down = act.apply(&t, &decision(&t, Action::ScaleTo { replicas: 1 }, 2)).await.unwrap();
    let took = began.elapsed();
    assert!(down.changed, "{down:?}");
    assert_eq!(sup.status("sleeper").unwrap().pids(), vec![pids[0]], "the highest numbers go first");
    for pid in &pids[1..] {
        assert!(!Path::new(&format!("/proc/{pid}")).exists(), "pid {pid} still in /proc after the scale-in");
    }
    // sleep dies of SIGTERM at once: no wait for the 10 s stop timeout.
    assert!(took < Duration::from_secs(3), "scale-in took {took:?}");
    let stopped: Vec<(u32, EventKind)> = sup
        .events()
        .into_iter()
        .filter(|e| matches!(e.kind, EventKind::Killed { .. } | EventKind::Stopped))
        .map(|e| (e.instance, e.kind))
        .collect();
    for i in [1, 2] {
        assert!(stopped.contains(&(i, EventKind::Killed { signal: 15 })), "{stopped:?}");
        assert!(stopped.contains(&(i, EventKind::Stopped)), "{stopped:?}");
    }
    println!("scale 1 → 3 → 1: pids {pids:?}; scale-in took {took:?}");

    // Another decision to the count already there changes nothing.
    let same = act.apply(&t, &decision(&t, Action::ScaleTo { replicas: 1 }, 3)).await.unwrap();
    assert!(!same.changed, "{same:?}");
    assert_eq!(sup.status("sleeper").unwrap().pids(), vec![pids[0]]);

    sup.shutdown().await;
    assert!(!Path::new(&format!("/proc/{}", pids[0])).exists(), "shutdown left pid {}", pids[0]);
    assert!(sup.scale("sleeper", 2).await.unwrap_err().to_string().contains("shut down"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_sends_sigterm_and_sigkills_a_child_that_ignores_it_after_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str| dir.path().join(name);
    // Each child says when its trap is set, so SIGTERM cannot come before it.
    let mut polite = ProcessSpec::new(
        "polite",
        &["sh", "-c", r#"trap 'echo bye > "$OUT"; exit 0' TERM; : > "$READY"; while :; do sleep 0.05; done"#],
    );
    polite.env.insert("OUT".into(), file("bye").display().to_string());
    polite.env.insert("READY".into(), file("polite.ready").display().to_string());
    polite.stop_timeout = ms(3000);
    let mut stubborn =
        ProcessSpec::new("stubborn", &["sh", "-c", r#"trap '' TERM; : > "$READY"; while :; do sleep 0.05; done"#]);
    stubborn.env.insert("READY".into(), file("stubborn.ready").display().to_string());
    stubborn.stop_timeout = ms(700);
    let (sup, cancel) = start(vec![polite, stubborn]).await;
    let pids = [sup.status("polite").unwrap().pids()[0], sup.status("stubborn").unwrap().pids()[0]];
    until("both traps set", Duration::from_secs(5), || {
        (file("polite.ready").exists() && file("stubborn.ready").exists()).then_some(())
    })
    .await;

    // Cancelled through its shutdown channel, as the daemon does on SIGTERM.
    let began = Instant::now();
    let cancelled_at = now_ms();
    cancel.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(10), sup.join()).await.expect("the supervisor did not stop");
    let took = began.elapsed();
    let events = sup.events();
    let ended = |process: &str| {
        events
            .iter()
            .find(|e| e.process == process && matches!(e.kind, EventKind::Exited { .. } | EventKind::Killed { .. }))
            .map(|e| (e.kind.clone(), e.at_ms - cancelled_at))
            .unwrap_or_else(|| panic!("{process} never ended: {events:#?}"))
    };
    let (polite_end, polite_after) = ended("polite");
    let (stubborn_end, stubborn_after) = ended("stubborn");
    println!(
        "shutdown took {took:?}: polite {polite_end:?} after {polite_after} ms, stubborn {stubborn_end:?} after {stubborn_after} ms"
    );

    // The polite child ran its trap and exited by itself, well before any timeout.
    assert_eq!(fs::read_to_string(file("bye")).unwrap(), "bye\n");
    assert_eq!(polite_end, EventKind::Exited { code: 0 });
    assert!(polite_after < 700, "the polite child took {polite_after} ms");
    // The stubborn one was SIGKILLed once its 700 ms were up (and not much later).
    assert_eq!(stubborn_end, EventKind::Killed { signal: 9 });
    assert!((700..2500).contains(&stubborn_after), "SIGKILL after {stubborn_after} ms");
    for name in ["polite", "stubborn"] {
        assert_eq!(kinds(&events, name).last(), Some(&EventKind::Stopped));
        assert_eq!(sup.status(name).unwrap().state(), "stopped");
    }
    // Nothing is left: neither the shells nor their `sleep`s. The shells were
    // reaped by the supervisor; a `sleep` SIGKILLed with its group dies when
    // the kernel next schedules it and is reaped by init, so it is given a
    // moment (a survivor would still be there after it).
    for pid in pids {
        assert!(!Path::new(&format!("/proc/{pid}")).exists(), "pid {pid} is still in /proc");
        until(&format!("group {pid} empty"), Duration::from_secs(3), || group_members(pid).is_empty().then_some(()))
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_supervisor_kills_its_children() {
    let mut spec = ProcessSpec::new("dropped", &["sh", "-c", "sleep 30 & sleep 30"]);
    spec.instances = 2;
    let (sup, _tx) = start(vec![spec]).await;
    let pids = sup.status("dropped").unwrap().pids();
    assert_eq!(pids.len(), 2);
    // Wait for each shell's two sleeps, so the whole group is there to be killed.
    until("the sleeps started", Duration::from_secs(5), || {
        pids.iter().all(|p| group_members(*p).len() == 3).then_some(())
    })
    .await;
    let began = Instant::now();
    drop(sup);
    until("every child gone", Duration::from_secs(3), || {
        pids.iter().all(|p| group_members(*p).is_empty()).then_some(())
    })
    .await;
    println!("children of a dropped supervisor gone after {:?}", began.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applying_the_same_decision_twice_acts_once() {
    let mut spec = ProcessSpec::new("twice", &["sleep", "30"]);
    spec.instances = 2;
    let (sup, _tx) = start(vec![spec]).await;
    let act = ProcessActuator::new(sup.clone());
    let t = target("twice");
    let before = sup.status("twice").unwrap().pids();

    let restart = decision(&t, Action::Restart, 1);
    let first = act.apply(&t, &restart).await.unwrap();
    assert!(first.changed, "{first:?}");
    let after = sup.status("twice").unwrap().pids();
    assert_eq!(after.len(), 2);
    assert!(after.iter().all(|p| !before.contains(p)), "not every instance restarted: {before:?} → {after:?}");
    for pid in &before {
        assert!(!Path::new(&format!("/proc/{pid}")).exists(), "old pid {pid} still in /proc");
    }
    let count = sup.events().len();
    let again = act.apply(&t, &restart).await.unwrap();
    assert!(!again.changed, "{again:?}");
    assert_eq!(sup.status("twice").unwrap().pids(), after, "the second apply restarted something");
    assert_eq!(sup.events().len(), count, "the second apply did something");
    assert!(act.plan(&t, &restart).await.unwrap().contains("already applied"));
    // An asked-for restart is not an automatic one: the counter stays (like systemd's NRestarts).
    assert_eq!(sup.status("twice").unwrap().restarts, 0);

    let scale = decision(&t, Action::ScaleTo { replicas: 3 }, 2);
    assert!(act.apply(&t, &scale).await.unwrap().changed);
    sup.scale("twice", 2).await.unwrap(); // someone else scaled back in
    assert!(!act.apply(&t, &scale).await.unwrap().changed, "the same decision applied again");
    assert_eq!(sup.status("twice").unwrap().instances.len(), 2);
    sup.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arguments_reach_the_child_verbatim_and_its_output_is_appended() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.log");
    fs::write(&out, "before\n").unwrap();
    let literal = "a b;$HOME *";
    let mut spec = ProcessSpec::new(
        "echo",
        &["sh", "-c", r#"printf '%s|%s|%s|' "$1" "$GREETING" "$HEADROOM_INSTANCE"; pwd -P"#, "sh", literal],
    );
    spec.env.insert("GREETING".into(), "hello".into());
    spec.cwd = Some(dir.path().to_owned());
    spec.stdout = Some(out.clone());
    spec.restart_backoff = Backoff { initial: ms(50), max: ms(50) };
    spec.start_limit = StartLimit { burst: 2, interval: ms(30_000) };
    let (sup, _tx) = start(vec![spec]).await;
    until("the start limit hit", Duration::from_secs(5), || {
        sup.events().iter().any(|e| e.kind == EventKind::StartLimitHit).then_some(())
    })
    .await;
    let cwd = dir.path().canonicalize().unwrap();
    let line = format!("{literal}|hello|0|{}\n", cwd.display());
    assert_eq!(fs::read_to_string(&out).unwrap(), format!("before\n{line}{line}"));
    sup.shutdown().await;
}

/// The OOM child: waits until the supervisor has moved it into its cgroup,
/// then allocates and touches 1 MiB every 5 ms until it is killed. Never returns.
fn allocate_until_killed() -> ! {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !fs::read_to_string("/proc/self/cgroup").unwrap_or_default().contains("/headroom-oomy-") {
        if Instant::now() > deadline {
            eprintln!("oom child: never moved into its cgroup; not allocating");
            std::process::exit(3);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut held: Vec<Vec<u8>> = Vec::new();
    while held.len() < 1024 {
        held.push(vec![0xa5; 1 << 20]);
        std::hint::black_box(&held);
        std::thread::sleep(Duration::from_millis(5));
    }
    eprintln!("oom child: allocated 1 GiB without being killed");
    std::process::exit(4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_over_its_memory_limit_is_reported_as_oom_killed() {
    if std::env::var_os(OOM_CHILD_ENV).is_some() {
        allocate_until_killed();
    }
    if std::env::var(SKIP_ENV).is_ok_and(|v| v == "1") {
        println!("skipped: {SKIP_ENV}=1");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap().display().to_string();
    let mut spec = ProcessSpec::new("oomy", &[&exe, "--exact", OOM_TEST, "--nocapture", "--test-threads=1"]);
    spec.env.insert(OOM_CHILD_ENV.into(), "1".into());
    spec.memory_limit_bytes = Some(64 << 20);
    spec.stdout = Some(dir.path().join("out.log"));
    spec.stderr = Some(dir.path().join("err.log"));
    spec.restart_backoff = Backoff { initial: ms(200), max: ms(200) };
    spec.start_limit = StartLimit { burst: 3, interval: ms(60_000) };
    let (tx, rx) = watch::channel(false);
    let sup = Supervisor::start(vec![spec], rx).await.unwrap_or_else(|e| {
        panic!(
            "cannot run a process under a memory limit: {e}\nThis test needs root and a writable cgroup \
             filesystem (v1 memory controller, or v2 with `memory` delegated). Set {SKIP_ENV}=1 to skip it where there is none."
        )
    });
    let cgroup = sup.status("oomy").unwrap().instances[0].cgroup.clone().expect("an instance cgroup");
    assert!(cgroup.join("cgroup.procs").is_file(), "{} is not a cgroup", cgroup.display());
    let began = Instant::now();
    let stderr = || fs::read_to_string(dir.path().join("err.log")).unwrap_or_default();
    until("an OOM kill and the restart after it", Duration::from_secs(15), || {
        let events = kinds(&sup.events(), "oomy");
        let at = events.iter().position(|k| *k == EventKind::OomKilled)?;
        assert!(!events.contains(&EventKind::Exited { code: 3 }), "the child never got into its cgroup: {}", stderr());
        events[at..].iter().any(|k| matches!(k, EventKind::Started { .. })).then_some(())
    })
    .await;
    let took = began.elapsed();
    let events = kinds(&sup.events(), "oomy");
    println!("{}: {events:?} in {took:?}", cgroup.display());
    let at = events.iter().position(|k| *k == EventKind::OomKilled).unwrap();
    assert!(matches!(events[at - 1], EventKind::Started { .. }), "{events:?}");
    assert_eq!(events[at + 1], EventKind::Restarting { after_ms: 200 }, "{events:?}");
    let status = sup.status("oomy").unwrap();
    assert!(status.restarts >= 1);
    assert_eq!(sup.restart_series("oomy").unwrap().values.last(), Some(&(status.restarts as f64)));

    tx.send(true).unwrap();
    sup.join().await;
    assert!(!cgroup.exists(), "{} was not removed", cgroup.display());
    assert_eq!(kinds(&sup.events(), "oomy").last(), Some(&EventKind::Stopped));
}
