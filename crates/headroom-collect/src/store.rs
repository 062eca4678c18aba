//! The embedded store: raw samples as Parquet files under a data directory.
//!
//! Layout: one file per series, `DIR/<entity>/<metric>.parquet`, where each
//! `/`-separated part of the entity is a directory and every name is
//! percent-encoded down to `[A-Za-z0-9_.-]` (a leading `.` is encoded too, so
//! `..` can never climb out and temporary files — which start with `.` — are
//! never mistaken for data). Each file has the canonical samples schema, sorted
//! by time, so `pandas.read_parquet(DIR)` or `polars.read_parquet(DIR + "/**/*.parquet")`
//! reads the whole store.
//!
//! **Invariant:** a series file is replaced atomically (written to a temporary
//! file in the same directory, synced, then renamed over the old one): a reader
//! sees the old or the new file, never a torn one. **Invariant:** writing is
//! idempotent: for every timestamp present in the incoming points, the stored
//! points at that timestamp are replaced by the incoming ones. One writer per
//! store at a time.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use headroom_core::{SampleFrame, SeriesData, SeriesKey};
use polars::prelude::{ParquetReader, ParquetWriter, SerReader};

use crate::error::{Error, Result};

const EXT: &str = "parquet";

/// Which samples to read back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    /// Only these series (all when `None`).
    pub series: Option<Vec<SeriesKey>>,
    /// Only points at or after this time (UTC ms).
    pub start_ms: Option<i64>,
    /// Only points before this time (UTC ms, exclusive).
    pub end_ms: Option<i64>,
}

/// What a write did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteSummary {
    /// Series files written.
    pub series: usize,
    /// Points received.
    pub points_in: usize,
    /// Stored points replaced by incoming points at the same timestamp.
    pub points_replaced: usize,
}

/// A directory of per-series Parquet files.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// Opens (creating if needed) the store at `dir`.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(Error::io(&dir))?;
        Ok(Self { dir })
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file holding `key`.
    pub fn path_of(&self, key: &SeriesKey) -> PathBuf {
        let mut p = self.dir.clone();
        for part in key.entity.split('/') {
            p.push(encode(part));
        }
        p.push(format!("{}.{EXT}", encode(&key.metric)));
        p
    }

    /// Merges the frame's points into the store, one atomic file replacement per series.
    pub fn write(&self, frame: &SampleFrame) -> Result<WriteSummary> {
        let mut summary = WriteSummary::default();
        for incoming in frame.series()? {
            summary.points_in += incoming.len();
            let path = self.path_of(&incoming.key);
            let merged = match self.read_series_file(&path)? {
                Some(stored) => {
                    let (merged, replaced) = merge(stored, incoming);
                    summary.points_replaced += replaced;
                    merged
                }
                None => sorted(incoming),
            };
            write_series(&path, &merged)?;
            summary.series += 1;
        }
        Ok(summary)
    }

    /// Every series in the store, from the file layout.
    pub fn list(&self) -> Result<Vec<SeriesKey>> {
        let mut keys = Vec::new();
        self.walk(&self.dir, &mut Vec::new(), &mut keys)?;
        keys.sort();
        Ok(keys)
    }

    fn walk(&self, dir: &Path, parts: &mut Vec<String>, keys: &mut Vec<SeriesKey>) -> Result<()> {
        for entry in std::fs::read_dir(dir).map_err(Error::io(dir))? {
            let entry = entry.map_err(Error::io(dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let path = entry.path();
            if path.is_dir() {
                parts.push(decode(&name).ok_or_else(|| foreign(&path))?);
                self.walk(&path, parts, keys)?;
                parts.pop();
            } else if let Some(metric) = name.strip_suffix(&format!(".{EXT}")) {
                if parts.is_empty() {
                    return Err(foreign(&path));
                }
                let metric = decode(metric).ok_or_else(|| foreign(&path))?;
                keys.push(SeriesKey::new(parts.join("/"), metric)?);
            } else {
                return Err(foreign(&path));
            }
        }
        Ok(())
    }

    /// Reads the samples selected by `query`, series in key order, points in time order.
    pub fn read(&self, query: &Query) -> Result<SampleFrame> {
        let keys = match &query.series {
            Some(keys) => keys.clone(),
            None => self.list()?,
        };
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            let Some(mut s) = self.read_series_file(&self.path_of(&key))? else {
                continue;
            };
            if query.start_ms.is_some() || query.end_ms.is_some() {
                let (lo, hi) = (query.start_ms.unwrap_or(i64::MIN), query.end_ms.unwrap_or(i64::MAX));
                let a = s.ts.partition_point(|&t| t < lo);
                let b = s.ts.partition_point(|&t| t < hi);
                s.ts = s.ts[a..b].to_vec();
                s.values = s.values[a..b].to_vec();
            }
            if !s.is_empty() {
                out.push(s);
            }
        }
        Ok(SampleFrame::from_series(&out)?)
    }

    fn read_series_file(&self, path: &Path) -> Result<Option<SeriesData>> {
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(path)(e)),
        };
        let df = ParquetReader::new(file).finish().map_err(|source| Error::Parquet { path: path.into(), source })?;
        let frame = SampleFrame::new(df)
            .map_err(|e| Error::File { path: path.into(), why: format!("not a headroom store file: {e}") })?;
        let mut series = frame.series()?;
        match series.len() {
            0 => Ok(None),
            1 => Ok(series.pop()),
            n => Err(Error::File { path: path.into(), why: format!("holds {n} series; a store file holds one") }),
        }
    }
}

fn foreign(path: &Path) -> Error {
    Error::File {
        path: path.into(),
        why: "not part of a headroom store (only <entity>/<metric>.parquet files belong there)".into(),
    }
}

fn sorted(mut s: SeriesData) -> SeriesData {
    if s.ts.windows(2).any(|w| w[0] > w[1]) {
        let mut idx: Vec<usize> = (0..s.len()).collect();
        idx.sort_by_key(|&i| s.ts[i]);
        s.ts = idx.iter().map(|&i| s.ts[i]).collect();
        s.values = idx.iter().map(|&i| s.values[i]).collect();
    }
    s
}

/// Stored points whose timestamp appears in `incoming` are replaced by the
/// incoming ones; returns the merged, sorted series and the count replaced.
fn merge(stored: SeriesData, incoming: SeriesData) -> (SeriesData, usize) {
    let incoming = sorted(incoming);
    let mut out = SeriesData::new(incoming.key.clone());
    let mut replaced = 0;
    let (mut i, mut j) = (0, 0);
    while i < stored.len() || j < incoming.len() {
        let take_stored = j >= incoming.len() || (i < stored.len() && stored.ts[i] < incoming.ts[j]);
        if take_stored {
            out.push(stored.ts[i], stored.values[i]);
            i += 1;
        } else {
            let t = incoming.ts[j];
            while i < stored.len() && stored.ts[i] == t {
                replaced += 1;
                i += 1;
            }
            while j < incoming.len() && incoming.ts[j] == t {
                out.push(t, incoming.values[j]);
                j += 1;
            }
        }
    }
    (out, replaced)
}

/// Writes `path` atomically: `write` fills a temporary file beside it (a
/// dot-file, so store listings and pandas skip it), which is synced and then
/// renamed over `path`; on any error the temporary file is removed and `path`
/// is untouched. Creates the parent directory.
pub fn write_atomically(path: &Path, write: impl FnOnce(&mut File) -> Result<()>) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).map_err(Error::io(&dir))?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut file = File::create(&tmp).map_err(Error::io(&tmp))?;
        write(&mut file)?;
        file.flush().map_err(Error::io(&tmp))?;
        file.sync_all().map_err(Error::io(&tmp))?;
        std::fs::rename(&tmp, path).map_err(Error::io(path))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn write_series(path: &Path, series: &SeriesData) -> Result<()> {
    let mut df = SampleFrame::from_series([series])?.into_frame();
    write_atomically(path, |file| {
        ParquetWriter::new(file).finish(&mut df).map_err(|source| Error::Parquet { path: path.into(), source })?;
        Ok(())
    })
}

/// Percent-encodes a name into `[A-Za-z0-9_.-]`, encoding a leading `.` and
/// writing the empty name as `%`.
fn encode(name: &str) -> String {
    if name.is_empty() {
        return "%".into();
    }
    let mut out = String::with_capacity(name.len());
    for (i, b) in name.bytes().enumerate() {
        let plain = b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || (b == b'.' && i > 0);
        if plain {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn decode(name: &str) -> Option<String> {
    if name == "%" {
        return Some(String::new());
    }
    let bytes = name.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(entity: &str, metric: &str, points: &[(i64, f64)]) -> SeriesData {
        SeriesData::from_points(SeriesKey::new(entity, metric).unwrap(), points)
    }

    #[test]
    fn names_encode_reversibly_and_safely() {
        for name in ["cpu", "web-1.example", "..", ".hidden", "a b/c", "名前", "", "50%"] {
            let e = encode(name);
            assert!(e.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-%".contains(&b)), "{e}");
            assert!(!e.starts_with('.'), "{e}");
            assert_eq!(decode(&e).as_deref(), Some(name));
        }
    }

    #[test]
    fn writes_merge_replace_by_timestamp_and_read_back_by_series_and_range() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("store")).unwrap();
        let a = series("k8s/shop/deployment/cart", "cpu", &[(600, 3.0), (0, 1.0), (300, 2.0)]);
        let b = series("host/../etc", "memory", &[(0, 9.0)]);
        let w = store.write(&SampleFrame::from_series([&a, &b]).unwrap()).unwrap();
        assert_eq!(w, WriteSummary { series: 2, points_in: 4, points_replaced: 0 });
        assert!(store.path_of(&b.key).starts_with(store.dir()), "entities cannot climb out of the store");

        // Rewriting overlapping points replaces them; new points are added.
        let a2 = series("k8s/shop/deployment/cart", "cpu", &[(300, 20.0), (900, 4.0)]);
        let w = store.write(&SampleFrame::from_series([&a2]).unwrap()).unwrap();
        assert_eq!(w.points_replaced, 1);

        assert_eq!(store.list().unwrap(), vec![b.key.clone(), a.key.clone()]);
        let all = store.read(&Query::default()).unwrap().series().unwrap();
        assert_eq!(all[1].ts, vec![0, 300, 600, 900]);
        assert_eq!(all[1].values, vec![1.0, 20.0, 3.0, 4.0]);

        let q = Query { series: Some(vec![a.key.clone()]), start_ms: Some(300), end_ms: Some(900) };
        let got = store.read(&q).unwrap().series().unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].ts, vec![300, 600]);

        // Writing the same batch twice changes nothing.
        let before = store.read(&Query::default()).unwrap().series().unwrap();
        store.write(&SampleFrame::from_series([&a2]).unwrap()).unwrap();
        assert_eq!(store.read(&Query::default()).unwrap().series().unwrap(), before);
    }

    #[test]
    fn no_temporary_files_are_left_and_foreign_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.write(&SampleFrame::from_series([&series("host/a", "cpu", &[(0, 1.0)])]).unwrap()).unwrap();
        let names: Vec<String> = std::fs::read_dir(dir.path().join("host/a"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["cpu.parquet"]);
        std::fs::write(dir.path().join("host/notes.txt"), "hi").unwrap();
        let e = store.list().unwrap_err().to_string();
        assert!(e.contains("notes.txt") && e.contains("not part of a headroom store"), "{e}");
    }
}
