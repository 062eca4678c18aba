//! Errors of the data model: each says what was wrong and with which value.

/// What went wrong while building or checking a piece of the data model.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A timestamp string matched none of the accepted formats.
    #[error(
        "timestamp {value:?} is not RFC 3339 (2024-01-01T00:00:00Z), 'YYYY-MM-DD HH:MM:SS' (UTC) \
         or, with an explicit time unit, epoch seconds/milliseconds{hint}"
    )]
    Timestamp { value: String, hint: &'static str },

    /// A duration string is not a Prometheus-style duration.
    #[error("duration {value:?} is not a duration like 30s, 5m, 1h30m, 14d or 2w: {why}")]
    Duration { value: String, why: &'static str },

    /// A frame does not have the schema it claims to have.
    #[error("frame does not have the {frame} schema: {why}")]
    Schema { frame: &'static str, why: String },

    /// An entity or metric name cannot be used.
    #[error("invalid {field} {value:?}: {why}")]
    Name { field: &'static str, value: String, why: &'static str },

    /// A grid that cannot exist (zero step, end before start).
    #[error("invalid grid: {0}")]
    Grid(String),

    /// A forecast that cannot exist (paths of unequal length, non-finite values).
    #[error("invalid forecast: {0}")]
    Forecast(String),

    /// Polars refused an operation on a frame.
    #[cfg(feature = "frames")]
    #[error("frame operation failed: {0}")]
    Polars(#[from] polars::error::PolarsError),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
