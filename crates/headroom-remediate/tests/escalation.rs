//! Escalation: a synthetic restart loop (a unit that crashes every few
//! minutes, restarted by its platform) run through the real restart-loop
//! detector and the policy, cycle after cycle, with every action fed back as
//! history. The ladder is walked in order, each rung after its backoff, and
//! stops at its end; no restart headroom makes ever reaches the platform's
//! start limit.

use std::collections::BTreeMap;

use headroom_core::Span;
use headroom_core::{Action, Mode, SeriesData, SeriesKey};
use headroom_remediate::config::{Config, Platform, Rung, StartLimit, Target};
use headroom_remediate::detect::{DetectConfig, restart_loop};
use headroom_remediate::policy::plan;
use headroom_remediate::{PastAction, Risk, TargetState, state::Outcome};

const MIN: i64 = 60_000;
const T0: i64 = 1_700_000_000_000;

struct Run {
    actions: Vec<(i64, Action, bool)>,
    alerts_after_end: usize,
    /// (time, starts in the interval ending there, ours included) at each restart headroom made.
    starts_at_our_restarts: Vec<(i64, usize)>,
}

/// Cycles every minute for `minutes`; the unit crashes (and the platform
/// restarts it) every `crash_every` minutes while the loop lasts.
fn simulate(target: Target, crash_every: i64, minutes: i64) -> Run {
    let detect = DetectConfig::default();
    let cfg = Config { global: Default::default(), detect: detect.clone(), targets: vec![target.clone()] };
    assert!(cfg.problems().is_empty(), "{:?}", cfg.problems());
    let key = SeriesKey { entity: target.entity.clone(), metric: "restarts".into() };
    // Starts are counted over the platform's start-limit interval (10 min where there is none).
    let span = target.start_limit().map_or(10 * MIN, |l| l.interval.ms());
    let mut counter = SeriesData::new(key);
    let mut platform_starts: Vec<i64> = Vec::new();
    let mut ours: Vec<i64> = Vec::new();
    let mut history: Vec<PastAction> = Vec::new();
    let mut run = Run { actions: Vec::new(), alerts_after_end: 0, starts_at_our_restarts: Vec::new() };
    let mut restarts = 0.0;
    for m in 0..minutes {
        let now = T0 + m * MIN;
        if m > 0 && m % crash_every == 0 {
            restarts += 1.0;
            platform_starts.push(now);
        }
        counter.push(now, restarts);
        let mut risks = Vec::new();
        if let Some(r) = restart_loop(&counter, &detect.restart_loop, now).unwrap() {
            risks.push(Risk::RestartLoop(r));
        }
        let state = TargetState {
            last_sample_ms: Some(now),
            replicas: Some(3),
            // The platform's counter: systemd's NRestarts does not count manual restarts.
            recent_starts_ms: platform_starts.clone(),
            history: history.clone(),
            ..TargetState::default()
        };
        let states = BTreeMap::from([(target.name.clone(), state)]);
        let out = plan(&risks, &states, &cfg, now);
        let d = &out.decisions[0];
        if d.action.is_some() {
            if d.action == Action::Restart {
                ours.push(now);
                let n = platform_starts.iter().chain(&ours).filter(|&&t| t > now - span && t <= now).count();
                run.starts_at_our_restarts.push((now, n));
            }
            run.actions.push((now, d.action, d.alert));
            history.push(PastAction::of(d, now, Outcome::Succeeded));
        } else if d.alert && d.risk.starts_with("restart_loop") {
            run.alerts_after_end += 1;
        }
    }
    run
}

fn unit(ladder: Vec<Rung>, platform: Platform) -> Target {
    let mut t = Target::new("worker", platform, "systemd/worker.service", "cpu");
    t.ladder = Some(ladder);
    t.backoff = Span::from_ms(5 * MIN);
    t.cooldown = Span::from_ms(MIN);
    t.max_actions_per_hour = 10;
    t.mode = Mode::Enforce;
    t
}

#[test]
fn a_restart_loop_walks_the_ladder_in_order_and_stops_at_its_end() {
    let t = unit(vec![Rung::Restart, Rung::Restart, Rung::ScaleOut, Rung::Alert], Platform::Kubernetes);
    let run = simulate(t, 4, 240);
    let kinds: Vec<Action> = run.actions.iter().map(|a| a.1).collect();
    assert_eq!(kinds, vec![Action::Restart, Action::Restart, Action::ScaleTo { replicas: 4 }], "{:?}", run.actions);
    // Rung n waits backoff × 2^(n-1) after the previous one.
    let at: Vec<i64> = run.actions.iter().map(|a| a.0).collect();
    assert!(at[1] - at[0] >= 5 * MIN, "second rung after 5 min: {at:?}");
    assert!(at[2] - at[1] >= 10 * MIN, "third rung after 10 min: {at:?}");
    // The ladder ends in an alert, and nothing more is done while the loop goes on.
    assert!(run.alerts_after_end > 100, "alerts after the ladder ended: {}", run.alerts_after_end);
    assert!(at[2] < run.actions.last().unwrap().0 + 1);
}

#[test]
fn restarts_never_reach_a_systemd_start_limit() {
    // A strict limit (4 starts in 15 min) against a unit crashing every 7 minutes.
    let mut t = unit(vec![Rung::Restart; 6], Platform::Systemd);
    t.ladder.as_mut().unwrap().push(Rung::Alert);
    t.start_limit = Some(StartLimit { burst: 4, interval: Span::from_ms(15 * MIN) });
    let run = simulate(t.clone(), 7, 300);
    let limit = t.start_limit.unwrap();
    assert!(!run.starts_at_our_restarts.is_empty(), "some restart should have fit under the limit");
    for (at, n) in &run.starts_at_our_restarts {
        assert!(
            *n < limit.burst as usize,
            "restart at +{} min made {n} starts within 15 min (limit {})",
            (at - T0) / MIN,
            limit.burst
        );
    }
    // With systemd's default (5 in 10 s) and minutes between crashes, the limit never blocks the ladder.
    let mut relaxed = unit(vec![Rung::Restart, Rung::Restart, Rung::Alert], Platform::Systemd);
    relaxed.start_limit = None;
    let run = simulate(relaxed, 4, 120);
    assert_eq!(run.actions.len(), 2, "{:?}", run.actions);
}
