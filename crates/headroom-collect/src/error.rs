//! Errors of the collectors, the resampler and the store. Every variant says
//! where (file, row, column, series, URL) and what the bad value was.

use std::path::PathBuf;
use std::time::Duration;

/// What went wrong while collecting, validating or storing samples.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or directory could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },

    /// One value in a file could not be understood.
    #[error("{}, row {row}, column {column:?}: {why} (value {value:?})", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based data row (the header is row 0).
        row: usize,
        /// Column name.
        column: String,
        /// The offending text.
        value: String,
        /// What was expected.
        why: String,
    },

    /// A file as a whole cannot be read as asked (layout, header, options).
    #[error("{}: {why}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong and what to do.
        why: String,
    },

    /// Polars could not read or write a Parquet file.
    #[error("{}: {source}", path.display())]
    Parquet {
        /// The file.
        path: PathBuf,
        /// Polars' error.
        source: polars::error::PolarsError,
    },

    /// A series failed validation in strict mode.
    #[error("series {series}: {why}")]
    Invalid {
        /// `entity:metric`.
        series: String,
        /// What was rejected, with the value and time.
        why: String,
    },

    /// Prometheus answered `"status":"error"` to a query.
    #[error("prometheus at {url}: query {query:?} failed: {error_type}: {message}")]
    PromQl {
        /// Base URL (never with credentials).
        url: String,
        /// The PromQL sent.
        query: String,
        /// Prometheus' `errorType` (bad_data, execution, timeout, …).
        error_type: String,
        /// Prometheus' `error` message.
        message: String,
    },

    /// Prometheus could not be reached or gave an unusable answer (after retries).
    #[error("prometheus at {url}: {why}")]
    Prometheus {
        /// Base URL (never with credentials).
        url: String,
        /// What happened, including the number of attempts.
        why: String,
    },

    /// The host could not be sampled.
    #[error("host source: {0}")]
    Host(String),

    /// A configuration value is invalid; names the field and the value.
    #[error("invalid configuration: {0}")]
    Config(String),

    /// Series cannot be stored as named: a name or path too long for the file
    /// system, or two series needing one path. Nothing was written.
    #[error("nothing was written to the store {}: {}", shorten(&dir.display().to_string()), list(problems))]
    StoreRejected {
        /// The store directory.
        dir: PathBuf,
        /// One line per problem, each naming its series (`entity:metric`).
        problems: Vec<String>,
    },

    /// Writing one series to the store failed.
    #[error("series {series}: {source}; {kept}")]
    StoreWrite {
        /// `entity:metric`, shortened if long.
        series: String,
        /// What failed, its path shortened if long.
        source: Box<Error>,
        /// What of the write was kept.
        kept: String,
    },

    /// A store directory could not be read.
    #[error("reading store {}", path.display())]
    StoreRead {
        /// The store's directory.
        path: std::path::PathBuf,
        /// Why.
        source: Box<Error>,
    },

    /// Another writer held the store's lock for longer than this one would wait.
    #[error(
        "store {}: another writer still holds its lock {} after {:.1} s; try again when that write has finished (the lock goes with its process, so it is never stale)",
        shorten(&dir.display().to_string()),
        shorten(&lock.display().to_string()),
        waited.as_secs_f64()
    )]
    StoreLocked {
        /// The store directory.
        dir: PathBuf,
        /// The lock file, `DIR/.lock`.
        lock: PathBuf,
        /// How long this writer waited.
        waited: Duration,
    },

    /// The collection was cancelled before it finished; nothing was written.
    #[error("cancelled before the collection finished; nothing was written")]
    Cancelled,

    /// A data-model rule was broken (schema, name, timestamp, grid).
    #[error(transparent)]
    Model(#[from] headroom_core::Error),

    /// A frame operation failed.
    #[error("frame operation failed: {0}")]
    Polars(#[from] polars::error::PolarsError),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `text`, or its first and last 60 characters with `…` between when longer:
/// never a 10 kB name or path in a message.
pub(crate) fn shorten(text: &str) -> String {
    const KEEP: usize = 60;
    let n = text.chars().count();
    if n <= 2 * KEEP + 1 {
        return text.to_owned();
    }
    let head: String = text.chars().take(KEEP).collect();
    let tail: String = text.chars().skip(n - KEEP).collect();
    format!("{head}…{tail}")
}

/// The first few problems, `; `-separated, and how many more.
fn list(problems: &[String]) -> String {
    const SHOWN: usize = 5;
    let mut text = problems.iter().take(SHOWN).cloned().collect::<Vec<_>>().join("; ");
    if problems.len() > SHOWN {
        text.push_str(&format!("; and {} more", problems.len() - SHOWN));
    }
    text
}

impl Error {
    /// An [`Error::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { path, source }
    }
}
