//! The forecast half of a backtest: the protocol from the options, the
//! models, the data read and resampled, every model run over every (series,
//! origin) pair and scored.

use std::path::PathBuf;
use std::time::Instant;

use headroom_collect::files::FileOptions;
use headroom_collect::limits::read_limits;
use headroom_collect::resample::{ResampleConfig, resample_frame};
use headroom_core::{Interrupt, Limits, ResampledSeries, SeriesData, format_duration, parse_duration};
use headroom_engine::models;
use headroom_forecast::Forecaster;
use headroom_forecast::baselines::{BASELINES, baseline};
use headroom_forecast::evaluate::{AUTO, Evaluation, evaluate};
use headroom_forecast::protocol::Protocol;

use crate::crossval::{CrossValidate, CrossValidation};
use crate::error::{Error, Result};
use crate::progress::Progress;

/// What a backtest runs: the options of `headroom backtest`, as plain data.
/// Durations are text as a user writes them (`15m`, `48h`): errors quote them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Recorded metrics: a canonical long file, other files, or a store.
    pub data: PathBuf,
    /// Saturation thresholds per series (`entity,metric,threshold`).
    pub limits: PathBuf,
    /// The trained model directory used for `lstm`.
    pub model: PathBuf,
    /// Models to run; `None`: `lstm` when `model` holds one, every baseline, and `auto`.
    pub models: Option<Vec<String>>,
    /// Grid step the series are resampled to.
    pub step: String,
    /// How far ahead each forecast reaches, a whole number of steps.
    pub horizon: String,
    /// Time between consecutive forecast origins, a whole number of steps.
    pub origin_every: String,
    /// Directory the outputs are written to.
    pub out: PathBuf,
    /// Policy replayed (headroom.toml); `None`: [`default_config`](crate::decisions::default_config).
    pub config: Option<PathBuf>,
    /// Time between decisions of the replayed policy.
    pub decide_every: String,
    /// Whether to replay decisions after scoring the forecasts.
    pub replay: bool,
    /// Cross-validate the LSTM by machine instead of running `model`'s
    /// ([`crate::crossval`]); `None`: the model in `model`.
    pub cross_validate: Option<CrossValidate>,
}

/// A backtest once every forecast is made and scored: what the outputs, and
/// the decision replay, are made from.
#[derive(Debug)]
pub struct Backtest {
    /// The protocol run (the reference one unless the options say otherwise).
    pub protocol: Protocol,
    /// Every series, resampled to the protocol's step with every gap interpolated.
    pub series: Vec<ResampledSeries>,
    /// The raw samples of every series (for the replay's stale-data and crash checks).
    pub raw: Vec<SeriesData>,
    /// Saturation thresholds per series.
    pub limits: Limits,
    /// Forecasts (model by model, `auto` last) and their scores.
    pub eval: Evaluation,
    /// The folds, when the LSTM was cross-validated by machine.
    pub cross_validation: Option<CrossValidation>,
}

impl Backtest {
    /// Series with a saturation threshold.
    pub fn with_threshold(&self) -> usize {
        self.series.iter().filter(|s| self.limits.get(&s.key).is_some()).count()
    }
}

/// The most forecast values (bins × quantiles, over every model and pair) a
/// backtest may hold: 2^28 values are 2 GiB of f64.
pub const MAX_FORECAST_VALUES: usize = 1 << 28;

/// Loads the data, runs every model of `options.models` over the protocol and scores them.
pub fn backtest(options: &Options, progress: &dyn Progress, interrupt: &Interrupt) -> Result<Backtest> {
    let protocol = protocol(options)?;
    if options.replay {
        crate::decisions::decide_every_ms(options, &protocol)?;
    }
    // Default: the LSTM when a model is there, then every baseline, then auto.
    let names: Vec<String> = match &options.models {
        Some(list) => list.iter().map(|n| n.trim().to_owned()).collect(),
        None => {
            let lstm = (options.cross_validate.is_some() || options.model.join(headroom_lstm::card::CARD).is_file())
                .then(|| headroom_lstm::NAME.to_owned());
            lstm.into_iter().chain(BASELINES.iter().map(|s| s.to_string())).chain([AUTO.to_owned()]).collect()
        }
    };
    if let Some(twice) = names.iter().enumerate().find(|(i, n)| names[..*i].contains(n)).map(|(_, n)| n) {
        return Err(Error::Models(format!("{twice} is listed twice")));
    }
    let auto = names.iter().any(|n| n == AUTO);
    let cross_validated = |n: &str| options.cross_validate.is_some() && n == headroom_lstm::NAME;
    if options.cross_validate.is_some() && !names.iter().any(|n| cross_validated(n)) {
        return Err(Error::Models(format!(
            "--cross-validate trains the {} per fold: list it (--models {},{})",
            headroom_lstm::NAME,
            headroom_lstm::NAME,
            names.join(",")
        )));
    }
    // Models first: a wrong name or an LSTM that cannot run this protocol
    // fails before the data is read. The cross-validated LSTM is trained once
    // the data is read (None until then).
    let mut models: Vec<Option<Box<dyn Forecaster>>> = names
        .iter()
        .filter(|n| *n != AUTO)
        .map(|n| if cross_validated(n) { Ok(None) } else { backtest_model(n, options, &protocol).map(Some) })
        .collect::<Result<_>>()?;
    if auto && models.is_empty() {
        return Err(Error::Models(format!(
            "{AUTO} chooses among the other models run; add at least one (lstm or a baseline)"
        )));
    }
    let chain = models::fallback_chain()?;
    let chain: Vec<&dyn Forecaster> = chain.iter().map(|m| m.as_ref()).collect();

    let frame = headroom_collect::recorded::load(&options.data, &FileOptions::default())?;
    let raw = frame.series()?;
    let limits = read_limits(&options.limits)?;
    // The protocol interpolates every gap (there is no edge gap on a covering grid).
    let cfg = ResampleConfig { step_ms: protocol.step_ms, max_gap_ms: i64::MAX, strict: false };
    let series = resample_frame(&frame, &cfg)?;
    check_work(&series, &protocol, names.len())?;
    let cross_validation = match &options.cross_validate {
        Some(cv) => {
            let (by_fold, report) = crate::crossval::train_folds(
                &series,
                &protocol,
                cv,
                &options.model,
                &options.out,
                progress,
                interrupt,
            )?;
            for m in models.iter_mut().filter(|m| m.is_none()) {
                *m = Some(Box::new(by_fold.clone()));
            }
            Some(report)
        }
        None => None,
    };
    let models: Vec<Box<dyn Forecaster>> = models.into_iter().flatten().collect();
    let refs: Vec<&dyn Forecaster> = models.iter().map(|m| m.as_ref()).collect();
    progress.note(&format!(
        "backtest: {} series from {}, models {}, an origin every {} ({} bins), horizon {} ({} bins of {})",
        series.len(),
        options.data.display(),
        names.join(","),
        format_duration(protocol.every as i64 * protocol.step_ms),
        protocol.every,
        format_duration(protocol.horizon as i64 * protocol.step_ms),
        protocol.horizon,
        format_duration(protocol.step_ms)
    ));
    let started = Instant::now();
    let mut model_started = Instant::now();
    let mut on_progress = |p: headroom_forecast::evaluate::Progress<'_>| match p {
        headroom_forecast::evaluate::Progress::Started { model, index, of, pairs } => {
            model_started = Instant::now();
            progress
                .note(&format!("backtest: [{}/{of}] {model}: forecasting {pairs} (series, origin) pairs", index + 1));
        }
        headroom_forecast::evaluate::Progress::Finished { model } => {
            progress.note(&format!("backtest: {model} done in {:.1} s", model_started.elapsed().as_secs_f64()));
        }
    };
    let eval = evaluate(&series, &limits, &refs, &chain, &protocol, auto, &mut on_progress, interrupt)?;
    progress.note(&format!("backtest: {} forecasts in {:.1} s", eval.forecasts.len(), started.elapsed().as_secs_f64()));
    for key in &eval.skipped {
        let len = series.iter().find(|s| &s.key == key).map_or(0, |s| s.values.len());
        progress.note(&format!(
            "backtest: skipped {key}: {len} bins of {} leave no origin (it needs 2 days before an origin and the horizon after it)",
            format_duration(protocol.step_ms)
        ));
    }
    Ok(Backtest { protocol, series, raw, limits, eval, cross_validation })
}

/// A duration option in milliseconds.
pub(crate) fn duration_ms(option: &'static str, value: &str) -> Result<i64> {
    let d = parse_duration(value).map_err(|source| Error::Duration { option, value: value.to_owned(), source })?;
    Ok(d.as_millis() as i64)
}

/// Refuses, before any forecasting, a backtest with nothing to score or one
/// too large to hold: the error names the options to change.
fn check_work(series: &[ResampledSeries], protocol: &Protocol, models: usize) -> Result<()> {
    let pairs: usize = series.iter().map(|s| protocol.origins(s.values.len()).len()).sum();
    let longest = series.iter().map(|s| s.values.len()).max().unwrap_or(0);
    if pairs == 0 {
        return Err(Error::NothingToScore {
            longest,
            step: format_duration(protocol.step_ms),
            span: format_duration(longest as i64 * protocol.step_ms),
            horizon: format_duration(protocol.horizon as i64 * protocol.step_ms),
        });
    }
    let values = pairs.saturating_mul(protocol.horizon).saturating_mul(3).saturating_mul(models);
    if values > MAX_FORECAST_VALUES {
        return Err(Error::TooLarge {
            pairs,
            horizon: protocol.horizon,
            models,
            values,
            every: format_duration(protocol.every as i64 * protocol.step_ms),
        });
    }
    Ok(())
}

/// The protocol of `step`, `horizon` and `origin_every` (the CLI's defaults
/// give [`Protocol::reference`]).
fn protocol(options: &Options) -> Result<Protocol> {
    let step_ms = duration_ms("--step", &options.step)?;
    if step_ms <= 0 {
        return Err(Error::Option {
            option: "--step",
            value: options.step.clone(),
            reason: "must be longer than zero".into(),
        });
    }
    let bins = |option: &'static str, value: &str| -> Result<usize> {
        let ms = duration_ms(option, value)?;
        if ms <= 0 || ms % step_ms != 0 {
            return Err(Error::Option {
                option,
                value: value.to_owned(),
                reason: format!("must be a whole, non-zero number of steps of {} (--step)", format_duration(step_ms)),
            });
        }
        Ok((ms / step_ms) as usize)
    };
    let horizon = bins("--horizon", &options.horizon)?;
    let every = bins("--origin-every", &options.origin_every)?;
    Protocol::new(step_ms, horizon, every).map_err(|source| Error::Protocol { step: options.step.clone(), source })
}

/// A model of `models` for the backtest's protocol: an LSTM made for another
/// step or horizon is refused naming the option to change.
fn backtest_model(name: &str, options: &Options, protocol: &Protocol) -> Result<Box<dyn Forecaster>> {
    if name != headroom_lstm::NAME {
        return baseline(name).map_err(|source| Error::UnknownModel {
            known: format!("lstm, {}, {AUTO}", BASELINES.join(", ")),
            source,
        });
    }
    match models::load_lstm(&options.model, protocol) {
        Ok(m) => Ok(Box::new(headroom_lstm::LstmForecaster::new(m))),
        Err(headroom_lstm::Error::Mismatch { field: "step_ms", card, .. }) => Err(Error::LstmStep {
            step: options.step.clone(),
            dir: options.model.clone(),
            card: card.parse::<i64>().map_or(card.clone(), format_duration),
        }),
        Err(headroom_lstm::Error::Mismatch { field: "horizon", card, .. }) => Err(Error::LstmHorizon {
            horizon: options.horizon.clone(),
            bins: protocol.horizon,
            step: format_duration(protocol.step_ms),
            dir: options.model.clone(),
            card: match card.parse::<i64>() {
                Ok(b) => format!("{} ({b} bins)", format_duration(b * protocol.step_ms)),
                Err(_) => format!("{card} bins"),
            },
        }),
        Err(source) => Err(Error::Lstm { hint: models::loading_hint(&options.model), source }),
    }
}
