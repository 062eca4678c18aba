//! Decision replay: the cycle's decide step run over recorded metrics with a
//! simulated clock and a recording actuator, once per [`Policy`] (the reactive
//! baseline, predictive with each model's forecasts, and predictive with every
//! target acting on another quantile), scored against what actually happened.

use std::collections::BTreeMap;

use headroom_core::{Action, Decision, Forecast, Interrupt, ResampledSeries, SeriesData, SeriesKey};
use headroom_remediate::PastAction;
use headroom_remediate::config::{Config, Target};
use headroom_remediate::state::Outcome;
use serde::{Deserialize, Serialize};

use crate::cycle::{ForecastBook, World, configured_replicas, decide, saturation_level};
use crate::error::Result;

/// How one policy did over the whole replay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyScore {
    /// The policy's name: `reactive`, the model whose forecasts drove the
    /// predictive policy, or `model@quantile` ([`Policy::at_quantile`]).
    pub policy: String,
    /// Targets replayed.
    pub targets: usize,
    /// Saturation events: runs of bins whose load was above the level at the
    /// starting replica count (what would have happened with no action).
    pub events: usize,
    /// Events that started while the policy already ran more replicas than at the start
    /// of the replay (it had scaled out before them).
    pub caught: usize,
    /// `caught / events`.
    pub recall: f64,
    /// Scale-outs followed by an event (or in one) within the horizon, over all scale-outs.
    pub precision: f64,
    /// Mean minutes between the replicas going up and the start of each caught event
    /// (each lead capped at the horizon).
    pub mean_lead_minutes: f64,
    /// Minutes with the load above the level of the replicas then provisioned, summed over targets.
    pub under_provisioned_minutes: f64,
    /// Replica-hours provisioned beyond what the load needed at the level, summed over targets.
    pub slack_replica_hours: f64,
    /// Actions taken (dry-run replay: what would have been carried out).
    pub actions: usize,
    /// Actions reversed (scale out then in, or in then out) within an hour.
    pub churn: usize,
}

/// A replica count from a time on, for one policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// From when (ms since the epoch).
    pub at_ms: i64,
    /// Replicas from then on.
    pub replicas: u32,
}

/// One target's replay under every policy, for the report's decision timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Timeline {
    /// Target name.
    pub target: String,
    /// The series (`entity:metric`).
    pub series: String,
    /// The saturation level at the starting replica count.
    pub level: f64,
    /// Replicas at the start of the replay.
    pub start_replicas: u32,
    /// Start of the first bin replayed.
    pub start_ms: i64,
    /// Bin width.
    pub step_ms: i64,
    /// The recorded load, one value per bin from `start_ms`.
    pub actual: Vec<f64>,
    /// Saturation events as (start, end) bin times, end exclusive.
    pub events: Vec<(i64, i64)>,
    /// Per policy: the replica count over time (first step at `start_ms`).
    pub replicas: Vec<(String, Vec<Step>)>,
}

/// A decision taken during the replay, with the policy that took it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Replayed {
    /// The policy's name (`reactive`, a model, or `model@quantile`).
    pub policy: String,
    /// The decision, as the audit log would have it.
    pub decision: Decision,
}

/// Everything the replay produced.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReplayReport {
    /// One score per policy, the reactive baseline first.
    pub policies: Vec<PolicyScore>,
    /// Every decision with an action, in time order per policy.
    pub decisions: Vec<Replayed>,
    /// Per target, the replica timelines (for plots).
    pub timelines: Vec<Timeline>,
}

impl ReplayReport {
    /// Adds the policies of `other`, a replay of the same targets under other
    /// policies: its scores and decisions after these, and each target's
    /// replica timelines beside this report's.
    pub fn merge(&mut self, other: ReplayReport) {
        self.policies.extend(other.policies);
        self.decisions.extend(other.decisions);
        for tl in other.timelines {
            match self.timelines.iter_mut().find(|t| t.target == tl.target) {
                Some(t) => t.replicas.extend(tl.replicas),
                None => self.timelines.push(tl),
            }
        }
    }
}

/// One policy a replay runs: the configured one, reactive (no forecasts) or
/// predictive on one model's forecasts, optionally with every target acting on
/// another forecast quantile.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Its name in the scores, decisions and timelines.
    pub name: String,
    /// The model whose forecasts drive it; `None`: the reactive baseline.
    pub model: Option<String>,
    /// The quantile every target acts on instead of its configured one; `None`: as configured.
    pub quantile: Option<f64>,
}

impl Policy {
    /// The reactive baseline ([`REACTIVE`]): no forecasts, so only the policy's reactive rule acts.
    pub fn reactive() -> Self {
        Self { name: REACTIVE.into(), model: None, quantile: None }
    }

    /// Predictive on `model`'s forecasts, as configured; named after the model.
    pub fn predictive(model: &str) -> Self {
        Self { name: model.into(), model: Some(model.into()), quantile: None }
    }

    /// Predictive on `model`'s forecasts with every target acting on `quantile`
    /// (one of the forecasts' quantiles); named `model@quantile` (`lstm@0.95`).
    pub fn at_quantile(model: &str, quantile: f64) -> Self {
        Self { name: format!("{model}@{quantile}"), model: Some(model.into()), quantile: Some(quantile) }
    }

    /// The policy a name of [`Policy::at_quantile`] varies (`lstm` for
    /// `lstm@0.95`); any other name as it is.
    pub fn varied(name: &str) -> &str {
        name.split_once('@').map_or(name, |(model, _)| model)
    }
}

/// What a replay runs over.
#[derive(Debug, Clone, Copy)]
pub struct ReplayInput<'a> {
    /// The recorded data (its `replicas` map is ignored: the replay simulates replicas).
    pub world: World<'a>,
    /// The policy configuration; each target is replayed on its own clock.
    pub config: &'a Config,
    /// Every model's forecasts (as the backtest made them, at its origins).
    pub forecasts: &'a [Forecast],
    /// The policies to replay, in order (the backtest's: [`Policy::reactive`]
    /// first, then one [`Policy::predictive`] per model).
    pub policies: &'a [Policy],
    /// First decision time per series (e.g. its first evaluation origin); series not listed are not replayed.
    pub start_ms: &'a BTreeMap<SeriesKey, i64>,
    /// Time between decide steps of the simulated clock.
    pub every_ms: i64,
    /// How far ahead a scale-out may be and still count as made for an event (and
    /// the longest lead counted).
    pub horizon_ms: i64,
    /// Checked at every decide step: once raised, the replay stops with
    /// [`Error::Interrupted`](crate::Error::Interrupted).
    pub interrupt: &'a Interrupt,
}

/// The name of the reactive baseline policy.
pub const REACTIVE: &str = "reactive";

const HOUR_MS: i64 = 3_600_000;

/// Replays every target of `input.config` under each of `input.policies`,
/// scoring each against what happened. `progress` is called once per
/// (policy, target) replayed, with the policy's name.
pub fn replay(input: &ReplayInput<'_>, progress: &(dyn Fn(&str, &str) + Sync)) -> Result<ReplayReport> {
    let grid: BTreeMap<&SeriesKey, &ResampledSeries> = input.world.grid.iter().map(|s| (&s.key, s)).collect();
    let mut report = ReplayReport::default();
    let mut timelines: BTreeMap<String, Timeline> = BTreeMap::new();
    // The targets to replay, with their series, level and starting replicas.
    let jobs: Vec<(&Target, &ResampledSeries, i64, f64, u32)> = input
        .config
        .targets
        .iter()
        .filter_map(|t| {
            let k = SeriesKey { entity: t.entity.clone(), metric: t.metric.clone() };
            let (s, start) = (grid.get(&k)?, input.start_ms.get(&k)?);
            let level = saturation_level(t, input.world.limits, &k)?.0;
            let r0 = configured_replicas(t, input.world.limits, &k).unwrap_or(1);
            Some((t, *s, *start, level, r0))
        })
        .collect();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    for policy in input.policies {
        // Targets are independent (each on its own clock): one chunk per core.
        let chunk = jobs.len().div_ceil(threads).max(1);
        let runs: Vec<Result<Vec<Run>>> = std::thread::scope(|scope| {
            let handles: Vec<_> = jobs
                .chunks(chunk)
                .map(|part| {
                    scope.spawn(move || {
                        part.iter()
                            .map(|(t, s, start, _, r0)| {
                                progress(&policy.name, &t.name);
                                let book = match &policy.model {
                                    None => ForecastBook::default(),
                                    Some(model) => ForecastBook::new(
                                        input.forecasts.iter().filter(|f| f.model == *model && f.key == s.key).cloned(),
                                    ),
                                };
                                let mut t = (*t).clone();
                                t.quantile = policy.quantile.unwrap_or(t.quantile);
                                replay_target(input, &t, s, &book, *start, *r0)
                            })
                            .collect()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("a replay thread panicked")).collect()
        });
        let mut score = Tally::default();
        for ((t, s, start, level, r0), run) in
            jobs.iter().zip(runs.into_iter().collect::<Result<Vec<_>>>()?.into_iter().flatten())
        {
            let tl = timelines.entry(t.name.clone()).or_insert_with(|| timeline(t, s, *start, *level, *r0));
            score.add(tl, &run, input.horizon_ms);
            tl.replicas.push((policy.name.clone(), run.steps));
            report
                .decisions
                .extend(run.decisions.into_iter().map(|decision| Replayed { policy: policy.name.clone(), decision }));
        }
        report.policies.push(score.finish(&policy.name));
    }
    report.timelines = timelines.into_values().collect();
    Ok(report)
}

/// One target under one policy.
struct Run {
    steps: Vec<Step>,
    decisions: Vec<Decision>,
}

fn replay_target(
    input: &ReplayInput<'_>,
    t: &Target,
    s: &ResampledSeries,
    book: &ForecastBook,
    start_ms: i64,
    r0: u32,
) -> Result<Run> {
    let cfg =
        Config { global: input.config.global.clone(), detect: input.config.detect.clone(), targets: vec![t.clone()] };
    let raw: Vec<SeriesData> = input.world.raw.iter().filter(|r| r.key.entity == t.entity).cloned().collect();
    let end_ms = s.grid.start_ms + s.values.len() as i64 * s.grid.step_ms;
    let mut replicas = BTreeMap::from([(t.name.clone(), r0)]);
    let mut history: BTreeMap<String, Vec<PastAction>> = BTreeMap::new();
    let mut run = Run { steps: vec![Step { at_ms: start_ms, replicas: r0 }], decisions: Vec::new() };
    let mut now = start_ms;
    while now < end_ms {
        input.interrupt.check()?;
        let world = World { grid: std::slice::from_ref(s), raw: &raw, limits: input.world.limits, replicas: &replicas };
        let out = decide(&world, book, &cfg, &history, now)?;
        let d = out.plan.decisions.into_iter().next().expect("one decision per target");
        if d.action.is_some() {
            if let Action::ScaleTo { replicas: n } = d.action {
                replicas.insert(t.name.clone(), n);
                run.steps.push(Step { at_ms: now, replicas: n });
            }
            history.entry(t.name.clone()).or_default().push(PastAction::of(&d, now, Outcome::Succeeded));
            run.decisions.push(d);
        }
        now += input.every_ms;
    }
    Ok(run)
}

fn timeline(t: &Target, s: &ResampledSeries, start_ms: i64, level: f64, r0: u32) -> Timeline {
    let step = s.grid.step_ms;
    let first = ((start_ms - s.grid.start_ms).max(0) / step) as usize;
    let actual = s.values[first.min(s.values.len())..].to_vec();
    let start = s.grid.start_ms + first as i64 * step;
    let mut events = Vec::new();
    let mut open: Option<i64> = None;
    for (i, v) in actual.iter().enumerate() {
        let at = start + i as i64 * step;
        match (open, *v > level) {
            (None, true) => open = Some(at),
            (Some(o), false) => {
                events.push((o, at));
                open = None;
            }
            _ => {}
        }
    }
    if let Some(o) = open {
        events.push((o, start + actual.len() as i64 * step));
    }
    Timeline {
        target: t.name.clone(),
        series: s.key.to_string(),
        level,
        start_replicas: r0,
        start_ms: start,
        step_ms: step,
        actual,
        events,
        replicas: Vec::new(),
    }
}

/// Running totals of one policy over its targets.
#[derive(Default)]
struct Tally {
    targets: usize,
    events: usize,
    caught: usize,
    leads_min: Vec<f64>,
    scale_outs: usize,
    useful_scale_outs: usize,
    under_min: f64,
    slack_h: f64,
    actions: usize,
    churn: usize,
}

impl Tally {
    fn add(&mut self, tl: &Timeline, run: &Run, horizon_ms: i64) {
        self.targets += 1;
        self.actions += run.decisions.len();
        // Scale-outs: (time, from, to).
        let mut outs = Vec::new();
        let mut moves = Vec::new();
        for w in run.steps.windows(2) {
            let (a, b) = (&w[0], &w[1]);
            moves.push((b.at_ms, b.replicas.cmp(&a.replicas)));
            if b.replicas > a.replicas {
                outs.push(b.at_ms);
            }
        }
        for w in moves.windows(2) {
            if w[1].0 - w[0].0 <= HOUR_MS && w[0].1 != w[1].1 {
                self.churn += 1;
            }
        }
        for (start, _) in &tl.events {
            self.events += 1;
            // Caught: when the event starts, the policy already runs more replicas than at the
            // start of the replay. Lead: since the replicas went up, at most the horizon.
            let before: Vec<&Step> = run.steps.iter().filter(|st| st.at_ms <= *start).collect();
            let in_force = before.last().map_or(tl.start_replicas, |st| st.replicas);
            if in_force > tl.start_replicas {
                let raised = before.iter().rev().take_while(|st| st.replicas > tl.start_replicas).last();
                if let Some(first) = raised.map(|st| st.at_ms) {
                    self.caught += 1;
                    self.leads_min.push((start - first).min(horizon_ms) as f64 / 60_000.0);
                }
            }
        }
        self.scale_outs += outs.len();
        self.useful_scale_outs += outs
            .iter()
            .filter(|&&a| tl.events.iter().any(|(s, e)| (*s <= a && a < *e) || (*s > a && *s <= a + horizon_ms)))
            .count();
        // Bin by bin: the replicas in force, under-provisioning and slack.
        let step_min = tl.step_ms as f64 / 60_000.0;
        let mut k = 0;
        for (i, v) in tl.actual.iter().enumerate() {
            let at = tl.start_ms + i as i64 * tl.step_ms;
            while k + 1 < run.steps.len() && run.steps[k + 1].at_ms <= at {
                k += 1;
            }
            if !v.is_finite() {
                continue;
            }
            let r = f64::from(run.steps[k].replicas);
            let r0 = f64::from(tl.start_replicas);
            // The load in replicas' worth at the level.
            let needed = v * r0 / tl.level;
            if needed > r {
                self.under_min += step_min;
            }
            self.slack_h += (r - needed).max(0.0) * step_min / 60.0;
        }
    }

    fn finish(self, policy: &str) -> PolicyScore {
        let ratio = |a: usize, b: usize| if b == 0 { f64::NAN } else { a as f64 / b as f64 };
        PolicyScore {
            policy: policy.to_owned(),
            targets: self.targets,
            events: self.events,
            caught: self.caught,
            recall: ratio(self.caught, self.events),
            precision: ratio(self.useful_scale_outs, self.scale_outs),
            mean_lead_minutes: if self.leads_min.is_empty() {
                f64::NAN
            } else {
                self.leads_min.iter().sum::<f64>() / self.leads_min.len() as f64
            },
            under_provisioned_minutes: self.under_min,
            slack_replica_hours: self.slack_h,
            actions: self.actions,
            churn: self.churn,
        }
    }
}

#[cfg(test)]
mod tests {
    use headroom_core::Span;
    use headroom_core::{Grid, Limit, Limits, RepairReport};
    use headroom_forecast::baselines::baseline;
    use headroom_forecast::{Forecaster, History};
    use headroom_remediate::config::{Platform, ScaleIn};

    use super::*;

    const STEP: i64 = 900_000;
    const DAY: i64 = 86_400_000;
    const T0: i64 = 1_700_006_400_000;

    /// 12 days; every afternoon the load peaks at 0.9 (level 0.8) from day 6 on, at 0.5 before.
    fn world_parts() -> (Vec<ResampledSeries>, Vec<SeriesData>, Limits, Config) {
        let key = SeriesKey { entity: "k8s/shop/deployment/web".into(), metric: "cpu".into() };
        let n = (12 * DAY / STEP) as usize;
        let values: Vec<f64> = (0..n)
            .map(|i| {
                let day = i as i64 * STEP / DAY;
                let phase = (i % 96) as f64 / 96.0 * std::f64::consts::TAU;
                let peak = if day >= 6 { 0.9 } else { 0.5 };
                0.2 + (peak - 0.2) * (0.5 - 0.5 * phase.cos())
            })
            .collect();
        let raw =
            SeriesData { key: key.clone(), ts: (0..n).map(|i| T0 + i as i64 * STEP).collect(), values: values.clone() };
        let grid = ResampledSeries {
            key: key.clone(),
            grid: Grid::new(STEP, T0, T0 + n as i64 * STEP).unwrap(),
            imputed: vec![false; n],
            values,
            report: RepairReport::default(),
        };
        let mut limits = Limits::new();
        limits.insert(key.clone(), Limit::threshold(0.8));
        let mut t = Target::new("web", Platform::Kubernetes, &key.entity, &key.metric);
        t.replicas = Some(4);
        t.max_replicas = 20;
        t.max_step = 4;
        t.lead_time = Span::from_ms(12 * 3_600_000);
        t.scale_in = ScaleIn { enabled: true, below: 0.5, window: Span::from_ms(6 * 3_600_000) };
        let cfg = Config { global: Default::default(), detect: Default::default(), targets: vec![t] };
        (vec![grid], vec![raw], limits, cfg)
    }

    /// Daily-origin forecasts of `model` from day 7 on (day 6 is the first day with the peak).
    fn forecasts(s: &ResampledSeries, model: &dyn Forecaster) -> Vec<Forecast> {
        (7..12)
            .map(|d| {
                let o = (d * DAY / STEP) as usize;
                let h = History { key: &s.key, start_ms: T0, step_ms: STEP, values: &s.values[..o] };
                model.forecast_batch(&[h], 192.min(s.values.len() - o)).unwrap().remove(0)
            })
            .collect()
    }

    #[test]
    fn the_predictive_policy_scales_before_the_peak_and_the_reactive_one_after() {
        let (grid, raw, limits, cfg) = world_parts();
        let daily = baseline("snaive-daily").unwrap();
        let f = forecasts(&grid[0], daily.as_ref());
        let start = BTreeMap::from([(grid[0].key.clone(), T0 + 7 * DAY)]);
        let none = BTreeMap::new();
        let policies = [Policy::reactive(), Policy::predictive("snaive-daily")];
        let input = ReplayInput {
            world: World { grid: &grid, raw: &raw, limits: &limits, replicas: &none },
            config: &cfg,
            forecasts: &f,
            policies: &policies,
            start_ms: &start,
            every_ms: 3_600_000,
            horizon_ms: 2 * DAY,
            interrupt: &Interrupt::default(),
        };
        let report = replay(&input, &|_, _| {}).unwrap();
        let [reactive, predictive] = &report.policies[..] else { panic!("{:?}", report.policies) };
        assert_eq!((reactive.policy.as_str(), predictive.policy.as_str()), (REACTIVE, "snaive-daily"));
        // One afternoon peak above 0.8 per replayed day: 5 events.
        assert_eq!((reactive.events, predictive.events), (5, 5));
        // Yesterday's peak predicts today's: scaled before every event.
        assert_eq!(predictive.caught, 5, "{predictive:?}");
        assert!(predictive.mean_lead_minutes > 0.0);
        // The reactive policy only acts once the load is over the level: under-provisioned longer.
        assert!(reactive.caught < predictive.caught, "{reactive:?}");
        assert!(
            predictive.under_provisioned_minutes < reactive.under_provisioned_minutes,
            "{predictive:?} {reactive:?}"
        );
        assert!(predictive.actions <= reactive.actions + 5, "{predictive:?} {reactive:?}");
        // Timelines: one target, both policies, the first step at the start with 4 replicas.
        let tl = &report.timelines[0];
        assert_eq!(tl.replicas.len(), 2);
        assert!(tl.replicas.iter().all(|(_, steps)| steps[0] == Step { at_ms: T0 + 7 * DAY, replicas: 4 }));
        assert_eq!(tl.events.len(), 5);
        // Every replayed decision stays inside the target's bounds.
        for r in &report.decisions {
            if let Action::ScaleTo { replicas } = r.decision.action {
                assert!((1..=20).contains(&replicas), "{r:?}");
            }
        }
    }

    #[test]
    fn a_policy_at_another_quantile_reads_that_path_and_merges_beside_the_others() {
        let (grid, raw, limits, cfg) = world_parts();
        let daily = baseline("snaive-daily").unwrap();
        let f = forecasts(&grid[0], daily.as_ref());
        let start = BTreeMap::from([(grid[0].key.clone(), T0 + 7 * DAY)]);
        let none = BTreeMap::new();
        let run = |policies: &[Policy]| {
            let input = ReplayInput {
                world: World { grid: &grid, raw: &raw, limits: &limits, replicas: &none },
                config: &cfg,
                forecasts: &f,
                policies,
                start_ms: &start,
                every_ms: 3_600_000,
                horizon_ms: 2 * DAY,
                interrupt: &Interrupt::default(),
            };
            replay(&input, &|_, _| {}).unwrap()
        };
        let mut report = run(&[Policy::reactive(), Policy::predictive("snaive-daily")]);
        report.merge(run(&[Policy::at_quantile("snaive-daily", 0.99)]));
        let names: Vec<&str> = report.policies.iter().map(|p| p.policy.as_str()).collect();
        assert_eq!(names, [REACTIVE, "snaive-daily", "snaive-daily@0.99"]);
        let varied: Vec<&str> = names.iter().map(|n| Policy::varied(n)).collect();
        assert_eq!(varied, [REACTIVE, "snaive-daily", "snaive-daily"]);
        let tl = &report.timelines[0];
        assert_eq!(tl.replicas.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>(), names);
        // Its decisions read p99, the configured policy's p90.
        let quantiles = |policy: &str| -> Vec<Option<f64>> {
            report
                .decisions
                .iter()
                .filter(|r| r.policy == policy && matches!(r.decision.action, Action::ScaleTo { .. }))
                .filter_map(|r| r.decision.evidence.as_ref().map(|e| e.quantile))
                .collect()
        };
        assert!(!quantiles("snaive-daily@0.99").is_empty() && !quantiles("snaive-daily").is_empty());
        assert!(quantiles("snaive-daily@0.99").iter().all(|q| *q == Some(0.99)));
        assert!(quantiles("snaive-daily").iter().all(|q| *q == Some(0.9)));
        // p99 lies above p90: at least as many events caught, for more slack.
        let (p90, p99) = (&report.policies[1], &report.policies[2]);
        assert!(p99.caught >= p90.caught && p99.slack_replica_hours > p90.slack_replica_hours, "{p90:?} {p99:?}");
    }

    #[test]
    fn tally_counts_churn_slack_and_under_provisioning_by_hand() {
        // Level 0.8 at 2 replicas; load 0.4, 1.2, 1.2, 0.4 over four 15-min bins.
        let tl = Timeline {
            target: "t".into(),
            series: "e:m".into(),
            level: 0.8,
            start_replicas: 2,
            start_ms: 0,
            step_ms: STEP,
            actual: vec![0.4, 1.2, 1.2, 0.4],
            events: vec![(STEP, 3 * STEP)],
            replicas: Vec::new(),
        };
        // Scale to 3 at the start of bin 2, back to 2 at bin 3 (within the hour: churn).
        let run = Run {
            steps: vec![
                Step { at_ms: 0, replicas: 2 },
                Step { at_ms: 2 * STEP, replicas: 3 },
                Step { at_ms: 3 * STEP, replicas: 2 },
            ],
            decisions: Vec::new(),
        };
        let mut t = Tally::default();
        t.add(&tl, &run, DAY);
        // Needed replicas per bin: 1, 3, 3, 1. Under-provisioned in bin 1 only (2 < 3).
        assert_eq!(t.under_min, 15.0);
        // Slack: bin 0: 2-1, bin 2: 3-3, bin 3: 2-1 → 2 replica-bins = 0.5 replica-hours.
        assert!((t.slack_h - 0.5).abs() < 1e-9);
        assert_eq!(t.churn, 1);
        assert_eq!((t.events, t.caught), (1, 0), "the scale-out came after the event started");
        assert_eq!((t.scale_outs, t.useful_scale_outs), (1, 1));
    }
}
