//! Naive baselines: the last value, and the value one season earlier.

use super::{BaselineFit, IntervalConfig, Method};
use crate::error::Result;
use crate::forecaster::{Fitted, Forecaster, History};

/// `last`: every step repeats the last value of the history.
///
/// Needs one value (and reads up to [`IntervalConfig::lookback_ms`] more for its band).
#[derive(Debug, Clone, Copy, Default)]
pub struct Last {
    /// How the p10/p90 band and the p95/p99 tails are estimated.
    pub intervals: IntervalConfig,
}

impl Forecaster for Last {
    fn name(&self) -> &str {
        "last"
    }

    fn fit(&self, history: &History<'_>) -> Result<Box<dyn Fitted>> {
        let max = 1 + self.intervals.lookback_bins(history.step_ms);
        Ok(Box::new(BaselineFit::new(history, "last", Box::new(LastValue), max, self.intervals)?))
    }
}

/// The season a [`SeasonalNaive`] repeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Season {
    /// One day (`snaive-daily`).
    Daily,
    /// One week (`snaive-weekly`).
    Weekly,
}

/// `snaive-daily` / `snaive-weekly`: step `k` is the value one season before
/// it, so the last season of the history repeats (a 48 h horizon with a daily
/// season repeats the last day twice).
///
/// Needs one whole season of history ([`crate::Error::TooShort`] otherwise):
/// `bins_per_day` values for daily, seven times that for weekly.
#[derive(Debug, Clone, Copy)]
pub struct SeasonalNaive {
    /// Which season.
    pub season: Season,
    /// How the p10/p90 band and the p95/p99 tails are estimated.
    pub intervals: IntervalConfig,
}

impl SeasonalNaive {
    /// A seasonal naive forecaster with the default band settings.
    pub fn new(season: Season) -> Self {
        Self { season, intervals: IntervalConfig::default() }
    }

    /// Fits on `history` as the model `name` (also used as the Holt-Winters fallback).
    pub(crate) fn fit_named(&self, history: &History<'_>, name: &'static str) -> Result<BaselineFit> {
        let days = match self.season {
            Season::Daily => 1,
            Season::Weekly => 7,
        };
        let period = days * history.bins_per_day();
        let max = period + self.intervals.lookback_bins(history.step_ms);
        BaselineFit::new(history, name, Box::new(Seasonal { period }), max, self.intervals)
    }
}

impl Forecaster for SeasonalNaive {
    fn name(&self) -> &str {
        match self.season {
            Season::Daily => "snaive-daily",
            Season::Weekly => "snaive-weekly",
        }
    }

    fn fit(&self, history: &History<'_>) -> Result<Box<dyn Fitted>> {
        let name = match self.season {
            Season::Daily => "snaive-daily",
            Season::Weekly => "snaive-weekly",
        };
        Ok(Box::new(self.fit_named(history, name)?))
    }
}

/// The last value, repeated.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LastValue;

impl Method for LastValue {
    fn min_history(&self) -> usize {
        1
    }

    fn point(&self, y: &[f64], origin: usize, out: &mut [f64]) {
        out.fill(y[origin - 1]);
    }
}

/// The value `period` bins earlier, repeating the last period.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Seasonal {
    /// Bins per season.
    pub period: usize,
}

impl Method for Seasonal {
    fn min_history(&self) -> usize {
        self.period.max(1)
    }

    fn point(&self, y: &[f64], origin: usize, out: &mut [f64]) {
        let p = self.period.max(1);
        let last = &y[origin - p..origin];
        for (k, o) in out.iter_mut().enumerate() {
            *o = last[k % p];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::baselines::test_util::*;
    use crate::error::Error;

    #[test]
    fn last_repeats_the_last_value() {
        let key = key();
        let v = [3.0, 1.0, 4.0, 1.0, 5.0];
        let q = Last::default().fit(&history(&key, 900_000, &v)).unwrap().predict(3).unwrap();
        assert_eq!(q.p50, vec![5.0, 5.0, 5.0]);
    }

    #[test]
    fn snaive_daily_repeats_the_last_day() {
        // A 4-bin "day" (6 h bins) repeating 1 2 3 4; the last day is 5 6 7 8.
        let key = key();
        let v = [1.0, 2.0, 3.0, 4.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0];
        let f = SeasonalNaive::new(Season::Daily).fit(&history(&key, 6 * 3_600_000, &v)).unwrap();
        let q = f.predict(6).unwrap();
        assert_eq!(q.p50, vec![5.0, 6.0, 7.0, 8.0, 5.0, 6.0]);
    }

    #[test]
    fn snaive_on_an_exactly_repeating_pattern_is_exact_with_a_zero_band() {
        let key = key();
        // 15 days of 4 bins: enough replay origins (≥ 30 errors per step) for an own band.
        let v: Vec<f64> = (0..15 * 4).map(|i| [2.0, 9.0, 4.0, 1.0][i % 4]).collect();
        let q = SeasonalNaive::new(Season::Daily).fit(&history(&key, 6 * 3_600_000, &v)).unwrap().predict(8).unwrap();
        assert_eq!(q.p50, vec![2.0, 9.0, 4.0, 1.0, 2.0, 9.0, 4.0, 1.0]);
        assert_eq!(q.p10, q.p50);
        assert_eq!(q.p90, q.p50);
        assert_eq!(q.p95, q.p50);
        assert_eq!(q.p99, q.p50);
    }

    #[test]
    fn snaive_weekly_repeats_the_last_week_and_needs_one() {
        // Daily bins: a week is 7 bins.
        let key = key();
        let v: Vec<f64> = (0..10).map(|i| i as f64).collect();
        let q = SeasonalNaive::new(Season::Weekly).fit(&history(&key, 86_400_000, &v)).unwrap().predict(9).unwrap();
        assert_eq!(q.p50, vec![3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 3.0, 4.0]);

        let e = SeasonalNaive::new(Season::Weekly).fit(&history(&key, 86_400_000, &v[..6])).unwrap_err();
        match &e {
            Error::TooShort { series, model, need, have } => {
                assert_eq!((series.as_str(), model.as_str(), *need, *have), ("test/host:cpu", "snaive-weekly", 7, 6));
            }
            other => panic!("expected TooShort, got {other}"),
        }
    }
}
