//! Forecasts: three quantile paths over a horizon, and the one schema every
//! forecast file uses: `entity, metric, model, origin, ts, p10, p50, p90`.

use polars::prelude::*;

use crate::error::{Error, Result};
use crate::frame::{ENTITY, METRIC, timestamp_column};
use crate::series::SeriesKey;

/// The quantiles every forecast carries, in order.
pub const QUANTILES: [f64; 3] = [0.1, 0.5, 0.9];

/// Column: the model's name (as given to `--models`).
pub const MODEL: &str = "model";
/// Column: start of the first forecast bin; only data before it was used.
pub const ORIGIN: &str = "origin";
/// Column: start of each forecast bin.
pub const TS: &str = "ts";
/// Columns: the quantiles.
pub const P10: &str = "p10";
/// Median.
pub const P50: &str = "p50";
/// Upper quantile, the one the policy acts on.
pub const P90: &str = "p90";

/// The forecasts schema.
pub fn forecasts_schema() -> Schema {
    Schema::from_iter([
        Field::new(ENTITY.into(), DataType::String),
        Field::new(METRIC.into(), DataType::String),
        Field::new(MODEL.into(), DataType::String),
        Field::new(ORIGIN.into(), crate::frame::timestamp_dtype()),
        Field::new(TS.into(), crate::frame::timestamp_dtype()),
        Field::new(P10.into(), DataType::Float64),
        Field::new(P50.into(), DataType::Float64),
        Field::new(P90.into(), DataType::Float64),
    ])
}

/// Three quantile paths of equal length, monotone at every step
/// (`p10 ≤ p50 ≤ p90`): [`Quantiles::new`] sorts each step's triple, so a
/// model can never hand out a crossed interval.
#[derive(Debug, Clone, PartialEq)]
pub struct Quantiles {
    /// 10th percentile per step.
    pub p10: Vec<f64>,
    /// Median per step.
    pub p50: Vec<f64>,
    /// 90th percentile per step.
    pub p90: Vec<f64>,
}

impl Quantiles {
    /// Checks lengths and finiteness, and sorts each step's three values.
    pub fn new(mut p10: Vec<f64>, mut p50: Vec<f64>, mut p90: Vec<f64>) -> Result<Self> {
        if p10.len() != p50.len() || p50.len() != p90.len() {
            return Err(Error::Forecast(format!(
                "quantile paths differ in length: p10 {}, p50 {}, p90 {}",
                p10.len(),
                p50.len(),
                p90.len()
            )));
        }
        for i in 0..p50.len() {
            let mut q = [p10[i], p50[i], p90[i]];
            if let Some(bad) = q.iter().find(|v| !v.is_finite()) {
                return Err(Error::Forecast(format!("step {i}: quantile {bad} is not finite")));
            }
            q.sort_by(f64::total_cmp);
            [p10[i], p50[i], p90[i]] = q;
        }
        Ok(Self { p10, p50, p90 })
    }

    /// A point forecast with no spread (all three quantiles equal).
    pub fn point(p50: Vec<f64>) -> Result<Self> {
        Self::new(p50.clone(), p50.clone(), p50)
    }

    /// Number of steps.
    pub fn len(&self) -> usize {
        self.p50.len()
    }

    /// Whether there are no steps.
    pub fn is_empty(&self) -> bool {
        self.p50.is_empty()
    }
}

/// A forecast of one series by one model from one origin.
#[derive(Debug, Clone, PartialEq)]
pub struct Forecast {
    /// Which series.
    pub key: SeriesKey,
    /// The model's name.
    pub model: String,
    /// Start of the first forecast bin (UTC ms); only data before it was used.
    pub origin_ms: i64,
    /// Bin width (ms); bin `i` starts at `origin + i·step`.
    pub step_ms: i64,
    /// The quantile paths.
    pub q: Quantiles,
}

impl Forecast {
    /// Start of bin `i`.
    pub fn ts(&self, i: usize) -> i64 {
        self.origin_ms + i as i64 * self.step_ms
    }

    /// The forecasts as one frame with [`forecasts_schema`].
    pub fn to_frame<'a>(forecasts: impl IntoIterator<Item = &'a Forecast>) -> Result<DataFrame> {
        let forecasts: Vec<&Forecast> = forecasts.into_iter().collect();
        let n: usize = forecasts.iter().map(|f| f.q.len()).sum();
        let (mut entity, mut metric, mut model) = (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
        let (mut origin, mut ts) = (Vec::with_capacity(n), Vec::with_capacity(n));
        let (mut p10, mut p50, mut p90) = (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
        for f in &forecasts {
            let h = f.q.len();
            entity.extend(std::iter::repeat_n(f.key.entity.as_str(), h));
            metric.extend(std::iter::repeat_n(f.key.metric.as_str(), h));
            model.extend(std::iter::repeat_n(f.model.as_str(), h));
            origin.extend(std::iter::repeat_n(f.origin_ms, h));
            ts.extend((0..h).map(|i| f.ts(i)));
            p10.extend_from_slice(&f.q.p10);
            p50.extend_from_slice(&f.q.p50);
            p90.extend_from_slice(&f.q.p90);
        }
        Ok(DataFrame::new(
            n,
            vec![
                Column::new(ENTITY.into(), entity),
                Column::new(METRIC.into(), metric),
                Column::new(MODEL.into(), model),
                timestamp_column(ORIGIN, origin),
                timestamp_column(TS, ts),
                Column::new(P10.into(), p10),
                Column::new(P50.into(), p50),
                Column::new(P90.into(), p90),
            ],
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_monotone_by_construction() {
        let q = Quantiles::new(vec![3.0, 1.0], vec![2.0, 2.0], vec![1.0, 3.0]).unwrap();
        assert_eq!(q.p10, vec![1.0, 1.0]);
        assert_eq!(q.p50, vec![2.0, 2.0]);
        assert_eq!(q.p90, vec![3.0, 3.0]);
        assert!(Quantiles::new(vec![1.0], vec![], vec![1.0]).unwrap_err().to_string().contains("differ in length"));
        assert!(Quantiles::point(vec![f64::NAN]).unwrap_err().to_string().contains("not finite"));
    }

    #[test]
    fn forecast_frames_have_the_one_schema() {
        let f = Forecast {
            key: SeriesKey::new("host/a", "cpu").unwrap(),
            model: "snaive-daily".into(),
            origin_ms: 900_000,
            step_ms: 900_000,
            q: Quantiles::point(vec![1.0, 2.0]).unwrap(),
        };
        let df = Forecast::to_frame([&f]).unwrap();
        assert_eq!(df.schema().as_ref(), &forecasts_schema());
        assert_eq!(df.height(), 2);
        let ts = df.column(TS).unwrap().datetime().unwrap().physical().clone();
        assert_eq!(ts.into_no_null_iter().collect::<Vec<_>>(), vec![900_000, 1_800_000]);
    }
}
