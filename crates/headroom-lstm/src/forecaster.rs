//! The trained model ([`LstmModel`]) and its [`Forecaster`] face
//! ([`LstmForecaster`], name `lstm`), which forecasts many series per forward pass.

use std::sync::Arc;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use headroom_core::{Forecast, Quantiles};
use headroom_forecast::{Fitted, Forecaster, History, online};
use serde::{Deserialize, Serialize};

use crate::card::ModelCard;
use crate::config::LstmConfig;
use crate::error::Result;
use crate::features::Inputs;
use crate::model::{LstmNet, training_loss};
use crate::train::{SplitMix64, sorted_vars};

/// The model's name in `--models` and in forecast files.
pub const NAME: &str = "lstm";

/// Rows per forward pass at inference (bounds peak memory).
const CHUNK: usize = 1024;

/// Multipliers of the p10 and p90 spreads around the median, fitted on the
/// validation split so that each side misses its nominal share; and the
/// upper tail: p95 and p99 as multiples of the (calibrated) p90 spread above
/// the median, fitted on the same split so that 5 % and 1 % lie above them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// Multiplier of `p50 − p10`.
    pub lo: f64,
    /// Multiplier of `p90 − p50`.
    pub hi: f64,
    /// `p95 − p50` as a multiple of the calibrated `p90 − p50`. A card
    /// without it (trained before the tail) gets the normal distribution's
    /// ratio, z(0.95)/z(0.9) = 1.2835.
    #[serde(default = "normal_p95")]
    pub p95: f64,
    /// `p99 − p50` as a multiple of the calibrated `p90 − p50` (normal: z(0.99)/z(0.9) = 1.8153).
    #[serde(default = "normal_p99")]
    pub p99: f64,
}

fn normal_p95() -> f64 {
    1.2835
}

fn normal_p99() -> f64 {
    1.8153
}

impl Default for Calibration {
    fn default() -> Self {
        Self { lo: 1.0, hi: 1.0, p95: normal_p95(), p99: normal_p99() }
    }
}

/// A (possibly trained) global LSTM with its card.
pub struct LstmModel {
    pub(crate) cfg: LstmConfig,
    pub(crate) varmap: VarMap,
    pub(crate) net: LstmNet,
    pub(crate) device: Device,
    /// Interval calibration applied to every forecast.
    pub calibration: Calibration,
    /// What is known about the model; written as `card.json`.
    pub card: ModelCard,
}

impl std::fmt::Debug for LstmModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LstmModel").field("cfg", &self.cfg).field("calibration", &self.calibration).finish()
    }
}

impl LstmModel {
    /// A fresh model with deterministic weights from `cfg.seed`: matrices
    /// uniform in ±1/√fan_in (the output layer ×0.1, so an untrained model
    /// forecasts about its base), biases zero except the LSTM forget gates (1).
    pub fn init(cfg: LstmConfig) -> Result<Self> {
        cfg.validate()?;
        let device = Device::Cpu;
        let varmap = VarMap::new();
        let net = LstmNet::new(&cfg, VarBuilder::from_varmap(&varmap, DType::F32, &device))?;
        let mut rng = SplitMix64::new(cfg.seed);
        for (name, var) in sorted_vars(&varmap) {
            let dims = var.dims().to_vec();
            let n: usize = dims.iter().product();
            let vals: Vec<f32> = if dims.len() == 2 {
                let mut bound = 1.0 / (dims[1] as f64).sqrt();
                if name.starts_with("head.out") {
                    bound *= 0.1;
                }
                (0..n).map(|_| ((2.0 * rng.next_f64() - 1.0) * bound) as f32).collect()
            } else if name.contains("bias_ih") {
                let hsz = n / 4;
                (0..n).map(|i| if (hsz..2 * hsz).contains(&i) { 1.0 } else { 0.0 }).collect()
            } else {
                vec![0.0; n]
            };
            var.set(&Tensor::from_vec(vals, dims, &device)?)?;
        }
        let card = ModelCard::new(&cfg);
        Ok(Self { cfg, varmap, net, device, calibration: Calibration::default(), card })
    }

    /// The model's configuration.
    pub fn config(&self) -> &LstmConfig {
        &self.cfg
    }

    /// Forecasts from now on with `cfg`'s inference-only settings (envelope,
    /// snapping, calibration on or off); refused, naming the first field that
    /// differs, when `cfg` would train other weights. The calibration is left
    /// as it is: refit it with [`crate::train::recalibrate`].
    pub fn follow(&mut self, cfg: &LstmConfig) -> Result<()> {
        if !self.cfg.trains_like(cfg) {
            // A config is plain numbers, flags and names: it always has a JSON form.
            let (ours, theirs) = (serde_json::to_value(&self.cfg).ok(), serde_json::to_value(cfg).ok());
            let field = ours
                .as_ref()
                .and_then(|o| o.as_object())
                .and_then(|o| {
                    o.iter().find(|(k, v)| theirs.as_ref().and_then(|t| t.get(k.as_str())) != Some(v)).map(|(k, _)| k)
                })
                .cloned()
                .unwrap_or_default();
            return Err(crate::Error::Config {
                field: "config",
                value: field,
                why: "differs from the config the weights were trained with (only envelope, snap_to_window, calibrate and online_* may)".into(),
            });
        }
        self.cfg = self.cfg.with_inference_of(cfg);
        self.card.config = self.cfg.clone();
        Ok(())
    }

    /// Fewest bins of history [`LstmModel::forecast`] accepts; route shorter
    /// series to a baseline before calling it.
    pub fn min_history(&self) -> usize {
        self.cfg.min_history
    }

    /// Every variable, in name order.
    pub fn vars(&self) -> Vec<(String, Var)> {
        sorted_vars(&self.varmap)
    }

    pub(crate) fn tensors(&self, inp: &Inputs) -> Result<(Tensor, Tensor, Tensor, Option<Tensor>)> {
        let b = inp.rows();
        let d = &self.device;
        let seq = Tensor::from_slice(&inp.seq, (b, self.cfg.patches(), self.cfg.step_features()), d)?;
        let ctx = Tensor::from_slice(&inp.ctx, (b, self.cfg.context_features()), d)?;
        let base = Tensor::from_slice(&inp.base, (b, self.cfg.horizon), d)?;
        let target =
            if inp.target.is_empty() { None } else { Some(Tensor::from_slice(&inp.target, (b, self.cfg.horizon), d)?) };
        Ok((seq, ctx, base, target))
    }

    fn slice(inp: &Inputs, cfg: &LstmConfig, from: usize, to: usize) -> Inputs {
        let (sf, cf, h) = (cfg.patches() * cfg.step_features(), cfg.context_features(), cfg.horizon);
        Inputs {
            seq: inp.seq[from * sf..to * sf].to_vec(),
            ctx: inp.ctx[from * cf..to * cf].to_vec(),
            base: inp.base[from * h..to * h].to_vec(),
            target: if inp.target.is_empty() { vec![] } else { inp.target[from * h..to * h].to_vec() },
            scaling: inp.scaling[from..to].to_vec(),
            envelope: inp.envelope[from..to].to_vec(),
        }
    }

    /// Raw (uncalibrated) quantiles in scaled units, `(rows, 3, horizon)`
    /// flattened, and the peak head's peak per row (empty without a peak head).
    pub(crate) fn raw(&self, inp: &Inputs) -> Result<(Vec<f32>, Vec<f32>)> {
        let mut out = Vec::with_capacity(inp.rows() * 3 * self.cfg.horizon);
        let mut peaks = Vec::new();
        for from in (0..inp.rows()).step_by(CHUNK) {
            let part = Self::slice(inp, &self.cfg, from, (from + CHUNK).min(inp.rows()));
            let (seq, ctx, base, _) = self.tensors(&part)?;
            let o = self.net.forward(&seq, &ctx, &base)?;
            out.extend(o.paths.flatten_all()?.to_vec1::<f32>()?);
            if let Some(peak) = o.peak {
                peaks.extend(peak.to_vec1::<f32>()?);
            }
        }
        Ok((out, peaks))
    }

    /// Mean validation pinball loss (scaled units).
    pub(crate) fn loss(&self, inp: &Inputs) -> Result<f64> {
        let mut total = 0.0;
        for from in (0..inp.rows()).step_by(CHUNK) {
            let to = (from + CHUNK).min(inp.rows());
            let part = Self::slice(inp, &self.cfg, from, to);
            let (seq, ctx, base, target) = self.tensors(&part)?;
            let pred = self.net.forward(&seq, &ctx, &base)?;
            let l = training_loss(&pred, &target.expect("validation targets"), &self.cfg)?;
            total += l.to_scalar::<f32>()? as f64 * (to - from) as f64;
        }
        Ok(total / inp.rows().max(1) as f64)
    }

    /// Fits the spread multipliers on `inp` (with targets); returns them and
    /// the p10–p90 coverage before and after.
    pub(crate) fn calibrate(&self, inp: &Inputs) -> Result<(Calibration, (f64, f64))> {
        let h = self.cfg.horizon;
        let (raw, _) = self.raw(inp)?;
        let get = |r: usize, k: usize| {
            (raw[(r * 3) * h + k] as f64, raw[(r * 3 + 1) * h + k] as f64, raw[(r * 3 + 2) * h + k] as f64)
        };
        let mut inside = 0usize;
        for r in 0..inp.rows() {
            for k in 0..h {
                let (lo, hi) = bounds(get(r, k), Calibration::default(), inp.envelope[r]);
                let y = inp.target[r * h + k] as f64;
                inside += usize::from(lo <= y && y <= hi);
            }
        }
        // Share of targets below the upper (above the lower) bound for a spread multiplier m.
        let share = |m: f64, upper: bool| -> f64 {
            let c = if upper {
                Calibration { hi: m, ..Calibration::default() }
            } else {
                Calibration { lo: m, ..Calibration::default() }
            };
            let mut ok = 0usize;
            for r in 0..inp.rows() {
                for k in 0..h {
                    let (lo, hi) = bounds(get(r, k), c, inp.envelope[r]);
                    let y = inp.target[r * h + k] as f64;
                    ok += usize::from(if upper { y <= hi } else { y >= lo });
                }
            }
            ok as f64 / (inp.rows() * h).max(1) as f64
        };
        // Bisection on the multiplier (monotone in it), within [1/4, 4].
        let fit = |target: f64, upper: bool| -> f64 {
            let (mut a, mut b) = (0.25f64, 4.0f64);
            for _ in 0..20 {
                let m = 0.5 * (a + b);
                if share(m, upper) < target {
                    a = m;
                } else {
                    b = m;
                }
            }
            // Rounded to 4 decimals: such values survive card.json exactly, so a
            // loaded model forecasts bit for bit what the trained one did.
            (b * 1e4).round() / 1e4
        };
        let (lo, hi) = (fit(1.0 - self.cfg.quantiles[0], false), fit(self.cfg.quantiles[2], true));
        // The tail: the smallest multiple t of the calibrated upper spread
        // with a share `level` of the targets at or below median + t·spread.
        let tail = |level: f64| -> f64 {
            let mut ratios: Vec<f64> = Vec::with_capacity(inp.rows() * h);
            for r in 0..inp.rows() {
                for k in 0..h {
                    let (_, mid, _) = get(r, k);
                    let (_, upper) =
                        bounds(get(r, k), Calibration { lo, hi, ..Calibration::default() }, inp.envelope[r]);
                    let y = inp.target[r * h + k] as f64;
                    if upper - mid > 1e-9 {
                        ratios.push((y - mid) / (upper - mid));
                    }
                }
            }
            if ratios.is_empty() {
                return 1.0;
            }
            ratios.sort_by(f64::total_cmp);
            let n = ratios.len();
            let t = ratios[((level * n as f64).ceil() as usize).clamp(1, n) - 1].max(1.0);
            (t * 1e4).round() / 1e4
        };
        let c = Calibration { lo, hi, p95: tail(0.95), p99: tail(0.99) };
        let mut inside_after = 0usize;
        for r in 0..inp.rows() {
            for k in 0..h {
                let (lo, hi) = bounds(get(r, k), c, inp.envelope[r]);
                let y = inp.target[r * h + k] as f64;
                inside_after += usize::from(lo <= y && y <= hi);
            }
        }
        let n = (inp.rows() * h).max(1) as f64;
        Ok((c, (inside as f64 / n, inside_after as f64 / n)))
    }

    /// Forecasts `horizon` (≤ the model's) bins after each history, in batches.
    /// Errors: `TooShort` below `min_history`, `Missing` for a NaN in the window.
    pub fn forecast(&self, histories: &[History<'_>], horizon: usize) -> headroom_forecast::Result<Vec<Forecast>> {
        use headroom_forecast::Error as FE;
        let invalid = |why: String| FE::Invalid(why);
        if horizon == 0 || horizon > self.cfg.horizon {
            return Err(invalid(format!("lstm forecasts 1..={} bins, {horizon} asked", self.cfg.horizon)));
        }
        let model_err =
            |e: crate::error::Error| FE::Model { series: "batch".into(), model: NAME.into(), why: e.to_string() };
        let mut inp = Inputs::default();
        // A window that never moved (a fixed limit, an idle flag) is forecast
        // as that constant with no spread: the network would add float dust
        // around it, which flips "max above threshold" tests on thresholds
        // equal to the constant.
        let mut constant = Vec::with_capacity(histories.len());
        let mut windows = Vec::with_capacity(histories.len());
        for hist in histories {
            if hist.step_ms != self.cfg.step_ms {
                return Err(invalid(format!(
                    "{}: lstm was trained on a {} ms grid, history is on {} ms",
                    hist.key, self.cfg.step_ms, hist.step_ms
                )));
            }
            hist.window(self.cfg.min_history, NAME)?;
            let w = hist.window(hist.values.len().min(self.cfg.window), NAME)?;
            let first = w[0];
            constant.push(w.iter().all(|v| *v == first).then_some(first));
            windows.push(w);
            inp.push(&self.cfg, w, hist.origin_ms(), None);
        }
        // Online calibration: each history's hindcast from one horizon
        // earlier, as more rows of the same batch (row `histories.len() + j`).
        let h = self.cfg.horizon;
        let mut hindcasts: Vec<Option<(usize, &[f64])>> = vec![None; histories.len()];
        if self.cfg.online_calibration {
            let mut row = histories.len();
            for (r, hist) in histories.iter().enumerate() {
                let Some(end) = hist.values.len().checked_sub(h).filter(|e| *e >= self.cfg.min_history) else {
                    continue;
                };
                let w = &hist.values[end - end.min(self.cfg.window)..end];
                if w.iter().any(|v| v.is_nan()) {
                    continue;
                }
                if constant[r].is_some() || w.iter().all(|v| *v == w[0]) {
                    continue;
                }
                inp.push(&self.cfg, w, hist.origin_ms() - h as i64 * hist.step_ms, None);
                hindcasts[r] = Some((row, w));
                row += 1;
            }
        }
        let (raw, peaks) = self.raw(&inp).map_err(model_err)?;
        let online_cfg = online::OnlineCalibration {
            buckets: self.cfg.online_buckets,
            prior: self.cfg.online_prior,
            ..online::OnlineCalibration::default()
        };
        // One row's quantiles in real units, before snapping.
        let row = |r: usize, non_negative: bool| -> headroom_forecast::Result<Quantiles> {
            let s = inp.scaling[r];
            let c = self.calibration;
            let mid: Vec<f64> = (0..h).map(|k| raw[(r * 3 + 1) * h + k] as f64).collect();
            let (lo, mut hi): (Vec<f64>, Vec<f64>) = (0..h)
                .map(|k| {
                    bounds((raw[(r * 3) * h + k] as f64, mid[k], raw[(r * 3 + 2) * h + k] as f64), c, inp.envelope[r])
                })
                .unzip();
            if let Some(&peak) = peaks.get(r) {
                hold_to_peak(&mut hi, &mid, peak as f64);
            }
            let mut paths: [Vec<f64>; 5] = std::array::from_fn(|_| Vec::with_capacity(h));
            for k in 0..h {
                let (lo, mid, hi) = (lo[k], mid[k], hi[k]);
                let (p95, p99) = (mid + c.p95 * (hi - mid), mid + c.p99 * (hi - mid));
                let mut q = [s.invert(lo), s.invert(mid), s.invert(hi), s.invert(p95), s.invert(p99)];
                if non_negative {
                    q = q.map(|v| v.max(0.0));
                }
                for (path, v) in paths.iter_mut().zip(q) {
                    path.push(v);
                }
            }
            let [p10, p50, p90, p95, p99] = paths;
            Ok(Quantiles::new(p10, p50, p90, p95, p99)?)
        };
        let snapped = |mut q: Quantiles, window: &[f64]| {
            if self.cfg.snap_to_window {
                q.snap_to(window);
            }
            q
        };
        histories
            .iter()
            .enumerate()
            .map(|(r, hist)| {
                let q = match constant[r] {
                    Some(v) => Quantiles::point(vec![v; horizon])?,
                    None => {
                        let non_negative = hist.key.unit().is_non_negative();
                        let mut q = row(r, non_negative)?;
                        if let Some((hr, w)) = hindcasts[r] {
                            // What the model delivered then, against what happened since.
                            let past = snapped(row(hr, non_negative)?, w);
                            let realized = &hist.values[hist.values.len() - h..];
                            q = online::apply(&q, &online::factors(&past, realized, &online_cfg), h)?;
                            if non_negative {
                                q = q.map(|v| v.max(0.0))?;
                            }
                        }
                        snapped(q, windows[r]).truncated(horizon)?
                    }
                };
                Ok(Forecast {
                    key: hist.key.clone(),
                    model: NAME.into(),
                    origin_ms: hist.origin_ms(),
                    step_ms: hist.step_ms,
                    q,
                })
            })
            .collect()
    }
}

/// Holds the upper path `hi` to the horizon's `peak` (scaled units): cut at
/// the peak where it reaches above it (never below the median `mid`), or
/// raised to it at its highest step when it stays below.
fn hold_to_peak(hi: &mut [f64], mid: &[f64], peak: f64) {
    let Some((top, &highest)) = hi.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)) else { return };
    if highest > peak {
        for (v, m) in hi.iter_mut().zip(mid) {
            *v = v.min(peak.max(*m));
        }
    } else {
        hi[top] = peak;
    }
}

/// The lower and upper bounds of one step (scaled units): spreads around
/// the median times the calibration, then held inside the envelope unless
/// the median itself is outside it.
fn bounds((lo, mid, hi): (f64, f64, f64), c: Calibration, (env_lo, env_hi): (f64, f64)) -> (f64, f64) {
    let lo = mid - c.lo * (mid - lo);
    let hi = mid + c.hi * (hi - mid);
    (lo.max(env_lo.min(mid)), hi.min(env_hi.max(mid)))
}

/// The LSTM behind the [`Forecaster`] trait. Cheap to clone (shares the model).
#[derive(Debug, Clone)]
pub struct LstmForecaster {
    model: Arc<LstmModel>,
}

impl LstmForecaster {
    /// Wraps a trained or loaded model.
    pub fn new(model: LstmModel) -> Self {
        Self { model: Arc::new(model) }
    }

    /// The model inside.
    pub fn model(&self) -> &LstmModel {
        &self.model
    }
}

#[derive(Debug)]
struct FittedLstm {
    q: Quantiles,
}

impl Fitted for FittedLstm {
    fn predict(&self, horizon: usize) -> headroom_forecast::Result<Quantiles> {
        if horizon == 0 || horizon > self.q.len() {
            return Err(headroom_forecast::Error::Invalid(format!(
                "lstm forecasts 1..={} bins, {horizon} asked",
                self.q.len()
            )));
        }
        Ok(self.q.truncated(horizon)?)
    }
}

impl Forecaster for LstmForecaster {
    fn name(&self) -> &str {
        NAME
    }

    /// "Fitting" a global model is a forward pass over the history; the
    /// whole horizon is kept and `predict` truncates it.
    fn fit(&self, history: &History<'_>) -> headroom_forecast::Result<Box<dyn Fitted>> {
        let f = self.model.forecast(std::slice::from_ref(history), self.model.cfg.horizon)?;
        let q = f.into_iter().next().expect("one forecast per history").q;
        Ok(Box::new(FittedLstm { q }))
    }

    fn forecast_batch(&self, histories: &[History<'_>], horizon: usize) -> headroom_forecast::Result<Vec<Forecast>> {
        self.model.forecast(histories, horizon)
    }
}
