//! The `Actuator` plug-in boundary, and carrying a decision out through the
//! audit log.
//!
//! An actuator reads a target's current state ([`Actuator::observe`]), says
//! what a decision would change ([`Actuator::plan`], used for dry-run and
//! explanations) and changes it ([`Actuator::apply`]). `apply` must be
//! idempotent by decision id: called twice with the same decision it acts
//! once (scaling to the count already set, or restarting for an id already
//! carried out, does nothing). [`execute`] wraps every `apply` in the audit
//! log: the intent is on disk before anything is touched, the outcome after.

use std::fmt::Debug;

use headroom_core::{Action, BoxFuture, Decision, Mode};
use headroom_remediate::config::{StartLimit, Target};
use headroom_remediate::state::Outcome;
use serde::{Deserialize, Serialize};

use crate::audit::{AuditLog, Begin};
use crate::error::{Error, Result};

/// What an actuator can read of a target now.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Observed {
    /// Replicas (instances) running or desired, if the target scales.
    pub replicas: Option<u32>,
    /// The platform's own word for its state (`active`, `running`, `failed`, `Progressing`…).
    pub state: Option<String>,
    /// The platform's restart counter (systemd `NRestarts`, container restarts…).
    pub restarts: Option<u64>,
    /// The platform's start limit, when it has one.
    pub start_limit: Option<StartLimit>,
    /// Anything else worth showing, in words.
    pub detail: Option<String>,
}

/// What `apply` did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Applied {
    /// Whether anything was changed (false: already in the asked state).
    pub changed: bool,
    /// What was done, in words (API call, unit, object).
    pub detail: String,
}

/// Carries decisions out on one kind of platform.
pub trait Actuator: Send + Sync + Debug {
    /// The actuator's name (`systemd`, `kubernetes`, `process`, `windows`, `dry-run`).
    fn name(&self) -> &str;

    /// The target's current state.
    fn observe<'a>(&'a self, target: &'a Target) -> BoxFuture<'a, Result<Observed>>;

    /// What applying `decision` would do, without doing it.
    fn plan<'a>(&'a self, target: &'a Target, decision: &'a Decision) -> BoxFuture<'a, Result<String>>;

    /// Carries `decision` out. Idempotent by decision id.
    fn apply<'a>(&'a self, target: &'a Target, decision: &'a Decision) -> BoxFuture<'a, Result<Applied>>;
}

/// Records what would be done and changes nothing: the default actuator,
/// and the one the backtest uses.
#[derive(Debug, Default)]
pub struct DryRun {
    planned: std::sync::Mutex<Vec<Decision>>,
}

impl DryRun {
    /// A dry-run actuator with nothing recorded.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every decision passed to `apply`, in order.
    pub fn recorded(&self) -> Vec<Decision> {
        self.planned.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

/// The words for what `decision` would do to `target`.
pub fn describe(target: &Target, decision: &Decision) -> String {
    match decision.action {
        Action::None => format!("nothing for {}", target.name),
        Action::ScaleTo { replicas } => format!("scale {} ({}) to {replicas}", target.name, target.entity),
        Action::Restart => format!("restart {} ({})", target.name, target.entity),
    }
}

impl Actuator for DryRun {
    fn name(&self) -> &str {
        "dry-run"
    }

    fn observe<'a>(&'a self, target: &'a Target) -> BoxFuture<'a, Result<Observed>> {
        Box::pin(async move { Ok(Observed { replicas: target.replicas, ..Observed::default() }) })
    }

    fn plan<'a>(&'a self, target: &'a Target, decision: &'a Decision) -> BoxFuture<'a, Result<String>> {
        Box::pin(async move { Ok(format!("would {}", describe(target, decision))) })
    }

    fn apply<'a>(&'a self, target: &'a Target, decision: &'a Decision) -> BoxFuture<'a, Result<Applied>> {
        Box::pin(async move {
            let mut planned = self.planned.lock().map_err(|_| Error::Actuator {
                actuator: "dry-run".into(),
                target: target.name.clone(),
                why: "a thread panicked while recording".into(),
            })?;
            let changed = !planned.iter().any(|d| d.id == decision.id);
            if changed {
                planned.push(decision.clone());
            }
            Ok(Applied { changed, detail: format!("dry-run: would {}", describe(target, decision)) })
        })
    }
}

/// Settles an intent written before a crash (no outcome recorded) by
/// observing the target, never by acting again: a scale whose count is in
/// place is `succeeded`; anything else (a restart cannot be seen afterwards
/// with certainty) is `failed`, and a later cycle decides afresh from new data.
/// A dry-run intent had nothing to carry out: it is recorded as `dry_run`,
/// what it was, without asking the platform.
pub async fn reconcile(
    log: &mut AuditLog,
    actuator: &dyn Actuator,
    target: &Target,
    decision: &Decision,
    now_ms: i64,
) -> Result<Executed> {
    if decision.mode == Mode::DryRun {
        log.reconcile(&decision.id, &Outcome::DryRun, now_ms)?;
        return Ok(Executed {
            id: decision.id.clone(),
            outcome: Some(Outcome::DryRun),
            detail: "a dry run interrupted before its outcome was written: nothing was to be done".into(),
        });
    }
    let observed = actuator.observe(target).await?;
    let done = matches!(decision.action, Action::ScaleTo { replicas } if observed.replicas == Some(replicas));
    let outcome = if done {
        Outcome::Succeeded
    } else {
        Outcome::Failed { error: "interrupted before its outcome was recorded; not repeated".into() }
    };
    log.reconcile(&decision.id, &outcome, now_ms)?;
    Ok(Executed { id: decision.id.clone(), outcome: Some(outcome), detail: format!("reconciled from {observed:?}") })
}

/// How [`execute`] ended for one decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Executed {
    /// The decision id.
    pub id: String,
    /// The outcome recorded in the audit log (None: nothing to do, nothing recorded).
    pub outcome: Option<Outcome>,
    /// What happened, in words.
    pub detail: String,
}

impl Executed {
    /// Whether the decision had been carried out before and was not repeated.
    pub fn already_done(&self) -> bool {
        self.outcome.is_some() && self.detail.contains("not repeated")
    }

    /// The outcome in one word, for metrics and status: `not_acted`,
    /// `already_done`, `dry_run`, `succeeded`, `failed`, `verification_failed`, `pending`.
    pub fn label(&self) -> &'static str {
        match &self.outcome {
            None => "not_acted",
            Some(_) if self.already_done() => "already_done",
            Some(Outcome::DryRun) => "dry_run",
            Some(Outcome::Succeeded) => "succeeded",
            Some(Outcome::Failed { .. }) => "failed",
            Some(Outcome::VerificationFailed { .. }) => "verification_failed",
            Some(Outcome::Pending) => "pending",
        }
    }
}

/// Carries `decision` out through `actuator`, with the audit log around it:
///
/// * `none` → nothing recorded;
/// * an id the log has as done → nothing done again (`AlreadyDone`);
/// * an intent without outcome (a crash while acting) → reconciled by
///   observing the target, never by acting again: if the target is already
///   in the decided state the outcome is `succeeded`, else `failed`, and a
///   later cycle decides afresh;
/// * dry-run (the decision's mode, or `enforce == false`) → intent and a
///   `dry_run` outcome, the actuator's `plan` as the detail, nothing touched.
///   An enforced decision executed with `enforce == false` is recorded as its
///   dry-run twin ([`Decision::as_dry_run`], its own id), so the rehearsal
///   never makes the real action count as done; [`Executed::id`] is then the
///   twin's id;
/// * enforce → intent (written and fsynced by [`AuditLog::begin`]), `apply`, outcome.
pub async fn execute(
    log: &mut AuditLog,
    actuator: &dyn Actuator,
    target: &Target,
    decision: &Decision,
    enforce: bool,
    now_ms: i64,
) -> Result<Executed> {
    let twin;
    let decision = if !enforce && decision.mode == Mode::Enforce {
        twin = decision.as_dry_run("not enforced in this run (no --enforce)");
        &twin
    } else {
        decision
    };
    let id = decision.id.clone();
    if !decision.action.is_some() {
        return Ok(Executed { id, outcome: None, detail: "no action".into() });
    }
    match log.begin(decision, now_ms)? {
        Begin::AlreadyDone(outcome) => {
            return Ok(Executed { id, outcome: Some(outcome), detail: "already carried out: not repeated".into() });
        }
        Begin::Pending(_) => return reconcile(log, actuator, target, decision, now_ms).await,
        Begin::Proceed => {}
    }
    // `begin` has written and synced the intent.
    if decision.mode == Mode::DryRun {
        let outcome = Outcome::DryRun;
        let detail = match actuator.plan(target, decision).await {
            Ok(detail) => detail,
            Err(e) => format!("dry-run (could not ask the platform: {e})"),
        };
        log.append_outcome(&id, &decision.target, &outcome, now_ms)?;
        return Ok(Executed { id, outcome: Some(outcome), detail });
    }
    let outcome = match actuator.apply(target, decision).await {
        Ok(applied) => {
            let outcome = Outcome::Succeeded;
            log.append_outcome(&id, &decision.target, &outcome, now_ms)?;
            return Ok(Executed { id, outcome: Some(outcome), detail: applied.detail });
        }
        Err(e) => Outcome::Failed { error: e.to_string() },
    };
    log.append_outcome(&id, &decision.target, &outcome, now_ms)?;
    Ok(Executed { id, outcome: Some(outcome.clone()), detail: format!("{outcome:?}") })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use headroom_remediate::config::Platform;
    use headroom_testing::fixtures;

    use super::*;
    use crate::audit::AuditOptions;

    /// An actuator that counts what it is asked to do and holds a replica count.
    #[derive(Debug, Default)]
    struct Counting {
        applied: AtomicU32,
        replicas: AtomicU32,
    }

    impl Actuator for Counting {
        fn name(&self) -> &str {
            "counting"
        }
        fn observe<'a>(&'a self, _: &'a Target) -> BoxFuture<'a, Result<Observed>> {
            Box::pin(async move {
                Ok(Observed { replicas: Some(self.replicas.load(Ordering::SeqCst)), ..Observed::default() })
            })
        }
        fn plan<'a>(&'a self, t: &'a Target, d: &'a Decision) -> BoxFuture<'a, Result<String>> {
            Box::pin(async move { Ok(describe(t, d)) })
        }
        fn apply<'a>(&'a self, _: &'a Target, d: &'a Decision) -> BoxFuture<'a, Result<Applied>> {
            Box::pin(async move {
                self.applied.fetch_add(1, Ordering::SeqCst);
                if let Action::ScaleTo { replicas } = d.action {
                    self.replicas.store(replicas, Ordering::SeqCst);
                }
                Ok(Applied { changed: true, detail: "done".into() })
            })
        }
    }

    fn decision(mode: Mode) -> Decision {
        fixtures::decision("web", "k8s/shop/deployment/web", Action::ScaleTo { replicas: 5 })
            .mode(mode)
            .risk("saturation")
            .window(3_600_000)
            .decided_at(3_000_000)
            .reason("p90 above the level in 1h")
            .build()
    }

    /// A process that wrote `d`'s intent to the log at `path` and died before acting.
    fn died_after_intent(path: &std::path::Path, d: &Decision) {
        let (mut log, _) = AuditLog::open(path, AuditOptions::default()).unwrap();
        assert_eq!(log.begin(d, 3_000_000).unwrap(), Begin::Proceed);
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
    }

    #[test]
    fn the_same_decision_executed_twice_acts_once() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = AuditLog::open(dir.path().join("audit.jsonl"), AuditOptions::default()).unwrap();
        let t = Target::new("web", Platform::Kubernetes, "k8s/shop/deployment/web", "cpu");
        let a = Counting::default();
        let d = decision(Mode::Enforce);
        rt().block_on(async {
            let first = execute(&mut log, &a, &t, &d, true, 3_000_000).await.unwrap();
            assert_eq!(first.outcome, Some(Outcome::Succeeded));
            let second = execute(&mut log, &a, &t, &d, true, 3_060_000).await.unwrap();
            assert_eq!(second.outcome, Some(Outcome::Succeeded));
            assert!(second.detail.contains("not repeated"), "{second:?}");
        });
        assert_eq!(a.applied.load(Ordering::SeqCst), 1);
        // Without --enforce, or for a dry-run decision, nothing is applied.
        let dry = decision(Mode::DryRun);
        let out = rt().block_on(execute(&mut log, &a, &t, &dry, true, 3_100_000)).unwrap();
        assert_eq!(out.outcome, Some(Outcome::DryRun));
        assert_eq!(a.applied.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_dry_run_of_an_enforced_decision_leaves_the_real_action_possible() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = AuditLog::open(dir.path().join("audit.jsonl"), AuditOptions::default()).unwrap();
        let t = Target::new("web", Platform::Kubernetes, "k8s/shop/deployment/web", "cpu");
        let a = Counting::default();
        let d = decision(Mode::Enforce);
        rt().block_on(async {
            // `act` without --enforce: recorded as the dry-run twin, twice over (once).
            let rehearsal = execute(&mut log, &a, &t, &d, false, 3_000_000).await.unwrap();
            assert_eq!(rehearsal.outcome, Some(Outcome::DryRun));
            assert_ne!(rehearsal.id, d.id);
            let again = execute(&mut log, &a, &t, &d, false, 3_060_000).await.unwrap();
            assert!(again.detail.contains("not repeated"), "{again:?}");
            assert!(!log.ledger().is_done(&d.id));
            // `act --enforce` later: carried out, once.
            let real = execute(&mut log, &a, &t, &d, true, 3_120_000).await.unwrap();
            assert_eq!((real.id.as_str(), real.outcome), (d.id.as_str(), Some(Outcome::Succeeded)));
        });
        assert_eq!(a.applied.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn an_interrupted_dry_run_is_settled_as_a_dry_run_without_asking_the_platform() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let t = Target::new("web", Platform::Kubernetes, "k8s/shop/deployment/web", "cpu");
        let d = decision(Mode::DryRun);
        died_after_intent(&path, &d);
        let (mut log, _) = AuditLog::open(&path, AuditOptions::default()).unwrap();
        let a = Counting::default();
        let out = rt().block_on(execute(&mut log, &a, &t, &d, true, 3_600_000)).unwrap();
        assert_eq!(out.outcome, Some(Outcome::DryRun), "{out:?}");
        assert!(log.ledger().is_done(&d.id) && log.ledger().pending().is_empty());
        assert_eq!(a.applied.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn an_interrupted_intent_is_reconciled_by_observing_not_repeated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let t = Target::new("web", Platform::Kubernetes, "k8s/shop/deployment/web", "cpu");
        let d = decision(Mode::Enforce);
        died_after_intent(&path, &d);
        let (mut log, opened) = AuditLog::open(&path, AuditOptions::default()).unwrap();
        assert_eq!(opened.records, 1);
        let a = Counting::default();
        a.replicas.store(3, Ordering::SeqCst);
        let out = rt().block_on(execute(&mut log, &a, &t, &d, true, 3_600_000)).unwrap();
        assert!(matches!(out.outcome, Some(Outcome::Failed { .. })), "{out:?}");
        assert_eq!(a.applied.load(Ordering::SeqCst), 0, "reconciled, not acted");
        // Had the scale landed before the crash, the reconciliation finds it done.
        let d2 = Decision { id: "feedfacefeedface".into(), ..decision(Mode::Enforce) };
        assert_eq!(log.begin(&d2, 3_700_000).unwrap(), Begin::Proceed);
        a.replicas.store(5, Ordering::SeqCst);
        let out = rt().block_on(reconcile(&mut log, &a, &t, &d2, 3_800_000)).unwrap();
        assert_eq!(out.outcome, Some(Outcome::Succeeded));
        assert_eq!(a.applied.load(Ordering::SeqCst), 0);
    }
}
