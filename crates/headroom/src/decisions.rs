//! The decision half of `headroom backtest`: the engine's replay of the
//! policy over the recorded data, once per model and once reactive, with a
//! progress bar; its scores and every replayed decision written out.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use headroom_core::Span;
use headroom_core::{Action, Interrupt, Limits, ResampledSeries, SeriesKey, frame::timestamp_column};
use headroom_engine::World;
use headroom_engine::replay::{PolicyScore, ReplayInput, ReplayReport, replay};
use headroom_forecast::protocol::Protocol;
use headroom_remediate::Config;
use headroom_remediate::config::{Global, Platform, ScaleIn, Target};
use polars::prelude::{Column, DataFrame, ParquetWriter};

use crate::backtest::Backtest;
use crate::cli::{BacktestArgs, duration_ms};

const HOUR_MS: i64 = 3_600_000;

/// The policy replayed when no `--config` is given: one target per series
/// with a saturation threshold, as an SRE would start: 4 replicas (the data is
/// taken as measured at 4), 1–16, at most 4 per step, p90, 6 h lead time,
/// 30 min cooldown, scale-in when forecast and the last 6 h are under half the level.
pub fn default_config(series: &[ResampledSeries], limits: &Limits) -> Config {
    let targets = series
        .iter()
        .filter(|s| limits.get(&s.key).is_some())
        .map(|s| {
            let mut t = Target::new(&s.key.to_string(), Platform::Kubernetes, &s.key.entity, &s.key.metric);
            t.replicas = Some(4);
            t.min_replicas = 1;
            t.max_replicas = 16;
            t.max_step = 4;
            t.max_sample_age = Span::from_ms(HOUR_MS);
            t.scale_in = ScaleIn { enabled: true, below: 0.5, window: Span::from_ms(6 * HOUR_MS) };
            t
        })
        .collect();
    // Each target is replayed on its own clock, so a cap across targets means nothing here.
    Config { global: Global { max_actions_per_hour: u32::MAX }, detect: Default::default(), targets }
}

/// `--decide-every` in ms, refused (before any work) if it is finer than the
/// grid step: the simulated clock would see no new sample and only multiply
/// the work.
pub fn decide_every_ms(args: &BacktestArgs, protocol: &Protocol) -> anyhow::Result<i64> {
    let every_ms = duration_ms(&args.decide_every).with_context(|| format!("--decide-every {}", args.decide_every))?;
    if every_ms < protocol.step_ms {
        anyhow::bail!(
            "--decide-every {}: must be at least the grid step ({}, --step)",
            args.decide_every,
            headroom_core::format_duration(protocol.step_ms)
        );
    }
    Ok(every_ms)
}

/// Replays `--config` (or [`default_config`]) under the reactive baseline and
/// one predictive policy per model of the backtest.
pub fn run(args: &BacktestArgs, bt: &Backtest, interrupt: &Interrupt) -> anyhow::Result<ReplayReport> {
    let config = match &args.config {
        Some(path) => Config::load(path)?,
        None => default_config(&bt.series, &bt.limits),
    };
    let every_ms = decide_every_ms(args, &bt.protocol)?;
    // Each series is replayed from its first evaluation origin: the first time a forecast exists.
    let start_ms: BTreeMap<SeriesKey, i64> = bt
        .series
        .iter()
        .filter_map(|s| {
            let first = *bt.protocol.origins(s.values.len()).first()?;
            Some((s.key.clone(), s.grid.start_ms + first as i64 * s.grid.step_ms))
        })
        .collect();
    let models: Vec<String> = bt.eval.scores.iter().map(|s| s.model.clone()).collect();
    let none = BTreeMap::new();
    let input = ReplayInput {
        world: World { grid: &bt.series, raw: &bt.raw, limits: &bt.limits, replicas: &none },
        config: &config,
        forecasts: &bt.eval.forecasts,
        models: &models,
        start_ms: &start_ms,
        every_ms,
        horizon_ms: bt.protocol.horizon as i64 * bt.protocol.step_ms,
        interrupt,
    };
    let replayed = config.targets.iter().filter(|t| start_ms.contains_key(&key(t))).count();
    let bar = indicatif::ProgressBar::new(((models.len() + 1) * replayed) as u64).with_style(
        indicatif::ProgressStyle::with_template("replay {bar:30} {pos}/{len} {msg} ({elapsed}, ~{eta} left)")
            .expect("a valid template"),
    );
    let started = std::time::Instant::now();
    let report = replay(&input, &|policy, target| {
        bar.set_message(format!("{policy}: {target}"));
        bar.inc(1);
    })?;
    bar.finish_and_clear();
    eprintln!(
        "backtest: replayed {} targets × {} policies, a decision every {} ({} decisions with an action) in {:.1} s",
        replayed,
        models.len() + 1,
        args.decide_every,
        report.decisions.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(report)
}

fn key(t: &Target) -> SeriesKey {
    SeriesKey { entity: t.entity.clone(), metric: t.metric.clone() }
}

/// `decisions.parquet` (every replayed action) and `decision_scores.csv`.
pub fn write(dir: &Path, report: &ReplayReport) -> anyhow::Result<()> {
    let d = &report.decisions;
    let text = |f: &dyn Fn(&headroom_engine::replay::Replayed) -> String| d.iter().map(f).collect::<Vec<String>>();
    let mut df = DataFrame::new(
        d.len(),
        vec![
            Column::new("policy".into(), text(&|r| r.policy.clone())),
            Column::new("target".into(), text(&|r| r.decision.target.clone())),
            Column::new("entity".into(), text(&|r| r.decision.entity.clone())),
            timestamp_column("ts", d.iter().map(|r| r.decision.decided_at_ms).collect()),
            Column::new("action".into(), text(&|r| r.decision.action.to_string())),
            Column::new(
                "replicas".into(),
                d.iter()
                    .map(|r| match r.decision.action {
                        Action::ScaleTo { replicas } => Some(replicas),
                        _ => None,
                    })
                    .collect::<Vec<Option<u32>>>(),
            ),
            Column::new("risk".into(), text(&|r| r.decision.risk.clone())),
            Column::new("id".into(), text(&|r| r.decision.id.clone())),
            Column::new("reason".into(), text(&|r| r.decision.reason.clone())),
        ],
    )?;
    let path = dir.join("decisions.parquet");
    headroom_collect::store::write_atomically(&path, |file| {
        ParquetWriter::new(file)
            .finish(&mut df)
            .map(|_| ())
            .map_err(|source| headroom_collect::Error::Parquet { path: path.clone(), source })
    })?;
    let mut csv = String::from(
        "policy,targets,events,caught,recall,precision,mean_lead_minutes,under_provisioned_minutes,slack_replica_hours,actions,churn\n",
    );
    for p in &report.policies {
        csv.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{},{}\n",
            p.policy,
            p.targets,
            p.events,
            p.caught,
            p.recall,
            p.precision,
            p.mean_lead_minutes,
            p.under_provisioned_minutes,
            p.slack_replica_hours,
            p.actions,
            p.churn
        ));
    }
    std::fs::write(dir.join("decision_scores.csv"), csv)
        .with_context(|| format!("writing {}/decision_scores.csv", dir.display()))?;
    Ok(())
}

/// The decision table: policies × measures.
pub fn table(policies: &[PolicyScore]) -> String {
    let header = [
        "policy",
        "targets",
        "events",
        "caught",
        "recall",
        "precision",
        "lead (h)",
        "under-prov. (h)",
        "slack (replica-h)",
        "actions",
        "churn",
    ];
    let rows: Vec<Vec<String>> = policies
        .iter()
        .map(|p| {
            vec![
                p.policy.clone(),
                p.targets.to_string(),
                p.events.to_string(),
                p.caught.to_string(),
                format!("{:.2}", p.recall),
                format!("{:.2}", p.precision),
                format!("{:.1}", p.mean_lead_minutes / 60.0),
                format!("{:.0}", p.under_provisioned_minutes / 60.0),
                format!("{:.0}", p.slack_replica_hours),
                p.actions.to_string(),
                p.churn.to_string(),
            ]
        })
        .collect();
    crate::output::table(&header, &rows)
}
