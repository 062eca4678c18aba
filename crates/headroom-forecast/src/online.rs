//! Online calibration per series: a model's bands, recalibrated from that
//! series' own recent errors, so that a machine the model has never seen
//! gets calibrated bands once a few days of it are recorded.
//!
//! At each origin the model also forecasts from one horizon earlier (a
//! hindcast, the forecast it would have made then: the LSTM makes it in the
//! same batch as the forecast); what happened since is known, so for each lead-time bucket the hindcast says how far the actuals
//! fell outside its bands. The upper spreads (p90, p95, p99 above the median)
//! and the lower spread (p10 below it) of the new forecast are multiplied by
//! the factor that would have put the nominal share of those actuals inside,
//! shrunk toward 1 by how few actuals there were ([`factor`]). The median is
//! never moved. This is split conformal calibration on the series' own most
//! recent horizon, computed afresh at every origin: no state is kept, so the
//! backtest, the forecast job and the daemon recalibrate alike.

use headroom_core::Quantiles;

use crate::error::Result;

/// How online calibration runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OnlineCalibration {
    /// Lead-time buckets the horizon is split into, each calibrated apart
    /// (4: 12-hour buckets of a 48-hour horizon).
    pub buckets: usize,
    /// Actuals of evidence that weigh as much as the prior factor 1 (the
    /// model's own calibration): with `n` actuals in a bucket, the factor is
    /// `empirical^(n / (n + prior))`.
    pub prior: f64,
    /// The factors are kept within [1/`limit`, `limit`].
    pub limit: f64,
}

impl Default for OnlineCalibration {
    /// Four lead buckets; one bucket of evidence (a 12-hour bucket holds 48
    /// actuals at 15 minutes) counts as much as the prior; factors within ¼–4.
    fn default() -> Self {
        Self { buckets: 4, prior: 48.0, limit: 4.0 }
    }
}

/// The factors of one lead-time bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Factors {
    /// Multiplier of the spread below the median (p50 − p10).
    pub lower: f64,
    /// Multiplier of the spreads above the median (p90, p95, p99 − p50).
    pub upper: f64,
    /// Actuals the bucket was judged on.
    pub evidence: usize,
}

/// The smallest multiplier `m` of the spreads `spread[i] > 0` such that a
/// share `level` of the `excess[i] ≤ m · spread[i]` holds (the empirical
/// `level` quantile of `excess / spread`), shrunk toward 1 by
/// `n / (n + prior)` in the log and kept within [1/limit, limit]. 1 when
/// there is no evidence.
pub fn factor(excess: &[f64], spread: &[f64], level: f64, cfg: &OnlineCalibration) -> (f64, usize) {
    let mut ratios: Vec<f64> = excess
        .iter()
        .zip(spread)
        .filter(|(e, s)| e.is_finite() && s.is_finite() && **s > 1e-12)
        .map(|(e, s)| e / s)
        .collect();
    if ratios.is_empty() {
        return (1.0, 0);
    }
    ratios.sort_by(f64::total_cmp);
    let n = ratios.len();
    let at = ((level * n as f64).ceil() as usize).clamp(1, n) - 1;
    let empirical = ratios[at].clamp(1.0 / cfg.limit, cfg.limit);
    let weight = n as f64 / (n as f64 + cfg.prior);
    ((weight * empirical.ln()).exp(), n)
}

/// The factors per lead bucket of `hindcast` against `actuals` (its first
/// `actuals.len()` bins; NaN actuals are skipped). A bucket without an actual
/// takes the factors of the nearest earlier bucket that has some (errors grow
/// with lead time, so the longest lead seen is the closest evidence), or 1.
pub fn factors(hindcast: &Quantiles, actuals: &[f64], cfg: &OnlineCalibration) -> Vec<Factors> {
    let horizon = hindcast.len();
    let buckets = cfg.buckets.clamp(1, horizon.max(1));
    let mut out: Vec<Factors> = Vec::with_capacity(buckets);
    for b in 0..buckets {
        let (from, to) = (b * horizon / buckets, ((b + 1) * horizon / buckets).min(actuals.len()));
        let (mut up_e, mut up_s, mut lo_e, mut lo_s) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (k, &y) in actuals.iter().enumerate().take(to.max(from)).skip(from) {
            if !y.is_finite() {
                continue;
            }
            up_e.push(y - hindcast.p50[k]);
            up_s.push(hindcast.p90[k] - hindcast.p50[k]);
            lo_e.push(hindcast.p50[k] - y);
            lo_s.push(hindcast.p50[k] - hindcast.p10[k]);
        }
        let (upper, n_up) = factor(&up_e, &up_s, 0.9, cfg);
        let (lower, n_lo) = factor(&lo_e, &lo_s, 0.9, cfg);
        let evidence = n_up.max(n_lo);
        out.push(match (evidence, out.last()) {
            (0, Some(prev)) => Factors { evidence: 0, ..*prev },
            _ => Factors { lower, upper, evidence },
        });
    }
    out
}

/// `q` with each bin's spreads multiplied by its lead bucket's factors (the
/// lower one below the median, the upper one for p90, p95 and p99), the
/// buckets splitting a horizon of `horizon` bins (the hindcast's; `q` may be
/// shorter, never longer).
pub fn apply(q: &Quantiles, factors: &[Factors], horizon: usize) -> Result<Quantiles> {
    let at = |k: usize| factors.get(k * factors.len() / horizon.max(1)).copied();
    let scaled = |path: &[f64], lower: bool| -> Vec<f64> {
        path.iter()
            .enumerate()
            .map(|(k, v)| match at(k) {
                Some(f) => q.p50[k] + if lower { f.lower } else { f.upper } * (v - q.p50[k]),
                None => *v,
            })
            .collect()
    };
    Ok(Quantiles::new(
        scaled(&q.p10, true),
        q.p50.clone(),
        scaled(&q.p90, false),
        scaled(&q.p95, false),
        scaled(&q.p99, false),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(p10: f64, p50: f64, p90: f64, n: usize) -> Quantiles {
        let p = |v: f64| vec![v; n];
        Quantiles::new(p(p10), p(p50), p(p90), p(p50 + 1.5 * (p90 - p50)), p(p50 + 2.0 * (p90 - p50))).unwrap()
    }

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-9, "{a} != {b}");
    }

    #[test]
    fn the_factor_is_the_empirical_quantile_of_excess_over_spread_shrunk_by_evidence() {
        let cfg = OnlineCalibration { buckets: 1, prior: 0.0, limit: 4.0 };
        // Excess 1..=10 over a spread of 1: 90 % of them are at most 9.
        let excess: Vec<f64> = (1..=10).map(f64::from).collect();
        let spread = vec![1.0; 10];
        let (f, n) = factor(&excess, &spread, 0.9, &cfg);
        assert_eq!(n, 10);
        close(f, 4.0); // kept within the limit
        let spread = vec![4.0; 10];
        close(factor(&excess, &spread, 0.9, &cfg).0, 2.25);
        // With as much prior as evidence, half the log: sqrt(2.25).
        let cfg = OnlineCalibration { prior: 10.0, ..cfg };
        assert!((factor(&excess, &spread, 0.9, &cfg).0 - 1.5).abs() < 1e-12);
        // No usable evidence (zero spread, NaN): the prior.
        assert_eq!(factor(&[1.0, f64::NAN], &[0.0, 1.0], 0.9, &cfg), (1.0, 0));
    }

    #[test]
    fn bands_that_held_too_little_widen_and_the_median_stays() {
        let cfg = OnlineCalibration { buckets: 2, prior: 0.0, limit: 4.0 };
        let hindcast = q(9.0, 10.0, 11.0, 8);
        // First half of the horizon: actuals 3 above the median (3x the upper
        // spread); second half: never realized.
        let actuals = [13.0, 13.0, 13.0, 13.0, f64::NAN, f64::NAN, f64::NAN, f64::NAN];
        let f = factors(&hindcast, &actuals, &cfg);
        assert_eq!(f.len(), 2);
        close(f[0].upper, 3.0);
        close(f[0].lower, 0.25); // every actual above the median: the lower spread shrinks to the limit
        assert_eq!(f[1], Factors { evidence: 0, ..f[0] }, "an unseen bucket takes the last seen one");
        let now = q(19.0, 20.0, 22.0, 8);
        let out = apply(&now, &f, 8).unwrap();
        assert_eq!(out.p50, now.p50);
        close(out.p90[0], 26.0);
        close(out.p99[7], 20.0 + 3.0 * 4.0);
        close(out.p10[3], 19.75);
    }
}
