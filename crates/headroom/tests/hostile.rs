//! The binary under hostile input and signals, as a user would meet them:
//! real processes, real signals, real files. Each test names the defect of
//! issue 11 it guards against.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

fn headroom(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_headroom"))
        .args(args)
        .current_dir(cwd)
        .env_remove("KUBECONFIG")
        .env("HOME", "/nonexistent")
        .output()
        .unwrap()
}

/// The error text of a run that must fail with exit code 1 or 2, and quickly
/// enough that it cannot have done the work first (bounded by a generous
/// limit only to turn a hang into a failure).
fn refused(args: &[&str], cwd: &Path) -> String {
    let out = headroom(args, cwd);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{args:?} should have been refused; stderr:\n{err}");
    assert!(!err.contains("panicked"), "{err}");
    err
}

fn spawn(args: &[&str], cwd: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_headroom"))
        .args(args)
        .current_dir(cwd)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Reads the child's stderr until a line contains `marker`; returns what was read.
fn wait_for(child: &mut Child, marker: &str) -> String {
    let stderr = child.stderr.as_mut().unwrap();
    let mut reader = BufReader::new(stderr);
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        assert!(reader.read_line(&mut line).unwrap() > 0, "exited before printing {marker:?}:\n{seen}");
        seen.push_str(&line);
        if line.contains(marker) {
            return seen;
        }
    }
}

fn kill(child: &Child, signal: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal).unwrap();
}

/// Waits for the child, failing (and killing it) if it has not exited within
/// `limit`: a command that ignores a signal would otherwise hang the suite.
fn exit_within(child: &mut Child, limit: Duration) -> (ExitStatus, String) {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut rest = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut rest).unwrap();
            return (status, rest);
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("still running {limit:?} after the signal: the signal was ignored");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn files_in(dir: &Path) -> Vec<String> {
    match std::fs::read_dir(dir) {
        Ok(entries) => entries.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect(),
        Err(_) => Vec::new(),
    }
}

/// Defect 3: every long command stops on the first SIGINT or SIGTERM, says
/// so, exits 130 or 143, and leaves no output file (whole or partial).
#[test]
fn a_signal_stops_a_long_command_which_exits_130_or_143_and_writes_nothing() {
    use nix::sys::signal::Signal;

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bt");
    let out_arg = out.to_str().unwrap();
    // Holt-Winters over the whole sample takes seconds: the signal lands while forecasting.
    for (signal, code) in [(Signal::SIGINT, 130), (Signal::SIGTERM, 143)] {
        let mut child =
            spawn(&["backtest", "--models", "holt-winters,auto", "--decide-every", "15m", "--out", out_arg], &repo());
        wait_for(&mut child, "forecasting");
        kill(&child, signal);
        let (status, stderr) = exit_within(&mut child, Duration::from_secs(60));
        assert_eq!(status.code(), Some(code), "{signal}: {stderr}");
        assert!(stderr.contains(&format!("interrupted by {signal}")), "{stderr}");
        assert!(stderr.contains("nothing partial was written"), "{stderr}");
        assert!(files_in(&out).is_empty(), "{signal}: {:?}", files_in(&out));
    }

    // Training: stops between steps, no model directory content.
    let model = dir.path().join("model");
    let cfg = dir.path().join("lstm.json");
    std::fs::write(&cfg, r#"{"max_steps": 100000, "eval_every": 100000}"#).unwrap();
    let mut child =
        spawn(&["train", "--out", model.to_str().unwrap(), "--config", cfg.to_str().unwrap(), "--quiet"], &repo());
    wait_for(&mut child, "train:");
    std::thread::sleep(Duration::from_millis(500));
    kill(&child, Signal::SIGTERM);
    let (status, stderr) = exit_within(&mut child, Duration::from_secs(60));
    assert_eq!(status.code(), Some(143), "{stderr}");
    assert!(files_in(&model).is_empty(), "{:?}", files_in(&model));
}

/// Defect 3, whatever the moment: a signal at a random point of a backtest
/// ends it either complete (exit 0, every file) or stopped (exit 130, no
/// file, no temporary file).
#[test]
fn a_signal_at_any_moment_leaves_all_or_nothing() {
    use nix::sys::signal::Signal;

    let dir = tempfile::tempdir().unwrap();
    let mut stopped = 0;
    for (i, delay_ms) in [0u64, 150, 400, 900, 1500, 2500].into_iter().enumerate() {
        let out = dir.path().join(format!("bt{i}"));
        let mut child = spawn(&["backtest", "--models", "snaive-daily", "--out", out.to_str().unwrap()], &repo());
        std::thread::sleep(Duration::from_millis(delay_ms));
        kill(&child, Signal::SIGINT);
        let (status, stderr) = exit_within(&mut child, Duration::from_secs(120));
        let files = files_in(&out);
        match status.code() {
            Some(0) => {
                for f in ["forecasts.parquet", "scores.json", "scores.csv", "decisions.parquet", "report.html"] {
                    assert!(files.contains(&f.to_string()), "exit 0 but {f} missing: {files:?}");
                }
            }
            Some(130) => {
                stopped += 1;
                assert!(files.is_empty(), "stopped after {delay_ms} ms but wrote {files:?}\n{stderr}");
            }
            // Before headroom installed its handler, the signal's default action ends it.
            None if std::os::unix::process::ExitStatusExt::signal(&status) == Some(2) => {
                stopped += 1;
                assert!(files.is_empty(), "killed after {delay_ms} ms but wrote {files:?}");
            }
            other => panic!("after {delay_ms} ms: exit {other:?}\n{stderr}"),
        }
        assert!(files.iter().all(|f| !f.starts_with('.')), "temporary files left: {files:?}");
    }
    assert!(stopped > 0, "no run was stopped by its signal");
}

/// Defect 4: work is bounded before it starts; durations that overflow are
/// errors, never clamped.
#[test]
fn absurd_flags_are_refused_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let r = repo();
    let err =
        refused(&["backtest", "--models", "snaive-daily", "--decide-every", "1ms", "--out", "/nonexistent/x"], &r);
    assert!(err.contains("--decide-every 1ms: must be at least the grid step (15m"), "{err}");
    let err = refused(&["backtest", "--models", "snaive-daily", "--horizon", "100y", "--no-replay"], &r);
    assert!(err.contains("no series is long enough for one forecast origin"), "{err}");
    let err = refused(&["backtest", "--models", "snaive-daily", "--origin-every", "1s", "--no-replay"], &r);
    assert!(err.contains("--origin-every 1s: must be a whole, non-zero number of steps"), "{err}");
    // An origin every bin, for every model: gigabytes of forecasts. Refused up front.
    let err = refused(&["backtest", "--origin-every", "15m", "--no-replay"], &r);
    assert!(err.contains("space the origins out (--origin-every"), "{err}");
    let out = dir.path().join("f.parquet");
    let err = refused(&["forecast", "--horizon", "100y", "--out", out.to_str().unwrap()], &r);
    assert!(
        err.contains("--horizon 100y") && err.contains("more than a week and longer than the longest series"),
        "{err}"
    );
    assert!(!out.exists());
    for flag in ["--horizon", "--decide-every", "--step"] {
        let err = refused(&["backtest", flag, "500000000y"], &r);
        assert!(err.contains("too long: at most 100y"), "{flag}: {err}");
    }

    // headroom.toml: an overflowing duration is a config error with its key path, not "never".
    let cfg = dir.path().join("headroom.toml");
    let sample = std::fs::read_to_string(r.join("data/sample/headroom.toml")).unwrap();
    std::fs::write(&cfg, sample.replacen("cooldown = \"30m\"", "cooldown = \"500000000y\"", 1)).unwrap();
    let err = refused(&["plan", "--config", cfg.to_str().unwrap()], &r);
    assert!(err.contains("cooldown") && err.contains("too long: at most 100y"), "{err}");

    // An LSTM too large to allocate is a config error, not an abort.
    let lstm = dir.path().join("lstm.json");
    std::fs::write(&lstm, r#"{"hidden": 100000000}"#).unwrap();
    let model = dir.path().join("m");
    let err = refused(&["train", "--out", model.to_str().unwrap(), "--config", lstm.to_str().unwrap()], &r);
    assert!(err.contains("hidden = 100000000: must be at most 4096"), "{err}");

    // Milliseconds read as seconds would be the year 55969: refused, with the right unit named.
    std::fs::write(dir.path().join("ms.csv"), "timestamp,cpu\n1704067200000,0.5\n1704067500000,0.6\n").unwrap();
    let err = refused(&["inspect", "ms.csv", "--time-unit", "s"], dir.path());
    assert!(err.contains("row 1") && err.contains("use --time-unit ms"), "{err}");
}

/// Defect 7: a backtest with nothing to score fails and says why.
#[test]
fn a_backtest_with_nothing_to_score_fails_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from("timestamp,cpu\n");
    for i in 0..100 {
        let minutes = i * 15;
        let (day, hour, minute) = (1 + minutes / 1440, minutes % 1440 / 60, minutes % 60);
        csv.push_str(&format!("2024-01-{day:02}T{hour:02}:{minute:02}:00Z,{}\n", i % 7));
    }
    std::fs::write(dir.path().join("short.csv"), csv).unwrap();
    std::fs::write(dir.path().join("limits.csv"), "entity,metric,threshold\nshort,cpu,5\n").unwrap();
    let err = refused(
        &["backtest", "--data", "short.csv", "--limits", "limits.csv", "--models", "snaive-daily", "--out", "bt"],
        dir.path(),
    );
    assert!(err.contains("no series is long enough"), "{err}");
    assert!(!dir.path().join("bt").exists());
}
