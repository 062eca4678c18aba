//! The policy: `(risks, observed state, configuration, now) → decisions`.
//!
//! Pure: it never reads a clock and never does IO, so the backtest runs the
//! very same function. Every target in the configuration gets exactly one
//! decision per call (often `none`, with the reason), and every guardrail that
//! was checked is listed in the decision with its verdict.
//!
//! Guardrails, in the order they are checked:
//!
//! 1. **stale data**: no action when the newest sample is missing or older than
//!    `max_sample_age`.
//! 2. **forecast health**: a degraded forecast turns predictive actions off;
//!    only observed saturation (the newest actual value above the level)
//!    can still scale out. Observed saturation always can (the reactive
//!    floor): no forecast, however healthy, holds back the scale-out that
//!    the newest actual value needs.
//! 3. **lead time**: predicted saturation further ahead than `lead_time` waits.
//! 4. **ladder** (crash patterns): rungs in order, each after its backoff; an
//!    exhausted ladder stops acting and alerts.
//! 5. **start limit**: never the restart that would reach the platform's own
//!    start limit (one start is always left for the platform).
//! 6. **max_step**, then **bounds** `[min_replicas, max_replicas]`: the replica
//!    count is clamped; at the bound, no action and an alert.
//! 7. **scale-in**: only when enabled, and only when the forecast *and* the
//!    recent actual values are both below `scale_in.below` of the level.
//! 8. **already done**: a decision id already carried out (or pending
//!    reconciliation) is never carried out again.
//! 9. **cooldown**, 10. **per-target hourly cap**, 11. **global hourly cap**.
//! 12. **mode**: dry-run unless the target says `enforce`.

use std::collections::BTreeMap;

use headroom_core::{Action, Decision, Evidence, Grid, Guardrail, Mode, Verdict, format_duration, format_ts};
use serde::{Deserialize, Serialize};

use crate::config::{Config, Rung, Target};
use crate::risk::{Risk, Saturation, is_crash_kind};
use crate::state::{Outcome, PastAction, TargetState};

const HOUR_MS: i64 = 3_600_000;

/// The result of one policy call.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// One decision per configured target, in configuration order.
    pub decisions: Vec<Decision>,
    /// Actions whose verification window has passed and that did not work.
    pub failed_verifications: Vec<FailedVerification>,
}

/// An action that did not bring the target back within its verification window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailedVerification {
    /// The decision id of the action.
    pub id: String,
    /// Its target.
    pub target: String,
    /// What was still wrong.
    pub detail: String,
}

/// Decides what to do for every configured target.
///
/// `risks` are the detectors' findings (any series); `states` the observed
/// state per target name (a missing entry is a target with no data: it gets
/// `none` for stale data).
pub fn plan(risks: &[Risk], states: &BTreeMap<String, TargetState>, cfg: &Config, now_ms: i64) -> Plan {
    let empty = TargetState::default();
    let mut out = Plan::default();
    // Per mode: enforced actions cap enforced targets, dry-run ones dry-run targets.
    let global = |mode: Mode| {
        states
            .values()
            .flat_map(|s| &s.history)
            .filter(|a| counts_as_action(a, mode) && within(a.at_ms, now_ms, HOUR_MS))
            .count() as u32
    };
    let mut global_actions = [global(Mode::DryRun), global(Mode::Enforce)];
    for target in &cfg.targets {
        let state = states.get(&target.name).unwrap_or(&empty);
        let mine: Vec<&Risk> = risks.iter().filter(|r| belongs(target, r)).collect();
        if let Some(failed) = verify(target, state, &mine, now_ms) {
            out.failed_verifications.push(failed);
        }
        let mut d = decide(target, state, &mine, now_ms);
        if d.action.is_some() {
            let cap = cfg.global.max_actions_per_hour;
            let n = &mut global_actions[usize::from(target.mode == Mode::Enforce)];
            if *n >= cap {
                block(
                    &mut d,
                    "global_hourly_cap",
                    format!("{n} actions across all targets in the last hour (cap {cap})"),
                );
            } else {
                pass(&mut d, "global_hourly_cap", format!("{n} of {cap} in the last hour"));
                *n += 1;
            }
        }
        if d.action.is_some() {
            let verdict =
                if target.mode == Mode::Enforce { "enforce: will be carried out" } else { "dry-run: recorded only" };
            pass(&mut d, "mode", verdict.into());
        }
        out.decisions.push(d);
    }
    out
}

/// Whether a risk is about this target: the target's metric for saturation,
/// its memory metric for leaks, any metric of its entity for crash patterns.
fn belongs(t: &Target, r: &Risk) -> bool {
    let key = r.key();
    if key.entity != t.entity {
        return false;
    }
    match r {
        Risk::Saturation(_) => key.metric == t.metric,
        Risk::MemoryLeak(_) => key.metric == t.memory_metric || key.metric == t.metric,
        _ => true,
    }
}

fn within(at_ms: i64, now_ms: i64, span_ms: i64) -> bool {
    at_ms > now_ms - span_ms && at_ms <= now_ms
}

/// Past decisions that changed something (or would have, in dry-run) count
/// towards cooldowns, caps, the ladder and the start limit; failed attempts
/// count too (they touched the target). Only decisions of the target's own
/// `mode` count: a dry run of an enforced target changed nothing and must not
/// hold back the real action (nor a real action a dry-run replay).
fn counts_as_action(a: &PastAction, mode: Mode) -> bool {
    a.action.is_some() && a.mode == mode && !(a.mode == Mode::Enforce && a.outcome == Outcome::DryRun)
}

fn guard(d: &mut Decision, name: &str, verdict: Verdict, detail: String) {
    d.guardrails.push(Guardrail { name: name.into(), verdict, detail });
}

fn pass(d: &mut Decision, name: &str, detail: String) {
    guard(d, name, Verdict::Passed, detail);
}

/// Stops the action: the decision becomes `none`, with the guardrail's reason.
fn block(d: &mut Decision, name: &str, detail: String) {
    d.reason = format!("{} — blocked by {name}: {detail}", d.reason);
    guard(d, name, Verdict::Blocked, detail);
    d.set_action(Action::None);
}

fn base(t: &Target, risk: &str, window_start_ms: i64, reason: String, now_ms: i64) -> Decision {
    Decision { reason, ..Decision::new(&t.name, &t.entity, t.mode, risk, window_start_ms, now_ms) }
}

fn decide(t: &Target, s: &TargetState, risks: &[&Risk], now_ms: i64) -> Decision {
    // 1. Stale or missing data: nothing at all.
    let stale = |reason: String, detail: String| {
        let mut d = base(t, "none", now_ms, reason, now_ms);
        guard(&mut d, "stale_data", Verdict::Blocked, detail);
        d
    };
    let Some(age) = s.last_sample_ms.map(|ts| now_ms - ts) else {
        return stale(
            format!("no samples of {}:{}", t.entity, t.metric),
            "no samples: no action on missing data".into(),
        );
    };
    let (age_text, max_age) = (format_duration(age), t.max_sample_age);
    if age > max_age.ms() {
        return stale(
            format!("newest sample is {age_text} old (limit {max_age})"),
            format!("sample age {age_text} > {max_age}"),
        );
    }
    let fresh = format!("newest sample {age_text} old (limit {max_age})");

    let crash = risks.iter().copied().filter(|r| r.is_crash_pattern()).min_by_key(|r| crash_priority(r));
    let mut d = if let Some(risk) = crash {
        ladder(t, s, risk, now_ms)
    } else if let Some(leak) = risks.iter().find_map(|r| match r {
        Risk::MemoryLeak(l) => Some(l),
        _ => None,
    }) {
        leak_restart(t, s, leak, now_ms)
    } else {
        saturation_or_scale_in(t, s, risks, now_ms)
    };
    d.guardrails.insert(0, Guardrail { name: "stale_data".into(), verdict: Verdict::Passed, detail: fresh });
    if d.action.is_some() {
        common_guards(t, s, &mut d, now_ms);
    }
    d
}

fn crash_priority(r: &Risk) -> u8 {
    match r {
        Risk::OomKill(_) => 0,
        Risk::RestartLoop(_) => 1,
        _ => 2,
    }
}

/// Evidence from samples: `peak` seen at `at_ms` (origin, peak and crossing
/// time alike), against `threshold`.
fn observed(series: String, peak: f64, at_ms: i64, threshold: f64) -> Evidence {
    Evidence {
        series,
        model: "observed".into(),
        origin_ms: at_ms,
        quantile: None,
        peak,
        peak_at_ms: at_ms,
        threshold,
        crosses_at_ms: Some(at_ms),
    }
}

fn describe_crash(r: &Risk) -> (String, Evidence) {
    let series = r.key().to_string();
    let observed = |peak: f64, at_ms: i64, threshold: f64| observed(series.clone(), peak, at_ms, threshold);
    match r {
        Risk::RestartLoop(l) => (
            format!(
                "restart loop: {} restarts of {} within {} (first {}, last {})",
                l.restarts,
                series,
                format_duration(l.window_ms),
                format_ts(l.first_at_ms),
                format_ts(l.last_at_ms)
            ),
            observed(f64::from(l.restarts), l.last_at_ms, 0.0),
        ),
        Risk::OomKill(o) => (
            format!(
                "OOM kill shape on {}: {:.4} of limit {:.4} then a drop at {}{}",
                series,
                o.peak,
                o.limit,
                format_ts(o.drop_at_ms),
                if o.restarted { " with a restart" } else { "" }
            ),
            observed(o.peak, o.drop_at_ms, o.limit),
        ),
        Risk::Flapping(f) => (
            format!(
                "flapping: {} up/down transitions of {} within {} (first {})",
                f.transitions,
                series,
                format_duration(f.window_ms),
                format_ts(f.first_at_ms)
            ),
            observed(f64::from(f.transitions), f.first_at_ms, 0.0),
        ),
        _ => (format!("{} on {series}", r.kind()), observed(0.0, r.window_start_ms(), 0.0)),
    }
}

/// Crash patterns walk the escalation ladder.
fn ladder(t: &Target, s: &TargetState, risk: &Risk, now_ms: i64) -> Decision {
    let (what, evidence) = describe_crash(risk);
    let reset = t.ladder_reset.ms();
    let done: Vec<&PastAction> = s
        .history
        .iter()
        .filter(|a| is_crash_kind(&a.risk) && counts_as_action(a, t.mode) && within(a.at_ms, now_ms, reset))
        .collect();
    let rung_no = done.len();
    let mut d = base(t, risk.kind(), risk.window_start_ms(), what, now_ms);
    d.evidence = Some(evidence);
    let rungs = t.ladder();
    let Some(rung) = rungs.get(rung_no).copied() else {
        d.alert = true;
        d.reason = format!("{} — ladder exhausted after {rung_no} actions: stop acting, alert", d.reason);
        guard(&mut d, "ladder", Verdict::Blocked, format!("all {} rungs used within {}", rungs.len(), t.ladder_reset));
        return d;
    };
    if let Some(last) = done.iter().map(|a| a.at_ms).max()
        && rung_waits(t, &mut d, rung, rung_no, last, now_ms)
    {
        return d;
    }
    let rung_label = format!("rung {} of {} ({rung:?})", rung_no + 1, rungs.len());
    // The rung is part of the id: the second restart of a ladder is a different decision from the first.
    d.risk = format!("{}#{}", risk.kind(), rung_no + 1);
    take_rung(t, s, &mut d, rung, rung_label, now_ms);
    d
}

/// Rung `rung_no` (from 0; n ≥ 1 here) waits backoff × 2^(n-1) after the
/// previous rung, taken at `last`: whether it still waits (then `d` says so).
fn rung_waits(t: &Target, d: &mut Decision, rung: Rung, rung_no: usize, last: i64, now_ms: i64) -> bool {
    let wait = t.backoff.ms().saturating_mul(1 << (rung_no - 1).min(20));
    if now_ms >= last + wait {
        return false;
    }
    d.reason = format!(
        "{} — rung {} ({rung:?}) waits for its backoff until {}",
        d.reason,
        rung_no + 1,
        format_ts(last + wait)
    );
    guard(d, "ladder", Verdict::Blocked, format!("backoff {} after the previous rung", format_duration(wait)));
    true
}

/// The rung's action: an alert (the ladder ends), a restart (within the
/// start limit) or one more replica (when the replica count is known).
fn take_rung(t: &Target, s: &TargetState, d: &mut Decision, rung: Rung, rung_label: String, now_ms: i64) {
    match rung {
        Rung::Alert => {
            d.alert = true;
            d.reason = format!("{} — {rung_label}: stop acting, alert", d.reason);
            pass(d, "ladder", rung_label);
        }
        Rung::Restart => {
            pass(d, "ladder", rung_label);
            d.reason = format!("{} — restart", d.reason);
            d.set_action(Action::Restart);
            start_limit(t, s, d, now_ms);
        }
        Rung::ScaleOut => {
            pass(d, "ladder", rung_label);
            match replicas(t, s) {
                Some(cur) => {
                    d.reason = format!("{} — scale out by one", d.reason);
                    set_replicas(t, d, cur, cur + 1);
                }
                None => {
                    d.alert = true;
                    d.reason = format!("{} — cannot scale out: current replicas unknown; alert", d.reason);
                    guard(d, "replicas_known", Verdict::Blocked, "no replica count reported".into());
                }
            }
        }
    }
}

/// Predictive actions wait until the predicted event is at most `lead_time` ahead.
fn within_lead_time(t: &Target, d: &mut Decision, time_left_ms: i64) -> bool {
    if time_left_ms > t.lead_time.ms() {
        d.reason = format!("{} — beyond lead time {}: wait", d.reason, t.lead_time);
        guard(d, "lead_time", Verdict::Blocked, format!("{} > {}", format_duration(time_left_ms), t.lead_time));
        return false;
    }
    pass(d, "lead_time", format!("{} ≤ {}", format_duration(time_left_ms), t.lead_time));
    true
}

/// A memory leak reaching the limit within the lead time: restart before it does.
fn leak_restart(t: &Target, s: &TargetState, leak: &crate::risk::MemoryLeak, now_ms: i64) -> Decision {
    let what = format!(
        "memory leak on {}: +{:.4}/h (r² {:.2}) reaches {:.4} at {} (in {})",
        leak.key,
        leak.slope_per_hour,
        leak.r2,
        leak.limit,
        format_ts(leak.exhaustion_at_ms),
        format_duration(leak.time_left_ms)
    );
    let mut d = base(t, "memory_leak", leak.window_start_ms, what, now_ms);
    d.evidence = Some(Evidence {
        series: leak.key.to_string(),
        model: "trend".into(),
        origin_ms: now_ms,
        quantile: None,
        peak: leak.limit,
        peak_at_ms: leak.exhaustion_at_ms,
        threshold: leak.limit,
        crosses_at_ms: Some(leak.exhaustion_at_ms),
    });
    if !within_lead_time(t, &mut d, leak.time_left_ms) {
        return d;
    }
    d.reason = format!("{} — restart before exhaustion", d.reason);
    d.set_action(Action::Restart);
    start_limit(t, s, &mut d, now_ms);
    d
}

/// Never the restart that would reach the platform's start limit: at most
/// `burst - 2` starts (the platform's and ours) may already lie within the
/// interval (one more is ours, one is left for the platform's own restart).
fn start_limit(t: &Target, s: &TargetState, d: &mut Decision, now_ms: i64) {
    let Some(limit) = t.start_limit() else { return };
    let span = limit.interval.ms();
    let ours = s
        .history
        .iter()
        .filter(|a| a.action == Action::Restart && counts_as_action(a, t.mode) && within(a.at_ms, now_ms, span))
        .count();
    let seen = s.recent_starts_ms.iter().filter(|&&ts| within(ts, now_ms, span)).count();
    // systemd's NRestarts does not count manual restarts, so ours are added;
    // where the platform counts them too, this errs on the safe side.
    let starts = (ours + seen) as u32;
    if starts + 2 > limit.burst {
        block(
            d,
            "start_limit",
            format!(
                "{starts} starts within the last {} and the platform allows {}: one more could hit the start limit",
                limit.interval, limit.burst
            ),
        );
    } else {
        pass(d, "start_limit", format!("{starts} starts within {} (limit {})", limit.interval, limit.burst));
    }
}

fn replicas(t: &Target, s: &TargetState) -> Option<u32> {
    if t.scalable() { s.replicas.or(t.replicas) } else { None }
}

/// Sets `scale_to want`, clamped by max_step and the bounds, never in the
/// other direction than asked; blocks (with an alert when more was needed)
/// when the clamp leaves nothing to do.
fn set_replicas(t: &Target, d: &mut Decision, current: u32, want: u32) {
    let (lo, hi, step) = (t.min_replicas, t.max_replicas, t.max_step);
    let up = want > current;
    let stepped = if up { want.min(current.saturating_add(step)) } else { want.max(current.saturating_sub(step)) };
    if stepped != want {
        guard(d, "max_step", Verdict::Clamped, format!("{current} → {want} is more than {step} replicas: {stepped}"));
    } else {
        pass(d, "max_step", format!("{current} → {want} within {step}"));
    }
    let n = stepped.max(lo).min(hi);
    if n != stepped {
        guard(d, "bounds", Verdict::Clamped, format!("{stepped} outside [{lo}, {hi}]: {n}"));
    } else {
        pass(d, "bounds", format!("{n} within [{lo}, {hi}]"));
    }
    if n.abs_diff(current) > step {
        // The current count is far outside the bounds (set by hand?): no step can satisfy both.
        d.alert = true;
        return block(
            d,
            "bounds",
            format!("{current} replicas is more than max_step {step} outside [{lo}, {hi}]: not touching it; alert"),
        );
    }
    if (up && n <= current) || (!up && n >= current) {
        d.alert = up;
        let why = if up {
            format!("{current} replicas, max_replicas {hi}: cannot scale out; alert")
        } else {
            format!("{current} replicas, min_replicas {lo}: cannot scale in")
        };
        block(d, "bounds", why);
    } else {
        d.set_action(Action::ScaleTo { replicas: n });
    }
}

/// No crash pattern and no leak: scale out for saturation (predicted, and
/// never less than observed: [`reactive_floor`]), else perhaps scale in.
fn saturation_or_scale_in(t: &Target, s: &TargetState, risks: &[&Risk], now_ms: i64) -> Decision {
    let sat = risks.iter().find_map(|r| match r {
        Risk::Saturation(x) => Some(x),
        _ => None,
    });
    let d = match sat {
        Some(sat) => saturation(t, s, sat, now_ms),
        None => no_saturation(t, s, now_ms),
    };
    reactive_floor(t, s, d, sat.is_some(), now_ms)
}

/// The reactive floor: when the newest actual value is already above the
/// level, the decision is never to scale out less than that value needs. With
/// no forecast, a degraded one, or a healthy one whose decision falls short
/// (it saw no risk, its crossing is beyond the lead time, or its peak is
/// lower than what is happening now), the reactive rule decides instead and
/// says what the forecast said. A forecast can add headroom before a
/// saturation, never hold back the scale-out one that is happening needs.
/// `predicted`: `d` answers a predicted saturation (so there is a forecast).
fn reactive_floor(t: &Target, s: &TargetState, d: Decision, predicted: bool, now_ms: i64) -> Decision {
    let Some((latest, level)) = observed_saturation(s) else { return d };
    let (why, verdict, detail) = match s.health.as_ref() {
        Some(h) if h.degraded => {
            let why = format!("forecast degraded ({})", h.reason);
            let detail = format!("{why}: reactive rule");
            (why, Verdict::Blocked, detail)
        }
        _ if !predicted && s.forecast.is_none() => {
            ("no forecast".to_string(), Verdict::Blocked, "no forecast: reactive rule".to_string())
        }
        health => (
            format!("the forecast asks for less: {}", d.reason),
            Verdict::Passed,
            format!(
                "{}; the newest actual value needs more: reactive floor",
                health.map_or("not scored yet", |h| h.reason.as_str())
            ),
        ),
    };
    let mut r = reactive(t, s, now_ms, (latest, level), &why);
    match (r.action, d.action) {
        (Action::ScaleTo { replicas: needed }, Action::ScaleTo { replicas: planned }) if planned >= needed => return d,
        (Action::ScaleTo { .. }, _) => {}
        // It cannot scale (at max_replicas, or a platform that does not scale):
        // its alert says so, unless the forecast's decision acts or alerts itself.
        (_, Action::None) if r.alert && !d.alert => {}
        _ => return d,
    }
    r.guardrails.insert(0, Guardrail { name: "forecast_health".into(), verdict, detail });
    r
}

/// Predicted saturation: scale out so that the predicted peak fits under
/// the level, once the crossing is within the lead time. A degraded forecast
/// turns this off: only observed saturation (the reactive rule) may still
/// scale out; otherwise no action and an alert.
fn saturation(t: &Target, s: &TargetState, sat: &Saturation, now_ms: i64) -> Decision {
    let (what, evidence) = describe_saturation(sat);
    let mut d = base(t, "saturation", sat.window_start_ms, what, now_ms);
    d.evidence = Some(evidence);
    if let Some(h) = s.health.as_ref().filter(|h| h.degraded) {
        // Observed saturation may still scale out: see `reactive_floor`.
        d.alert = true;
        d.reason = format!("{} — forecast degraded ({}): predictive actions off", d.reason, h.reason);
        guard(&mut d, "forecast_health", Verdict::Blocked, h.reason.clone());
        return d;
    }
    if let Some(h) = &s.health {
        pass(&mut d, "forecast_health", h.reason.clone());
    }
    if !within_lead_time(t, &mut d, sat.time_left_ms) {
        return d;
    }
    scale_for(t, s, d, sat.peak / sat.threshold)
}

/// A predicted saturation in words, and as evidence.
fn describe_saturation(sat: &Saturation) -> (String, Evidence) {
    let what = format!(
        "p{:.0} of {} ({}, origin {}) goes above {:.4} at {} (in {}), peak {:.4} at {}",
        sat.quantile * 100.0,
        sat.key,
        sat.model,
        format_ts(sat.origin_ms),
        sat.threshold,
        format_ts(sat.crosses_at_ms),
        format_duration(sat.time_left_ms),
        sat.peak,
        format_ts(sat.peak_at_ms)
    );
    let evidence = Evidence {
        series: sat.key.to_string(),
        model: sat.model.clone(),
        origin_ms: sat.origin_ms,
        quantile: Some(sat.quantile),
        peak: sat.peak,
        peak_at_ms: sat.peak_at_ms,
        threshold: sat.threshold,
        crosses_at_ms: Some(sat.crosses_at_ms),
    };
    (what, evidence)
}

/// No saturation, predicted or observed: `none`, saying what the forecast
/// (or the newest actual value) shows, or a scale-in when it is enabled and allowed.
fn no_saturation(t: &Target, s: &TargetState, now_ms: i64) -> Decision {
    let mut d = base(t, "none", Grid::align(HOUR_MS, now_ms), "no risk found".into(), now_ms);
    let Some(level_now) = s.forecast.as_ref().map(|f| f.threshold).or(s.level) else { return d };
    if let Some(f) = &s.forecast {
        d.reason = format!(
            "no risk: p{:.0} peak {:.4} at {} stays at or below {:.4}",
            f.quantile.unwrap_or(0.9) * 100.0,
            f.peak,
            format_ts(f.peak_at_ms),
            f.threshold
        );
        d.evidence = Some(f.clone());
    } else {
        d.reason = format!("no forecast; newest actual at or below {level_now:.4}");
    }
    if t.scale_in.enabled {
        scale_in(t, s, &mut d, level_now);
    }
    d
}

/// Scale-in, when the guardrail allows it: to the fewest replicas that keep
/// the higher of the forecast peak and the recent actual peak under the
/// level `level_now` (clamped by max_step and the bounds).
fn scale_in(t: &Target, s: &TargetState, d: &mut Decision, level_now: f64) {
    let level = t.scale_in.below * level_now;
    let recent_max = s.recent.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let peak = s.forecast.as_ref().map(|f| f.peak);
    if let Some(detail) = scale_in_blocked(s, peak, level, recent_max) {
        guard(d, "scale_in", Verdict::Blocked, detail);
        return;
    }
    let Some(cur) = replicas(t, s) else { return };
    let basis = peak.map_or(recent_max, |p| p.max(recent_max));
    let window = t.scale_in.window;
    pass(
        d,
        "scale_in",
        match peak {
            Some(p) => format!("forecast peak {p:.4} and recent peak {recent_max:.4} below {level:.4} for {window}"),
            None => format!("recent peak {recent_max:.4} below {level:.4} for {window} (no forecast)"),
        },
    );
    let need = ((f64::from(cur) * basis / level_now).ceil() as u32).max(1);
    if need >= cur {
        return;
    }
    d.risk = "scale_in".into();
    d.reason = format!("{} and recent actual values too ({recent_max:.4}): scale in", d.reason);
    set_replicas(t, d, cur, need);
}

/// The scale-in guardrail's reason to refuse, if it has one: a degraded
/// forecast; or values not all below `level` (the scale-in fraction of the
/// saturation level). With a forecast, both its `peak` and the recent
/// actuals must be below; without one (reactive rules), the recent actuals
/// over the whole window. No recent actuals at all refuses too.
fn scale_in_blocked(s: &TargetState, peak: Option<f64>, level: f64, recent_max: f64) -> Option<String> {
    if s.health.as_ref().is_some_and(|h| h.degraded) {
        return Some("forecast degraded: no scale-in".into());
    }
    if !(peak.is_some_and(|p| p >= level) || s.recent.is_empty() || recent_max >= level) {
        return None;
    }
    Some(match peak {
        Some(p) => format!(
            "forecast peak {p:.4} and recent actual peak {} must both be below {level:.4}",
            if s.recent.is_empty() { "(none)".to_string() } else { format!("{recent_max:.4}") }
        ),
        None => format!("recent actual peak {recent_max:.4} must be below {level:.4}"),
    })
}

/// The newest actual value and the saturation level, when the value is above it.
fn observed_saturation(s: &TargetState) -> Option<(f64, f64)> {
    let level = s.level?;
    s.recent.last().copied().filter(|v| *v > level).map(|latest| (latest, level))
}

/// The reactive rule every user has today: the newest actual value `latest`
/// is above the `level` → scale out for it ([`reactive_floor`] says when it decides).
fn reactive(t: &Target, s: &TargetState, now_ms: i64, (latest, level): (f64, f64), why: &str) -> Decision {
    let reason =
        format!("observed {latest:.4} > {level:.4} on {}:{} ({why}: acting on the actual value)", t.entity, t.metric);
    let mut d = base(t, "saturation", Grid::align(HOUR_MS, now_ms), reason, now_ms);
    d.evidence = Some(observed(format!("{}:{}", t.entity, t.metric), latest, now_ms, level));
    scale_for(t, s, d, latest / level)
}

/// Scale out so that `ratio` (peak ÷ level) of load fits under the level:
/// `ceil(current × ratio)`, at least one more.
fn scale_for(t: &Target, s: &TargetState, mut d: Decision, ratio: f64) -> Decision {
    let Some(cur) = replicas(t, s) else {
        d.alert = true;
        let why = if t.scalable() {
            "current replicas unknown".to_string()
        } else {
            format!("{} targets cannot be scaled", t.platform)
        };
        d.reason = format!("{} — {why}: alert only", d.reason);
        guard(&mut d, "replicas_known", Verdict::Blocked, why);
        return d;
    };
    let want = ((f64::from(cur) * ratio).ceil() as u32).max(cur + 1);
    d.reason = format!("{} — {cur} replicas need {want} to stay under the level", d.reason);
    set_replicas(t, &mut d, cur, want);
    d
}

/// Already done, cooldown and the per-target cap, in that order; the first
/// that blocks ends the checks.
fn common_guards(t: &Target, s: &TargetState, d: &mut Decision, now_ms: i64) {
    if already_done(s, d) && cooldown(t, s, d, now_ms) {
        hourly_cap(t, s, d, now_ms);
    }
}

/// A decision id carried out before (or pending reconciliation) is never
/// carried out again; a failed attempt may be retried, and a dry-run record
/// of an enforced decision holds nothing back. Whether it passed.
fn already_done(s: &TargetState, d: &mut Decision) -> bool {
    let Some(prev) = s.history.iter().rev().find(|a| a.id == d.id) else {
        pass(d, "already_done", "first time for this reason".into());
        return true;
    };
    match &prev.outcome {
        Outcome::Failed { .. } => {
            pass(d, "already_done", format!("{} failed before at {}: may retry", prev.id, format_ts(prev.at_ms)))
        }
        Outcome::Pending => {
            block(d, "already_done", format!("{} has an intent without outcome: reconcile first", prev.id));
            return false;
        }
        Outcome::DryRun if prev.mode == Mode::Enforce => pass(
            d,
            "already_done",
            format!("{} was only recorded as a dry run at {}: may be carried out", prev.id, format_ts(prev.at_ms)),
        ),
        other => {
            block(
                d,
                "already_done",
                format!("{} was recorded at {} ({other:?}): never twice", prev.id, format_ts(prev.at_ms)),
            );
            return false;
        }
    }
    true
}

/// No action within `cooldown` of the previous one (of the target's mode).
/// Whether it passed.
fn cooldown(t: &Target, s: &TargetState, d: &mut Decision, now_ms: i64) -> bool {
    let cooldown = t.cooldown.ms();
    let Some(last) =
        s.history.iter().filter(|a| counts_as_action(a, t.mode) && a.at_ms <= now_ms).map(|a| a.at_ms).max()
    else {
        pass(d, "cooldown", "no previous action".into());
        return true;
    };
    if now_ms - last < cooldown {
        block(
            d,
            "cooldown",
            format!(
                "previous action at {}, cooldown {} ends {}",
                format_ts(last),
                t.cooldown,
                format_ts(last + cooldown)
            ),
        );
        return false;
    }
    pass(d, "cooldown", format!("previous action at {} ({} ago)", format_ts(last), format_duration(now_ms - last)));
    true
}

/// At most `max_actions_per_hour` actions of the target's mode in any hour.
fn hourly_cap(t: &Target, s: &TargetState, d: &mut Decision, now_ms: i64) {
    let n = s.history.iter().filter(|a| counts_as_action(a, t.mode) && within(a.at_ms, now_ms, HOUR_MS)).count() as u32;
    let cap = t.max_actions_per_hour;
    if n >= cap {
        block(d, "hourly_cap", format!("{n} actions in the last hour (cap {cap})"));
    } else {
        pass(d, "hourly_cap", format!("{n} of {cap} in the last hour"));
    }
}

/// The newest action carried out for `t`, once its verification window has
/// passed (and before twice that): did the metric come back / the pattern go?
fn verify(t: &Target, s: &TargetState, risks: &[&Risk], now_ms: i64) -> Option<FailedVerification> {
    let last = s.history.iter().filter(|a| a.outcome == Outcome::Succeeded).max_by_key(|a| a.at_ms)?;
    let w = t.verify_window.ms();
    if !(now_ms >= last.at_ms + w && now_ms < last.at_ms + 2 * w) {
        return None;
    }
    let detail = if is_crash_kind(&last.risk) {
        let still = risks.iter().find(|r| r.is_crash_pattern())?;
        format!("{} still present {} after {}", still.kind(), t.verify_window, last.action)
    } else {
        let level = s.forecast.as_ref()?.threshold;
        let latest = *s.recent.last()?;
        if latest <= level {
            return None;
        }
        format!("{}:{} is {latest:.4} > {level:.4} {} after {}", t.entity, t.metric, t.verify_window, last.action)
    };
    Some(FailedVerification { id: last.id.clone(), target: t.name.clone(), detail })
}

#[cfg(test)]
mod tests {
    use headroom_core::SeriesKey;

    use super::*;
    use crate::config::{Global, Platform};
    use crate::risk::{ForecastHealth, MemoryLeak, Saturation};
    use headroom_core::Span;

    const MIN: i64 = 60_000;
    const NOW: i64 = 1_700_000_000_000;

    fn web() -> Target {
        let mut t = Target::new("web", Platform::Kubernetes, "k8s/shop/deployment/web", "cpu");
        t.min_replicas = 2;
        t.max_replicas = 10;
        t.max_step = 3;
        t
    }

    fn cfg(targets: Vec<Target>, cap: u32) -> Config {
        Config { global: Global { max_actions_per_hour: cap }, detect: Default::default(), targets }
    }

    fn sat(t: &Target, in_min: i64, peak: f64) -> Risk {
        let at = NOW + in_min * MIN;
        Risk::Saturation(Saturation {
            key: SeriesKey { entity: t.entity.clone(), metric: t.metric.clone() },
            model: "lstm".into(),
            origin_ms: NOW,
            quantile: 0.9,
            threshold: 0.8,
            crosses_at_ms: at,
            peak,
            peak_at_ms: at,
            time_left_ms: in_min * MIN,
            window_start_ms: at - at.rem_euclid(HOUR_MS),
        })
    }

    fn fresh(replicas: u32) -> TargetState {
        TargetState { last_sample_ms: Some(NOW - MIN), replicas: Some(replicas), ..TargetState::default() }
    }

    fn one(t: &Target, risks: &[Risk], s: TargetState) -> Plan {
        plan(risks, &BTreeMap::from([(t.name.clone(), s)]), &cfg(vec![t.clone()], 10), NOW)
    }

    fn verdict(d: &Decision, name: &str) -> Option<Verdict> {
        d.guardrails.iter().rev().find(|g| g.name == name).map(|g| g.verdict)
    }

    #[test]
    fn replicas_for_the_predicted_peak_follow_the_hpa_formula() {
        let t = web();
        // 4 replicas at a predicted p90 of 1.2 × the level need ceil(4 × 1.5) = 6.
        let d = &one(&t, &[sat(&t, 60, 1.2)], fresh(4)).decisions[0];
        assert_eq!(d.action, Action::ScaleTo { replicas: 6 });
        assert_eq!(d.mode, Mode::DryRun);
        assert!(d.reason.contains("4 replicas need 6"), "{}", d.reason);
        let e = d.evidence.as_ref().unwrap();
        assert_eq!((e.quantile, e.peak, e.crosses_at_ms), (Some(0.9), 1.2, Some(NOW + 60 * MIN)));
        // Same inputs, same id; a different window, a different id.
        assert_eq!(d.id, one(&t, &[sat(&t, 60, 1.2)], fresh(4)).decisions[0].id);
        assert_ne!(d.id, one(&t, &[sat(&t, 180, 1.2)], fresh(4)).decisions[0].id);
    }

    #[test]
    fn lead_time_waits_for_far_crossings() {
        let t = web();
        let d = &one(&t, &[sat(&t, 7 * 60, 1.2)], fresh(4)).decisions[0];
        assert_eq!(d.action, Action::None);
        assert_eq!(verdict(d, "lead_time"), Some(Verdict::Blocked));
    }

    /// The forecast evidence of `web`'s p90: its peak an hour from now, level 0.8.
    fn p90_peak(peak: f64, crosses_at_ms: Option<i64>) -> Evidence {
        Evidence {
            series: "k8s/shop/deployment/web:cpu".into(),
            model: "lstm".into(),
            origin_ms: NOW,
            quantile: Some(0.9),
            peak,
            peak_at_ms: NOW + HOUR_MS,
            threshold: 0.8,
            crosses_at_ms,
        }
    }

    /// A scale-out of `t` carried out `ago_min` minutes ago.
    fn scaled(t: &Target, id: &str, replicas: u32, ago_min: i64, mode: Mode, outcome: Outcome) -> PastAction {
        PastAction {
            id: id.into(),
            target: t.name.clone(),
            action: Action::ScaleTo { replicas },
            risk: "saturation".into(),
            window_start_ms: NOW - HOUR_MS,
            at_ms: NOW - ago_min * MIN,
            mode,
            outcome,
        }
    }

    fn health(t: &Target, degraded: bool) -> ForecastHealth {
        ForecastHealth {
            key: SeriesKey { entity: t.entity.clone(), metric: t.metric.clone() },
            mase: Some(if degraded { 4.0 } else { 0.8 }),
            coverage: Some(if degraded { 0.2 } else { 0.8 }),
            scored: 96,
            degraded,
            reason: if degraded { "MASE 4.00 > 2.00" } else { "MASE 0.80 ≤ 2.00" }.into(),
        }
    }

    #[test]
    fn a_degraded_forecast_turns_predictive_actions_off_and_reactive_rules_on() {
        let t = web();
        let mut s = fresh(4);
        s.level = Some(0.8);
        s.health = Some(health(&t, true));
        s.recent = vec![0.5, 0.6];
        let d = &one(&t, &[sat(&t, 60, 1.2)], s.clone()).decisions[0];
        assert_eq!(d.action, Action::None, "predictive action on a degraded forecast: {d:?}");
        assert!(d.alert);
        // The newest actual is already over the level (0.9 > 0.8): scale on what is observed,
        // whether the degraded forecast predicted a saturation or not.
        s.recent = vec![0.5, 0.9];
        for risks in [vec![sat(&t, 60, 1.2)], vec![]] {
            let d = &one(&t, &risks, s.clone()).decisions[0];
            assert_eq!(d.action, Action::ScaleTo { replicas: 5 }, "ceil(4 × 0.9 / 0.8) = 5: {d:?}");
            assert!(d.reason.contains("observed 0.9000 > 0.8000"), "{}", d.reason);
            assert!(d.reason.contains("forecast degraded (MASE 4.00 > 2.00)"), "{}", d.reason);
            assert_eq!(verdict(d, "forecast_health"), Some(Verdict::Blocked));
        }
    }

    #[test]
    fn a_healthy_forecast_never_holds_back_the_scale_out_an_observed_saturation_needs() {
        let t = web();
        let mut s = fresh(4);
        s.level = Some(0.8);
        s.health = Some(health(&t, false));
        s.forecast = Some(p90_peak(0.7, None));
        // The forecast saw no risk and nothing is happening: nothing to do.
        s.recent = vec![0.5, 0.7];
        let d = &one(&t, &[], s.clone()).decisions[0];
        assert_eq!(d.action, Action::None, "{d:?}");
        // Now the load is over the level anyway: the reactive floor scales for it,
        // saying what the forecast said, through the same guardrails.
        s.recent = vec![0.5, 0.9];
        let d = &one(&t, &[], s.clone()).decisions[0];
        assert_eq!(d.action, Action::ScaleTo { replicas: 5 }, "ceil(4 × 0.9 / 0.8) = 5: {d:?}");
        assert!(d.reason.contains("observed 0.9000 > 0.8000"), "{}", d.reason);
        assert!(d.reason.contains("no risk: p90 peak 0.7000"), "{}", d.reason);
        assert_eq!(d.evidence.as_ref().map(|e| e.model.as_str()), Some("observed"));
        assert_eq!(verdict(d, "forecast_health"), Some(Verdict::Passed));
        assert!(d.guardrails.iter().any(|g| g.name == "forecast_health" && g.detail.contains("reactive floor")));
        for g in ["stale_data", "max_step", "bounds", "already_done", "cooldown", "hourly_cap"] {
            assert!(verdict(d, g).is_some(), "{g} not checked: {:?}", d.guardrails);
        }
        // A predicted crossing beyond the lead time does not make it wait.
        let d = &one(&t, &[sat(&t, 7 * 60, 1.2)], s.clone()).decisions[0];
        assert_eq!(d.action, Action::ScaleTo { replicas: 5 }, "{d:?}");
        assert!(d.reason.contains("beyond lead time"), "{}", d.reason);
        // A predicted peak needing fewer replicas than the load now: the load's count
        // (1.1 / 0.8 → 6, where the p90 peak 0.9 asked for 5).
        s.recent = vec![0.5, 1.1];
        let d = &one(&t, &[sat(&t, 60, 0.9)], s.clone()).decisions[0];
        assert_eq!(d.action, Action::ScaleTo { replicas: 6 }, "{d:?}");
        // One needing more keeps the forecast's decision and evidence (1.6 / 0.8 → 8, max_step 3 → 7).
        let d = &one(&t, &[sat(&t, 60, 1.6)], s.clone()).decisions[0];
        assert_eq!(d.action, Action::ScaleTo { replicas: 7 }, "{d:?}");
        assert_eq!(d.evidence.as_ref().map(|e| e.model.as_str()), Some("lstm"));
        // At max_replicas it cannot scale: an alert saying what is observed.
        let mut full = s.clone();
        full.replicas = Some(10);
        let d = &one(&t, &[], full).decisions[0];
        assert_eq!((d.action, d.alert), (Action::None, true), "{d:?}");
        assert!(d.reason.contains("observed 1.1000 > 0.8000"), "{}", d.reason);
        // The floor is held by the cooldown like any action.
        s.history.push(scaled(&t, "00000000000000bb", 4, 5, Mode::DryRun, Outcome::DryRun));
        let d = &one(&t, &[], s).decisions[0];
        assert_eq!(d.action, Action::None, "{d:?}");
        assert_eq!(verdict(d, "cooldown"), Some(Verdict::Blocked));
    }

    #[test]
    fn a_pending_intent_is_reconciled_not_repeated() {
        let t = web();
        let first = one(&t, &[sat(&t, 60, 1.2)], fresh(4)).decisions.remove(0);
        let mut s = fresh(4);
        s.history.push(PastAction {
            id: first.id.clone(),
            target: t.name.clone(),
            action: first.action,
            risk: first.risk.clone(),
            window_start_ms: first.window_start_ms,
            at_ms: NOW - 2 * HOUR_MS,
            mode: first.mode,
            outcome: Outcome::Pending,
        });
        let d = &one(&t, &[sat(&t, 60, 1.2)], s.clone()).decisions[0];
        assert_eq!(d.action, Action::None);
        assert!(d.guardrails.iter().any(|g| g.name == "already_done" && g.detail.contains("reconcile first")));
        // A failed attempt may be retried.
        s.history[0].outcome = Outcome::Failed { error: "409 Conflict".into() };
        assert_eq!(one(&t, &[sat(&t, 60, 1.2)], s).decisions[0].action, first.action);
    }

    #[test]
    fn a_dry_run_of_an_enforced_target_holds_back_nothing() {
        let mut t = web();
        t.mode = Mode::Enforce;
        let real = one(&t, &[sat(&t, 60, 1.2)], fresh(4)).decisions.remove(0);
        assert_eq!((real.mode, real.action), (Mode::Enforce, Action::ScaleTo { replicas: 6 }));
        // A minute ago, `act` without --enforce recorded its dry-run twin; an
        // hour of dry-run restarts and scales fill the caps of dry-run targets.
        let twin = real.as_dry_run("no --enforce");
        let past = |d: &Decision, at_ms: i64, outcome: Outcome| PastAction::of(d, at_ms, outcome);
        let mut s = fresh(4);
        s.history = (1..=12).map(|i| past(&twin, NOW - i * MIN, Outcome::DryRun)).collect();
        let d = &one(&t, &[sat(&t, 60, 1.2)], s.clone()).decisions[0];
        assert_eq!(d.action, real.action, "{:?}", d.guardrails);
        for g in ["already_done", "cooldown", "hourly_cap", "global_hourly_cap"] {
            assert_eq!(verdict(d, g), Some(Verdict::Passed), "{g}: {:?}", d.guardrails);
        }
        // A log from before the twin existed: `dry_run` under the enforced id.
        s.history = vec![past(&real, NOW - MIN, Outcome::DryRun)];
        let d = &one(&t, &[sat(&t, 60, 1.2)], s.clone()).decisions[0];
        assert_eq!(d.action, real.action);
        assert!(
            d.guardrails.iter().any(|g| g.name == "already_done" && g.detail.contains("only recorded as a dry run"))
        );
        // An enforced action a minute ago does hold the cooldown.
        s.history = vec![past(&real, NOW - MIN, Outcome::Succeeded)];
        let d = &one(&t, &[sat(&t, 60, 1.2)], s).decisions[0];
        assert_eq!(d.action, Action::None);
    }

    #[test]
    fn the_global_cap_counts_decisions_made_in_the_same_call() {
        let targets: Vec<Target> = (0..4)
            .map(|i| {
                let mut t = web();
                t.name = format!("web{i}");
                t.entity = format!("k8s/shop/deployment/web{i}");
                t
            })
            .collect();
        let risks: Vec<Risk> = targets.iter().map(|t| sat(t, 30, 1.0)).collect();
        let states = targets.iter().map(|t| (t.name.clone(), fresh(2))).collect();
        let p = plan(&risks, &states, &cfg(targets, 3), NOW);
        let acted = p.decisions.iter().filter(|d| d.action.is_some()).count();
        assert_eq!(acted, 3);
        assert_eq!(verdict(&p.decisions[3], "global_hourly_cap"), Some(Verdict::Blocked));
    }

    #[test]
    fn a_leak_is_restarted_within_the_lead_time() {
        let mut t = Target::new("api", Platform::Systemd, "systemd/api.service", "cpu");
        t.lead_time = Span::from_ms(6 * HOUR_MS);
        let leak = |left_h: i64| {
            Risk::MemoryLeak(MemoryLeak {
                key: SeriesKey { entity: t.entity.clone(), metric: "memory".into() },
                slope_per_hour: 1e8,
                r2: 0.97,
                limit: 2e9,
                exhaustion_at_ms: NOW + left_h * HOUR_MS,
                time_left_ms: left_h * HOUR_MS,
                window_start_ms: NOW - NOW.rem_euclid(86_400_000),
            })
        };
        let s = TargetState { last_sample_ms: Some(NOW), ..TargetState::default() };
        assert_eq!(one(&t, &[leak(3)], s.clone()).decisions[0].action, Action::Restart);
        assert_eq!(one(&t, &[leak(12)], s).decisions[0].action, Action::None);
    }

    #[test]
    fn an_action_that_did_not_help_fails_verification() {
        let t = web();
        let mut s = fresh(6);
        s.forecast = Some(p90_peak(0.95, Some(NOW)));
        s.recent = vec![0.85, 0.9];
        s.history.push(scaled(&t, "00000000000000aa", 6, 40, Mode::Enforce, Outcome::Succeeded));
        let p = one(&t, &[], s.clone());
        assert_eq!(p.failed_verifications.len(), 1);
        assert!(p.failed_verifications[0].detail.contains("0.9000 > 0.8000"), "{:?}", p.failed_verifications);
        // Back under the level: verified, nothing reported.
        s.recent = vec![0.85, 0.6];
        assert!(one(&t, &[], s.clone()).failed_verifications.is_empty());
        // Before the window has passed: too early to judge.
        s.recent = vec![0.9];
        s.history[0].at_ms = NOW - 10 * MIN;
        assert!(one(&t, &[], s).failed_verifications.is_empty());
    }
}
