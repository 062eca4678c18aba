//! Errors of a backtest. Options are named as `headroom backtest` spells
//! them (`--step`, `--models`), with the value given, and say what to change.

use std::path::{Path, PathBuf};

/// What stopped a backtest, or the writing of its outputs.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A duration option that does not parse (the cause says why).
    #[error("{option} {value}")]
    Duration {
        /// The option, e.g. `--step`.
        option: &'static str,
        /// Its value as given.
        value: String,
        /// Why it does not parse.
        source: headroom_core::Error,
    },

    /// An option's value that cannot be used; `reason` says why and what to change.
    #[error("{option} {value}: {reason}")]
    Option {
        /// The option, e.g. `--horizon`.
        option: &'static str,
        /// Its value as given.
        value: String,
        /// Why it cannot be used.
        reason: String,
    },

    /// `--step` with `--horizon` and `--origin-every` make no protocol (the cause says why).
    #[error("--step {step}")]
    Protocol {
        /// `--step` as given.
        step: String,
        /// Why the protocol is refused.
        source: headroom_forecast::Error,
    },

    /// A list of models that cannot be run.
    #[error("--models: {0}")]
    Models(String),

    /// A model name that is not one of the models (the cause names the name).
    #[error("--models: known models are {known}")]
    UnknownModel {
        /// Every model name `--models` takes.
        known: String,
        /// The registry's refusal.
        source: headroom_forecast::Error,
    },

    /// The LSTM was trained on another step than `--step`.
    #[error(
        "--step {step}: the LSTM in {} was trained on {card} steps; use --step {card}, or leave lstm out of \
         --models (the baselines and auto take any step and horizon)",
        dir.display()
    )]
    LstmStep {
        /// `--step` as given.
        step: String,
        /// The model directory.
        dir: PathBuf,
        /// The step the LSTM's card names.
        card: String,
    },

    /// The LSTM forecasts another horizon than `--horizon`.
    #[error(
        "--horizon {horizon} ({bins} bins of {step}): the LSTM in {} forecasts {card} only; use that horizon, or \
         leave lstm out of --models (the baselines and auto take any step and horizon)",
        dir.display()
    )]
    LstmHorizon {
        /// `--horizon` as given.
        horizon: String,
        /// The horizon in bins.
        bins: usize,
        /// The step, formatted.
        step: String,
        /// The model directory.
        dir: PathBuf,
        /// The horizon the LSTM's card names.
        card: String,
    },

    /// The LSTM could not be loaded; `hint` says from where and what to do.
    #[error("{hint}")]
    Lstm {
        /// What was loaded, and what to do.
        hint: String,
        /// Why loading failed.
        source: headroom_lstm::Error,
    },

    /// No series is long enough for a single forecast origin.
    #[error(
        "no series is long enough for one forecast origin: the longest has {longest} bins of {step} ({span}), and \
         an origin needs 2 days of history before it and --horizon ({horizon}) after it; give longer data or a \
         shorter --horizon"
    )]
    NothingToScore {
        /// Bins of the longest series.
        longest: usize,
        /// The step, formatted.
        step: String,
        /// The longest series' span, formatted.
        span: String,
        /// The horizon, formatted.
        horizon: String,
    },

    /// The backtest would hold more forecast values than [`MAX_FORECAST_VALUES`](crate::MAX_FORECAST_VALUES).
    #[error(
        "{pairs} (series, origin) pairs × {horizon} bins × {models} models would be {values} forecast values \
         (more than {max}, 2 GiB): space the origins out (--origin-every, now every {every}), shorten --horizon, \
         or run fewer --models",
        max = crate::MAX_FORECAST_VALUES
    )]
    TooLarge {
        /// (series, origin) pairs.
        pairs: usize,
        /// Bins per forecast.
        horizon: usize,
        /// Models run.
        models: usize,
        /// The forecast values that would be held.
        values: usize,
        /// The origin spacing, formatted.
        every: String,
    },

    /// An output directory could not be created.
    #[error("creating {}", path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },

    /// A forecasts file whose name says neither Parquet nor CSV.
    #[error("--out {}: must end in .parquet or .csv", path.display())]
    ForecastsFormat {
        /// The file asked for.
        path: PathBuf,
    },

    /// The report could not be written.
    #[error("writing the report {}", path.display())]
    Report {
        /// The report file.
        path: Box<Path>,
        /// Why.
        source: headroom_collect::Error,
    },

    /// A plot of the report could not be drawn.
    #[error("drawing the report's {plot} plot: {message}")]
    Plot {
        /// Which plot.
        plot: &'static str,
        /// plotters' error.
        message: String,
    },

    /// A signal stopped the work before anything was written.
    /// A file the backtest reads could not be read.
    #[error("reading {}", path.display())]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },

    /// The LSTM config for cross-validation is not one, or not for the backtest's grid step and horizon.
    #[error("{}: cannot cross-validate with this LSTM configuration: {why}", path.display())]
    LstmConfig {
        /// The file (or where the config came from).
        path: std::path::PathBuf,
        /// Why.
        why: String,
    },

    #[error("{0}")]
    Interrupted(#[from] headroom_core::Interrupted),

    /// The data or the limits could not be read or resampled, or an output file not written.
    #[error(transparent)]
    Collect(#[from] headroom_collect::Error),

    /// The evaluation failed.
    #[error(transparent)]
    Forecast(#[from] headroom_forecast::Error),

    /// The replay or the model registry failed.
    #[error(transparent)]
    Engine(Box<headroom_engine::Error>),

    /// The replayed policy (`--config`) could not be loaded.
    #[error(transparent)]
    Remediate(#[from] headroom_remediate::Error),

    /// A data-model rule was broken.
    #[error(transparent)]
    Core(#[from] headroom_core::Error),

    /// scores.json could not be made.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

impl Error {
    /// The error of another crate this one passes on unchanged (its message
    /// is this error's message), for callers that sort errors by kind.
    pub fn wrapped(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Collect(e) => Some(e),
            Error::Forecast(e) => Some(e),
            Error::Engine(e) => Some(e.as_ref()),
            Error::Remediate(e) => Some(e),
            Error::Core(e) => Some(e),
            Error::Json(e) => Some(e),
            _ => None,
        }
    }
}

impl From<headroom_engine::Error> for Error {
    fn from(e: headroom_engine::Error) -> Self {
        Error::Engine(Box::new(e))
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
