//! The model's configuration: architecture, features and training knobs.
//! Stored verbatim in `card.json` beside the weights.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The forecast the network's median is a residual over (in scaled units).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Base {
    /// No base: the network predicts the median directly.
    Zero,
    /// Daily seasonal naive: the last day repeated.
    SnaiveDaily,
    /// The mean of the last days (up to seven) at the same time of day.
    SeasonalMean,
    /// The median of the last days (up to seven) at the same time of day:
    /// a spike on one of them moves it less than the mean.
    SeasonalMedian,
}

/// The widest `hidden` / `head_hidden` accepted.
pub const MAX_WIDTH: usize = 4096;

/// The most weights a network may have (about 400 MB of f32).
pub const MAX_PARAMETERS: usize = 100_000_000;

/// Hyper-parameters and feature set of the global LSTM.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LstmConfig {
    /// Grid step the model was built for (ms); 15 minutes.
    #[serde(default = "default_step_ms")]
    pub step_ms: i64,
    /// Input window in bins (7 days = 672). Shorter histories (down to
    /// `min_history`) are padded by repeating their first day, and the padding is flagged.
    #[serde(default = "default_window")]
    pub window: usize,
    /// Fewest bins of history the model accepts (2 days = 192); fewer is `TooShort`.
    #[serde(default = "default_min_history")]
    pub min_history: usize,
    /// Bins per input patch (16 = 4 h): the LSTM steps over patches, not bins.
    #[serde(default = "default_patch")]
    pub patch: usize,
    /// LSTM hidden size.
    #[serde(default = "default_hidden")]
    pub hidden: usize,
    /// Stacked LSTM layers.
    #[serde(default = "default_layers")]
    pub layers: usize,
    /// Width of the hidden layer of the output head.
    #[serde(default = "default_head_hidden")]
    pub head_hidden: usize,
    /// Bins forecast (192 = 48 h).
    #[serde(default = "default_horizon")]
    pub horizon: usize,
    /// The quantiles produced, in order.
    #[serde(default = "default_quantiles")]
    pub quantiles: [f64; 3],
    /// Time-of-day and day-of-week (sin/cos) inputs.
    #[serde(default = "yes")]
    pub calendar: bool,
    /// Seasonal channels fed to the head: last day, last week, and the
    /// multi-day mean at the same time of day, over the horizon.
    #[serde(default = "yes")]
    pub seasonal_channels: bool,
    /// One more seasonal channel: the largest value at the same time of day
    /// over the window's days (up to seven), so a spike that recurs on some
    /// days (a nightly job) can reach the upper quantiles and the peak, where
    /// the multi-day mean smooths it away. Off by default: cross-validated by
    /// machine it bought fewer under-provisioned hours and more saturation
    /// recall for fewer series with calibrated bands (see the card's notes).
    #[serde(default)]
    pub seasonal_max: bool,
    /// What the median is a residual over.
    #[serde(default = "default_base")]
    pub base: Base,
    /// Scaled inputs and targets are clipped to ±this.
    #[serde(default = "default_clip")]
    pub clip: f64,
    /// Seed of weight initialisation, shuffling and augmentation.
    #[serde(default)]
    pub seed: u64,
    /// AdamW learning rate (peak; cosine decay to 10 %).
    #[serde(default = "default_lr")]
    pub lr: f64,
    /// AdamW weight decay.
    #[serde(default = "default_weight_decay")]
    pub weight_decay: f64,
    /// Samples per training step.
    #[serde(default = "default_batch")]
    pub batch: usize,
    /// Most training steps.
    #[serde(default = "default_max_steps")]
    pub max_steps: usize,
    /// Steps between validation passes.
    #[serde(default = "default_eval_every")]
    pub eval_every: usize,
    /// Validation passes without improvement before stopping.
    #[serde(default = "default_patience")]
    pub patience: usize,
    /// Bins between consecutive training origins of one series.
    #[serde(default = "default_stride")]
    pub stride: usize,
    /// Days of origins at the end of each series' training part held out for
    /// validation (early stopping and interval calibration).
    #[serde(default = "default_val_days")]
    pub val_days: usize,
    /// Probability that a training window is cut short and padded (teaches the
    /// model the padding used for short histories).
    #[serde(default = "default_pad_prob")]
    pub pad_prob: f64,
    /// Probability that a training sample gets a synthetic level shift: from a
    /// random bin `shift_min_age` bins to three days before the origin on (through the target), every value
    /// moves by a random multiple (±0.5–2) of the window's standard deviation.
    /// Teaches the network to follow regime changes the training series rarely show.
    #[serde(default = "default_shift_prob")]
    pub shift_prob: f64,
    /// Fewest bins between a synthetic level shift and the origin (at most a day).
    #[serde(default = "default_shift_min_age")]
    pub shift_min_age: usize,
    /// Bins of recent history whose range bounds the interval: p90 never
    /// exceeds the larger of the median and the maximum of the last
    /// `envelope` bins (p10 likewise below); 0 turns it off. Default: one
    /// horizon (48 h), a persistence prior for peaks, so a saturation alarm
    /// from p90 needs the median or a recent peak to reach the threshold.
    #[serde(default = "default_envelope")]
    pub envelope: usize,
    /// Widen/narrow p10 and p90 on the validation split so each misses 10 % (conformal-style).
    #[serde(default = "yes")]
    pub calibrate: bool,
    /// Round every forecast quantile to the nearest value the input window
    /// holds, unless it lies farther beyond the window's range than half the
    /// smallest gap between its values ([`headroom_core::Quantiles::snap_to`]):
    /// series that move in steps or park at one level get quantiles they can
    /// take, trends keep theirs. Inference only; the weights do not depend on it.
    #[serde(default = "yes")]
    pub snap_to_window: bool,
    /// Recalibrate each forecast's bands from the series' own recent errors
    /// ([`headroom_forecast::online`]): every forecast comes with a hindcast
    /// from one horizon earlier, in the same batch, and the spreads of each
    /// lead-time bucket are scaled so the hindcast's bands would have held
    /// the nominal share of what happened. Inference only.
    #[serde(default)]
    pub online_calibration: bool,
    /// Lead-time buckets of online calibration, each with its own factors.
    #[serde(default = "default_online_buckets")]
    pub online_buckets: usize,
    /// Hindcast actuals that weigh as much as the model's own calibration in
    /// online calibration (see [`headroom_forecast::online::OnlineCalibration::prior`]).
    #[serde(default = "default_online_prior")]
    pub online_prior: f64,
    /// A peak head: one more output, the median (`peak_quantile`) of the
    /// horizon's largest value, trained by the peak loss instead of the p90
    /// path's largest value, so the per-step quantiles are trained by their
    /// pinball loss alone. At inference the p90 path is held to it: cut at
    /// the peak where it reaches above, raised to it at its highest step
    /// where it stays below (never below the median). Off by default: by
    /// cross-validation it did not beat the peak loss on the p90 path (see
    /// the card's notes).
    #[serde(default)]
    pub peak_head: bool,
    /// Weight of the peak loss beside the mean pinball loss of the three
    /// quantiles (0 turns it off). Default a third (0.3333): the horizon's
    /// peak counts as one more output scored beside the three quantiles.
    #[serde(default = "default_peak_weight")]
    pub peak_weight: f64,
    /// The quantile of the coming horizon's largest value that the largest
    /// value of the p90 path is trained toward (pinball loss): the saturation
    /// flag and the replicas for a peak read that value. Default 0.5.
    #[serde(default = "default_peak_quantile")]
    pub peak_quantile: f64,
    /// Whether the peak loss may move the median: its gradient reaches the
    /// p90 path's largest value through the median and the upper spread
    /// alike (true), or through the upper spread only (false, the default),
    /// so the median is trained by its pinball loss alone and the peak
    /// shapes only the upper tail. Cross-validated by machine, false took
    /// mean MASE 1.091 -> 1.063 with saturation P/R from p90 about the same
    /// (0.902/0.920 -> 0.900/0.917; see the card's notes). Models trained
    /// before the field existed moved it.
    #[serde(default)]
    pub peak_moves_median: bool,
}

fn default_step_ms() -> i64 {
    15 * 60_000
}
fn default_window() -> usize {
    672
}
fn default_min_history() -> usize {
    192
}
fn default_patch() -> usize {
    16
}
fn default_hidden() -> usize {
    64
}
fn default_layers() -> usize {
    1
}
fn default_head_hidden() -> usize {
    256
}
fn default_horizon() -> usize {
    192
}
fn default_quantiles() -> [f64; 3] {
    [0.1, 0.5, 0.9]
}
fn default_online_buckets() -> usize {
    4
}
fn default_online_prior() -> f64 {
    192.0
}
fn default_peak_weight() -> f64 {
    0.3333
}
fn default_peak_quantile() -> f64 {
    0.5
}
fn yes() -> bool {
    true
}
fn default_base() -> Base {
    Base::SeasonalMedian
}
fn default_clip() -> f64 {
    30.0
}
fn default_lr() -> f64 {
    2e-3
}
fn default_weight_decay() -> f64 {
    1e-4
}
fn default_batch() -> usize {
    64
}
fn default_max_steps() -> usize {
    8000
}
fn default_eval_every() -> usize {
    100
}
fn default_patience() -> usize {
    10
}
fn default_stride() -> usize {
    2
}
fn default_val_days() -> usize {
    3
}
fn default_shift_prob() -> f64 {
    0.25
}
fn default_shift_min_age() -> usize {
    48
}
fn default_envelope() -> usize {
    192
}
fn default_pad_prob() -> f64 {
    0.1
}

impl Default for LstmConfig {
    fn default() -> Self {
        serde_json::from_str("{}").expect("every field has a default")
    }
}

impl LstmConfig {
    /// Bins per day on the model's grid.
    pub fn bins_per_day(&self) -> usize {
        (86_400_000 / self.step_ms) as usize
    }

    /// Patches in the input window.
    pub fn patches(&self) -> usize {
        self.window / self.patch
    }

    /// Inputs per LSTM step: the patch's values, a padding flag, and calendar.
    pub fn step_features(&self) -> usize {
        self.patch + 1 + if self.calendar { 4 } else { 0 }
    }

    /// Inputs of the head besides the LSTM state.
    pub fn context_features(&self) -> usize {
        let channels = 3 + usize::from(self.seasonal_max);
        let seasonal = if self.seasonal_channels { channels * self.horizon + 1 } else { 0 };
        seasonal + if self.calendar { 4 } else { 0 }
    }

    /// A short name of the input features; a loaded card must match it.
    pub fn feature_set(&self) -> String {
        let mut f = vec![format!("values/patch{}", self.patch), "pad_flag".to_owned()];
        if self.calendar {
            f.push("calendar(tod,dow sin/cos)".into());
        }
        if self.seasonal_channels {
            f.push(if self.seasonal_max {
                "seasonal(last_day,last_week,mean_days,max_days)".into()
            } else {
                "seasonal(last_day,last_week,mean_days)".into()
            });
        }
        f.push(format!("base={}", serde_json::to_value(self.base).expect("enum").as_str().unwrap_or("?")));
        f.join("+")
    }

    /// This config with the inference-only fields (`envelope`,
    /// `snap_to_window`, `calibrate`, `online_*`) of `other`: what a model trained with
    /// this config forecasts like when asked to follow `other`.
    pub fn with_inference_of(&self, other: &LstmConfig) -> LstmConfig {
        LstmConfig {
            envelope: other.envelope,
            snap_to_window: other.snap_to_window,
            calibrate: other.calibrate,
            online_calibration: other.online_calibration,
            online_buckets: other.online_buckets,
            online_prior: other.online_prior,
            ..self.clone()
        }
    }

    /// Whether weights trained with this config are the weights `other`
    /// trains: the two differ at most in inference-only fields.
    pub fn trains_like(&self, other: &LstmConfig) -> bool {
        self.with_inference_of(other) == *other
    }

    /// The same model trained faster, for cross-validation, which trains one
    /// model per fold: training origins every 8 bins (not 2), at most 1,500
    /// steps, early stopping after 5 passes without improvement. Architecture,
    /// features, losses and inference are unchanged, so a cross-validated
    /// score judges this recipe; the shipped model (more windows, more
    /// steps) scores a little better than its fast twin on the same data.
    pub fn for_cross_validation(&self) -> LstmConfig {
        LstmConfig {
            stride: self.stride.max(8),
            max_steps: self.max_steps.min(1500),
            patience: self.patience.min(5),
            ..self.clone()
        }
    }

    /// Checks ranges once, naming the offending field.
    /// About how many weights the network has (LSTM layers and the head), to
    /// refuse a configuration too large to allocate before trying.
    pub fn parameter_estimate(&self) -> usize {
        let (h, hh) = (self.hidden as u128, self.head_hidden as u128);
        let input = self.step_features() as u128;
        let seasonal = self.context_features() as u128;
        let lstm = 4 * h * (input + h + 2) + (self.layers.saturating_sub(1) as u128) * 4 * h * (2 * h + 2);
        let head = (h + seasonal + 1) * hh + (hh + 1) * (self.horizon as u128 * 3 + u128::from(self.peak_head));
        usize::try_from(lstm + head).unwrap_or(usize::MAX)
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |field: &'static str, value: String, why: &str| Err(Error::Config { field, value, why: why.into() });
        if self.step_ms <= 0 || 86_400_000 % self.step_ms != 0 {
            return bad("step_ms", self.step_ms.to_string(), "must divide one day");
        }
        let day = self.bins_per_day();
        if self.patch == 0 || !self.window.is_multiple_of(self.patch) {
            return bad("window", self.window.to_string(), "must be a positive multiple of `patch`");
        }
        if self.min_history < day + 1 || self.min_history > self.window {
            return bad("min_history", self.min_history.to_string(), "must be more than one day and at most `window`");
        }
        if self.horizon == 0 {
            return bad("horizon", "0".into(), "must be at least one bin");
        }
        if self.hidden == 0 || self.layers == 0 || self.head_hidden == 0 {
            return bad("hidden", self.hidden.to_string(), "hidden, layers and head_hidden must be positive");
        }
        if self.quantiles.windows(2).any(|w| w[0] >= w[1]) || self.quantiles.iter().any(|q| !(0.0..1.0).contains(q)) {
            return bad("quantiles", format!("{:?}", self.quantiles), "must be increasing and inside (0, 1)");
        }
        if self.batch == 0 || self.max_steps == 0 || self.eval_every == 0 || self.stride == 0 {
            return bad("batch", self.batch.to_string(), "batch, max_steps, eval_every and stride must be positive");
        }
        if self.lr.is_nan() || self.lr <= 0.0 {
            return bad("lr", self.lr.to_string(), "must be positive");
        }
        // Sizes are bounded before anything is allocated: an absurd value is
        // an error naming the field, not an allocation failure that aborts.
        let at_most = |field: &'static str, value: usize, max: usize, what: &str| {
            if value > max { bad(field, value.to_string(), &format!("must be at most {max} ({what})")) } else { Ok(()) }
        };
        at_most("window", self.window, 28 * day, "four weeks of bins")?;
        at_most("horizon", self.horizon, 14 * day, "two weeks of bins")?;
        at_most("hidden", self.hidden, MAX_WIDTH, "LSTM width")?;
        at_most("head_hidden", self.head_hidden, MAX_WIDTH, "head width")?;
        at_most("layers", self.layers, 8, "stacked LSTM layers")?;
        at_most("batch", self.batch, 4096, "windows per training step")?;
        at_most("max_steps", self.max_steps, 10_000_000, "training steps")?;
        let weights = self.parameter_estimate();
        if weights > MAX_PARAMETERS {
            return bad(
                "hidden",
                self.hidden.to_string(),
                &format!("the network would have about {weights} weights, more than {MAX_PARAMETERS}"),
            );
        }
        if !(0.0..=1.0).contains(&self.shift_prob) {
            return bad("shift_prob", self.shift_prob.to_string(), "must be in [0, 1]");
        }
        if !(0.0..=1.0).contains(&self.pad_prob) {
            return bad("pad_prob", self.pad_prob.to_string(), "must be in [0, 1]");
        }
        if self.online_buckets == 0 || self.online_buckets > self.horizon {
            return bad("online_buckets", self.online_buckets.to_string(), "must be 1 to `horizon`");
        }
        if !(self.online_prior >= 0.0 && self.online_prior.is_finite()) {
            return bad("online_prior", self.online_prior.to_string(), "must be a finite number, 0 or more");
        }
        if !(self.peak_weight >= 0.0 && self.peak_weight.is_finite()) {
            return bad("peak_weight", self.peak_weight.to_string(), "must be a finite number, 0 or more");
        }
        if !(self.peak_quantile > 0.0 && self.peak_quantile < 1.0) {
            return bad("peak_quantile", self.peak_quantile.to_string(), "must be inside (0, 1)");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absurd_sizes_are_refused_before_anything_is_allocated() {
        assert!(LstmConfig::default().validate().is_ok());
        let cases: [(&str, LstmConfig); 5] = [
            ("hidden", LstmConfig { hidden: 1 << 40, ..Default::default() }),
            ("window", LstmConfig { window: 16 * 100_000, ..Default::default() }),
            ("horizon", LstmConfig { horizon: 1 << 30, ..Default::default() }),
            ("batch", LstmConfig { batch: usize::MAX, ..Default::default() }),
            // Each width allowed on its own, but together too many weights.
            ("hidden", LstmConfig { hidden: 4096, layers: 8, head_hidden: 4096, ..Default::default() }),
        ];
        for (field, cfg) in cases {
            let err = cfg.validate().unwrap_err().to_string();
            assert!(err.contains(field) && err.contains("at most") || err.contains("weights"), "{field}: {err}");
        }
        let default = LstmConfig::default();
        assert!(default.parameter_estimate() < 1_000_000, "{}", default.parameter_estimate());
    }
}
