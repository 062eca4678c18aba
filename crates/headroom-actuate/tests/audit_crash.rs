//! The audit log against real failures: a real child process killed with
//! SIGKILL between intent and outcome, a torn last line, rotation, and the
//! one-writer lock across processes.
//!
//! The child is this test binary run again with `HEADROOM_AUDIT_CHILD` set
//! (see [`child_process`]): it plays a headroom engine that carries one
//! decision out, where "carrying out" appends a line to a side-effect file,
//! so the tests can count how often the action really happened.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use headroom_actuate::audit::rotated_path;
use headroom_actuate::{AuditLog, AuditOptions, Begin, Error, Repair};
use headroom_core::{Action, Decision};
use headroom_remediate::audit::Record;
use headroom_remediate::state::Outcome;
use headroom_testing::fixtures;

const CHILD: &str = "HEADROOM_AUDIT_CHILD";
const LOG: &str = "HEADROOM_AUDIT_LOG";
const SIDE: &str = "HEADROOM_AUDIT_SIDE";

fn decision(target: &str, window_start_ms: i64) -> Decision {
    fixtures::decision(target, &format!("k8s/shop/deployment/{target}"), Action::ScaleTo { replicas: 6 })
        .risk("saturation")
        .window(window_start_ms)
        .decided_at(window_start_ms - 60_000)
        .reason("p90 cpu reaches 93% of the limit in 3h")
        .build()
}

/// The action: one line per time it was carried out, synced.
fn act(side: &Path, d: &Decision) {
    let mut f = OpenOptions::new().create(true).append(true).open(side).unwrap();
    writeln!(f, "{} {}", d.id, d.action).unwrap();
    f.sync_all().unwrap();
}

/// How often the action was carried out.
fn times_acted(side: &Path) -> usize {
    fs::read_to_string(side).map(|s| s.lines().count()).unwrap_or(0)
}

/// Not a test of its own: the body of the child process. Returns at once
/// unless run by [`spawn`].
///
/// * `act` / `act-then-hang`: open the log and handle the decision as the
///   engine does; `act-then-hang` sleeps between the action and its outcome
///   (where the parent kills it). A pending intent is reconciled by checking
///   the side-effect file, never by acting again.
/// * `open`: only open the log; exit 3 with the error on stderr if refused.
#[test]
fn child_process() {
    let Ok(mode) = std::env::var(CHILD) else { return };
    let log_path = PathBuf::from(std::env::var(LOG).unwrap());
    let side = PathBuf::from(std::env::var(SIDE).unwrap());
    if mode == "open" {
        match AuditLog::open(&log_path, AuditOptions::default()) {
            Ok(_) => std::process::exit(0),
            Err(e) => {
                eprintln!("{e}");
                std::process::exit(3);
            }
        }
    }
    let (mut log, _) = AuditLog::open(&log_path, AuditOptions::default()).unwrap();
    let d = decision("cart", 3_600_000);
    match log.begin(&d, 3_540_001).unwrap() {
        Begin::Proceed => {
            act(&side, &d);
            if mode == "act-then-hang" {
                std::thread::sleep(Duration::from_secs(600));
            }
            log.append_outcome(&d.id, &d.target, &Outcome::Succeeded, 3_540_002).unwrap();
        }
        Begin::Pending(intent) => {
            let found = if times_acted(&side) > 0 {
                Outcome::Succeeded
            } else {
                Outcome::Failed { error: "not applied".into() }
            };
            log.reconcile(&intent.id, &found, 3_540_003).unwrap();
        }
        Begin::AlreadyDone(_) => {}
    }
}

/// A child process, killed if the test ends early.
struct Kid(Child);

impl Drop for Kid {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn command(mode: &str, log: &Path, side: &Path) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["child_process", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, mode)
        .env(LOG, log)
        .env(SIDE, side)
        .stdin(Stdio::null());
    cmd
}

fn spawn(mode: &str, log: &Path, side: &Path) -> Kid {
    Kid(command(mode, log, side).stdout(Stdio::null()).spawn().unwrap())
}

fn run(mode: &str, log: &Path, side: &Path) -> Output {
    command(mode, log, side).output().unwrap()
}

/// Starts a child that acts and hangs before recording the outcome, waits
/// until it has acted, and kills it with SIGKILL.
fn crash_between_intent_and_outcome(log: &Path, side: &Path) {
    let mut kid = spawn("act-then-hang", log, side);
    let deadline = Instant::now() + Duration::from_secs(60);
    while times_acted(side) == 0 {
        assert!(kid.0.try_wait().unwrap().is_none(), "the child exited before acting");
        assert!(Instant::now() < deadline, "the child did not act within 60 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    kid.0.kill().unwrap(); // SIGKILL: no destructor, no flush, nothing after the action runs
    let status = kid.0.wait().unwrap();
    assert!(!status.success());
}

fn lines(path: &Path) -> Vec<String> {
    fs::read_to_string(path).unwrap().lines().map(str::to_owned).collect()
}

#[test]
fn a_crash_between_intent_and_outcome_is_reconciled_not_repeated() {
    let dir = tempfile::tempdir().unwrap();
    let (log_path, side) = (dir.path().join("audit.jsonl"), dir.path().join("side-effects"));
    crash_between_intent_and_outcome(&log_path, &side);
    assert_eq!(lines(&log_path).len(), 1, "only the intent reached the log");

    let d = decision("cart", 3_600_000);
    let (mut log, report) = AuditLog::open(&log_path, AuditOptions::default()).unwrap();
    assert_eq!((report.records, report.skipped.len()), (1, 0));
    assert_eq!(log.ledger().pending(), vec![&d]);
    assert_eq!(log.ledger().history_for("cart")[0].outcome, Outcome::Pending);
    assert_eq!(log.begin(&d, 3_600_000).unwrap(), Begin::Pending(d.clone()), "must not proceed a second time");
    assert_eq!(lines(&log_path).len(), 1, "begin wrote nothing");

    // Check the real state (the side effect is there) and record it.
    assert_eq!(times_acted(&side), 1);
    log.reconcile(&d.id, &Outcome::Succeeded, 3_600_001).unwrap();
    assert_eq!(log.begin(&d, 3_600_002).unwrap(), Begin::AlreadyDone(Outcome::Succeeded));
    drop(log);

    // A restarted engine does nothing for this decision.
    let out = run("act", &log_path, &side);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(times_acted(&side), 1, "the action happened exactly once");
    let (log, _) = AuditLog::open(&log_path, AuditOptions::default()).unwrap();
    assert!(log.ledger().is_done(&d.id) && log.ledger().pending().is_empty());
    assert_eq!(lines(&log_path).len(), 2, "one intent, one outcome");
}

#[test]
fn a_restarted_process_reconciles_its_own_pending_intent() {
    let dir = tempfile::tempdir().unwrap();
    let (log_path, side) = (dir.path().join("state/audit.jsonl"), dir.path().join("side-effects"));
    crash_between_intent_and_outcome(&log_path, &side);
    for _ in 0..2 {
        let out = run("act", &log_path, &side);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    assert_eq!(times_acted(&side), 1, "the action happened exactly once over three runs");
    let (log, _) = AuditLog::open(&log_path, AuditOptions::default()).unwrap();
    let d = decision("cart", 3_600_000);
    assert_eq!(log.ledger().outcome(&d.id), Some(&Outcome::Succeeded));
    assert_eq!(log.ledger().attempts(&d.id), 1);
    assert_eq!(lines(&log_path).len(), 2, "one intent, one reconciled outcome");
}

/// Collects what the library logs through `tracing`.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[test]
fn a_torn_last_line_is_cut_away_with_a_warning_and_the_next_record_gets_its_own_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let ds: Vec<Decision> = (1..=3).map(|i| decision("cart", i * 3_600_000)).collect();
    let (mut log, _) = AuditLog::open(&path, AuditOptions::default()).unwrap();
    for d in &ds[..2] {
        log.begin(d, d.decided_at_ms).unwrap();
        log.append_outcome(&d.id, &d.target, &Outcome::Succeeded, d.decided_at_ms + 1).unwrap();
    }
    drop(log);
    let before = fs::read_to_string(&path).unwrap();

    // What a crash in the middle of writing the third intent leaves behind.
    let line = Record::Intent { at_ms: 0, decision: ds[2].clone() }.to_line().unwrap();
    let torn = &line[..line.len() / 2];
    OpenOptions::new().append(true).open(&path).unwrap().write_all(torn.as_bytes()).unwrap();

    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt().with_writer(captured.clone()).with_ansi(false).finish();
    let (mut log, report) =
        tracing::subscriber::with_default(subscriber, || AuditLog::open(&path, AuditOptions::default())).unwrap();
    let logged = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();

    assert_eq!(report.records, 4);
    assert_eq!(report.skipped.len(), 1);
    assert!(report.skipped[0].torn && report.skipped[0].line == 5, "{:?}", report.skipped);
    assert_eq!(report.repair, Some(Repair::Truncated { line: 5, bytes: torn.len() as u64 }));
    assert!(logged.contains("WARN") && logged.contains("torn last line"), "{logged}");
    assert!(logged.contains(&format!("{}", path.display())) && logged.contains("line=5"), "{logged}");
    assert_eq!(fs::read_to_string(&path).unwrap(), before, "earlier records intact, torn bytes gone");

    // The torn intent never counted: the decision can begin now.
    assert_eq!(log.begin(&ds[2], 10).unwrap(), Begin::Proceed);
    let text = fs::read_to_string(&path).unwrap();
    assert!(text.starts_with(&before) && text.ends_with('\n'));
    assert_eq!(text.lines().count(), 5);
    for l in text.lines() {
        Record::from_line(l).unwrap();
    }
}

#[test]
fn a_complete_last_record_missing_its_newline_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let d = decision("cart", 3_600_000);
    let line = Record::Intent { at_ms: 0, decision: d.clone() }.to_line().unwrap();
    fs::write(&path, line.trim_end()).unwrap();
    let (mut log, report) = AuditLog::open(&path, AuditOptions::default()).unwrap();
    assert_eq!(report.repair, Some(Repair::Terminated { line: 1 }));
    assert_eq!(log.begin(&d, 1).unwrap(), Begin::Pending(d.clone()));
    log.reconcile(&d.id, &Outcome::DryRun, 2).unwrap();
    assert_eq!(lines(&path).len(), 2);
}

/// `kind id` of every record in the kept files, oldest first.
fn kept_records(path: &Path, keep: usize) -> Vec<String> {
    let mut files: Vec<PathBuf> = (1..=keep).rev().map(|n| rotated_path(path, n)).collect();
    files.push(path.to_path_buf());
    files
        .iter()
        .filter(|f| f.exists())
        .flat_map(|f| lines(f))
        .map(|l| match Record::from_line(&l).unwrap() {
            Record::Intent { decision, .. } => format!("intent {}", decision.id),
            Record::Outcome { id, .. } => format!("outcome {id}"),
        })
        .collect()
}

#[test]
fn rotation_keeps_the_newest_files_and_loses_or_repeats_no_record_in_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let options = AuditOptions { max_bytes: 4096, keep: 3 };
    let mut written = Vec::new();
    let ds: Vec<Decision> = (1..=80).map(|i| decision("cart", i * 300_000)).collect();
    for half in [&ds[..40], &ds[40..]] {
        // Reopen half-way: rotation continues from the sizes on disk.
        let (mut log, _) = AuditLog::open(&path, options).unwrap();
        for d in half {
            assert_eq!(log.begin(d, d.decided_at_ms).unwrap(), Begin::Proceed);
            log.append_outcome(&d.id, &d.target, &Outcome::Succeeded, d.decided_at_ms + 1).unwrap();
            written.push(format!("intent {}", d.id));
            written.push(format!("outcome {}", d.id));
        }
    }

    for n in 1..=3 {
        let len = fs::metadata(rotated_path(&path, n)).unwrap().len();
        assert!(len <= 4096 && len > 2048, "{n}: {len} bytes");
    }
    assert!(!rotated_path(&path, 4).exists(), "keep = 3 honoured");
    assert!(fs::metadata(&path).unwrap().len() <= 4096);

    // The kept files hold exactly the newest records, in order, once each.
    let kept = kept_records(&path, 3);
    assert!(kept.len() > 20 && kept.len() < written.len(), "{} of {}", kept.len(), written.len());
    assert_eq!(kept, written[written.len() - kept.len()..]);

    // Reopening sees that history: the kept decisions are done, an outcome
    // whose intent was rotated away still counts, nothing is pending.
    let (mut log, report) = AuditLog::open(&path, options).unwrap();
    assert_eq!((report.files.len(), report.records, report.skipped.len()), (4, kept.len(), 0));
    assert!(log.ledger().pending().is_empty());
    let first_kept = kept[0].split(' ').nth(1).unwrap();
    let from = ds.iter().position(|d| d.id == first_kept).unwrap();
    for d in &ds[from..] {
        assert_eq!(log.begin(d, 0).unwrap(), Begin::AlreadyDone(Outcome::Succeeded));
    }
    assert_eq!(log.ledger().history_for("cart").len(), ds.len() - from - usize::from(kept[0].starts_with("outcome")));
}

#[test]
fn a_second_writer_is_refused_in_this_process_and_in_another() {
    let dir = tempfile::tempdir().unwrap();
    let (path, side) = (dir.path().join("audit.jsonl"), dir.path().join("side-effects"));
    let (log, _) = AuditLog::open(&path, AuditOptions::default()).unwrap();

    let err = AuditLog::open(&path, AuditOptions::default()).unwrap_err();
    assert!(matches!(err, Error::Locked { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains(&path.display().to_string()) && msg.contains("already open"), "{msg}");

    let out = run("open", &path, &side);
    assert_eq!(out.status.code(), Some(3), "the other process must be refused");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&path.display().to_string()) && stderr.contains("already open"), "{stderr}");

    drop(log);
    assert!(run("open", &path, &side).status.success(), "the lock is released on close");
}
