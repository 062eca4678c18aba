//! Forecasts: five quantile paths over a horizon, and the one schema every
//! forecast file uses: `entity, metric, model, origin, ts, p10, p50, p90, p95, p99`.

#[cfg(feature = "frames")]
use polars::prelude::*;

use crate::error::{Error, Result};
#[cfg(feature = "frames")]
use crate::frame::{ENTITY, METRIC, timestamp_column};
use crate::series::SeriesKey;

/// The quantiles every forecast carries, in order: the interval (p10–p90),
/// the median, and the two risk tails (p95, p99) a policy target may act on.
pub const QUANTILES: [f64; 5] = [0.1, 0.5, 0.9, 0.95, 0.99];

/// How far a requested quantile level may be from one of [`QUANTILES`] and
/// still name it (a level read from TOML or YAML is a float).
pub const QUANTILE_TOLERANCE: f64 = 1e-6;

/// The position in [`QUANTILES`] of `level`, or `None` when forecasts do not
/// carry it. The one rule for naming a quantile: a config's `quantile` is
/// validated with it, and the policy's path and peak are chosen by it.
pub fn quantile_index(level: f64) -> Option<usize> {
    QUANTILES.iter().position(|q| (q - level).abs() < QUANTILE_TOLERANCE)
}

/// The levels of [`QUANTILES`] as an error message lists them: "0.1, 0.5,
/// 0.9, 0.95 and 0.99".
pub fn quantile_levels() -> String {
    let all = QUANTILES.map(|q| q.to_string());
    let (last, rest) = all.split_last().expect("QUANTILES is not empty");
    format!("{} and {last}", rest.join(", "))
}

/// The first bin of the highest value of `path`, and that value (`None` for
/// an empty path): the peak a policy reads over the horizon.
pub fn peak(path: &[f64]) -> Option<(usize, f64)> {
    path.iter().copied().enumerate().reduce(|best, b| if b.1 > best.1 { b } else { best })
}

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
/// Upper quantile, the one the policy acts on by default.
pub const P90: &str = "p90";
/// 95th percentile, a risk tail a policy target may act on.
pub const P95: &str = "p95";
/// 99th percentile, a risk tail a policy target may act on.
pub const P99: &str = "p99";
/// The quantile columns, in the order of [`QUANTILES`].
pub const QUANTILE_COLUMNS: [&str; QUANTILES.len()] = [P10, P50, P90, P95, P99];

/// The forecasts schema.
#[cfg(feature = "frames")]
pub fn forecasts_schema() -> Schema {
    Schema::from_iter(
        [
            Field::new(ENTITY.into(), DataType::String),
            Field::new(METRIC.into(), DataType::String),
            Field::new(MODEL.into(), DataType::String),
            Field::new(ORIGIN.into(), crate::frame::timestamp_dtype()),
            Field::new(TS.into(), crate::frame::timestamp_dtype()),
        ]
        .into_iter()
        .chain(QUANTILE_COLUMNS.map(|name| Field::new(name.into(), DataType::Float64))),
    )
}

/// Five quantile paths of equal length, monotone at every step
/// (`p10 ≤ p50 ≤ p90 ≤ p95 ≤ p99`): [`Quantiles::new`] sorts each step's
/// five values, so a model can never hand out a crossed interval or tail.
#[derive(Debug, Clone, PartialEq)]
pub struct Quantiles {
    /// 10th percentile per step.
    pub p10: Vec<f64>,
    /// Median per step.
    pub p50: Vec<f64>,
    /// 90th percentile per step.
    pub p90: Vec<f64>,
    /// 95th percentile per step.
    pub p95: Vec<f64>,
    /// 99th percentile per step.
    pub p99: Vec<f64>,
}

impl Quantiles {
    /// Checks lengths and finiteness, and sorts each step's five values.
    pub fn new(
        mut p10: Vec<f64>,
        mut p50: Vec<f64>,
        mut p90: Vec<f64>,
        mut p95: Vec<f64>,
        mut p99: Vec<f64>,
    ) -> Result<Self> {
        let n = p50.len();
        if [&p10, &p90, &p95, &p99].iter().any(|p| p.len() != n) {
            return Err(Error::Forecast(format!(
                "quantile paths differ in length: p10 {}, p50 {}, p90 {}, p95 {}, p99 {}",
                p10.len(),
                n,
                p90.len(),
                p95.len(),
                p99.len()
            )));
        }
        for i in 0..n {
            let mut q = [p10[i], p50[i], p90[i], p95[i], p99[i]];
            if let Some(bad) = q.iter().find(|v| !v.is_finite()) {
                return Err(Error::Forecast(format!("step {i}: quantile {bad} is not finite")));
            }
            q.sort_by(f64::total_cmp);
            [p10[i], p50[i], p90[i], p95[i], p99[i]] = q;
        }
        Ok(Self { p10, p50, p90, p95, p99 })
    }

    /// A point forecast with no spread (all five quantiles equal).
    pub fn point(p50: Vec<f64>) -> Result<Self> {
        Self::new(p50.clone(), p50.clone(), p50.clone(), p50.clone(), p50)
    }

    /// The first `bins` steps; an error when there are fewer.
    pub fn truncated(&self, bins: usize) -> Result<Self> {
        if bins > self.len() {
            return Err(Error::Forecast(format!("{bins} steps asked of a forecast of {}", self.len())));
        }
        let cut = |p: &[f64]| p[..bins].to_vec();
        Self::new(cut(&self.p10), cut(&self.p50), cut(&self.p90), cut(&self.p95), cut(&self.p99))
    }

    /// Every value passed through `f` (a monotone `f` keeps the order; any
    /// other is re-sorted per step by [`Quantiles::new`]).
    pub fn map(&self, f: impl Fn(f64) -> f64) -> Result<Self> {
        let m = |p: &[f64]| p.iter().map(|v| f(*v)).collect::<Vec<_>>();
        Self::new(m(&self.p10), m(&self.p50), m(&self.p90), m(&self.p95), m(&self.p99))
    }

    /// Rounds every value to the nearest value in `seen` (the lower one on a
    /// tie) if it lies within their range or less than half their smallest
    /// gap beyond it (as if the values seen were steps that go on); values
    /// farther out — a trend to a new level — are left alone, and so is
    /// everything when `seen` holds no finite value. A quantile of a series
    /// that moves in steps (a percentage recorded to 0.01, a count, a gauge
    /// parked at one level) is one of its values, so a model's continuous
    /// output beside them is rounding error — error that decides "peak above
    /// a threshold equal to the parked level". Rounding onto one sorted set
    /// is monotone, so `p10 ≤ p50 ≤ p90 ≤ p95 ≤ p99` still holds at every step.
    pub fn snap_to(&mut self, seen: &[f64]) {
        let mut support: Vec<f64> = seen.iter().copied().filter(|v| v.is_finite()).collect();
        support.sort_by(f64::total_cmp);
        support.dedup();
        let (Some(&lo), Some(&hi)) = (support.first(), support.last()) else { return };
        let reach = support.windows(2).map(|w| w[1] - w[0]).fold(f64::INFINITY, f64::min) / 2.0;
        let reach = if reach.is_finite() { reach } else { 0.0 };
        let snap = |v: &mut f64| {
            if *v <= lo - reach || *v >= hi + reach {
                return;
            }
            let i = support.partition_point(|s| s < v);
            *v = match (i.checked_sub(1).map(|j| support[j]), support.get(i).copied()) {
                (Some(below), Some(above)) => {
                    if *v - below <= above - *v {
                        below
                    } else {
                        above
                    }
                }
                (below, above) => below.or(above).expect("support is not empty"),
            };
        };
        let paths = [&mut self.p10, &mut self.p50, &mut self.p90, &mut self.p95, &mut self.p99];
        paths.into_iter().flat_map(|p| p.iter_mut()).for_each(snap);
    }

    /// Steps `range` of every path (e.g. `skip..len` drops the bins before a
    /// later time), or an error when the range is not inside the forecast.
    pub fn steps(&self, range: std::ops::Range<usize>) -> Result<Self> {
        if range.start > range.end || range.end > self.len() {
            return Err(Error::Forecast(format!("steps {range:?} asked of a forecast of {} steps", self.len())));
        }
        let [p10, p50, p90, p95, p99] = self.paths().map(|(_, p)| p[range.clone()].to_vec());
        Ok(Self { p10, p50, p90, p95, p99 })
    }

    /// The path of quantile `level` ([`quantile_index`] names it), or `None`
    /// when forecasts do not carry that level.
    pub fn path(&self, level: f64) -> Option<&[f64]> {
        quantile_index(level).map(|i| self.paths()[i].1)
    }

    /// Every path with its column name, in the order of [`QUANTILES`].
    pub fn paths(&self) -> [(&'static str, &[f64]); QUANTILES.len()] {
        let [c10, c50, c90, c95, c99] = QUANTILE_COLUMNS;
        [(c10, &self.p10), (c50, &self.p50), (c90, &self.p90), (c95, &self.p95), (c99, &self.p99)]
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
    #[cfg(feature = "frames")]
    pub fn to_frame<'a>(forecasts: impl IntoIterator<Item = &'a Forecast>) -> Result<DataFrame> {
        let forecasts: Vec<&Forecast> = forecasts.into_iter().collect();
        let n: usize = forecasts.iter().map(|f| f.q.len()).sum();
        let (mut entity, mut metric, mut model) = (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
        let (mut origin, mut ts) = (Vec::with_capacity(n), Vec::with_capacity(n));
        let mut paths: [Vec<f64>; QUANTILES.len()] = std::array::from_fn(|_| Vec::with_capacity(n));
        for f in &forecasts {
            let h = f.q.len();
            entity.extend(std::iter::repeat_n(f.key.entity.as_str(), h));
            metric.extend(std::iter::repeat_n(f.key.metric.as_str(), h));
            model.extend(std::iter::repeat_n(f.model.as_str(), h));
            origin.extend(std::iter::repeat_n(f.origin_ms, h));
            ts.extend((0..h).map(|i| f.ts(i)));
            for (column, (_, path)) in paths.iter_mut().zip(f.q.paths()) {
                column.extend_from_slice(path);
            }
        }
        let mut columns = vec![
            Column::new(ENTITY.into(), entity),
            Column::new(METRIC.into(), metric),
            Column::new(MODEL.into(), model),
            timestamp_column(ORIGIN, origin),
            timestamp_column(TS, ts),
        ];
        columns.extend(QUANTILE_COLUMNS.into_iter().zip(paths).map(|(name, values)| Column::new(name.into(), values)));
        Ok(DataFrame::new(n, columns)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_monotone_by_construction() {
        let q = Quantiles::new(vec![3.0, 1.0], vec![2.0, 2.0], vec![1.0, 3.0], vec![3.5, 5.0], vec![4.0, 4.0]).unwrap();
        assert_eq!(q.p10, vec![1.0, 1.0]);
        assert_eq!(q.p50, vec![2.0, 2.0]);
        assert_eq!(q.p90, vec![3.0, 3.0]);
        assert_eq!(q.p95, vec![3.5, 4.0], "a tail below p90 or above p99 is sorted into place too");
        assert_eq!(q.p99, vec![4.0, 5.0]);
        assert!(
            Quantiles::new(vec![1.0], vec![], vec![1.0], vec![1.0], vec![1.0])
                .unwrap_err()
                .to_string()
                .contains("differ in length")
        );
        let short_tail = Quantiles::new(vec![1.0], vec![1.0], vec![1.0], vec![1.0], vec![]).unwrap_err().to_string();
        assert!(short_tail.contains("differ in length") && short_tail.contains("p99 0"), "{short_tail}");
        assert!(Quantiles::new(vec![1.0], vec![1.0], vec![1.0], vec![f64::INFINITY], vec![1.0]).is_err());
        assert!(Quantiles::point(vec![f64::NAN]).unwrap_err().to_string().contains("not finite"));
    }

    #[test]
    fn every_level_names_its_path() {
        let q = Quantiles::new(vec![1.0], vec![2.0], vec![3.0], vec![4.0], vec![5.0]).unwrap();
        let levels =
            [(0.1, "p10", 1.0), (0.5, "p50", 2.0), (0.9, "p90", 3.0), (0.95, "p95", 4.0), (0.99 + 1e-9, "p99", 5.0)];
        for (level, name, value) in levels {
            assert_eq!(q.path(level), Some(&[value][..]), "{level}");
            assert_eq!(q.paths()[quantile_index(level).unwrap()].0, name);
        }
        assert_eq!(q.path(0.7), None);
        assert_eq!(quantile_levels(), "0.1, 0.5, 0.9, 0.95 and 0.99");
        assert_eq!(q.paths().map(|(name, _)| name), QUANTILE_COLUMNS);
    }

    #[test]
    fn snapping_rounds_to_the_nearest_seen_value_and_leaves_far_values_alone() {
        // A gauge parked at 0.5 with spikes to 0.75 and 0.875 (smallest gap 0.125):
        // a p90 of 0.516 is the park level, 0.45 and 0.9 are within 0.0625 of the ends.
        let seen = [0.5, 0.5, 0.75, 0.5, 0.875, f64::NAN, 0.5];
        let mut q = Quantiles::new(
            vec![0.25, 0.45, 0.5625, 0.625, 0.8],
            vec![0.5, 0.515625, 0.625, 0.625, 0.8125],
            vec![0.516, 0.74, 0.7, 0.95, 0.9],
            vec![0.6, 0.8, 0.7, 0.97, 0.95],
            vec![0.61, 0.9, 0.8, 1.2, 1.0],
        )
        .unwrap();
        q.snap_to(&seen);
        assert_eq!(q.p10, vec![0.25, 0.5, 0.5, 0.5, 0.75], "0.25 is far below every seen value: kept");
        assert_eq!(q.p50, vec![0.5, 0.5, 0.5, 0.5, 0.75], "0.625 is as far from 0.5 as from 0.75: the lower");
        assert_eq!(q.p90, vec![0.5, 0.75, 0.75, 0.95, 0.875], "0.95 is far above every seen value: kept");
        assert_eq!(q.p95, vec![0.5, 0.75, 0.75, 0.97, 0.95], "the tails are snapped like the others");
        assert_eq!(q.p99, vec![0.5, 0.875, 0.75, 1.2, 1.0]);
        for k in 0..q.len() {
            let step = q.paths().map(|(_, p)| p[k]);
            assert!(step.is_sorted(), "step {k} crossed: {step:?}");
        }
        let before = q.clone();
        q.snap_to(&[f64::NAN]);
        assert_eq!(q, before, "nothing seen, nothing moves");
    }

    #[test]
    #[cfg(feature = "frames")]
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
