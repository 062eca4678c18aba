//! Risks: what the detectors found, the input of the policy.
//!
//! A risk names its series, when it was seen, and the window it is about
//! (`window_start_ms`): the same underlying reason found again in a later
//! cycle has the same window, so the policy gives it the same decision id
//! and never acts twice for it.

use headroom_core::SeriesKey;
use serde::{Deserialize, Serialize};

/// One thing that may need an action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Risk {
    /// A forecast quantile crosses the threshold within the horizon.
    Saturation(Saturation),
    /// The restart counter rose `restarts` times within `window_ms`.
    RestartLoop(RestartLoop),
    /// Memory near its limit, then a drop to near zero with a restart.
    OomKill(OomKill),
    /// Memory rising steadily; its trend reaches the limit at `exhaustion_at_ms`.
    MemoryLeak(MemoryLeak),
    /// Up/down/up within a window.
    Flapping(Flapping),
}

impl Risk {
    /// The series the risk is about.
    pub fn key(&self) -> &SeriesKey {
        match self {
            Risk::Saturation(r) => &r.key,
            Risk::RestartLoop(r) => &r.key,
            Risk::OomKill(r) => &r.key,
            Risk::MemoryLeak(r) => &r.key,
            Risk::Flapping(r) => &r.key,
        }
    }

    /// Short name of the kind, as used in explanations and decision ids.
    pub fn kind(&self) -> &'static str {
        match self {
            Risk::Saturation(_) => "saturation",
            Risk::RestartLoop(_) => "restart_loop",
            Risk::OomKill(_) => "oom_kill",
            Risk::MemoryLeak(_) => "memory_leak",
            Risk::Flapping(_) => "flapping",
        }
    }

    /// Start of the window the risk is about (stable across cycles for one reason).
    pub fn window_start_ms(&self) -> i64 {
        match self {
            Risk::Saturation(r) => r.window_start_ms,
            Risk::RestartLoop(r) => r.first_at_ms,
            Risk::OomKill(r) => r.drop_at_ms,
            Risk::MemoryLeak(r) => r.window_start_ms,
            Risk::Flapping(r) => r.first_at_ms,
        }
    }

    /// Whether the risk is a crash pattern (handled by the escalation ladder)
    /// rather than a predicted saturation or leak (handled by scaling).
    pub fn is_crash_pattern(&self) -> bool {
        is_crash_kind(self.kind())
    }
}

/// Whether a risk kind (or a decision's risk, `restart_loop#2`: kind and
/// ladder rung) is a crash pattern.
pub(crate) fn is_crash_kind(kind: &str) -> bool {
    matches!(kind.split('#').next().unwrap_or(""), "restart_loop" | "oom_kill" | "flapping")
}

/// Predicted saturation: the first bin where the chosen quantile reaches the threshold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Saturation {
    /// The forecast series.
    pub key: SeriesKey,
    /// Forecasting model that produced the forecast.
    pub model: String,
    /// Forecast origin (start of its first bin), ms since the epoch.
    pub origin_ms: i64,
    /// Quantile the crossing was read from (one of `QUANTILES`: 0.1, 0.5, 0.9, 0.95, 0.99).
    pub quantile: f64,
    /// The value that counts as saturated (`threshold × capacity`, in the series' unit).
    pub threshold: f64,
    /// Start of the first bin above `threshold`.
    pub crosses_at_ms: i64,
    /// Highest value of the quantile over the horizon.
    pub peak: f64,
    /// Start of the bin of `peak`.
    pub peak_at_ms: i64,
    /// `crosses_at_ms - now`, never negative (0: already at or over the threshold).
    pub time_left_ms: i64,
    /// `crosses_at_ms` rounded down to the hour: the window the risk is about.
    pub window_start_ms: i64,
}

/// A restart loop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestartLoop {
    /// The restart-counter series.
    pub key: SeriesKey,
    /// Restarts counted within the window.
    pub restarts: u32,
    /// The detection window, ms.
    pub window_ms: i64,
    /// Time of the first restart counted.
    pub first_at_ms: i64,
    /// Time of the last restart counted.
    pub last_at_ms: i64,
}

/// The shape of an out-of-memory kill.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OomKill {
    /// The memory series.
    pub key: SeriesKey,
    /// Memory just before the drop.
    pub peak: f64,
    /// The limit it was near.
    pub limit: f64,
    /// Start of the sample where memory dropped.
    pub drop_at_ms: i64,
    /// Whether a restart was seen with the drop (counter rose, or the series restarted).
    pub restarted: bool,
}

/// A memory leak: a sustained upward trend reaching the limit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemoryLeak {
    /// The memory series.
    pub key: SeriesKey,
    /// Trend, series units per hour.
    pub slope_per_hour: f64,
    /// Fraction of variance the trend explains (0–1).
    pub r2: f64,
    /// The limit the trend reaches.
    pub limit: f64,
    /// When the trend reaches `limit`.
    pub exhaustion_at_ms: i64,
    /// `exhaustion_at_ms - now`, never negative.
    pub time_left_ms: i64,
    /// Start of the trend window fitted (the window the risk is about).
    pub window_start_ms: i64,
}

/// Flapping: the series crossed a level up, down and up again within a window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Flapping {
    /// The series (an `up`-style 0/1 series, or any series with a level).
    pub key: SeriesKey,
    /// Up/down transitions within the window.
    pub transitions: u32,
    /// The detection window, ms.
    pub window_ms: i64,
    /// Time of the first transition counted.
    pub first_at_ms: i64,
}

/// Rolling accuracy of recent forecasts of one series against what happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForecastHealth {
    /// The series.
    pub key: SeriesKey,
    /// Mean absolute error of the median over the scored bins divided by the
    /// in-sample daily seasonal naive error (MASE), if it could be computed.
    pub mase: Option<f64>,
    /// Fraction of scored bins inside p10–p90.
    pub coverage: Option<f64>,
    /// Number of (forecast bin, actual) pairs scored.
    pub scored: usize,
    /// Whether predictive actions must be turned off for the series.
    pub degraded: bool,
    /// Why it is degraded (or "healthy"), for explanations.
    pub reason: String,
}
