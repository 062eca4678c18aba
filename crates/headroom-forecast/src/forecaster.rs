//! The `Forecaster` plug-in boundary.
//!
//! An unfitted model ([`Forecaster`]) is fitted on one series' history into a
//! [`Fitted`] model, which predicts the bins after the history as
//! [`Quantiles`]. [`Forecaster::forecast_batch`] does both for many series in
//! one call; models that can batch (the LSTM) override it. The backtest and
//! the engine hold `&dyn Forecaster` and never know which model they have.

use std::fmt::Debug;

use headroom_core::{Forecast, Quantiles, ResampledSeries, SeriesKey, format_ts};

use crate::error::{Error, Result};

/// One series' history on a regular grid, ending right before the forecast origin.
#[derive(Debug, Clone, Copy)]
pub struct History<'a> {
    /// Which series.
    pub key: &'a SeriesKey,
    /// Start of the first bin (UTC ms).
    pub start_ms: i64,
    /// Bin width (ms).
    pub step_ms: i64,
    /// One value per bin, oldest first. NaN marks a missing bin.
    pub values: &'a [f64],
}

impl<'a> History<'a> {
    /// The whole of a resampled series, as a history.
    pub fn of(series: &'a ResampledSeries) -> Self {
        Self { key: &series.key, start_ms: series.grid.start_ms, step_ms: series.grid.step_ms, values: &series.values }
    }

    /// Its first `n` bins (all of it when it has fewer): the history before
    /// the origin `n` bins after its start.
    pub fn first(self, n: usize) -> Self {
        Self { values: &self.values[..n.min(self.values.len())], ..self }
    }

    /// The forecast origin: the start of the bin right after the history.
    pub fn origin_ms(&self) -> i64 {
        self.start_ms + self.values.len() as i64 * self.step_ms
    }

    /// Bins per day on this grid (e.g. 96 at 15 minutes).
    pub fn bins_per_day(&self) -> usize {
        (86_400_000 / self.step_ms.max(1)) as usize
    }

    /// The last `n` values, or [`Error::TooShort`] / [`Error::Missing`]
    /// (naming the time of the first NaN) for `model`.
    pub fn window(&self, n: usize, model: &str) -> Result<&[f64]> {
        if self.values.len() < n {
            return Err(Error::TooShort {
                series: self.key.to_string(),
                model: model.into(),
                need: n,
                have: self.values.len(),
            });
        }
        let first = self.values.len() - n;
        let w = &self.values[first..];
        if let Some(i) = w.iter().position(|v| v.is_nan()) {
            return Err(Error::Missing {
                series: self.key.to_string(),
                model: model.into(),
                at: format_ts(self.start_ms + (first + i) as i64 * self.step_ms),
            });
        }
        Ok(w)
    }
}

/// A model fitted on one history.
pub trait Fitted: Send + Debug {
    /// The `horizon` bins after the history.
    fn predict(&self, horizon: usize) -> Result<Quantiles>;
}

/// An unfitted forecasting model.
pub trait Forecaster: Send + Sync + Debug {
    /// The model's name, as written in `--models` and in forecast files.
    fn name(&self) -> &str;

    /// Fits the model on one history.
    fn fit(&self, history: &History<'_>) -> Result<Box<dyn Fitted>>;

    /// Fits on each history and predicts `horizon` bins from its origin.
    fn forecast_batch(&self, histories: &[History<'_>], horizon: usize) -> Result<Vec<Forecast>> {
        if horizon == 0 {
            return Err(Error::Invalid("horizon must be at least one bin".into()));
        }
        histories
            .iter()
            .map(|h| {
                let q = self.fit(h)?.predict(horizon)?;
                Ok(Forecast {
                    key: h.key.clone(),
                    model: self.name().to_owned(),
                    origin_ms: h.origin_ms(),
                    step_ms: h.step_ms,
                    q,
                })
            })
            .collect()
    }
}
