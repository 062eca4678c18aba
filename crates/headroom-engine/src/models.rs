//! The model registry: one place that turns a model name and a model
//! directory into a [`Forecaster`] and the fallback chain behind it.
//!
//! `plan`, `act`, `forecast`, the backtest and the daemon all load their
//! models here, so a name means the same model everywhere and a model that
//! cannot run the reference protocol is refused the same way.

use std::path::{Path, PathBuf};

use headroom_forecast::Forecaster;
use headroom_forecast::baselines::{BASELINES, baseline};
use headroom_forecast::protocol::Protocol;

use crate::error::{Error, Result};

/// The name of the trained LSTM model.
pub const LSTM: &str = headroom_lstm::NAME;

/// Where a model without enough history for a series turns: daily seasonal
/// naive (one day of history), else the last value.
pub const FALLBACKS: [&str; 2] = ["snaive-daily", "last"];

/// The fallback models, in order ([`FALLBACKS`]).
pub fn fallback_chain() -> Result<Vec<Box<dyn Forecaster>>> {
    FALLBACKS.iter().map(|n| Ok(baseline(n)?)).collect()
}

/// A model by name: `lstm` (from `model_dir`, made for the reference
/// protocol) or a baseline.
pub fn model(name: &str, model_dir: &Path) -> Result<Box<dyn Forecaster>> {
    if name != LSTM {
        return Ok(baseline(name)?);
    }
    let model = load_lstm(model_dir, &Protocol::reference())
        .map_err(|source| Error::Model { hint: loading_hint(model_dir), source })?;
    Ok(Box::new(headroom_lstm::LstmForecaster::new(model)))
}

/// The LSTM in `model_dir`, refused unless its card has `protocol`'s grid
/// step and horizon (any feature set this build understands).
pub fn load_lstm(model_dir: &Path, protocol: &Protocol) -> headroom_lstm::Result<headroom_lstm::LstmModel> {
    headroom_lstm::LstmModel::load(model_dir, &expectation(protocol))
}

/// What a model card must say to forecast on `protocol`: its grid step and
/// horizon, with any feature set this build understands.
pub fn expectation(protocol: &Protocol) -> headroom_lstm::Expectation {
    headroom_lstm::Expectation {
        step_ms: protocol.step_ms,
        horizon: protocol.horizon,
        feature_set: None,
        ..headroom_lstm::Expectation::reference()
    }
}

/// What was being loaded, and what to do when it cannot be.
pub fn loading_hint(model_dir: &Path) -> String {
    format!(
        "loading the LSTM from {} (train one with `headroom train --out {}`, or leave lstm out of --models: {})",
        model_dir.display(),
        model_dir.display(),
        BASELINES.join(",")
    )
}

/// A forecaster and its fallback chain, on the reference protocol: what a
/// cycle forecasts with.
#[derive(Debug)]
pub struct ModelSet {
    /// The forecaster's name as asked for (`lstm`, `snaive-daily`, …).
    pub name: String,
    /// The model directory it was loaded from (used for `lstm`).
    pub dir: PathBuf,
    forecaster: Box<dyn Forecaster>,
    fallbacks: Vec<Box<dyn Forecaster>>,
    /// The protocol forecasts are made on (grid step and horizon).
    pub protocol: Protocol,
}

impl ModelSet {
    /// Loads `name` (see [`model`]) and the fallback chain.
    pub fn load(name: &str, model_dir: &Path) -> Result<Self> {
        Ok(Self {
            name: name.to_owned(),
            dir: model_dir.to_owned(),
            forecaster: model(name, model_dir)?,
            fallbacks: fallback_chain()?,
            protocol: Protocol::reference(),
        })
    }

    /// The forecaster.
    pub fn forecaster(&self) -> &dyn Forecaster {
        self.forecaster.as_ref()
    }

    /// The fallback models, in order.
    pub fn fallbacks(&self) -> Vec<&dyn Forecaster> {
        self.fallbacks.iter().map(|m| m.as_ref()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_name_and_a_missing_lstm_say_what_to_do() {
        let err = model("prophet", Path::new("models/default")).unwrap_err().to_string();
        assert!(err.contains("prophet"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let err = ModelSet::load(LSTM, dir.path()).unwrap_err().to_string();
        assert!(err.contains("headroom train --out") && err.contains(&dir.path().display().to_string()), "{err}");
        let set = ModelSet::load("snaive-daily", dir.path()).unwrap();
        assert_eq!(set.fallbacks().iter().map(|m| m.name()).collect::<Vec<_>>(), FALLBACKS);
    }
}
