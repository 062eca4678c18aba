//! headroom's global LSTM forecaster (Candle, CPU).
//!
//! Owns: the model configuration ([`LstmConfig`]), input features and
//! scaling ([`features`]), the network ([`model`]), training with early
//! stopping and interval calibration ([`train()`]), the [`Forecaster`]
//! implementation `lstm` ([`LstmForecaster`]), and model files
//! (`model.safetensors` + `card.json`, [`card`]).
//!
//! Does not: read metrics or forecast files (the caller hands in
//! [`History`] slices), choose a fallback model (too-short or gappy
//! histories are errors for the caller to route), or touch the network.
//!
//! [`Forecaster`]: headroom_forecast::Forecaster
//! [`History`]: headroom_forecast::History

pub mod card;
pub mod config;
pub mod error;
pub mod features;
pub mod forecaster;
pub mod model;
pub mod train;

pub use card::{Expectation, ModelCard};
pub use config::{Base, LstmConfig};
pub use error::{Error, Result};
pub use forecaster::{Calibration, LstmForecaster, LstmModel, NAME};
pub use train::{TrainOptions, TrainReport, recalibrate, train};
