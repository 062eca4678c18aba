//! headroom's forecasting layer, without the LSTM.
//!
//! This crate owns the [`Forecaster`] trait ([`forecaster`]), the baselines
//! ([`baselines`]), the reference evaluation protocol ([`protocol`]), the
//! backtest over it ([`evaluate`]), the `auto` model's choice of the best
//! model so far ([`auto`]), the accuracy metrics ([`metrics`]) and online
//! calibration of a model's bands from a series' own recent errors
//! ([`online`]). It must
//! not do IO, touch the collectors, or know about remediation; the LSTM lives
//! in `headroom-lstm` behind the same trait.

pub mod auto;
pub mod baselines;
pub mod error;
pub mod evaluate;
pub mod forecaster;
pub mod metrics;
pub mod online;
pub mod protocol;

pub use error::{Error, Result};
pub use forecaster::{Fitted, Forecaster, History};
