//! The decision half of a backtest: the engine's replay of the policy over
//! the recorded data, once per model and once reactive, and the policy
//! replayed when none is given.

use std::collections::BTreeMap;
use std::time::Instant;

use headroom_core::{Interrupt, format_duration};
use headroom_core::{Limits, ResampledSeries, SeriesKey, Span};
use headroom_engine::World;
use headroom_engine::replay::{ReplayInput, ReplayReport, replay};
use headroom_forecast::protocol::Protocol;
use headroom_remediate::Config;
use headroom_remediate::config::{Global, Platform, ScaleIn, Target};

use crate::error::{Error, Result};
use crate::evaluation::{Backtest, Options, duration_ms};
use crate::progress::Progress;

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

/// `decide_every` in ms, refused (before any work) if it is finer than the
/// grid step: the simulated clock would see no new sample and only multiply
/// the work.
pub fn decide_every_ms(options: &Options, protocol: &Protocol) -> Result<i64> {
    let every_ms = duration_ms("--decide-every", &options.decide_every)?;
    if every_ms < protocol.step_ms {
        return Err(Error::Option {
            option: "--decide-every",
            value: options.decide_every.clone(),
            reason: format!("must be at least the grid step ({}, --step)", format_duration(protocol.step_ms)),
        });
    }
    Ok(every_ms)
}

/// Replays `options.config` (or [`default_config`]) under the reactive
/// baseline and one predictive policy per model of the backtest.
pub fn replay_decisions(
    options: &Options,
    bt: &Backtest,
    progress: &dyn Progress,
    interrupt: &Interrupt,
) -> Result<ReplayReport> {
    let config = match &options.config {
        Some(path) => Config::load(path)?,
        None => default_config(&bt.series, &bt.limits),
    };
    let every_ms = decide_every_ms(options, &bt.protocol)?;
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
    progress.replay_started(((models.len() + 1) * replayed) as u64);
    let started = Instant::now();
    let report = replay(&input, &|policy, target| progress.replaying(policy, target))?;
    progress.replay_finished();
    progress.note(&format!(
        "backtest: replayed {} targets × {} policies, a decision every {} ({} decisions with an action) in {:.1} s",
        replayed,
        models.len() + 1,
        options.decide_every,
        report.decisions.len(),
        started.elapsed().as_secs_f64()
    ));
    Ok(report)
}

fn key(t: &Target) -> SeriesKey {
    SeriesKey { entity: t.entity.clone(), metric: t.metric.clone() }
}
