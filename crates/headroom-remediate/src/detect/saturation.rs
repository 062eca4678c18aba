//! Predicted saturation: the first forecast bin where the chosen quantile
//! goes above the threshold.

use headroom_core::{Forecast, Grid, format_ts};

use super::{HOUR, input};
use crate::error::Result;
use crate::risk::Saturation;

/// The first bin of `forecast` whose `quantile` path (one of
/// [`QUANTILES`](headroom_core::forecast::QUANTILES): 0.1, 0.5, 0.9, 0.95 or
/// 0.99, named by [`headroom_core::forecast::quantile_index`]) is above
/// `threshold` (in the series' unit), or `None` if it never gets there.
/// "Above", as the benchmark's saturation events are: a series resting exactly
/// at its threshold (common in 2-decimal data) is not saturating.
///
/// The risk carries the crossing time, the peak of the path over the whole
/// horizon, the time left from `now_ms` (0 when the crossing is already due)
/// and, as the window it is about, the crossing time rounded down to the hour:
/// a later cycle that predicts the same crossing within the same hour reports
/// the same window, so the policy does not act twice for it.
///
/// Errors ([`crate::Error::Input`]): a quantile the forecasts do not carry, a
/// non-finite threshold, or a non-finite value anywhere in the forecast.
pub fn saturation(forecast: &Forecast, quantile: f64, threshold: f64, now_ms: i64) -> Result<Option<Saturation>> {
    let q = &forecast.q;
    let path = q.path(quantile).ok_or_else(|| {
        let levels = headroom_core::forecast::quantile_levels();
        input(&forecast.key, format!("quantile {quantile} is not in the forecasts (they have {levels})"))
    })?;
    if !threshold.is_finite() {
        return Err(input(&forecast.key, format!("saturation threshold {threshold} is not a number")));
    }
    for (name, values) in q.paths() {
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(input(
                &forecast.key,
                format!(
                    "forecast by {} from {}: {name} at {} is {}",
                    forecast.model,
                    format_ts(forecast.origin_ms),
                    format_ts(forecast.ts(i)),
                    values[i]
                ),
            ));
        }
    }

    let Some(cross) = path.iter().position(|v| *v > threshold) else {
        return Ok(None);
    };
    // The first bin of the highest value (every bin before `cross` is lower).
    let (peak_at, peak) = headroom_core::forecast::peak(path).expect("the path crosses, so it is not empty");
    let crosses_at_ms = forecast.ts(cross);
    Ok(Some(Saturation {
        key: forecast.key.clone(),
        model: forecast.model.clone(),
        origin_ms: forecast.origin_ms,
        quantile,
        threshold,
        crosses_at_ms,
        peak,
        peak_at_ms: forecast.ts(peak_at),
        time_left_ms: (crosses_at_ms - now_ms).max(0),
        window_start_ms: Grid::align(HOUR, crosses_at_ms),
    }))
}

#[cfg(test)]
mod tests {
    use headroom_core::{Quantiles, SeriesKey};

    use super::*;

    const T0: i64 = 1_704_067_200_000; // 2024-01-01T00:00:00Z
    const STEP: i64 = 15 * 60_000;

    /// A forecast whose tails p95 and p99 are its p90.
    fn forecast(p10: &[f64], p50: &[f64], p90: &[f64]) -> Forecast {
        with_tails(p10, p50, p90, p90, p90)
    }

    fn with_tails(p10: &[f64], p50: &[f64], p90: &[f64], p95: &[f64], p99: &[f64]) -> Forecast {
        Forecast {
            key: SeriesKey::new("k8s/shop/deployment/cart", "cpu").unwrap(),
            model: "lstm".into(),
            origin_ms: T0,
            step_ms: STEP,
            q: Quantiles::new(p10.to_vec(), p50.to_vec(), p90.to_vec(), p95.to_vec(), p99.to_vec()).unwrap(),
        }
    }

    #[test]
    fn the_first_bin_above_the_threshold_is_the_crossing_and_the_peak_is_over_the_whole_horizon() {
        //            bin:  0    1    2    3    4    5    6
        let p90 = [1.0, 1.5, 1.7, 1.6, 2.2, 2.4, 1.0];
        let p50 = [0.5, 0.6, 0.7, 0.8, 0.9, 1.6, 0.5];
        let f = forecast(&[0.0; 7], &p50, &p90);
        // now is 10 minutes after the origin; p90 goes above 1.6 at bin 2 (30 min).
        let s = saturation(&f, 0.9, 1.6, T0 + 10 * 60_000).unwrap().unwrap();
        assert_eq!(s.crosses_at_ms, T0 + 2 * STEP);
        assert_eq!(s.time_left_ms, 20 * 60_000);
        assert_eq!((s.peak, s.peak_at_ms), (2.4, T0 + 5 * STEP));
        assert_eq!(s.window_start_ms, T0);
        assert_eq!((s.quantile, s.threshold, s.origin_ms), (0.9, 1.6, T0));
        assert_eq!(s.model, "lstm");

        // The median only touches 1.6 (bin 5): resting at the threshold is not above it.
        assert_eq!(saturation(&f, 0.5, 1.6, T0).unwrap(), None);
        // Above 1.5 it crosses at bin 5 (1h15m): its window is the hour starting at 01:00.
        let s = saturation(&f, 0.5, 1.5, T0).unwrap().unwrap();
        assert_eq!(s.crosses_at_ms, T0 + 5 * STEP);
        assert_eq!(s.window_start_ms, T0 + HOUR);
        // p10 never crosses.
        assert_eq!(saturation(&f, 0.1, 1.6, T0).unwrap(), None);
    }

    #[test]
    fn each_risk_tail_is_read_on_its_own_path() {
        //            bin:  0    1    2    3
        let p90 = [1.0, 1.2, 1.4, 1.2];
        let p95 = [1.1, 1.5, 1.7, 1.3];
        let p99 = [1.7, 1.9, 2.3, 1.5];
        let f = with_tails(&[0.0; 4], &[0.5; 4], &p90, &p95, &p99);
        assert_eq!(saturation(&f, 0.9, 1.6, T0).unwrap(), None, "p90 stays below 1.6");
        let s = saturation(&f, 0.95, 1.6, T0).unwrap().unwrap();
        assert_eq!((s.crosses_at_ms, s.peak, s.quantile), (T0 + 2 * STEP, 1.7, 0.95));
        let s = saturation(&f, 0.99, 1.6, T0).unwrap().unwrap();
        assert_eq!((s.crosses_at_ms, s.peak, s.peak_at_ms, s.quantile), (T0, 2.3, T0 + 2 * STEP, 0.99));
    }

    #[test]
    fn a_later_cycle_finding_the_same_crossing_reports_the_same_window() {
        let first = forecast(&[0.0; 8], &[0.0; 8], &[0.0, 0.0, 0.0, 0.0, 0.0, 3.0, 3.0, 3.0]);
        let mut later = forecast(&[0.0; 7], &[0.0; 7], &[0.0, 0.0, 0.0, 0.0, 3.0, 3.0, 3.0]);
        later.origin_ms += STEP;
        let a = saturation(&first, 0.9, 2.0, T0).unwrap().unwrap();
        let b = saturation(&later, 0.9, 2.0, T0 + STEP).unwrap().unwrap();
        assert_eq!(a.crosses_at_ms, b.crosses_at_ms);
        assert_eq!(a.window_start_ms, b.window_start_ms);
        assert_eq!(a.time_left_ms - b.time_left_ms, STEP);
    }

    #[test]
    fn time_left_is_never_negative() {
        let f = forecast(&[0.0; 3], &[0.0; 3], &[5.0, 5.0, 5.0]);
        let s = saturation(&f, 0.9, 4.0, T0 + 2 * HOUR).unwrap().unwrap();
        assert_eq!(s.time_left_ms, 0);
        assert_eq!(s.crosses_at_ms, T0);
    }

    #[test]
    fn a_quantile_the_forecasts_do_not_have_is_rejected() {
        let f = forecast(&[0.0], &[0.0], &[0.0]);
        let err = saturation(&f, 0.7, 1.0, T0).unwrap_err().to_string();
        assert!(err.starts_with("k8s/shop/deployment/cart:cpu: quantile 0.7 is not in the forecasts"), "{err}");
        assert!(err.contains("(they have 0.1, 0.5, 0.9, 0.95 and 0.99)"), "{err}");
        // Written slightly off (as arithmetic may give it), 0.9 still names p90.
        assert!(saturation(&f, 0.3 * 3.0, 1.0, T0).is_ok());
    }

    #[test]
    fn a_forecast_with_a_nan_is_rejected_naming_the_bin() {
        let mut f = forecast(&[0.0; 3], &[0.0; 3], &[0.0; 3]);
        f.q.p50[1] = f64::NAN;
        let err = saturation(&f, 0.9, 1.0, T0).unwrap_err().to_string();
        assert!(
            err.contains("forecast by lstm from 2024-01-01T00:00:00Z: p50 at 2024-01-01T00:15:00Z is NaN"),
            "{err}"
        );
        let f = forecast(&[0.0], &[0.0], &[0.0]);
        assert!(saturation(&f, 0.9, f64::NAN, T0).is_err());
    }
}
