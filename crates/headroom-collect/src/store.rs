//! The embedded store: raw samples as Parquet files under a data directory.
//!
//! Layout: one file per series, `DIR/<entity>/<metric>.parquet`, where each
//! `/`-separated part of the entity is a directory and every name is
//! percent-encoded down to `[A-Za-z0-9_.-]` (a leading `.` is encoded too, so
//! `..` can never climb out, and names starting with `.` — temporary files,
//! the writer lock `DIR/.lock` — are never data). Each file has the canonical
//! samples schema, sorted by time, so `pandas.read_parquet(DIR)` or
//! `polars.read_parquet(DIR + "/**/*.parquet")` reads the whole store.
//!
//! The encoding is one-to-one, so two series never share a file, except on a
//! file system that ignores case (macOS, Windows), where names differing only
//! in ASCII case are one name. The one collision the layout allows everywhere
//! is a series' file being another series' directory: an entity part
//! `<metric>.parquet`, as in `a:b` (`a/b.parquet`) and `a/b.parquet:cpu`
//! (`a/b.parquet/cpu.parquet`).
//!
//! [`Store::write`] is all or nothing, as far as a file system allows:
//! 1. every series is checked before anything is written: each encoded name
//!    (the temporary file's too) within 255 bytes, each path under 4096 bytes,
//!    no collision among the incoming series or with what is stored. Any
//!    problem rejects the whole write ([`Error::StoreRejected`], naming every
//!    series at fault);
//! 2. every series is merged with its stored points into a temporary file
//!    beside its file, and synced;
//! 3. only once every temporary file is written are they renamed over the
//!    series files. A failure before that removes every temporary file and
//!    every directory the write created: the store is as it was. A failed
//!    rename (the checks make it rare) is reported with how many series of the
//!    write were already replaced.
//!
//! **Invariant:** a series file is replaced atomically (written to a temporary
//! file in the same directory, synced, then renamed over the old one): a reader
//! sees the old or the new file, never a torn one, so readers take no lock (a
//! reader may see some series of a write replaced and others not yet).
//! **Invariant:** writing is idempotent: for every timestamp present in the
//! incoming points, the stored points at that timestamp are replaced by the
//! incoming ones. **Invariant:** one writer per store at a time: a write holds
//! an exclusive advisory lock on `DIR/.lock` (std's `File::lock`, released
//! when its process exits, so never stale) for its whole read–merge–write; a
//! second writer, in this process or another, waits for it (saying so once in
//! the log) up to [`Store::with_lock_wait`], then fails with
//! [`Error::StoreLocked`].

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use headroom_core::{SampleFrame, SeriesData, SeriesKey};
use polars::prelude::{ParquetReader, ParquetWriter, SerReader};
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result, shorten};

const EXT: &str = "parquet";
/// The writer lock, in the store's directory.
pub const LOCK_FILE: &str = ".lock";
/// How long a writer waits for another writer's lock unless told otherwise.
pub const DEFAULT_LOCK_WAIT: Duration = Duration::from_secs(60);
/// Longest name of one file or directory, in bytes: `NAME_MAX` on Linux and
/// the BSDs, 255 UTF-16 units on APFS and NTFS (encoded names are ASCII).
const NAME_MAX: usize = 255;
/// Longest path written, in bytes: Linux's `PATH_MAX` (4096) counts the NUL.
const PATH_MAX: usize = 4095;
/// What a temporary name adds to a file name at most: `.` before, `.tmp-<pid>` after.
const TMP_EXTRA: usize = ".".len() + ".tmp-".len() + "4294967295".len();

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

/// What a compaction did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Compacted {
    /// Series rewritten with their older points removed.
    pub series_rewritten: usize,
    /// Series removed: every point was older than the retention.
    pub series_removed: usize,
    /// Points removed.
    pub points_removed: usize,
}

/// A directory of per-series Parquet files.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
    lock_wait: Duration,
    cancel: Option<CancellationToken>,
}

impl Store {
    /// Opens (creating if needed) the store at `dir`.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(Error::io(&dir))?;
        Ok(Self { dir, lock_wait: DEFAULT_LOCK_WAIT, cancel: None })
    }

    /// How long [`Store::write`] waits for another writer to release the
    /// store's lock before failing with [`Error::StoreLocked`] (default
    /// [`DEFAULT_LOCK_WAIT`]).
    #[must_use]
    pub fn with_lock_wait(mut self, wait: Duration) -> Self {
        self.lock_wait = wait;
        self
    }

    /// Stops [`Store::write`] waiting for the lock when `cancel` fires
    /// ([`Error::Cancelled`], nothing written). A write holding the lock runs
    /// to its end.
    #[must_use]
    pub fn with_cancel(mut self, cancel: CancellationToken) -> Self {
        self.cancel = Some(cancel);
        self
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The writer lock file, `DIR/.lock`.
    pub fn lock_path(&self) -> PathBuf {
        self.dir.join(LOCK_FILE)
    }

    /// The file holding `key`.
    pub fn path_of(&self, key: &SeriesKey) -> PathBuf {
        let mut p = self.dir.clone();
        p.extend(parts_of(key));
        p
    }

    /// Merges the frame's points into the store, every series or none (see
    /// the module docs), holding the store's writer lock throughout.
    pub fn write(&self, frame: &SampleFrame) -> Result<WriteSummary> {
        let incoming = frame.series()?;
        let keys: Vec<&SeriesKey> = incoming.iter().map(|s| &s.key).collect();
        self.reject(layout_problems(&self.dir, &keys, false))?;
        let _lock = self.lock()?;
        let fold = ignores_case(&self.lock_path());
        if fold {
            self.reject(layout_problems(&self.dir, &keys, true))?;
        }
        let mut names = DirNames::default();
        self.reject(keys.iter().filter_map(|key| self.stored_conflict(key, fold.then_some(&mut names))).collect())?;

        let mut staged = Staged::default();
        let mut summary = WriteSummary::default();
        for incoming in incoming {
            let key = incoming.key.clone();
            summary.points_in += incoming.len();
            let path = self.path_of(&key);
            let stored = read_series_file(&path, &shown(&path)).map_err(|e| series_error(&key, e, NOTHING_KEPT))?;
            let merged = match stored {
                Some(stored) => {
                    let (merged, replaced) = merge(stored, incoming);
                    summary.points_replaced += replaced;
                    merged
                }
                None => sorted(incoming),
            };
            staged.write(&path, &merged).map_err(|e| series_error(&key, e, NOTHING_KEPT))?;
            summary.series += 1;
        }
        staged.commit()?;
        Ok(summary)
    }

    /// Drops every point before `keep_from_ms` (the retention), holding the
    /// writer lock: a series with points left is rewritten atomically, one
    /// with none left is removed. What a daemon runs so its store does not
    /// grow without bound.
    pub fn compact(&self, keep_from_ms: i64) -> Result<Compacted> {
        let _lock = self.lock()?;
        let mut staged = Staged::default();
        let mut summary = Compacted::default();
        let mut emptied = Vec::new();
        for key in self.list()? {
            let path = self.path_of(&key);
            let Some(stored) =
                read_series_file(&path, &shown(&path)).map_err(|e| series_error(&key, e, NOTHING_KEPT))?
            else {
                continue;
            };
            let cut = stored.ts.partition_point(|&t| t < keep_from_ms);
            if cut == 0 {
                continue;
            }
            summary.points_removed += cut;
            if cut == stored.ts.len() {
                emptied.push(path);
                continue;
            }
            let kept =
                SeriesData { key: key.clone(), ts: stored.ts[cut..].to_vec(), values: stored.values[cut..].to_vec() };
            staged.write(&path, &kept).map_err(|e| series_error(&key, e, NOTHING_KEPT))?;
            summary.series_rewritten += 1;
        }
        staged.commit()?;
        for path in emptied {
            std::fs::remove_file(&path).map_err(Error::io(shown(&path)))?;
            summary.series_removed += 1;
        }
        Ok(summary)
    }

    fn reject(&self, problems: Vec<String>) -> Result<()> {
        if problems.is_empty() {
            return Ok(());
        }
        Err(Error::StoreRejected { dir: self.dir.clone(), problems })
    }

    /// Takes the store's writer lock, waiting up to `lock_wait` for another
    /// writer to release it.
    fn lock(&self) -> Result<File> {
        let path = self.lock_path();
        let file =
            OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(Error::io(shown(&path)))?;
        let started = Instant::now();
        let mut pause = Duration::from_millis(5);
        let mut said = false;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(file),
                Err(TryLockError::WouldBlock) => {}
                Err(TryLockError::Error(e)) => return Err(Error::io(shown(&path))(e)),
            }
            if self.cancel.as_ref().is_some_and(CancellationToken::is_cancelled) {
                return Err(Error::Cancelled);
            }
            let waited = started.elapsed();
            if waited >= self.lock_wait {
                return Err(Error::StoreLocked { dir: self.dir.clone(), lock: path, waited });
            }
            if !said {
                tracing::warn!(
                    store = %shorten(&self.dir.display().to_string()),
                    lock = %shorten(&path.display().to_string()),
                    wait_s = self.lock_wait.as_secs_f64(),
                    "another writer holds the store's lock; waiting for it to finish"
                );
                said = true;
            }
            std::thread::sleep(pause.min(self.lock_wait - waited));
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }

    /// What is already on disk that stops `key` being written: its file is a
    /// directory, or one of its directories is a file. With `names` (a file
    /// system that ignores case), also a name stored in other case.
    fn stored_conflict(&self, key: &SeriesKey, mut names: Option<&mut DirNames>) -> Option<String> {
        let parts = parts_of(key);
        let named = |why: String| format!("series {}: {why}", shorten(&key.to_string()));
        let mut path = self.dir.clone();
        for (i, part) in parts.iter().enumerate() {
            path.push(part);
            let is_file = i + 1 == parts.len();
            let meta = match std::fs::metadata(&path) {
                Ok(meta) => meta,
                Err(e) if e.kind() == ErrorKind::NotFound => return None,
                Err(e) => return Some(named(format!("{}: {e}", shorten_path(&path)))),
            };
            if is_file && meta.is_dir() {
                let entity = decode_all(&parts[..=i]).unwrap_or_else(|| "?".into());
                return Some(named(format!(
                    "its file {} is a directory of the store, holding the series of entity {}/…",
                    shorten_path(&path),
                    shorten(&entity)
                )));
            }
            if !is_file && !meta.is_dir() {
                let what = match key_at(&parts[..=i]) {
                    Some(other) => format!("the file of series {}", shorten(&other)),
                    None => "a file that is not part of the store".into(),
                };
                return Some(named(format!("its directory {} is {what}", shorten_path(&path))));
            }
            if let Some(names) = names.as_deref_mut()
                && let Some(actual) = names.stored_as(&path)
                && actual != part.as_str()
            {
                return Some(named(format!(
                    "its {} {} is stored as {} on this file system, which ignores case; series whose names differ only in case cannot share a store here",
                    if is_file { "file" } else { "directory" },
                    shorten_path(&path),
                    shorten(&actual)
                )));
            }
        }
        None
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
        Ok(SampleFrame::from_series(&self.read_series(query)?)?)
    }

    /// What [`Store::read`] reads, as one [`SeriesData`] per series (no
    /// long frame in between: what a daemon reading thousands of series
    /// every minute keeps its memory down with).
    pub fn read_series(&self, query: &Query) -> Result<Vec<SeriesData>> {
        let keys = match &query.series {
            Some(keys) => keys.clone(),
            None => self.list()?,
        };
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            let path = self.path_of(&key);
            let Some(mut s) = read_series_file(&path, &path)? else {
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
        Ok(out)
    }
}

/// Reads one series file (`None` when there is none); errors name it `shown`.
fn read_series_file(path: &Path, shown: &Path) -> Result<Option<SeriesData>> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(shown)(e)),
    };
    let df = ParquetReader::new(file).finish().map_err(|source| Error::Parquet { path: shown.into(), source })?;
    let frame = SampleFrame::new(df)
        .map_err(|e| Error::File { path: shown.into(), why: format!("not a headroom store file: {e}") })?;
    let mut series = frame.series()?;
    match series.len() {
        0 => Ok(None),
        1 => Ok(series.pop()),
        n => Err(Error::File { path: shown.into(), why: format!("holds {n} series; a store file holds one") }),
    }
}

/// The names below the store directory holding `key`: the encoded entity
/// parts, then the file name.
fn parts_of(key: &SeriesKey) -> Vec<String> {
    let mut parts: Vec<String> = key.entity.split('/').map(encode).collect();
    parts.push(format!("{}.{EXT}", encode(&key.metric)));
    parts
}

/// The decoded entity of the directory `parts`.
fn decode_all(parts: &[String]) -> Option<String> {
    Some(parts.iter().map(|p| decode(p)).collect::<Option<Vec<_>>>()?.join("/"))
}

/// `entity:metric` of the store file `parts`, if it is one.
fn key_at(parts: &[String]) -> Option<String> {
    let (file, dirs) = parts.split_last()?;
    let metric = decode(file.strip_suffix(&format!(".{EXT}"))?)?;
    Some(format!("{}:{metric}", decode_all(dirs).filter(|e| !e.is_empty())?))
}

/// What stops `keys` being stored under `dir` whatever is on disk: a name or
/// path too long for the file system, or two series needing one path (a file
/// that is another series' directory; with `fold`, for a file system that
/// ignores case, names that differ only in ASCII case). One line per problem,
/// each naming its series.
fn layout_problems(dir: &Path, keys: &[&SeriesKey], fold: bool) -> Vec<String> {
    let fold_case = |s: String| if fold { s.to_ascii_lowercase() } else { s };
    let named = |key: &SeriesKey, why: String| format!("series {}: {why}", shorten(&key.to_string()));
    let mut problems = Vec::new();
    let mut files: HashMap<String, &SeriesKey> = HashMap::new();
    let mut dirs: HashMap<String, &SeriesKey> = HashMap::new();
    let mut rels = Vec::with_capacity(keys.len());
    for &key in keys {
        let parts = parts_of(key);
        let (file, entity) = parts.split_last().expect("a file name");
        for (raw, part) in key.entity.split('/').zip(entity) {
            if part.len() > NAME_MAX {
                problems.push(named(key, format!(
                    "the entity part {} is {} bytes once encoded; a name may have 255 (characters outside A-Za-z0-9_.- take 3 bytes)",
                    shorten(raw),
                    part.len()
                )));
            }
        }
        if file.len() + TMP_EXTRA > NAME_MAX {
            problems.push(named(key, format!(
                "the metric {} needs a {}-byte file name ({} while it is written); a name may have 255 (characters outside A-Za-z0-9_.- take 3 bytes)",
                shorten(&key.metric),
                file.len(),
                file.len() + TMP_EXTRA
            )));
        }
        let rel = parts.join("/");
        let len = dir.as_os_str().len() + 1 + rel.len() + TMP_EXTRA;
        if len > PATH_MAX {
            problems.push(named(key, format!(
                "its file {} would be a {len}-byte path (with the temporary name it is written under); paths must be shorter than 4096 bytes",
                shorten_path(&dir.join(&rel))
            )));
        }
        let rel = fold_case(rel);
        match files.get(&rel) {
            Some(&other) if other != key => problems.push(named(
                key,
                format!(
                    "its file {} is also the file of series {} on this file system, which ignores case",
                    shorten(&rel),
                    shorten(&other.to_string())
                ),
            )),
            _ => {
                files.insert(rel.clone(), key);
            }
        }
        for end in 1..parts.len() {
            dirs.entry(fold_case(parts[..end].join("/"))).or_insert(key);
        }
        rels.push(rel);
    }
    for (&key, rel) in keys.iter().zip(&rels) {
        if let Some(other) = dirs.get(rel) {
            problems.push(named(
                key,
                format!(
                    "its file {} is a directory of series {}; an entity part may not be another series' <metric>.{EXT}",
                    shorten(rel),
                    shorten(&other.to_string())
                ),
            ));
        }
    }
    problems
}

/// Whether the file system under the (existing) lock file ignores case: the
/// lock is found under its upper-case name too.
fn ignores_case(lock: &Path) -> bool {
    std::fs::metadata(lock.with_file_name(LOCK_FILE.to_ascii_uppercase())).is_ok()
}

/// The names each directory holds, read once per write (file systems that ignore case only).
#[derive(Default)]
struct DirNames(HashMap<PathBuf, Vec<OsString>>);

impl DirNames {
    /// The name `path` (which exists) has on disk.
    fn stored_as(&mut self, path: &Path) -> Option<String> {
        let (dir, name) = (path.parent()?, path.file_name()?.to_str()?);
        let names = self.0.entry(dir.to_path_buf()).or_insert_with(|| {
            std::fs::read_dir(dir)
                .map(|entries| entries.filter_map(|e| Some(e.ok()?.file_name())).collect())
                .unwrap_or_default()
        });
        names.iter().filter_map(|n| n.to_str()).find(|n| n.eq_ignore_ascii_case(name)).map(str::to_owned)
    }
}

const NOTHING_KEPT: &str = "nothing of this write was kept";

fn series_error(key: &SeriesKey, source: Error, kept: &str) -> Error {
    Error::StoreWrite { series: shorten(&key.to_string()), source: Box::new(source), kept: kept.into() }
}

/// `path` shortened for a message.
fn shorten_path(path: &Path) -> String {
    shorten(&path.display().to_string())
}

/// `path` shortened, as a path to put in an error.
fn shown(path: &Path) -> PathBuf {
    PathBuf::from(shorten_path(path))
}

/// What one write has put on disk so far: temporary files, and the directories
/// it created for them. Dropped before [`Staged::commit`] succeeds, it removes them.
#[derive(Default)]
struct Staged {
    /// Temporary file, series file, series.
    files: Vec<(PathBuf, PathBuf, SeriesKey)>,
    /// Created directories, parents first.
    dirs: Vec<PathBuf>,
}

impl Staged {
    /// Writes `series` to a synced temporary file beside `path`.
    fn write(&mut self, path: &Path, series: &SeriesData) -> Result<()> {
        if let Some(dir) = path.parent() {
            self.create_dirs(dir)?;
        }
        let tmp = tmp_path(path);
        self.files.push((tmp.clone(), path.to_path_buf(), series.key.clone()));
        let mut df = SampleFrame::from_series([series])?.into_frame();
        let shown_tmp = shown(&tmp);
        write_synced(&tmp, &shown_tmp, |file| {
            ParquetWriter::new(file)
                .finish(&mut df)
                .map_err(|source| Error::Parquet { path: shown_tmp.clone(), source })?;
            Ok(())
        })
    }

    fn create_dirs(&mut self, dir: &Path) -> Result<()> {
        let missing: Vec<&Path> = dir.ancestors().take_while(|d| !d.as_os_str().is_empty() && !d.is_dir()).collect();
        for d in missing.into_iter().rev() {
            match std::fs::create_dir(d) {
                Ok(()) => self.dirs.push(d.to_path_buf()),
                Err(e) if e.kind() == ErrorKind::AlreadyExists && d.is_dir() => {}
                Err(e) => return Err(Error::io(shown(d))(e)),
            }
        }
        Ok(())
    }

    /// Renames every temporary file over its series file.
    fn commit(mut self) -> Result<()> {
        let files = std::mem::take(&mut self.files);
        for (done, (tmp, path, key)) in files.iter().enumerate() {
            if let Err(e) = std::fs::rename(tmp, path) {
                self.files = files[done..].to_vec();
                let kept = match done {
                    0 => NOTHING_KEPT.to_owned(),
                    n => format!("the {n} series renamed before it were replaced; the rest of this write was not kept"),
                };
                return Err(series_error(key, Error::io(shown(path))(e), &kept));
            }
        }
        self.dirs.clear();
        Ok(())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        for (tmp, ..) in &self.files {
            let _ = std::fs::remove_file(tmp);
        }
        // Only directories left empty go (a failed commit may have filled some).
        for dir in self.dirs.iter().rev() {
            let _ = std::fs::remove_dir(dir);
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
    let tmp = dir.join(tmp_path(path).file_name().unwrap_or_default());
    let result = write_synced(&tmp, &tmp, write).and_then(|()| std::fs::rename(&tmp, path).map_err(Error::io(path)));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The temporary file `path` is written under: `.<name>.tmp-<pid>` beside it.
fn tmp_path(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// Creates `tmp`, lets `write` fill it, then flushes and syncs it; errors name it `shown`.
fn write_synced(tmp: &Path, shown: &Path, write: impl FnOnce(&mut File) -> Result<()>) -> Result<()> {
    let mut file = File::create(tmp).map_err(Error::io(shown))?;
    write(&mut file)?;
    file.flush().map_err(Error::io(shown))?;
    file.sync_all().map_err(Error::io(shown))
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
    fn compaction_keeps_the_retention_and_removes_series_left_empty() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let old = series("host/a", "cpu", &[(1_000, 1.0), (2_000, 2.0)]);
        let mixed = series("host/b", "cpu", &[(1_000, 1.0), (5_000, 5.0), (6_000, 6.0)]);
        store.write(&frame(&[old.clone(), mixed])).unwrap();
        let c = store.compact(5_000).unwrap();
        assert_eq!(c, Compacted { series_rewritten: 1, series_removed: 1, points_removed: 3 });
        assert!(!store.path_of(&old.key).exists());
        let left = store.read(&Query::default()).unwrap().series().unwrap();
        assert_eq!((left.len(), left[0].ts.clone()), (1, vec![5_000, 6_000]));
        assert_eq!(store.compact(5_000).unwrap(), Compacted::default(), "nothing more to do");
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

    fn frame(series: &[SeriesData]) -> SampleFrame {
        SampleFrame::from_series(series).unwrap()
    }

    /// Every directory and file under `dir`, files with their bytes: what a user could notice changing.
    fn snapshot(dir: &Path) -> Vec<(PathBuf, Option<Vec<u8>>)> {
        fn walk(dir: &Path, out: &mut Vec<(PathBuf, Option<Vec<u8>>)>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    out.push((path.clone(), None));
                    walk(&path, out);
                } else {
                    out.push((path.clone(), Some(std::fs::read(&path).unwrap())));
                }
            }
        }
        let mut out = Vec::new();
        walk(dir, &mut out);
        out.sort();
        out
    }

    #[test]
    fn the_layout_check_finds_the_collisions_the_encoding_allows_and_no_others() {
        let key = |e: &str, m: &str| SeriesKey::new(e, m).unwrap();
        let problems =
            |keys: &[SeriesKey], fold: bool| layout_problems(Path::new("st"), &keys.iter().collect::<Vec<_>>(), fold);
        // A file that is another series' directory, at any depth.
        for (a, b) in
            [(key("a", "b"), key("a/b.parquet", "cpu")), (key("a/b", "c.d"), key("a/b/c.d.parquet/x/y", "cpu"))]
        {
            let p = problems(&[b.clone(), a.clone()], false);
            assert_eq!(p.len(), 1, "{p:?}");
            assert!(p[0].contains(&format!("series {a}")) && p[0].contains(&b.to_string()), "{p:?}");
        }
        // Near misses have paths of their own: a shared directory, `..`, empty parts, `%`, case.
        let fine = [
            key("a", "b"),
            key("a/b", "c"),
            key("a", "b.parquet"),
            key("a/..", "b"),
            key("a//b", "c"),
            key("a/", "b.parquet"),
            key("a/%", "b"),
            key("a", "B"),
            key("A", "b"),
        ];
        assert_eq!(problems(&fine, false), Vec::<String>::new());
        // Where the file system ignores case, names differing only in case are one file.
        let p = problems(&[key("host/Web", "cpu"), key("host/web", "cpu")], true);
        assert!(p.len() == 1 && p[0].contains("series host/web:cpu") && p[0].contains("host/Web:cpu"), "{p:?}");
    }

    #[test]
    fn an_over_long_name_is_rejected_naming_the_series_and_nothing_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.write(&frame(&[series("host/a", "cpu", &[(0, 1.0)])])).unwrap();
        let before = snapshot(dir.path());

        // Good series first: a series-by-series writer would have written them before the bad one.
        let good = [series("host/a", "cpu", &[(300, 2.0)]), series("host/b", "memory", &[(0, 5.0)])];
        let long_metric = "m".repeat(300);
        let bad = series("host/c", &long_metric, &[(0, 1.0)]);
        let err = store.write(&frame(&[good[0].clone(), good[1].clone(), bad])).unwrap_err().to_string();
        assert!(err.contains("series host/c:mmmm") && err.contains("255"), "{err}");
        assert!(err.contains('…') && err.len() < 600, "a long name is shortened: {err}");
        assert_eq!(snapshot(dir.path()), before, "nothing was written");

        // Every part short, the whole path 10 kB long.
        let deep: Vec<String> = (0..100).map(|i| format!("{i:0>99}")).collect();
        let bad = series(&deep.join("/"), "cpu", &[(0, 1.0)]);
        let err = store.write(&frame(&[good[0].clone(), bad])).unwrap_err().to_string();
        assert!(err.contains(&format!("series {}", &deep[0][..50])) && err.contains("4096"), "{err}");
        assert!(err.len() < 600, "never a 10 kB path: {err}");
        assert_eq!(snapshot(dir.path()), before, "nothing was written");
    }

    #[test]
    fn a_file_that_is_another_series_directory_is_rejected_before_anything_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.write(&frame(&[series("host/0", "cpu", &[(0, 1.0)])])).unwrap();
        let before = snapshot(dir.path());

        // Within one write: host/a:b is the file host/a/b.parquet, which entity host/a/b.parquet needs as a directory.
        let err = store
            .write(&frame(&[
                series("host/0", "cpu", &[(300, 2.0)]),
                series("host/a", "b", &[(0, 1.0)]),
                series("host/a/b.parquet", "cpu", &[(0, 1.0)]),
            ]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("host/a:b") && err.contains("host/a/b.parquet:cpu"), "{err}");
        assert_eq!(snapshot(dir.path()), before, "nothing was written");

        // Against what is already stored, either way round.
        store.write(&frame(&[series("host/a", "b", &[(0, 1.0)])])).unwrap();
        store.write(&frame(&[series("host/x/y.parquet", "cpu", &[(0, 1.0)])])).unwrap();
        let before = snapshot(dir.path());
        for (entity, metric, other) in [("host/a/b.parquet", "cpu", "host/a:b"), ("host/x", "y", "host/x/y.parquet")] {
            let err = store
                .write(&frame(&[series("host/0", "cpu", &[(600, 3.0)]), series(entity, metric, &[(0, 1.0)])]))
                .unwrap_err()
                .to_string();
            assert!(err.contains(&format!("series {entity}:{metric}")) && err.contains(other), "{err}");
            assert_eq!(snapshot(dir.path()), before, "nothing was written");
        }
    }

    #[test]
    fn a_failure_while_writing_keeps_nothing_of_the_write() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.write(&frame(&[series("host/a", "cpu", &[(0, 1.0)])])).unwrap();
        std::fs::create_dir_all(dir.path().join("host/z")).unwrap();
        std::fs::write(dir.path().join("host/z/cpu.parquet"), "not parquet").unwrap();
        let before = snapshot(dir.path());

        // host/a and host/b/c are merged and staged before host/z's stored file turns out unreadable.
        let err = store
            .write(&frame(&[
                series("host/a", "cpu", &[(300, 2.0)]),
                series("host/b/c", "cpu", &[(0, 1.0)]),
                series("host/z", "cpu", &[(0, 1.0)]),
            ]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("series host/z:cpu") && err.contains("nothing of this write was kept"), "{err}");
        assert_eq!(snapshot(dir.path()), before, "no series replaced, no temporary file or new directory left");
    }

    /// Collects what a `tracing` subscriber writes.
    #[derive(Clone, Default)]
    struct Capture(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_second_writer_waits_for_the_lock_then_gives_up_naming_the_store_and_the_lock() {
        use std::time::{Duration, Instant};

        let capture = Capture::default();
        let writer = capture.clone();
        let subscriber = tracing_subscriber::fmt().with_ansi(false).with_writer(move || writer.clone()).finish();
        let _guard = tracing::subscriber::set_default(subscriber);

        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap().with_lock_wait(Duration::from_millis(400));
        // Another writer holds the lock, as a second process would (flock locks conflict between open files).
        let held = File::options().create(true).truncate(false).write(true).open(dir.path().join(".lock")).unwrap();
        held.lock().unwrap();

        let started = Instant::now();
        let err = store.write(&frame(&[series("host/a", "cpu", &[(0, 1.0)])])).unwrap_err().to_string();
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(400) && waited < Duration::from_secs(5), "{waited:?}");
        let shown = dir.path().display().to_string();
        assert!(err.contains(&shown) && err.contains(&format!("{shown}/.lock")), "{err}");
        assert_eq!(store.list().unwrap(), vec![], "nothing was written");
        let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
        assert_eq!(logs.matches("waiting").count(), 1, "said once that it waits: {logs}");
        assert!(logs.contains(&shown), "{logs}");

        // The writer waits rather than failing at once: released while it waits, it goes ahead.
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            drop(held);
        });
        let started = Instant::now();
        store
            .clone()
            .with_lock_wait(Duration::from_secs(20))
            .write(&frame(&[series("host/a", "cpu", &[(0, 1.0)])]))
            .unwrap();
        assert!(started.elapsed() >= Duration::from_millis(250), "{:?}", started.elapsed());
        release.join().unwrap();
        assert_eq!(store.list().unwrap(), vec![SeriesKey::new("host/a", "cpu").unwrap()]);
    }
}
