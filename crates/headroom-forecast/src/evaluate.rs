//! Runs the reference protocol ([`Protocol`]) over many series and models:
//! every model forecasts every (series, origin) pair from the data before the
//! origin, each forecast is scored against the actuals that followed
//! ([`crate::metrics`]), and scores are aggregated per model: per series
//! ([`SeriesScore`]), overall and per group (the entity's first path part:
//! `nab`, `asd`, `dc`, `k8s`, …).
//!
//! With `auto`, one more model is scored: at each pair, the forecast of the
//! model that did best on that series before the origin ([`crate::auto`]),
//! under the name [`AUTO`].
//!
//! A model that cannot forecast a pair because the history is too short gets
//! the forecast of the first fallback model that can, recorded in
//! [`Evaluation::fallbacks`] (and logged); every other error stops the run.

use std::collections::BTreeMap;

use headroom_core::{Forecast, Interrupt, Limits, ResampledSeries, SeriesKey, format_ts};
use serde::Serialize;

use crate::auto::{Scored, choose, selection_origin};
use crate::error::{Error, Result};
use crate::forecaster::{Forecaster, History};
use crate::metrics::{ModelScore, PairScore, SeriesScore, score_pair};
use crate::protocol::Protocol;

/// The name of the model that picks, per series and origin, the best model so far.
pub const AUTO: &str = "auto";

/// A pair forecast by the fallback model instead of the one asked for.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fallback {
    /// The model that could not forecast.
    pub model: String,
    /// The series, `entity:metric`.
    pub series: String,
    /// The origin, RFC 3339.
    pub origin: String,
    /// The model used instead.
    pub used: String,
    /// Why.
    pub reason: String,
}

/// What `auto` chose.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AutoReport {
    /// The models it chose among, in the order that breaks ties.
    pub candidates: Vec<String>,
    /// Pairs on which each candidate was chosen (same order as `candidates`).
    pub choices: Vec<usize>,
    /// The same counts per group.
    pub groups: BTreeMap<String, Vec<usize>>,
    /// Pairs where no candidate had a finished forecast yet (the first candidate was used).
    pub without_evidence: usize,
    /// Selection forecasts (see [`crate::auto::selection_origin`]) made by a fallback model.
    pub fallbacks: Vec<Fallback>,
}

impl AutoReport {
    /// (candidate, pairs chosen), in candidate order.
    pub fn counts(&self) -> impl Iterator<Item = (&str, usize)> {
        self.candidates.iter().map(String::as_str).zip(self.choices.iter().copied())
    }
}

/// Everything a backtest produced.
#[derive(Debug, Clone)]
pub struct Evaluation {
    /// Every forecast, model by model (`auto` last).
    pub forecasts: Vec<Forecast>,
    /// One score per model, over all series.
    pub scores: Vec<ModelScore>,
    /// Scores per group, then per model.
    pub groups: BTreeMap<String, Vec<ModelScore>>,
    /// One score per model and series with at least one origin, model by model.
    pub series_scores: Vec<SeriesScore>,
    /// Pairs forecast by the fallback model.
    pub fallbacks: Vec<Fallback>,
    /// Series without a single origin (too short for the protocol).
    pub skipped: Vec<SeriesKey>,
    /// What `auto` chose, when it ran.
    pub auto: Option<AutoReport>,
}

/// What [`evaluate`] reports while it runs (it prints nothing itself).
#[derive(Debug, Clone, Copy)]
pub enum Progress<'a> {
    /// `model`, the `index`-th of `of` (from 0), starts forecasting `pairs` pairs.
    Started {
        /// The model.
        model: &'a str,
        /// Its position.
        index: usize,
        /// How many models run (not counting `auto`).
        of: usize,
        /// (series, origin) pairs it forecasts.
        pairs: usize,
    },
    /// `model` has forecast and scored every pair.
    Finished {
        /// The model.
        model: &'a str,
    },
}

/// The group of an entity: its first `/`-separated part.
pub fn group_of(key: &SeriesKey) -> &str {
    key.entity.split('/').next().unwrap_or(&key.entity)
}

/// Runs `models` over `series` with `protocol` (see the module docs), and
/// `auto` over them when asked. `series` must be on the protocol's step,
/// without missing bins. `progress` hears of each model as it runs; a raised
/// `interrupt` stops the run between rounds of forecasts with
/// [`Error::Interrupted`].
#[expect(
    clippy::too_many_arguments,
    reason = "each is a separate input of the protocol; a struct would only rename them"
)]
pub fn evaluate(
    series: &[ResampledSeries],
    limits: &Limits,
    models: &[&dyn Forecaster],
    fallbacks: &[&dyn Forecaster],
    protocol: &Protocol,
    auto: bool,
    progress: &mut dyn FnMut(Progress<'_>),
    interrupt: &Interrupt,
) -> Result<Evaluation> {
    for s in series {
        if s.grid.step_ms != protocol.step_ms {
            return Err(Error::Invalid(format!(
                "{}: grid step {} ms, the protocol needs {} ms",
                s.key, s.grid.step_ms, protocol.step_ms
            )));
        }
    }
    if auto && models.is_empty() {
        return Err(Error::Invalid(format!("{AUTO} chooses among other models: name at least one more")));
    }
    let horizon = protocol.horizon;
    let origins: Vec<Vec<usize>> = series.iter().map(|s| protocol.origins(s.values.len())).collect();
    let skipped = series.iter().zip(&origins).filter(|(_, o)| o.is_empty()).map(|(s, _)| s.key.clone()).collect();
    let history = |i: usize, o: usize| (i, History::of(&series[i]).first(o));
    let histories: Vec<(usize, History<'_>)> =
        origins.iter().enumerate().flat_map(|(i, os)| os.iter().map(move |&o| history(i, o))).collect();
    let only: Vec<History<'_>> = histories.iter().map(|(_, h)| *h).collect();
    // auto's extra forecasts, one per series, ending at its first origin.
    let selection: Vec<(usize, History<'_>)> = if auto {
        origins
            .iter()
            .enumerate()
            .filter_map(|(i, os)| selection_origin(*os.first()?, horizon).map(|o| history(i, o)))
            .collect()
    } else {
        Vec::new()
    };
    let selection_only: Vec<History<'_>> = selection.iter().map(|(_, h)| *h).collect();
    let score = |i: usize, h: &History<'_>, f: &Forecast| {
        let s = &series[i];
        let o = h.values.len();
        score_pair(&f.q, &s.values[o..o + horizon], h.values, h.bins_per_day(), limits.get(&s.key).map(|l| l.threshold))
    };

    let mut out = Evaluation {
        forecasts: Vec::new(),
        scores: Vec::new(),
        groups: BTreeMap::new(),
        series_scores: Vec::new(),
        fallbacks: Vec::new(),
        skipped,
        auto: None,
    };
    // For auto: each model's pair scores and its track per series.
    let mut pair_scores: Vec<Vec<Vec<PairScore>>> = Vec::new();
    let mut tracks: Vec<Vec<Vec<Scored>>> = Vec::new();
    let mut selection_fallbacks = Vec::new();
    for (index, model) in models.iter().enumerate() {
        progress(Progress::Started { model: model.name(), index, of: models.len(), pairs: only.len() });
        let (forecasts, used) = forecast_until(*model, fallbacks, &only, horizon, interrupt)?;
        if forecasts.len() != only.len() {
            return Err(Error::Invalid(format!(
                "{} returned {} forecasts for {} histories",
                model.name(),
                forecasts.len(),
                only.len()
            )));
        }
        out.fallbacks.extend(used);
        let mut per_series: Vec<Vec<PairScore>> = vec![Vec::new(); series.len()];
        for ((i, h), f) in histories.iter().zip(&forecasts) {
            per_series[*i].push(score(*i, h, f));
        }
        record(&mut out, series, model.name(), &per_series);
        out.forecasts.extend(forecasts);
        if auto {
            let (picks, used) = forecast_until(*model, fallbacks, &selection_only, horizon, interrupt)?;
            selection_fallbacks.extend(used);
            let mut track: Vec<Vec<Scored>> = vec![Vec::new(); series.len()];
            for ((i, h), f) in selection.iter().zip(&picks) {
                track[*i].push(Scored { end: h.values.len() + horizon, error: score(*i, h, f).mae });
            }
            for (i, t) in track.iter_mut().enumerate() {
                t.extend(
                    origins[i].iter().zip(&per_series[i]).map(|(&o, p)| Scored { end: o + horizon, error: p.mae }),
                );
            }
            tracks.push(track);
            pair_scores.push(per_series);
        }
        progress(Progress::Finished { model: model.name() });
    }
    if auto {
        let mut report = AutoReport {
            candidates: models.iter().map(|m| m.name().to_owned()).collect(),
            choices: vec![0; models.len()],
            groups: BTreeMap::new(),
            without_evidence: 0,
            fallbacks: selection_fallbacks,
        };
        let pairs = histories.len();
        let mut per_series: Vec<Vec<PairScore>> = vec![Vec::new(); series.len()];
        let mut forecasts = Vec::with_capacity(pairs);
        for (p, (i, h)) in histories.iter().enumerate() {
            let candidates: Vec<&[Scored]> = tracks.iter().map(|t| t[*i].as_slice()).collect();
            let chosen = choose(&candidates, h.values.len()).unwrap_or_else(|| {
                report.without_evidence += 1;
                0
            });
            report.choices[chosen] += 1;
            report.groups.entry(group_of(&series[*i].key).to_owned()).or_insert_with(|| vec![0; models.len()])
                [chosen] += 1;
            // The same forecast scores the same: take the chosen model's pair score.
            let k = per_series[*i].len();
            per_series[*i].push(pair_scores[chosen][*i][k].clone());
            let mut f = out.forecasts[chosen * pairs + p].clone();
            f.model = AUTO.to_owned();
            forecasts.push(f);
        }
        record(&mut out, series, AUTO, &per_series);
        out.forecasts.extend(forecasts);
        out.auto = Some(report);
    }
    Ok(out)
}

/// Adds one model's scores (per series, overall, per group) from its pair scores per series.
fn record(out: &mut Evaluation, series: &[ResampledSeries], model: &str, per_series: &[Vec<PairScore>]) {
    out.scores.push(ModelScore::from_pairs(model, per_series));
    let mut by_group: BTreeMap<&str, Vec<Vec<PairScore>>> = BTreeMap::new();
    for (s, pairs) in series.iter().zip(per_series) {
        by_group.entry(group_of(&s.key)).or_default().push(pairs.clone());
        if !pairs.is_empty() {
            out.series_scores.push(SeriesScore::from_pairs(model, group_of(&s.key), &s.key, pairs));
        }
    }
    for (group, pairs) in by_group {
        out.groups.entry(group.to_owned()).or_default().push(ModelScore::from_pairs(model, &pairs));
    }
}

/// One model over every history, in one batch per core. When a batch fails,
/// pair by pair: a pair whose history is too short for `model` is forecast by
/// the first model of `chain` that can (each case returned as a [`Fallback`]
/// and logged); any other error stops the run. The forecasts keep `model`'s
/// name, so a forecast file has one row set per model and pair.
pub fn forecast_with_fallback(
    model: &dyn Forecaster,
    chain: &[&dyn Forecaster],
    histories: &[History<'_>],
    horizon: usize,
) -> Result<(Vec<Forecast>, Vec<Fallback>)> {
    forecast_until(model, chain, histories, horizon, &Interrupt::default())
}

/// Histories forecast per thread in one round of [`forecast_until`]: a signal
/// is answered within one round (seconds), and a batching model still gets
/// large batches.
pub const ROUND_PER_THREAD: usize = 4096;

/// [`forecast_with_fallback`] in rounds of at most [`ROUND_PER_THREAD`]
/// histories per thread, checking `interrupt` before each round.
pub fn forecast_until(
    model: &dyn Forecaster,
    chain: &[&dyn Forecaster],
    histories: &[History<'_>],
    horizon: usize,
    interrupt: &Interrupt,
) -> Result<(Vec<Forecast>, Vec<Fallback>)> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut out = Vec::with_capacity(histories.len());
    let mut fallbacks = Vec::new();
    for round in histories.chunks(threads * ROUND_PER_THREAD) {
        interrupt.check()?;
        let (mut f, mut fb) = forecast_round(model, chain, round, horizon, threads)?;
        out.append(&mut f);
        fallbacks.append(&mut fb);
    }
    Ok((out, fallbacks))
}

/// One round: one batch per thread; pair by pair if a batch fails.
fn forecast_round(
    model: &dyn Forecaster,
    chain: &[&dyn Forecaster],
    histories: &[History<'_>],
    horizon: usize,
    threads: usize,
) -> Result<(Vec<Forecast>, Vec<Fallback>)> {
    let chunk = histories.len().div_ceil(threads).max(1);
    let batches: Vec<Result<Vec<Forecast>>> = std::thread::scope(|s| {
        let running: Vec<_> =
            histories.chunks(chunk).map(|c| s.spawn(move || model.forecast_batch(c, horizon))).collect();
        running.into_iter().map(|t| t.join().expect("a forecasting thread panicked")).collect()
    });
    if batches.iter().all(Result::is_ok) {
        return Ok((batches.into_iter().flat_map(|b| b.expect("checked")).collect(), Vec::new()));
    }
    let mut out = Vec::with_capacity(histories.len());
    let mut fallbacks = Vec::new();
    for h in histories {
        let one = std::slice::from_ref(h);
        let reason = match model.forecast_batch(one, horizon) {
            Ok(mut f) => {
                out.append(&mut f);
                continue;
            }
            Err(e @ Error::TooShort { .. }) => e,
            Err(e) => return Err(e),
        };
        let mut last_err = reason.to_string();
        let mut done = false;
        for fb in chain {
            match fb.forecast_batch(one, horizon) {
                Ok(mut f) => {
                    tracing::info!(model = model.name(), series = %h.key, origin = %format_ts(h.origin_ms()), reason = %reason, used = fb.name(), "fallback");
                    for x in &mut f {
                        x.model = model.name().to_owned();
                    }
                    fallbacks.push(Fallback {
                        model: model.name().to_owned(),
                        series: h.key.to_string(),
                        origin: format_ts(h.origin_ms()),
                        used: fb.name().to_owned(),
                        reason: reason.to_string(),
                    });
                    out.append(&mut f);
                    done = true;
                    break;
                }
                Err(e @ Error::TooShort { .. }) => last_err = e.to_string(),
                Err(e) => return Err(e),
            }
        }
        if !done {
            return Err(Error::Invalid(format!("{reason}; no fallback could forecast it either ({last_err})")));
        }
    }
    Ok((out, fallbacks))
}

#[cfg(test)]
mod tests {
    use headroom_core::{Grid, Limit, Quantiles, RepairReport};

    use super::*;
    use crate::forecaster::Fitted;

    /// Predicts the history's last value; refuses histories shorter than `need`.
    #[derive(Debug)]
    struct Last {
        need: usize,
    }

    #[derive(Debug)]
    struct LastFitted(f64);

    impl Fitted for LastFitted {
        fn predict(&self, horizon: usize) -> Result<Quantiles> {
            let at = |d: f64| vec![self.0 + d; horizon];
            Ok(Quantiles::new(at(-1.0), at(0.0), at(1.0), at(1.5), at(2.0))?)
        }
    }

    impl Forecaster for Last {
        fn name(&self) -> &str {
            if self.need > 0 { "picky" } else { "last" }
        }
        fn fit(&self, h: &History<'_>) -> Result<Box<dyn Fitted>> {
            Ok(Box::new(LastFitted(*h.window(self.need.max(1), self.name())?.last().unwrap())))
        }
    }

    fn series(entity: &str, values: Vec<f64>) -> ResampledSeries {
        let n = values.len() as i64;
        ResampledSeries {
            key: SeriesKey::new(entity, "cpu").unwrap(),
            grid: Grid::new(900_000, 0, n * 900_000).unwrap(),
            imputed: vec![false; values.len()],
            values,
            report: RepairReport::default(),
        }
    }

    #[test]
    fn every_origin_of_every_series_is_forecast_and_scored() {
        let p = Protocol::reference();
        // 14 days of a constant 5 and 14 days of a constant 50 above its threshold of 40.
        let s = vec![series("nab/a", vec![5.0; 1344]), series("asd/b", vec![50.0; 1344])];
        let mut limits = Limits::new();
        limits.insert(s[1].key.clone(), Limit::threshold(40.0));
        let last = Last { need: 0 };
        let e = evaluate(&s, &limits, &[&last], &[&last], &p, false, &mut |_| {}, &Interrupt::default()).unwrap();
        assert_eq!(e.forecasts.len(), 12); // 6 origins each
        assert!(e.forecasts.iter().all(|f| f.q.len() == 192));
        assert_eq!(e.forecasts[0].origin_ms, 672 * 900_000);
        let score = &e.scores[0];
        assert_eq!((score.series, score.pairs), (2, 12));
        assert_eq!(score.mean_mae, 0.0);
        assert_eq!(score.coverage, 1.0);
        assert_eq!((score.sat_p90.tp, score.sat_p90.fp, score.sat_p90.fn_), (6, 0, 0));
        assert_eq!((score.sat_p99.tp, score.sat_p99.fp, score.sat_p99.fn_), (6, 0, 0));
        assert_eq!(e.groups.keys().collect::<Vec<_>>(), ["asd", "nab"]);
        assert!(e.fallbacks.is_empty());
        // One row per model and series, in the order of the series.
        let rows: Vec<_> = e.series_scores.iter().map(|r| (r.model.as_str(), r.entity.as_str(), r.pairs)).collect();
        assert_eq!(rows, [("last", "nab/a", 6), ("last", "asd/b", 6)]);
        assert!(e.auto.is_none());
    }

    /// Always forecasts `value`.
    #[derive(Debug)]
    struct Const {
        name: &'static str,
        value: f64,
    }

    impl Forecaster for Const {
        fn name(&self) -> &str {
            self.name
        }
        fn fit(&self, _: &History<'_>) -> Result<Box<dyn Fitted>> {
            Ok(Box::new(LastFitted(self.value)))
        }
    }

    #[test]
    fn a_raised_interrupt_stops_the_run_with_nothing_returned() {
        let v: Vec<f64> = (0..1344).map(|i| (i % 96) as f64).collect();
        let s = vec![series("nab/a", v)];
        let five = Const { name: "five", value: 5.0 };
        let stop = Interrupt::new();
        stop.raise(2);
        let e = evaluate(&s, &Limits::new(), &[&five], &[&five], &Protocol::reference(), false, &mut |_| {}, &stop)
            .unwrap_err();
        assert!(matches!(e, Error::Interrupted(headroom_core::Interrupted { signal: 2 })), "{e}");
        assert_eq!(e.to_string(), "interrupted by SIGINT: stopped before finishing");
    }

    #[test]
    fn auto_uses_only_forecasts_that_ended_before_the_origin() {
        let p = Protocol::reference();
        // 14 days (origins 672, 768, …, 1152), 5 until bin 1000, then 50.
        let v: Vec<f64> = (0..1344).map(|i| if i < 1000 { 5.0 } else { 50.0 }).collect();
        let s = vec![series("nab/a", v)];
        let (five, fifty) = (Const { name: "five", value: 5.0 }, Const { name: "fifty", value: 50.0 });
        let mut heard = Vec::new();
        let e = evaluate(
            &s,
            &Limits::new(),
            &[&fifty, &five],
            &[&five],
            &p,
            true,
            &mut |p| {
                if let Progress::Started { model, index, of, pairs } = p {
                    heard.push(format!("{model} {index}/{of} {pairs}"));
                }
            },
            &Interrupt::default(),
        )
        .unwrap();
        assert_eq!(heard, ["fifty 0/2 6", "five 1/2 6"]);
        // From 1056 on, fifty is exact; but every forecast that had *ended* by
        // then favours five, so auto keeps five at every origin.
        let auto: Vec<&Forecast> = e.forecasts.iter().filter(|f| f.model == AUTO).collect();
        assert_eq!(auto.len(), 6);
        assert!(auto.iter().all(|f| f.q.p50.iter().all(|&x| x == 5.0)));
        let report = e.auto.as_ref().unwrap();
        assert_eq!(report.counts().collect::<Vec<_>>(), [("fifty", 0), ("five", 6)]);
        assert_eq!(report.groups["nab"], [0, 6]);
        assert_eq!(report.without_evidence, 0); // the selection forecast from 480 ended at 672
        // auto scores as the model it chose.
        let (five_score, auto_score) = (&e.scores[1], &e.scores[2]);
        assert_eq!(auto_score.model, AUTO);
        assert_eq!((auto_score.mean_mae, auto_score.pairs), (five_score.mean_mae, five_score.pairs));
        assert_eq!(e.series_scores.len(), 3);
    }

    #[test]
    fn auto_switches_once_the_evidence_has_ended() {
        let p = Protocol::reference();
        // 50 from bin 500 on: the selection forecast (480 → 672) already favours fifty.
        let v: Vec<f64> = (0..1344).map(|i| if i < 500 { 5.0 } else { 50.0 }).collect();
        let s = vec![series("nab/a", v)];
        let (five, fifty) = (Const { name: "five", value: 5.0 }, Const { name: "fifty", value: 50.0 });
        let e = evaluate(&s, &Limits::new(), &[&five, &fifty], &[&five], &p, true, &mut |_| {}, &Interrupt::default())
            .unwrap();
        assert_eq!(e.auto.unwrap().choices, [0, 6]);
        assert_eq!(e.scores[2].mean_mae, 0.0);
    }

    #[test]
    fn auto_needs_another_model() {
        let last = Last { need: 0 };
        let s = vec![series("nab/a", vec![1.0; 1344])];
        let e = evaluate(
            &s,
            &Limits::new(),
            &[],
            &[&last],
            &Protocol::reference(),
            true,
            &mut |_| {},
            &Interrupt::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("auto chooses among other models"), "{e}");
    }

    #[test]
    fn too_short_histories_fall_back_and_say_so() {
        let p = Protocol::reference();
        let s = vec![series("dc/x", vec![1.0; 748])]; // origins at 364, 460, 556
        let picky = Last { need: 400 };
        let last = Last { need: 0 };
        let e =
            evaluate(&s, &Limits::new(), &[&picky], &[&picky, &last], &p, false, &mut |_| {}, &Interrupt::default())
                .unwrap();
        assert_eq!(e.forecasts.len(), 3);
        assert!(e.forecasts.iter().all(|f| f.model == "picky"));
        assert_eq!(e.fallbacks.len(), 1);
        assert_eq!(e.fallbacks[0].used, "last");
        assert!(e.fallbacks[0].reason.contains("needs at least 400 points of history, has 364"), "{:?}", e.fallbacks);
    }

    #[test]
    fn a_grid_of_another_step_is_refused() {
        let mut s = series("nab/a", vec![1.0; 10]);
        s.grid = Grid::new(300_000, 0, 3_000_000).unwrap();
        let last = Last { need: 0 };
        let e = evaluate(
            &[s],
            &Limits::new(),
            &[&last],
            &[&last],
            &Protocol::reference(),
            false,
            &mut |_| {},
            &Interrupt::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("grid step 300000 ms"), "{e}");
    }
}
