//! The audit log's record format, and what a log says: which actions were
//! done, which are still pending, and the history the policy needs.
//!
//! This module is pure: it turns text into records and records into a
//! [`Ledger`]. The writer (files, fsync, rotation, locking) lives in
//! `headroom-actuate`.
//!
//! # Format
//!
//! The log is JSON Lines, UTF-8, one record per line, appended and never
//! rewritten. Every record has the format version `v` (currently 1), its
//! `kind`, `at_ms`, the cycle's `now` it belongs to (the planning time: the
//! simulated clock in a replay, the data's newest sample for `--now end`), and
//! `written_ms`, this machine's wall-clock time when the line was written
//! (both ms since the epoch; `written_ms` is absent from lines written before
//! it existed):
//!
//! ```text
//! {"v":1,"written_ms":1700000000350,"kind":"intent","at_ms":1700000000000,"decision":{"id":"571d7bc05f1b5525","target":"cart","mode":"enforce",…}}
//! {"v":1,"written_ms":1700000002100,"kind":"outcome","at_ms":1700000000000,"id":"571d7bc05f1b5525","target":"cart","outcome":{"status":"succeeded"}}
//! ```
//!
//! * An **intent** holds the whole [`Decision`] and is written (and synced to
//!   disk) *before* the action is carried out.
//! * An **outcome** names the decision `id` and `target` and says how it
//!   ended: `{"status":"dry_run"}`, `{"status":"succeeded"}`,
//!   `{"status":"failed","error":"…"}` or
//!   `{"status":"verification_failed","detail":"…"}`.
//!
//! So `grep <id> audit.jsonl*` shows everything that happened to one
//! decision, and an intent with no outcome is an action whose result is
//! unknown (the process died while acting): it is *pending* and must be
//! reconciled by checking the real state, never by acting again.
//!
//! # Reading
//!
//! [`parse_log`] never fails: a line that is not a record is skipped and
//! reported ([`Skipped`]). The last line of a file without a newline is what a
//! crash in the middle of a write leaves behind; it is reported as *torn*.
//! [`replay`] folds the records, oldest first, into a [`Ledger`]:
//!
//! * A decision id is **done** once an outcome `succeeded` or
//!   `verification_failed` is recorded for it, or `dry_run` for a decision
//!   whose mode is dry-run: it is never carried out again, and later records
//!   cannot undo that (a later `failed`, or a stray intent, is ignored and
//!   reported). A later `verification_failed` refines `succeeded`.
//! * **A dry run never blocks the real action.** The mode is part of the
//!   decision id, and a decision made for an enforced target but only
//!   recorded (`act` without `--enforce`) is written as its dry-run twin
//!   (`Decision::as_dry_run`: mode dry-run, its own id). A `dry_run` outcome
//!   under an *enforced* id (written by headroom before this rule) is read as
//!   "not carried out": the enforced action stays possible, as after `failed`.
//! * A **failed** action is not done: a later cycle may try the same id
//!   again, writing a new intent (a new attempt; see [`Ledger::attempts`]).
//! * Records repeated for the same id (an outcome written again by a
//!   reconciliation, an intent repeated) never duplicate history: there is
//!   one [`PastAction`] per decision id.
//! * What a well-behaved writer never writes is reported as an [`Anomaly`]
//!   with its file and line ([`replay_lines`]): an outcome that contradicts
//!   the one already recorded, an outcome with no intent in the files read,
//!   and an intent repeated after its outcome (or before it, for the same
//!   attempt). The ledger keeps the first word in each case.

use std::collections::HashMap;
use std::fmt;

use headroom_core::{Decision, Mode};
use serde::{Deserialize, Serialize};

use crate::state::{Outcome, PastAction};

/// The format version this build writes and reads.
pub const VERSION: u32 = 1;

/// One line of the audit log.
#[expect(clippy::large_enum_variant, reason = "a few records per cycle; boxing would only clutter matching")]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Record {
    /// About to carry out (or record, in dry-run) a decision.
    Intent {
        /// When the record was written, ms since the epoch.
        at_ms: i64,
        /// The decision, in full.
        decision: Decision,
    },
    /// How a decision ended.
    Outcome {
        /// When the record was written, ms since the epoch.
        at_ms: i64,
        /// The decision id.
        id: String,
        /// The decision's target.
        target: String,
        /// How it ended (never [`Outcome::Pending`]).
        outcome: Outcome,
    },
}

/// The record with its version and wall-clock write time, as written: `v`
/// comes first on the line.
#[derive(Serialize)]
struct LineOut<'a> {
    v: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    written_ms: Option<i64>,
    #[serde(flatten)]
    record: &'a Record,
}

#[derive(Deserialize)]
struct LineIn {
    v: u32,
    #[serde(flatten)]
    record: Record,
}

/// Only the version, to explain a line that does not parse.
#[derive(Deserialize)]
struct VersionOnly {
    v: u32,
}

impl Record {
    /// The decision id the record is about.
    pub fn id(&self) -> &str {
        match self {
            Record::Intent { decision, .. } => &decision.id,
            Record::Outcome { id, .. } => id,
        }
    }

    /// The record as one line of the log, with its trailing newline.
    ///
    /// Fails if the line would not read back (e.g. a non-finite number in the
    /// evidence, which JSON writes as `null`): a record that cannot be read
    /// back must not be written, or the action it guards could be repeated.
    pub fn to_line(&self) -> serde_json::Result<String> {
        self.to_line_written_at(None)
    }

    /// [`Record::to_line`], with `written_ms`: the wall-clock time of writing
    /// (the writer passes this machine's clock; the record's `at_ms` is the
    /// cycle's planning time, which may be simulated or the data's end).
    pub fn to_line_written_at(&self, written_ms: Option<i64>) -> serde_json::Result<String> {
        let mut line = serde_json::to_string(&LineOut { v: VERSION, written_ms, record: self })?;
        serde_json::from_str::<LineIn>(&line)?;
        line.push('\n');
        Ok(line)
    }

    /// Parses one line (without its newline).
    pub fn from_line(line: &str) -> Result<Record, String> {
        match serde_json::from_str::<LineIn>(line) {
            Ok(LineIn { v: VERSION, record }) => Ok(record),
            Ok(LineIn { v, .. }) => Err(unsupported(v)),
            Err(e) => match serde_json::from_str::<VersionOnly>(line) {
                Ok(VersionOnly { v }) if v != VERSION => Err(unsupported(v)),
                _ => Err(e.to_string()),
            },
        }
    }
}

fn unsupported(v: u32) -> String {
    format!("format version v={v} is not supported (this headroom reads v={VERSION})")
}

/// A line of a log that is not a record, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The file (or other source) it came from.
    pub source: String,
    /// 1-based line number.
    pub line: usize,
    /// What is wrong with it.
    pub why: String,
    /// Whether it is the torn last line a crash in the middle of a write
    /// leaves behind (no newline at the end of the file). The writer removes
    /// it before appending.
    pub torn: bool,
}

impl fmt::Display for Skipped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.source, self.line, self.why)
    }
}

/// Parses a whole log file's text. `source` names it in the [`Skipped`]
/// entries. Blank lines are ignored; every other line that is not a record
/// is skipped and reported, never fatal.
pub fn parse_log(text: &str, source: &str) -> (Vec<Record>, Vec<Skipped>) {
    let (records, skipped) = parse_log_lines(text, source);
    (records.into_iter().map(|(_, r)| r).collect(), skipped)
}

/// [`parse_log`], each record with its 1-based line number.
pub fn parse_log_lines(text: &str, source: &str) -> (Vec<(usize, Record)>, Vec<Skipped>) {
    let mut records = Vec::new();
    let mut skipped = Vec::new();
    let terminated = text.is_empty() || text.ends_with('\n');
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match Record::from_line(line) {
            Ok(record) => records.push((i + 1, record)),
            Err(why) => {
                let torn = !terminated && i + 1 == lines.len();
                let why = if torn {
                    format!("torn last line (no newline at the end: a write was cut short, e.g. by a crash): {why}")
                } else {
                    why
                };
                skipped.push(Skipped { source: source.to_owned(), line: i + 1, why, torn });
            }
        }
    }
    (records, skipped)
}

/// Whether an outcome, recorded for a decision of `mode`, means the decision
/// must never be carried out again. `dry_run` is final only for a dry-run
/// decision: recorded under an enforced id, it did not carry anything out.
pub fn is_final(outcome: &Outcome, mode: Mode) -> bool {
    match outcome {
        Outcome::Succeeded | Outcome::VerificationFailed { .. } => true,
        Outcome::DryRun => mode == Mode::DryRun,
        Outcome::Pending | Outcome::Failed { .. } => false,
    }
}

/// A record that a well-behaved writer would not have written, where it is.
/// The ledger keeps the first word; this says what was ignored and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anomaly {
    /// The file (or other source) it came from.
    pub source: String,
    /// 1-based line number.
    pub line: usize,
    /// The decision id the record is about.
    pub id: String,
    /// What is wrong with it.
    pub what: String,
}

impl fmt::Display for Anomaly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: decision {}: {}", self.source, self.line, self.id, self.what)
    }
}

/// What one decision id has come to.
#[derive(Debug, Clone, PartialEq)]
struct Entry {
    /// The latest intent, if one was read (it may have been rotated away).
    intent: Option<Decision>,
    /// Intents read, attempts after a failure included.
    attempts: u32,
    /// The outcome of the latest attempt.
    outcome: Outcome,
}

impl Default for Entry {
    /// Nothing read yet: no intent, no attempt, no outcome.
    fn default() -> Self {
        Self { intent: None, attempts: 0, outcome: Outcome::Pending }
    }
}

impl Entry {
    /// Done: never to be carried out again. An outcome whose intent is not
    /// known (rotated away) is judged as for a dry-run decision: `dry_run`
    /// then means the id was a dry run's.
    fn done(&self) -> bool {
        is_final(&self.outcome, self.intent.as_ref().map_or(Mode::DryRun, |d| d.mode))
    }
}

/// What an audit log says: one entry per decision id. Built by [`replay`]
/// and kept up to date by the writer with [`Ledger::apply`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ledger {
    entries: HashMap<String, Entry>,
    /// Ids with an intent, oldest latest-intent first.
    order: Vec<String>,
}

/// Folds records (oldest first) into a [`Ledger`].
pub fn replay(records: &[Record]) -> Ledger {
    let mut ledger = Ledger::default();
    for record in records {
        ledger.apply(record);
    }
    ledger
}

/// [`replay`] of records with their file and line, reporting every
/// [`Anomaly`] where it is. `records` is `(source, line, record)`, oldest first.
pub fn replay_lines<'a>(records: impl IntoIterator<Item = (&'a str, usize, &'a Record)>) -> (Ledger, Vec<Anomaly>) {
    let mut ledger = Ledger::default();
    let mut anomalies = Vec::new();
    for (source, line, record) in records {
        if let Some(what) = ledger.apply(record) {
            anomalies.push(Anomaly { source: source.to_owned(), line, id: record.id().to_owned(), what });
        }
    }
    (ledger, anomalies)
}

impl Ledger {
    /// Adds one record, read or just written. Rules in the [module docs](self).
    /// Returns what is wrong with the record, if a well-behaved writer would
    /// not have written it (the ledger then keeps the first word).
    pub fn apply(&mut self, record: &Record) -> Option<String> {
        match record {
            Record::Intent { decision, .. } => {
                let entry = self.entries.entry(decision.id.clone()).or_default();
                if entry.done() {
                    // Done is done: a stray intent does not reopen it. (An
                    // outcome read before its intent only gains the intent.)
                    if entry.intent.is_none() {
                        entry.attempts += 1;
                        entry.intent = Some(decision.clone());
                        self.order.push(decision.id.clone());
                        return None;
                    }
                    return Some(format!("intent repeated after its outcome ({:?}): ignored", entry.outcome));
                }
                if entry.intent.is_some() && entry.outcome == Outcome::Pending {
                    // The same attempt written twice: not a new attempt.
                    entry.intent = Some(decision.clone());
                    return Some("intent repeated with no outcome between: read as the same attempt".into());
                }
                entry.attempts += 1;
                entry.outcome = Outcome::Pending;
                entry.intent = Some(decision.clone());
                self.order.retain(|id| id != &decision.id);
                self.order.push(decision.id.clone());
                None
            }
            Record::Outcome { id, outcome, .. } => {
                if *outcome == Outcome::Pending {
                    return Some("an outcome record says `pending`: ignored".into());
                }
                let entry = self.entries.entry(id.clone()).or_default();
                let orphan = entry.intent.is_none() && entry.outcome == Outcome::Pending;
                let previous = entry.outcome.clone();
                let mut anomaly = None;
                if entry.done() {
                    let refines =
                        previous == Outcome::Succeeded && matches!(outcome, Outcome::VerificationFailed { .. });
                    if refines {
                        entry.outcome = outcome.clone();
                    } else if *outcome != previous {
                        anomaly =
                            Some(format!("outcome {outcome:?} contradicts {previous:?} recorded before: ignored"));
                    }
                } else {
                    if previous != Outcome::Pending && *outcome != previous {
                        anomaly = Some(format!(
                            "outcome {outcome:?} follows {previous:?} with no new intent between: the later is kept"
                        ));
                    }
                    entry.outcome = outcome.clone();
                }
                if orphan {
                    anomaly = Some("outcome with no intent in the files read (or its intent was rotated away)".into());
                }
                anomaly
            }
        }
    }

    /// One past action per decision id that has an intent, oldest (latest
    /// attempt) first, with its outcome ([`Outcome::Pending`] if none yet).
    pub fn history(&self) -> Vec<PastAction> {
        self.order.iter().filter_map(|id| self.past_action(id)).collect()
    }

    /// [`Ledger::history`] of one target.
    pub fn history_for(&self, target: &str) -> Vec<PastAction> {
        self.history().into_iter().filter(|a| a.target == target).collect()
    }

    /// The past action for one decision id, if its intent was read.
    pub fn past_action(&self, id: &str) -> Option<PastAction> {
        let entry = self.entries.get(id)?;
        let d = entry.intent.as_ref()?;
        Some(PastAction::of(d, d.decided_at_ms, entry.outcome.clone()))
    }

    /// Intents with no outcome, oldest first: actions whose result is unknown.
    /// Check the real state of each and record what was found; never simply
    /// carry them out again.
    pub fn pending(&self) -> Vec<&Decision> {
        self.order
            .iter()
            .filter_map(|id| self.entries.get(id))
            .filter(|e| e.outcome == Outcome::Pending)
            .filter_map(|e| e.intent.as_ref())
            .collect()
    }

    /// The pending intent for `id`, if its latest attempt has no outcome.
    pub fn pending_intent(&self, id: &str) -> Option<&Decision> {
        let entry = self.entries.get(id)?;
        if entry.outcome == Outcome::Pending { entry.intent.as_ref() } else { None }
    }

    /// The recorded outcome of `id`'s latest attempt; `None` if the log has
    /// nothing about `id`.
    pub fn outcome(&self, id: &str) -> Option<&Outcome> {
        self.entries.get(id).map(|e| &e.outcome)
    }

    /// Whether `id` is done (succeeded, verification failed, or dry-run for a
    /// dry-run decision): it must never be carried out again. True even if
    /// only the outcome survived rotation.
    pub fn is_done(&self, id: &str) -> bool {
        self.entries.get(id).is_some_and(Entry::done)
    }

    /// How many attempts (intents) were read for `id`: more than one means it
    /// failed and was tried again.
    pub fn attempts(&self, id: &str) -> u32 {
        self.entries.get(id).map_or(0, |e| e.attempts)
    }

    /// Checks that an outcome record for `id` makes sense before it is
    /// written: `id` has an intent for `target`; the outcome is not pending;
    /// a done id only takes `verification_failed` (or the same outcome again).
    /// The error says what is wrong.
    pub fn check_outcome(&self, id: &str, target: &str, outcome: &Outcome) -> Result<(), String> {
        if *outcome == Outcome::Pending {
            return Err("an outcome record cannot be `pending`".into());
        }
        // An id known only from a final outcome (its intent rotated away) may still be refined.
        let Some(entry) = self.entries.get(id).filter(|e| e.intent.is_some() || e.done()) else {
            return Err("no intent is recorded for this id: write the intent first".into());
        };
        if let Some(d) = &entry.intent
            && d.target != target
        {
            return Err(format!("the intent is for target {:?}, not {target:?}", d.target));
        }
        let refines = entry.outcome == Outcome::Succeeded && matches!(outcome, Outcome::VerificationFailed { .. });
        if entry.done() && !refines && *outcome != entry.outcome {
            return Err(format!("already done ({:?}); only verification_failed can follow success", entry.outcome));
        }
        match &entry.outcome {
            Outcome::Failed { .. } => {
                return Err("the last attempt already failed: write a new intent to try again".into());
            }
            Outcome::DryRun if !entry.done() => {
                return Err(
                    "the last attempt was only recorded as a dry run: write a new intent to carry it out".into()
                );
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use headroom_core::Action;
    use headroom_testing::fixtures;

    use super::*;

    fn decision(target: &str, window_start_ms: i64) -> Decision {
        fixtures::decision(target, &format!("k8s/shop/deployment/{target}"), Action::ScaleTo { replicas: 4 })
            .risk("saturation")
            .window(window_start_ms)
            .decided_at(window_start_ms - 1000)
            .reason("p90 cpu crosses 80% of the limit in 2h")
            .build()
    }

    fn intent(d: &Decision) -> String {
        Record::Intent { at_ms: d.decided_at_ms, decision: d.clone() }.to_line().unwrap()
    }

    fn outcome(d: &Decision, outcome: Outcome) -> String {
        Record::Outcome { at_ms: d.decided_at_ms + 500, id: d.id.clone(), target: d.target.clone(), outcome }
            .to_line()
            .unwrap()
    }

    fn failed() -> Outcome {
        Outcome::Failed { error: "apiserver said 409".into() }
    }

    fn ledger(lines: &[String]) -> Ledger {
        let (records, skipped) = parse_log(&lines.concat(), "audit.jsonl");
        assert_eq!(skipped, vec![]);
        replay(&records)
    }

    #[test]
    fn lines_start_with_version_and_kind_and_read_back() {
        let d = decision("cart", 3_600_000);
        let line = intent(&d);
        assert!(line.starts_with(r#"{"v":1,"kind":"intent","at_ms":3599000,"decision":{"id":""#), "{line}");
        assert!(line.ends_with("}\n") && line.matches('\n').count() == 1);
        assert_eq!(
            Record::from_line(line.trim_end()).unwrap(),
            Record::Intent { at_ms: 3_599_000, decision: d.clone() }
        );
        let line = outcome(&d, Outcome::Succeeded);
        assert_eq!(
            line,
            format!(
                "{{\"v\":1,\"kind\":\"outcome\",\"at_ms\":3599500,\"id\":\"{}\",\"target\":\"cart\",\"outcome\":{{\"status\":\"succeeded\"}}}}\n",
                d.id
            )
        );
    }

    #[test]
    fn a_record_that_would_not_read_back_is_refused() {
        let mut d = decision("cart", 0);
        d.evidence = Some(headroom_core::Evidence {
            series: "k8s/shop/deployment/cart:cpu".into(),
            model: "lstm".into(),
            origin_ms: 0,
            quantile: Some(0.9),
            peak: f64::NAN,
            peak_at_ms: 0,
            threshold: 0.8,
            crosses_at_ms: None,
        });
        assert!(Record::Intent { at_ms: 0, decision: d }.to_line().is_err());
    }

    #[test]
    fn bad_lines_are_skipped_with_their_line_number_and_the_rest_is_read() {
        let d = decision("cart", 0);
        let text = format!(
            "{}\nnot json\n{}{{\"v\":1,\"kind\":\"restart\"}}\n{}",
            intent(&d),
            r#"{"v":2,"kind":"intent","at_ms":1,"whatever":true}"#.to_owned() + "\n",
            outcome(&d, Outcome::Succeeded)
        );
        let (records, skipped) = parse_log(&text, "audit.jsonl.1");
        assert_eq!(records.len(), 2);
        assert_eq!(skipped.iter().map(|s| s.line).collect::<Vec<_>>(), [3, 4, 5]);
        assert!(skipped.iter().all(|s| !s.torn && s.source == "audit.jsonl.1"));
        assert!(skipped[1].why.contains("v=2 is not supported"), "{}", skipped[1].why);
        assert!(skipped[0].to_string().starts_with("audit.jsonl.1:3: "), "{}", skipped[0]);
    }

    #[test]
    fn a_torn_last_line_is_reported_as_torn() {
        let d = decision("cart", 0);
        let whole = intent(&d);
        let text = format!("{whole}{}", &whole[..whole.len() / 2]);
        let (records, skipped) = parse_log(&text, "audit.jsonl");
        assert_eq!(records.len(), 1);
        assert_eq!(skipped.len(), 1);
        assert!(skipped[0].torn && skipped[0].line == 2);
        assert!(skipped[0].why.starts_with("torn last line"), "{}", skipped[0].why);

        // A complete record missing only its newline is read, not torn.
        let (records, skipped) = parse_log(whole.trim_end(), "audit.jsonl");
        assert_eq!((records.len(), skipped.len()), (1, 0));
    }

    #[test]
    fn an_intent_without_outcome_is_pending_and_not_done() {
        let d = decision("cart", 0);
        let l = ledger(&[intent(&d)]);
        assert_eq!(l.pending(), vec![&d]);
        assert_eq!(l.pending_intent(&d.id), Some(&d));
        assert!(!l.is_done(&d.id));
        assert_eq!(l.history()[0].outcome, Outcome::Pending);
        assert_eq!(l.history()[0].at_ms, d.decided_at_ms);
    }

    #[test]
    fn succeeded_dry_run_and_verification_failed_are_done() {
        for o in [Outcome::Succeeded, Outcome::DryRun, Outcome::VerificationFailed { detail: "still 95%".into() }] {
            let d = if o == Outcome::DryRun {
                decision("cart", 0).as_dry_run("recorded only")
            } else {
                decision("cart", 0)
            };
            let l = ledger(&[intent(&d), outcome(&d, o.clone())]);
            assert!(l.is_done(&d.id), "{o:?}");
            assert!(l.pending().is_empty());
            assert_eq!(l.history_for("cart")[0].outcome, o);
        }
    }

    #[test]
    fn a_dry_run_never_blocks_the_enforced_action() {
        // Today's writer records a rehearsal under the dry-run twin's own id.
        let d = decision("cart", 0);
        let rehearsal = d.as_dry_run("--enforce not given");
        assert_ne!(rehearsal.id, d.id);
        let l = ledger(&[intent(&rehearsal), outcome(&rehearsal, Outcome::DryRun)]);
        assert!(l.is_done(&rehearsal.id));
        assert!(!l.is_done(&d.id) && l.outcome(&d.id).is_none(), "the enforced id is untouched");

        // A log written before that rule: `dry_run` under the enforced id.
        // It did not carry anything out, so it does not count as done.
        let l = ledger(&[intent(&d), outcome(&d, Outcome::DryRun)]);
        assert!(!l.is_done(&d.id) && l.pending().is_empty());
        assert!(
            l.check_outcome(&d.id, "cart", &Outcome::Succeeded).unwrap_err().contains("only recorded as a dry run")
        );
        // The enforced run writes a new intent (a second attempt) and carries it out once.
        let l = ledger(&[intent(&d), outcome(&d, Outcome::DryRun), intent(&d), outcome(&d, Outcome::Succeeded)]);
        assert!(l.is_done(&d.id));
        assert_eq!((l.attempts(&d.id), l.history().len()), (2, 1));
    }

    #[test]
    fn records_a_writer_would_never_write_are_reported_with_file_and_line() {
        let (a, b, c) = (decision("cart", 0), decision("search", 10_000), decision("web", 20_000));
        let vf = Outcome::VerificationFailed { detail: "still 95%".into() };
        let text = [
            intent(&a),                      // 1
            outcome(&a, Outcome::Succeeded), // 2
            outcome(&a, Outcome::Succeeded), // 3: the same again (a reconciliation): fine
            outcome(&a, vf.clone()),         // 4: refines success: fine
            outcome(&a, failed()),           // 5: contradicts
            intent(&a),                      // 6: intent after its outcome
            outcome(&b, Outcome::Succeeded), // 7: no intent read
            intent(&c),                      // 8
            intent(&c),                      // 9: the same attempt twice
            outcome(&c, failed()),           // 10
            outcome(&c, Outcome::Succeeded), // 11: a failed attempt "succeeds" with no new intent
        ]
        .concat();
        let (records, skipped) = parse_log_lines(&text, "audit.jsonl.1");
        assert!(skipped.is_empty());
        let (l, anomalies) = replay_lines(records.iter().map(|(n, r)| ("audit.jsonl.1", *n, r)));
        let lines: Vec<usize> = anomalies.iter().map(|a| a.line).collect();
        assert_eq!(lines, [5, 6, 7, 9, 11]);
        assert!(anomalies[0].to_string().starts_with(&format!("audit.jsonl.1:5: decision {}: outcome Failed", a.id)));
        assert!(anomalies[0].what.contains("contradicts VerificationFailed"), "{}", anomalies[0]);
        assert!(anomalies[1].what.contains("intent repeated after its outcome"), "{}", anomalies[1]);
        assert!(anomalies[2].what.contains("no intent"), "{}", anomalies[2]);
        assert!(anomalies[4].what.contains("no new intent"), "{}", anomalies[4]);
        // The first word is kept where the log contradicts itself.
        assert_eq!(l.outcome(&a.id), Some(&vf));
        assert!(l.is_done(&a.id));
    }

    #[test]
    fn the_wall_clock_write_time_is_written_beside_the_planning_time() {
        let d = decision("cart", 3_600_000);
        let line = Record::Intent { at_ms: 3_599_000, decision: d.clone() }
            .to_line_written_at(Some(1_800_000_000_000))
            .unwrap();
        assert!(line.starts_with(r#"{"v":1,"written_ms":1800000000000,"kind":"intent","at_ms":3599000,"#), "{line}");
        assert_eq!(Record::from_line(line.trim_end()).unwrap(), Record::Intent { at_ms: 3_599_000, decision: d });
    }

    #[test]
    fn a_failed_action_may_be_retried_and_keeps_one_history_entry() {
        let d = decision("cart", 0);
        let l = ledger(&[intent(&d), outcome(&d, failed())]);
        assert!(!l.is_done(&d.id) && l.pending().is_empty());
        assert_eq!(
            l.check_outcome(&d.id, "cart", &Outcome::Succeeded).unwrap_err(),
            "the last attempt already failed: write a new intent to try again"
        );

        let l = ledger(&[intent(&d), outcome(&d, failed()), intent(&d)]);
        assert_eq!(l.pending(), vec![&d]);
        assert_eq!(l.attempts(&d.id), 2);

        let l = ledger(&[intent(&d), outcome(&d, failed()), intent(&d), outcome(&d, Outcome::Succeeded)]);
        assert!(l.is_done(&d.id));
        assert_eq!(l.history().len(), 1);
    }

    #[test]
    fn repeated_records_do_not_duplicate_history() {
        let d = decision("cart", 0);
        // Crash after the intent, the intent seen again, then a reconciled outcome written twice.
        let l = ledger(&[intent(&d), intent(&d), outcome(&d, Outcome::Succeeded), outcome(&d, Outcome::Succeeded)]);
        assert_eq!(l.history().len(), 1);
        assert_eq!(l.attempts(&d.id), 1);
        assert!(l.is_done(&d.id));
    }

    #[test]
    fn done_stays_done() {
        let d = decision("cart", 0);
        let l = ledger(&[intent(&d), outcome(&d, Outcome::Succeeded), outcome(&d, failed()), intent(&d)]);
        assert!(l.is_done(&d.id) && l.pending().is_empty());
        assert_eq!(l.outcome(&d.id), Some(&Outcome::Succeeded));
        // Verification refines a success.
        let vf = Outcome::VerificationFailed { detail: "still 95%".into() };
        assert_eq!(l.check_outcome(&d.id, "cart", &vf), Ok(()));
        assert!(l.check_outcome(&d.id, "cart", &failed()).is_err());
        let l = ledger(&[intent(&d), outcome(&d, Outcome::Succeeded), outcome(&d, vf.clone())]);
        assert_eq!(l.outcome(&d.id), Some(&vf));
    }

    #[test]
    fn an_outcome_whose_intent_was_rotated_away_still_marks_the_id_done() {
        let d = decision("cart", 0);
        let l = ledger(&[outcome(&d, Outcome::Succeeded)]);
        assert!(l.is_done(&d.id));
        assert!(l.history().is_empty() && l.pending().is_empty());
    }

    #[test]
    fn history_is_per_target_in_order_of_latest_attempt() {
        let (a, b, c) = (decision("cart", 0), decision("search", 10_000), decision("cart", 20_000));
        let l = ledger(&[
            intent(&a),
            outcome(&a, failed()),
            intent(&b),
            outcome(&b, Outcome::DryRun),
            intent(&c),
            outcome(&c, Outcome::Succeeded),
            intent(&a),
        ]);
        let ids: Vec<String> = l.history().into_iter().map(|p| p.id).collect();
        assert_eq!(ids, [b.id.clone(), c.id.clone(), a.id.clone()]);
        let cart: Vec<String> = l.history_for("cart").into_iter().map(|p| p.id).collect();
        assert_eq!(cart, [c.id.clone(), a.id.clone()]);
        assert_eq!(l.pending(), vec![&a]);
    }

    #[test]
    fn outcomes_are_checked_before_writing() {
        let d = decision("cart", 0);
        let l = ledger(&[intent(&d)]);
        assert_eq!(l.check_outcome(&d.id, "cart", &Outcome::Succeeded), Ok(()));
        assert!(l.check_outcome(&d.id, "cart", &Outcome::Pending).is_err());
        assert!(l.check_outcome(&d.id, "search", &Outcome::Succeeded).unwrap_err().contains("\"cart\""));
        assert!(l.check_outcome("0000000000000000", "cart", &Outcome::Succeeded).is_err());
    }
}
