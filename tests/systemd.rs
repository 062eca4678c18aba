//! `headroom run` as a real systemd service: `Type=notify`, in the sandbox of
//! `scripts/testing/systemd-sandbox.sh` (a real systemd and D-Bus as PID 1
//! of a private PID + mount namespace). Readiness, status text and watchdog
//! as systemd sees them; the scale-out of a supervised process; a SIGKILL
//! of the main process restarted by systemd without the action being carried
//! out again; `systemctl stop` as a clean exit with a complete audit log.
//!
//! The sandbox shares the host's network (its HTTP endpoint is reached on
//! loopback from here) and file system, except `/run`, `/tmp` and
//! `/var/tmp`: the daemon's files live under the target directory, seen at
//! the same path on both sides. PIDs systemd shows are the sandbox's own;
//! processes are looked up inside it.
//!
//! Needs root. Without it the test fails with the reason, unless
//! `HEADROOM_SKIP_SYSTEMD_TESTS=1`, which turns it into a no-op.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use headroom_e2e::{Sandbox, WORKER, common_config, files_source, get, headroom_bin, recorded_cpu, wait_for};

const UNIT: &str = "headroom-test.service";
const LIMIT: Duration = Duration::from_secs(60);

/// `systemctl show -p A,B,… UNIT`.
fn show(sandbox: &Sandbox, properties: &[&str]) -> BTreeMap<String, String> {
    sandbox.show(UNIT, properties)
}

/// The PIDs (the sandbox's) of every `sleep` in the sandbox, and of those whose parent is `parent`.
fn sleepers(sandbox: &Sandbox, parent: &str) -> (Vec<String>, Vec<String>) {
    let list = |args: &[&str]| -> Vec<String> {
        let (_, out) = sandbox.exec(args);
        let mut pids: Vec<String> = out.lines().map(str::to_owned).collect();
        pids.sort();
        pids
    };
    (list(&["pgrep", "-x", "sleep"]), list(&["pgrep", "-x", "-P", parent, "sleep"]))
}

/// `text` without its ANSI colour sequences (the daemon colours its log
/// even when it is not written to a terminal).
fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // ESC [ parameters… final byte (@ to ~).
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) && c != '[' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The audit log, one JSON record per line (the format of
/// `headroom_remediate::audit`): intents with their whole decision, outcomes by id.
fn audit(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: an audit line that is not JSON: {l}")))
        .collect()
}

/// The decision id a record is about.
fn record_id(r: &serde_json::Value) -> &str {
    match r["kind"].as_str() {
        Some("intent") => r["decision"]["id"].as_str(),
        _ => r["id"].as_str(),
    }
    .unwrap_or_else(|| panic!("an audit record without a decision id: {r}"))
}

/// The config: the recorded CPU of `proc/worker` as a files source, a
/// supervised `sleep` at one instance, scaled in enforce mode, everything fast.
fn config(d: &Path, port: u16) -> String {
    files_source(&[&d.join("cpu.csv")]) + &common_config(d, port, "") + WORKER
}

/// The service. `KillMode=mixed`: `systemctl stop` sends SIGTERM to
/// headroom alone, whose supervisor stops its children itself (systemd only
/// SIGKILLs what is left once the main process has gone, as after a crash).
/// Each end of the main process is written down as systemd passes it to
/// `ExecStopPost=`: once stopped, systemd unloads the unit, and its
/// properties read as a fresh unit's.
fn unit(d: &Path) -> String {
    format!(
        "[Unit]\n\
         Description=headroom under test\n\
         [Service]\n\
         Type=notify\n\
         NotifyAccess=main\n\
         ExecStart={bin} run --config {d}/headroom.toml --enforce\n\
         WorkingDirectory={d}\n\
         Environment=HEADROOM_LOG=info\n\
         StandardOutput=append:{d}/daemon.log\n\
         StandardError=append:{d}/daemon.log\n\
         Restart=always\n\
         RestartSec=1\n\
         WatchdogSec=10\n\
         TimeoutStopSec=60\n\
         KillMode=mixed\n\
         ExecStopPost=/bin/sh -c 'echo \"$$SERVICE_RESULT $$EXIT_CODE $$EXIT_STATUS\" >> {d}/stops'\n",
        bin = headroom_bin().display(),
        d = d.display(),
    )
}

#[test]
fn the_daemon_runs_as_a_notify_service_survives_a_sigkill_without_acting_twice_and_stops_cleanly() {
    let started = Instant::now();
    // Under the target directory, shared with the sandbox with the binary's
    // (the sandbox has a /tmp of its own, and a checkout may be under /tmp).
    // Made first, removed last: the sandbox (and the daemon in it) stops before.
    let dir = tempfile::Builder::new().prefix("systemd-").tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let bin = headroom_bin();
    let Some(sandbox) = Sandbox::boot(&[dir.path(), bin.parent().unwrap()]) else { return };
    let sandbox = sandbox.watching(UNIT);
    let d = dir.path();
    assert!(
        !d.to_string_lossy().contains(char::is_whitespace)
            && !headroom_bin().to_string_lossy().contains(char::is_whitespace),
        "a unit's ExecStart= would need quoting: {}",
        d.display()
    );
    recorded_cpu(&d.join("cpu.csv"), "proc/worker");
    let port = headroom_e2e::free_port();
    std::fs::write(d.join("headroom.toml"), config(d, port)).unwrap();
    let audit_path = d.join("audit.jsonl");
    let log = || plain(&std::fs::read_to_string(d.join("daemon.log")).unwrap_or_default());
    sandbox.install(UNIT, &unit(d));

    // 1. Type=notify: `systemctl start` returns once READY=1 came, not when the process began.
    sandbox.run(&["systemctl", "start", UNIT]);
    let up = show(&sandbox, &["ActiveState", "SubState", "MainPID", "NRestarts", "StatusText"]);
    assert_eq!((up["ActiveState"].as_str(), up["SubState"].as_str()), ("active", "running"), "{up:?}\n{}", log());
    assert_eq!(up["NRestarts"], "0");
    // READY=1 is sent once the endpoint listens: it answers at once.
    let health = get(port, "/healthz").unwrap_or_else(|e| panic!("/healthz right after READY=1: {e}\n{}", log()));
    assert_eq!(health.status, 200, "{health:?}");
    let first_pid = up["MainPID"].clone();
    assert_ne!(first_pid, "0");
    // STATUS=: the daemon's summary, brought up to date by the watchdog pings.
    assert!(up["StatusText"].starts_with("1 targets, 1 sources, "), "{up:?}");
    let status_text = wait_for("StatusText saying ready", LIMIT, || {
        let s = show(&sandbox, &["StatusText"]).remove("StatusText").unwrap_or_default();
        if s.contains("ready") && s.contains("act ok") { Ok(s) } else { Err(s) }
    });
    assert!(status_text.starts_with("1 targets, 1 sources, ready; "), "{status_text}");
    // WATCHDOG=1 at half of WatchdogSec: systemd saw pings, and keeps seeing them.
    let ping =
        || show(&sandbox, &["WatchdogTimestampMonotonic"]).remove("WatchdogTimestampMonotonic").unwrap_or_default();
    let first_ping = wait_for("a watchdog ping", LIMIT, || {
        let p = ping();
        if p.parse::<u64>().is_ok_and(|t| t > 0) { Ok(p) } else { Err(p) }
    });
    wait_for("another watchdog ping", LIMIT, || {
        let p = ping();
        if p != first_ping { Ok(()) } else { Err(p) }
    });

    // 2. The scale-out of the supervised worker: intent, then `succeeded`.
    let id = wait_for("a scale_to of worker succeeded in the audit log", LIMIT, || {
        let records = audit(&audit_path);
        let scale = records.iter().find(|r| {
            r["kind"] == "intent"
                && r["decision"]["target"] == "worker"
                && r["decision"]["action"]["type"] == "scale_to"
                && r["decision"]["mode"] == "enforce"
        });
        let Some(intent) = scale else { return Err(format!("{records:?}\n{}", log())) };
        let id = record_id(intent).to_owned();
        let done = records.iter().any(|r| r["kind"] == "outcome" && r["id"] == id.as_str());
        if done { Ok(id) } else { Err(format!("no outcome yet for {id}")) }
    });
    let records = audit(&audit_path);
    let ours: Vec<&serde_json::Value> = records.iter().filter(|r| record_id(r) == id).collect();
    assert_eq!(ours.len(), 2, "intent and outcome of {id}: {ours:?}");
    assert_eq!(ours[0]["kind"], "intent");
    assert_eq!((&ours[1]["kind"], &ours[1]["outcome"]["status"]), (&"outcome".into(), &"succeeded".into()), "{ours:?}");
    let replicas = ours[0]["decision"]["action"]["replicas"].as_u64().unwrap();
    assert!(replicas >= 2, "{}", ours[0]);
    wait_for("the new instances, children of the main process", LIMIT, || {
        let (all, children) = sleepers(&sandbox, &first_pid);
        if children.len() as u64 == replicas && all == children { Ok(()) } else { Err(format!("{all:?} {children:?}")) }
    });

    // 3. A crash: SIGKILL to the main process (in the sandbox, its own PID).
    // Restart=always brings it back, once, through READY=1 again.
    sandbox.run(&["kill", "-KILL", &first_pid]);
    let again = wait_for("the automatic restart", LIMIT, || {
        let s = show(&sandbox, &["ActiveState", "SubState", "MainPID", "NRestarts"]);
        let back = s["NRestarts"] == "1" && s["ActiveState"] == "active" && s["SubState"] == "running";
        if back && s["MainPID"] != first_pid && s["MainPID"] != "0" { Ok(s) } else { Err(format!("{s:?}")) }
    });
    let second_pid = again["MainPID"].clone();
    // The killed daemon's children went with its cgroup; the new one starts
    // the worker at the count the audit log last scaled it to, not its configured one.
    wait_for("the scaled-out instances again, the new main process's", LIMIT, || {
        let (all, children) = sleepers(&sandbox, &second_pid);
        if children.len() as u64 == replicas && all == children { Ok(()) } else { Err(format!("{all:?} {children:?}")) }
    });

    // A few act cycles of the new daemon (act every 1 s), each deciding on the worker.
    let mut seen = Vec::new();
    wait_for("three act runs of the restarted daemon", LIMIT, || {
        let r = get(port, "/api/v1/targets").map_err(|e| e.to_string())?;
        let doc: serde_json::Value = serde_json::from_str(&r.body).map_err(|e| format!("{e}: {}", r.body))?;
        let run = doc["jobs"]["act"]["last_run"].clone();
        if !run.is_null() && doc["targets"][0]["status"]["decision"].is_object() && !seen.contains(&run) {
            seen.push(run);
        }
        if seen.len() >= 3 { Ok(()) } else { Err(format!("{} runs: {}\n{}", seen.len(), r.body, log())) }
    });
    // What it decided for the worker, back at the count it was scaled to:
    // nothing to do (the replicas already hold the predicted peak, or the
    // same reason's id is already done, or the cooldown holds any other).
    let r = get(port, "/api/v1/targets").unwrap();
    let doc: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    let worker = &doc["targets"][0];
    assert_eq!(worker["name"], "worker", "{}", r.body);
    assert_eq!(worker["status"]["replicas"], replicas, "restored from the audit log: {}", r.body);
    let decision = &worker["status"]["decision"];
    assert_eq!(decision["action"]["type"], "none", "{decision}");
    let (_, children) = sleepers(&sandbox, &second_pid);
    assert_eq!(children.len() as u64, replicas, "not scaled again: {children:?}");
    // In the audit log: the action once, with its two records; no intent repeated.
    let records = audit(&audit_path);
    assert_eq!(records.iter().filter(|r| record_id(r) == id).count(), 2, "{id} twice: {records:?}");
    let mut intents = BTreeMap::new();
    for r in records.iter().filter(|r| r["kind"] == "intent") {
        *intents.entry(record_id(r)).or_insert(0) += 1;
    }
    assert!(intents.values().all(|&n| n == 1), "an intent repeated: {intents:?}");

    // 4. `systemctl stop`: SIGTERM, a graceful stop, exit 0.
    sandbox.run(&["systemctl", "stop", UNIT]);
    let down = show(&sandbox, &["ActiveState", "SubState"]);
    assert_eq!((down["ActiveState"].as_str(), down["SubState"].as_str()), ("inactive", "dead"), "{down:?}");
    let stops = std::fs::read_to_string(d.join("stops")).unwrap_or_default();
    let stops: Vec<&str> = stops.lines().collect();
    // SERVICE_RESULT EXIT_CODE EXIT_STATUS: killed by the SIGKILL, then an exit with status 0.
    assert_eq!(stops, ["signal killed KILL", "success exited 0"], "{}\n{}", sandbox.status(UNIT), log());
    let text = log();
    assert_eq!(text.matches("headroom daemon started").count(), 2, "{text}");
    assert_eq!(text.matches("headroom daemon stopped").count(), 1, "only the second run stopped cleanly: {text}");
    // The SIGTERM was the daemon's alone: its supervisor stopped the instance it ran, before the daemon stopped.
    let last_run = &text[text.rfind("headroom daemon started").unwrap()..];
    let order: Vec<Option<usize>> =
        ["supervisor shutting down", r#"stopped process="worker" instance=0"#, "headroom daemon stopped"]
            .iter()
            .map(|m| last_run.find(m))
            .collect();
    assert!(order.iter().all(Option::is_some) && order.is_sorted(), "{order:?}: {last_run}");
    let (all, _) = sleepers(&sandbox, &second_pid);
    assert!(all.is_empty(), "supervised children left behind: {all:?}");
    // Complete: every intent has its outcome, and no id was carried out twice.
    let records = audit(&audit_path);
    for r in records.iter().filter(|r| r["kind"] == "intent") {
        let id = record_id(r);
        let outcomes = records.iter().filter(|o| o["kind"] == "outcome" && o["id"] == id).count();
        assert_eq!(outcomes, 1, "intent {id} has {outcomes} outcomes: {records:?}");
    }
    assert_eq!(records.iter().filter(|r| record_id(r) == id).count(), 2, "{records:?}");
    eprintln!("systemd service test: {:?}", started.elapsed());
}
