//! Validation and resampling of raw series onto a [`Grid`].
//!
//! Order of work for one series, each step counted in its [`RepairReport`]:
//!
//! 1. NaN/±Inf (and null) values are dropped.
//! 2. Negative values of a non-negative unit (CPU, memory, percent, counter) are
//!    rejected: dropped and counted, or, with `strict`, an error naming the first one.
//! 3. Points are sorted by time (out-of-order arrivals counted).
//! 4. Points sharing a timestamp are merged by their mean.
//! 5. Gauges: the mean of each bin. Counters: the rate per second of each bin,
//!    from the increases between consecutive points (a drop is a reset: the
//!    counter restarted from zero).
//! 6. Runs of empty bins no longer than `max_gap` between two filled bins are
//!    linearly interpolated (marked `imputed`); longer runs, and runs at the
//!    edges of the grid, stay missing (NaN) and are listed as gaps.

use headroom_core::grid::DEFAULT_STEP_MS;
use headroom_core::{Gap, Grid, RepairReport, ResampledSeries, SampleFrame, SeriesData, format_duration, format_ts};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How series are put on a grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResampleConfig {
    /// Grid step in milliseconds.
    #[serde(default = "default_step_ms")]
    pub step_ms: i64,
    /// Longest run of empty bins (in milliseconds of grid time) that is
    /// interpolated; longer gaps stay missing.
    #[serde(default = "default_max_gap_ms")]
    pub max_gap_ms: i64,
    /// Turn rejected values (negative CPU/memory) into an error instead of a counted repair.
    #[serde(default)]
    pub strict: bool,
}

fn default_step_ms() -> i64 {
    DEFAULT_STEP_MS
}

fn default_max_gap_ms() -> i64 {
    DEFAULT_MAX_GAP_MS
}

/// Most bins one series may span on its grid (about 95 years at 5 minutes).
/// More means the timestamps are wrong (a unit mix-up) or the step is too fine.
pub const MAX_BINS: usize = 10_000_000;

/// Default longest interpolated gap: 1 hour.
pub const DEFAULT_MAX_GAP_MS: i64 = 3_600_000;

impl Default for ResampleConfig {
    fn default() -> Self {
        Self { step_ms: DEFAULT_STEP_MS, max_gap_ms: DEFAULT_MAX_GAP_MS, strict: false }
    }
}

impl ResampleConfig {
    /// Checks the values once, naming the bad field.
    pub fn validate(&self) -> Result<()> {
        if self.step_ms <= 0 {
            return Err(Error::Config(format!("resample step must be positive, got {} ms", self.step_ms)));
        }
        if self.max_gap_ms < 0 {
            return Err(Error::Config(format!("max gap must not be negative, got {} ms", self.max_gap_ms)));
        }
        Ok(())
    }
}

/// Resamples every series of a frame on its own covering grid (see [`resample`]).
pub fn resample_frame(frame: &SampleFrame, cfg: &ResampleConfig) -> Result<Vec<ResampledSeries>> {
    frame.series()?.iter().map(|s| resample(s, None, cfg)).collect()
}

/// Validates one series and puts it on `grid`, or, when `grid` is `None`, on
/// the epoch-aligned grid covering its first and last valid points.
///
/// A series with no valid point at all yields an empty grid (zero bins) and a
/// report saying why; it is not an error unless `strict` rejected a value.
pub fn resample(series: &SeriesData, grid: Option<Grid>, cfg: &ResampleConfig) -> Result<ResampledSeries> {
    cfg.validate()?;
    let mut report = RepairReport { points_in: series.len(), ..RepairReport::default() };
    let points = valid_points(series, cfg.strict, &mut report)?;
    let merged = merge_duplicates(sort_by_time(points, &mut report), &mut report);
    let grid = grid_for(series, grid, &merged, cfg.step_ms)?;
    let mut values = bin(&merged, &grid, series.key.unit().is_counter(), &mut report);
    let imputed = fill_gaps(&mut values, &grid, cfg.max_gap_ms, &mut report);
    Ok(ResampledSeries { key: series.key.clone(), grid, values, imputed, report })
}

/// 1–2: the finite points, negative values of a non-negative unit rejected
/// (counted, or with `strict` an error naming the first one).
fn valid_points(series: &SeriesData, strict: bool, report: &mut RepairReport) -> Result<Vec<(i64, f64)>> {
    let unit = series.key.unit();
    let mut points: Vec<(i64, f64)> = Vec::with_capacity(series.len());
    for (&t, &v) in series.ts.iter().zip(&series.values) {
        if !v.is_finite() {
            report.non_finite_dropped += 1;
        } else if v < 0.0 && unit.is_non_negative() {
            if strict {
                return Err(Error::Invalid {
                    series: series.key.to_string(),
                    why: format!("negative {unit} value {v} at {}", format_ts(t)),
                });
            }
            report.negative_rejected += 1;
            report.first_negative.get_or_insert((t, v));
        } else {
            points.push((t, v));
        }
    }
    Ok(points)
}

/// 3: the points in time order, counting those that arrived after a later timestamp.
fn sort_by_time(mut points: Vec<(i64, f64)>, report: &mut RepairReport) -> Vec<(i64, f64)> {
    let mut latest = i64::MIN;
    for &(t, _) in &points {
        if t < latest {
            report.out_of_order += 1;
        }
        latest = latest.max(t);
    }
    if report.out_of_order > 0 {
        points.sort_by_key(|&(t, _)| t);
    }
    points
}

/// 4: sorted points sharing a timestamp merged by their mean.
fn merge_duplicates(points: Vec<(i64, f64)>, report: &mut RepairReport) -> Vec<(i64, f64)> {
    let mut merged: Vec<(i64, f64)> = Vec::with_capacity(points.len());
    let mut run = 1usize;
    for (t, v) in points {
        match merged.last_mut() {
            Some((lt, lv)) if *lt == t => {
                run += 1;
                *lv += (v - *lv) / run as f64;
                report.duplicates_merged += 1;
            }
            _ => {
                run = 1;
                merged.push((t, v));
            }
        }
    }
    merged
}

/// `grid` when given, else the epoch-aligned grid of `step_ms` covering the
/// sorted `points` (empty without points); refused beyond [`MAX_BINS`] bins.
fn grid_for(series: &SeriesData, grid: Option<Grid>, points: &[(i64, f64)], step_ms: i64) -> Result<Grid> {
    let grid = match (grid, points.first(), points.last()) {
        (Some(g), _, _) => g,
        (None, Some(&(first, _)), Some(&(last, _))) => Grid::covering(step_ms, first, last)?,
        (None, _, _) => Grid::new(step_ms, 0, 0)?,
    };
    let n = grid.len();
    if n > MAX_BINS {
        return Err(Error::Invalid {
            series: series.key.to_string(),
            why: format!(
                "spans {} to {}: {n} bins of {}, more than {MAX_BINS}; check the timestamps' unit, or use a coarser grid step",
                format_ts(grid.start_ms),
                format_ts(grid.end_ms),
                format_duration(grid.step_ms)
            ),
        });
    }
    Ok(grid)
}

/// 5: the value of each bin of `grid` (NaN when it holds nothing): gauges
/// the mean of their points, counters the rate per second of their increases.
fn bin(points: &[(i64, f64)], grid: &Grid, counter: bool, report: &mut RepairReport) -> Vec<f64> {
    let n = grid.len();
    let mut sum = vec![0.0f64; n];
    let mut weight = vec![0.0f64; n];
    if counter {
        bin_counter(points, grid, &mut sum, &mut weight, report);
    } else {
        for &(t, v) in points {
            match grid.bin_of(t) {
                Some(b) => {
                    sum[b] += v;
                    weight[b] += 1.0;
                }
                None => report.outside_grid += 1,
            }
        }
    }
    sum.iter().zip(&weight).map(|(s, w)| if *w > 0.0 { s / w } else { f64::NAN }).collect()
}

/// Adds each increase between consecutive counter points (a drop is a reset:
/// the increase is the new value) to the bin of its later point, and the
/// seconds it took to that bin's weight.
fn bin_counter(points: &[(i64, f64)], grid: &Grid, sum: &mut [f64], weight: &mut [f64], report: &mut RepairReport) {
    for pair in points.windows(2) {
        let ((t0, v0), (t1, v1)) = (pair[0], pair[1]);
        let increase = if v1 >= v0 {
            v1 - v0
        } else {
            report.counter_resets += 1;
            v1
        };
        match grid.bin_of(t1) {
            Some(b) => {
                sum[b] += increase;
                weight[b] += (t1 - t0) as f64 / 1000.0;
            }
            None => report.outside_grid += 1,
        }
    }
    if let Some(&(t, _)) = points.first()
        && grid.bin_of(t).is_none()
    {
        report.outside_grid += 1;
    }
}

/// 6: runs of empty (NaN) bins no longer than `max_gap_ms` between two
/// filled bins are linearly interpolated; longer runs and runs at the edges
/// stay missing. Every run is listed as a gap; returns which bins were imputed.
fn fill_gaps(values: &mut [f64], grid: &Grid, max_gap_ms: i64, report: &mut RepairReport) -> Vec<bool> {
    let n = values.len();
    let mut imputed = vec![false; n];
    report.bins = n;
    let max_gap_bins = (max_gap_ms / grid.step_ms) as usize;
    let mut i = 0;
    while i < n {
        if !values[i].is_nan() {
            i += 1;
            continue;
        }
        let start = i;
        while i < n && values[i].is_nan() {
            i += 1;
        }
        let bins = i - start;
        let interior = start > 0 && i < n;
        let fill = interior && bins <= max_gap_bins;
        if fill {
            let (a, b) = (values[start - 1], values[i]);
            for (k, slot) in (start..i).enumerate() {
                values[slot] = a + (b - a) * (k + 1) as f64 / (bins + 1) as f64;
                imputed[slot] = true;
            }
            report.interpolated_bins += bins;
        } else {
            report.missing_bins += bins;
        }
        report.gaps.push(Gap { start_ms: grid.ts(start), end_ms: grid.ts(i), bins, interpolated: fill });
    }
    imputed
}

/// The median spacing between consecutive distinct timestamps, if there are two.
pub fn median_step(ts: &[i64]) -> Option<i64> {
    let mut sorted = ts.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut diffs: Vec<i64> = sorted.windows(2).map(|w| w[1] - w[0]).collect();
    if diffs.is_empty() {
        return None;
    }
    let mid = diffs.len() / 2;
    Some(*diffs.select_nth_unstable(mid).1)
}

#[cfg(test)]
mod tests {
    use headroom_core::SeriesKey;

    use super::*;

    const M: i64 = 60_000;

    fn series(metric: &str, points: &[(i64, f64)]) -> SeriesData {
        SeriesData::from_points(SeriesKey::new("host/a", metric).unwrap(), points)
    }

    fn cfg() -> ResampleConfig {
        ResampleConfig { step_ms: 5 * M, max_gap_ms: 10 * M, strict: false }
    }

    #[test]
    fn gauges_take_the_mean_of_each_bin() {
        let s = series("cpu", &[(0, 1.0), (M, 3.0), (5 * M, 4.0), (9 * M, 6.0)]);
        let r = resample(&s, None, &cfg()).unwrap();
        assert_eq!(r.grid.start_ms, 0);
        assert_eq!(r.values, vec![2.0, 5.0]);
        assert!(r.report.is_clean());
        assert_eq!(r.report.points_in, 4);
    }

    #[test]
    fn non_finite_values_are_dropped_and_counted() {
        let s =
            series("m1", &[(0, 1.0), (M, f64::NAN), (2 * M, f64::INFINITY), (5 * M, f64::NEG_INFINITY), (6 * M, 2.0)]);
        let r = resample(&s, None, &cfg()).unwrap();
        assert_eq!(r.values, vec![1.0, 2.0]);
        assert_eq!(r.report.non_finite_dropped, 3);
        assert_eq!(r.report.summary(), "3 NaN/Inf dropped");
    }

    #[test]
    fn negative_cpu_and_memory_are_rejected_but_other_metrics_may_be_negative() {
        let s = series("memory", &[(0, 10.0), (5 * M, -1.0), (10 * M, 12.0)]);
        let r = resample(&s, None, &cfg()).unwrap();
        assert_eq!(r.report.negative_rejected, 1);
        assert_eq!(r.report.first_negative, Some((5 * M, -1.0)));
        // The rejected bin is a gap, interpolated because it is short.
        assert_eq!(r.values, vec![10.0, 11.0, 12.0]);
        assert_eq!(r.imputed, vec![false, true, false]);

        let err = resample(&s, None, &ResampleConfig { strict: true, ..cfg() }).unwrap_err().to_string();
        assert_eq!(err, "series host/a:memory: negative bytes value -1 at 1970-01-01T00:05:00Z");

        let s = series("temperature_delta", &[(0, -3.0)]);
        let r = resample(&s, None, &cfg()).unwrap();
        assert_eq!(r.values, vec![-3.0]);
        assert_eq!(r.report.negative_rejected, 0);
    }

    #[test]
    fn unsorted_input_is_sorted_and_duplicates_merged() {
        let s = series("cpu", &[(5 * M, 4.0), (0, 1.0), (0, 2.0), (0, 6.0), (5 * M, 8.0)]);
        let r = resample(&s, None, &cfg()).unwrap();
        assert_eq!(r.values, vec![3.0, 6.0]);
        assert_eq!(r.report.out_of_order, 3);
        assert_eq!(r.report.duplicates_merged, 3);
    }

    #[test]
    fn short_gaps_are_interpolated_long_gaps_left_missing_and_reported() {
        // Bins 0..=9; 1–2 empty (10 min, filled), 4–8 empty (25 min, missing).
        let s = series("cpu", &[(0, 0.0), (15 * M, 3.0), (45 * M, 9.0)]);
        let r = resample(&s, None, &cfg()).unwrap();
        assert_eq!(r.values.len(), 10);
        assert_eq!(&r.values[..4], &[0.0, 1.0, 2.0, 3.0]);
        assert!(r.values[4..9].iter().all(|v| v.is_nan()));
        assert_eq!(r.values[9], 9.0);
        assert_eq!(r.report.interpolated_bins, 2);
        assert_eq!(r.report.missing_bins, 5);
        assert_eq!(
            r.report.gaps,
            vec![
                Gap { start_ms: 5 * M, end_ms: 15 * M, bins: 2, interpolated: true },
                Gap { start_ms: 20 * M, end_ms: 45 * M, bins: 5, interpolated: false },
            ]
        );
        assert_eq!(r.report.gap_summary(5 * M), "1 gap, 5 bins missing (longest 25m at 1970-01-01T00:20:00Z)");
    }

    #[test]
    fn edges_of_an_explicit_grid_are_never_invented() {
        let s = series("cpu", &[(10 * M, 1.0), (15 * M, 2.0), (99 * M, 5.0)]);
        let grid = Grid::new(5 * M, 0, 30 * M).unwrap();
        let r = resample(&s, Some(grid), &cfg()).unwrap();
        assert!(r.values[0].is_nan() && r.values[1].is_nan());
        assert_eq!(&r.values[2..4], &[1.0, 2.0]);
        assert!(r.values[4].is_nan() && r.values[5].is_nan());
        assert_eq!(r.report.missing_bins, 4);
        assert_eq!(r.report.outside_grid, 1);
        assert!(r.report.gaps.iter().all(|g| !g.interpolated));
    }

    #[test]
    fn counters_become_rates_with_resets_handled() {
        // +60 per minute, reset to 0 at 7 min then +60/min again.
        let pts: Vec<(i64, f64)> = (0..=10)
            .map(|i| {
                let v = if i < 7 { 60.0 * i as f64 } else { 60.0 * (i - 7) as f64 };
                (i * M, v)
            })
            .collect();
        let r = resample(&series("restarts", &pts), None, &cfg()).unwrap();
        assert_eq!(r.report.counter_resets, 1);
        // Bin 0 holds minutes 1..4 (4 increases of 60 over 240 s); bin 1 holds 5..9,
        // including the reset pair whose increase is the post-reset value 0.
        assert!((r.values[0] - 1.0).abs() < 1e-12, "{:?}", r.values);
        assert!((r.values[1] - (60.0 * 4.0) / 300.0).abs() < 1e-12, "{:?}", r.values);
        assert!((r.values[2] - 1.0).abs() < 1e-12, "{:?}", r.values);
    }

    #[test]
    fn empty_and_all_invalid_series_give_an_empty_grid() {
        let r = resample(&series("cpu", &[(0, f64::NAN)]), None, &cfg()).unwrap();
        assert_eq!(r.grid.len(), 0);
        assert_eq!(r.report.non_finite_dropped, 1);
        let r = resample(&series("cpu", &[]), None, &cfg()).unwrap();
        assert!(r.values.is_empty());
    }

    #[test]
    fn absurd_spans_are_refused_not_allocated() {
        // Epoch seconds read as milliseconds next to real milliseconds: 50 years of 5-minute bins is fine,
        // 3,000 years is a mistake.
        let ok = series("cpu", &[(0, 1.0), (50 * 365 * 86_400_000, 2.0)]);
        assert!(resample(&ok, None, &cfg()).is_ok());
        let bad = series("cpu", &[(1_704_067_200, 1.0), (1_704_067_200_000 * 60, 2.0)]);
        let err = resample(&bad, None, &cfg()).unwrap_err().to_string();
        assert!(err.starts_with("series host/a:cpu: spans 1970-01-20T17:20:00Z to"), "{err}");
        assert!(err.contains("check the timestamps' unit"), "{err}");
    }

    #[test]
    fn bad_config_is_refused() {
        let s = series("cpu", &[(0, 1.0)]);
        let err = resample(&s, None, &ResampleConfig { step_ms: 0, ..cfg() }).unwrap_err();
        assert!(err.to_string().contains("step must be positive"), "{err}");
    }

    #[test]
    fn median_step_ignores_duplicates_and_order() {
        assert_eq!(median_step(&[600, 0, 300, 300, 1200]), Some(300));
        assert_eq!(median_step(&[5]), None);
    }
}
