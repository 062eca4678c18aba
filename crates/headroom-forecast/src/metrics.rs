//! Accuracy metrics, computed as the reference scorer (`score.py`) does:
//! MASE scaled by the in-sample seasonal-naive error of all history before the
//! origin, sMAPE on p50, p10–p90 coverage, pinball loss, and saturation
//! precision/recall (an event is the actuals' max over the horizon above the
//! series' threshold; a forecast flags it when its own max is above: of p50,
//! p90, and the risk tails p95 and p99); and calibration (per model, the share
//! of actuals at or below each quantile, against the quantile's nominal level).
//! One measure is headroom's own, not the scorer's: [`precision_at_recall`],
//! how well p90's peak ranks the pairs that saturate whatever its calibration.

use std::collections::HashMap;

use headroom_core::forecast::QUANTILES;
use headroom_core::{Forecast, Quantiles, ResampledSeries, SeriesKey};
use serde::{Deserialize, Serialize};

/// Pinball (quantile) loss of `pred` for quantile `q` against `actual`.
pub fn pinball(q: f64, pred: f64, actual: f64) -> f64 {
    let d = actual - pred;
    if d >= 0.0 { q * d } else { (q - 1.0) * d }
}

/// Mean absolute difference between the history and itself `season` bins
/// earlier: the MASE scale. `None` when the history is not longer than a season.
pub fn seasonal_naive_scale(history: &[f64], season: usize) -> Option<f64> {
    if history.len() <= season {
        return None;
    }
    let n = history.len() - season;
    Some(history[season..].iter().zip(history).map(|(a, b)| (a - b).abs()).sum::<f64>() / n as f64)
}

/// Symmetric MAPE in percent, with 0 where both values are 0.
pub fn smape(pred: &[f64], actual: &[f64]) -> f64 {
    let total: f64 = pred
        .iter()
        .zip(actual)
        .map(|(p, a)| {
            let den = p.abs() + a.abs();
            if den > 0.0 { 200.0 * (p - a).abs() / den } else { 0.0 }
        })
        .sum();
    total / pred.len().max(1) as f64
}

/// Saturation outcomes counted over (series, origin) pairs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confusion {
    /// Flagged and happened.
    pub tp: usize,
    /// Flagged, did not happen.
    pub fp: usize,
    /// Happened, not flagged.
    pub fn_: usize,
}

impl Confusion {
    /// Counts one pair.
    pub fn add(&mut self, flagged: bool, event: bool) {
        match (flagged, event) {
            (true, true) => self.tp += 1,
            (true, false) => self.fp += 1,
            (false, true) => self.fn_ += 1,
            (false, false) => {}
        }
    }

    /// tp / (tp + fp), NaN when nothing was flagged.
    pub fn precision(&self) -> f64 {
        ratio(self.tp, self.tp + self.fp)
    }

    /// tp / (tp + fn), NaN when nothing happened.
    pub fn recall(&self) -> f64 {
        ratio(self.tp, self.tp + self.fn_)
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 { f64::NAN } else { a as f64 / b as f64 }
}

/// The score of one forecast against the actuals that followed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairScore {
    /// Mean absolute error of p50.
    pub mae: f64,
    /// MAE over the seasonal-naive scale; NaN when the scale is 0 or unknown.
    pub mase: f64,
    /// sMAPE of p50, percent.
    pub smape: f64,
    /// Mean pinball loss over p10, p50 and p90 and every step.
    pub pinball: f64,
    /// Steps whose actual lies within [p10, p90].
    pub covered: usize,
    /// Steps scored.
    pub steps: usize,
    /// Whether the actuals crossed the threshold (None without a threshold).
    pub event: Option<bool>,
    /// Whether p50's max crossed it.
    pub flag_p50: bool,
    /// Whether p90's max crossed it.
    pub flag_p90: bool,
    /// Whether p95's max crossed it (false in scores written before the tails).
    #[serde(default)]
    pub flag_p95: bool,
    /// Whether p99's max crossed it (false in scores written before the tails).
    #[serde(default)]
    pub flag_p99: bool,
    /// p90's max over the threshold (NaN without a threshold, and in scores
    /// written before it): the alarm score behind [`ModelScore::sat_p90_precision_at_recall`].
    #[serde(default = "nan")]
    pub p90_peak_ratio: f64,
}

fn nan() -> f64 {
    f64::NAN
}

/// Scores one forecast: `actual` are the bins it covers, `history` every bin
/// before its origin, `season` the MASE season (one day of bins).
pub fn score_pair(q: &Quantiles, actual: &[f64], history: &[f64], season: usize, threshold: Option<f64>) -> PairScore {
    let n = actual.len().min(q.len());
    let (p10, p50, p90, actual) = (&q.p10[..n], &q.p50[..n], &q.p90[..n], &actual[..n]);
    let mae = p50.iter().zip(actual).map(|(p, a)| (p - a).abs()).sum::<f64>() / n.max(1) as f64;
    let mase = match seasonal_naive_scale(history, season) {
        Some(scale) if scale > 0.0 => mae / scale,
        _ => f64::NAN,
    };
    let mut pin = 0.0;
    let mut covered = 0;
    for i in 0..n {
        pin += pinball(0.1, p10[i], actual[i]) + pinball(0.5, p50[i], actual[i]) + pinball(0.9, p90[i], actual[i]);
        covered += usize::from(p10[i] <= actual[i] && actual[i] <= p90[i]);
    }
    let max = |v: &[f64]| v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let flag = |path: &[f64]| threshold.is_some_and(|t| max(&path[..n]) > t);
    let event = threshold.map(|t| max(actual) > t);
    PairScore {
        mae,
        mase,
        smape: smape(p50, actual),
        pinball: pin / (3 * n.max(1)) as f64,
        covered,
        steps: n,
        event,
        flag_p50: flag(p50),
        flag_p90: flag(p90),
        flag_p95: flag(&q.p95),
        flag_p99: flag(&q.p99),
        p90_peak_ratio: threshold.map_or(f64::NAN, |t| max(p90) / t),
    }
}

/// One model's score on one series, averaged over its origins (a row of `scores.parquet`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesScore {
    /// The model's name.
    pub model: String,
    /// The series' group (the entity's first `/`-separated part).
    pub group: String,
    /// Entity of the series.
    pub entity: String,
    /// Metric of the series.
    pub metric: String,
    /// Origins scored.
    pub pairs: usize,
    /// Mean over origins of the MAE of p50.
    pub mae: f64,
    /// Mean over origins of the sMAPE of p50 (percent).
    pub smape: f64,
    /// Mean over origins of the MASE (origins with a finite MASE); NaN if none.
    pub mase: f64,
    /// Mean pinball loss over origins, quantiles and steps.
    pub pinball: f64,
    /// Share of actuals inside [p10, p90].
    pub coverage: f64,
}

impl SeriesScore {
    /// Averages one series' pair scores (NaN everywhere when `pairs` is empty).
    pub fn from_pairs(model: &str, group: &str, key: &SeriesKey, pairs: &[PairScore]) -> Self {
        let m = SeriesMeans::of(pairs);
        let steps: usize = pairs.iter().map(|p| p.steps).sum();
        Self {
            model: model.to_owned(),
            group: group.to_owned(),
            entity: key.entity.clone(),
            metric: key.metric.clone(),
            pairs: pairs.len(),
            mae: m.mae,
            smape: m.smape,
            mase: m.mase,
            pinball: mean(&pairs.iter().map(|p| p.pinball).collect::<Vec<_>>()),
            coverage: if steps == 0 {
                f64::NAN
            } else {
                pairs.iter().map(|p| p.covered).sum::<usize>() as f64 / steps as f64
            },
        }
    }
}

/// The mean of `v`, NaN when empty.
fn mean(v: &[f64]) -> f64 {
    if v.is_empty() { f64::NAN } else { v.iter().sum::<f64>() / v.len() as f64 }
}

/// One series' means over its origins, as `score.py` takes them (the one
/// definition behind [`SeriesScore`] and [`ModelScore`]).
struct SeriesMeans {
    mae: f64,
    smape: f64,
    /// Over origins with a finite MASE; NaN if none.
    mase: f64,
}

impl SeriesMeans {
    fn of(pairs: &[PairScore]) -> Self {
        let finite: Vec<f64> = pairs.iter().map(|p| p.mase).filter(|m| m.is_finite()).collect();
        Self {
            mae: mean(&pairs.iter().map(|p| p.mae).collect::<Vec<_>>()),
            smape: mean(&pairs.iter().map(|p| p.smape).collect::<Vec<_>>()),
            mase: mean(&finite),
        }
    }
}

/// One model's score over many series, aggregated as `score.py` does: MASE and
/// sMAPE averaged per series first, then over series; coverage and saturation pooled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelScore {
    /// The model's name.
    pub model: String,
    /// Series scored.
    pub series: usize,
    /// (series, origin) pairs scored.
    pub pairs: usize,
    /// Mean over series of the mean MAE.
    pub mean_mae: f64,
    /// Mean over series of the mean sMAPE (percent).
    pub mean_smape: f64,
    /// Mean over series of the mean MASE (series with a finite MASE).
    pub mean_mase: f64,
    /// Median over series of the mean MASE.
    pub median_mase: f64,
    /// Share of actuals inside [p10, p90], pooled.
    pub coverage: f64,
    /// Share of series whose own p10–p90 coverage lies within
    /// [`SERIES_COVERAGE_BAND`]: calibrated per series, not only pooled.
    #[serde(default)]
    pub series_covered: f64,
    /// Mean pinball loss, pooled over pairs.
    pub pinball: f64,
    /// Saturation flags from p50.
    pub sat_p50: Confusion,
    /// Saturation flags from p90.
    pub sat_p90: Confusion,
    /// Saturation flags from p95 (empty in scores written before the tails).
    #[serde(default)]
    pub sat_p95: Confusion,
    /// Saturation flags from p99 (empty in scores written before the tails).
    #[serde(default)]
    pub sat_p99: Confusion,
    /// How well p90's peak tells the pairs that saturate from those that do
    /// not, whatever its calibration: the best saturation precision reachable
    /// with recall at least 0.95 and at least 0.99 ([`SAT_RECALLS`]) by
    /// moving every threshold by one common factor (flagging a pair when its
    /// p90 max is above factor × threshold; factor 1 is [`ModelScore::sat_p90`]).
    /// NaN when nothing saturated (and in scores written before it).
    #[serde(default = "nans")]
    pub sat_p90_precision_at_recall: [f64; 2],
}

/// The recalls [`ModelScore::sat_p90_precision_at_recall`] is read at.
pub const SAT_RECALLS: [f64; 2] = [0.95, 0.99];

fn nans() -> [f64; 2] {
    [f64::NAN; 2]
}

impl ModelScore {
    /// Aggregates pair scores grouped by series (`per_series[i]` holds series i's pairs).
    pub fn from_pairs(model: &str, per_series: &[Vec<PairScore>]) -> Self {
        let (mut mase, mut smapes, mut maes) = (Vec::new(), Vec::new(), Vec::new());
        let (mut covered, mut steps, mut pin, mut pairs) = (0usize, 0usize, 0.0, 0usize);
        let (mut sat_p50, mut sat_p90) = (Confusion::default(), Confusion::default());
        let (mut sat_p95, mut sat_p99) = (Confusion::default(), Confusion::default());
        let (mut series, mut in_band) = (0, 0usize);
        let mut alarms = Vec::new();
        for pairs_of in per_series.iter().filter(|p| !p.is_empty()) {
            series += 1;
            let (c, n) = pairs_of.iter().fold((0, 0), |(c, n), p| (c + p.covered, n + p.steps));
            in_band += usize::from(n > 0 && SERIES_COVERAGE_BAND.contains(&(c as f64 / n as f64)));
            let m = SeriesMeans::of(pairs_of);
            if m.mase.is_finite() {
                mase.push(m.mase);
            }
            smapes.push(m.smape);
            maes.push(m.mae);
            for p in pairs_of {
                pairs += 1;
                covered += p.covered;
                steps += p.steps;
                pin += p.pinball;
                if let Some(event) = p.event {
                    sat_p50.add(p.flag_p50, event);
                    sat_p90.add(p.flag_p90, event);
                    sat_p95.add(p.flag_p95, event);
                    sat_p99.add(p.flag_p99, event);
                    if !p.p90_peak_ratio.is_nan() {
                        alarms.push((p.p90_peak_ratio, event));
                    }
                }
            }
        }
        let median = {
            let mut m = mase.clone();
            m.sort_by(f64::total_cmp);
            match m.len() {
                0 => f64::NAN,
                n if n % 2 == 1 => m[n / 2],
                n => (m[n / 2 - 1] + m[n / 2]) / 2.0,
            }
        };
        Self {
            model: model.to_owned(),
            series,
            pairs,
            mean_mae: mean(&maes),
            mean_smape: mean(&smapes),
            mean_mase: mean(&mase),
            median_mase: median,
            coverage: if steps == 0 { f64::NAN } else { covered as f64 / steps as f64 },
            series_covered: if series == 0 { f64::NAN } else { in_band as f64 / series as f64 },
            pinball: if pairs == 0 { f64::NAN } else { pin / pairs as f64 },
            sat_p50,
            sat_p90,
            sat_p95,
            sat_p99,
            sat_p90_precision_at_recall: SAT_RECALLS.map(|r| precision_at_recall(&mut alarms, r)),
        }
    }
}

/// The best precision of the alarm "score above a cut" over every cut whose
/// recall is at least `recall`, for `(score, event)` pairs; NaN when no pair
/// is an event. Pairs with equal scores are flagged together, as a cut cannot
/// split them. Sorts `alarms` (highest score first).
pub fn precision_at_recall(alarms: &mut [(f64, bool)], recall: f64) -> f64 {
    let events = alarms.iter().filter(|a| a.1).count();
    if events == 0 {
        return f64::NAN;
    }
    alarms.sort_by(|a, b| b.0.total_cmp(&a.0));
    let (mut tp, mut flagged, mut best) = (0usize, 0usize, f64::NAN);
    for (i, (score, event)) in alarms.iter().enumerate() {
        flagged += 1;
        tp += usize::from(*event);
        let last_of_tie = alarms.get(i + 1).is_none_or(|next| next.0 != *score);
        if last_of_tie && tp as f64 >= recall * events as f64 {
            best = f64::max(best, tp as f64 / flagged as f64);
        }
    }
    best
}

/// The p10–p90 coverage a series' own forecasts should have (nominal 0.8):
/// [`ModelScore::series_covered`] counts the series inside it.
pub const SERIES_COVERAGE_BAND: std::ops::RangeInclusive<f64> = 0.7..=0.9;

/// One model's calibration: how many actuals fell at or below each of its
/// quantiles (p10, p50, p90, p95, p99), out of how many compared.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Calibration {
    /// The model's name.
    pub model: String,
    /// Actuals at or below p10, p50, p90, p95 and p99.
    pub below: [usize; QUANTILES.len()],
    /// Actuals compared (bins with a forecast and a finite actual).
    pub total: usize,
}

impl Calibration {
    /// The nominal level of each quantile ([`QUANTILES`]: 0.1, 0.5, 0.9, 0.95, 0.99).
    pub const NOMINAL: [f64; QUANTILES.len()] = QUANTILES;

    /// The observed level of each quantile: the share of actuals at or below
    /// it (NaN when nothing was compared). A calibrated model's equal [`Self::NOMINAL`].
    pub fn observed(&self) -> [f64; QUANTILES.len()] {
        self.below.map(|b| if self.total == 0 { f64::NAN } else { b as f64 / self.total as f64 })
    }
}

/// Calibration per model (in the order models first appear in `forecasts`):
/// every step of every forecast whose time is a bin of its series with a
/// finite actual counts once. Models with nothing to compare are left out.
pub fn calibration(series: &[ResampledSeries], forecasts: &[Forecast]) -> Vec<Calibration> {
    let by_key: HashMap<&SeriesKey, &ResampledSeries> = series.iter().map(|s| (&s.key, s)).collect();
    let mut out: Vec<Calibration> = Vec::new();
    for f in forecasts {
        let Some(s) = by_key.get(&f.key) else { continue };
        let i = match out.iter().position(|c| c.model == f.model) {
            Some(i) => i,
            None => {
                out.push(Calibration { model: f.model.clone(), ..Calibration::default() });
                out.len() - 1
            }
        };
        let c = &mut out[i];
        for k in 0..f.q.len() {
            let t = f.ts(k);
            if t < s.grid.start_ms || (t - s.grid.start_ms) % s.grid.step_ms != 0 {
                continue;
            }
            let Some(&a) = s.values.get(((t - s.grid.start_ms) / s.grid.step_ms) as usize) else { continue };
            if !a.is_finite() {
                continue;
            }
            c.total += 1;
            for (j, (_, path)) in f.q.paths().into_iter().enumerate() {
                c.below[j] += usize::from(a <= path[k]);
            }
        }
    }
    out.retain(|c| c.total > 0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinball_by_hand() {
        assert_eq!(pinball(0.9, 10.0, 12.0), 0.9 * 2.0);
        assert!((pinball(0.9, 12.0, 10.0) - 0.1 * 2.0).abs() < 1e-12);
        assert_eq!(pinball(0.5, 3.0, 3.0), 0.0);
    }

    #[test]
    fn pair_score_by_hand() {
        // History with season 2: |3-1| + |4-2| + |5-3| = 6 over 3 → scale 2.
        let history = [1.0, 2.0, 3.0, 4.0, 5.0];
        let q = Quantiles::new(vec![0.0, 0.0], vec![2.0, 4.0], vec![3.0, 5.0], vec![3.0, 5.5], vec![3.0, 6.0]).unwrap();
        let s = score_pair(&q, &[3.0, 6.0], &history, 2, Some(5.5));
        assert_eq!(s.mae, 1.5); // |2-3| and |4-6|
        assert_eq!(s.mase, 0.75);
        assert!((s.smape - (200.0 / 5.0 + 400.0 / 10.0) / 2.0).abs() < 1e-12);
        assert_eq!((s.covered, s.steps), (1, 2));
        assert_eq!((s.event, s.flag_p50, s.flag_p90), (Some(true), false, false));
        // p95 reaches 5.5, not above it; p99's 6.0 is above: only the 99th percentile flags the event.
        assert_eq!((s.flag_p95, s.flag_p99), (false, true));
        let none = score_pair(&q, &[3.0, 6.0], &history, 2, None);
        assert_eq!(
            (none.event, none.flag_p50, none.flag_p90, none.flag_p95, none.flag_p99),
            (None, false, false, false, false)
        );
        let expected_pin = (pinball(0.1, 0.0, 3.0)
            + pinball(0.5, 2.0, 3.0)
            + pinball(0.9, 3.0, 3.0)
            + pinball(0.1, 0.0, 6.0)
            + pinball(0.5, 4.0, 6.0)
            + pinball(0.9, 5.0, 6.0))
            / 6.0;
        assert!((s.pinball - expected_pin).abs() < 1e-12);
    }

    #[test]
    fn model_score_averages_per_series_then_over_series() {
        let pair = |mase: f64, event: bool, flag: bool| PairScore {
            mae: mase,
            mase,
            smape: 10.0 * mase,
            pinball: 0.0,
            covered: 8,
            steps: 10,
            event: Some(event),
            flag_p50: flag,
            flag_p90: flag,
            flag_p95: flag,
            // p99 flags every pair.
            flag_p99: true,
            p90_peak_ratio: if flag { 1.5 } else { 0.5 },
        };
        let s = ModelScore::from_pairs(
            "m",
            &[vec![pair(1.0, true, true), pair(3.0, false, true)], vec![pair(1.0, true, false)], vec![]],
        );
        assert_eq!((s.series, s.pairs), (2, 3));
        assert_eq!(s.mean_mase, 1.5); // (2 + 1) / 2
        assert_eq!(s.median_mase, 1.5);
        assert_eq!(s.coverage, 0.8);
        assert_eq!(s.series_covered, 1.0, "both series cover 8 of 10 steps");
        assert_eq!(s.sat_p90, Confusion { tp: 1, fp: 1, fn_: 1 });
        assert_eq!((s.sat_p90.precision(), s.sat_p90.recall()), (0.5, 0.5));
        assert_eq!(s.sat_p95, s.sat_p90);
        assert_eq!(s.sat_p99, Confusion { tp: 2, fp: 1, fn_: 0 });
        // Recall 0.95 needs both events: only the cut below 0.5 has it (2 of 3 flagged).
        assert_eq!(s.sat_p90_precision_at_recall, [2.0 / 3.0; 2]);
    }

    #[test]
    fn precision_at_recall_is_the_best_cut_that_still_catches_enough_events() {
        // Scores highest first: 0.9 event, 0.8 no event, 0.7 event, 0.6 no event, 0.5 event.
        let mut alarms = [(0.5, true), (0.7, true), (0.9, true), (0.6, false), (0.8, false)];
        // Every event: only the cut below 0.5, all five flagged.
        assert_eq!(precision_at_recall(&mut alarms, 1.0), 0.6);
        // Two of three events: below 0.7 (2 of 3 flagged) beats below 0.6 (2 of 4) and 0.5 (3 of 5).
        assert_eq!(precision_at_recall(&mut alarms, 0.6), 2.0 / 3.0);
        // One event is enough: the top pair alone.
        assert_eq!(precision_at_recall(&mut alarms, 0.3), 1.0);
        // A tie cannot be split: the event at 0.7 brings the non-event tied with it.
        let mut tied = [(0.9, true), (0.7, true), (0.7, false), (0.1, false)];
        assert_eq!(precision_at_recall(&mut tied, 1.0), 2.0 / 3.0);
        // No event: nothing to recall.
        assert!(precision_at_recall(&mut [(0.9, false)], 0.95).is_nan());
    }

    #[test]
    fn the_p90_peak_over_the_threshold_is_the_alarm_score_and_factor_one_is_the_flag() {
        let q = Quantiles {
            p10: vec![0.0; 3],
            p50: vec![1.0; 3],
            p90: vec![2.0, 4.0, 3.0],
            p95: vec![4.0; 3],
            p99: vec![5.0; 3],
        };
        let s = score_pair(&q, &[1.0, 1.0, 1.0], &[1.0; 8], 2, Some(3.2));
        assert_eq!(s.p90_peak_ratio, 4.0 / 3.2);
        assert!(s.flag_p90 && s.p90_peak_ratio > 1.0);
        assert!(score_pair(&q, &[1.0; 3], &[1.0; 8], 2, None).p90_peak_ratio.is_nan());
    }

    #[test]
    fn series_score_averages_over_origins_and_skips_undefined_mase() {
        let pair = |mae: f64, mase: f64, pinball: f64, covered: usize| PairScore {
            mae,
            mase,
            smape: 10.0 * mae,
            pinball,
            covered,
            steps: 4,
            event: None,
            flag_p50: false,
            flag_p90: false,
            flag_p95: false,
            flag_p99: false,
            p90_peak_ratio: f64::NAN,
        };
        let key = SeriesKey::new("nab/a", "cpu").unwrap();
        let s = SeriesScore::from_pairs(
            "m",
            "nab",
            &key,
            &[pair(1.0, 0.5, 0.2, 4), pair(3.0, f64::NAN, 0.4, 1), pair(2.0, 1.5, 0.3, 1)],
        );
        assert_eq!(
            (s.model.as_str(), s.group.as_str(), s.entity.as_str(), s.metric.as_str()),
            ("m", "nab", "nab/a", "cpu")
        );
        assert_eq!(s.pairs, 3);
        assert_eq!((s.mae, s.smape, s.mase), (2.0, 20.0, 1.0));
        assert!((s.pinball - 0.3).abs() < 1e-12);
        assert_eq!(s.coverage, 0.5); // 6 of 12 steps
        // The series means are the ones a model score averages over series.
        let m = ModelScore::from_pairs(
            "m",
            &[vec![pair(1.0, 0.5, 0.2, 4), pair(3.0, f64::NAN, 0.4, 1), pair(2.0, 1.5, 0.3, 1)]],
        );
        assert_eq!((m.mean_mae, m.mean_smape, m.mean_mase), (s.mae, s.smape, s.mase));
        assert_eq!(m.series_covered, 0.0, "a series covering half its steps is outside 0.70–0.90");
        let none = SeriesScore::from_pairs("m", "nab", &key, &[pair(1.0, f64::NAN, 0.0, 0)]);
        assert!(none.mase.is_nan());
    }

    #[test]
    fn calibration_counts_actuals_at_or_below_each_quantile_per_model() {
        use headroom_core::{Grid, RepairReport};
        let step = 900_000;
        let key = SeriesKey::new("nab/a", "cpu").unwrap();
        // Actuals 0..8; bin 5 missing.
        let mut values: Vec<f64> = (0..8).map(f64::from).collect();
        values[5] = f64::NAN;
        let series = ResampledSeries {
            key: key.clone(),
            grid: Grid::new(step, 0, 8 * step).unwrap(),
            imputed: vec![false; 8],
            values,
            report: RepairReport::default(),
        };
        let forecast = |model: &str, origin: usize, p50: Vec<f64>| Forecast {
            key: key.clone(),
            model: model.into(),
            origin_ms: origin as i64 * step,
            step_ms: step,
            q: Quantiles::new(
                p50.iter().map(|v| v - 1.0).collect(),
                p50.clone(),
                p50.iter().map(|v| v + 1.0).collect(),
                p50.iter().map(|v| v + 1.5).collect(),
                p50.iter().map(|v| v + 2.0).collect(),
            )
            .unwrap(),
        };
        let forecasts = [
            // Bins 4..8: actuals 4, NaN, 6, 7 (and bin 8, past the data, is not compared).
            forecast("a", 4, vec![4.0, 5.0, 5.0, 7.5, 9.0]),
            forecast("b", 6, vec![0.0, 0.0]),
            forecast("a", 2, vec![2.5]),
            // Another series: not in `series`, so not compared.
            Forecast { key: SeriesKey::new("nab/b", "cpu").unwrap(), ..forecast("c", 2, vec![1.0]) },
        ];
        let cal = calibration(&[series], &forecasts);
        assert_eq!(cal.iter().map(|c| c.model.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        // a: actual 4 vs (3, 4, 5, 5.5, 6); 6 vs (4, 5, 6, 6.5, 7); 7 vs (6.5, 7.5, 8.5, 9, 9.5);
        // 2 vs (1.5, 2.5, 3.5, 4, 4.5).
        assert_eq!((cal[0].below, cal[0].total), ([0, 3, 4, 4, 4], 4));
        assert_eq!(cal[0].observed(), [0.0, 0.75, 1.0, 1.0, 1.0]);
        // b: 6 and 7 against (-1, 0, 1, 1.5, 2): above every quantile.
        assert_eq!((cal[1].below, cal[1].total), ([0, 0, 0, 0, 0], 2));
        assert_eq!(Calibration::NOMINAL, [0.1, 0.5, 0.9, 0.95, 0.99]);
        assert!(Calibration::default().observed().iter().all(|v| v.is_nan()));
    }
}
