//! Turning a history window into network inputs: per-series scaling,
//! calendar features, padding of short histories, and the seasonal channels.
//! Pure functions on slices; no tensors.
//!
//! **Scaling.** Each window is centred on the mean of its last day (`level`)
//! and divided by its *seasonal MAE*: the mean absolute difference between a
//! bin and the same bin one day earlier, over the window. That is the
//! denominator of MASE, so a pinball loss in scaled units weighs every series
//! the way the score does, and a series' units and amplitude never matter
//! (CPU % in 0–100, normalised metrics in 0–1, bytes). Floors keep a flat or
//! perfectly periodic window from dividing by ~0: at least 5 % of the
//! window's standard deviation, 0.1 % of |level|, and 1e-6.

use std::f64::consts::TAU;

use crate::config::{Base, LstmConfig};

/// How one window was scaled: `scaled = (x − level) / scale`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scaling {
    /// Mean of the last day of the window.
    pub level: f64,
    /// Seasonal MAE of the window (floored; see the module docs).
    pub scale: f64,
}

impl Scaling {
    /// The scaling of a window of real (unpadded) values, `day` bins per day.
    /// Needs more than one day of values.
    pub fn of(real: &[f64], day: usize) -> Self {
        let n = real.len();
        let last = &real[n.saturating_sub(day)..];
        let level = last.iter().sum::<f64>() / last.len() as f64;
        let smae = if n > day {
            real[day..].iter().zip(real).map(|(a, b)| (a - b).abs()).sum::<f64>() / (n - day) as f64
        } else {
            0.0
        };
        let mean = real.iter().sum::<f64>() / n as f64;
        let std = (real.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n as f64).sqrt();
        let scale = smae.max(0.05 * std).max(1e-3 * level.abs()).max(1e-6);
        Self { level, scale }
    }

    /// `(x − level) / scale`, clipped to ±`clip`.
    pub fn apply(&self, x: f64, clip: f64) -> f64 {
        ((x - self.level) / self.scale).clamp(-clip, clip)
    }

    /// Back to the series' units.
    pub fn invert(&self, z: f64) -> f64 {
        self.level + z * self.scale
    }
}

/// Calendar features of a UTC time: `[sin, cos]` of the time of day and of
/// the (continuous) day of week, Monday 00:00 = 0.
pub fn calendar(ts_ms: i64) -> [f64; 4] {
    const DAY: i64 = 86_400_000;
    let tod = ts_ms.rem_euclid(DAY) as f64 / DAY as f64;
    // 1970-01-01 was a Thursday (Monday = 0 → Thursday = 3).
    let dow = ((ts_ms.div_euclid(DAY) + 3).rem_euclid(7) as f64 + tod) / 7.0;
    [(TAU * tod).sin(), (TAU * tod).cos(), (TAU * dow).sin(), (TAU * dow).cos()]
}

/// The seasonal forecasts of a window of real values over `horizon` bins:
/// `(last_day, last_week, mean_of_days)`. `last_week` falls back to
/// `last_day` when the window is shorter than a week; the mean uses up to
/// seven whole days.
pub fn seasonal(real: &[f64], day: usize, horizon: usize) -> (Vec<f64>, Vec<f64>, Vec<f64>, bool) {
    let n = real.len();
    let last_day: Vec<f64> = (0..horizon).map(|k| real[n - day + k % day]).collect();
    let week = 7 * day;
    let has_week = n >= week;
    let last_week: Vec<f64> =
        if has_week { (0..horizon).map(|k| real[n - week + k % week]).collect() } else { last_day.clone() };
    let days = days_back(n, day);
    let mean = per_time_of_day(day, horizon, |k| same_time_of_day(real, day, k).sum::<f64>() / days as f64);
    (last_day, last_week, mean, has_week)
}

/// The largest value at the same time of day over the window's last days
/// (up to seven), over `horizon` bins: the seasonal maximum channel.
pub fn seasonal_max(real: &[f64], day: usize, horizon: usize) -> Vec<f64> {
    per_time_of_day(day, horizon, |k| same_time_of_day(real, day, k).fold(f64::NEG_INFINITY, f64::max))
}

/// The median of the values at the same time of day over the window's last
/// days (up to seven), over `horizon` bins (the middle two averaged for an even count).
pub fn seasonal_median(real: &[f64], day: usize, horizon: usize) -> Vec<f64> {
    let mut v = Vec::with_capacity(7);
    per_time_of_day(day, horizon, |k| {
        v.clear();
        v.extend(same_time_of_day(real, day, k));
        v.sort_by(f64::total_cmp);
        let m = v.len() / 2;
        if v.len() % 2 == 1 { v[m] } else { (v[m - 1] + v[m]) / 2.0 }
    })
}

/// `at(k)` for each time of day of the horizon's first day, repeated over
/// the `horizon` bins: the seasonal channels depend on `k` only through
/// `k % day`, so a 2-day horizon computes each value once, not twice.
fn per_time_of_day(day: usize, horizon: usize, at: impl FnMut(usize) -> f64) -> Vec<f64> {
    let once: Vec<f64> = (0..day.min(horizon)).map(at).collect();
    (0..horizon).map(|k| once[k % day]).collect()
}

/// Whole days the seasonal mean, median and maximum look back over: up to seven, at least one.
fn days_back(n: usize, day: usize) -> usize {
    (n / day).clamp(1, 7)
}

/// The window's values at horizon bin `k`'s time of day on each of its last
/// [`days_back`] days, the latest first.
fn same_time_of_day(real: &[f64], day: usize, k: usize) -> impl Iterator<Item = f64> + '_ {
    let n = real.len();
    (1..=days_back(n, day)).map(move |d| real[n - d * day + k % day])
}

/// Network inputs of many windows, flat and row-major, ready to become tensors.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    /// `(rows, patches, step_features)`.
    pub seq: Vec<f32>,
    /// `(rows, context_features)`.
    pub ctx: Vec<f32>,
    /// `(rows, horizon)`: the base the median is a residual over (scaled).
    pub base: Vec<f32>,
    /// `(rows, horizon)`: scaled targets, when training.
    pub target: Vec<f32>,
    /// One per row.
    pub scaling: Vec<Scaling>,
    /// One per row: (min, max) of the last `envelope` real values, scaled
    /// (±∞ when the envelope is off).
    pub envelope: Vec<(f64, f64)>,
}

impl Inputs {
    /// Rows held.
    pub fn rows(&self) -> usize {
        self.scaling.len()
    }

    /// Appends one window: `real` holds the last (at most `cfg.window`) values
    /// before the origin `origin_ms`, with no NaN and at least
    /// `cfg.min_history` values; `target` the scaled-to-be actuals after it.
    pub fn push(&mut self, cfg: &LstmConfig, real: &[f64], origin_ms: i64, target: Option<&[f64]>) {
        let day = cfg.bins_per_day();
        let w = cfg.window;
        let real = &real[real.len().saturating_sub(w)..];
        let n = real.len();
        debug_assert!(n > day, "window must hold more than a day");
        let s = Scaling::of(real, day);
        let pad = w - n;
        // Bin i of the full window; padded bins repeat the first real day.
        let value = |i: usize| -> f64 {
            if i >= pad { real[i - pad] } else { real[(i as i64 - pad as i64).rem_euclid(day as i64) as usize] }
        };
        let start_ms = origin_ms - w as i64 * cfg.step_ms;
        for p in 0..cfg.patches() {
            let first = p * cfg.patch;
            for i in first..first + cfg.patch {
                self.seq.push(s.apply(value(i), cfg.clip) as f32);
            }
            self.seq.push(if first + cfg.patch <= pad { 1.0 } else { 0.0 });
            if cfg.calendar {
                self.seq.extend(calendar(start_ms + first as i64 * cfg.step_ms).map(|v| v as f32));
            }
        }
        let (last_day, last_week, mean, has_week) = seasonal(real, day, cfg.horizon);
        if cfg.seasonal_channels {
            for ch in [&last_day, &last_week, &mean] {
                self.ctx.extend(scaled(&s, cfg.clip, ch));
            }
            if cfg.seasonal_max {
                self.ctx.extend(scaled(&s, cfg.clip, &seasonal_max(real, day, cfg.horizon)));
            }
            self.ctx.push(if has_week { 1.0 } else { 0.0 });
        }
        if cfg.calendar {
            self.ctx.extend(calendar(origin_ms).map(|v| v as f32));
        }
        match cfg.base {
            Base::Zero => self.base.extend(std::iter::repeat_n(0.0, cfg.horizon)),
            Base::SnaiveDaily => self.base.extend(scaled(&s, cfg.clip, &last_day)),
            Base::SeasonalMean => self.base.extend(scaled(&s, cfg.clip, &mean)),
            Base::SeasonalMedian => self.base.extend(scaled(&s, cfg.clip, &seasonal_median(real, day, cfg.horizon))),
        }
        if cfg.envelope > 0 {
            let recent = &real[n.saturating_sub(cfg.envelope)..];
            let lo = recent.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = recent.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            self.envelope.push(((lo - s.level) / s.scale, (hi - s.level) / s.scale));
        } else {
            self.envelope.push((f64::NEG_INFINITY, f64::INFINITY));
        }
        if let Some(t) = target {
            self.target.extend(scaled(&s, cfg.clip, t));
        }
        self.scaling.push(s);
    }
}

/// `values` scaled by `s` and clipped to ±`clip`, as the network reads them.
fn scaled<'a>(s: &'a Scaling, clip: f64, values: &'a [f64]) -> impl Iterator<Item = f32> + 'a {
    values.iter().map(move |v| s.apply(*v, clip) as f32)
}

/// Pinball (quantile) loss of one prediction: `max(q·(y − p), (q − 1)·(y − p))`.
pub fn pinball(q: f64, y: f64, p: f64) -> f64 {
    let d = y - p;
    (q * d).max((q - 1.0) * d)
}
