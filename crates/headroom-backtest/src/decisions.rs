//! The decision half of a backtest: the engine's replay of the policy over
//! the recorded data, once per model and once reactive, then the risk
//! trade-off (the LSTM's and the best baseline's policy with every target on
//! p95 and on p99); and the policy replayed when none is given.

use std::collections::BTreeMap;
use std::time::Instant;

use headroom_core::{Interrupt, format_duration};
use headroom_core::{Limits, ResampledSeries, SeriesKey, Span};
use headroom_engine::World;
use headroom_engine::replay::{Policy, PolicyScore, ReplayInput, ReplayReport, replay};
use headroom_forecast::baselines::BASELINES;
use headroom_forecast::protocol::Protocol;
use headroom_remediate::Config;
use headroom_remediate::config::{Global, Platform, ScaleIn, Target};

use crate::error::{Error, Result};
use crate::evaluation::{Backtest, Options, duration_ms};
use crate::progress::Progress;

const HOUR_MS: i64 = 3_600_000;

/// The quantiles the risk trade-off replays beside the configured policy
/// ([`Policy::at_quantile`]: every target acting on p95, then on p99).
pub const RISK_QUANTILES: [f64; 2] = [0.95, 0.99];

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

/// The best baseline of a replay, the one the risk trade-off replays: among
/// the baselines replayed ([`BASELINES`]: not `lstm`, `auto` or `reactive`),
/// the one whose predictive policy (as configured: p90 by default) left the
/// targets under-provisioned the fewest minutes; ties to the one with less
/// slack, then to the earlier. `None` when no baseline was replayed.
pub fn best_baseline(policies: &[PolicyScore]) -> Option<&str> {
    policies
        .iter()
        .filter(|p| BASELINES.contains(&p.policy.as_str()))
        .reduce(|best, p| {
            let key = |p: &PolicyScore| (p.under_provisioned_minutes, p.slack_replica_hours);
            let (a, b) = (key(p), key(best));
            if a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)).is_lt() { p } else { best }
        })
        .map(|p| p.policy.as_str())
}

/// Replays `options.config` (or [`default_config`]) under the reactive
/// baseline and one predictive policy per model of the backtest; then, for
/// the risk trade-off, the predictive policy of the LSTM (when it is among
/// the models) and of the [`best_baseline`] with every target's quantile set
/// to each of [`RISK_QUANTILES`] (rows `lstm@0.95`, `snaive-weekly@0.99`, …).
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
    let policies: Vec<Policy> =
        std::iter::once(Policy::reactive()).chain(models.iter().map(|m| Policy::predictive(m))).collect();
    let lstm = models.iter().find(|m| *m == headroom_lstm::NAME);
    // The trade-off's models: the LSTM and the best baseline, known once the policies above are replayed.
    let traded = usize::from(lstm.is_some()) + usize::from(models.iter().any(|m| BASELINES.contains(&m.as_str())));
    let none = BTreeMap::new();
    let input = |policies| ReplayInput {
        world: World { grid: &bt.series, raw: &bt.raw, limits: &bt.limits, replicas: &none },
        config: &config,
        forecasts: &bt.eval.forecasts,
        policies,
        start_ms: &start_ms,
        every_ms,
        horizon_ms: bt.protocol.horizon as i64 * bt.protocol.step_ms,
        interrupt,
    };
    let replayed = config.targets.iter().filter(|t| start_ms.contains_key(&key(t))).count();
    progress.replay_started(((policies.len() + traded * RISK_QUANTILES.len()) * replayed) as u64);
    let started = Instant::now();
    let step = |policy: &str, target: &str| progress.replaying(policy, target);
    let mut report = replay(&input(&policies), &step)?;
    let best = best_baseline(&report.policies).map(str::to_owned);
    let tails: Vec<Policy> =
        lstm.into_iter().chain(&best).flat_map(|model| RISK_QUANTILES.map(|q| Policy::at_quantile(model, q))).collect();
    if !tails.is_empty() {
        report.merge(replay(&input(&tails), &step)?);
    }
    progress.replay_finished();
    progress.note(&format!(
        "backtest: replayed {} targets × {} policies, a decision every {} ({} decisions with an action) in {:.1} s",
        replayed,
        policies.len() + tails.len(),
        options.decide_every,
        report.decisions.len(),
        started.elapsed().as_secs_f64()
    ));
    if !tails.is_empty() {
        let names: Vec<&str> = tails.iter().map(|p| p.name.as_str()).collect();
        let why =
            best.map_or(String::new(), |b| format!(" ({b}: the baseline with the fewest under-provisioned hours)"));
        progress.note(&format!("backtest: the risk trade-off replayed {}{why}", names.join(", ")));
    }
    Ok(report)
}

fn key(t: &Target) -> SeriesKey {
    SeriesKey { entity: t.entity.clone(), metric: t.metric.clone() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn score(policy: &str, under_minutes: f64, slack: f64) -> PolicyScore {
        PolicyScore {
            policy: policy.into(),
            targets: 1,
            events: 0,
            caught: 0,
            recall: f64::NAN,
            precision: f64::NAN,
            mean_lead_minutes: f64::NAN,
            under_provisioned_minutes: under_minutes,
            slack_replica_hours: slack,
            actions: 0,
            churn: 0,
        }
    }

    #[test]
    fn the_best_baseline_is_the_least_under_provisioned_then_the_least_slack() {
        let policies = [
            score("reactive", 0.0, 0.0),
            score("lstm", 10.0, 1.0),
            score("last", 120.0, 5.0),
            score("snaive-daily", 60.0, 9.0),
            score("snaive-weekly", 60.0, 7.0),
            score("linear", 90.0, 1.0),
            score("auto", 30.0, 1.0),
        ];
        // lstm, auto and reactive do better but are not baselines; two baselines tie at 60 min: less slack wins.
        assert_eq!(best_baseline(&policies), Some("snaive-weekly"));
        // A full tie goes to the earlier.
        assert_eq!(best_baseline(&[score("last", 5.0, 1.0), score("linear", 5.0, 1.0)]), Some("last"));
        assert_eq!(best_baseline(&policies[..2]), None);
        // A policy at another quantile is not a baseline either.
        assert_eq!(best_baseline(&[score("last@0.99", 0.0, 0.0), score("last", 5.0, 1.0)]), Some("last"));
    }
}
