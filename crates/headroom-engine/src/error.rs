//! Errors of a cycle and of the runner around it.

/// What stopped a cycle or a step.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A detector or the policy refused its input.
    #[error(transparent)]
    Remediate(#[from] headroom_remediate::Error),
    /// A signal stopped the work before it finished.
    #[error("{0}")]
    Interrupted(#[from] headroom_core::Interrupted),
    /// Forecasting failed for a reason other than one series' data.
    #[error(transparent)]
    Forecast(#[from] headroom_forecast::Error),
    /// The trained model could not be loaded.
    #[error("{hint}: {source}")]
    Model {
        /// What was being loaded, and what to do.
        hint: String,
        /// Why it failed.
        source: headroom_lstm::Error,
    },
    /// The data could not be read or resampled.
    #[error(transparent)]
    Collect(#[from] headroom_collect::Error),
    /// The audit log or an actuator failed.
    #[error(transparent)]
    Actuate(#[from] headroom_actuate::Error),
    /// The data holds nothing to plan on.
    #[error("{0}")]
    NoData(String),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
