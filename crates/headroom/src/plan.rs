//! `headroom plan`: one cycle at `now`, printed. Changes nothing, writes nothing.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use headroom_collect::limits::read_limits;
use headroom_collect::resample::{DEFAULT_MAX_GAP_MS, ResampleConfig, resample_frame};
use headroom_core::{Decision, Interrupt, Verdict, format_ts, parse_timestamp};
use headroom_engine::{CycleReport, Models, World, cycle};
use headroom_forecast::Forecaster;
use headroom_forecast::protocol::Protocol;
use headroom_remediate::audit::Ledger;
use headroom_remediate::{Config, PastAction};
use serde_json::json;

use crate::backtest::{fallback_chain, model};
use crate::cli::PlanArgs;
use crate::inspect::load;
use crate::output::Output;

/// One cycle at `--now`, with what it was run on.
pub struct Planned {
    /// The cycle's decisions, risks, states and forecasts.
    pub report: CycleReport,
    /// The time planned at.
    pub now_ms: i64,
    /// Where that time came from, in words.
    pub now_from: &'static str,
}

/// Past actions per target, from an audit ledger.
pub fn history_by_target(ledger: &Ledger) -> BTreeMap<String, Vec<PastAction>> {
    let mut by_target: BTreeMap<String, Vec<PastAction>> = BTreeMap::new();
    for a in ledger.history() {
        by_target.entry(a.target.clone()).or_default().push(a);
    }
    by_target
}

/// Prints, once each, what reading an audit log found wrong: lines that are
/// not records, and records a well-behaved writer would not have written.
pub fn warn_audit(report: &headroom_actuate::OpenReport) {
    // A torn last line that opening cut away is logged (once) by the writer.
    for s in report.skipped.iter().filter(|s| !(s.torn && report.repair.is_some())) {
        eprintln!("warning: {s}");
    }
    for a in &report.anomalies {
        eprintln!("warning: {a}");
    }
}

/// Loads the data, limits and model of `args`, and runs one cycle of `config`
/// with `history` and the current replicas per target that actuators reported.
pub fn plan_once(
    args: &PlanArgs,
    config: &Config,
    history: &BTreeMap<String, Vec<PastAction>>,
    replicas: &BTreeMap<String, u32>,
) -> anyhow::Result<Planned> {
    let frame = load(&args.data, &args.file.options()?)?;
    let limits = read_limits(&args.limits)?;
    let raw = frame.series()?;
    let newest = raw.iter().filter_map(|s| s.ts.last().copied()).max().context("the data holds no samples")?;
    let (now_ms, now_from) = match args.now.as_str() {
        "end" => (newest, "the newest sample in the data; --now wall for this machine's clock"),
        "wall" => (headroom_actuate::audit::wall_clock_ms(), "this machine's clock"),
        ts => (parse_timestamp(ts, None).with_context(|| format!("--now {ts}"))?, "--now"),
    };
    let protocol = Protocol::reference();
    // Only the targets' series are resampled and forecast.
    let wanted: Vec<_> = raw
        .iter()
        .filter(|s| config.targets.iter().any(|t| t.entity == s.key.entity && t.metric == s.key.metric))
        .cloned()
        .collect();
    let grid = resample_frame(
        &headroom_core::SampleFrame::from_series(&wanted)?,
        &ResampleConfig { step_ms: protocol.step_ms, max_gap_ms: DEFAULT_MAX_GAP_MS, strict: false },
    )?;
    let forecaster = model(&args.forecaster, &args.model)?;
    let chain = fallback_chain()?;
    let chain: Vec<&dyn Forecaster> = chain.iter().map(|m| m.as_ref()).collect();
    let world = World { grid: &grid, raw: &raw, limits: &limits, replicas };
    let models = Models { forecaster: forecaster.as_ref(), fallbacks: &chain, horizon: protocol.horizon };
    let report = cycle(&world, &models, config, history, now_ms)?;
    Ok(Planned { report, now_ms, now_from })
}

pub fn run(args: PlanArgs, interrupt: &Interrupt) -> anyhow::Result<ExitCode> {
    let history = match &args.audit {
        Some(path) => {
            let (ledger, report) = headroom_actuate::audit::read_ledger(path)?;
            warn_audit(&report);
            history_by_target(&ledger)
        }
        None => BTreeMap::new(),
    };
    let config = Config::load(&args.config)?;
    let Planned { report, now_ms, now_from } = plan_once(&args, &config, &history, &BTreeMap::new())?;
    interrupt.check()?;
    let mut out = std::io::stdout().lock();
    match args.output {
        Output::Json => {
            let doc = json!({
                "now": format_ts(now_ms),
                "now_from": now_from,
                "forecaster": args.forecaster,
                "config": args.config,
                "decisions": report.plan.decisions,
                "failed_verifications": report.plan.failed_verifications,
                "risks": report.risks,
                "notes": report.notes,
                "fallbacks": report.fallbacks,
            });
            writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
        }
        Output::Table => {
            writeln!(
                out,
                "plan at {} ({now_from}), forecaster {}, config {}",
                format_ts(now_ms),
                args.forecaster,
                args.config.display()
            )?;
            out.write_all(render(&report).as_bytes())?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn mark(v: Verdict) -> &'static str {
    match v {
        Verdict::Passed => "ok     ",
        Verdict::Clamped => "clamped",
        Verdict::Blocked => "BLOCKED",
    }
}

/// Each decision as a headline, its reason, and every guardrail with its verdict.
fn render(report: &CycleReport) -> String {
    let mut s = String::new();
    let acting = report.plan.decisions.iter().filter(|d| d.action.is_some()).count();
    let _ = writeln!(s, "{} targets, {acting} with an action\n", report.plan.decisions.len());
    for d in &report.plan.decisions {
        render_decision(&mut s, d);
        for n in report.notes.iter().filter(|n| n.target == d.target) {
            let _ = writeln!(s, "    note: {}", n.note);
        }
        let _ = writeln!(s);
    }
    for f in &report.plan.failed_verifications {
        let _ = writeln!(s, "verification FAILED for {} ({}): {}", f.target, f.id, f.detail);
    }
    for f in &report.fallbacks {
        let _ = writeln!(s, "fallback: {} forecast by {}: {}", f.series, f.used, f.reason);
    }
    s
}

pub fn render_decision(s: &mut String, d: &Decision) {
    let alert = if d.alert { "  ALERT" } else { "" };
    let _ = writeln!(s, "{}  {}  {}  [{}]  id {}{alert}", d.target, d.entity, d.action, d.mode, d.id);
    let _ = writeln!(s, "    why: {}", d.reason);
    for g in &d.guardrails {
        let _ = writeln!(s, "    {} {}: {}", mark(g.verdict), g.name, g.detail);
    }
}
