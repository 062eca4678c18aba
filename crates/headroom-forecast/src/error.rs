//! Errors of forecasting: each names the series and, where it matters, the time.

/// What went wrong while fitting, predicting or scoring.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The history is shorter than the model needs.
    #[error("{series}: {model} needs at least {need} points of history, has {have}")]
    TooShort {
        /// `entity:metric`.
        series: String,
        /// The model's name.
        model: String,
        /// Points needed.
        need: usize,
        /// Points available.
        have: usize,
    },

    /// A missing (NaN) value inside the window a model reads.
    #[error("{series}: missing value at {at} in the input window of {model}; fill or shorten the history")]
    Missing {
        /// `entity:metric`.
        series: String,
        /// The model's name.
        model: String,
        /// RFC 3339 time of the first missing value.
        at: String,
    },

    /// A model failed to fit or predict.
    #[error("{series}: {model}: {why}")]
    Model {
        /// `entity:metric`.
        series: String,
        /// The model's name.
        model: String,
        /// What happened.
        why: String,
    },

    /// A request that cannot be served (unknown model name, zero horizon, …).
    #[error("{0}")]
    Invalid(String),

    /// A signal stopped the work before it finished (nothing partial is returned).
    #[error("{0}")]
    Interrupted(#[from] headroom_core::Interrupted),

    /// A data-model rule was broken.
    #[error(transparent)]
    Core(#[from] headroom_core::Error),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
