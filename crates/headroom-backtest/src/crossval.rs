//! Cross-validation by machine: how the LSTM forecasts machines it has never
//! seen. The series are grouped by machine (their entity: one server, one
//! cloud instance, one cluster aggregate), the machines split into `k`
//! folds, and each fold is forecast by a model trained only on the other
//! folds' series (each cut before its first evaluation origin, as
//! `headroom train --before-first-origin` cuts). The pooled out-of-fold
//! forecasts are then scored and replayed like any model's, under the name
//! `lstm` ([`ByFold`]).
//!
//! Fold models are written to `OUT/folds/fold-I-of-K/` as they are trained
//! and reused by a later run when they were trained on the same series with
//! the same training config (a changed inference setting — envelope,
//! snapping, calibration — reuses the weights and refits the calibration).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Instant;

use headroom_core::{Forecast, Interrupt, ResampledSeries};
use headroom_engine::models::{expectation, load_lstm};
use headroom_forecast::protocol::Protocol;
use headroom_forecast::{Fitted, Forecaster, History};
use headroom_lstm::train::{cuts, fingerprint};
use headroom_lstm::{LstmConfig, LstmForecaster, LstmModel, ModelCard, TrainOptions};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::progress::Progress;

/// Where the fold models go, under the backtest's output directory.
pub const FOLDS_DIR: &str = "folds";

/// What `--cross-validate` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrossValidate {
    /// Folds (at least 2, at most the number of machines).
    pub folds: usize,
    /// An LSTM config (JSON, as `headroom train --config` reads) used as it
    /// is; `None`: the shipped model's config made fast
    /// ([`LstmConfig::for_cross_validation`]).
    pub config: Option<PathBuf>,
}

/// One fold: the machines held out and the model that forecast them.
#[derive(Debug, Clone, Serialize)]
pub struct Fold {
    /// 1-based.
    pub fold: usize,
    /// The machines (entities) held out.
    pub machines: Vec<String>,
    /// Their series.
    pub series: usize,
    /// Series the fold's model was trained on (every other fold's).
    pub train_series: usize,
    /// Where the fold's model is.
    pub model: PathBuf,
    /// Whether this run trained it (false: reused from an earlier run).
    pub trained: bool,
    /// Training steps, and the step whose weights were kept.
    pub steps: usize,
    /// The step whose weights were kept.
    pub best_step: usize,
    /// Seconds this run spent on the fold (training, or loading and recalibrating).
    pub seconds: f64,
}

/// What cross-validation did, written to `cross_validation.json`.
#[derive(Debug, Clone, Serialize)]
pub struct CrossValidation {
    /// The folds, in order.
    pub folds: Vec<Fold>,
    /// The config every fold model was trained with.
    pub config: LstmConfig,
    /// Where that config came from.
    pub config_source: String,
    /// Seconds spent on the fold models.
    pub seconds: f64,
}

/// The machine a series comes from: its entity (`asd/omi-1`, `nab/…`, `dc/google2019`).
pub fn machine_of(series: &ResampledSeries) -> &str {
    &series.key.entity
}

/// Splits the machines of `series` into `k` folds of about equal series
/// counts: machines with the most series first, each to the fold with the
/// fewest series so far (ties: the lower fold, then the machine's name). It
/// depends only on names and counts, never on values.
pub fn assign(series: &[ResampledSeries], k: usize) -> Result<Vec<Vec<String>>> {
    let mut machines: BTreeMap<&str, usize> = BTreeMap::new();
    for s in series {
        *machines.entry(machine_of(s)).or_default() += 1;
    }
    if k < 2 || k > machines.len() {
        return Err(Error::Option {
            option: "--cross-validate",
            value: k.to_string(),
            reason: format!(
                "needs at least 2 folds and at most one per machine; the data has {} machines (entities)",
                machines.len()
            ),
        });
    }
    let mut order: Vec<(&str, usize)> = machines.into_iter().collect();
    order.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let mut folds: Vec<(usize, Vec<String>)> = vec![(0, Vec::new()); k];
    for (machine, n) in order {
        let fold = (0..k).min_by_key(|&f| (folds[f].0, f)).expect("k >= 2");
        folds[fold].0 += n;
        folds[fold].1.push(machine.to_owned());
    }
    Ok(folds
        .into_iter()
        .map(|(_, mut m)| {
            m.sort();
            m
        })
        .collect())
}

/// The config the folds are trained with: `cv.config`'s file, else the
/// shipped model's (its card, when `model_dir` holds one, checked as a load
/// checks it; else the default) made fast. Refused before any training when
/// it is made for another grid step or horizon than `protocol`'s: its
/// models could not forecast the backtest's origins.
pub fn fold_config(cv: &CrossValidate, model_dir: &Path, protocol: &Protocol) -> Result<(LstmConfig, String)> {
    let read = |path: &Path| -> Result<String> {
        std::fs::read_to_string(path).map_err(|source| Error::Read { path: path.to_owned(), source })
    };
    let (cfg, source) = match &cv.config {
        Some(path) => {
            let cfg: LstmConfig = serde_json::from_str(&read(path)?)
                .map_err(|source| Error::LstmConfig { path: path.clone(), why: source.to_string() })?;
            (cfg, path.display().to_string())
        }
        None => {
            let card = model_dir.join(headroom_lstm::card::CARD);
            if card.is_file() {
                let card =
                    ModelCard::parse(&read(&card)?, &card, &expectation(protocol)).map_err(|source| Error::Lstm {
                        hint: format!("reading the config of {} for cross-validation", model_dir.display()),
                        source,
                    })?;
                let source = format!("the config of {}, trained fast", model_dir.display());
                (card.config.for_cross_validation(), source)
            } else {
                (LstmConfig::default().for_cross_validation(), "the default LSTM config, trained fast".to_owned())
            }
        }
    };
    let refuse = |why: String| Error::LstmConfig { path: PathBuf::from(&source), why };
    cfg.validate().map_err(|e| refuse(e.to_string()))?;
    if cfg.step_ms != protocol.step_ms {
        return Err(refuse(format!(
            "step_ms {} is not the backtest's grid step, {} ms (--step)",
            cfg.step_ms, protocol.step_ms
        )));
    }
    if cfg.horizon != protocol.horizon {
        return Err(refuse(format!(
            "horizon {} bins is not the backtest's horizon, {} bins (--horizon)",
            cfg.horizon, protocol.horizon
        )));
    }
    Ok((cfg, source))
}

/// Trains (or reuses) one model per fold of `cv.folds` over `series`, each
/// on the other folds' series cut before `protocol`'s first origin, saving
/// each under `out/folds/`. Returns the forecaster that routes every series
/// to its fold's model, and what was done.
pub fn train_folds(
    series: &[ResampledSeries],
    protocol: &Protocol,
    cv: &CrossValidate,
    model_dir: &Path,
    out: &Path,
    progress: &dyn Progress,
    interrupt: &Interrupt,
) -> Result<(ByFold, CrossValidation)> {
    let started = Instant::now();
    let (cfg, config_source) = fold_config(cv, model_dir, protocol)?;
    let folds = assign(series, cv.folds)?;
    let fold_of: HashMap<String, usize> =
        folds.iter().enumerate().flat_map(|(f, ms)| ms.iter().map(move |m| (m.clone(), f))).collect();
    let mut models = Vec::with_capacity(folds.len());
    let mut report = Vec::with_capacity(folds.len());
    for (f, machines) in folds.iter().enumerate() {
        let fold_started = Instant::now();
        let held_out = series.iter().filter(|s| fold_of[machine_of(s)] == f).count();
        let train: Vec<History<'_>> =
            series.iter().filter(|s| fold_of[machine_of(s)] != f && !s.values.is_empty()).map(History::of).collect();
        let dir = out.join(FOLDS_DIR).join(format!("fold-{}-of-{}", f + 1, folds.len()));
        progress.note(&format!(
            "cross-validate: fold {}/{}: {} machines ({}), {held_out} series held out; model on {} series of the other folds",
            f + 1,
            folds.len(),
            machines.len(),
            machines.join(", "),
            train.len()
        ));
        let fp = fingerprint(&train, &cuts(&train, Some(protocol)));
        let (model, trained, steps, best_step) = match reusable(&dir, &cfg, &fp, protocol) {
            Some(mut model) => {
                model
                    .follow(&cfg)
                    .map_err(|source| Error::Lstm { hint: format!("reusing {}", dir.display()), source })?;
                headroom_lstm::recalibrate(&mut model, &train, Some(protocol))
                    .map_err(|source| Error::Lstm { hint: format!("recalibrating {}", dir.display()), source })?;
                let (steps, best) =
                    model.card.training.as_ref().map_or((0, 0), |t| (t.report.steps, t.report.best_step));
                progress.note(&format!(
                    "cross-validate: fold {}/{}: reusing {} (trained on the same series with the same training config)",
                    f + 1,
                    folds.len(),
                    dir.display()
                ));
                (model, false, steps, best)
            }
            None => {
                let opts = TrainOptions {
                    cut: Some(*protocol),
                    command: format!("headroom backtest --cross-validate {} (fold {})", folds.len(), f + 1),
                    progress: false,
                    interrupt: interrupt.clone(),
                };
                let (model, r) = headroom_lstm::train(&train, &cfg, &opts).map_err(|source| Error::Lstm {
                    hint: format!("training fold {} of {}", f + 1, folds.len()),
                    source,
                })?;
                model.save(&dir).map_err(|source| Error::Lstm { hint: format!("saving {}", dir.display()), source })?;
                progress.note(&format!(
                    "cross-validate: fold {}/{}: trained in {:.0} s ({} steps, best {}), saved to {}",
                    f + 1,
                    folds.len(),
                    r.seconds,
                    r.steps,
                    r.best_step,
                    dir.display()
                ));
                (model, true, r.steps, r.best_step)
            }
        };
        models.push(LstmForecaster::new(model));
        report.push(Fold {
            fold: f + 1,
            machines: machines.clone(),
            series: held_out,
            train_series: train.len(),
            model: dir,
            trained,
            steps,
            best_step,
            seconds: fold_started.elapsed().as_secs_f64(),
        });
    }
    let cv = CrossValidation { folds: report, config: cfg, config_source, seconds: started.elapsed().as_secs_f64() };
    Ok((ByFold { models, fold_of }, cv))
}

/// The model saved in `dir`, when it was trained with `cfg`'s training
/// settings on the data whose fingerprint is `fp`.
fn reusable(dir: &Path, cfg: &LstmConfig, fp: &str, protocol: &Protocol) -> Option<LstmModel> {
    let model = load_lstm(dir, protocol).ok()?;
    let training = model.card.training.as_ref()?;
    (model.config().trains_like(cfg) && training.report.data_fingerprint == fp).then_some(model)
}

/// The out-of-fold LSTM: every series is forecast by the model of its
/// machine's fold, which never saw that machine.
#[derive(Debug, Clone)]
pub struct ByFold {
    models: Vec<LstmForecaster>,
    fold_of: HashMap<String, usize>,
}

impl ByFold {
    /// The fold holding `entity`'s machine.
    fn fold(&self, entity: &str) -> headroom_forecast::Result<usize> {
        self.fold_of.get(entity).copied().ok_or_else(|| {
            headroom_forecast::Error::Invalid(format!("{entity}: no cross-validation fold holds this machine"))
        })
    }
}

impl Forecaster for ByFold {
    fn name(&self) -> &str {
        headroom_lstm::NAME
    }

    fn fit(&self, history: &History<'_>) -> headroom_forecast::Result<Box<dyn Fitted>> {
        self.models[self.fold(&history.key.entity)?].fit(history)
    }

    /// Each fold's histories in one batch through its model, returned in the order given.
    fn forecast_batch(&self, histories: &[History<'_>], horizon: usize) -> headroom_forecast::Result<Vec<Forecast>> {
        let mut by_fold: Vec<Vec<usize>> = vec![Vec::new(); self.models.len()];
        for (i, h) in histories.iter().enumerate() {
            by_fold[self.fold(&h.key.entity)?].push(i);
        }
        let mut out: Vec<Option<Forecast>> = vec![None; histories.len()];
        for (f, rows) in by_fold.iter().enumerate().filter(|(_, r)| !r.is_empty()) {
            let batch: Vec<History<'_>> = rows.iter().map(|&i| histories[i]).collect();
            for (&i, forecast) in rows.iter().zip(self.models[f].forecast_batch(&batch, horizon)?) {
                out[i] = Some(forecast);
            }
        }
        Ok(out.into_iter().map(|f| f.expect("every history is in one fold")).collect())
    }
}

#[cfg(test)]
mod tests {
    use headroom_core::{Grid, RepairReport, SeriesKey};

    use super::*;

    fn series(entity: &str, metric: &str) -> ResampledSeries {
        ResampledSeries {
            key: SeriesKey::new(entity, metric).unwrap(),
            grid: Grid { step_ms: 900_000, start_ms: 0, end_ms: 900_000 },
            values: vec![1.0],
            imputed: vec![false],
            report: RepairReport::default(),
        }
    }

    #[test]
    fn machines_go_whole_into_folds_of_about_equal_series_counts() {
        // asd/omi-1 has 3 series, omi-2 2, the rest 1 each: 8 series, 6 machines.
        let all: Vec<ResampledSeries> = [
            ("asd/omi-1", "m1"),
            ("asd/omi-1", "m2"),
            ("asd/omi-1", "m3"),
            ("asd/omi-2", "m1"),
            ("asd/omi-2", "m2"),
            ("nab/a", "cpu_pct"),
            ("nab/b", "cpu_pct"),
            ("dc/c", "avg_cpu"),
            ("dc/d", "avg_cpu"),
        ]
        .iter()
        .map(|(e, m)| series(e, m))
        .collect();
        let folds = assign(&all, 3).unwrap();
        assert_eq!(
            folds,
            vec![
                vec!["asd/omi-1".to_owned()],
                vec!["asd/omi-2".to_owned(), "nab/a".to_owned()],
                vec!["dc/c".to_owned(), "dc/d".to_owned(), "nab/b".to_owned()],
            ],
            "largest machines first, each to the emptiest fold"
        );
        // Every machine exactly once, whatever the order the series come in.
        let mut reversed = all.clone();
        reversed.reverse();
        assert_eq!(assign(&reversed, 3).unwrap(), folds);
        for bad in [1, 8] {
            let err = assign(&all, bad).unwrap_err().to_string();
            assert!(err.contains("--cross-validate") && err.contains(&bad.to_string()), "{err}");
        }
    }
}
