//! Baseline forecasters, behind the same [`Forecaster`] trait as the LSTM.
//!
//! | name | what it forecasts | needs |
//! |---|---|---|
//! | `last` | the last value, for every step ([`Last`]) | 1 value |
//! | `snaive-daily` | the value one day earlier ([`SeasonalNaive`]) | 1 day |
//! | `snaive-weekly` | the value one week earlier ([`SeasonalNaive`]) | 1 week |
//! | `linear` | a least-squares line over the last 6 h, extrapolated ([`Linear`]) | the window |
//! | `holt-winters` | additive Holt-Winters with a daily season ([`HoltWinters`]) | 2 days, else `snaive-daily` |
//!
//! Every baseline gets its p10/p90 band and its p95/p99 tails the same way
//! ([`IntervalConfig`]): the method is replayed at past origins inside the
//! history and each path is the point forecast plus the percentile of the
//! errors it made at the same lead time. Get one by name with [`baseline`]; [`BASELINES`] lists the names.
//!
//! Invariant: a baseline reads only the history it is given (no clock, no IO),
//! and the last value of its window is the last value it may use.

mod holt_winters;
mod intervals;
mod linear;
mod naive;

use std::fmt::Debug;

use headroom_core::Quantiles;

pub use holt_winters::HoltWinters;
pub use intervals::{IntervalConfig, residual_quantile};
pub use linear::Linear;
pub use naive::{Last, Season, SeasonalNaive};

use crate::error::{Error, Result};
use crate::forecaster::{Fitted, Forecaster, History};

/// The baselines' names, as written in `--models` and in forecast files.
pub const BASELINES: &[&str] = &["last", "snaive-daily", "snaive-weekly", "linear", "holt-winters"];

/// The baseline called `name` (one of [`BASELINES`]) with its default settings,
/// or [`Error::Invalid`] listing the known names.
pub fn baseline(name: &str) -> Result<Box<dyn Forecaster>> {
    Ok(match name {
        "last" => Box::new(Last::default()),
        "snaive-daily" => Box::new(SeasonalNaive::new(Season::Daily)),
        "snaive-weekly" => Box::new(SeasonalNaive::new(Season::Weekly)),
        "linear" => Box::new(Linear::default()),
        "holt-winters" => Box::new(HoltWinters::default()),
        _ => {
            return Err(Error::Invalid(format!(
                "unknown baseline {name:?}; known baselines: {}",
                BASELINES.join(", ")
            )));
        }
    })
}

/// A point method that can forecast from any origin inside a series: what the
/// baselines have in common, so fitting, replay and intervals are written once.
pub(crate) trait Method: Send + Sync + Debug {
    /// Fewest values before an origin that [`Method::point`] needs.
    fn min_history(&self) -> usize;

    /// Point forecast of `out.len()` steps after `y[..origin]`, reading nothing at or after `origin`.
    fn point(&self, y: &[f64], origin: usize, out: &mut [f64]);

    /// Calls `sink(origin, forecast)` for each of the ascending `origins`, with
    /// a forecast of `min(horizon, y.len() − origin)` steps made from `y[..origin]`.
    /// Stateful methods override this to make one pass over `y`.
    fn replay(&self, y: &[f64], origins: &[usize], horizon: usize, sink: &mut dyn FnMut(usize, &[f64])) {
        let mut buf = vec![0.0; horizon];
        for &o in origins {
            let f = &mut buf[..horizon.min(y.len() - o)];
            self.point(y, o, f);
            sink(o, f);
        }
    }
}

/// A fitted baseline: the history it may read, its point method and how its
/// band is estimated. [`HoltWinters::fit_with_note`] returns one directly, to
/// show whether it fell back.
#[derive(Debug)]
pub struct BaselineFit {
    /// The method that actually forecasts (differs from the requested one after a fallback).
    model: &'static str,
    /// `entity:metric`, for error messages.
    series: String,
    step_ms: i64,
    /// The usable history: gap-free, oldest first, ending right before the origin.
    y: Vec<f64>,
    method: Box<dyn Method>,
    intervals: IntervalConfig,
    fallback: Option<String>,
}

impl BaselineFit {
    /// Fits `method` on `history` for the model `name`: checks that the last
    /// `method.min_history()` values exist and are not NaN ([`Error::TooShort`],
    /// [`Error::Missing`]), then keeps up to `max_bins` values back to the
    /// first gap, which is what the point forecast and the residual replay read.
    fn new(
        history: &History<'_>,
        name: &'static str,
        method: Box<dyn Method>,
        max_bins: usize,
        intervals: IntervalConfig,
    ) -> Result<Self> {
        let need = method.min_history().max(1);
        history.window(need, name)?;
        let v = history.values;
        let tail = v.len() - v.iter().rposition(|x| x.is_nan()).map_or(0, |i| i + 1);
        let keep = tail.min(max_bins.max(need));
        Ok(Self {
            model: name,
            series: history.key.to_string(),
            step_ms: history.step_ms,
            y: v[v.len() - keep..].to_vec(),
            method,
            intervals,
            fallback: None,
        })
    }

    /// Why this fit fell back to a simpler method, if it did (e.g.
    /// `holt-winters` on under two days of history forecasts as `snaive-daily`).
    pub fn fallback(&self) -> Option<&str> {
        self.fallback.as_deref()
    }

    /// The name of the method that forecasts.
    pub fn model(&self) -> &str {
        self.model
    }
}

impl Fitted for BaselineFit {
    fn predict(&self, horizon: usize) -> Result<Quantiles> {
        if horizon == 0 {
            return Err(Error::Invalid("horizon must be at least one bin".into()));
        }
        let mut p50 = vec![0.0; horizon];
        self.method.point(&self.y, self.y.len(), &mut p50);
        if let Some(k) = p50.iter().position(|p| !p.is_finite()) {
            return Err(Error::Model {
                series: self.series.clone(),
                model: self.model.into(),
                why: format!("forecast step {k} is {}", p50[k]),
            });
        }
        intervals::bands(self.method.as_ref(), &self.y, p50, self.step_ms, &self.intervals)
    }
}

#[cfg(test)]
pub(crate) mod test_util {
    use headroom_core::SeriesKey;

    use crate::forecaster::History;

    /// The series key used by the tests.
    pub fn key() -> SeriesKey {
        SeriesKey::new("test/host", "cpu").unwrap()
    }

    /// 2024-01-01T00:00:00Z.
    pub const T0: i64 = 1_704_067_200_000;

    /// A history on a grid of `step_ms` starting at [`T0`].
    pub fn history<'a>(key: &'a SeriesKey, step_ms: i64, values: &'a [f64]) -> History<'a> {
        History { key, start_ms: T0, step_ms, values }
    }
}

#[cfg(test)]
mod tests {
    use super::test_util::*;
    use super::*;

    #[test]
    fn every_listed_name_builds_a_baseline_of_that_name() {
        for name in BASELINES {
            assert_eq!(baseline(name).unwrap().name(), *name);
        }
    }

    #[test]
    fn an_unknown_name_lists_the_known_baselines() {
        let e = baseline("prophet").unwrap_err().to_string();
        assert!(e.contains("prophet") && e.contains("snaive-weekly") && e.contains("holt-winters"), "{e}");
    }

    #[test]
    fn every_baseline_names_the_series_and_time_of_a_gap_it_needs() {
        let key = key();
        // Eight days at 15 min, with a NaN in the last bin.
        let mut v = vec![1.0; 8 * 96];
        v[8 * 96 - 1] = f64::NAN;
        let h = history(&key, 900_000, &v);
        for name in BASELINES {
            let e = baseline(name).unwrap().fit(&h).unwrap_err();
            assert!(matches!(e, Error::Missing { .. }), "{name}: {e}");
            let s = e.to_string();
            assert!(s.contains("test/host:cpu") && s.contains("2024-01-08T23:45:00Z"), "{name}: {s}");
        }
    }

    #[test]
    fn every_baseline_names_the_series_when_history_is_too_short() {
        let key = key();
        let v: Vec<f64> = vec![];
        let h = history(&key, 900_000, &v);
        for name in BASELINES {
            let e = baseline(name).unwrap().fit(&h).unwrap_err();
            assert!(matches!(e, Error::TooShort { .. }), "{name}: {e}");
            assert!(e.to_string().contains("test/host:cpu"), "{name}: {e}");
        }
    }

    #[test]
    fn a_gap_before_the_window_only_shortens_the_replay() {
        let key = key();
        let mut v: Vec<f64> = (0..4 * 96).map(|i| (i % 96) as f64).collect();
        v[10] = f64::NAN;
        let h = history(&key, 900_000, &v);
        let q = baseline("snaive-daily").unwrap().fit(&h).unwrap().predict(192).unwrap();
        assert_eq!(q.p50[5], 5.0);
    }

    #[test]
    fn quantiles_are_ordered_for_every_baseline() {
        let key = key();
        let v: Vec<f64> = (0..10 * 96)
            .map(|i| {
                let t = i as f64;
                50.0 + 20.0 * (t * std::f64::consts::TAU / 96.0).sin() + ((i * 7919 % 97) as f64 - 48.0) / 8.0
            })
            .collect();
        let h = history(&key, 900_000, &v);
        for name in BASELINES {
            let q = baseline(name).unwrap().fit(&h).unwrap().predict(192).unwrap();
            assert_eq!(q.len(), 192);
            for k in 0..192 {
                let step = q.paths().map(|(_, p)| p[k]);
                assert!(step.is_sorted(), "{name} step {k}: {step:?}");
            }
            assert!(q.p90[100] - q.p10[100] > 0.0, "{name}: noisy data must give a band");
            assert!(q.p99[100] > q.p90[100], "{name}: noisy data must give a tail beyond the band");
        }
    }
}
