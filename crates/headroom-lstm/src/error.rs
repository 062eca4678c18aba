//! Errors of the LSTM crate: each says what to do about it.

use std::path::PathBuf;

/// What went wrong while building, training, saving or loading the LSTM.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A tensor operation failed (a bug or an out-of-memory condition).
    #[error("lstm tensor operation failed: {0}")]
    Candle(#[from] candle_core::Error),

    /// A forecasting rule was broken (too little history, a missing value, …).
    #[error(transparent)]
    Forecast(#[from] headroom_forecast::Error),

    /// A signal stopped the work before it finished.
    #[error("{0}")]
    Interrupted(#[from] headroom_core::Interrupted),

    /// A configuration value is out of range.
    #[error("lstm config: {field} = {value}: {why}")]
    Config {
        /// The offending field.
        field: &'static str,
        /// Its value.
        value: String,
        /// Why it is refused.
        why: String,
    },

    /// No series had enough history to cut a single training sample.
    #[error(
        "no training samples: every series is shorter than {need} bins (window + horizon) before its cut; \
         give longer histories or a shorter `window`"
    )]
    NoSamples {
        /// Bins needed per sample.
        need: usize,
    },

    /// A model file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },

    /// `card.json` is not valid.
    #[error("{path}: invalid model card: {source}")]
    Card {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: serde_json::Error,
    },

    /// The model card does not match what the caller expects.
    #[error(
        "{path}: model card field `{field}` is {card} but {expected} is expected; retrain the model or ask for the card's value"
    )]
    Mismatch {
        /// The card file.
        path: PathBuf,
        /// The field that differs.
        field: &'static str,
        /// The card's value.
        card: String,
        /// The expected value.
        expected: String,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
