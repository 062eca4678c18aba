//! `headroom act`: one cycle, carried out. Dry-run unless `--enforce` (and
//! the target's own `mode = "enforce"`); every decision goes through the
//! audit log (intent fsynced before acting, outcome after).

use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;

use headroom_actuate::{Actuator, AuditLog, AuditOptions, DryRun, Executed, execute, reconcile};
use headroom_core::{Interrupt, Mode, format_ts};
use headroom_remediate::config::{Platform, Target};
use headroom_remediate::state::Outcome;
use serde_json::json;

use crate::cli::ActArgs;
use crate::output::Output;
use crate::plan::{Planned, history_by_target, plan_once, render_decision};

/// The actuator for a target's platform. Only built when something is to be enforced.
async fn actuator_for(target: &Target) -> anyhow::Result<Box<dyn Actuator>> {
    match target.platform {
        Platform::Kubernetes => {
            let client = kube::Client::try_default().await.map_err(|e| {
                anyhow::anyhow!("target {}: no Kubernetes client (kubeconfig or in-cluster config): {e}", target.name)
            })?;
            Ok(Box::new(headroom_actuate::kubernetes::KubernetesActuator::new(client)))
        }
        Platform::Systemd => Ok(Box::new(headroom_actuate::systemd::SystemdActuator::system().await?)),
        Platform::Process => anyhow::bail!(
            "target {}: process targets are run by headroom's own supervisor, which lives in the daemon; \
             `act` cannot reach it",
            target.name
        ),
        #[cfg(windows)]
        Platform::Windows => Ok(Box::new(headroom_actuate::windows::WindowsScmActuator::new()?)),
        #[cfg(not(windows))]
        Platform::Windows => {
            anyhow::bail!("target {}: Windows services can only be acted on from Windows", target.name)
        }
    }
}

pub async fn run(args: ActArgs, interrupt: &Interrupt) -> anyhow::Result<ExitCode> {
    let path = args.plan.audit.clone().unwrap_or_else(|| "headroom-audit/audit.jsonl".into());
    let (mut log, opened) = AuditLog::open(&path, AuditOptions::default())?;
    crate::plan::warn_audit(&opened);
    let history = history_by_target(log.ledger());
    // With --enforce, the enforced targets' actuators are reached first: their
    // replica counts are what the policy scales from, not the config's guess.
    let config = headroom_remediate::Config::load(&args.plan.config)?;
    let mut actuators: BTreeMap<String, Box<dyn Actuator>> = BTreeMap::new();
    let mut replicas = BTreeMap::new();
    if args.enforce {
        for t in config.targets.iter().filter(|t| t.mode == Mode::Enforce) {
            let a = actuator_for(t).await?;
            if let Some(n) = a.observe(t).await?.replicas {
                replicas.insert(t.name.clone(), n);
            }
            actuators.insert(t.name.clone(), a);
        }
    }
    let Planned { report, now_ms, now_from } = plan_once(&args.plan, &config, &history, &replicas)?;
    let dry = DryRun::new();

    // Intents left without an outcome by a crash: settle them first, by observing.
    // An enforced one needs its platform: without --enforce it is left pending
    // (the policy holds its target until it is settled), never guessed.
    let pending: Vec<_> = log.ledger().pending().into_iter().cloned().collect();
    let mut reconciled: Vec<(String, Executed)> = Vec::new();
    for d in pending {
        let Some(target) = config.target(&d.target) else {
            eprintln!("warning: pending decision {} is for target {}, no longer in the config", d.id, d.target);
            continue;
        };
        let actuator: &dyn Actuator = match (d.mode, actuators.get(&d.target)) {
            (Mode::DryRun, _) => &dry,
            (Mode::Enforce, Some(a)) => a.as_ref(),
            (Mode::Enforce, None) => {
                eprintln!(
                    "warning: decision {} ({} {}) was being carried out when headroom stopped; \
                     run `headroom act --enforce` to settle it by observing {}",
                    d.id, d.target, d.action, d.target
                );
                continue;
            }
        };
        reconciled.push((d.target.clone(), reconcile(&mut log, actuator, target, &d, now_ms).await?));
    }
    // Actions that did not bring their target back: recorded, so the ladder and the next cycles see it.
    for f in &report.plan.failed_verifications {
        let outcome = Outcome::VerificationFailed { detail: f.detail.clone() };
        log.append_outcome(&f.id, &f.target, &outcome, now_ms)?;
        eprintln!("verification failed for {} ({}): {}", f.target, f.id, f.detail);
    }
    // One result per decision, in order. Stops between decisions on a signal:
    // the action in flight finishes and is recorded; none is left half-done.
    let mut executed: Vec<Executed> = Vec::new();
    for d in &report.plan.decisions {
        if interrupt.raised().is_some() {
            break;
        }
        let Some(target) = config.target(&d.target) else {
            executed.push(Executed { id: d.id.clone(), outcome: None, detail: "target not in the config".into() });
            continue;
        };
        let enforce = args.enforce && d.mode == Mode::Enforce && d.action.is_some();
        let actuator: &dyn Actuator = match actuators.get(&d.target) {
            Some(a) if enforce => a.as_ref(),
            _ => &dry,
        };
        executed.push(execute(&mut log, actuator, target, d, enforce, now_ms).await?);
    }
    let mut out = std::io::stdout().lock();
    match args.plan.output {
        Output::Json => {
            let doc = json!({
                "now": format_ts(now_ms),
                "now_from": now_from,
                "enforce": args.enforce,
                "audit_log": path,
                "decisions": report.plan.decisions,
                "executed": report.plan.decisions.iter().zip(&executed).map(|(d, e)| json!({"target": d.target, "id": e.id, "outcome": e.outcome, "detail": e.detail})).collect::<Vec<_>>(),
                "reconciled": reconciled.iter().map(|(t, e)| json!({"target": t, "id": e.id, "outcome": e.outcome, "detail": e.detail})).collect::<Vec<_>>(),
            });
            writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
        }
        Output::Table => {
            let mode = if args.enforce { "enforce where the target says so" } else { "dry-run (no --enforce)" };
            writeln!(out, "act at {} ({now_from}), {mode}, audit log {}\n", format_ts(now_ms), path.display())?;
            for (d, e) in report.plan.decisions.iter().zip(&executed) {
                let mut s = String::new();
                render_decision(&mut s, d);
                out.write_all(s.as_bytes())?;
                if let Some(outcome) = &e.outcome {
                    let recorded = if e.id == d.id { String::new() } else { format!(" (recorded as {})", e.id) };
                    writeln!(out, "    => {outcome:?}{recorded}: {}", e.detail)?;
                }
                writeln!(out)?;
            }
            for (t, e) in &reconciled {
                writeln!(out, "reconciled {t} {}: {:?} ({})", e.id, e.outcome, e.detail)?;
            }
        }
    }
    if let Some(stop) = interrupt.raised() {
        let left: Vec<&str> = report.plan.decisions[executed.len()..].iter().map(|d| d.target.as_str()).collect();
        if !left.is_empty() {
            eprintln!("{stop}: not acted on: {} (nothing of theirs was recorded)", left.join(", "));
            return Err(stop.into());
        }
    }
    let failed =
        reconciled.iter().map(|(_, e)| e).chain(&executed).any(|e| matches!(e.outcome, Some(Outcome::Failed { .. })));
    Ok(if failed { ExitCode::from(3) } else { ExitCode::SUCCESS })
}
