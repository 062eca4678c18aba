//! `headroom plan`: one cycle at `now`, printed. Changes nothing, writes nothing.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use headroom_collect::limits::read_limits;
use headroom_core::{Decision, Interrupt, Limits, SeriesData, SeriesKey, Verdict, format_ts, parse_timestamp};
use headroom_engine::runner::{self, Data, Forecasting, history_by_target};
use headroom_engine::{CycleReport, ModelSet, Settings};
use serde_json::json;

use crate::cli::{Inputs, PlanArgs};
use crate::output::Output;
use headroom_collect::recorded::load;

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

/// The config of `args` (the whole headroom.toml), with only the targets of `--shard`.
pub fn settings(args: &PlanArgs) -> anyhow::Result<Settings> {
    let mut settings = Settings::load(&args.config)?;
    if let Some(shard) = args.shard {
        settings
            .policy
            .targets
            .retain(|t| shard.holds(&SeriesKey { entity: t.entity.clone(), metric: t.metric.clone() }));
    }
    Ok(settings)
}

/// The series and limits `inputs` name, and the time `--now` names.
pub fn load_data(args: &PlanArgs, inputs: &Inputs) -> anyhow::Result<(Vec<SeriesData>, Limits, i64, &'static str)> {
    let frame = load(&inputs.data, &args.file.options()?)?;
    let limits = match &inputs.limits {
        Some(path) => read_limits(path)?,
        None => Limits::new(),
    };
    let raw = frame.series()?;
    let newest = Data { raw: &raw, limits: &limits }.newest_ms().context("the data holds no samples")?;
    let (now_ms, now_from) = match args.now.as_str() {
        "end" => (newest, "the newest sample in the data; --now wall for this machine's clock"),
        "wall" => (headroom_actuate::audit::wall_clock_ms(), "this machine's clock"),
        ts => (parse_timestamp(ts, None).with_context(|| format!("--now {ts}"))?, "--now"),
    };
    Ok((raw, limits, now_ms, now_from))
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
    let settings = settings(&args)?;
    let inputs = args.inputs(&settings);
    let (raw, limits, now_ms, now_from) = load_data(&args, &inputs)?;
    let models = ModelSet::load(&inputs.forecaster, &inputs.model)?;
    let data = Data { raw: &raw, limits: &limits };
    let report =
        runner::plan(&data, Forecasting::Fresh(&models), &settings.policy, &history, &BTreeMap::new(), now_ms)?;
    interrupt.check()?;
    let mut out = std::io::stdout().lock();
    match args.output {
        Output::Json => {
            let doc = json!({
                "now": format_ts(now_ms),
                "now_from": now_from,
                "forecaster": inputs.forecaster,
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
                inputs.forecaster,
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
