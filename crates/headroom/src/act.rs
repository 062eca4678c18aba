//! `headroom act`: one cycle, carried out. Dry-run unless `--enforce` (and
//! the target's own `mode = "enforce"`); every decision goes through the
//! audit log (intent fsynced before acting, outcome after).

use std::io::Write;
use std::process::ExitCode;

use headroom_actuate::{AuditLog, AuditOptions, Platforms};
use headroom_core::{Interrupt, format_ts};
use headroom_engine::ModelSet;
use headroom_engine::runner::{self, Data, Forecasting, Reach};
use serde_json::json;

use crate::cli::ActArgs;
use crate::output::Output;
use crate::plan::{load_data, render_decision};

pub async fn run(args: ActArgs, interrupt: &Interrupt) -> anyhow::Result<ExitCode> {
    let settings = crate::plan::settings(&args.plan)?;
    let config = &settings.policy;
    let path = args.plan.audit.clone().unwrap_or_else(|| settings.audit.path.clone());
    let (mut log, opened) = AuditLog::open(&path, AuditOptions::default())?;
    crate::plan::warn_audit(&opened);
    let inputs = args.plan.inputs(&settings);
    let (raw, limits, now_ms, now_from) = load_data(&args.plan, &inputs)?;
    let models = ModelSet::load(&inputs.forecaster, &inputs.model)?;
    // With --enforce, the enforced targets' platforms are reached first, and
    // all of them must answer before anything is carried out.
    let reach = if args.enforce { Reach::enforced(config, &mut Platforms::new()).await } else { Reach::none() };
    if let Some(u) = reach.unreachable.first() {
        anyhow::bail!("cannot reach the platform of target {}: {}", u.target, u.error);
    }
    let step = runner::step(
        &Data { raw: &raw, limits: &limits },
        Forecasting::Fresh(&models),
        config,
        &mut log,
        &reach,
        now_ms,
        interrupt,
    )
    .await?;
    for w in &step.unsettled {
        eprintln!("warning: {w}");
    }
    for f in &step.report.plan.failed_verifications {
        eprintln!("verification failed for {} ({}): {}", f.target, f.id, f.detail);
    }
    let (report, executed) = (&step.report, &step.executed);
    let mut out = std::io::stdout().lock();
    match args.plan.output {
        Output::Json => {
            let doc = json!({
                "now": format_ts(now_ms),
                "now_from": now_from,
                "enforce": args.enforce,
                "audit_log": path,
                "decisions": report.plan.decisions,
                "executed": report.plan.decisions.iter().zip(executed).map(|(d, e)| json!({"target": d.target, "id": e.id, "outcome": e.outcome, "detail": e.detail})).collect::<Vec<_>>(),
                "reconciled": step.reconciled.iter().map(|s| json!({"target": s.target, "id": s.executed.id, "outcome": s.executed.outcome, "detail": s.executed.detail})).collect::<Vec<_>>(),
            });
            writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
        }
        Output::Table => {
            let mode = if args.enforce { "enforce where the target says so" } else { "dry-run (no --enforce)" };
            writeln!(out, "act at {} ({now_from}), {mode}, audit log {}\n", format_ts(now_ms), path.display())?;
            for (d, e) in report.plan.decisions.iter().zip(executed) {
                let mut s = String::new();
                render_decision(&mut s, d);
                out.write_all(s.as_bytes())?;
                if let Some(outcome) = &e.outcome {
                    let recorded = if e.id == d.id { String::new() } else { format!(" (recorded as {})", e.id) };
                    writeln!(out, "    => {outcome:?}{recorded}: {}", e.detail)?;
                }
                writeln!(out)?;
            }
            for s in &step.reconciled {
                let e = &s.executed;
                writeln!(out, "reconciled {} {}: {:?} ({})", s.target, e.id, e.outcome, e.detail)?;
            }
        }
    }
    if let Some(stop) = interrupt.raised() {
        let left = step.not_acted();
        if !left.is_empty() {
            eprintln!("{stop}: not acted on: {} (nothing of theirs was recorded)", left.join(", "));
            return Err(stop.into());
        }
    }
    Ok(if step.failed() { ExitCode::from(3) } else { ExitCode::SUCCESS })
}
