//! The runner: one full step of headroom's loop, from data to actions.
//!
//! data (read from a store or a file by the caller) → resample the targets'
//! series → forecast → decide ([`plan`]) → settle intents a crash left
//! without an outcome → record failed verifications → carry each decision
//! out through its platform's actuator, with the audit log around every
//! action ([`step`]).
//!
//! `headroom plan` runs [`plan`]; `headroom act`, the daemon's act job and
//! the operator run [`step`]. The runner takes the time (`now_ms`), the
//! audit log and the actuators as arguments and reads no clock and no global
//! state, so it runs the same under a simulated clock.

use std::collections::BTreeMap;
use std::sync::Arc;

use headroom_actuate::{Actuator, AuditLog, DryRun, Executed, Platforms, execute, reconcile};
use headroom_collect::resample::{DEFAULT_MAX_GAP_MS, ResampleConfig, resample};
use headroom_core::{Interrupt, Limits, Mode, ResampledSeries, SeriesData};
use headroom_remediate::audit::Ledger;
use headroom_remediate::state::Outcome;
use headroom_remediate::{Config, PastAction};
use serde::Serialize;

use crate::cycle::{CycleReport, Forecasts, Models, World, decide_with};
use crate::error::Result;
use crate::models::ModelSet;

/// The data a step looks at: raw samples (from a store, a file or a
/// source) and the capacity, threshold and replicas per series.
#[derive(Debug, Clone, Copy)]
pub struct Data<'a> {
    /// Raw samples of every series, sorted by time.
    pub raw: &'a [SeriesData],
    /// Capacity, saturation threshold and replicas per series.
    pub limits: &'a Limits,
}

impl Data<'_> {
    /// The newest sample time over every series.
    pub fn newest_ms(&self) -> Option<i64> {
        self.raw.iter().filter_map(|s| s.ts.last().copied()).max()
    }
}

/// Past actions per target, from an audit ledger.
pub fn history_by_target(ledger: &Ledger) -> BTreeMap<String, Vec<PastAction>> {
    let mut by_target: BTreeMap<String, Vec<PastAction>> = BTreeMap::new();
    for a in ledger.history() {
        by_target.entry(a.target.clone()).or_default().push(a);
    }
    by_target
}

/// The series `cfg`'s targets forecast, on `step_ms` bins (gaps up to an
/// hour interpolated; longer ones stay missing and are reported by the cycle).
pub fn target_grid(raw: &[SeriesData], cfg: &Config, step_ms: i64) -> Result<Vec<ResampledSeries>> {
    let rc = ResampleConfig { step_ms, max_gap_ms: DEFAULT_MAX_GAP_MS, strict: false };
    raw.iter()
        .filter(|s| cfg.targets.iter().any(|t| t.entity == s.key.entity && t.metric == s.key.metric))
        .map(|s| Ok(resample(s, None, &rc)?))
        .collect()
}

/// The forecasts a step decides on.
#[derive(Debug, Clone, Copy)]
pub enum Forecasting<'a> {
    /// Made now, with these models (`plan`, `act`, a scheduled job).
    Fresh(&'a ModelSet),
    /// Made earlier (the daemon forecasts hourly and decides every minute).
    Made(&'a Forecasts),
}

/// Forecasts every target's series of `data` from `now_ms` with `models`.
pub fn forecast(data: &Data<'_>, models: &ModelSet, cfg: &Config, now_ms: i64) -> Result<Forecasts> {
    let grid = target_grid(data.raw, cfg, models.protocol.step_ms)?;
    Ok(forecast_grid(&grid, models, cfg, now_ms))
}

/// Forecasts every target's series of `grid` (from [`target_grid`]) from
/// `now_ms` with `models`: for a caller that frees the raw samples first.
pub fn forecast_grid(grid: &[ResampledSeries], models: &ModelSet, cfg: &Config, now_ms: i64) -> Forecasts {
    let chain = models.fallbacks();
    let m = Models { forecaster: models.forecaster(), fallbacks: &chain, horizon: models.protocol.horizon };
    Forecasts { step_ms: models.protocol.step_ms, ..crate::cycle::forecast(grid, &m, cfg, now_ms) }
}

/// One cycle at `now_ms`: the targets' series resampled, forecast (or the
/// forecasts given) and decided on, with `history` (past actions per
/// target) and the replicas per target that actuators reported. Changes nothing.
pub fn plan(
    data: &Data<'_>,
    forecasting: Forecasting<'_>,
    cfg: &Config,
    history: &BTreeMap<String, Vec<PastAction>>,
    replicas: &BTreeMap<String, u32>,
    now_ms: i64,
) -> Result<CycleReport> {
    let step_ms = match forecasting {
        Forecasting::Fresh(m) => m.protocol.step_ms,
        Forecasting::Made(f) => f.step_ms,
    };
    let grid = target_grid(data.raw, cfg, step_ms)?;
    let world = World { grid: &grid, raw: data.raw, limits: data.limits, replicas };
    match forecasting {
        // The cycle: forecast, then decide on those forecasts.
        Forecasting::Fresh(models) => {
            decide_with(&world, &forecast_grid(&grid, models, cfg, now_ms), cfg, history, now_ms)
        }
        Forecasting::Made(f) => decide_with(&world, f, cfg, history, now_ms),
    }
}

/// A target whose platform could not be reached this step.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Unreachable {
    /// Target name.
    pub target: String,
    /// Why (no kubeconfig, no system bus, observe failed…).
    pub error: String,
}

/// An intent a crash left without an outcome, settled (or not) at the start of a step.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Settled {
    /// Target name.
    pub target: String,
    /// The outcome now recorded.
    pub executed: Executed,
}

/// Everything one step saw, decided and did.
#[derive(Debug)]
pub struct Step {
    /// The cycle: decisions with their reasons and guardrails, risks, forecasts.
    pub report: CycleReport,
    /// Intents left by a crash and settled by observing, first.
    pub reconciled: Vec<Settled>,
    /// Enforced intents left pending because their platform is not in reach
    /// this step (a dry run, or unreachable): in words, to warn about.
    pub unsettled: Vec<String>,
    /// One result per decision carried out, in the order of the decisions;
    /// shorter than the decisions when a stop came between them.
    pub executed: Vec<Executed>,
}

impl Step {
    /// Whether any action (or the settling of one) failed.
    pub fn failed(&self) -> bool {
        self.reconciled
            .iter()
            .map(|s| &s.executed)
            .chain(&self.executed)
            .any(|e| matches!(e.outcome, Some(Outcome::Failed { .. })))
    }

    /// Targets whose decisions a stop left unexecuted.
    pub fn not_acted(&self) -> Vec<&str> {
        self.report.plan.decisions[self.executed.len()..].iter().map(|d| d.target.as_str()).collect()
    }
}

/// The enforced targets' actuators, as reached at the start of a step.
#[derive(Debug, Default)]
pub struct Reach {
    /// The actuator per enforced target whose platform answered.
    actuators: BTreeMap<String, Arc<dyn Actuator>>,
    /// Replicas per target, as their platforms report them.
    pub replicas: BTreeMap<String, u32>,
    /// Enforced targets whose platform could not be reached.
    pub unreachable: Vec<Unreachable>,
}

impl Reach {
    /// Nothing reached: every decision is a dry run.
    pub fn none() -> Self {
        Self::default()
    }

    /// Reaches the platform of every target of `cfg` whose config says
    /// `mode = "enforce"` and reads its replicas (the policy scales from the
    /// platform's count, not the config's guess).
    pub async fn enforced(cfg: &Config, platforms: &mut Platforms) -> Self {
        let mut reach = Self::default();
        for t in cfg.targets.iter().filter(|t| t.mode == Mode::Enforce) {
            let observed = match platforms.actuator(t).await {
                Ok(a) => a.observe(t).await.map(|o| (a, o)),
                Err(e) => Err(e),
            };
            match observed {
                Ok((a, o)) => {
                    if let Some(n) = o.replicas {
                        reach.replicas.insert(t.name.clone(), n);
                    }
                    reach.actuators.insert(t.name.clone(), a);
                }
                Err(e) => reach.unreachable.push(Unreachable { target: t.name.clone(), error: e.to_string() }),
            }
        }
        reach
    }
}

/// One full step at `now_ms`: plan, then carry the plan out through `log`.
///
/// Targets whose config says `mode = "enforce"` and whose platform `reach`
/// holds are acted on; everything else is recorded as a dry run, and an
/// enforced target whose platform could not be reached is not acted on at
/// all (its result says why). `interrupt` is checked between decisions: the
/// action in flight finishes and is recorded, none is left half-done.
pub async fn step(
    data: &Data<'_>,
    forecasting: Forecasting<'_>,
    cfg: &Config,
    log: &mut AuditLog,
    reach: &Reach,
    now_ms: i64,
    interrupt: &Interrupt,
) -> Result<Step> {
    let history = history_by_target(log.ledger());
    let report = plan(data, forecasting, cfg, &history, &reach.replicas, now_ms)?;
    let actuators = &reach.actuators;
    let dry = DryRun::new();
    let targets: BTreeMap<&str, &headroom_remediate::config::Target> =
        cfg.targets.iter().map(|t| (t.name.as_str(), t)).collect();

    // Intents left without an outcome by a crash: settled first, by observing.
    // An enforced one needs its platform: out of reach, it is left pending
    // (the policy holds its target until it is settled), never guessed.
    let pending: Vec<_> = log.ledger().pending().into_iter().cloned().collect();
    let mut reconciled = Vec::new();
    let mut unsettled = Vec::new();
    for d in pending {
        let Some(target) = targets.get(d.target.as_str()).copied() else {
            unsettled.push(format!("pending decision {} is for target {}, no longer in the config", d.id, d.target));
            continue;
        };
        let actuator: &dyn Actuator = match (d.mode, actuators.get(&d.target)) {
            (Mode::DryRun, _) => &dry,
            (Mode::Enforce, Some(a)) => a.as_ref(),
            (Mode::Enforce, None) => {
                unsettled.push(format!(
                    "decision {} ({} {}) was being carried out when headroom stopped; \
                     run `headroom act --enforce` to settle it by observing {}",
                    d.id, d.target, d.action, d.target
                ));
                continue;
            }
        };
        let executed = reconcile(log, actuator, target, &d, now_ms).await?;
        reconciled.push(Settled { target: d.target.clone(), executed });
    }
    // Actions that did not bring their target back: recorded, so the ladder and the next cycles see it.
    for f in &report.plan.failed_verifications {
        let outcome = Outcome::VerificationFailed { detail: f.detail.clone() };
        log.append_outcome(&f.id, &f.target, &outcome, now_ms)?;
    }
    let mut executed = Vec::new();
    for d in &report.plan.decisions {
        if interrupt.raised().is_some() {
            break;
        }
        let Some(target) = targets.get(d.target.as_str()).copied() else {
            executed.push(Executed { id: d.id.clone(), outcome: None, detail: "target not in the config".into() });
            continue;
        };
        let enforced = d.mode == Mode::Enforce && d.action.is_some();
        if enforced && let Some(u) = reach.unreachable.iter().find(|u| u.target == d.target) {
            let detail = format!("not acted on: its platform could not be reached: {}", u.error);
            executed.push(Executed { id: d.id.clone(), outcome: None, detail });
            continue;
        }
        // Enforced only where the platform was reached (`act` without --enforce reaches none).
        let (actuator, enforced): (&dyn Actuator, bool) = match actuators.get(&d.target) {
            Some(a) if enforced => (a.as_ref(), true),
            _ => (&dry, false),
        };
        executed.push(execute(log, actuator, target, d, enforced, now_ms).await?);
    }
    Ok(Step { report, reconciled, unsettled, executed })
}
