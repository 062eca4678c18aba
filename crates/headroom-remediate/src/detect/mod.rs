//! Detectors: from forecasts and recent raw samples to [`Risk`](crate::risk::Risk)s,
//! and the rolling health of recent forecasts.
//!
//! * [`saturation`]: the first bin where a forecast quantile reaches a threshold.
//! * [`restart_loop`], [`oom_kill`], [`memory_leak`], [`flapping`]: crash
//!   patterns read from the recent samples of one series.
//! * [`health`]: how well recent forecasts matched what happened (MASE and
//!   p10–p90 coverage), to turn predictive actions off when they do not.
//!
//! Every detector is a pure function of its inputs and `now_ms`: no IO, no
//! clock. Samples after `now_ms` are never read, so a backtest replaying the
//! past sees exactly what the live engine saw. Raw samples must be sorted by
//! time (an unsorted series is an [`Error::Input`]);
//! non-finite values are skipped. A "trailing window" of length `w` ending at
//! `now` holds the samples with `now - w < ts ≤ now`; a change between two
//! samples (a restart, a crossing, a drop) is dated at the later sample, the
//! first one that shows it.
//!
//! Each detector's parameters are a section of [`DetectConfig`] (the
//! `[detect]` table of `headroom.toml`).

mod crash;
mod health;
mod saturation;

use headroom_core::{SeriesData, SeriesKey, format_ts};
use serde::{Deserialize, Serialize};

pub use crash::{flapping, memory_leak, oom_kill, restart_loop};
pub use health::health;
pub use saturation::saturation;

use crate::error::{Error, Problem, Result};
use headroom_core::Span;

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;

/// The parameters of every detector: the `[detect]` table of `headroom.toml`.
///
/// ```toml
/// [detect.restart_loop]
/// restarts = 3
/// window = "30m"
///
/// [detect.leak]
/// window = "1d"
/// horizon = "2d"
/// ```
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DetectConfig {
    /// Restart loops ([`restart_loop`]).
    pub restart_loop: RestartLoopConfig,
    /// Out-of-memory kills ([`oom_kill`]).
    pub oom: OomConfig,
    /// Memory leaks ([`memory_leak`]).
    pub leak: LeakConfig,
    /// Flapping ([`flapping`]).
    pub flapping: FlappingConfig,
    /// Forecast health ([`health`]).
    pub health: HealthConfig,
}

/// A restart loop: the restart counter rose at least `restarts` times within `window`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RestartLoopConfig {
    /// Fewest restarts within the window that make a loop (default 3).
    pub restarts: u32,
    /// The trailing window restarts are counted in (default `30m`).
    pub window: Span,
}

impl Default for RestartLoopConfig {
    fn default() -> Self {
        Self { restarts: 3, window: Span::from_ms(30 * MINUTE) }
    }
}

/// The shape of an out-of-memory kill: memory at or above `near_limit × limit`,
/// and at the next sample at or below `drop_to × limit`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OomConfig {
    /// How close to the limit memory must have been, as a fraction of it (default 0.9).
    pub near_limit: f64,
    /// How low it must drop right after, as a fraction of the limit (default 0.2).
    pub drop_to: f64,
    /// The trailing window searched for the drop (default `1h`).
    pub window: Span,
}

impl Default for OomConfig {
    fn default() -> Self {
        Self { near_limit: 0.9, drop_to: 0.2, window: Span::from_ms(HOUR) }
    }
}

/// A memory leak: a least-squares trend over `window` that rises steadily
/// (`r² ≥ min_r2`), by at least `min_rise × limit`, and reaches the limit within `horizon`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LeakConfig {
    /// The trailing window the trend is fitted on (default `1d`: a whole daily
    /// cycle, so that the rise of an ordinary morning is not taken for a leak;
    /// with `6h` a sixth of the calm hours of the ASD servers looked like leaks).
    pub window: Span,
    /// Fewest share of the variance the trend must explain, 0–1 (default 0.8).
    pub min_r2: f64,
    /// Smallest rise of the trend over the window, as a fraction of the limit (default 0.05).
    pub min_rise: f64,
    /// Only report a leak whose trend reaches the limit within this long from now (default `2d`).
    pub horizon: Span,
}

impl Default for LeakConfig {
    fn default() -> Self {
        Self { window: Span::from_ms(DAY), min_r2: 0.8, min_rise: 0.05, horizon: Span::from_ms(2 * DAY) }
    }
}

/// Flapping: the series crossed its level at least `transitions` times within `window`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FlappingConfig {
    /// Fewest crossings (up or down) within the window that count as flapping (default 3: up, down, up).
    pub transitions: u32,
    /// The trailing window crossings are counted in (default `1h`).
    pub window: Span,
}

impl Default for FlappingConfig {
    fn default() -> Self {
        Self { transitions: 3, window: Span::from_ms(HOUR) }
    }
}

/// When recent forecasts are too wrong to act on: MASE above `max_mase` or
/// p10–p90 coverage below `min_coverage`, over at least `min_scored` bins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HealthConfig {
    /// The trailing window of forecast bins scored (default `24h`).
    pub window: Span,
    /// Largest acceptable MASE of the median (default 2.0: twice the error of "same as yesterday").
    pub max_mase: f64,
    /// Smallest acceptable share of actuals inside p10–p90, 0–1 (default 0.5; 0.8 is ideal).
    pub min_coverage: f64,
    /// Fewest scored bins before the forecasts are judged at all (default 24, 6 h of 15-minute bins).
    pub min_scored: usize,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self { window: Span::from_ms(DAY), max_mase: 2.0, min_coverage: 0.5, min_scored: 24 }
    }
}

impl DetectConfig {
    /// Every value that cannot be used, with its dotted path under `prefix`
    /// (e.g. `detect.oom.near_limit`). Durations that do not parse are
    /// already refused by the TOML parser, with their line.
    pub fn problems(&self, prefix: &str) -> Vec<Problem> {
        let mut out = Vec::new();
        let mut bad =
            |path: &str, value: String, why: &str| out.push(Problem::new(format!("{prefix}.{path}"), value, why));
        let mut span = |path: &str, s: Span| {
            if s.ms() == 0 {
                bad(path, format!("\"{s}\""), "must be longer than 0s");
            }
        };
        span("restart_loop.window", self.restart_loop.window);
        span("oom.window", self.oom.window);
        span("leak.window", self.leak.window);
        span("leak.horizon", self.leak.horizon);
        span("flapping.window", self.flapping.window);
        span("health.window", self.health.window);

        let (r, o, l, f, h) = (&self.restart_loop, &self.oom, &self.leak, &self.flapping, &self.health);
        if r.restarts == 0 {
            bad("restart_loop.restarts", "0".into(), "must be at least 1");
        }
        if !(o.near_limit > 0.0 && o.near_limit <= 1.0) {
            bad("oom.near_limit", o.near_limit.to_string(), "must be a fraction of the limit in (0, 1]");
        }
        if !(0.0..1.0).contains(&o.drop_to) {
            bad("oom.drop_to", o.drop_to.to_string(), "must be a fraction of the limit in [0, 1)");
        } else if o.drop_to >= o.near_limit {
            bad("oom.drop_to", o.drop_to.to_string(), &format!("must be below oom.near_limit = {}", o.near_limit));
        }
        if !(0.0..=1.0).contains(&l.min_r2) {
            bad("leak.min_r2", l.min_r2.to_string(), "must be between 0 and 1");
        }
        if !(0.0..=1.0).contains(&l.min_rise) {
            bad("leak.min_rise", l.min_rise.to_string(), "must be a fraction of the limit between 0 and 1");
        }
        if f.transitions < 2 {
            bad(
                "flapping.transitions",
                f.transitions.to_string(),
                "must be at least 2 (one crossing is a change, not flapping)",
            );
        }
        if !(h.max_mase.is_finite() && h.max_mase > 0.0) {
            bad("health.max_mase", h.max_mase.to_string(), "must be a positive number");
        }
        if !(0.0..=1.0).contains(&h.min_coverage) {
            bad("health.min_coverage", h.min_coverage.to_string(), "must be a fraction between 0 and 1");
        }
        if h.min_scored == 0 {
            bad("health.min_scored", "0".into(), "must be at least 1");
        }
        out
    }
}

/// An [`Error::Input`] about `key`.
fn input(key: &SeriesKey, why: impl Into<String>) -> Error {
    Error::Input { series: key.to_string(), why: why.into() }
}

/// The finite points of `series` that a trailing window of `window_ms` ending
/// at `now_ms` needs, oldest first: the points inside it (`now - window < ts ≤
/// now`), preceded by the last finite point before it if there is one (a
/// change is seen between two samples and dated at the later one).
///
/// Only this part of the series is read (found by binary search), and it is
/// checked to be sorted by time: an [`Error::Input`] names the two samples out
/// of order, or columns of different lengths.
fn recent(series: &SeriesData, window_ms: i64, now_ms: i64) -> Result<Vec<(i64, f64)>> {
    check_lengths(series)?;
    let end = series.ts.partition_point(|t| *t <= now_ms);
    let mut start = series.ts[..end].partition_point(|t| *t <= now_ms.saturating_sub(window_ms));
    while start > 0 {
        start -= 1;
        if series.values[start].is_finite() {
            break;
        }
    }
    check_sorted(series, start, end)?;
    Ok((start..end).filter(|&i| series.values[i].is_finite()).map(|i| (series.ts[i], series.values[i])).collect())
}

fn check_lengths(series: &SeriesData) -> Result<()> {
    if series.ts.len() == series.values.len() {
        Ok(())
    } else {
        Err(input(&series.key, format!("{} timestamps but {} values", series.ts.len(), series.values.len())))
    }
}

/// Checks that the samples `start..end` of `series` are sorted by time.
fn check_sorted(series: &SeriesData, start: usize, end: usize) -> Result<()> {
    match series.ts[start..end].windows(2).position(|w| w[1] < w[0]) {
        None => Ok(()),
        Some(i) => Err(input(
            &series.key,
            format!(
                "samples are not sorted by time: {} comes after {}",
                format_ts(series.ts[start + i + 1]),
                format_ts(series.ts[start + i])
            ),
        )),
    }
}

/// Checks that a limit or level is a usable number.
fn check_positive(key: &SeriesKey, what: &str, value: f64) -> Result<()> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(input(key, format!("{what} {value} is not a positive number")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse_from_an_empty_table_and_durations_from_text() {
        let cfg: DetectConfig = toml::from_str("").unwrap();
        assert_eq!(cfg, DetectConfig::default());
        assert_eq!(cfg.restart_loop.restarts, 3);
        assert_eq!(cfg.leak.horizon.ms(), 48 * HOUR);
        assert!(cfg.problems("detect").is_empty());

        let cfg: DetectConfig = toml::from_str(
            "[restart_loop]\nwindow = \"30m\"\n[leak]\nwindow = \"6h\"\nhorizon = \"2d\"\n[health]\nwindow = \"1d12h\"\n",
        )
        .unwrap();
        assert_eq!(cfg.restart_loop.window.ms(), 30 * MINUTE);
        assert_eq!(cfg.leak.window.ms(), 6 * HOUR);
        assert_eq!(cfg.health.window.ms(), 36 * HOUR);
    }

    #[test]
    fn unknown_keys_and_unparseable_durations_are_refused_by_the_parser() {
        let err = toml::from_str::<DetectConfig>("[oom]\nnear = 0.9\n").unwrap_err().to_string();
        assert!(err.contains("near"), "{err}");
        let err = toml::from_str::<DetectConfig>("[leak]\nwindow = \"soon\"\n").unwrap_err().to_string();
        assert!(err.contains("\"soon\""), "{err}");
    }

    #[test]
    fn problems_list_every_bad_value_with_its_path() {
        let mut cfg = DetectConfig::default();
        cfg.restart_loop.restarts = 0;
        cfg.restart_loop.window = Span::from_ms(0);
        cfg.oom.near_limit = 1.5;
        cfg.oom.drop_to = -0.1;
        cfg.leak.min_r2 = f64::NAN;
        cfg.leak.min_rise = 2.0;
        cfg.flapping.transitions = 1;
        cfg.health.max_mase = 0.0;
        cfg.health.min_coverage = 1.2;
        cfg.health.min_scored = 0;
        let problems = cfg.problems("detect");
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "detect.restart_loop.window",
                "detect.restart_loop.restarts",
                "detect.oom.near_limit",
                "detect.oom.drop_to",
                "detect.leak.min_r2",
                "detect.leak.min_rise",
                "detect.flapping.transitions",
                "detect.health.max_mase",
                "detect.health.min_coverage",
                "detect.health.min_scored",
            ]
        );
        assert_eq!(problems[0].to_string(), "detect.restart_loop.window = \"0s\": must be longer than 0s");
        assert_eq!(problems[2].value, "1.5");

        let mut cfg = DetectConfig::default();
        cfg.oom.drop_to = 0.95;
        let problems = cfg.problems("detect");
        assert_eq!(problems.len(), 1);
        assert!(problems[0].why.contains("below oom.near_limit = 0.9"), "{}", problems[0]);
    }

    #[test]
    fn a_window_reads_its_points_and_the_last_one_before_it_never_later_ones() {
        let key = SeriesKey::new("host/a", "memory").unwrap();
        let s = SeriesData::from_points(key.clone(), &[(0, 1.0), (2, 2.0), (1, 3.0)]);
        let err = recent(&s, 10, 10).unwrap_err().to_string();
        assert_eq!(
            err,
            "host/a:memory: samples are not sorted by time: 1970-01-01T00:00:00.001Z comes after 1970-01-01T00:00:00.002Z"
        );
        let s = SeriesData::from_points(key, &[(0, 1.0), (1, 5.0), (2, f64::NAN), (3, 2.0), (4, 4.0), (5, 6.0)]);
        // Window (2, 4]: 3 and 4, after the last finite point at or before 2, which is 1.
        assert_eq!(recent(&s, 2, 4).unwrap(), vec![(1, 5.0), (3, 2.0), (4, 4.0)]);
        assert_eq!(recent(&s, 100, 1).unwrap(), vec![(0, 1.0), (1, 5.0)]);
    }
}
