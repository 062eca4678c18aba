//! Model files: `model.safetensors` (the weights, through candle's `VarMap`)
//! and `card.json` (everything needed to use and judge them).
//! [`LstmModel::load`] refuses a card that does not match an [`Expectation`].

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::LstmConfig;
use crate::error::{Error, Result};
use crate::forecaster::{Calibration, LstmModel};
use crate::train::TrainReport;

/// Version of the card + weights layout; bump on any incompatible change.
pub const FORMAT_VERSION: u32 = 2;
/// Weights file name.
pub const WEIGHTS: &str = "model.safetensors";
/// Card file name.
pub const CARD: &str = "card.json";

/// How the model was trained: the command, the part of the data used, and
/// the training report itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingInfo {
    /// The exact command that trained it.
    pub command: String,
    /// Which part of each series was used.
    pub cut: String,
    /// What training did (samples, steps, losses, calibration, time, data fingerprint).
    #[serde(flatten)]
    pub report: TrainReport,
}

/// `card.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelCard {
    /// Layout version ([`FORMAT_VERSION`]).
    pub format_version: u32,
    /// Always `lstm`.
    pub model: String,
    /// Architecture in words.
    pub architecture: String,
    /// Grid step (ms).
    pub step_ms: i64,
    /// Input window (bins).
    pub window: usize,
    /// Horizon (bins).
    pub horizon: usize,
    /// Quantiles produced.
    pub quantiles: [f64; 3],
    /// How inputs and targets are scaled.
    pub scaling: String,
    /// Input features; must match on load.
    pub feature_set: String,
    /// The full configuration.
    pub config: LstmConfig,
    /// Interval calibration in use.
    pub calibration: Calibration,
    /// How it was trained (absent for an untrained model).
    pub training: Option<TrainingInfo>,
    /// Backtest scores, filled by the caller (e.g. score.py's JSON).
    #[serde(default)]
    pub backtest: Option<serde_json::Value>,
    /// Free notes: the reasoning behind the choices, experiments tried.
    #[serde(default)]
    pub notes: Vec<String>,
}

impl ModelCard {
    /// A card describing an untrained model of `cfg`.
    pub fn new(cfg: &LstmConfig) -> Self {
        Self {
            format_version: FORMAT_VERSION,
            model: crate::forecaster::NAME.into(),
            architecture: format!(
                "{} LSTM layer(s) of {} units over {} patches of {} bins; MLP head ({} units, GELU) on the last \
                 state + context -> {} steps x 3 quantiles{}; median = {:?} base + residual, p10/p90 = median -/+ softplus; \
                 p95/p99 = median + calibrated multiples of the p90 spread{}{}",
                cfg.layers,
                cfg.hidden,
                cfg.patches(),
                cfg.patch,
                cfg.head_hidden,
                cfg.horizon,
                if cfg.peak_head { " + the median of the horizon's peak" } else { "" },
                cfg.base,
                if cfg.peak_head { "; the p90 path held to the peak" } else { "" },
                if cfg.snap_to_window {
                    "; each quantile rounded to the nearest value of the input window"
                } else {
                    ""
                }
            ),
            step_ms: cfg.step_ms,
            window: cfg.window,
            horizon: cfg.horizon,
            quantiles: cfg.quantiles,
            scaling: "per window: (x - mean of last day) / seasonal MAE of the window (floored at 5% of std, \
                      0.1% of |level|, 1e-6); clipped to +-clip"
                .into(),
            feature_set: cfg.feature_set(),
            config: cfg.clone(),
            calibration: Calibration::default(),
            training: None,
            backtest: None,
            notes: Vec::new(),
        }
    }
}

/// What the caller needs from a model it loads.
#[derive(Debug, Clone, PartialEq)]
pub struct Expectation {
    /// Grid step (ms).
    pub step_ms: i64,
    /// Horizon (bins).
    pub horizon: usize,
    /// Input feature set ([`LstmConfig::feature_set`]); `None` accepts any.
    pub feature_set: Option<String>,
    /// Card layout version.
    pub format_version: u32,
    /// The quantiles the caller serves as p10, p50 and p90: a model trained
    /// for others (say 0.2/0.5/0.8) is refused, never served under those names.
    pub quantiles: [f64; 3],
}

impl Expectation {
    /// The reference protocol (15-minute bins, 48 h) with the default features.
    pub fn reference() -> Self {
        let cfg = LstmConfig::default();
        Self {
            step_ms: cfg.step_ms,
            horizon: cfg.horizon,
            feature_set: Some(cfg.feature_set()),
            format_version: FORMAT_VERSION,
            quantiles: [0.1, 0.5, 0.9],
        }
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io { path: path.to_path_buf(), source }
}

impl LstmModel {
    /// Writes `dir/model.safetensors` and `dir/card.json` (creating `dir`).
    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let weights = dir.join(WEIGHTS);
        self.varmap
            .save(&weights)
            .map_err(|e| Error::Io { path: weights.clone(), source: std::io::Error::other(e.to_string()) })?;
        let card = dir.join(CARD);
        let mut c = self.card.clone();
        c.calibration = self.calibration;
        let text = serde_json::to_string_pretty(&c).map_err(|source| Error::Card { path: card.clone(), source })?;
        std::fs::write(&card, text + "\n").map_err(io(&card))?;
        Ok(())
    }

    /// Reads `dir/card.json`, checks it against `expected` (naming the first
    /// field that differs), then loads the weights.
    pub fn load(dir: &Path, expected: &Expectation) -> Result<Self> {
        let path: PathBuf = dir.join(CARD);
        let text = std::fs::read_to_string(&path).map_err(io(&path))?;
        let card = ModelCard::parse(&text, &path, expected)?;
        let mut model = LstmModel::init(card.config.clone())?;
        let weights = dir.join(WEIGHTS);
        model
            .varmap
            .load(&weights)
            .map_err(|e| Error::Io { path: weights.clone(), source: std::io::Error::other(e.to_string()) })?;
        model.calibration = card.calibration;
        model.card = card;
        Ok(model)
    }
}

impl ModelCard {
    /// Parses card JSON `text` and checks it against `expected`, naming the
    /// first field that differs, and its configuration's ranges: everything
    /// [`LstmModel::load`] checks before it builds the network. `path` is
    /// used in messages only.
    pub fn parse(text: &str, path: &Path, expected: &Expectation) -> Result<Self> {
        let card: ModelCard =
            serde_json::from_str(text).map_err(|source| Error::Card { path: path.to_path_buf(), source })?;
        let mismatch = |field: &'static str, card: String, expected: String| {
            Err(Error::Mismatch { path: path.to_path_buf(), field, card, expected })
        };
        if card.format_version != expected.format_version {
            return mismatch("format_version", card.format_version.to_string(), expected.format_version.to_string());
        }
        if card.step_ms != expected.step_ms {
            return mismatch("step_ms", card.step_ms.to_string(), expected.step_ms.to_string());
        }
        if card.horizon != expected.horizon {
            return mismatch("horizon", card.horizon.to_string(), expected.horizon.to_string());
        }
        if let Some(f) = &expected.feature_set
            && &card.feature_set != f
        {
            return mismatch("feature_set", format!("{:?}", card.feature_set), format!("{f:?}"));
        }
        if card.quantiles != expected.quantiles {
            return mismatch("quantiles", format!("{:?}", card.quantiles), format!("{:?}", expected.quantiles));
        }
        // The card's summary fields must say what its config builds.
        if card.config.quantiles != card.quantiles {
            return mismatch(
                "config.quantiles",
                format!("{:?}", card.config.quantiles),
                format!("{:?} (its `quantiles`)", card.quantiles),
            );
        }
        if card.config.feature_set() != card.feature_set {
            return mismatch(
                "config",
                format!("{:?}", card.config.feature_set()),
                format!("{:?} (its `feature_set`)", card.feature_set),
            );
        }
        if card.config.horizon != card.horizon {
            return mismatch(
                "config.horizon",
                card.config.horizon.to_string(),
                format!("{} (its `horizon`)", card.horizon),
            );
        }
        card.config.validate()?;
        Ok(card)
    }
}
