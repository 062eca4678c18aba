//! `linear`: a least-squares line over a recent window, extrapolated.

use super::{BaselineFit, IntervalConfig, Method};
use crate::error::{Error, Result};
use crate::forecaster::{Fitted, Forecaster, History};

/// `linear`: fits a least-squares line to the last [`Linear::window_ms`] of
/// history (default 6 h) and extrapolates it, as Prometheus
/// `predict_linear(x[6h], t)` does.
///
/// Needs the whole window (at least two bins) without gaps.
#[derive(Debug, Clone, Copy)]
pub struct Linear {
    /// Length of the fitted window (ms; default 6 h).
    pub window_ms: i64,
    /// How the p10/p90 band and the p95/p99 tails are estimated.
    pub intervals: IntervalConfig,
}

impl Default for Linear {
    fn default() -> Self {
        Self { window_ms: 6 * 3_600_000, intervals: IntervalConfig::default() }
    }
}

impl Forecaster for Linear {
    fn name(&self) -> &str {
        "linear"
    }

    fn fit(&self, history: &History<'_>) -> Result<Box<dyn Fitted>> {
        let window = (self.window_ms / history.step_ms.max(1)).max(0) as usize;
        if window < 2 {
            return Err(Error::Invalid(format!(
                "linear: window of {} ms holds {window} bins of {} ms; it needs at least 2",
                self.window_ms, history.step_ms
            )));
        }
        let max = window + self.intervals.lookback_bins(history.step_ms);
        Ok(Box::new(BaselineFit::new(history, "linear", Box::new(Line { window }), max, self.intervals)?))
    }
}

/// Least squares over the last `window` values before the origin.
#[derive(Debug, Clone, Copy)]
struct Line {
    window: usize,
}

impl Method for Line {
    fn min_history(&self) -> usize {
        self.window
    }

    fn point(&self, y: &[f64], origin: usize, out: &mut [f64]) {
        let w = &y[origin - self.window..origin];
        let n = w.len() as f64;
        // x = 0 … n−1 for the window; its mean is (n − 1)/2.
        let xm = (n - 1.0) / 2.0;
        let ym = w.iter().sum::<f64>() / n;
        let (mut sxy, mut sxx) = (0.0, 0.0);
        for (i, v) in w.iter().enumerate() {
            let dx = i as f64 - xm;
            sxy += dx * (v - ym);
            sxx += dx * dx;
        }
        let slope = if sxx > 0.0 { sxy / sxx } else { 0.0 };
        for (k, o) in out.iter_mut().enumerate() {
            *o = ym + slope * (n + k as f64 - xm);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::baselines::test_util::*;

    #[test]
    fn an_exact_line_is_extended_exactly() {
        // y = 2 + 0.5·i on a 15-minute grid; the window is the last 6 h (24 bins).
        let key = key();
        let v: Vec<f64> = (0..100).map(|i| 2.0 + 0.5 * i as f64).collect();
        let q = Linear::default().fit(&history(&key, 900_000, &v)).unwrap().predict(4).unwrap();
        for (k, p) in q.p50.iter().enumerate() {
            assert!((p - (2.0 + 0.5 * (100 + k) as f64)).abs() < 1e-9, "step {k}: {p}");
        }
        // Every replayed forecast was exact too, so the band and the tails have no width.
        for k in 0..4 {
            assert!((q.p90[k] - q.p10[k]).abs() < 1e-9);
            assert!((q.p99[k] - q.p10[k]).abs() < 1e-9);
        }
    }

    #[test]
    fn only_the_window_is_fitted() {
        // A flat stretch, then the last 3 bins (a 3-bin window of 1 h bins) rise 1, 2, 3.
        let key = key();
        let v = [9.0, 9.0, 9.0, 1.0, 2.0, 3.0];
        let l = Linear { window_ms: 3 * 3_600_000, ..Linear::default() };
        let q = l.fit(&history(&key, 3_600_000, &v)).unwrap().predict(2).unwrap();
        assert!((q.p50[0] - 4.0).abs() < 1e-12 && (q.p50[1] - 5.0).abs() < 1e-12, "{:?}", q.p50);
    }

    #[test]
    fn a_window_under_two_bins_is_refused() {
        let key = key();
        let v = [1.0, 2.0];
        let l = Linear { window_ms: 900_000, ..Linear::default() };
        assert!(matches!(l.fit(&history(&key, 900_000, &v)), Err(Error::Invalid(_))));
    }
}
