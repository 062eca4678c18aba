//! The audit log writer: append-only JSON Lines, synced to disk record by
//! record, rotated by size. The format and its reading are in
//! [`headroom_remediate::audit`].
//!
//! How it is used, once per decision:
//!
//! ```text
//! match log.begin(&decision, now_ms)? {      // writes the intent, synced
//!     Begin::Proceed => {
//!         let outcome = carry_out(&decision);   // only now
//!         log.append_outcome(&decision.id, &decision.target, &outcome, now_ms)?;
//!     }
//!     Begin::Pending(intent) => {              // an earlier run died while acting
//!         let outcome = check_real_state(&intent);
//!         log.reconcile(&intent.id, &outcome, now_ms)?;
//!     }
//!     Begin::AlreadyDone(_) => {}              // never twice
//! }
//! ```
//!
//! Files: `audit.jsonl` is written; when the next record would make it
//! larger than [`AuditOptions::max_bytes`] it becomes `audit.jsonl.1`,
//! older ones shift to `.2`, `.3`, … and the one past [`AuditOptions::keep`]
//! is removed (so is any numbered above it, e.g. after `keep` was lowered).
//! Opening reads every rotated file oldest first, then the current one, so
//! history, cooldowns and "done" survive rotation; an intent and its outcome
//! may sit in different files. [`read_ledger`] reads a log without writing
//! (for `headroom plan` beside a running daemon).
//!
//! One writer per log: `audit.jsonl.lock` beside the log is locked
//! (advisory, exclusive) while an [`AuditLog`] is open; a second open, by
//! another process or in this one, is refused with [`Error::Locked`]. The
//! lock file is left in place on close (removing it would race).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use headroom_core::Decision;
use headroom_remediate::audit::{Anomaly, Ledger, Record, Skipped, parse_log_lines, replay_lines};
use headroom_remediate::state::Outcome;
use tracing::{debug, info, warn};

use crate::error::{Error, Result};

/// Rotation settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditOptions {
    /// Size in bytes past which the current file is rotated (default 16 MiB).
    /// A single record larger than this gets a file of its own.
    pub max_bytes: u64,
    /// How many rotated files to keep, at least 1 (default 5). A record is
    /// only forgotten when its file is dropped, so keep enough to cover the
    /// longest cooldown.
    pub keep: usize,
}

impl Default for AuditOptions {
    fn default() -> Self {
        Self { max_bytes: 16 * 1024 * 1024, keep: 5 }
    }
}

/// What opening did to a torn last line of the current file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Repair {
    /// The last line was an incomplete record (a crash mid-write) and was cut away.
    Truncated {
        /// Its 1-based line number.
        line: usize,
        /// How many bytes were removed.
        bytes: u64,
    },
    /// The last line was a complete record missing only its newline; the
    /// newline was added and the record kept.
    Terminated {
        /// Its 1-based line number.
        line: usize,
    },
}

/// What was found when opening a log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenReport {
    /// The files read, oldest first (the current file last).
    pub files: Vec<PathBuf>,
    /// How many records were read.
    pub records: usize,
    /// Lines that are not records (the caller reports them; logged at debug).
    pub skipped: Vec<Skipped>,
    /// Records a well-behaved writer would not have written: contradicting
    /// outcomes, outcomes without intent, intents repeated after their
    /// outcome (the caller reports them; logged at debug).
    pub anomalies: Vec<Anomaly>,
    /// What was done to a torn last line of the current file, if there was one.
    pub repair: Option<Repair>,
}

/// What [`AuditLog::begin`] found for a decision.
#[expect(clippy::large_enum_variant, reason = "one per decision; boxing would only clutter matching")]
#[derive(Debug, Clone, PartialEq)]
pub enum Begin {
    /// The intent is written and synced: carry the decision out, then record
    /// its outcome with [`AuditLog::append_outcome`].
    Proceed,
    /// Already done (succeeded, dry-run or verification failed): do nothing.
    AlreadyDone(Outcome),
    /// An earlier intent has no outcome: the process died while acting.
    /// Check the real state and record it with [`AuditLog::reconcile`];
    /// do not act again.
    Pending(Decision),
}

/// An open audit log: the one writer of its file, with the [`Ledger`] of
/// everything read and written so far.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    options: AuditOptions,
    /// The current file, opened for appending; `None` while rotating.
    file: Option<File>,
    /// Bytes in the current file.
    len: u64,
    ledger: Ledger,
    /// Set when a failed write could not be undone.
    poisoned: bool,
    /// Holds the one-writer lock until dropped.
    _lock: File,
}

/// The path of the `n`th rotated file: `audit.jsonl.1` is the newest.
pub fn rotated_path(path: &Path, n: usize) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// The lock file of a log: `audit.jsonl.lock`.
pub fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

impl AuditLog {
    /// Opens the log at `path` for appending, creating it (and its directory)
    /// if absent, and reads it and every rotated file beside it into the ledger.
    ///
    /// Lines that are not records are skipped, reported and logged as
    /// warnings naming file and line. A torn last line in the current file
    /// is cut away (or, if it is a complete record, terminated) so the next
    /// record starts on a line of its own.
    pub fn open(path: impl AsRef<Path>, options: AuditOptions) -> Result<(AuditLog, OpenReport)> {
        let path = path.as_ref().to_path_buf();
        if options.keep == 0 || options.max_bytes == 0 {
            let why = format!(
                "max_bytes = {} and keep = {} must both be at least 1 (rotation must keep the previous file, or \"done\" would be forgotten)",
                options.max_bytes, options.keep
            );
            return Err(Error::Options { path, why });
        }
        let dir = parent(&path);
        fs::create_dir_all(&dir).map_err(Error::io(&dir, "create the audit log directory"))?;
        let lock = take_lock(&path)?;

        let mut read = read_files(&path)?;
        let len = match &read.current {
            Some(bytes) => {
                read.repair = repair_tail(&path, bytes, read.current_torn)?;
                fs::metadata(&path).map_err(Error::io(&path, "read the size of the audit log"))?.len()
            }
            None => 0,
        };
        let (ledger, anomalies) = read.replay();
        let mut report = OpenReport {
            files: read.files,
            records: read.records.len(),
            skipped: read.skipped,
            anomalies,
            repair: read.repair,
        };
        report.files.push(path.clone());
        // Reported once, by the caller (the CLI prints them, the daemon logs them).
        for s in &report.skipped {
            debug!(file = %s.source, line = s.line, why = %s.why, "audit log: skipped a line that is not a record");
        }
        for a in &report.anomalies {
            debug!(file = %a.source, line = a.line, id = %a.id, what = %a.what, "audit log: unexpected record");
        }
        // The one thing opening changes in the file: logged here, where it is done.
        match &report.repair {
            Some(Repair::Truncated { line, bytes }) => {
                warn!(file = %path.display(), line, bytes, "audit log: cut away a torn last line (a write was cut short)");
            }
            Some(Repair::Terminated { line }) => {
                warn!(file = %path.display(), line, "audit log: added the newline a complete last record was missing");
            }
            None => {}
        }
        for d in ledger.pending() {
            debug!(
                file = %path.display(), id = %d.id, target = %d.target, action = %d.action,
                "audit log: intent without outcome (interrupted while acting); reconcile it by checking the real state"
            );
        }
        info!(file = %path.display(), files = report.files.len(), records = report.records, skipped = report.skipped.len(), "audit log opened");

        let mut log = AuditLog { path, options, file: None, len, ledger, poisoned: false, _lock: lock };
        log.file()?;
        Ok((log, report))
    }

    /// The log's path (the current file).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Everything read and written so far.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Starts carrying out `decision`, at most once: writes and syncs its
    /// intent and returns [`Begin::Proceed`], unless the log already has it
    /// done ([`Begin::AlreadyDone`]) or has an intent for it with no outcome
    /// ([`Begin::Pending`]), in which case nothing is written.
    pub fn begin(&mut self, decision: &Decision, at_ms: i64) -> Result<Begin> {
        if self.ledger.is_done(&decision.id)
            && let Some(outcome) = self.ledger.outcome(&decision.id)
        {
            return Ok(Begin::AlreadyDone(outcome.clone()));
        }
        if let Some(intent) = self.ledger.pending_intent(&decision.id) {
            return Ok(Begin::Pending(intent.clone()));
        }
        self.append_intent(decision, at_ms)?;
        Ok(Begin::Proceed)
    }

    /// Writes the intent for `decision` and syncs it to disk before
    /// returning: carry the decision out only after this returns `Ok`.
    /// Refused if the decision is already done or already has an intent
    /// without outcome (prefer [`AuditLog::begin`], which tells which).
    pub fn append_intent(&mut self, decision: &Decision, at_ms: i64) -> Result<()> {
        let id = &decision.id;
        if self.ledger.is_done(id)
            && let Some(outcome) = self.ledger.outcome(id)
        {
            return Err(
                self.refused(id, format!("it is already done ({outcome:?}); a decision is carried out at most once"))
            );
        }
        if self.ledger.pending_intent(id).is_some() {
            return Err(self.refused(
                id,
                "an intent without outcome is already recorded: check the real state and record it with reconcile, instead of acting again".into(),
            ));
        }
        self.write(&Record::Intent { at_ms, decision: decision.clone() })
    }

    /// Writes how decision `id` (of `target`) ended, synced to disk.
    /// Refused if it does not fit the log (no intent, a different target,
    /// `pending`, or a change to a decision already done other than
    /// `verification_failed`).
    pub fn append_outcome(&mut self, id: &str, target: &str, outcome: &Outcome, at_ms: i64) -> Result<()> {
        if let Err(why) = self.ledger.check_outcome(id, target, outcome) {
            return Err(self.refused(id, why));
        }
        self.write(&Record::Outcome { at_ms, id: id.to_owned(), target: target.to_owned(), outcome: outcome.clone() })
    }

    /// Records the outcome found by checking the real state of a pending
    /// intent (see [`Begin::Pending`]). Refused if `id` is not pending.
    pub fn reconcile(&mut self, id: &str, outcome: &Outcome, at_ms: i64) -> Result<()> {
        let Some(intent) = self.ledger.pending_intent(id) else {
            return Err(self.refused(id, "nothing to reconcile: it has no intent without outcome".into()));
        };
        let target = intent.target.clone();
        info!(file = %self.path.display(), id, target = %target, ?outcome, "audit log: reconciled a pending intent");
        self.append_outcome(id, &target, outcome, at_ms)
    }

    fn refused(&self, id: &str, why: String) -> Error {
        Error::Refused { path: self.path.clone(), id: id.to_owned(), why }
    }

    /// Appends one record and syncs it; on failure, removes whatever part
    /// of it reached the file so the next record starts on a fresh line.
    fn write(&mut self, record: &Record) -> Result<()> {
        if self.poisoned {
            return Err(Error::Poisoned { path: self.path.clone() });
        }
        let line = record.to_line_written_at(Some(wall_clock_ms())).map_err(|source| Error::Encode {
            path: self.path.clone(),
            id: record.id().to_owned(),
            source,
        })?;
        let size = line.len() as u64;
        if self.len > 0 && self.len + size > self.options.max_bytes {
            self.rotate()?;
        }
        let len = self.len;
        let file = self.file()?;
        let written = file.write_all(line.as_bytes()).and_then(|()| file.sync_data());
        if let Err(source) = written {
            if file.set_len(len).and_then(|()| file.sync_data()).is_err() {
                self.poisoned = true;
            }
            return Err(Error::Io { path: self.path.clone(), what: "append to the audit log", source });
        }
        self.len += size;
        self.ledger.apply(record);
        debug!(file = %self.path.display(), id = record.id(), bytes = size, "audit log: record appended");
        Ok(())
    }

    /// Shifts `audit.jsonl.N` to `.N+1` (dropping the one past `keep`), the
    /// current file to `.1`, and starts a new current file. Each step is one
    /// rename or removal, so a crash at any point leaves every kept record
    /// in exactly one file.
    fn rotate(&mut self) -> Result<()> {
        self.file = None;
        for n in rotated_numbers(&self.path)?.into_iter().filter(|&n| n >= self.options.keep) {
            let old = rotated_path(&self.path, n);
            fs::remove_file(&old).map_err(Error::io(&old, "drop the oldest rotated audit log"))?;
        }
        for n in (1..self.options.keep).rev() {
            let from = rotated_path(&self.path, n);
            if from.exists() {
                let to = rotated_path(&self.path, n + 1);
                fs::rename(&from, &to).map_err(Error::io(&from, "rotate the audit log"))?;
            }
        }
        let first = rotated_path(&self.path, 1);
        fs::rename(&self.path, &first).map_err(Error::io(&self.path, "rotate the audit log"))?;
        self.len = 0;
        info!(file = %self.path.display(), rotated_to = %first.display(), keep = self.options.keep, "audit log rotated");
        self.file()?;
        Ok(())
    }

    /// The current file, opened (and created, durably) if needed.
    fn file(&mut self) -> Result<&mut File> {
        if self.file.is_none() {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .map_err(Error::io(&self.path, "open the audit log for appending"))?;
            sync_dir(&parent(&self.path))?;
            self.file = Some(file);
        }
        Ok(self.file.as_mut().expect("opened above"))
    }
}

/// Reads a log without opening it for writing: no lock, no repair, so it
/// can run beside the daemon that writes the log (a record being written
/// at that moment shows up as a torn last line and is skipped). Returns the
/// ledger of the current file and every rotated file found, and the lines
/// that are not records. Fails if there is no log at `path` at all.
pub fn read_ledger(path: impl AsRef<Path>) -> Result<(Ledger, OpenReport)> {
    let path = path.as_ref();
    let read = read_files(path)?;
    if read.current.is_none() && read.files.is_empty() {
        let source = io::Error::new(io::ErrorKind::NotFound, "no such file, and no rotated files beside it");
        return Err(Error::Io { path: path.to_path_buf(), what: "read the audit log", source });
    }
    let (ledger, anomalies) = read.replay();
    let mut files = read.files;
    if read.current.is_some() {
        files.push(path.to_path_buf());
    }
    Ok((ledger, OpenReport { files, records: read.records.len(), skipped: read.skipped, anomalies, repair: None }))
}

/// This machine's clock, ms since the epoch: the `written_ms` of every record,
/// and `--now wall`.
pub fn wall_clock_ms() -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(now.as_millis()).unwrap_or(i64::MAX)
}

/// What the files of a log hold.
struct Read {
    /// The records with their file and line, oldest file first.
    records: Vec<(String, usize, Record)>,
    skipped: Vec<Skipped>,
    /// The rotated files read, oldest first.
    files: Vec<PathBuf>,
    /// The current file's bytes, if it exists.
    current: Option<Vec<u8>>,
    /// Whether the current file ends in a torn line.
    current_torn: bool,
    /// Filled in by `open`.
    repair: Option<Repair>,
}

impl Read {
    /// The ledger of the records read, and what in them is unexpected.
    fn replay(&self) -> (Ledger, Vec<Anomaly>) {
        replay_lines(self.records.iter().map(|(source, line, r)| (source.as_str(), *line, r)))
    }
}

/// Reads every rotated file (oldest, highest number, first), then the current one.
fn read_files(path: &Path) -> Result<Read> {
    let mut read = Read {
        records: Vec::new(),
        skipped: Vec::new(),
        files: Vec::new(),
        current: None,
        current_torn: false,
        repair: None,
    };
    for n in rotated_numbers(path)?.into_iter().rev() {
        let rotated = rotated_path(path, n);
        if let Some(bytes) = read_if_exists(&rotated)? {
            let source = rotated.display().to_string();
            let (r, s) = parse_log_lines(&String::from_utf8_lossy(&bytes), &source);
            read.records.extend(r.into_iter().map(|(n, r)| (source.clone(), n, r)));
            read.skipped.extend(s);
            read.files.push(rotated);
        }
    }
    if let Some(bytes) = read_if_exists(path)? {
        let source = path.display().to_string();
        let (r, s) = parse_log_lines(&String::from_utf8_lossy(&bytes), &source);
        read.records.extend(r.into_iter().map(|(n, r)| (source.clone(), n, r)));
        read.current_torn = s.iter().any(|s| s.torn);
        read.skipped.extend(s);
        read.current = Some(bytes);
    }
    Ok(read)
}

/// The numbers `n` of the existing rotated files `<path>.<n>`, ascending.
fn rotated_numbers(path: &Path) -> Result<Vec<usize>> {
    let dir = parent(path);
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else { return Ok(Vec::new()) };
    let prefix = format!("{name}.");
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(Error::Io { path: dir, what: "list the audit log directory", source }),
    };
    let mut numbers = Vec::new();
    for entry in entries {
        let entry = entry.map_err(Error::io(&dir, "list the audit log directory"))?;
        let file_name = entry.file_name();
        let number = file_name.to_str().and_then(|f| f.strip_prefix(&prefix)).and_then(|n| n.parse::<usize>().ok());
        if let Some(n) = number.filter(|&n| n >= 1) {
            numbers.push(n);
        }
    }
    numbers.sort_unstable();
    Ok(numbers)
}

fn parent(path: &Path) -> PathBuf {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Takes the one-writer lock. Where the platform cannot lock files, warns
/// and carries on.
fn take_lock(path: &Path) -> Result<File> {
    let lock = lock_path(path);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock)
        .map_err(Error::io(&lock, "open the audit log's lock file"))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => Err(Error::Locked { path: path.to_path_buf(), lock }),
        Err(fs::TryLockError::Error(e)) if e.kind() == io::ErrorKind::Unsupported => {
            warn!(file = %lock.display(), "audit log: file locking is not supported here; make sure only one headroom writes this log");
            Ok(file)
        }
        Err(fs::TryLockError::Error(source)) => {
            Err(Error::Io { path: lock, what: "lock the audit log's lock file", source })
        }
    }
}

fn read_if_exists(path: &Path) -> Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::Io { path: path.to_path_buf(), what: "read the audit log", source }),
    }
}

/// If the file does not end with a newline, cuts the torn last line away
/// or, if it parsed as a record, adds the newline; synced either way.
fn repair_tail(path: &Path, bytes: &[u8], torn: bool) -> Result<Option<Repair>> {
    if bytes.last().is_none_or(|&b| b == b'\n') {
        return Ok(None);
    }
    let keep = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let line = bytes[..keep].iter().filter(|&&b| b == b'\n').count() + 1;
    let mut file =
        OpenOptions::new().write(true).open(path).map_err(Error::io(path, "open the audit log to repair it"))?;
    let repair = if torn {
        file.set_len(keep as u64).map_err(Error::io(path, "cut a torn last line from the audit log"))?;
        Repair::Truncated { line, bytes: (bytes.len() - keep) as u64 }
    } else {
        file.seek(SeekFrom::End(0))
            .and_then(|_| file.write_all(b"\n"))
            .map_err(Error::io(path, "terminate the last line of the audit log"))?;
        Repair::Terminated { line }
    };
    file.sync_data().map_err(Error::io(path, "sync the repaired audit log"))?;
    Ok(Some(repair))
}

/// Makes renames and new files in `dir` durable.
fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    File::open(dir).and_then(|d| d.sync_all()).map_err(Error::io(dir, "sync the audit log directory"))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

#[cfg(test)]
mod tests {
    use headroom_core::Action;
    use headroom_testing::fixtures;

    use super::*;

    fn decision(target: &str, window_start_ms: i64) -> Decision {
        fixtures::decision(target, &format!("systemd/{target}.service"), Action::Restart)
            .risk("restart_loop")
            .window(window_start_ms)
            .decided_at(window_start_ms)
            .reason("5 restarts in 10 min")
            .build()
    }

    #[test]
    fn begin_proceeds_once_then_reports_done() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs/audit.jsonl");
        let (mut log, report) = AuditLog::open(&path, AuditOptions::default()).unwrap();
        assert_eq!((report.records, report.skipped.len(), report.repair), (0, 0, None));
        let d = decision("api", 0);
        assert_eq!(log.begin(&d, 1).unwrap(), Begin::Proceed);
        assert_eq!(log.begin(&d, 2).unwrap(), Begin::Pending(d.clone()));
        log.append_outcome(&d.id, "api", &Outcome::Succeeded, 3).unwrap();
        assert_eq!(log.begin(&d, 4).unwrap(), Begin::AlreadyDone(Outcome::Succeeded));
        let err = log.append_intent(&d, 5).unwrap_err().to_string();
        assert!(err.contains("audit.jsonl: refused to record decision") && err.contains("at most once"), "{err}");
        assert_eq!(fs::read_to_string(&path).unwrap().lines().count(), 2);
    }

    #[test]
    fn a_failed_decision_is_retried() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = AuditLog::open(dir.path().join("audit.jsonl"), AuditOptions::default()).unwrap();
        let d = decision("api", 0);
        assert_eq!(log.begin(&d, 1).unwrap(), Begin::Proceed);
        log.append_outcome(&d.id, "api", &Outcome::Failed { error: "D-Bus timeout".into() }, 2).unwrap();
        assert_eq!(log.begin(&d, 3).unwrap(), Begin::Proceed);
        assert_eq!(log.ledger().attempts(&d.id), 2);
    }

    #[test]
    fn bad_outcomes_and_options_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let err = AuditLog::open(&path, AuditOptions { max_bytes: 1024, keep: 0 }).unwrap_err();
        assert!(matches!(err, Error::Options { .. }), "{err}");
        let (mut log, _) = AuditLog::open(&path, AuditOptions::default()).unwrap();
        let d = decision("api", 0);
        assert!(matches!(log.append_outcome(&d.id, "api", &Outcome::Succeeded, 1), Err(Error::Refused { .. })));
        assert!(matches!(log.reconcile(&d.id, &Outcome::Succeeded, 1), Err(Error::Refused { .. })));
        log.begin(&d, 1).unwrap();
        assert!(matches!(log.append_outcome(&d.id, "api", &Outcome::Pending, 2), Err(Error::Refused { .. })));
        assert!(matches!(log.append_outcome(&d.id, "web", &Outcome::Succeeded, 2), Err(Error::Refused { .. })));
    }

    #[test]
    fn read_ledger_reads_beside_the_writer_and_a_missing_log_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        assert!(read_ledger(&path).unwrap_err().to_string().contains("audit.jsonl: could not read the audit log"));
        let (mut log, _) = AuditLog::open(&path, AuditOptions::default()).unwrap();
        let d = decision("api", 0);
        log.begin(&d, 1).unwrap();
        let (ledger, report) = read_ledger(&path).unwrap();
        assert_eq!((ledger.pending(), report.skipped.len()), (vec![&d], 0));
    }

    #[test]
    fn lowering_keep_drops_the_files_above_it_at_the_next_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let write = |keep, from: i64, to: i64| {
            let (mut log, _) = AuditLog::open(&path, AuditOptions { max_bytes: 1, keep }).unwrap();
            for i in from..to {
                log.begin(&decision("api", i), i).unwrap();
            }
        };
        write(5, 0, 6);
        assert_eq!(rotated_numbers(&path).unwrap(), [1, 2, 3, 4, 5]);
        write(2, 6, 7);
        assert_eq!(rotated_numbers(&path).unwrap(), [1, 2]);
        assert_eq!(read_ledger(&path).unwrap().0.pending().len(), 3);
    }
}
