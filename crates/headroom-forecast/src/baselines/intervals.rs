//! Prediction intervals from in-sample residuals, shared by every baseline.
//!
//! The method is replayed at past origins inside the history (every
//! [`IntervalConfig::stride_ms`] over the last [`IntervalConfig::lookback_ms`]),
//! the errors `actual − forecast` are pooled per bucket of neighbouring
//! horizon steps ([`IntervalConfig::bucket_ms`]), and each step's band is the
//! point forecast plus the bucket's 10th and 90th error percentiles; the risk
//! tails p95 and p99 are the point forecast plus its 95th and 99th.
//!
//! Where residuals are too few (short history) the band is widened, not left
//! narrow: a bucket with under [`IntervalConfig::min_residuals`] errors takes
//! the nearest full bucket's offsets scaled by `sqrt(lead ratio)`; a method
//! that cannot be replayed at all borrows the last-value method's errors (how
//! much the series moved over the same lead); a one-value history gets a
//! zero-width band.

use headroom_core::Quantiles;

use super::Method;
use super::naive::LastValue;
use crate::error::Result;

/// How a baseline's p10/p90 band and p95/p99 tails are estimated from in-sample residuals.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IntervalConfig {
    /// Replay origins lie within this long a stretch before the forecast origin (ms; default 14 days).
    pub lookback_ms: i64,
    /// Time between replay origins (ms; default 1 h). Larger is faster and noisier.
    pub stride_ms: i64,
    /// Width of a bucket of horizon steps whose errors are pooled (ms; default 6 h, 8 buckets over 48 h).
    pub bucket_ms: i64,
    /// Fewest errors a bucket needs for its own percentiles (default 30); below it the band is widened (see the module docs).
    pub min_residuals: usize,
    /// Lower quantile level of the band (default 0.10).
    pub lower: f64,
    /// Upper quantile level of the band (default 0.90).
    pub upper: f64,
    /// Quantile levels of the two risk tails above the band, p95 and p99 (default 0.95, 0.99).
    pub tails: [f64; 2],
}

impl Default for IntervalConfig {
    fn default() -> Self {
        const HOUR: i64 = 3_600_000;
        Self {
            lookback_ms: 14 * 24 * HOUR,
            stride_ms: HOUR,
            bucket_ms: 6 * HOUR,
            min_residuals: 30,
            lower: 0.10,
            upper: 0.90,
            tails: [0.95, 0.99],
        }
    }
}

impl IntervalConfig {
    fn bins(ms: i64, step_ms: i64) -> usize {
        (ms / step_ms.max(1)).max(1) as usize
    }

    /// Bins of history the replay reaches back (at least one).
    pub(crate) fn lookback_bins(&self, step_ms: i64) -> usize {
        Self::bins(self.lookback_ms, step_ms)
    }
}

/// The `q`-quantile (0 ≤ q ≤ 1) of ascending `sorted` values, interpolating
/// linearly between order statistics (R type 7, numpy's default): position
/// `q · (n − 1)`. NaN for an empty slice.
pub fn residual_quantile(sorted: &[f64], q: f64) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        n => {
            let pos = q.clamp(0.0, 1.0) * (n - 1) as f64;
            let lo = pos.floor() as usize;
            let hi = (lo + 1).min(n - 1);
            sorted[lo] + (pos - lo as f64) * (sorted[hi] - sorted[lo])
        }
    }
}

/// The same quantile as [`residual_quantile`] of `values` in any order, found
/// by selection in linear time (the values are reordered, not sorted).
pub fn select_quantile(values: &mut [f64], q: f64) -> f64 {
    let n = values.len();
    if n == 0 {
        return f64::NAN;
    }
    let pos = q.clamp(0.0, 1.0) * (n - 1) as f64;
    let lo = pos.floor() as usize;
    let (_, at, above) = values.select_nth_unstable_by(lo, f64::total_cmp);
    let lo_v = *at;
    let hi_v = if lo + 1 < n { above.iter().copied().fold(f64::INFINITY, f64::min) } else { lo_v };
    lo_v + (pos - lo as f64) * (hi_v - lo_v)
}

/// Errors `actual − forecast` of `method` replayed inside `y`, per bucket of
/// `width` horizon steps. Origins go back from the last bin every `stride`
/// bins, no earlier than `method.min_history()` nor `lookback` bins before the end.
fn residuals(
    method: &dyn Method,
    y: &[f64],
    horizon: usize,
    width: usize,
    stride: usize,
    lookback: usize,
) -> Vec<Vec<f64>> {
    let n = y.len();
    let mut buckets = vec![Vec::new(); horizon.div_ceil(width)];
    let first = method.min_history().max(n.saturating_sub(lookback)).max(1);
    if first >= n {
        return buckets;
    }
    let mut origins: Vec<usize> = (first..n).rev().step_by(stride).collect();
    origins.reverse();
    method.replay(y, &origins, horizon, &mut |o, f| {
        for (k, p) in f.iter().enumerate() {
            buckets[k / width].push(y[o + k] - p);
        }
    });
    buckets
}

/// One bucket's offsets from the point forecast: lower, upper, and the two
/// tails, in the order of the paths p10, p90, p95, p99.
type Offsets = [f64; 4];

/// Per-bucket offsets (lower, upper, tails) from `buckets` of errors, or
/// `None` for a bucket with fewer than `min` errors. The offsets are clamped so
/// the band always contains the point forecast (lower ≤ 0 ≤ upper ≤ tails).
fn own_offsets(buckets: &mut [Vec<f64>], cfg: &IntervalConfig) -> Vec<Option<Offsets>> {
    buckets
        .iter_mut()
        .map(|e| {
            (e.len() >= cfg.min_residuals.max(1)).then(|| {
                let [t95, t99] = cfg.tails;
                let above = [cfg.upper, t95, t99].map(|q| select_quantile(e, q).max(0.0));
                [select_quantile(e, cfg.lower).min(0.0), above[0], above[1], above[2]]
            })
        })
        .collect()
}

/// The p10/p50/p90/p95/p99 paths around `p50`, the point forecast of
/// `method` after all of `y` on a grid of `step_ms`.
///
/// Each step's band is `p50 + q_lower(errors)` … `p50 + q_upper(errors)` over
/// the in-sample errors of its bucket, and its tails `p50 + q_tail(errors)`
/// for each of [`IntervalConfig::tails`]. Where residuals are too few (short
/// history), the band and the tails are widened rather than left narrow:
///
/// 1. a bucket with fewer than `min_residuals` errors takes the offsets of
///    the nearest bucket that has enough, scaled by `sqrt(lead / lead_of_that_bucket)`
///    (forecast errors of these methods grow roughly like a random walk's);
/// 2. if no bucket has enough (the method cannot be replayed, e.g.
///    `snaive-weekly` on barely a week), the errors of the last-value method
///    are used instead, i.e. how much the series moved over the same lead
///    times, which is wider than a working seasonal method's errors;
/// 3. if even those are missing (a history of one value), the band has zero width.
pub(crate) fn bands(
    method: &dyn Method,
    y: &[f64],
    p50: Vec<f64>,
    step_ms: i64,
    cfg: &IntervalConfig,
) -> Result<Quantiles> {
    let horizon = p50.len();
    let width = IntervalConfig::bins(cfg.bucket_ms, step_ms);
    let stride = IntervalConfig::bins(cfg.stride_ms, step_ms);
    let lookback = cfg.lookback_bins(step_ms);
    let mut own = own_offsets(&mut residuals(method, y, horizon, width, stride, lookback), cfg);
    if own.iter().all(Option::is_none) {
        own = own_offsets(&mut residuals(&LastValue, y, horizon, width, stride, lookback), cfg);
    }
    // Middle lead (in steps, from 1) of bucket b.
    let lead = |b: usize| (b * width) as f64 + (width.min(horizon - b * width) as f64 + 1.0) / 2.0;
    let filled: Vec<Offsets> = (0..own.len())
        .map(|b| match own[b] {
            Some(o) => o,
            None => own
                .iter()
                .enumerate()
                .filter_map(|(j, o)| o.map(|o| (j, o)))
                .min_by_key(|(j, _)| j.abs_diff(b))
                .map_or([0.0; 4], |(j, o)| o.map(|v| v * (lead(b) / lead(j)).sqrt())),
        })
        .collect();
    let path = |i: usize| p50.iter().enumerate().map(|(k, p)| p + filled[k / width][i]).collect::<Vec<f64>>();
    let [p10, p90, p95, p99] = [0, 1, 2, 3].map(path);
    Ok(Quantiles::new(p10, p50, p90, p95, p99)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::baselines::naive::Seasonal;

    #[test]
    fn selection_gives_the_sorted_quantile() {
        let mut rng = 12345u64;
        let mut v: Vec<f64> = (0..1001)
            .map(|_| {
                rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                (rng >> 11) as f64 / (1u64 << 53) as f64 - 0.5
            })
            .collect();
        let mut sorted = v.clone();
        sorted.sort_by(f64::total_cmp);
        for q in [0.0, 0.1, 0.5, 0.9, 0.999, 1.0] {
            assert_eq!(select_quantile(&mut v, q), residual_quantile(&sorted, q), "q = {q}");
        }
        assert!(select_quantile(&mut [], 0.5).is_nan());
    }

    #[test]
    fn residual_quantile_matches_hand_computed_values() {
        let v = [1.0, 2.0, 3.0, 4.0, 5.0];
        // position q·(n−1): 0.1·4 = 0.4 → 1.4; 0.9·4 = 3.6 → 4.6; 0.5 → 3.
        assert!((residual_quantile(&v, 0.1) - 1.4).abs() < 1e-12);
        assert!((residual_quantile(&v, 0.9) - 4.6).abs() < 1e-12);
        assert!((residual_quantile(&v, 0.5) - 3.0).abs() < 1e-12);
        assert_eq!(residual_quantile(&v, 0.0), 1.0);
        assert_eq!(residual_quantile(&v, 1.0), 5.0);
        // Ten values −4.5 … 4.5: q0.1 at position 0.9 → −4.5 + 0.9 = −3.6.
        let w: Vec<f64> = (0..10).map(|i| i as f64 - 4.5).collect();
        assert!((residual_quantile(&w, 0.1) + 3.6).abs() < 1e-12);
        assert!((residual_quantile(&w, 0.9) - 3.6).abs() < 1e-12);
        assert_eq!(residual_quantile(&[7.0], 0.9), 7.0);
        assert!(residual_quantile(&[], 0.5).is_nan());
    }

    fn cfg() -> IntervalConfig {
        // 1-ms grid: lookback 100 bins, every bin an origin, buckets of 2 steps.
        IntervalConfig {
            lookback_ms: 100,
            stride_ms: 1,
            bucket_ms: 2,
            min_residuals: 5,
            lower: 0.1,
            upper: 0.9,
            tails: [0.95, 0.99],
        }
    }

    #[test]
    fn bands_are_the_bucket_quantiles_of_replayed_errors() {
        // Period-2 pattern 0, 10 plus a known error: seasonal naive (period 2) errors
        // are y[t] − y[t−2] = e[t] − e[t−2].
        let e = [0.0, 0.0, 1.0, -1.0, 2.0, 0.0, -2.0, 1.0, 0.0, 3.0, 1.0, -1.0];
        let y: Vec<f64> = e.iter().enumerate().map(|(i, &e)| if i % 2 == 0 { e } else { 10.0 + e }).collect();
        let m = Seasonal { period: 2 };
        let q = bands(&m, &y, vec![5.0, 5.0], 1, &cfg()).unwrap();
        // Step 0 and 1 share bucket 0: errors of every origin o in 2..12 at step 0,
        // and of o in 2..11 at step 1 (both steps are one period ahead).
        let mut errs: Vec<f64> = (2..12).map(|t| e[t] - e[t - 2]).collect();
        errs.extend((3..12).map(|t| e[t] - e[t - 2]));
        errs.sort_by(f64::total_cmp);
        let (lo, hi) = (residual_quantile(&errs, 0.1), residual_quantile(&errs, 0.9));
        let (t95, t99) = (residual_quantile(&errs, 0.95), residual_quantile(&errs, 0.99));
        assert!(lo < 0.0 && hi > 0.0);
        assert!(hi <= t95 && t95 <= t99, "{hi} {t95} {t99}");
        for k in 0..2 {
            assert!((q.p10[k] - (5.0 + lo)).abs() < 1e-12);
            assert!((q.p90[k] - (5.0 + hi)).abs() < 1e-12);
            assert!((q.p95[k] - (5.0 + t95)).abs() < 1e-12);
            assert!((q.p99[k] - (5.0 + t99)).abs() < 1e-12);
            assert_eq!(q.p50[k], 5.0);
        }
    }

    #[test]
    fn bands_contain_the_point_and_widen_with_sqrt_lead_when_residuals_run_out() {
        // A noisy random walk of 40 values, forecast 40 steps: late buckets have
        // fewer than 5 errors and borrow from the last bucket that has enough.
        let mut y = vec![0.0];
        for i in 1..40 {
            let step = ((i * 37 % 11) as f64 - 5.0) / 3.0;
            y.push(y[i - 1] + step);
        }
        let p50 = vec![y[39]; 40];
        let q = bands(&LastValue, &y, p50, 1, &cfg()).unwrap();
        for k in 0..40 {
            let step = q.paths().map(|(_, p)| p[k]);
            assert!(step.is_sorted(), "step {k}: {step:?}");
        }
        // The last bucket (steps 38, 39) has no residuals at lead 39/40: it is scaled from an earlier one.
        let width = |k: usize| q.p90[k] - q.p10[k];
        // Bucket 19 (middle lead 39.5) is bucket 18's band (middle lead 37.5) scaled by sqrt(39.5 / 37.5).
        assert!(width(37) > 0.0);
        assert!((width(39) - width(37) * (39.5f64 / 37.5).sqrt()).abs() < 1e-9, "{} vs {}", width(39), width(37));
        // The tails are borrowed and scaled the same way.
        let tail = |k: usize| q.p99[k] - q.p50[k];
        assert!(tail(37) >= q.p90[37] - q.p50[37] && tail(37) > 0.0);
        assert!((tail(39) - tail(37) * (39.5f64 / 37.5).sqrt()).abs() < 1e-9, "{} vs {}", tail(39), tail(37));
    }

    #[test]
    fn a_method_that_cannot_be_replayed_borrows_last_value_errors() {
        // Period 10 on 11 values: one replay origin only (o = 10), so one error.
        let y: Vec<f64> = (0..11).map(|i| (i % 3) as f64).collect();
        let m = Seasonal { period: 10 };
        let q = bands(&m, &y, vec![1.0; 4], 1, &cfg()).unwrap();
        assert!(q.p90[0] - q.p10[0] > 0.0, "band must not collapse: {q:?}");
    }
}
