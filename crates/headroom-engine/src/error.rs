//! Errors of a cycle.

/// What stopped a cycle.
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
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
