//! The systemd actuator against a real systemd: each test boots one with
//! `scripts/testing/systemd-sandbox.sh`, talks to it over
//! D-Bus through [`SystemdActuator`], and cross-checks what it reads with
//! the sandbox's own `systemctl show` / `systemctl list-units`.
//!
//! Needs root. Without it the tests fail with the reason, unless
//! `HEADROOM_SKIP_SYSTEMD_TESTS=1`, which turns them into no-ops.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use headroom_actuate::Actuator;
use headroom_actuate::systemd::{SystemdActuator, UnitName};
use headroom_core::Span;
use headroom_core::{Action, Decision, Mode, SeriesData, SeriesKey, Verdict};
use headroom_remediate::config::{Config, Global, Platform, SYSTEMD_START_LIMIT, StartLimit, Target};
use headroom_remediate::detect::{DetectConfig, restart_loop};
use headroom_remediate::state::Outcome;
use headroom_remediate::{PastAction, Risk, TargetState, plan};
use headroom_testing::fixtures;
use headroom_testing::systemd::Sandbox;

const CHILD: &str = "HEADROOM_SYSTEMD_CHILD";

/// A service that runs until stopped, and comes back at once when killed.
const DEMO: &str = "[Service]\nExecStart=/bin/sleep infinity\nRestart=always\nRestartSec=100ms\n";

/// A real systemd (`headroom_testing::systemd`), with what these tests read from it.
struct Systemd(Sandbox);

impl Systemd {
    /// Boots a sandbox with `units` written to its `/run/systemd/system`,
    /// and an actuator on its bus that has read them; or `None` when it
    /// cannot boot and `HEADROOM_SKIP_SYSTEMD_TESTS=1`.
    async fn boot(units: &[(&str, &str)]) -> Option<(Systemd, SystemdActuator)> {
        let sandbox = Systemd(Sandbox::boot(&[])?);
        for (name, text) in units {
            std::fs::write(sandbox.0.state().join("run/systemd/system").join(name), text).unwrap();
        }
        let actuator = SystemdActuator::at(&sandbox.address()).await.unwrap().with_timeout(Duration::from_secs(20));
        actuator.reload().await.unwrap();
        Some((sandbox, actuator))
    }

    fn address(&self) -> String {
        self.0.bus_address()
    }

    fn exec(&self, args: &[&str]) -> String {
        self.0.run(args)
    }

    /// `systemctl show -p PROPERTY --value UNIT`, as systemd's own client reads it.
    fn show(&self, unit: &str, property: &str) -> String {
        self.exec(&["systemctl", "show", "-p", property, "--value", unit])
    }

    /// The active units matching `pattern`, by `systemctl list-units`.
    fn active_units(&self, pattern: &str) -> Vec<String> {
        let out = self.exec(&["systemctl", "list-units", pattern, "--state=active", "--no-legend", "--plain"]);
        let mut units: Vec<String> =
            out.lines().filter_map(|l| l.split_whitespace().next()).map(str::to_owned).collect();
        units.sort();
        units
    }
}

fn unit(name: &str) -> UnitName {
    UnitName::parse(name).unwrap()
}

fn target(name: &str, unit: &str) -> Target {
    let mut t = Target::new(name, Platform::Systemd, &format!("systemd/{unit}"), "cpu");
    t.mode = Mode::Enforce;
    t
}

fn decision(target: &Target, action: Action, id: &str) -> Decision {
    fixtures::decision(&target.name, &target.entity, action).id(id).build()
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

#[tokio::test]
async fn a_restart_replaces_the_main_process_without_counting_as_a_restart() {
    let started = Instant::now();
    let Some((sandbox, actuator)) = Systemd::boot(&[("demo.service", DEMO)]).await else { return };
    let demo = unit("demo.service");
    let t = target("demo", "demo.service");
    actuator.start_unit(&demo).await.unwrap();

    let observed = actuator.observe(&t).await.unwrap();
    assert_eq!(observed.state.as_deref(), Some("active/running"), "{observed:?}");
    assert_eq!(observed.restarts, Some(0));
    assert_eq!(observed.replicas, None, "a plain unit is one instance, not a count");
    assert_eq!(observed.start_limit, Some(SYSTEMD_START_LIMIT), "systemd's defaults: 5 starts in 10 s");
    let first = actuator.status(&demo).await.unwrap();
    assert_eq!(sandbox.show("demo.service", "MainPID"), first.main_pid.unwrap().to_string());

    // A crash: Restart=always brings it back, and NRestarts counts it.
    sandbox.exec(&["kill", "-9", &first.main_pid.unwrap().to_string()]);
    let deadline = Instant::now() + Duration::from_secs(10);
    let crashed = loop {
        let s = actuator.status(&demo).await.unwrap();
        if s.n_restarts == Some(1) && s.state() == "active/running" {
            break s;
        }
        assert!(Instant::now() < deadline, "no automatic restart after a kill: {s:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_ne!(crashed.main_pid, first.main_pid);
    assert_eq!(sandbox.show("demo.service", "NRestarts"), "1");

    // headroom's restart: a new main process, started later; NRestarts does not
    // count manual restarts, and real systemd even resets it to 0.
    let applied = actuator.apply(&t, &decision(&t, Action::Restart, "restart-1")).await.unwrap();
    assert!(applied.changed, "{applied:?}");
    assert!(applied.detail.contains("RestartUnit demo.service"), "{}", applied.detail);
    let restarted = actuator.status(&demo).await.unwrap();
    assert_eq!(restarted.state(), "active/running");
    assert_ne!(restarted.main_pid, crashed.main_pid);
    assert!(restarted.exec_main_start_us > crashed.exec_main_start_us, "{restarted:?} vs {crashed:?}");
    assert_eq!(restarted.n_restarts, Some(0), "a manual restart flushes NRestarts");
    assert_eq!(restarted.result.as_deref(), Some("success"));
    // What systemctl sees is what the actuator read.
    assert_eq!(sandbox.show("demo.service", "MainPID"), restarted.main_pid.unwrap().to_string());
    assert_eq!(sandbox.show("demo.service", "NRestarts"), "0");
    assert_eq!(sandbox.show("demo.service", "ActiveState"), "active");
    eprintln!("restart test: {:?}", started.elapsed());
}

#[tokio::test]
async fn the_same_decision_applied_twice_restarts_once() {
    let Some((_sandbox, actuator)) = Systemd::boot(&[("demo.service", DEMO)]).await else { return };
    let demo = unit("demo.service");
    let t = target("demo", "demo.service");
    actuator.start_unit(&demo).await.unwrap();
    let d = decision(&t, Action::Restart, "restart-once");
    let plan = actuator.plan(&t, &d).await.unwrap();
    assert!(plan.contains("would RestartUnit demo.service"), "{plan}");
    assert_eq!(actuator.status(&demo).await.unwrap().state(), "active/running", "plan changed nothing");

    let mut starts = vec![actuator.status(&demo).await.unwrap().exec_main_start_us];
    let mut changed = vec![];
    for d in [&d, &d, &decision(&t, Action::Restart, "restart-other")] {
        changed.push(actuator.apply(&t, d).await.unwrap().changed);
        starts.push(actuator.status(&demo).await.unwrap().exec_main_start_us);
    }
    assert_eq!(changed, [true, false, true], "the id decides, not the action");
    assert!(starts[1] > starts[0], "the first apply restarted: {starts:?}");
    assert_eq!(starts[2], starts[1], "the second apply of the same id did nothing: {starts:?}");
    assert!(starts[3] > starts[2], "a new id restarts again: {starts:?}");
}

#[tokio::test]
async fn a_template_scales_one_three_one_by_its_numbered_instances() {
    let started = Instant::now();
    let worker = "[Service]\nExecStart=/bin/sleep infinity\n";
    let Some((sandbox, actuator)) = Systemd::boot(&[("worker@.service", worker), ("demo.service", DEMO)]).await else {
        return;
    };
    let t = target("workers", "worker@.service");
    assert_eq!(actuator.observe(&t).await.unwrap().replicas, Some(0));

    let scale = |n: u32, id: &str| decision(&t, Action::ScaleTo { replicas: n }, id);
    let names = |ns: &[u32]| ns.iter().map(|n| format!("worker@{n}.service")).collect::<Vec<_>>();

    assert!(actuator.apply(&t, &scale(1, "to-1")).await.unwrap().changed);
    assert_eq!(actuator.observe(&t).await.unwrap().replicas, Some(1));
    assert_eq!(sandbox.active_units("worker@*"), names(&[1]));

    let plan = actuator.plan(&t, &scale(3, "to-3")).await.unwrap();
    assert!(plan.contains("StartUnit [worker@2.service, worker@3.service]"), "{plan}");
    let applied = actuator.apply(&t, &scale(3, "to-3")).await.unwrap();
    assert!(applied.changed && applied.detail.contains("1 → 3"), "{applied:?}");
    let observed = actuator.observe(&t).await.unwrap();
    assert_eq!((observed.replicas, observed.state.as_deref()), (Some(3), Some("3 active")), "{observed:?}");
    assert_eq!(sandbox.active_units("worker@*"), names(&[1, 2, 3]));

    let again = actuator.apply(&t, &scale(3, "to-3-again")).await.unwrap();
    assert!(!again.changed, "3 already run: {again:?}");

    assert!(actuator.apply(&t, &scale(1, "back-to-1")).await.unwrap().changed);
    assert_eq!(actuator.observe(&t).await.unwrap().replicas, Some(1));
    assert_eq!(sandbox.active_units("worker@*"), names(&[1]), "the highest numbers were stopped");

    // One unit is one instance: scaling it is refused, and nothing is started.
    let plain = target("demo", "demo.service");
    let err = actuator.apply(&plain, &decision(&plain, Action::ScaleTo { replicas: 2 }, "x")).await.unwrap_err();
    assert!(err.to_string().contains("only a template unit"), "{err}");
    assert_eq!(sandbox.active_units("demo*"), Vec::<String>::new());
    eprintln!("scale test: {:?}", started.elapsed());
}

/// A unit that crashes at once, every 4 s, with `StartLimitBurst=5` in 60 s:
/// left alone, systemd's own restarts stay within the limit until the sixth
/// start (~20 s). headroom samples `NRestarts`, the detector finds the loop,
/// the policy's ladder restarts the unit once, then the start-limit guardrail
/// stops it: one start is left for systemd, and systemd gets it.
///
/// Starts are counted from the unit's own log, the ground truth. A start
/// limit hit shows as `failed` (with `Restart=always` nothing else stops the
/// loop); systemd 252 keeps the last run's `Result=exit-code` then, so
/// `Result=start-limit-hit` alone would not catch it.
#[tokio::test]
async fn a_crash_loop_is_restarted_by_the_policy_and_never_into_the_start_limit() {
    // Each start appends a line to /run/crash-starts (the sandbox's /run is
    // STATE_DIR/run): the ground truth of how many starts systemd counted.
    let crash = "[Unit]\nStartLimitBurst=5\nStartLimitIntervalSec=60s\n\
                 [Service]\nExecStart=/bin/sh -c 'echo start >> /run/crash-starts; exit 1'\n\
                 Restart=always\nRestartSec=4s\n";
    let Some((sandbox, actuator)) = Systemd::boot(&[("crash.service", crash)]).await else { return };
    let crash = unit("crash.service");
    let mut t = target("crash", "crash.service");
    t.backoff = Span(Duration::from_secs(1));
    t.cooldown = Span(Duration::from_secs(1));
    t.max_actions_per_hour = 10;
    let mut cfg = Config { global: Global::default(), detect: DetectConfig::default(), targets: vec![] };
    cfg.detect.restart_loop.restarts = 2;

    let started = Instant::now();
    let t0 = now_ms();
    actuator.start_unit(&crash).await.unwrap();
    let key = SeriesKey::new("systemd/crash.service", "restarts").unwrap();
    let mut samples = SeriesData::new(key);
    // Every start counts against systemd's limit: the first one too, which NRestarts never shows.
    let mut starts = vec![t0];
    let mut history: Vec<PastAction> = vec![];
    let limit = loop {
        assert!(started.elapsed() < Duration::from_secs(40), "no decision within 40 s: {samples:?}");
        let observed = actuator.observe(&t).await.unwrap();
        let now = now_ms();
        let restarts = observed.restarts.expect("a service has NRestarts") as f64;
        if samples.values.last().is_some_and(|&v| v != restarts) {
            starts.push(now); // a rise, or the reset a manual restart makes
        }
        samples.push(now, restarts);
        assert_ne!(observed.state.as_deref(), Some("failed/failed"), "{observed:?}");
        t.start_limit = observed.start_limit;
        cfg.targets = vec![t.clone()];

        let risks: Vec<Risk> =
            restart_loop(&samples, &cfg.detect.restart_loop, now).unwrap().map(Risk::RestartLoop).into_iter().collect();
        let state = TargetState {
            last_sample_ms: Some(now),
            replicas: None,
            recent_starts_ms: starts.clone(),
            history: history.clone(),
            ..TargetState::default()
        };
        let decided = plan(&risks, &BTreeMap::from([(t.name.clone(), state)]), &cfg, now);
        let d = &decided.decisions[0];
        if d.action == Action::Restart {
            let asked = started.elapsed();
            let applied = actuator.apply(&t, d).await.unwrap();
            eprintln!("{asked:?}: asked to restart, done after {:?}: {}", started.elapsed() - asked, applied.detail);
            assert!(applied.changed, "{applied:?}");
            history.push(PastAction::of(d, now, Outcome::Succeeded));
            eprintln!("{:?}: restarted by headroom ({} starts seen): {}", started.elapsed(), starts.len(), d.reason);
        } else if let Some(g) = d.guardrails.iter().find(|g| g.name == "start_limit" && g.verdict == Verdict::Blocked) {
            eprintln!("{:?}: headroom stops: {}", started.elapsed(), g.detail);
            break t.start_limit.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };

    assert_eq!(limit, StartLimit { burst: 5, interval: Span(Duration::from_secs(60)) }, "read from the unit");
    assert_eq!(history.len(), 1, "the ladder's first restart ran, the second was stopped by the start limit");
    let mut status = actuator.status(&crash).await.unwrap();
    assert_ne!(status.result.as_deref(), Some("start-limit-hit"), "{status:?}");
    assert_ne!(status.active_state, "failed", "{status:?}");
    assert_ne!(sandbox.show("crash.service", "Result"), "start-limit-hit");
    // Every start so far lies within systemd's interval (the test is shorter than it).
    let log = sandbox.0.state().join("run/crash-starts");
    let used = std::fs::read_to_string(&log).unwrap().lines().count();
    assert!(used < limit.burst as usize, "{used} starts used: at least one must be left for systemd");

    // The start left for systemd: its next automatic restart happens, and is not refused.
    let n = status.n_restarts.unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while status.n_restarts == Some(n) {
        assert!(Instant::now() < deadline, "systemd did not restart the unit again: {status:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
        status = actuator.status(&crash).await.unwrap();
    }
    assert_ne!(status.result.as_deref(), Some("start-limit-hit"), "{status:?}");
    assert_ne!(status.active_state, "failed", "{status:?}");
    // …and the unit goes on crashing as before, as systemd reports it.
    while status.sub_state != "auto-restart" {
        assert!(Instant::now() < deadline, "not waiting to restart: {status:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
        status = actuator.status(&crash).await.unwrap();
    }
    assert_eq!((status.exec_main_status, status.result.as_deref()), (Some(1), Some("exit-code")), "{status:?}");
    assert_eq!(sandbox.show("crash.service", "ExecMainStatus"), "1");
    eprintln!(
        "crash-loop test: {:?}, {used} of {} starts used by the time headroom stopped",
        started.elapsed(),
        limit.burst
    );
    actuator.stop_unit(&crash).await.unwrap();
}

#[tokio::test]
async fn bad_unit_names_are_refused_before_any_dbus_call() {
    // Nothing listens here: any D-Bus call would fail with a connection error instead.
    let actuator = SystemdActuator::lazy("unix:path=/nonexistent/headroom-test/bus");
    for name in ["../etc/passwd", "foo bar.service", "x", "worker@.servic", "@.service", "a;reboot.service"] {
        let t = target("bad", name);
        let d = decision(&t, Action::Restart, "bad");
        for err in [
            actuator.observe(&t).await.unwrap_err(),
            actuator.plan(&t, &d).await.unwrap_err(),
            actuator.apply(&t, &d).await.unwrap_err(),
        ] {
            let err = err.to_string();
            assert!(err.contains("refused unit name") && err.contains("before any D-Bus call"), "{name}: {err}");
        }
    }
    // A valid name does reach the bus, which proves the address really is dead.
    let good = target("good", "demo.service");
    let err = actuator.observe(&good).await.unwrap_err().to_string();
    assert!(err.contains("could not connect") && err.contains("/nonexistent/headroom-test/bus"), "{err}");
    let err = SystemdActuator::at("unix:path=/nonexistent/headroom-test/bus").await.unwrap_err().to_string();
    assert!(err.contains("could not connect"), "{err}");
}

/// `SystemdActuator::system()` follows `DBUS_SYSTEM_BUS_ADDRESS`: this test
/// binary is run again with it pointing at the sandbox (an environment
/// variable cannot be set safely in a running multi-threaded test).
#[tokio::test]
async fn the_system_bus_is_the_one_dbus_system_bus_address_names() {
    let Some((sandbox, actuator)) = Systemd::boot(&[("demo.service", DEMO)]).await else { return };
    actuator.start_unit(&unit("demo.service")).await.unwrap();
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(&exe)
        .args(["--exact", "system_bus_child", "--ignored", "--nocapture"])
        .env(CHILD, "1")
        .env("DBUS_SYSTEM_BUS_ADDRESS", sandbox.address())
        .output()
        .unwrap_or_else(|e| panic!("cannot run this test binary again ({}): {e}", exe.display()));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && text.contains("1 passed"), "{text}");
    assert!(text.contains("child saw demo.service active/running"), "{text}");
}

#[tokio::test]
#[ignore = "run by the_system_bus_is_the_one_dbus_system_bus_address_names, with DBUS_SYSTEM_BUS_ADDRESS set"]
async fn system_bus_child() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let actuator = SystemdActuator::system().await.unwrap();
    let observed = actuator.observe(&target("demo", "demo.service")).await.unwrap();
    assert_eq!(observed.state.as_deref(), Some("active/running"), "{observed:?}");
    println!("child saw demo.service active/running");
}
