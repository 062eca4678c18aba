//! `headroom act`: one cycle, carried out. Dry-run unless `--enforce` (and
//! the target's own `mode = "enforce"`); every decision goes through the
//! audit log (intent fsynced before acting, outcome after).

use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;

use headroom_actuate::{Actuator, AuditLog, AuditOptions, DryRun, Executed, execute, reconcile};
use headroom_core::{Mode, format_ts};
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

pub async fn run(args: ActArgs) -> anyhow::Result<ExitCode> {
    let path = args.plan.audit.clone().unwrap_or_else(|| "headroom-audit/audit.jsonl".into());
    let (mut log, opened) = AuditLog::open(&path, AuditOptions::default())?;
    for s in &opened.skipped {
        eprintln!("warning: {s}");
    }
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
    let pending: Vec<_> = log.ledger().pending().into_iter().cloned().collect();
    let mut results: Vec<(String, Executed)> = Vec::new();
    for d in pending {
        let Some(target) = config.target(&d.target) else {
            eprintln!("warning: pending decision {} is for target {}, no longer in the config", d.id, d.target);
            continue;
        };
        let actuator: &dyn Actuator = match actuators.get(&d.target) {
            Some(a) if args.enforce && d.mode == Mode::Enforce => a.as_ref(),
            _ => &dry,
        };
        results.push((d.target.clone(), reconcile(&mut log, actuator, target, &d, now_ms).await?));
    }
    // Actions that did not bring their target back: recorded, so the ladder and the next cycles see it.
    for f in &report.plan.failed_verifications {
        let outcome = Outcome::VerificationFailed { detail: f.detail.clone() };
        log.append_outcome(&f.id, &f.target, &outcome, now_ms)?;
        eprintln!("verification failed for {} ({}): {}", f.target, f.id, f.detail);
    }
    for d in &report.plan.decisions {
        let Some(target) = config.target(&d.target) else { continue };
        let enforce = args.enforce && d.mode == Mode::Enforce && d.action.is_some();
        let actuator: &dyn Actuator = match actuators.get(&d.target) {
            Some(a) if enforce => a.as_ref(),
            _ => &dry,
        };
        results.push((d.target.clone(), execute(&mut log, actuator, target, d, enforce, now_ms).await?));
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
                "executed": results.iter().map(|(t, e)| json!({"target": t, "id": e.id, "outcome": e.outcome, "detail": e.detail})).collect::<Vec<_>>(),
            });
            writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
        }
        Output::Table => {
            let mode = if args.enforce { "enforce where the target says so" } else { "dry-run (no --enforce)" };
            writeln!(out, "act at {} ({now_from}), {mode}, audit log {}\n", format_ts(now_ms), path.display())?;
            for d in &report.plan.decisions {
                let mut s = String::new();
                render_decision(&mut s, d);
                out.write_all(s.as_bytes())?;
                for (_, e) in results.iter().filter(|(t, e)| *t == d.target && e.id == d.id && e.outcome.is_some()) {
                    let outcome = e.outcome.as_ref().map_or("nothing recorded".to_string(), |o| format!("{o:?}"));
                    writeln!(out, "    => {outcome}: {}", e.detail)?;
                }
                writeln!(out)?;
            }
            for (t, e) in
                results.iter().filter(|(t, e)| !report.plan.decisions.iter().any(|d| d.target == *t && d.id == e.id))
            {
                writeln!(out, "reconciled {t} {}: {:?} ({})", e.id, e.outcome, e.detail)?;
            }
        }
    }
    let failed =
        results.iter().any(|(_, e)| matches!(e.outcome, Some(headroom_remediate::state::Outcome::Failed { .. })));
    Ok(if failed { ExitCode::from(3) } else { ExitCode::SUCCESS })
}
