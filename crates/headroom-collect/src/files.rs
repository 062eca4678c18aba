//! Recorded files (CSV or Parquet) into the canonical samples frame.
//!
//! Two layouts, told apart by the header (or forced with [`FileOptions::layout`]):
//!
//! * **long** — columns `timestamp, entity, metric, value`, one sample per row;
//! * **wide** — a timestamp column plus one column per metric; the entity comes
//!   from [`FileOptions::entity`], a template where `{stem}` is the file name
//!   without its extension (default `{stem}`).
//!
//! Timestamps may be RFC 3339, `YYYY-MM-DD HH:MM:SS` (UTC), or epoch numbers
//! when [`FileOptions::time_unit`] names their unit; a bare number is never
//! guessed. A file without a timestamp column is read only when both
//! [`FileOptions::start_ms`] and [`FileOptions::step_ms`] place its rows on a
//! clock. Empty and `NaN` cells are kept as NaN, so validation drops and counts
//! them. Every other bad value is an error naming the file, row, column and value.

use std::fs::File;
use std::path::{Path, PathBuf};

use headroom_core::BoxFuture;
use headroom_core::frame::{ENTITY, METRIC, TIMESTAMP, VALUE};
use headroom_core::{SampleFrame, SeriesData, SeriesKey, TimeUnit, parse_timestamp};
use polars::prelude::{Column, DataType, ParquetReader, SerReader};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::source::Source;

/// How a file's rows map to samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// `timestamp, entity, metric, value` per row.
    Long,
    /// A timestamp column plus one column per metric.
    Wide,
}

impl std::str::FromStr for Layout {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "long" => Ok(Layout::Long),
            "wide" => Ok(Layout::Wide),
            other => Err(format!("layout must be 'long' or 'wide', not {other:?}")),
        }
    }
}

/// How to read recorded files.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileOptions {
    /// Force a layout instead of telling it from the columns.
    #[serde(default)]
    pub layout: Option<Layout>,
    /// Name of the timestamp column (default `timestamp`).
    #[serde(default)]
    pub timestamp_column: Option<String>,
    /// Unit of epoch-number timestamps; without it a numeric timestamp is an error.
    #[serde(default)]
    pub time_unit: Option<TimeUnit>,
    /// For files without a timestamp column: time of the first row (UTC ms).
    #[serde(default)]
    pub start_ms: Option<i64>,
    /// For files without a timestamp column: time between rows (ms).
    #[serde(default)]
    pub step_ms: Option<i64>,
    /// Wide files: the entity, a template in which `{stem}` is the file name
    /// without extension (default `{stem}`).
    #[serde(default)]
    pub entity: Option<String>,
    /// Wide files with exactly one value column: the metric name to give it
    /// (default: the column's name).
    #[serde(default)]
    pub metric: Option<String>,
}

impl FileOptions {
    fn timestamp_column(&self) -> &str {
        self.timestamp_column.as_deref().unwrap_or(TIMESTAMP)
    }

    /// Checks the options once, before any file is opened.
    pub fn validate(&self) -> Result<()> {
        match (self.start_ms, self.step_ms) {
            (Some(_), None) | (None, Some(_)) => {
                return Err(Error::Config("--start and --step go together: give both or neither".into()));
            }
            (_, Some(step)) if step <= 0 => {
                return Err(Error::Config(format!("--step must be positive, got {step} ms")));
            }
            _ => {}
        }
        if let Some(t) = &self.entity
            && t.replace("{stem}", "x").contains(['{', '}'])
        {
            return Err(Error::Config(format!("--entity {t:?}: the only placeholder is {{stem}}")));
        }
        Ok(())
    }
}

/// The supported file kinds, by extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Csv,
    Parquet,
}

fn kind_of(path: &Path) -> Option<Kind> {
    match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
        "csv" => Some(Kind::Csv),
        "parquet" | "pq" => Some(Kind::Parquet),
        _ => None,
    }
}

/// Expands directories into the CSV and Parquet files directly inside them
/// (sorted by name). Files named explicitly must be CSV or Parquet. Returns the
/// files and the paths skipped inside directories (not CSV/Parquet), so the
/// caller can say what it left out.
pub fn expand_paths(paths: &[PathBuf]) -> Result<(Vec<PathBuf>, Vec<PathBuf>)> {
    let mut files = Vec::new();
    let mut skipped = Vec::new();
    for path in paths {
        let meta = std::fs::metadata(path).map_err(Error::io(path))?;
        if meta.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(Error::io(path))?
                .map(|e| e.map(|e| e.path()).map_err(Error::io(path)))
                .collect::<Result<_>>()?;
            entries.sort();
            for p in entries {
                if p.is_file() && kind_of(&p).is_some() {
                    files.push(p);
                } else {
                    skipped.push(p);
                }
            }
        } else if kind_of(path).is_some() {
            files.push(path.clone());
        } else {
            return Err(Error::File {
                path: path.clone(),
                why: "not a .csv or .parquet file (the extension says which reader to use)".into(),
            });
        }
    }
    if files.is_empty() {
        return Err(Error::Config(format!("no .csv or .parquet files in {paths:?}")));
    }
    Ok((files, skipped))
}

/// Reads one file into the canonical frame.
pub fn read_file(path: &Path, opts: &FileOptions) -> Result<SampleFrame> {
    opts.validate()?;
    let kind =
        kind_of(path).ok_or_else(|| Error::File { path: path.into(), why: "not a .csv or .parquet file".into() })?;
    let file = File::open(path).map_err(Error::io(path))?;
    match kind {
        Kind::Csv => read_csv(path, file, opts),
        Kind::Parquet => read_parquet(path, file, opts),
    }
}

/// [`read_file`] on contents already in memory: `path` only names them (its
/// extension picks the reader, its stem is `{stem}`). For the fuzz targets.
#[doc(hidden)]
pub fn read_bytes(path: &Path, bytes: &[u8], opts: &FileOptions) -> Result<SampleFrame> {
    opts.validate()?;
    match kind_of(path) {
        Some(Kind::Csv) => read_csv(path, bytes, opts),
        Some(Kind::Parquet) => read_parquet(path, std::io::Cursor::new(bytes), opts),
        None => Err(Error::File { path: path.into(), why: "not a .csv or .parquet file".into() }),
    }
}

/// Reads many files (directories expanded) into one frame.
pub fn read_files(paths: &[PathBuf], opts: &FileOptions) -> Result<SampleFrame> {
    let (files, skipped) = expand_paths(paths)?;
    for p in &skipped {
        tracing::info!(path = %p.display(), "skipped: not a .csv or .parquet file");
    }
    let mut out = SampleFrame::empty();
    for f in &files {
        out.append(&read_file(f, opts)?)?;
    }
    Ok(out)
}

/// What each column of a file is for.
#[derive(Debug)]
enum Plan {
    Long { ts: Option<usize>, entity: usize, metric: usize, value: usize },
    Wide { ts: Option<usize>, entity: String, metrics: Vec<(usize, String)> },
}

fn plan(path: &Path, header: &[String], opts: &FileOptions) -> Result<Plan> {
    let find = |name: &str| header.iter().position(|h| h == name);
    let file_err = |why: String| Error::File { path: path.into(), why };
    let ts_name = opts.timestamp_column();
    let ts = find(ts_name);
    match (ts, opts.start_ms) {
        (None, None) => {
            return Err(file_err(format!(
                "no timestamp column {ts_name:?} (columns: {}); name it with --timestamp-column, \
                 or place rows on a clock with --start and --step",
                header.join(", ")
            )));
        }
        (Some(_), Some(_)) => {
            return Err(file_err(format!(
                "has a timestamp column {ts_name:?}; --start/--step are only for files without one"
            )));
        }
        _ => {}
    }
    let long_cols = [find(ENTITY), find(METRIC), find(VALUE)];
    let layout = opts.layout.unwrap_or(if long_cols.iter().all(Option::is_some) { Layout::Long } else { Layout::Wide });
    match layout {
        Layout::Long => {
            let [Some(entity), Some(metric), Some(value)] = long_cols else {
                return Err(file_err(format!(
                    "long layout needs columns entity, metric, value (columns: {})",
                    header.join(", ")
                )));
            };
            if let Some(extra) = header
                .iter()
                .enumerate()
                .find(|(i, _)| ![ts, Some(entity), Some(metric), Some(value)].contains(&Some(*i)))
            {
                return Err(file_err(format!(
                    "long layout: unexpected column {:?}; only {ts_name}, entity, metric, value are read",
                    extra.1
                )));
            }
            if opts.entity.is_some() || opts.metric.is_some() {
                return Err(file_err("--entity/--metric apply to wide files; this file names them per row".into()));
            }
            Ok(Plan::Long { ts, entity, metric, value })
        }
        Layout::Wide => {
            let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("file");
            let entity = opts.entity.as_deref().unwrap_or("{stem}").replace("{stem}", stem);
            let mut metrics: Vec<(usize, String)> =
                header.iter().enumerate().filter(|(i, _)| Some(*i) != ts).map(|(i, h)| (i, h.clone())).collect();
            if metrics.is_empty() {
                return Err(file_err("wide layout: no value columns besides the timestamp".into()));
            }
            if let Some(name) = &opts.metric {
                if metrics.len() != 1 {
                    return Err(file_err(format!(
                        "--metric renames the only value column, but there are {} ({})",
                        metrics.len(),
                        metrics.iter().map(|m| m.1.as_str()).collect::<Vec<_>>().join(", ")
                    )));
                }
                metrics[0].1 = name.clone();
            }
            for (_, m) in &metrics {
                SeriesKey::new(&entity, m).map_err(|e| file_err(e.to_string()))?;
            }
            Ok(Plan::Wide { ts, entity, metrics })
        }
    }
}

fn parse_value(path: &Path, row: usize, column: &str, cell: &str) -> Result<f64> {
    let s = cell.trim();
    if s.is_empty() {
        return Ok(f64::NAN);
    }
    s.parse::<f64>().map_err(|_| Error::Parse {
        path: path.into(),
        row,
        column: column.into(),
        value: cell.into(),
        why: "not a number".into(),
    })
}

fn parse_ts_cell(path: &Path, row: usize, column: &str, cell: &str, unit: Option<TimeUnit>) -> Result<i64> {
    parse_timestamp(cell, unit).map_err(|e| Error::Parse {
        path: path.into(),
        row,
        column: column.into(),
        value: cell.into(),
        why: e.to_string(),
    })
}

/// Collects rows into series, keeping first-appearance order.
#[derive(Default)]
struct Builder {
    series: Vec<SeriesData>,
    index: std::collections::HashMap<SeriesKey, usize>,
}

impl Builder {
    fn slot(&mut self, key: SeriesKey) -> &mut SeriesData {
        let i = *self.index.entry(key.clone()).or_insert_with(|| {
            self.series.push(SeriesData::new(key));
            self.series.len() - 1
        });
        &mut self.series[i]
    }

    fn finish(self) -> Result<SampleFrame> {
        Ok(SampleFrame::from_series(&self.series)?)
    }
}

fn read_csv(path: &Path, file: impl std::io::Read, opts: &FileOptions) -> Result<SampleFrame> {
    let mut reader = csv::ReaderBuilder::new().has_headers(true).flexible(false).from_reader(file);
    let csv_err = |e: csv::Error| {
        let row = e.position().map_or(0, |p| p.record() as usize);
        Error::File { path: path.into(), why: format!("row {row}: {e}") }
    };
    let header: Vec<String> = reader.headers().map_err(csv_err)?.iter().map(|h| h.trim().to_owned()).collect();
    let plan = plan(path, &header, opts)?;
    let ts_name = opts.timestamp_column().to_owned();
    let mut b = Builder::default();
    let mut record = csv::StringRecord::new();
    let mut row = 0usize;
    while reader.read_record(&mut record).map_err(csv_err)? {
        row += 1;
        let ts_of = |ts: Option<usize>| match ts {
            Some(c) => parse_ts_cell(path, row, &ts_name, &record[c], opts.time_unit),
            None => synthetic_ts(path, opts, row),
        };
        match &plan {
            Plan::Long { ts, entity, metric, value } => {
                let t = ts_of(*ts)?;
                let key = SeriesKey::new(record[*entity].trim(), record[*metric].trim()).map_err(|e| Error::Parse {
                    path: path.into(),
                    row,
                    column: format!("{ENTITY}/{METRIC}"),
                    value: format!("{}/{}", &record[*entity], &record[*metric]),
                    why: e.to_string(),
                })?;
                let v = parse_value(path, row, VALUE, &record[*value])?;
                b.slot(key).push(t, v);
            }
            Plan::Wide { ts, entity, metrics } => {
                let t = ts_of(*ts)?;
                for (c, m) in metrics {
                    let v = parse_value(path, row, &header[*c], &record[*c])?;
                    b.slot(SeriesKey { entity: entity.clone(), metric: m.clone() }).push(t, v);
                }
            }
        }
    }
    if row == 0 {
        return Err(Error::File { path: path.into(), why: "no data rows after the header".into() });
    }
    b.finish()
}

/// Row `row` (1-based) on the clock given by `--start`/`--step`; an error
/// once the clock runs past the dates headroom can represent (it used to
/// overflow).
fn synthetic_ts(path: &Path, opts: &FileOptions, row: usize) -> Result<i64> {
    let (start, step) = (opts.start_ms.unwrap_or(0), opts.step_ms.unwrap_or(0));
    i64::try_from(row - 1)
        .ok()
        .and_then(|r| r.checked_mul(step))
        .and_then(|offset| start.checked_add(offset))
        .filter(|&t| chrono::DateTime::<chrono::Utc>::from_timestamp_millis(t).is_some())
        .ok_or_else(|| Error::File {
            path: path.into(),
            why: format!(
                "row {row}: --start ({start} ms) + {} x --step ({step} ms) is out of the representable range of dates",
                row - 1
            ),
        })
}

fn read_parquet(path: &Path, file: impl polars::io::mmap::MmapBytesReader, opts: &FileOptions) -> Result<SampleFrame> {
    let df = ParquetReader::new(file).finish().map_err(|source| Error::Parquet { path: path.into(), source })?;
    // The canonical file (what the store and `--out` write) needs no conversion.
    if opts.layout != Some(Layout::Wide)
        && opts.timestamp_column.is_none()
        && let Ok(frame) = SampleFrame::new(df.clone())
    {
        return Ok(frame);
    }
    let header: Vec<String> = df.get_column_names().iter().map(|n| n.to_string()).collect();
    let plan = plan(path, &header, opts)?;
    let height = df.height();
    if height == 0 {
        return Err(Error::File { path: path.into(), why: "no rows".into() });
    }
    let col = |i: usize| &df.columns()[i];
    let ts = match &plan {
        Plan::Long { ts, .. } | Plan::Wide { ts, .. } => match ts {
            Some(c) => timestamps(path, col(*c), opts.time_unit)?,
            None => (1..=height).map(|r| synthetic_ts(path, opts, r)).collect::<Result<_>>()?,
        },
    };
    let mut b = Builder::default();
    match &plan {
        Plan::Long { entity, metric, value, .. } => {
            let e = strings(path, col(*entity))?;
            let m = strings(path, col(*metric))?;
            let v = floats(path, col(*value))?;
            for row in 0..height {
                let (Some(e), Some(m)) = (e[row], m[row]) else {
                    return Err(Error::Parse {
                        path: path.into(),
                        row: row + 1,
                        column: format!("{ENTITY}/{METRIC}"),
                        value: String::new(),
                        why: "entity and metric must not be null".into(),
                    });
                };
                let key = SeriesKey::new(e, m).map_err(|err| Error::Parse {
                    path: path.into(),
                    row: row + 1,
                    column: format!("{ENTITY}/{METRIC}"),
                    value: format!("{e}/{m}"),
                    why: err.to_string(),
                })?;
                b.slot(key).push(ts[row], v[row]);
            }
        }
        Plan::Wide { entity, metrics, .. } => {
            for (c, m) in metrics {
                let v = floats(path, col(*c))?;
                let s = b.slot(SeriesKey { entity: entity.clone(), metric: m.clone() });
                s.ts.extend_from_slice(&ts);
                s.values.extend_from_slice(&v);
            }
        }
    }
    b.finish()
}

/// A Parquet timestamp column as UTC epoch ms: Datetime of any unit (naive = UTC),
/// integers and floats only with an explicit unit, strings parsed row by row.
fn timestamps(path: &Path, col: &Column, unit: Option<TimeUnit>) -> Result<Vec<i64>> {
    let name = col.name().to_string();
    let null_at = |row: usize| Error::Parse {
        path: path.into(),
        row: row + 1,
        column: name.clone(),
        value: String::new(),
        why: "timestamp is null".into(),
    };
    let to_ms = |c: &Column, dtype: DataType| -> Result<Vec<i64>> {
        let c = c.cast(&dtype)?;
        let out: Vec<Option<i64>> = match dtype {
            DataType::Int64 => c.i64()?.iter().collect(),
            _ => c.f64()?.iter().map(|v| v.map(|v| (v * 1000.0).round() as i64)).collect(),
        };
        let unit = unit.unwrap_or(TimeUnit::Ms);
        out.into_iter()
            .enumerate()
            .map(|(r, v)| {
                let ms = v.ok_or_else(|| null_at(r))?;
                let value = match unit {
                    TimeUnit::Ms => ms.to_string(),
                    TimeUnit::S => (ms as f64 / 1000.0).to_string(),
                };
                headroom_core::time::check_epoch(ms, unit, &value).map_err(|e| Error::Parse {
                    path: path.into(),
                    row: r + 1,
                    column: name.clone(),
                    value,
                    why: e.to_string(),
                })
            })
            .collect()
    };
    match col.dtype() {
        DataType::Datetime(tu, _) => {
            let div = match tu {
                polars::prelude::TimeUnit::Milliseconds => 1,
                polars::prelude::TimeUnit::Microseconds => 1_000,
                polars::prelude::TimeUnit::Nanoseconds => 1_000_000,
            };
            let phys = col.datetime()?.physical().clone();
            phys.iter().enumerate().map(|(r, v)| v.map(|v| v.div_euclid(div)).ok_or_else(|| null_at(r))).collect()
        }
        DataType::String => {
            let s = col.str()?;
            s.iter()
                .enumerate()
                .map(|(r, v)| match v {
                    Some(v) => parse_ts_cell(path, r + 1, &name, v, unit),
                    None => Err(null_at(r)),
                })
                .collect()
        }
        dt if dt.is_integer() => match unit {
            Some(TimeUnit::Ms) => to_ms(col, DataType::Int64),
            Some(TimeUnit::S) => to_ms(col, DataType::Float64),
            None => Err(Error::File {
                path: path.into(),
                why: format!(
                    "timestamp column {name:?} holds integers ({dt}); say their unit with --time-unit s or --time-unit ms"
                ),
            }),
        },
        dt if dt.is_float() => match unit {
            Some(TimeUnit::S) => to_ms(col, DataType::Float64),
            _ => Err(Error::File {
                path: path.into(),
                why: format!(
                    "timestamp column {name:?} holds floats ({dt}); only --time-unit s reads fractional epochs"
                ),
            }),
        },
        dt => {
            Err(Error::File { path: path.into(), why: format!("timestamp column {name:?} has type {dt}, not a time") })
        }
    }
}

fn strings<'a>(path: &Path, col: &'a Column) -> Result<Vec<Option<&'a str>>> {
    match col.dtype() {
        DataType::String => Ok(col.str()?.iter().collect()),
        dt => {
            Err(Error::File { path: path.into(), why: format!("column {:?} has type {dt}, expected text", col.name()) })
        }
    }
}

fn floats(path: &Path, col: &Column) -> Result<Vec<f64>> {
    let dt = col.dtype();
    if !(dt.is_float() || dt.is_integer()) {
        return Err(Error::File {
            path: path.into(),
            why: format!("value column {:?} has type {dt}, expected numbers", col.name()),
        });
    }
    Ok(col.cast(&DataType::Float64)?.f64()?.iter().map(|v| v.unwrap_or(f64::NAN)).collect())
}

/// Writes a frame to a canonical long file: Parquet (`.parquet`) or CSV
/// (`.csv`, RFC 3339 timestamps), atomically (temporary file, then rename).
pub fn write_file(path: &Path, frame: &SampleFrame) -> Result<()> {
    let kind = kind_of(path).ok_or_else(|| Error::File {
        path: path.into(),
        why: "output must end in .parquet or .csv (the extension picks the format)".into(),
    })?;
    crate::store::write_atomically(path, |file| {
        match kind {
            Kind::Parquet => {
                let mut df = frame.frame().clone();
                polars::prelude::ParquetWriter::new(file)
                    .finish(&mut df)
                    .map_err(|source| Error::Parquet { path: path.into(), source })?;
            }
            Kind::Csv => {
                let mut w = csv::Writer::from_writer(file);
                let io = |e: csv::Error| Error::io(path)(std::io::Error::other(e));
                w.write_record([TIMESTAMP, ENTITY, METRIC, VALUE]).map_err(io)?;
                for s in frame.series()? {
                    for (&t, &v) in s.ts.iter().zip(&s.values) {
                        let value = if v.is_nan() { String::new() } else { v.to_string() };
                        w.write_record([headroom_core::format_ts(t).as_str(), &s.key.entity, &s.key.metric, &value])
                            .map_err(io)?;
                    }
                }
                w.flush().map_err(Error::io(path))?;
            }
        }
        Ok(())
    })
}

fn paths_for_error(paths: &[PathBuf]) -> PathBuf {
    paths.first().cloned().unwrap_or_default()
}

/// Recorded files as a [`Source`]: reads them all on a blocking thread.
#[derive(Debug, Clone)]
pub struct FilesSource {
    paths: Vec<PathBuf>,
    opts: FileOptions,
}

impl FilesSource {
    /// A source over `paths` (files or directories), options checked now.
    pub fn new(paths: Vec<PathBuf>, opts: FileOptions) -> Result<Self> {
        opts.validate()?;
        Ok(Self { paths, opts })
    }
}

impl Source for FilesSource {
    fn describe(&self) -> String {
        format!("files {:?}", self.paths)
    }

    fn collect<'a>(&'a self, cancel: &'a CancellationToken) -> BoxFuture<'a, Result<SampleFrame>> {
        let (paths, opts) = (self.paths.clone(), self.opts.clone());
        Box::pin(async move {
            let read = tokio::task::spawn_blocking(move || read_files(&paths, &opts));
            tokio::select! {
                r = read => r.map_err(|e| Error::io(paths_for_error(&self.paths))(std::io::Error::other(e)))?,
                () = cancel.cancelled() => Err(Error::Cancelled),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use polars::df;
    use polars::prelude::{DataFrame, Int64Chunked, IntoColumn, ParquetWriter};

    use super::*;

    const T0: i64 = 1_704_067_200_000; // 2024-01-01T00:00:00Z

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::File::create(&p).unwrap().write_all(text.as_bytes()).unwrap();
        p
    }

    fn read(name: &str, text: &str, opts: &FileOptions) -> Result<Vec<SeriesData>> {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), name, text);
        read_file(&p, opts).map(|f| f.series().unwrap())
    }

    fn err(name: &str, text: &str, opts: &FileOptions) -> String {
        read(name, text, opts).unwrap_err().to_string()
    }

    #[test]
    fn long_csv() {
        let s = read(
            "m.csv",
            "timestamp,entity,metric,value\n2024-01-01T00:00:00Z,host/a,cpu,1.5\n2024-01-01 00:05:00,host/a,cpu,2\n2024-01-01T00:00:00Z,host/b,memory,3e9\n",
            &FileOptions::default(),
        )
        .unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].key.to_string(), "host/a:cpu");
        assert_eq!(s[0].ts, vec![T0, T0 + 300_000]);
        assert_eq!(s[0].values, vec![1.5, 2.0]);
        assert_eq!(s[1].values, vec![3e9]);
    }

    #[test]
    fn wide_csv_takes_the_entity_from_the_file_stem_or_a_template() {
        let text = "timestamp,value\n2014-02-14 14:30:00,0.132\n2014-02-14 14:35:00,\n2014-02-14 14:40:00,NaN\n";
        let s = read("ec2_cpu.csv", text, &FileOptions::default()).unwrap();
        assert_eq!(s[0].key.to_string(), "ec2_cpu:value");
        assert_eq!(s[0].len(), 3);
        assert!(
            s[0].values[1].is_nan() && s[0].values[2].is_nan(),
            "empty and NaN cells are kept for validation to count"
        );
        let opts =
            FileOptions { entity: Some("nab/{stem}".into()), metric: Some("cpu_pct".into()), ..Default::default() };
        let s = read("ec2_cpu.csv", text, &opts).unwrap();
        assert_eq!(s[0].key.to_string(), "nab/ec2_cpu:cpu_pct");
    }

    #[test]
    fn wide_csv_with_several_metrics() {
        let s = read(
            "srv.csv",
            "timestamp,cpu,memory\n2024-01-01T00:00:00Z,1,2\n2024-01-01T00:05:00Z,3,4\n",
            &FileOptions::default(),
        )
        .unwrap();
        assert_eq!(s.iter().map(|s| s.key.to_string()).collect::<Vec<_>>(), vec!["srv:cpu", "srv:memory"]);
        assert_eq!(s[1].values, vec![2.0, 4.0]);
        let e = err(
            "srv.csv",
            "timestamp,cpu,memory\n2024-01-01T00:00:00Z,1,2\n",
            &FileOptions { metric: Some("x".into()), ..Default::default() },
        );
        assert!(e.contains("renames the only value column, but there are 2 (cpu, memory)"), "{e}");
    }

    #[test]
    fn files_without_timestamps_need_start_and_step() {
        let text = "avg_cpu,avg_mem\n0.44,0.33\n0.43,0.32\n0.42,0.31\n";
        let e = err("google.csv", text, &FileOptions::default());
        assert!(e.contains("google.csv: no timestamp column \"timestamp\" (columns: avg_cpu, avg_mem)"), "{e}");
        assert!(e.contains("--start and --step"), "{e}");
        let opts = FileOptions { start_ms: Some(T0), step_ms: Some(300_000), ..Default::default() };
        let s = read("google.csv", text, &opts).unwrap();
        assert_eq!(s[0].ts, vec![T0, T0 + 300_000, T0 + 600_000]);
        assert_eq!(s[1].values, vec![0.33, 0.32, 0.31]);
        let e = err("with_ts.csv", "timestamp,v\n2024-01-01T00:00:00Z,1\n", &opts);
        assert!(e.contains("--start/--step are only for files without one"), "{e}");
        let e = read_file(Path::new("x.csv"), &FileOptions { start_ms: Some(0), ..Default::default() })
            .unwrap_err()
            .to_string();
        assert!(e.contains("--start and --step go together"), "{e}");
    }

    #[test]
    fn a_clock_running_past_the_representable_dates_is_an_error() {
        // Found by fuzzing: start + (row - 1) * step overflowed i64.
        let opts = FileOptions { start_ms: Some(i64::MAX - 10), step_ms: Some(300_000), ..Default::default() };
        let e = err("google.csv", "avg_cpu\n0.44\n0.43\n", &opts);
        assert!(e.contains("google.csv: row 1: --start (9223372036854775797 ms)"), "{e}");
        assert!(e.contains("out of the representable range of dates"), "{e}");
        let opts = FileOptions { start_ms: Some(T0), step_ms: Some(i64::MAX / 2), ..Default::default() };
        let e = err("google.csv", "avg_cpu\n0.44\n0.43\n0.42\n", &opts);
        assert!(e.contains("row 2: --start (1704067200000 ms) + 1 x --step"), "{e}");
    }

    #[test]
    fn epoch_timestamps_need_an_explicit_unit() {
        let text = "timestamp,cpu\n1704067200,1\n1704067500,2\n";
        let e = err("h.csv", text, &FileOptions::default());
        assert!(e.contains("h.csv, row 1, column \"timestamp\""), "{e}");
        assert!(e.contains("--time-unit"), "{e}");
        let s = read("h.csv", text, &FileOptions { time_unit: Some(TimeUnit::S), ..Default::default() }).unwrap();
        assert_eq!(s[0].ts, vec![T0, T0 + 300_000]);
        let s = read(
            "h.csv",
            "timestamp,cpu\n1704067200000,1\n",
            &FileOptions { time_unit: Some(TimeUnit::Ms), ..Default::default() },
        )
        .unwrap();
        assert_eq!(s[0].ts, vec![T0]);
    }

    #[test]
    fn custom_timestamp_column() {
        let opts = FileOptions { timestamp_column: Some("time".into()), ..Default::default() };
        let s = read("h.csv", "time,cpu\n2024-01-01T00:00:00Z,1\n", &opts).unwrap();
        assert_eq!(s[0].key.metric, "cpu");
    }

    #[test]
    fn bad_values_name_file_row_column_and_value() {
        let e =
            err("m.csv", "timestamp,cpu\n2024-01-01T00:00:00Z,1\n2024-01-01T00:05:00Z,abc\n", &FileOptions::default());
        assert!(e.ends_with("m.csv, row 2, column \"cpu\": not a number (value \"abc\")"), "{e}");
        let e = err("m.csv", "timestamp,cpu\nyesterday,1\n", &FileOptions::default());
        assert!(e.contains("m.csv, row 1, column \"timestamp\""), "{e}");
        assert!(e.contains("\"yesterday\""), "{e}");
        let e = err("m.csv", "timestamp,entity,metric,value\n2024-01-01T00:00:00Z,,cpu,1\n", &FileOptions::default());
        assert!(e.contains("row 1") && e.contains("empty"), "{e}");
        let e = err("m.csv", "timestamp,cpu\n2024-01-01T00:00:00Z,1,7\n", &FileOptions::default());
        assert!(e.contains("m.csv: row 1") || e.contains("m.csv: row 2"), "ragged row: {e}");
        let e = err("m.csv", "timestamp,cpu\n", &FileOptions::default());
        assert!(e.contains("no data rows"), "{e}");
        let e = err(
            "m.csv",
            "timestamp,entity,metric,value,pod\n2024-01-01T00:00:00Z,a,cpu,1,x\n",
            &FileOptions::default(),
        );
        assert!(e.contains("unexpected column \"pod\""), "{e}");
    }

    #[test]
    fn forced_long_layout_needs_its_columns() {
        let opts = FileOptions { layout: Some(Layout::Long), ..Default::default() };
        let e = err("m.csv", "timestamp,cpu\n2024-01-01T00:00:00Z,1\n", &opts);
        assert!(e.contains("long layout needs columns entity, metric, value"), "{e}");
    }

    fn write_parquet(dir: &Path, name: &str, mut df: DataFrame) -> PathBuf {
        let p = dir.join(name);
        ParquetWriter::new(std::fs::File::create(&p).unwrap()).finish(&mut df).unwrap();
        p
    }

    #[test]
    fn parquet_long_and_wide() {
        let dir = tempfile::tempdir().unwrap();
        // Wide, with nanosecond naive datetimes (what pandas writes by default).
        let ts = Int64Chunked::from_vec("timestamp".into(), vec![T0 * 1_000_000, (T0 + 300_000) * 1_000_000])
            .into_datetime(polars::prelude::TimeUnit::Nanoseconds, None)
            .into_column();
        let df = DataFrame::new(2, vec![ts, Column::new("cpu".into(), [1i64, 2])]).unwrap();
        let p = write_parquet(dir.path(), "box.parquet", df);
        let s = read_file(&p, &FileOptions::default()).unwrap().series().unwrap();
        assert_eq!(s[0].key.to_string(), "box:cpu");
        assert_eq!(s[0].ts, vec![T0, T0 + 300_000]);
        assert_eq!(s[0].values, vec![1.0, 2.0]);

        // Long, with string timestamps and a null value.
        let df = df!(
            "timestamp" => ["2024-01-01T00:00:00Z", "2024-01-01 00:05:00"],
            "entity" => ["host/a", "host/a"],
            "metric" => ["cpu", "cpu"],
            "value" => [Some(1.0), None]
        )
        .unwrap();
        let p = write_parquet(dir.path(), "long.parquet", df);
        let s = read_file(&p, &FileOptions::default()).unwrap().series().unwrap();
        assert_eq!(s[0].ts, vec![T0, T0 + 300_000]);
        assert!(s[0].values[1].is_nan());

        // Integer epochs need a unit.
        let df = df!("timestamp" => [1_704_067_200i64], "cpu" => [1.0]).unwrap();
        let p = write_parquet(dir.path(), "epoch.parquet", df);
        let e = read_file(&p, &FileOptions::default()).unwrap_err().to_string();
        assert!(e.contains("epoch.parquet: timestamp column \"timestamp\" holds integers"), "{e}");
        let s = read_file(&p, &FileOptions { time_unit: Some(TimeUnit::S), ..Default::default() }).unwrap();
        assert_eq!(s.series().unwrap()[0].ts, vec![T0]);
        // Seconds read as milliseconds would be January 1970: refused, naming row, column and the unit.
        let e = read_file(&p, &FileOptions { time_unit: Some(TimeUnit::Ms), ..Default::default() })
            .unwrap_err()
            .to_string();
        assert!(e.contains("row 1") && e.contains("use --time-unit s"), "{e}");

        // Text in a value column.
        let df = df!("timestamp" => ["2024-01-01T00:00:00Z"], "cpu" => ["high"]).unwrap();
        let p = write_parquet(dir.path(), "text.parquet", df);
        let e = read_file(&p, &FileOptions::default()).unwrap_err().to_string();
        assert!(e.contains("value column \"cpu\" has type str"), "{e}");
    }

    #[test]
    fn written_files_read_back_identically() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = SeriesData::new(SeriesKey::new("host/a", "cpu").unwrap());
        a.push(T0, 0.1);
        a.push(T0 + 1, 1e-17);
        a.push(T0 + 300_000, f64::NAN);
        let frame = SampleFrame::from_series([&a]).unwrap();
        for name in ["out.csv", "out.parquet"] {
            let p = dir.path().join(name);
            write_file(&p, &frame).unwrap();
            let back = read_file(&p, &FileOptions::default()).unwrap().series().unwrap();
            assert_eq!(back[0].ts, a.ts, "{name}");
            assert_eq!(back[0].values[..2], a.values[..2], "{name}");
            assert!(back[0].values[2].is_nan(), "{name}");
        }
        let e = write_file(&dir.path().join("out.json"), &frame).unwrap_err().to_string();
        assert!(e.contains("must end in .parquet or .csv"), "{e}");
    }

    #[test]
    fn the_shipped_sample_reads_as_is() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/sample/metrics.parquet");
        let frame = read_file(&p, &FileOptions::default()).unwrap();
        assert_eq!(frame.len(), 1_950_120);
        assert_eq!(frame.series().unwrap().len(), 157);
    }

    #[test]
    fn directories_expand_to_their_csv_and_parquet_files() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "b.csv", "timestamp,v\n2024-01-01T00:00:00Z,1\n");
        write(dir.path(), "a.csv", "timestamp,v\n2024-01-01T00:00:00Z,2\n");
        write(dir.path(), "LICENSE.txt", "MIT");
        let (files, skipped) = expand_paths(&[dir.path().to_path_buf()]).unwrap();
        assert_eq!(
            files.iter().map(|p| p.file_name().unwrap().to_str().unwrap()).collect::<Vec<_>>(),
            ["a.csv", "b.csv"]
        );
        assert_eq!(skipped.len(), 1);
        let frame = read_files(&[dir.path().to_path_buf()], &FileOptions::default()).unwrap();
        let keys: Vec<String> = frame.series().unwrap().iter().map(|s| s.key.to_string()).collect();
        assert_eq!(keys, ["a:v", "b:v"]);
        let e = expand_paths(&[dir.path().join("LICENSE.txt")]).unwrap_err().to_string();
        assert!(e.contains("not a .csv or .parquet file"), "{e}");
        let e = expand_paths(&[dir.path().join("missing.csv")]).unwrap_err().to_string();
        assert!(e.contains("missing.csv") && e.contains("No such file"), "{e}");
    }
}
