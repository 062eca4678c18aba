//! Runs the reference protocol ([`Protocol`]) over many series and models:
//! every model forecasts every (series, origin) pair from the data before the
//! origin, each forecast is scored against the actuals that followed
//! ([`crate::metrics`]), and scores are aggregated per model, overall and per
//! group (the entity's first path part: `nab`, `asd`, `dc`, `k8s`, …).
//!
//! A model that cannot forecast a pair because the history is too short gets
//! the forecast of the first fallback model that can, recorded in
//! [`Evaluation::fallbacks`] (and logged); every other error stops the run.

use std::collections::BTreeMap;

use headroom_core::{Forecast, Limits, ResampledSeries, SeriesKey, format_ts};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::forecaster::{Forecaster, History};
use crate::metrics::{ModelScore, PairScore, score_pair};
use crate::protocol::Protocol;

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

/// Everything a backtest produced.
#[derive(Debug, Clone)]
pub struct Evaluation {
    /// Every forecast, model by model.
    pub forecasts: Vec<Forecast>,
    /// One score per model, over all series.
    pub scores: Vec<ModelScore>,
    /// Scores per group, then per model.
    pub groups: BTreeMap<String, Vec<ModelScore>>,
    /// Pairs forecast by the fallback model.
    pub fallbacks: Vec<Fallback>,
    /// Series without a single origin (too short for the protocol).
    pub skipped: Vec<SeriesKey>,
}

/// The group of an entity: its first `/`-separated part.
pub fn group_of(key: &SeriesKey) -> &str {
    key.entity.split('/').next().unwrap_or(&key.entity)
}

/// Runs `models` over `series` with `protocol` (see the module docs).
/// `series` must be on the protocol's step, without missing bins.
pub fn evaluate(
    series: &[ResampledSeries],
    limits: &Limits,
    models: &[&dyn Forecaster],
    fallbacks: &[&dyn Forecaster],
    protocol: &Protocol,
) -> Result<Evaluation> {
    for s in series {
        if s.grid.step_ms != protocol.step_ms {
            return Err(Error::Invalid(format!(
                "{}: grid step {} ms, the protocol needs {} ms",
                s.key, s.grid.step_ms, protocol.step_ms
            )));
        }
    }
    let origins: Vec<Vec<usize>> = series.iter().map(|s| protocol.origins(s.values.len())).collect();
    let skipped = series.iter().zip(&origins).filter(|(_, o)| o.is_empty()).map(|(s, _)| s.key.clone()).collect();
    let histories: Vec<(usize, History<'_>)> = series
        .iter()
        .enumerate()
        .flat_map(|(i, s)| {
            origins[i].iter().map(move |&o| {
                let h =
                    History { key: &s.key, start_ms: s.grid.start_ms, step_ms: s.grid.step_ms, values: &s.values[..o] };
                (i, h)
            })
        })
        .collect();
    let only: Vec<History<'_>> = histories.iter().map(|(_, h)| *h).collect();

    let mut out = Evaluation {
        forecasts: Vec::new(),
        scores: Vec::new(),
        groups: BTreeMap::new(),
        fallbacks: Vec::new(),
        skipped,
    };
    for model in models {
        let (forecasts, used) = forecast_with_fallback(*model, fallbacks, &only, protocol.horizon)?;
        out.fallbacks.extend(used);
        let mut per_series: Vec<Vec<PairScore>> = vec![Vec::new(); series.len()];
        for ((i, h), f) in histories.iter().zip(&forecasts) {
            let s = &series[*i];
            let o = h.values.len();
            let actual = &s.values[o..o + protocol.horizon];
            let threshold = limits.get(&s.key).map(|l| l.threshold);
            per_series[*i].push(score_pair(&f.q, actual, h.values, h.bins_per_day(), threshold));
        }
        out.scores.push(ModelScore::from_pairs(model.name(), &per_series));
        let mut by_group: BTreeMap<&str, Vec<Vec<PairScore>>> = BTreeMap::new();
        for (s, pairs) in series.iter().zip(per_series) {
            by_group.entry(group_of(&s.key)).or_default().push(pairs);
        }
        for (group, pairs) in by_group {
            out.groups.entry(group.to_owned()).or_default().push(ModelScore::from_pairs(model.name(), &pairs));
        }
        out.forecasts.extend(forecasts);
    }
    Ok(out)
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
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
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
            Ok(Quantiles::new(vec![self.0 - 1.0; horizon], vec![self.0; horizon], vec![self.0 + 1.0; horizon])?)
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
        let e = evaluate(&s, &limits, &[&last], &[&last], &p).unwrap();
        assert_eq!(e.forecasts.len(), 12); // 6 origins each
        assert!(e.forecasts.iter().all(|f| f.q.len() == 192));
        assert_eq!(e.forecasts[0].origin_ms, 672 * 900_000);
        let score = &e.scores[0];
        assert_eq!((score.series, score.pairs), (2, 12));
        assert_eq!(score.mean_mae, 0.0);
        assert_eq!(score.coverage, 1.0);
        assert_eq!((score.sat_p90.tp, score.sat_p90.fp, score.sat_p90.fn_), (6, 0, 0));
        assert_eq!(e.groups.keys().collect::<Vec<_>>(), ["asd", "nab"]);
        assert!(e.fallbacks.is_empty());
    }

    #[test]
    fn too_short_histories_fall_back_and_say_so() {
        let p = Protocol::reference();
        let s = vec![series("dc/x", vec![1.0; 748])]; // origins at 364, 460, 556
        let picky = Last { need: 400 };
        let last = Last { need: 0 };
        let e = evaluate(&s, &Limits::new(), &[&picky], &[&picky, &last], &p).unwrap();
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
        let e = evaluate(&[s], &Limits::new(), &[&last], &[&last], &Protocol::reference()).unwrap_err();
        assert!(e.to_string().contains("grid step 300000 ms"), "{e}");
    }
}
