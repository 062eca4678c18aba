//! The two frame schemas every crate exchanges, defined once here.
//!
//! * **Samples** — the canonical long frame, raw points as collected:
//!   `timestamp` (Datetime ms, UTC), `entity` (String), `metric` (String), `value` (Float64).
//! * **Resampled** — series on a [`Grid`]: the same four columns, where `value` is null
//!   for a bin left missing, plus `imputed` (Boolean) marking bins filled by interpolation.
//!
//! [`SampleFrame`] is a Polars `DataFrame` known to have the samples schema;
//! [`SeriesData`] and [`ResampledSeries`] are the per-series views the
//! numeric code works on.

#[cfg(feature = "frames")]
use std::collections::HashMap;

#[cfg(feature = "frames")]
use polars::prelude::*;

#[cfg(feature = "frames")]
use crate::error::{Error, Result};
use crate::grid::Grid;
use crate::repair::RepairReport;
use crate::series::SeriesKey;

/// Column: sample time, UTC, millisecond precision.
pub const TIMESTAMP: &str = "timestamp";
/// Column: entity name (see [`SeriesKey::entity`]).
pub const ENTITY: &str = "entity";
/// Column: metric name (see [`SeriesKey::metric`]).
pub const METRIC: &str = "metric";
/// Column: the measured value.
pub const VALUE: &str = "value";
/// Column (resampled frames only): whether the bin was filled by interpolation.
pub const IMPUTED: &str = "imputed";

/// The timestamp dtype of every frame: Datetime, milliseconds, UTC.
#[cfg(feature = "frames")]
pub fn timestamp_dtype() -> DataType {
    DataType::Datetime(polars::prelude::TimeUnit::Milliseconds, Some(TimeZone::UTC))
}

/// The canonical samples schema.
#[cfg(feature = "frames")]
pub fn samples_schema() -> Schema {
    Schema::from_iter([
        Field::new(TIMESTAMP.into(), timestamp_dtype()),
        Field::new(ENTITY.into(), DataType::String),
        Field::new(METRIC.into(), DataType::String),
        Field::new(VALUE.into(), DataType::Float64),
    ])
}

/// The resampled-frame schema: the samples schema plus `imputed`.
#[cfg(feature = "frames")]
pub fn resampled_schema() -> Schema {
    let mut schema = samples_schema();
    schema.insert(IMPUTED.into(), DataType::Boolean);
    schema
}

/// Checks that `df` has exactly the columns of `schema` with their dtypes, and
/// returns it with the columns in the schema's order.
#[cfg(feature = "frames")]
fn conform(df: DataFrame, schema: &Schema, frame: &'static str) -> Result<DataFrame> {
    let names: Vec<&str> = df.get_column_names().iter().map(|n| n.as_str()).collect();
    for name in &names {
        if !schema.contains(name) {
            return Err(Error::Schema { frame, why: format!("unexpected column {name:?} (columns: {names:?})") });
        }
    }
    for (name, dtype) in schema.iter() {
        let col = df.column(name).map_err(|_| Error::Schema {
            frame,
            why: format!("missing column {:?} (columns: {names:?})", name.as_str()),
        })?;
        if col.dtype() != dtype {
            return Err(Error::Schema {
                frame,
                why: format!("column {:?} is {}, expected {dtype}", name.as_str(), col.dtype()),
            });
        }
    }
    Ok(df.select(schema.iter_names().cloned())?)
}

/// A Datetime(ms, UTC) column from epoch milliseconds.
#[cfg(feature = "frames")]
pub fn timestamp_column(name: &str, ms: Vec<i64>) -> Column {
    Int64Chunked::from_vec(name.into(), ms)
        .into_datetime(polars::prelude::TimeUnit::Milliseconds, Some(TimeZone::UTC))
        .into_column()
}

/// A frame of `timestamp, entity, metric` plus the given value column(s), in
/// the order both schemas use.
#[cfg(feature = "frames")]
fn key_columns(
    ts: Vec<i64>,
    entity: &[&str],
    metric: &[&str],
    value: Column,
    extra: Option<Column>,
) -> Result<DataFrame> {
    let height = ts.len();
    let mut columns = vec![
        timestamp_column(TIMESTAMP, ts),
        Column::new(ENTITY.into(), entity),
        Column::new(METRIC.into(), metric),
        value,
    ];
    columns.extend(extra);
    Ok(DataFrame::new(height, columns)?)
}

/// Raw points of one series, in input order (not necessarily sorted).
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesData {
    /// Which series.
    pub key: SeriesKey,
    /// Sample times, UTC epoch ms.
    pub ts: Vec<i64>,
    /// Sample values; may hold NaN/Inf until validated.
    pub values: Vec<f64>,
}

impl SeriesData {
    /// An empty series for `key`.
    pub fn new(key: SeriesKey) -> Self {
        Self { key, ts: Vec::new(), values: Vec::new() }
    }

    /// A series from `(timestamp ms, value)` pairs, in the given order.
    pub fn from_points(key: SeriesKey, points: &[(i64, f64)]) -> Self {
        Self { key, ts: points.iter().map(|p| p.0).collect(), values: points.iter().map(|p| p.1).collect() }
    }

    /// Number of points.
    pub fn len(&self) -> usize {
        self.ts.len()
    }

    /// Whether there are no points.
    pub fn is_empty(&self) -> bool {
        self.ts.is_empty()
    }

    /// Appends one point.
    pub fn push(&mut self, ts: i64, value: f64) {
        self.ts.push(ts);
        self.values.push(value);
    }
}

/// A Polars frame with the canonical samples schema.
#[derive(Debug, Clone)]
#[cfg(feature = "frames")]
pub struct SampleFrame {
    df: DataFrame,
}

#[cfg(feature = "frames")]
impl Default for SampleFrame {
    fn default() -> Self {
        Self::empty()
    }
}

#[cfg(feature = "frames")]
impl SampleFrame {
    /// Checks `df` against the samples schema (names and dtypes; column order is fixed up).
    pub fn new(df: DataFrame) -> Result<Self> {
        Ok(Self { df: conform(df, &samples_schema(), "samples")? })
    }

    /// A frame with no rows.
    pub fn empty() -> Self {
        Self { df: DataFrame::empty_with_schema(&samples_schema()) }
    }

    /// Builds the frame from per-series points (rows in the given order).
    pub fn from_series<'a>(series: impl IntoIterator<Item = &'a SeriesData>) -> Result<Self> {
        let series: Vec<&SeriesData> = series.into_iter().collect();
        let n: usize = series.iter().map(|s| s.len()).sum();
        let mut ts = Vec::with_capacity(n);
        let mut values = Vec::with_capacity(n);
        let mut entity = Vec::with_capacity(n);
        let mut metric = Vec::with_capacity(n);
        for s in &series {
            ts.extend_from_slice(&s.ts);
            values.extend_from_slice(&s.values);
            entity.extend(std::iter::repeat_n(s.key.entity.as_str(), s.len()));
            metric.extend(std::iter::repeat_n(s.key.metric.as_str(), s.len()));
        }
        let df = key_columns(ts, &entity, &metric, Column::new(VALUE.into(), values), None)?;
        Ok(Self { df })
    }

    /// Splits the frame into series, in order of first appearance; points keep
    /// their row order. A null value becomes NaN (and is dropped, counted, by
    /// validation); a null timestamp, entity or metric is an error naming the row.
    pub fn series(&self) -> Result<Vec<SeriesData>> {
        let ts = self.df.column(TIMESTAMP)?.datetime()?.physical().clone();
        let entity = self.df.column(ENTITY)?.str()?.clone();
        let metric = self.df.column(METRIC)?.str()?.clone();
        let value = self.df.column(VALUE)?.f64()?.clone();
        let null_at = |row: usize, column: &str| Error::Schema {
            frame: "samples",
            why: format!("row {row}: column {column:?} is null"),
        };

        let mut out: Vec<SeriesData> = Vec::new();
        let mut index: HashMap<(String, String), usize> = HashMap::new();
        let mut last: Option<(&str, &str, usize)> = None;
        for (row, (((t, e), m), v)) in ts.iter().zip(entity.iter()).zip(metric.iter()).zip(value.iter()).enumerate() {
            let t = t.ok_or_else(|| null_at(row, TIMESTAMP))?;
            let e = e.ok_or_else(|| null_at(row, ENTITY))?;
            let m = m.ok_or_else(|| null_at(row, METRIC))?;
            let slot = match last {
                Some((le, lm, i)) if le == e && lm == m => i,
                _ => {
                    let i = match index.get(&(e.to_owned(), m.to_owned())) {
                        Some(&i) => i,
                        None => {
                            let key = SeriesKey::new(e, m)
                                .map_err(|err| Error::Schema { frame: "samples", why: format!("row {row}: {err}") })?;
                            index.insert((e.to_owned(), m.to_owned()), out.len());
                            out.push(SeriesData::new(key));
                            out.len() - 1
                        }
                    };
                    last = Some((e, m, i));
                    i
                }
            };
            out[slot].push(t, v.unwrap_or(f64::NAN));
        }
        Ok(out)
    }

    /// Appends the rows of `other`.
    pub fn append(&mut self, other: &SampleFrame) -> Result<()> {
        self.df.vstack_mut(&other.df)?;
        Ok(())
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.df.height()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.df.height() == 0
    }

    /// The underlying Polars frame.
    pub fn frame(&self) -> &DataFrame {
        &self.df
    }

    /// The underlying Polars frame, by value.
    pub fn into_frame(self) -> DataFrame {
        self.df
    }
}

/// One series on a grid, with what was done to put it there.
#[derive(Debug, Clone, PartialEq)]
pub struct ResampledSeries {
    /// Which series.
    pub key: SeriesKey,
    /// The grid; `values[i]` is the bin starting at `grid.ts(i)`.
    pub grid: Grid,
    /// One value per bin. NaN means missing: never a measured value, since
    /// non-finite input is dropped before resampling.
    pub values: Vec<f64>,
    /// Whether each bin was filled by interpolation.
    pub imputed: Vec<bool>,
    /// Every repair made, and every gap.
    pub report: RepairReport,
}

#[cfg(feature = "frames")]
impl ResampledSeries {
    /// The resampled frame (see the module docs) holding every given series.
    pub fn to_frame<'a>(series: impl IntoIterator<Item = &'a ResampledSeries>) -> Result<DataFrame> {
        let series: Vec<&ResampledSeries> = series.into_iter().collect();
        let n: usize = series.iter().map(|s| s.values.len()).sum();
        let mut ts = Vec::with_capacity(n);
        let mut entity = Vec::with_capacity(n);
        let mut metric = Vec::with_capacity(n);
        let mut values: Vec<Option<f64>> = Vec::with_capacity(n);
        let mut imputed = Vec::with_capacity(n);
        for s in &series {
            ts.extend(s.grid.timestamps());
            entity.extend(std::iter::repeat_n(s.key.entity.as_str(), s.values.len()));
            metric.extend(std::iter::repeat_n(s.key.metric.as_str(), s.values.len()));
            values.extend(s.values.iter().map(|v| (!v.is_nan()).then_some(*v)));
            imputed.extend_from_slice(&s.imputed);
        }
        let imputed = Column::new(IMPUTED.into(), imputed);
        let df = key_columns(ts, &entity, &metric, Column::new(VALUE.into(), values), Some(imputed))?;
        conform(df, &resampled_schema(), "resampled")
    }
}

#[cfg(all(test, feature = "frames"))]
mod tests {
    use super::*;

    fn series(entity: &str, metric: &str, points: &[(i64, f64)]) -> SeriesData {
        SeriesData::from_points(SeriesKey::new(entity, metric).unwrap(), points)
    }

    #[test]
    fn samples_round_trip_through_the_frame() {
        let a = series("host/a", "cpu", &[(0, 1.0), (300_000, 2.0)]);
        let b = series("host/b", "memory", &[(0, 5e9)]);
        let frame = SampleFrame::from_series([&a, &b]).unwrap();
        assert_eq!(frame.len(), 3);
        assert_eq!(frame.frame().schema().as_ref(), &samples_schema());
        assert_eq!(frame.series().unwrap(), vec![a, b]);
    }

    #[test]
    fn interleaved_rows_are_grouped_in_first_appearance_order() {
        let a = series("host/a", "cpu", &[(0, 1.0)]);
        let b = series("host/b", "cpu", &[(0, 2.0)]);
        let a2 = series("host/a", "cpu", &[(300_000, 3.0)]);
        let frame = SampleFrame::from_series([&a, &b, &a2]).unwrap();
        let got = frame.series().unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].ts, vec![0, 300_000]);
        assert_eq!(got[0].values, vec![1.0, 3.0]);
        assert_eq!(got[1].key.entity, "host/b");
    }

    #[test]
    fn foreign_frames_are_checked() {
        let df = df!("timestamp" => [1i64], "entity" => ["a"], "metric" => ["cpu"], "value" => [1.0]).unwrap();
        let err = SampleFrame::new(df).unwrap_err().to_string();
        assert!(err.contains("\"timestamp\" is i64"), "{err}");
        let df = df!("entity" => ["a"], "metric" => ["cpu"], "value" => [1.0]).unwrap();
        let err = SampleFrame::new(df).unwrap_err().to_string();
        assert!(err.contains("missing column \"timestamp\""), "{err}");
        let frame = SampleFrame::from_series([&series("a", "cpu", &[(0, 1.0)])]).unwrap();
        let mut df = frame.into_frame();
        df.with_column(Column::new("extra".into(), [1i32])).unwrap();
        let err = SampleFrame::new(df).unwrap_err().to_string();
        assert!(err.contains("unexpected column \"extra\""), "{err}");
    }

    #[test]
    fn resampled_frame_marks_missing_and_imputed_bins() {
        let s = ResampledSeries {
            key: SeriesKey::new("host/a", "cpu").unwrap(),
            grid: Grid::new(300_000, 0, 900_000).unwrap(),
            values: vec![1.0, 1.5, f64::NAN],
            imputed: vec![false, true, false],
            report: RepairReport::default(),
        };
        let df = ResampledSeries::to_frame([&s]).unwrap();
        assert_eq!(df.schema().as_ref(), &resampled_schema());
        assert_eq!(df.column(VALUE).unwrap().null_count(), 1);
        assert_eq!(df.column(IMPUTED).unwrap().bool().unwrap().sum(), Some(1));
    }
}
