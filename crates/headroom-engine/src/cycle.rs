//! One cycle: forecast each target's series from the data up to `now`, run
//! the detectors, build the observed state, and ask the policy.
//!
//! The cycle reads nothing after `now_ms`, so `headroom plan` (now = the end
//! of the data or the wall clock) and the backtest (now = each replayed time)
//! see the world the same way. It does no IO: the caller loads the data and
//! the audit history, and writes what it wants of the report.

use std::collections::BTreeMap;

use headroom_core::{Evidence, Forecast, Limits, ResampledSeries, SeriesData, SeriesKey, format_ts};
use headroom_forecast::evaluate::{Fallback, forecast_with_fallback};
use headroom_forecast::{Forecaster, History};
use headroom_remediate::config::{Config, Target};
use headroom_remediate::detect;
use headroom_remediate::policy::{Plan, plan};
use headroom_remediate::{ForecastHealth, PastAction, Risk, TargetState};
use serde::Serialize;

use crate::error::Result;

/// The recorded or collected data a cycle looks at.
#[derive(Debug, Clone, Copy)]
pub struct World<'a> {
    /// Every series on the forecasting grid (NaN marks a missing bin).
    pub grid: &'a [ResampledSeries],
    /// Raw samples of every series (sorted by time), for staleness and crash patterns.
    pub raw: &'a [SeriesData],
    /// Capacity, saturation threshold and replicas per series.
    pub limits: &'a Limits,
    /// Current replicas per target name, as an actuator reports them (or the
    /// backtest simulates them); targets not listed use their configured count.
    pub replicas: &'a BTreeMap<String, u32>,
}

/// The forecasting models a cycle uses.
#[derive(Debug, Clone, Copy)]
pub struct Models<'a> {
    /// The model whose forecasts drive decisions (the LSTM, or a baseline).
    pub forecaster: &'a dyn Forecaster,
    /// Models used, in order, for a series too short for `forecaster`.
    pub fallbacks: &'a [&'a dyn Forecaster],
    /// Bins to forecast.
    pub horizon: usize,
}

/// What happened to one target in a cycle, beside its decision.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TargetNote {
    /// Target name.
    pub target: String,
    /// What could not be done, and why (no series, no level, forecast failed…).
    pub note: String,
}

/// Everything one cycle saw and decided.
#[derive(Debug, Clone)]
pub struct CycleReport {
    /// The time the cycle ran at.
    pub now_ms: i64,
    /// The decisions (one per target) and failed verifications.
    pub plan: Plan,
    /// Every risk the detectors found.
    pub risks: Vec<Risk>,
    /// The observed state per target, as given to the policy.
    pub states: BTreeMap<String, TargetState>,
    /// The forecasts made from `now` (one per target series).
    pub forecasts: Vec<Forecast>,
    /// Series forecast by a fallback model, with the reason.
    pub fallbacks: Vec<Fallback>,
    /// Targets the cycle could not fully evaluate.
    pub notes: Vec<TargetNote>,
}

fn key(entity: &str, metric: &str) -> SeriesKey {
    SeriesKey { entity: entity.into(), metric: metric.into() }
}

/// The value that counts as saturated for `key`: `threshold × capacity` when a
/// capacity is known (target or limits file), else the limits file's threshold.
pub fn saturation_level(t: &Target, limits: &Limits, key: &SeriesKey) -> Option<(f64, String)> {
    let limit = limits.get(key);
    match t.capacity.or(limit.and_then(|l| l.capacity)) {
        Some(c) => Some((t.threshold * c, format!("{} × capacity {c}", t.threshold))),
        None => limit.map(|l| (l.threshold, "threshold from the limits file".to_string())),
    }
}

/// The replicas the recorded series of `t` were measured at: the target's
/// `replicas`, else the limits file's for `key`.
pub fn configured_replicas(t: &Target, limits: &Limits, key: &SeriesKey) -> Option<u32> {
    t.replicas.or(limits.get(key).and_then(|l| l.replicas))
}

/// The bins of `s` that end at or before `now_ms`, as a forecasting history.
fn history_until<'a>(s: &'a ResampledSeries, now_ms: i64) -> History<'a> {
    let step = s.grid.step_ms;
    let n = if now_ms <= s.grid.start_ms { 0 } else { ((now_ms - s.grid.start_ms) / step) as usize };
    History::of(s).first(n)
}

/// Forecasts every history; a history that fails (missing values in the
/// window, too short for every fallback) is reported instead of failing all.
fn forecast_all(
    models: &Models<'_>,
    histories: &[History<'_>],
) -> (BTreeMap<SeriesKey, Forecast>, Vec<Fallback>, BTreeMap<SeriesKey, String>) {
    let mut out = BTreeMap::new();
    let mut errors = BTreeMap::new();
    if histories.is_empty() {
        return (out, Vec::new(), errors);
    }
    if let Ok((f, fb)) = forecast_with_fallback(models.forecaster, models.fallbacks, histories, models.horizon) {
        out.extend(f.into_iter().map(|f| (f.key.clone(), f)));
        return (out, fb, errors);
    }
    let mut fallbacks = Vec::new();
    for h in histories {
        match forecast_with_fallback(models.forecaster, models.fallbacks, std::slice::from_ref(h), models.horizon) {
            Ok((f, fb)) => {
                out.extend(f.into_iter().map(|f| (f.key.clone(), f)));
                fallbacks.extend(fb);
            }
            Err(e) => {
                errors.insert(h.key.clone(), e.to_string());
            }
        }
    }
    (out, fallbacks, errors)
}

/// The peak of the target's quantile over the horizon, as evidence (`None`
/// when forecasts do not carry that quantile: the saturation check says so).
fn peak_evidence(f: &Forecast, quantile: f64, level: f64) -> Option<Evidence> {
    let p = f.q.path(quantile)?;
    let (i, peak) = headroom_core::forecast::peak(p)?;
    Some(Evidence {
        series: f.key.to_string(),
        model: f.model.clone(),
        origin_ms: f.origin_ms,
        quantile: Some(quantile),
        peak,
        peak_at_ms: f.ts(i),
        threshold: level,
        crosses_at_ms: p.iter().position(|v| *v > level).map(|i| f.ts(i)),
    })
}

/// Times the counter rose (a start) within `span_ms` before `now_ms`; when it
/// did, also the sample before the first rise, for the start that came before
/// the restarts (systemd counts it against the start limit too: erring on
/// the safe side, it is dated at the newest time it can have happened).
fn starts_within(counter: &SeriesData, now_ms: i64, span_ms: i64) -> Vec<i64> {
    let mut out = Vec::new();
    let mut prev: Option<(i64, f64)> = None;
    for (&ts, &v) in counter.ts.iter().zip(&counter.values) {
        if !v.is_finite() || ts > now_ms {
            continue;
        }
        if let Some((pts, p)) = prev
            && v != p
            && ts > now_ms - span_ms
        {
            // A rise, or a reset of the counter (which is a start too).
            if out.is_empty() && pts > now_ms - span_ms {
                out.push(pts);
            }
            out.push(ts);
        }
        prev = Some((ts, v));
    }
    out
}

/// The forecasts made at one time for every target's series: what a decide
/// step reads (the daemon makes them hourly and decides every minute).
#[derive(Debug, Clone, Default)]
pub struct Forecasts {
    /// When they were made.
    pub made_ms: i64,
    /// Grid step of the series they were made on.
    pub step_ms: i64,
    /// The forecasts from `made_ms`, and those from one health window
    /// earlier (to score against what happened since).
    pub book: ForecastBook,
    /// The forecasts from `made_ms` (one per target series).
    pub current: Vec<Forecast>,
    /// Series forecast by a fallback model, with the reason.
    pub fallbacks: Vec<Fallback>,
    /// Series that could not be forecast, with the reason.
    pub errors: BTreeMap<SeriesKey, String>,
}

/// Forecasts each target's series of `grid` from `now_ms`, and from one
/// health window earlier (to score).
pub fn forecast(grid: &[ResampledSeries], models: &Models<'_>, cfg: &Config, now_ms: i64) -> Forecasts {
    let by_key: BTreeMap<&SeriesKey, &ResampledSeries> = grid.iter().map(|s| (&s.key, s)).collect();
    let health_ms = cfg.detect.health.window.ms();
    let mut now_h: Vec<History<'_>> = Vec::new();
    let mut past_h = Vec::new();
    for t in &cfg.targets {
        if let Some(s) = by_key.get(&key(&t.entity, &t.metric)) {
            let h = history_until(s, now_ms);
            if !h.values.is_empty() && !now_h.iter().any(|x| x.key == h.key) {
                now_h.push(h);
                let past = history_until(s, h.origin_ms() - health_ms);
                if !past.values.is_empty() {
                    past_h.push(past);
                }
            }
        }
    }
    let (current, fallbacks, errors) = forecast_all(models, &now_h);
    let (past, _, _) = forecast_all(models, &past_h);
    let book = ForecastBook::new(current.values().cloned().chain(past.into_values()));
    let step_ms = grid.first().map_or(0, |s| s.grid.step_ms);
    Forecasts { made_ms: now_ms, step_ms, book, current: current.into_values().collect(), fallbacks, errors }
}

/// Runs one cycle at `now_ms` over `world` for every target of `cfg`:
/// [`forecast`]s each target's series from `now_ms` (and from one health
/// window earlier, to score), then [`decide_with`] those forecasts.
///
/// `history` holds the actions already taken per target (from the audit log,
/// or the backtest's own replay).
pub fn cycle(
    world: &World<'_>,
    models: &Models<'_>,
    cfg: &Config,
    history: &BTreeMap<String, Vec<PastAction>>,
    now_ms: i64,
) -> Result<CycleReport> {
    decide_with(world, &forecast(world.grid, models, cfg, now_ms), cfg, history, now_ms)
}

/// The decide step over forecasts made earlier (or just now): [`decide`],
/// with the forecasts, fallbacks and failed forecasts in the report.
pub fn decide_with(
    world: &World<'_>,
    forecasts: &Forecasts,
    cfg: &Config,
    history: &BTreeMap<String, Vec<PastAction>>,
    now_ms: i64,
) -> Result<CycleReport> {
    let mut report = decide(world, &forecasts.book, cfg, history, now_ms)?;
    for t in &cfg.targets {
        if let Some(err) = forecasts.errors.get(&key(&t.entity, &t.metric)) {
            report.notes.push(TargetNote { target: t.name.clone(), note: format!("forecast failed: {err}") });
        }
    }
    report.forecasts = forecasts.current.clone();
    report.fallbacks = forecasts.fallbacks.clone();
    Ok(report)
}

/// The forecasts a decide step may use, per series, ordered by origin.
///
/// It owns them, so that [`ForecastBook::before`] lends a slice: the replay
/// asks for it at every step of every target, which would otherwise copy
/// every earlier forecast each time.
#[derive(Debug, Clone, Default)]
pub struct ForecastBook {
    by_key: BTreeMap<SeriesKey, Vec<Forecast>>,
}

impl ForecastBook {
    /// A book of `forecasts` (any models; give one model's forecasts per series).
    pub fn new(forecasts: impl IntoIterator<Item = Forecast>) -> Self {
        let mut by_key: BTreeMap<SeriesKey, Vec<Forecast>> = BTreeMap::new();
        for f in forecasts {
            by_key.entry(f.key.clone()).or_default().push(f);
        }
        for v in by_key.values_mut() {
            v.sort_by_key(|f| f.origin_ms);
        }
        Self { by_key }
    }

    /// The newest forecast of `key` made at or before `now_ms`.
    pub fn latest(&self, key: &SeriesKey, now_ms: i64) -> Option<&Forecast> {
        let v = self.by_key.get(key)?;
        let n = v.partition_point(|f| f.origin_ms <= now_ms);
        n.checked_sub(1).map(|i| &v[i])
    }

    /// Every forecast of `key` made before `now_ms`, oldest first (for scoring recent forecasts).
    pub fn before(&self, key: &SeriesKey, now_ms: i64) -> &[Forecast] {
        let Some(v) = self.by_key.get(key) else { return &[] };
        &v[..v.partition_point(|f| f.origin_ms < now_ms)]
    }
}

/// The bins of `f` from the one holding `now_ms` on (a forecast made earlier
/// than now is read from now, never from the past); None if none are left.
fn from_now(f: &Forecast, now_ms: i64) -> Option<Forecast> {
    let skip = if now_ms <= f.origin_ms { 0 } else { ((now_ms - f.origin_ms) / f.step_ms) as usize };
    if skip == 0 {
        return Some(f.clone());
    }
    if skip >= f.q.len() {
        return None;
    }
    let q = f.q.steps(skip..f.q.len()).ok()?;
    Some(Forecast { key: f.key.clone(), model: f.model.clone(), origin_ms: f.ts(skip), step_ms: f.step_ms, q })
}

/// The decide step of a cycle: detectors, observed state and the policy, with
/// the newest forecast of each target's series made at or before `now_ms`
/// (none: the target falls back to reactive rules).
///
/// `world.replicas` holds the current replica count per target when an
/// actuator (or the backtest's simulation) reports one; the recorded series
/// are taken as measured at the target's configured `replicas`, so with `r`
/// replicas the saturation level for that series is `level × r / configured`.
pub fn decide(
    world: &World<'_>,
    book: &ForecastBook,
    cfg: &Config,
    history: &BTreeMap<String, Vec<PastAction>>,
    now_ms: i64,
) -> Result<CycleReport> {
    let seen = Seen {
        grid: world.grid.iter().map(|s| (&s.key, s)).collect(),
        raw: world.raw.iter().map(|s| (&s.key, s)).collect(),
    };
    let mut notes = Vec::new();
    let mut risks = Vec::new();
    let mut states = BTreeMap::new();
    for t in &cfg.targets {
        let mut note = |n: String| notes.push(TargetNote { target: t.name.clone(), note: n });
        let k = key(&t.entity, &t.metric);
        let (mut state, scale) = replicas_state(t, world, &seen, history, now_ms);
        let Some(s) = seen.grid.get(&k) else {
            note(format!("no series {k} in the data"));
            states.insert(t.name.clone(), state);
            continue;
        };
        let level = saturation_level(t, world.limits, &k).map(|(l, _)| l * scale);
        risks.extend(forecast_state(&mut state, t, s, level, book, cfg, now_ms, &mut note)?);
        risks.extend(crash_risks(&mut state, t, world.limits, &seen, cfg, now_ms)?);
        states.insert(t.name.clone(), state);
    }
    let plan = plan(&risks, &states, cfg, now_ms);
    Ok(CycleReport { now_ms, plan, risks, states, forecasts: Vec::new(), fallbacks: Vec::new(), notes })
}

/// The series a cycle sees, by key: on the grid (for forecasts) and raw (for
/// the crash detectors and the last sample's time).
struct Seen<'a> {
    grid: BTreeMap<&'a SeriesKey, &'a ResampledSeries>,
    raw: BTreeMap<&'a SeriesKey, &'a SeriesData>,
}

/// A target's replicas (observed, else configured), its past actions and the
/// time of its last sample; and how much its capacity has grown over the
/// recorded series' (current / configured replicas).
fn replicas_state(
    t: &Target,
    world: &World<'_>,
    seen: &Seen<'_>,
    history: &BTreeMap<String, Vec<PastAction>>,
    now_ms: i64,
) -> (TargetState, f64) {
    let k = key(&t.entity, &t.metric);
    let configured = configured_replicas(t, world.limits, &k);
    let current = world.replicas.get(&t.name).copied().or(configured);
    let mut state = TargetState {
        replicas: current,
        history: history.get(&t.name).cloned().unwrap_or_default(),
        ..TargetState::default()
    };
    // Capacity grows with replicas: the level of the recorded series at `current` replicas.
    let scale = match (current, configured) {
        (Some(c), Some(r)) if r > 0 => f64::from(c) / f64::from(r),
        _ => 1.0,
    };
    if let Some(r) = seen.raw.get(&k) {
        state.last_sample_ms = r.ts[..r.ts.partition_point(|&ts| ts <= now_ms)].last().copied();
    }
    (state, scale)
}

/// What the policy reads of the target's series `s` now — the recent values,
/// the saturation `level`, the forecast's peak and its health — and the
/// predicted saturation, if any. What is missing (a level, data before now)
/// becomes a note.
#[allow(clippy::too_many_arguments)]
fn forecast_state(
    state: &mut TargetState,
    t: &Target,
    s: &ResampledSeries,
    level: Option<f64>,
    book: &ForecastBook,
    cfg: &Config,
    now_ms: i64,
    note: &mut impl FnMut(String),
) -> Result<Option<Risk>> {
    let k = &s.key;
    if level.is_none() {
        note(format!("no capacity or threshold for {k} (limits file or `capacity`): no saturation check"));
    }
    let h = history_until(s, now_ms);
    if h.values.is_empty() {
        note(format!("no data of {k} before {}", format_ts(now_ms)));
    }
    let per = (t.scale_in.window.ms() / s.grid.step_ms).max(1) as usize;
    state.recent = h.values[h.values.len().saturating_sub(per)..].iter().copied().filter(|v| v.is_finite()).collect();
    state.level = level;
    let forecast = book.latest(k, now_ms).and_then(|f| from_now(f, now_ms));
    let (Some(f), Some(level)) = (&forecast, level) else { return Ok(None) };
    state.forecast = peak_evidence(f, t.quantile, level);
    let risk = detect::saturation(f, t.quantile, level, now_ms)?.map(Risk::Saturation);
    state.health = Some(forecast_health(k, book.before(k, now_ms), s, cfg, now_ms)?);
    Ok(risk)
}

/// How yesterday's forecasts of `k` did against what happened since.
fn forecast_health(
    k: &SeriesKey,
    past: &[Forecast],
    s: &ResampledSeries,
    cfg: &Config,
    now_ms: i64,
) -> Result<ForecastHealth> {
    if past.is_empty() {
        return Ok(ForecastHealth {
            key: k.clone(),
            mase: None,
            coverage: None,
            scored: 0,
            degraded: false,
            reason: format!("no earlier forecast to score yet (window {})", cfg.detect.health.window),
        });
    }
    Ok(detect::health(past, &actual(s, now_ms), &cfg.detect.health, now_ms)?)
}

/// Crash patterns from the raw samples of the target's entity: a restart
/// loop, an OOM kill, a memory leak, flapping (the detectors read only
/// samples at or before `now_ms`); the target's recent starts go to `state`.
fn crash_risks(
    state: &mut TargetState,
    t: &Target,
    limits: &Limits,
    seen: &Seen<'_>,
    cfg: &Config,
    now_ms: i64,
) -> Result<Vec<Risk>> {
    let mut risks = Vec::new();
    let restarts = seen.raw.get(&key(&t.entity, &t.restarts_metric)).copied();
    if let Some(c) = restarts {
        let span = t.start_limit().map_or(0, |l| l.interval.ms()).max(3_600_000);
        state.recent_starts_ms = starts_within(c, now_ms, span);
        if let Some(r) = detect::restart_loop(c, &cfg.detect.restart_loop, now_ms)? {
            risks.push(Risk::RestartLoop(r));
        }
    }
    let mem_key = key(&t.entity, &t.memory_metric);
    if let (Some(m), Some((mem_limit, _))) = (seen.raw.get(&mem_key), saturation_level(t, limits, &mem_key)) {
        if let Some(r) = detect::oom_kill(m, mem_limit, restarts, &cfg.detect.oom, now_ms)? {
            risks.push(Risk::OomKill(r));
        }
        if let Some(r) = detect::memory_leak(m, mem_limit, &cfg.detect.leak, now_ms)? {
            risks.push(Risk::MemoryLeak(r));
        }
    }
    if let Some(up) = seen.raw.get(&key(&t.entity, "up"))
        && let Some(r) = detect::flapping(up, 0.5, &cfg.detect.flapping, now_ms)?
    {
        risks.push(Risk::Flapping(r));
    }
    Ok(risks)
}

/// The grid bins of `s` before `now_ms` as raw points (for scoring forecasts).
fn actual(s: &ResampledSeries, now_ms: i64) -> SeriesData {
    let h = history_until(s, now_ms);
    let ts = (0..h.values.len()).map(|i| h.start_ms + i as i64 * h.step_ms).collect();
    SeriesData { key: s.key.clone(), ts, values: h.values.to_vec() }
}

#[cfg(test)]
mod tests {
    use headroom_core::{Action, Grid, Limit, RepairReport};
    use headroom_forecast::baselines::baseline;
    use headroom_remediate::config::{Platform, Target};

    use super::*;

    const STEP: i64 = 900_000;
    const DAY: i64 = 86_400_000;
    const T0: i64 = 1_700_006_400_000; // a multiple of the step

    /// 10 days of a daily pattern peaking at 0.5; on days 7 and 8 it peaks at 0.95.
    fn series(key: &SeriesKey) -> (ResampledSeries, SeriesData) {
        let n = (10 * DAY / STEP) as usize;
        let values: Vec<f64> = (0..n)
            .map(|i| {
                let day = i as i64 * STEP / DAY;
                let phase = (i % 96) as f64 / 96.0 * std::f64::consts::TAU;
                let peak = if day == 7 || day == 8 { 0.95 } else { 0.5 };
                0.3 + (peak - 0.3) * (0.5 - 0.5 * phase.cos())
            })
            .collect();
        let grid = Grid::new(STEP, T0, T0 + n as i64 * STEP).unwrap();
        let raw =
            SeriesData { key: key.clone(), ts: (0..n).map(|i| T0 + i as i64 * STEP).collect(), values: values.clone() };
        let rs = ResampledSeries {
            key: key.clone(),
            grid,
            imputed: vec![false; n],
            values,
            report: RepairReport::default(),
        };
        (rs, raw)
    }

    fn setup() -> (Config, Vec<ResampledSeries>, Vec<SeriesData>, Limits) {
        let mut t = Target::new("web", Platform::Kubernetes, "k8s/shop/deployment/web", "cpu");
        t.replicas = Some(3);
        t.lead_time = headroom_core::Span::from_ms(DAY);
        let key = SeriesKey { entity: t.entity.clone(), metric: t.metric.clone() };
        let (grid, raw) = series(&key);
        let mut limits = Limits::new();
        limits.insert(key, Limit::threshold(0.8));
        let cfg = Config { global: Default::default(), detect: Default::default(), targets: vec![t] };
        (cfg, vec![grid], vec![raw], limits)
    }

    fn run(cfg: &Config, grid: &[ResampledSeries], raw: &[SeriesData], limits: &Limits, now: i64) -> CycleReport {
        let weekly = baseline("last").unwrap();
        let daily = baseline("snaive-daily").unwrap();
        let chain: Vec<&dyn Forecaster> = vec![weekly.as_ref()];
        let models = Models { forecaster: daily.as_ref(), fallbacks: &chain, horizon: 96 };
        cycle(&World { grid, raw, limits, replicas: &BTreeMap::new() }, &models, cfg, &BTreeMap::new(), now).unwrap()
    }

    #[test]
    fn the_cycle_reads_nothing_after_now() {
        let (cfg, grid, raw, limits) = setup();
        // At the start of day 7 the data ahead holds a peak of 0.95, but yesterday's
        // pattern (what a daily seasonal naive sees) stays at 0.5: no risk.
        let now = T0 + 7 * DAY;
        let r = run(&cfg, &grid, &raw, &limits, now);
        assert!(r.risks.is_empty(), "{:?}", r.risks);
        assert_eq!(r.forecasts[0].origin_ms, now);
        assert_eq!(r.states["web"].last_sample_ms, Some(now), "a sample at now is seen, none after");
        assert_eq!(r.plan.decisions[0].action, Action::None);
        // A day later the forecast repeats the peak, but it missed day 7 entirely:
        // the health check turns predictive actions off and alerts.
        let r = run(&cfg, &grid, &raw, &limits, now + DAY);
        assert!(r.states["web"].health.as_ref().unwrap().degraded);
        assert_eq!((r.plan.decisions[0].action, r.plan.decisions[0].alert), (Action::None, true));
        // Another day on, yesterday's forecast got day 8 right: healthy again, scale out.
        let r = run(&cfg, &grid, &raw, &limits, now + 2 * DAY);
        assert!(!r.states["web"].health.as_ref().unwrap().degraded, "{:?}", r.states["web"].health);
        assert_eq!(r.risks.len(), 1, "{:?}", r.risks);
        let d = &r.plan.decisions[0];
        // p90 peak 1.03 (0.95 plus the residual band) over the level 0.8: ceil(3 × 1.03 / 0.8) = 4.
        assert_eq!(d.action, Action::ScaleTo { replicas: 4 }, "{d:?}");
        assert_eq!(d.evidence.as_ref().unwrap().model, "snaive-daily");
    }

    #[test]
    fn a_target_on_p99_scales_where_one_on_p90_does_not() {
        let (mut cfg, grid, raw, limits) = setup();
        let now = T0 + 5 * DAY;
        // One forecast from now: p90 peaks at 0.75, under the level 0.8; p99 goes to 0.9 in bins 8–11 (2–3 h).
        let k = SeriesKey { entity: cfg.targets[0].entity.clone(), metric: cfg.targets[0].metric.clone() };
        let p99: Vec<f64> = (0..96).map(|i| if (8..12).contains(&i) { 0.9 } else { 0.7 }).collect();
        let q =
            headroom_core::Quantiles::new(vec![0.3; 96], vec![0.5; 96], vec![0.75; 96], vec![0.78; 96], p99).unwrap();
        let f = Forecast { key: k, model: "lstm".into(), origin_ms: now, step_ms: STEP, q };
        let book = ForecastBook::new([f]);
        let world = World { grid: &grid, raw: &raw, limits: &limits, replicas: &BTreeMap::new() };
        let mut decide_at = |quantile: f64| {
            cfg.targets[0].quantile = quantile;
            assert!(cfg.problems().is_empty(), "{quantile}: {:?}", cfg.problems());
            decide(&world, &book, &cfg, &BTreeMap::new(), now).unwrap()
        };

        let r = decide_at(0.9);
        assert!(r.risks.is_empty(), "{:?}", r.risks);
        assert_eq!(r.plan.decisions[0].action, Action::None);
        assert_eq!(r.states["web"].forecast.as_ref().unwrap().peak, 0.75);
        // The same forecast read at p95 (0.78) still stays under the level.
        assert_eq!(decide_at(0.95).plan.decisions[0].action, Action::None);

        let r = decide_at(0.99);
        let d = &r.plan.decisions[0];
        // p99 peak 0.9 over the level 0.8: ceil(3 × 0.9 / 0.8) = 4, two hours before the crossing.
        assert_eq!(d.action, Action::ScaleTo { replicas: 4 }, "{d:?}");
        assert!(d.reason.starts_with("p99 of k8s/shop/deployment/web:cpu"), "{}", d.reason);
        let e = d.evidence.as_ref().unwrap();
        assert_eq!((e.quantile, e.peak, e.crosses_at_ms), (Some(0.99), 0.9, Some(now + 8 * STEP)));

        // A level forecasts do not carry is refused at load, naming the levels they do.
        cfg.targets[0].quantile = 0.7;
        let problems = cfg.problems();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].path, "targets[0].quantile");
        assert_eq!(problems[0].why, "forecasts have quantiles 0.1, 0.5, 0.9, 0.95 and 0.99 only");
    }

    #[test]
    fn a_restart_counter_in_the_data_drives_the_ladder() {
        let (cfg, grid, mut raw, limits) = setup();
        let now = T0 + 5 * DAY;
        let key = SeriesKey { entity: cfg.targets[0].entity.clone(), metric: "restarts".into() };
        let ts: Vec<i64> = (0..20).map(|i| now - (19 - i) * 60_000).collect();
        let values: Vec<f64> = (0..20).map(|i| f64::from(i / 4)).collect();
        raw.push(SeriesData { key, ts, values });
        let r = run(&cfg, &grid, &raw, &limits, now);
        assert_eq!(r.risks.iter().filter(|r| r.kind() == "restart_loop").count(), 1, "{:?}", r.risks);
        let d = &r.plan.decisions[0];
        assert_eq!((d.action, d.risk.as_str()), (Action::Restart, "restart_loop#1"), "{d:?}");
        // Four rises, and the start before the first of them.
        assert_eq!(r.states["web"].recent_starts_ms.len(), 5);
    }

    #[test]
    fn a_target_without_data_is_a_note_and_a_stale_data_decision() {
        let (mut cfg, grid, raw, limits) = setup();
        let mut ghost = cfg.targets[0].clone();
        ghost.name = "ghost".into();
        ghost.entity = "k8s/shop/deployment/ghost".into();
        cfg.targets.push(ghost);
        let r = run(&cfg, &grid, &raw, &limits, T0 + 5 * DAY);
        assert!(r.notes.iter().any(|n| n.target == "ghost" && n.note.contains("no series")), "{:?}", r.notes);
        let d = &r.plan.decisions[1];
        assert_eq!((d.action, d.guardrails[0].name.as_str()), (Action::None, "stale_data"));
    }
}
