//! Property tests of the policy's guardrails: random configurations, states
//! and risks, run as sequences of cycles whose actions are fed back as
//! history (as the engine does through the audit log). Whatever happens:
//! replica counts stay in [min, max] and within max_step; no action inside a
//! cooldown; per-target and global hourly caps hold in every sliding hour; no
//! scale-in on the forecast alone; no action on stale data; no restart that
//! could reach the platform's start limit; nothing carried out twice.
//!
//! `PROPTEST_CASES` overrides the number of cases (default 10,000).

use std::collections::BTreeMap;

use headroom_core::Span;
use headroom_core::{Action, Evidence, Mode, SeriesKey};
use headroom_remediate::config::{Config, Global, Platform, Rung, ScaleIn, StartLimit, Target};
use headroom_remediate::policy::plan;
use headroom_remediate::risk::{ForecastHealth, OomKill, RestartLoop, Risk, Saturation};
use headroom_remediate::state::{Outcome, PastAction, TargetState};
use proptest::prelude::*;

const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000)
}

fn span(min: i64) -> Span {
    Span::from_ms(min * MIN)
}

prop_compose! {
    fn target(i: usize)(
        platform in prop_oneof![Just(Platform::Kubernetes), Just(Platform::Systemd), Just(Platform::Process)],
        min in 1u32..5, extra in 0u32..8, step in 1u32..4,
        cooldown in 0i64..90, cap in 1u32..5,
        max_age in 1i64..30, enforce in any::<bool>(),
        scale_in in any::<bool>(), below in 0.2f64..0.9,
        burst in 2u32..7, ladder_len in 1usize..5,
        replicas in proptest::option::of(1u32..20),
    ) -> Target {
        let mut t = Target::new(&format!("t{i}"), platform, &format!("e{i}"), "cpu");
        t.min_replicas = min;
        t.max_replicas = min + extra;
        t.max_step = step;
        t.cooldown = span(cooldown);
        t.max_actions_per_hour = cap;
        t.max_sample_age = span(max_age);
        t.mode = if enforce { Mode::Enforce } else { Mode::DryRun };
        t.scale_in = ScaleIn { enabled: scale_in, below, window: span(360) };
        t.replicas = replicas;
        let rungs = if platform.scalable() {
            vec![Rung::Restart, Rung::Restart, Rung::ScaleOut, Rung::Restart]
        } else {
            vec![Rung::Restart, Rung::Restart, Rung::Restart, Rung::Restart]
        };
        let mut ladder = rungs[..ladder_len].to_vec();
        if ladder_len < 4 { ladder.push(Rung::Alert); }
        t.ladder = Some(ladder);
        t.backoff = span(5);
        t.start_limit = Some(StartLimit { burst, interval: span(30) });
        t
    }
}

/// What the world looks like to one target in one cycle.
#[derive(Debug, Clone)]
struct Cycle {
    age_min: Option<i64>,
    replicas: Option<u32>,
    recent: Vec<f64>,
    peak: f64,
    crossing_in_min: Option<i64>,
    crash: u8,
    degraded: bool,
    starts: Vec<i64>,
    has_forecast: bool,
}

prop_compose! {
    fn cycle()(
        age_min in proptest::option::of(0i64..40),
        replicas in proptest::option::of(1u32..20),
        recent in proptest::collection::vec(0.0f64..120.0, 0..6),
        peak in 0.0f64..200.0,
        crossing_in_min in proptest::option::of(0i64..1000),
        crash in 0u8..4,
        degraded in proptest::bool::weighted(0.2),
        starts in proptest::collection::vec(0i64..40, 0..6),
        has_forecast in proptest::bool::weighted(0.8),
    ) -> Cycle {
        Cycle { age_min, replicas, recent, peak, crossing_in_min, crash, degraded, starts, has_forecast }
    }
}

const LEVEL: f64 = 80.0;

fn world(t: &Target, c: &Cycle, now: i64, history: Vec<PastAction>) -> (Vec<Risk>, TargetState) {
    let key = SeriesKey { entity: t.entity.clone(), metric: t.metric.clone() };
    let mut risks = Vec::new();
    if let Some(m) = c.crossing_in_min.filter(|_| c.has_forecast) {
        let at = now + m * MIN;
        risks.push(Risk::Saturation(Saturation {
            key: key.clone(),
            model: "lstm".into(),
            origin_ms: now,
            quantile: 0.9,
            threshold: LEVEL,
            crosses_at_ms: at,
            peak: c.peak.max(LEVEL),
            peak_at_ms: at,
            time_left_ms: m * MIN,
            window_start_ms: at - at.rem_euclid(HOUR),
        }));
    }
    let restarts = SeriesKey { entity: t.entity.clone(), metric: "restarts".into() };
    match c.crash {
        1 => risks.push(Risk::RestartLoop(RestartLoop {
            key: restarts,
            restarts: 4,
            window_ms: 30 * MIN,
            first_at_ms: now - 20 * MIN,
            last_at_ms: now - MIN,
        })),
        2 => risks.push(Risk::OomKill(OomKill {
            key: SeriesKey { entity: t.entity.clone(), metric: "memory".into() },
            peak: 0.97,
            limit: 1.0,
            drop_at_ms: now - 5 * MIN,
            restarted: true,
        })),
        _ => {}
    }
    let state = TargetState {
        last_sample_ms: c.age_min.map(|a| now - a * MIN),
        replicas: c.replicas,
        recent: c.recent.clone(),
        level: Some(LEVEL),
        forecast: c.has_forecast.then(|| Evidence {
            series: key.to_string(),
            model: "lstm".into(),
            origin_ms: now,
            quantile: Some(0.9),
            peak: c.peak,
            peak_at_ms: now + HOUR,
            threshold: LEVEL,
            crosses_at_ms: None,
        }),
        health: c.has_forecast.then(|| ForecastHealth {
            key,
            mase: Some(if c.degraded { 5.0 } else { 0.9 }),
            coverage: Some(0.8),
            scored: 96,
            degraded: c.degraded,
            reason: if c.degraded { "MASE 5.0 > 2.0".into() } else { "MASE 0.9".into() },
        }),
        recent_starts_ms: c.starts.iter().map(|m| now - m * MIN).collect(),
        history,
    };
    (risks, state)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn guardrails_hold_over_sequences_of_cycles(
        targets in (1usize..4).prop_flat_map(|n| (0..n).map(target).collect::<Vec<_>>()),
        global_cap in 1u32..8,
        steps in proptest::collection::vec((1i64..40, proptest::collection::vec(cycle(), 3)), 1..12),
    ) {
        let cfg = Config { global: Global { max_actions_per_hour: global_cap }, detect: Default::default(), targets };
        prop_assert!(cfg.problems().is_empty(), "{:?}", cfg.problems());
        let mut history: BTreeMap<String, Vec<PastAction>> = BTreeMap::new();
        let mut all: Vec<(i64, String, Mode)> = Vec::new();
        let mut now = 1_700_000_000_000i64;
        for (gap, cycles) in steps {
            now += gap * MIN;
            let mut risks = Vec::new();
            let mut states = BTreeMap::new();
            for (t, c) in cfg.targets.iter().zip(cycles.iter().cycle()) {
                let (r, s) = world(t, c, now, history.get(&t.name).cloned().unwrap_or_default());
                risks.extend(r);
                states.insert(t.name.clone(), s);
            }
            let out = plan(&risks, &states, &cfg, now);
            prop_assert_eq!(out.decisions.len(), cfg.targets.len(), "one decision per target");
            for d in &out.decisions {
                let t = cfg.target(&d.target).unwrap();
                let s = &states[&d.target];
                prop_assert_eq!(d.decided_at_ms, now);
                if !d.action.is_some() {
                    continue;
                }
                // No action on stale or missing data.
                let age = s.last_sample_ms.map(|ts| now - ts);
                prop_assert!(age.is_some_and(|a| a <= t.max_sample_age.ms()), "acted on stale data: {d:?}");
                // Dry-run unless enforce is set.
                prop_assert_eq!(d.mode, t.mode);
                // Cooldown.
                let hist = history.get(&t.name).cloned().unwrap_or_default();
                if let Some(last) = hist.iter().map(|a| a.at_ms).max() {
                    prop_assert!(now - last >= t.cooldown.ms(), "inside cooldown: {d:?}");
                }
                // Never the same id twice.
                prop_assert!(hist.iter().all(|a| a.id != d.id), "acted twice for one reason: {d:?}");
                match d.action {
                    Action::ScaleTo { replicas: n } => {
                        let cur = s.replicas.or(t.replicas).expect("scaled without knowing replicas");
                        prop_assert!(t.scalable());
                        prop_assert!(n >= t.min_replicas && n <= t.max_replicas, "{n} outside bounds: {d:?}");
                        prop_assert!(n.abs_diff(cur) <= t.max_step, "{cur} → {n} exceeds max_step: {d:?}");
                        prop_assert!(n != cur);
                        if n < cur {
                            // Never scale in on the forecast alone: the recent actuals must be low
                            // too (and, with a forecast, its peak; never on a degraded one).
                            let level = t.scale_in.below * LEVEL;
                            prop_assert!(t.scale_in.enabled, "scale-in while disabled: {d:?}");
                            prop_assert!(!s.recent.is_empty() && s.recent.iter().all(|v| *v < level), "{d:?}");
                            if let Some(f) = &s.forecast {
                                prop_assert!(f.peak < level, "{d:?}");
                                prop_assert!(!s.health.as_ref().unwrap().degraded, "{d:?}");
                            }
                        }
                    }
                    Action::Restart => {
                        let limit = t.start_limit().unwrap();
                        let span_ms = limit.interval.ms();
                        let ours = hist.iter().filter(|a| a.action == Action::Restart && now - a.at_ms < span_ms).count();
                        let seen = s.recent_starts_ms.iter().filter(|ts| now - **ts < span_ms).count();
                        prop_assert!(((ours + seen) as u32) + 2 <= limit.burst, "restart could hit the start limit: {d:?}");
                    }
                    Action::None => unreachable!(),
                }
                let outcome = if d.mode == Mode::Enforce { Outcome::Succeeded } else { Outcome::DryRun };
                history.entry(t.name.clone()).or_default().push(PastAction::of(d, now, outcome));
                all.push((now, d.target.clone(), d.mode));
            }
        }
        // Caps in every sliding hour (windows ending at each action). The
        // global cap holds per mode: dry runs never use up the enforced budget.
        for (end, _, mode) in &all {
            let in_hour: Vec<&(i64, String, Mode)> =
                all.iter().filter(|(at, _, m)| at > &(end - HOUR) && at <= end && m == mode).collect();
            prop_assert!(in_hour.len() as u32 <= cfg.global.max_actions_per_hour, "global cap: {in_hour:?}");
            for t in &cfg.targets {
                let n = in_hour.iter().filter(|(_, name, _)| name == &t.name).count() as u32;
                prop_assert!(n <= t.max_actions_per_hour, "cap of {}: {n} in an hour", t.name);
            }
        }
    }
}
