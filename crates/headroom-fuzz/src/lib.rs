//! The bodies of headroom's fuzz targets, one `pub fn <target>(data: &[u8])`
//! per parser that reads untrusted input.
//!
//! Each function feeds `data` to a parser and must never panic, hang or make
//! a huge allocation, whatever the bytes: a bad input must come back as an
//! `Err`. Where a parser promises more (a duration read back from its own
//! formatting, a valid config having no problems), the function asserts it.
//!
//! The same functions run in two places:
//!
//! * `fuzz/fuzz_targets/<target>.rs` (cargo-fuzz, nightly), one line each;
//! * `tests/corpora.rs` (stable), which replays every file of
//!   `fuzz/corpus/<target>/` and `fuzz/artifacts/<target>/`, so a crash once
//!   found stays fixed.
//!
//! See `scripts/fuzz.sh` for running them.

use std::path::Path;

use headroom_collect::files::{FileOptions, Layout, read_bytes};
use headroom_core::{SeriesKey, TimeUnit, format_duration, format_ts, parse_duration, parse_timestamp};
use headroom_lstm::{Expectation, ModelCard};
use headroom_remediate::Config;
use headroom_remediate::audit::{Record, parse_log, replay};
use polars::prelude::{Column, DataFrame, DataType, Int64Chunked, IntoColumn, NamedFrom, ParquetWriter, TimeZone};

/// A fuzz target: its name and the function fed each input.
pub type Target = (&'static str, fn(&[u8]));

/// Every target, by name: what `scripts/fuzz.sh` runs and the corpus test replays.
pub const TARGETS: [Target; 7] = [
    ("files", files),
    ("time", time),
    ("limits", limits),
    ("config", config),
    ("audit", audit),
    ("card", card),
    ("prometheus", prometheus),
];

/// The recorded-file reader (`headroom collect files`, `inspect`, `train`):
/// CSV and Parquet, long and wide layouts, every [`FileOptions`].
///
/// Layout of `data`: two option bytes, then (if bit 7 of the first is set)
/// 16 bytes of `--start`/`--step` (two little-endian `i64`), then the file.
///
/// * byte 0: bits 0–1 the layout (1 long, 2 wide, else told from the header);
///   bits 2–3 the epoch unit (1 `s`, 2 `ms`, else none); bit 4 an entity
///   template; bit 5 a metric name; bit 6 the timestamp column `time`;
/// * byte 1: bits 0–1 the format: 2 a Parquet file built from the CSV text
///   with typed columns (bits 2–4 pick the timestamp column's type), 3 the
///   bytes read as a Parquet file as they are, else CSV.
pub fn files(data: &[u8]) {
    let [o, f, rest @ ..] = data else { return };
    let (o, f) = (*o, *f);
    let mut opts = FileOptions {
        layout: match o & 3 {
            1 => Some(Layout::Long),
            2 => Some(Layout::Wide),
            _ => None,
        },
        time_unit: match (o >> 2) & 3 {
            1 => Some(TimeUnit::S),
            2 => Some(TimeUnit::Ms),
            _ => None,
        },
        entity: (o & 0x10 != 0).then(|| "fuzz/{stem}".to_owned()),
        metric: (o & 0x20 != 0).then(|| "m".to_owned()),
        timestamp_column: (o & 0x40 != 0).then(|| "time".to_owned()),
        ..FileOptions::default()
    };
    let mut body = rest;
    if o & 0x80 != 0 {
        let Some((clock, file)) = rest.split_first_chunk::<16>() else { return };
        let (start, step) = clock.split_at(8);
        opts.start_ms = Some(i64::from_le_bytes(start.try_into().expect("8 bytes")));
        opts.step_ms = Some(i64::from_le_bytes(step.try_into().expect("8 bytes")));
        body = file;
    }
    let read = |name: &str, bytes: &[u8]| {
        if let Ok(frame) = read_bytes(Path::new(name), bytes, &opts) {
            // What every caller does next with a frame that was read.
            if let Ok(series) = frame.series() {
                for s in &series {
                    assert_eq!(s.ts.len(), s.values.len(), "{}: one value per timestamp", s.key);
                }
            }
        }
    };
    match f & 3 {
        2 => {
            if let Some(parquet) =
                parquet_from_csv(body, opts.timestamp_column.as_deref().unwrap_or("timestamp"), f >> 2)
            {
                read("box.parquet", &parquet);
            }
        }
        3 => read("box.parquet", body),
        _ => read("box.csv", body),
    }
}

/// A Parquet file holding the CSV text's table with typed columns: the
/// timestamp column as `ts_type` picks (0 text, 1 Int64, 2 Float64, 3–5
/// Datetime ms/µs/ns naive, 6 Datetime ms UTC, 7 Boolean), every other
/// column Float64 if all its cells are numbers (empty = null), else text.
/// `None` if the text is not a table polars can hold.
fn parquet_from_csv(text: &[u8], ts_name: &str, ts_type: u8) -> Option<Vec<u8>> {
    let mut reader = csv::ReaderBuilder::new().has_headers(true).flexible(true).from_reader(text);
    let header: Vec<String> = reader.headers().ok()?.iter().map(|h| h.trim().to_owned()).collect();
    let rows: Vec<csv::StringRecord> = reader.records().collect::<Result<_, _>>().ok()?;
    fn cell(r: &csv::StringRecord, i: usize) -> Option<&str> {
        r.get(i).map(str::trim).filter(|c| !c.is_empty())
    }
    let mut columns = Vec::with_capacity(header.len());
    for (i, name) in header.iter().enumerate() {
        let cells: Vec<Option<&str>> = rows.iter().map(|r| cell(r, i)).collect();
        let ints = || cells.iter().map(|c| c.and_then(|c| c.parse::<i64>().ok())).collect::<Vec<_>>();
        let floats = || cells.iter().map(|c| c.and_then(|c| c.parse::<f64>().ok())).collect::<Vec<_>>();
        let datetime = |unit, tz| Int64Chunked::new(name.as_str().into(), ints()).into_datetime(unit, tz).into_column();
        use polars::prelude::TimeUnit as Tu;
        let column = if name == ts_name {
            match ts_type & 7 {
                1 => Column::new(name.as_str().into(), ints()),
                2 => Column::new(name.as_str().into(), floats()),
                3 => datetime(Tu::Milliseconds, None),
                4 => datetime(Tu::Microseconds, None),
                5 => datetime(Tu::Nanoseconds, None),
                6 => datetime(Tu::Milliseconds, Some(TimeZone::UTC)),
                7 => {
                    Column::new(name.as_str().into(), cells.iter().map(|c| c.map(|c| c == "true")).collect::<Vec<_>>())
                }
                _ => Column::new(name.as_str().into(), cells),
            }
        } else if cells.iter().flatten().all(|c| c.parse::<f64>().is_ok()) {
            Column::new(name.as_str().into(), floats())
        } else {
            Column::new(name.as_str().into(), cells)
        };
        columns.push(column);
    }
    let mut df = DataFrame::new(rows.len(), columns).ok()?;
    debug_assert!(df.columns().iter().all(|c| c.dtype() != &DataType::Null || rows.is_empty()));
    let mut out = Vec::new();
    ParquetWriter::new(&mut out).finish(&mut df).ok()?;
    Some(out)
}

/// Timestamps and durations as users write them: [`parse_timestamp`] with no
/// epoch unit, `s` and `ms`; [`parse_duration`]; and the round trips
/// `parse_timestamp(format_ts(t)) == t` and
/// `parse_duration(format_duration(x)) == x`, the latter for the text's
/// duration and for `x` = the first 8 bytes as a little-endian `i64`.
pub fn time(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    for unit in [None, Some(TimeUnit::S), Some(TimeUnit::Ms)] {
        if let Ok(ms) = parse_timestamp(&text, unit) {
            let back = parse_timestamp(&format_ts(ms), None);
            assert_eq!(back.ok(), Some(ms), "{text:?} ({unit:?}) read as {ms} ms, written as {}", format_ts(ms));
        }
    }
    if let Ok(d) = parse_duration(&text) {
        assert!(d.as_millis() > 0, "{text:?}: zero is refused");
        // Every caller turns a duration into i64 milliseconds.
        let ms = i64::try_from(d.as_millis());
        assert!(ms.is_ok(), "{text:?} read as {} ms, more than an i64 holds", d.as_millis());
        duration_round_trip(ms.unwrap_or_default());
    }
    if let Some(bytes) = data.first_chunk::<8>() {
        duration_round_trip(i64::from_le_bytes(*bytes));
    }
}

/// A year of milliseconds: every positive duration up to it must read back.
const YEAR_MS: i64 = 365 * 86_400_000;

/// `format_duration(ms)` reads back as `ms`; zero and negative spans are
/// refused, and so may be very long ones (parse_duration has an upper bound).
fn duration_round_trip(ms: i64) {
    let text = format_duration(ms);
    match parse_duration(&text) {
        Ok(d) => assert_eq!(i64::try_from(d.as_millis()).ok(), Some(ms), "{ms} ms written as {text:?}"),
        Err(e) => assert!(ms <= 0 || ms > YEAR_MS, "{ms} ms written as {text:?} does not read back: {e}"),
    }
}

/// The limits file (`--limits`): `entity,metric,threshold[,capacity,replicas]`.
pub fn limits(data: &[u8]) {
    if let Ok(limits) = headroom_collect::limits::parse_limits(Path::new("limits.csv"), data) {
        for (key, limit) in limits.iter() {
            assert!(limit.threshold.is_finite() && limit.threshold > 0.0, "{key}: threshold {}", limit.threshold);
            assert!(SeriesKey::new(&key.entity, &key.metric).is_ok(), "{key}: a key the reader itself would refuse");
        }
    }
}

/// `headroom.toml`: [`Config::parse`] (TOML, types, then every problem), and
/// on a valid config the lookups the policy makes.
pub fn config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let Ok(cfg) = Config::parse(&text, Path::new("headroom.toml")) else { return };
    assert!(cfg.problems().is_empty(), "a config that parsed has no problems");
    for t in &cfg.targets {
        assert!(cfg.target(&t.name).is_some());
        let _ = (t.ladder(), t.start_limit(), t.scalable());
    }
}

/// The audit log: [`parse_log`], [`replay`], then every query of the ledger
/// for every id and target read, and each record written back as a line.
pub fn audit(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (records, _skipped) = parse_log(&text, "audit.jsonl");
    let ledger = replay(&records);
    let _ = ledger.history();
    for d in ledger.pending() {
        assert!(!ledger.is_done(&d.id), "{}: pending and done at once", d.id);
        assert!(ledger.pending_intent(&d.id).is_some(), "{}: pending without a pending intent", d.id);
    }
    for r in &records {
        let id = r.id();
        let _ = (ledger.is_done(id), ledger.outcome(id), ledger.attempts(id), ledger.past_action(id));
        if let Record::Intent { decision, .. } = r {
            let _ = ledger.history_for(&decision.target);
        }
        if let Ok(line) = r.to_line() {
            assert!(Record::from_line(line.trim_end_matches('\n')).is_ok(), "a written line reads back: {line}");
        }
    }
}

/// The model card (`card.json`): [`ModelCard::parse`] against the reference
/// expectation and against one that accepts any feature set.
pub fn card(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let path = Path::new("card.json");
    let reference = Expectation::reference();
    let _ = ModelCard::parse(&text, path, &reference);
    let any = Expectation { feature_set: None, ..reference };
    if let Ok(card) = ModelCard::parse(&text, path, &any) {
        assert!(card.config.validate().is_ok(), "a card that parsed has a valid config");
    }
}

/// A Prometheus `query_range` answer body.
pub fn prometheus(data: &[u8]) {
    let _ = headroom_collect::prometheus::parse_answer_for_fuzzing(data);
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_704_067_200_000; // 2024-01-01T00:00:00Z

    #[test]
    fn files_reads_each_format() {
        // CSV, wide, inferred layout.
        files(b"\x00\x00timestamp,cpu\n2024-01-01T00:00:00Z,1\n");
        // Parquet built from CSV text, epoch-seconds timestamps.
        files(b"\x04\x06timestamp,cpu\n1704067200,1\n");
        // Start/step clock.
        let mut d = vec![0x80, 0];
        d.extend_from_slice(&T0.to_le_bytes());
        d.extend_from_slice(&300_000i64.to_le_bytes());
        d.extend_from_slice(b"cpu\n1\n2\n");
        files(&d);
    }

    #[test]
    fn every_target_takes_empty_and_garbage_input() {
        for (name, target) in TARGETS {
            for input in [&b""[..], b"\x00", b"\xff\xff\xff", b"{}", b"[[", b"a,b\n1,2\n"] {
                target(input);
                let _ = name;
            }
        }
    }
}
