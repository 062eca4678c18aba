//! The network: stacked single-layer LSTMs over input patches, and an MLP
//! head that reads the last hidden state plus the seasonal channels and
//! emits the horizon's three quantiles at once (direct multi-horizon).
//!
//! The median is `base + residual`; p10 and p90 are the median minus/plus a
//! softplus, so the three quantiles never cross. With the peak head
//! (`peak_head`), one more output is the horizon's peak itself: the largest
//! value of the median path plus a softplus (the median of a maximum is
//! never below the maximum of the medians). Training minimises the pinball
//! loss of the three quantiles plus a weighted pinball loss of the peak —
//! the peak head's, or else the p90 path's largest value — against the
//! horizon's largest value ([`training_loss`]).

use candle_core::{IndexOp, Module, Result, Tensor};
use candle_nn::{LSTM, LSTMConfig, Linear, RNN, VarBuilder};

use crate::config::LstmConfig as Config;

/// The global LSTM forecaster network.
#[derive(Debug, Clone)]
pub struct LstmNet {
    layers: Vec<LSTM>,
    head_hidden: Linear,
    head_out: Linear,
    horizon: usize,
    peak_head: bool,
}

/// What the network forecasts for a batch, in scaled units.
#[derive(Debug, Clone)]
pub struct Output {
    /// p10, p50, p90 per step: `(B, 3, horizon)`.
    pub paths: Tensor,
    /// The peak head's median of the horizon's largest value, `(B)`, when the network has one.
    pub peak: Option<Tensor>,
}

impl LstmNet {
    /// Builds the layers under `vb`: `lstm{i}`, `head.hidden`, `head.out`.
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        let mut layers = Vec::with_capacity(cfg.layers);
        for i in 0..cfg.layers {
            let input = if i == 0 { cfg.step_features() } else { cfg.hidden };
            layers.push(candle_nn::lstm(input, cfg.hidden, LSTMConfig::default(), vb.pp(format!("lstm{i}")))?);
        }
        let head_hidden =
            candle_nn::linear(cfg.hidden + cfg.context_features(), cfg.head_hidden, vb.pp("head.hidden"))?;
        let outputs = 3 * cfg.horizon + usize::from(cfg.peak_head);
        let head_out = candle_nn::linear(cfg.head_hidden, outputs, vb.pp("head.out"))?;
        Ok(Self { layers, head_hidden, head_out, horizon: cfg.horizon, peak_head: cfg.peak_head })
    }

    /// `seq (B, patches, step_features)`, `ctx (B, context)`, `base (B, horizon)`
    /// → the quantile paths and the peak ([`Output`]), in scaled units.
    pub fn forward(&self, seq: &Tensor, ctx: &Tensor, base: &Tensor) -> Result<Output> {
        let (b, steps, _) = seq.dims3()?;
        let mut xs: Vec<Tensor> = (0..steps).map(|t| seq.i((.., t, ..))?.contiguous()).collect::<Result<_>>()?;
        for layer in &self.layers {
            let mut state = layer.zero_state(b)?;
            let mut hs = Vec::with_capacity(steps);
            for x in &xs {
                state = layer.step(x, &state)?;
                hs.push(state.h().clone());
            }
            xs = hs;
        }
        let h = xs.pop().expect("at least one patch");
        let z = if ctx.dim(1)? > 0 { Tensor::cat(&[&h, ctx], 1)? } else { h };
        let all = self.head_out.forward(&self.head_hidden.forward(&z)?.gelu()?)?;
        // Without a peak head the output is exactly the paths (no narrowing:
        // the same graph, hence the same weights, as before the head existed).
        let paths = if self.peak_head { all.narrow(1, 0, 3 * self.horizon)? } else { all.clone() };
        let o = paths.reshape((b, 3, self.horizon))?;
        let mid = (base + o.i((.., 1, ..))?)?;
        let lo = (&mid - softplus(&o.i((.., 0, ..))?)?)?;
        let hi = (&mid + softplus(&o.i((.., 2, ..))?)?)?;
        let peak = if self.peak_head {
            let extra = all.narrow(1, 3 * self.horizon, 1)?.squeeze(1)?;
            Some((mid.max(1)? + softplus(&extra)?)?)
        } else {
            None
        };
        Ok(Output { paths: Tensor::stack(&[lo, mid, hi], 1)?, peak })
    }
}

/// `log(1 + e^x)`, computed stably as `relu(x) + log(1 + e^{−|x|})`.
fn softplus(x: &Tensor) -> Result<Tensor> {
    x.relu()? + (x.abs()?.neg()?.exp()? + 1.0)?.log()?
}

/// Mean pinball loss of `pred (B, 3, H)` against `target (B, H)` at `quantiles`.
pub fn pinball_loss(pred: &Tensor, target: &Tensor, quantiles: [f64; 3]) -> Result<Tensor> {
    let mut total: Option<Tensor> = None;
    for (j, q) in quantiles.iter().enumerate() {
        let d = (target - pred.i((.., j, ..))?)?;
        let l = (d.affine(*q, 0.0)?.maximum(&d.affine(q - 1.0, 0.0)?)?).mean_all()?;
        total = Some(match total {
            None => l,
            Some(t) => (t + l)?,
        });
    }
    total.expect("three quantiles") / 3.0
}

/// Pinball loss at `quantile` of the horizon's peak: the largest value of the
/// p90 path `pred[:, 2, :]` against the largest target value, averaged over
/// the batch. Per-step quantiles alone say little about the largest value of
/// the next 48 h, which is what "will it cross the threshold" asks.
pub fn peak_loss(pred: &Tensor, target: &Tensor, quantile: f64, moves_median: bool) -> Result<Tensor> {
    let hi = pred.i((.., 2, ..))?;
    let hi = if moves_median {
        hi
    } else {
        // The same values; the gradient reaches the upper spread only.
        let mid = pred.i((.., 1, ..))?;
        (mid.detach() + (hi - &mid)?)?
    };
    let d = (target.max(1)? - hi.max(1)?)?;
    d.affine(quantile, 0.0)?.maximum(&d.affine(quantile - 1.0, 0.0)?)?.mean_all()
}

/// Pinball loss at `quantile` of the peak head's output `peak (B)` against
/// the largest target value, averaged over the batch.
pub fn peak_head_loss(peak: &Tensor, target: &Tensor, quantile: f64) -> Result<Tensor> {
    let d = (target.max(1)? - peak)?;
    d.affine(quantile, 0.0)?.maximum(&d.affine(quantile - 1.0, 0.0)?)?.mean_all()
}

/// What training minimises and validation reports: [`pinball_loss`] of the
/// paths plus `peak_weight` × the pinball loss at `peak_quantile` of the peak:
/// the peak head's ([`peak_head_loss`]) when the network has one, else the
/// p90 path's largest value ([`peak_loss`]).
pub fn training_loss(pred: &Output, target: &Tensor, cfg: &Config) -> Result<Tensor> {
    let loss = pinball_loss(&pred.paths, target, cfg.quantiles)?;
    if cfg.peak_weight <= 0.0 {
        return Ok(loss);
    }
    let peak = match &pred.peak {
        Some(peak) => peak_head_loss(peak, target, cfg.peak_quantile)?,
        None => peak_loss(&pred.paths, target, cfg.peak_quantile, cfg.peak_moves_median)?,
    };
    loss + (peak * cfg.peak_weight)?
}
