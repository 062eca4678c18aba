//! Training: samples cut from every series (a global model), a validation
//! split by time, AdamW with cosine decay, early stopping on the validation
//! loss (pinball of the quantiles plus the peak loss), then conformal-style
//! calibration of p10/p90 on the same validation split. Deterministic: the
//! same series, config and seed give the same weights (all randomness comes
//! from one seeded [`SplitMix64`]).

use std::collections::HashMap;
use std::hash::Hasher;
use std::time::Instant;

use candle_core::{Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use headroom_core::Fnv1a64;
use headroom_forecast::History;
use headroom_forecast::protocol::Protocol;
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

use crate::card::TrainingInfo;
use crate::config::LstmConfig;
use crate::error::{Error, Result};
use crate::features::Inputs;
use crate::forecaster::{Calibration, LstmModel};
use crate::model::training_loss;

/// A small, seedable PRNG (SplitMix64): enough for shuffling and init, and
/// identical on every platform.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// Fisher–Yates shuffle.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            v.swap(i, self.below(i + 1));
        }
    }
}

/// How to train, besides the model's config.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// Train each series only on the bins before this protocol's first
    /// evaluation origin (honest development scores). `None`: all history.
    pub cut: Option<Protocol>,
    /// The exact command that started training, recorded in the card.
    pub command: String,
    /// Draw a progress bar on stderr.
    pub progress: bool,
    /// Checked before every step: once raised, training stops with
    /// [`Error::Interrupted`](crate::Error::Interrupted) and nothing is returned.
    pub interrupt: headroom_core::Interrupt,
}

/// What training did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainReport {
    /// Series given / series that produced at least one sample.
    pub series: usize,
    /// Training samples (windows).
    pub train_samples: usize,
    /// Validation samples.
    pub val_samples: usize,
    /// Steps run.
    pub steps: usize,
    /// Step of the kept weights.
    pub best_step: usize,
    /// Validation loss ([`crate::model::training_loss`], scaled units) of the kept weights.
    pub best_val_loss: f64,
    /// Validation loss after each pass: `(step, loss)`.
    pub val_history: Vec<(usize, f64)>,
    /// Whether early stopping ended training.
    pub stopped_early: bool,
    /// p10/p90 spread multipliers fitted on the validation split.
    pub calibration: Calibration,
    /// Validation p10–p90 coverage before / after calibration.
    pub val_coverage: (f64, f64),
    /// Wall time (s).
    pub seconds: f64,
    /// FNV-1a hash of the keys, grids and values trained on.
    pub data_fingerprint: String,
}

/// A hash over the series keys, grids and the values used (FNV-1a, 64 bit).
pub fn fingerprint(series: &[History<'_>], cuts: &[usize]) -> String {
    let mut h = Fnv1a64::default();
    for (s, &c) in series.iter().zip(cuts) {
        h.write(s.key.entity.as_bytes());
        h.write(&[0]);
        h.write(s.key.metric.as_bytes());
        h.write(&[0]);
        h.write(&s.start_ms.to_le_bytes());
        h.write(&s.step_ms.to_le_bytes());
        h.write(&(c as u64).to_le_bytes());
        for v in &s.values[..c] {
            h.write(&v.to_bits().to_le_bytes());
        }
    }
    format!("fnv1a64:{:016x}", h.finish())
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    series: usize,
    origin: usize,
}

fn window_ok(values: &[f64], from: usize, to: usize) -> bool {
    values[from..to].iter().all(|v| v.is_finite())
}

/// Trains a model on `series` (all on `cfg.step_ms` grids).
pub fn train(series: &[History<'_>], cfg: &LstmConfig, opts: &TrainOptions) -> Result<(LstmModel, TrainReport)> {
    cfg.validate()?;
    let t0 = Instant::now();
    for s in series {
        if s.step_ms != cfg.step_ms {
            return Err(Error::Config {
                field: "step_ms",
                value: cfg.step_ms.to_string(),
                why: format!("series {} is on a {} ms grid", s.key, s.step_ms),
            });
        }
    }
    let cuts = cuts(series, opts.cut.as_ref());
    let (train_s, val_s) = samples(series, &cuts, cfg);
    if train_s.is_empty() {
        return Err(Error::NoSamples { need: cfg.min_history + cfg.horizon });
    }
    let used = train_s.iter().chain(&val_s).map(|s| s.series).collect::<std::collections::BTreeSet<_>>().len();

    let mut model = LstmModel::init(cfg.clone())?;
    let val_inputs = inputs(series, cfg, &val_s, None);
    let fit = fit(&mut model, series, cfg, opts, &train_s, &val_inputs)?;
    let (calibration, val_coverage) = if cfg.calibrate && val_inputs.rows() > 0 {
        model.calibrate(&val_inputs)?
    } else {
        let c = Calibration::default();
        (c, (f64::NAN, f64::NAN))
    };
    model.calibration = calibration;
    let report = TrainReport {
        series: used,
        train_samples: train_s.len(),
        val_samples: val_s.len(),
        steps: fit.steps,
        best_step: fit.best_step,
        best_val_loss: fit.best_val_loss,
        val_history: fit.history,
        stopped_early: fit.stopped_early,
        calibration,
        val_coverage,
        seconds: t0.elapsed().as_secs_f64(),
        data_fingerprint: fingerprint(series, &cuts),
    };
    model.card.training = Some(TrainingInfo {
        command: opts.command.clone(),
        cut: match opts.cut {
            Some(_) => "each series before its first evaluation origin (reference protocol)".into(),
            None => "all history".into(),
        },
        report: report.clone(),
    });
    model.card.calibration = calibration;
    Ok((model, report))
}

/// Where training stops in each series: before `cut`'s first evaluation
/// origin, or at its end.
pub fn cuts(series: &[History<'_>], cut: Option<&Protocol>) -> Vec<usize> {
    series
        .iter()
        .map(|s| match cut {
            Some(p) => p.first_origin(s.values.len()).min(s.values.len()),
            None => s.values.len(),
        })
        .collect()
}

/// Refits `model`'s p10/p90 spread multipliers on the validation split of
/// `series` (the split training used, given the same series and `cut`), for
/// a trained model asked to forecast with other inference settings
/// ([`LstmModel::follow`]); the default multipliers when its config does not
/// calibrate or no validation sample exists. Returns the p10–p90 validation
/// coverage before and after, as training reports it.
pub fn recalibrate(model: &mut LstmModel, series: &[History<'_>], cut: Option<&Protocol>) -> Result<(f64, f64)> {
    let cfg = model.cfg.clone();
    let (_, val_s) = samples(series, &cuts(series, cut), &cfg);
    let val_inputs = inputs(series, &cfg, &val_s, None);
    let (calibration, coverage) = if cfg.calibrate && val_inputs.rows() > 0 {
        model.calibrate(&val_inputs)?
    } else {
        (Calibration::default(), (f64::NAN, f64::NAN))
    };
    model.calibration = calibration;
    model.card.calibration = calibration;
    Ok(coverage)
}

/// The training and validation samples of every series before its cut.
/// Validation: the last `val_days` days of origins before each cut, every
/// `4 · stride` bins; training samples end (origin + horizon) before the
/// first validation origin. A sample whose window or target has a gap is
/// left out.
fn samples(series: &[History<'_>], cuts: &[usize], cfg: &LstmConfig) -> (Vec<Sample>, Vec<Sample>) {
    let (w, h, day) = (cfg.window, cfg.horizon, cfg.bins_per_day());
    let (mut train_s, mut val_s) = (Vec::new(), Vec::new());
    let val_stride = (4 * cfg.stride).max(1);
    for (i, (s, &c)) in series.iter().zip(cuts).enumerate() {
        if c < cfg.min_history + h {
            continue;
        }
        let last = c - h;
        let val_start = last.saturating_sub(cfg.val_days.saturating_sub(1) * day).max(cfg.min_history);
        if cfg.val_days > 0 {
            let mut t = last;
            loop {
                if window_ok(s.values, t.saturating_sub(w), t + h) {
                    val_s.push(Sample { series: i, origin: t });
                }
                if t < val_start + val_stride {
                    break;
                }
                t -= val_stride;
            }
        }
        let train_end = if cfg.val_days > 0 { val_start.saturating_sub(h) } else { last };
        let mut t = cfg.min_history;
        while t <= train_end {
            if window_ok(s.values, t.saturating_sub(w), t + h) {
                train_s.push(Sample { series: i, origin: t });
            }
            t += cfg.stride;
        }
    }
    (train_s, val_s)
}

/// The model's inputs for `samples`. With `rng` (training batches), a sample
/// may get a shorter window (`pad_prob`) and a level shift (`shift_prob`);
/// without it (validation) every sample is taken as recorded.
fn inputs(series: &[History<'_>], cfg: &LstmConfig, samples: &[Sample], mut rng: Option<&mut SplitMix64>) -> Inputs {
    let (w, h) = (cfg.window, cfg.horizon);
    let mut inp = Inputs::default();
    for smp in samples {
        let s = &series[smp.series];
        let mut from = smp.origin.saturating_sub(w);
        if let Some(r) = rng.as_deref_mut()
            && r.next_f64() < cfg.pad_prob
        {
            let len = cfg.min_history + r.below(w - cfg.min_history + 1);
            from = from.max(smp.origin - len.min(smp.origin));
        }
        let origin_ms = s.start_ms + smp.origin as i64 * s.step_ms;
        let (win, tgt) = (&s.values[from..smp.origin], &s.values[smp.origin..smp.origin + h]);
        let shift = rng.as_deref_mut().is_some_and(|r| r.next_f64() < cfg.shift_prob);
        match rng.as_deref_mut() {
            Some(r) if shift => {
                let v = level_shifted(win, tgt, cfg, r);
                inp.push(cfg, &v[..win.len()], origin_ms, Some(&v[win.len()..]));
            }
            _ => inp.push(cfg, win, origin_ms, Some(tgt)),
        }
    }
    inp
}

/// `win` then `tgt`, shifted by ±0.5–2 standard deviations of `win` from a
/// random bin at least `shift_min_age` bins (and at most three days) before
/// the origin on, so the window shows the new level the target stays at.
fn level_shifted(win: &[f64], tgt: &[f64], cfg: &LstmConfig, r: &mut SplitMix64) -> Vec<f64> {
    let day = cfg.bins_per_day();
    let mut v: Vec<f64> = win.iter().chain(tgt).copied().collect();
    let n = win.len();
    let mean = win.iter().sum::<f64>() / n as f64;
    let std = (win.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n as f64).sqrt();
    let age = cfg.shift_min_age.clamp(1, day);
    let at = n - age - r.below((3 * day - age).min(n - age));
    let sign = if r.next_f64() < 0.5 { -1.0 } else { 1.0 };
    let delta = sign * (0.5 + 1.5 * r.next_f64()) * std;
    for x in &mut v[at..] {
        *x += delta;
    }
    v
}

/// How the optimisation went: the step whose weights were kept, and the
/// validation losses along the way.
struct Fit {
    steps: usize,
    best_step: usize,
    best_val_loss: f64,
    history: Vec<(usize, f64)>,
    stopped_early: bool,
}

/// AdamW over shuffled batches of `train_s` with a cosine learning rate,
/// validated every `eval_every` steps (on the training loss's moving average
/// when there is no validation sample), stopped after `patience` evaluations
/// without improvement; the model keeps the best evaluation's weights.
fn fit(
    model: &mut LstmModel,
    series: &[History<'_>],
    cfg: &LstmConfig,
    opts: &TrainOptions,
    train_s: &[Sample],
    val_inputs: &Inputs,
) -> Result<Fit> {
    let mut rng = SplitMix64::new(cfg.seed.wrapping_add(1));
    let vars = model.vars();
    let mut opt = AdamW::new(
        vars.iter().map(|(_, v)| v.clone()).collect(),
        ParamsAdamW { lr: cfg.lr, weight_decay: cfg.weight_decay, ..ParamsAdamW::default() },
    )?;
    let bar = if opts.progress { ProgressBar::new(cfg.max_steps as u64) } else { ProgressBar::hidden() };
    bar.set_style(
        ProgressStyle::with_template("training lstm {bar:30} {pos}/{len} steps  {elapsed_precise}  {msg}")
            .expect("static template"),
    );
    let mut order: Vec<usize> = (0..train_s.len()).collect();
    let mut cursor = order.len();
    let mut best: Option<(usize, f64, HashMap<String, Tensor>)> = None;
    let mut history = Vec::new();
    let (mut bad_evals, mut stopped_early, mut steps) = (0, false, 0);
    let mut ema = f64::NAN;
    for step in 1..=cfg.max_steps {
        opts.interrupt.check()?;
        let lr = cfg.lr * (0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * step as f64 / cfg.max_steps as f64).cos()));
        opt.set_learning_rate(lr);
        let mut batch = Vec::with_capacity(cfg.batch);
        while batch.len() < cfg.batch {
            if cursor == order.len() {
                rng.shuffle(&mut order);
                cursor = 0;
            }
            batch.push(train_s[order[cursor]]);
            cursor += 1;
        }
        let inp = inputs(series, cfg, &batch, Some(&mut rng));
        let (seq, ctx, base, target) = model.tensors(&inp)?;
        let pred = model.net.forward(&seq, &ctx, &base)?;
        let loss = training_loss(&pred, &target.expect("training targets"), cfg)?;
        opt.backward_step(&loss)?;
        let l = loss.to_scalar::<f32>()? as f64;
        ema = if ema.is_nan() { l } else { 0.98 * ema + 0.02 * l };
        steps = step;
        bar.inc(1);
        if step % cfg.eval_every == 0 || step == cfg.max_steps {
            let v = if val_inputs.rows() > 0 { model.loss(val_inputs)? } else { ema };
            history.push((step, v));
            let better = best.as_ref().is_none_or(|(_, b, _)| v < *b);
            if better {
                let snap =
                    vars.iter().map(|(n, var)| Ok((n.clone(), var.as_tensor().copy()?))).collect::<Result<_>>()?;
                best = Some((step, v, snap));
                bad_evals = 0;
            } else {
                bad_evals += 1;
            }
            bar.set_message(format!("train {ema:.4}  val {v:.4}  best {:.4}", best.as_ref().map_or(v, |b| b.1)));
            if bad_evals >= cfg.patience {
                stopped_early = true;
                break;
            }
        }
    }
    bar.finish_and_clear();
    let (best_step, best_val_loss, snap) = best.expect("at least one validation pass");
    for (n, var) in &vars {
        var.set(&snap[n])?;
    }
    Ok(Fit { steps, best_step, best_val_loss, history, stopped_early })
}

/// Variables of a model in name order (stable, so init and snapshots are deterministic).
pub(crate) fn sorted_vars(map: &candle_nn::VarMap) -> Vec<(String, Var)> {
    let data = map.data().lock().expect("var map lock");
    let mut v: Vec<(String, Var)> = data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}
