//! Forecast health: how well the recent forecasts of one series matched what
//! happened, so that predictive actions are turned off when they did not.

use headroom_core::forecast::QUANTILES;
use headroom_core::{Forecast, Quantiles, SeriesData, format_duration};
use headroom_forecast::metrics::score_pair;

use super::{DAY, HealthConfig, input};
use crate::error::Result;
use crate::risk::ForecastHealth;

/// Scores the recent `forecasts` of `actual`'s series against what happened.
///
/// `actual` holds the series on the forecasts' grid (one point per bin, NaN
/// for a missing bin), sorted by time. The scored bins are its points in the
/// trailing `cfg.window` before `now_ms` (`now - window ≤ ts < now`) with a
/// finite value that a forecast covers at exactly that time; each is scored
/// against the newest such forecast. Forecasts of another series, made at or
/// after `now_ms`, or with a non-finite value in that bin are not used.
///
/// * **MASE** is the mean absolute error of p50 divided by the in-sample
///   error of the daily seasonal naive forecast ("same as yesterday") over the
///   history before the window ([`headroom_forecast::metrics`]): the points
///   of `actual` before the window, back to the last missing value or
///   irregular step. It is `None` when that history is not longer than one
///   day, or flat.
/// * **Coverage** is the share of scored actuals inside p10–p90.
///
/// The forecasts are `degraded` when MASE is above `cfg.max_mase` or coverage
/// below `cfg.min_coverage`, judged only once `cfg.min_scored` bins were
/// scored; with fewer they are not degraded (no evidence either way) and
/// `reason` says how many bins are missing. Errors: `actual` not sorted by time.
pub fn health(forecasts: &[Forecast], actual: &SeriesData, cfg: &HealthConfig, now_ms: i64) -> Result<ForecastHealth> {
    super::check_lengths(actual)?;
    super::check_sorted(actual, 0, actual.ts.len())?;
    let mut newest_first: Vec<&Forecast> =
        forecasts.iter().filter(|f| f.key == actual.key && f.step_ms > 0 && f.origin_ms < now_ms).collect();
    newest_first.sort_by_key(|f| std::cmp::Reverse(f.origin_ms));
    let value_at = |f: &Forecast, ts: i64| -> Option<[f64; QUANTILES.len()]> {
        let offset = ts - f.origin_ms;
        if offset < 0 || offset % f.step_ms != 0 {
            return None;
        }
        let i = usize::try_from(offset / f.step_ms).ok()?;
        let q = f.q.paths().map(|(_, p)| p.get(i).copied().unwrap_or(f64::NAN));
        q.iter().all(|v| v.is_finite()).then_some(q)
    };

    let window_from = now_ms.saturating_sub(cfg.window.ms());
    let first = actual.ts.partition_point(|t| *t < window_from);
    let (mut paths, mut actuals): ([Vec<f64>; QUANTILES.len()], _) = (Default::default(), Vec::new());
    for (&ts, &value) in actual.ts[first..].iter().zip(&actual.values[first..]) {
        if ts >= now_ms || !value.is_finite() {
            continue;
        }
        if let Some(q) = newest_first.iter().find_map(|f| value_at(f, ts)) {
            paths.iter_mut().zip(q).for_each(|(path, v)| path.push(v));
            actuals.push(value);
        }
    }

    let scored = actuals.len();
    let (mase, coverage) = if scored == 0 {
        (None, None)
    } else {
        let step = newest_first[0].step_ms;
        let season = usize::try_from(DAY / step).unwrap_or(usize::MAX);
        let history = regular_tail(&actual.ts[..first], &actual.values[..first], step);
        let [p10, p50, p90, p95, p99] = paths;
        let q = Quantiles::new(p10, p50, p90, p95, p99).map_err(|e| input(&actual.key, e.to_string()))?;
        let score = score_pair(&q, &actuals, history, season, None);
        (score.mase.is_finite().then_some(score.mase), Some(score.covered as f64 / score.steps as f64))
    };
    Ok(verdict(
        ForecastHealth { key: actual.key.clone(), mase, coverage, scored, degraded: false, reason: String::new() },
        cfg,
    ))
}

/// The longest tail of `values` with finite values at times exactly `step` apart:
/// the consecutive bins the seasonal naive scale can be read from.
fn regular_tail<'a>(ts: &[i64], values: &'a [f64], step: i64) -> &'a [f64] {
    let mut start = values.len();
    while start > 0 && values[start - 1].is_finite() && (start == values.len() || ts[start] - ts[start - 1] == step) {
        start -= 1;
    }
    &values[start..]
}

/// Sets `degraded` and `reason` from the scores.
fn verdict(mut health: ForecastHealth, cfg: &HealthConfig) -> ForecastHealth {
    let (scored, window) = (health.scored, format_duration(cfg.window.ms()));
    if scored < cfg.min_scored {
        health.reason = format!("not enough scored bins ({scored} of {} needed in the last {window})", cfg.min_scored);
        return health;
    }
    let (mut bad, mut good) = (Vec::new(), Vec::new());
    match health.mase {
        Some(m) if m > cfg.max_mase => bad.push(format!("MASE {m:.2} > {:.2}", cfg.max_mase)),
        Some(m) => good.push(format!("MASE {m:.2} ≤ {:.2}", cfg.max_mase)),
        None => good.push("MASE unknown (no full day of history before the window, or a flat one)".to_owned()),
    }
    let pct = |x: f64| format!("{:.0}%", 100.0 * x);
    let c = health.coverage.unwrap_or(0.0);
    if c < cfg.min_coverage {
        bad.push(format!("p10–p90 coverage {} < {}", pct(c), pct(cfg.min_coverage)));
    } else {
        good.push(format!("p10–p90 coverage {} ≥ {}", pct(c), pct(cfg.min_coverage)));
    }
    health.degraded = !bad.is_empty();
    health.reason = if health.degraded {
        format!("degraded: {} over {scored} bins in the last {window}", bad.join(" and "))
    } else {
        format!("healthy: {} over {scored} bins in the last {window}", good.join(", "))
    };
    health
}

#[cfg(test)]
mod tests {
    use headroom_core::SeriesKey;

    use super::*;
    use headroom_core::Span;

    const T0: i64 = 1_704_067_200_000; // 2024-01-01T00:00:00Z
    const H: i64 = 3_600_000;

    fn key() -> SeriesKey {
        SeriesKey::new("host/db", "cpu").unwrap()
    }

    /// Hourly bins from T0, so the daily season is 24 bins.
    fn actual(values: &[f64]) -> SeriesData {
        let points: Vec<(i64, f64)> = values.iter().enumerate().map(|(i, v)| (T0 + i as i64 * H, *v)).collect();
        SeriesData::from_points(key(), &points)
    }

    fn forecast(origin_hour: i64, p10: &[f64], p50: &[f64], p90: &[f64]) -> Forecast {
        Forecast {
            key: key(),
            model: "lstm".into(),
            origin_ms: T0 + origin_hour * H,
            step_ms: H,
            q: Quantiles::new(p10.to_vec(), p50.to_vec(), p90.to_vec(), p90.to_vec(), p90.to_vec()).unwrap(),
        }
    }

    fn cfg(window_hours: i64, min_scored: usize) -> HealthConfig {
        HealthConfig { window: Span::from_ms(window_hours * H), min_scored, ..HealthConfig::default() }
    }

    /// Two days of history, all 10 then all 12 (so the daily seasonal naive
    /// scale is |12 − 10| = 2), then `last`.
    fn two_days_then(last: &[f64]) -> Vec<f64> {
        let mut v = vec![10.0; 24];
        v.extend([12.0; 24]);
        v.extend_from_slice(last);
        v
    }

    #[test]
    fn mase_and_coverage_by_hand() {
        // Four scored hours after the two days: actuals 12, 14, 16, 12.
        let a = actual(&two_days_then(&[12.0, 14.0, 16.0, 12.0]));
        // p50 errors 0, 1, 3, 2 → MAE 6/4 = 1.5 → MASE 1.5 / 2 = 0.75.
        // Inside p10–p90: 12 in [11,13], 14 not in [11,13.5], 16 not in [10,15], 12 in [9,12] → 2 of 4.
        let (p10, p50, p90) = ([11.0, 11.0, 10.0, 9.0], [12.0, 13.0, 13.0, 10.0], [13.0, 13.5, 15.0, 12.0]);
        let f = forecast(48, &p10, &p50, &p90);
        let h = health(&[f], &a, &cfg(4, 4), T0 + 52 * H).unwrap();
        assert_eq!(h.scored, 4);
        assert!((h.mase.unwrap() - 0.75).abs() < 1e-12, "{:?}", h.mase);
        assert_eq!(h.coverage, Some(0.5));
        assert!(!h.degraded);
        assert_eq!(h.reason, "healthy: MASE 0.75 ≤ 2.00, p10–p90 coverage 50% ≥ 50% over 4 bins in the last 4h");

        // The same forecast judged more strictly.
        let strict = HealthConfig { max_mase: 0.5, min_coverage: 0.8, ..cfg(4, 4) };
        let h = health(&[forecast(48, &p10, &p50, &p90)], &a, &strict, T0 + 52 * H).unwrap();
        assert!(h.degraded);
        assert_eq!(h.reason, "degraded: MASE 0.75 > 0.50 and p10–p90 coverage 50% < 80% over 4 bins in the last 4h");
    }

    #[test]
    fn each_bin_is_scored_against_the_newest_forecast_covering_it() {
        let a = actual(&two_days_then(&[12.0, 12.0, 12.0, 12.0]));
        // The old forecast (origin hour 47) is off by 8 everywhere; the newer one (origin 50)
        // is exact for hours 50 and 51, so hours 48 and 49 use the old one: errors 8, 8, 0, 0.
        let old = forecast(47, &[0.0; 5], &[20.0; 5], &[30.0; 5]);
        let new = forecast(50, &[12.0; 2], &[12.0; 2], &[12.0; 2]);
        // A forecast made after now is not used, nor one of another series.
        let future = forecast(52, &[0.0; 2], &[99.0; 2], &[99.0; 2]);
        let mut other = forecast(48, &[0.0; 4], &[99.0; 4], &[99.0; 4]);
        other.key = SeriesKey::new("host/web", "cpu").unwrap();
        let h = health(&[new, old, future, other], &a, &cfg(4, 1), T0 + 52 * H).unwrap();
        assert_eq!(h.scored, 4);
        assert!((h.mase.unwrap() - 2.0).abs() < 1e-12); // MAE 16/4 = 4 over a scale of 2
        assert_eq!(h.coverage, Some(1.0)); // 12 is inside [0, 30] and [12, 12]
    }

    #[test]
    fn missing_actuals_are_not_scored_and_too_few_bins_are_no_verdict() {
        let a = actual(&two_days_then(&[12.0, f64::NAN, f64::NAN, 12.0]));
        let f = forecast(48, &[40.0; 4], &[50.0; 4], &[60.0; 4]);
        let h = health(&[f], &a, &cfg(4, 3), T0 + 52 * H).unwrap();
        assert_eq!(h.scored, 2);
        assert!(!h.degraded, "a terrible forecast, but only 2 bins scored");
        assert_eq!(h.reason, "not enough scored bins (2 of 3 needed in the last 4h)");
        assert!((h.mase.unwrap() - 19.0).abs() < 1e-12); // |50 − 12| over a scale of 2
        assert_eq!(h.coverage, Some(0.0));

        let h = health(&[], &a, &cfg(4, 3), T0 + 52 * H).unwrap();
        assert_eq!((h.scored, h.mase, h.coverage, h.degraded), (0, None, None, false));
    }

    #[test]
    fn without_a_day_of_history_mase_is_unknown_and_coverage_decides() {
        // 30 hours before the window with a gap at hour 10: the last 19 are consecutive, less than a day.
        let mut values = vec![10.0; 30];
        values[10] = f64::NAN;
        values.extend([12.0, 12.0]);
        let a = actual(&values);
        let f = forecast(30, &[0.0; 2], &[1.0; 2], &[2.0; 2]);
        let h = health(&[f], &a, &cfg(2, 2), T0 + 32 * H).unwrap();
        assert_eq!(h.mase, None);
        assert_eq!(h.coverage, Some(0.0));
        assert!(h.degraded);
        assert_eq!(h.reason, "degraded: p10–p90 coverage 0% < 50% over 2 bins in the last 2h");
    }
}
