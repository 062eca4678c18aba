//! Series keys and units.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Identifies one series: the thing measured (`entity`) and what (`metric`).
///
/// Entities are slash-separated paths by convention: `k8s/<namespace>/<kind>/<name>`,
/// `host/<name>`, `systemd/<unit>`, `winsvc/<name>`, `proc/<name>`; recorded data sets
/// use their own prefix (`nab/…`, `asd/…`). Metrics are `cpu` (cores), `memory` (bytes),
/// `restarts` (counter) or any other name. Displayed as `entity:metric`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SeriesKey {
    /// What is measured, e.g. `k8s/shop/deployment/cart`.
    pub entity: String,
    /// Which measurement, e.g. `cpu`.
    pub metric: String,
}

impl SeriesKey {
    /// A key from two names, checked with [`check_name`].
    pub fn new(entity: impl Into<String>, metric: impl Into<String>) -> Result<Self> {
        let key = Self { entity: entity.into(), metric: metric.into() };
        check_name("entity", &key.entity)?;
        check_name("metric", &key.metric)?;
        Ok(key)
    }

    /// The unit implied by the metric name (see [`Unit::infer`]).
    pub fn unit(&self) -> Unit {
        Unit::infer(&self.metric)
    }
}

impl fmt::Display for SeriesKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.entity, self.metric)
    }
}

/// Checks an entity or metric name: non-empty, no control characters, no
/// surrounding whitespace.
pub fn check_name(field: &'static str, value: &str) -> Result<()> {
    let why = if value.is_empty() {
        Some("it is empty")
    } else if value.chars().any(char::is_control) {
        Some("it contains a control character")
    } else if value.trim() != value {
        Some("it starts or ends with whitespace")
    } else {
        None
    };
    match why {
        Some(why) => Err(Error::Name { field, value: value.to_owned(), why }),
        None => Ok(()),
    }
}

/// The unit of a series' values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// CPU in cores (1.0 = one core busy).
    Cores,
    /// Memory in bytes.
    Bytes,
    /// A utilisation in percent, 0–100.
    Percent,
    /// A monotonically increasing count (restarts, CPU seconds); resampled as a rate per second.
    Counter,
    /// Anything else (normalised ratios, anonymised metrics): treated as a gauge.
    Other,
}

impl Unit {
    /// The unit a metric name implies:
    /// `cpu`, `*_cores` → cores; `memory`, `mem`, `*_bytes` → bytes;
    /// `*_pct`, `*_percent` → percent; `restarts`, `*_total`, `*_seconds_total` → counter;
    /// anything else → other.
    pub fn infer(metric: &str) -> Self {
        let m = metric.to_ascii_lowercase();
        if m.ends_with("_total") || m == "restarts" {
            Unit::Counter
        } else if m.ends_with("_pct") || m.ends_with("_percent") || m == "percent" {
            Unit::Percent
        } else if m == "cpu" || m.ends_with("_cores") {
            Unit::Cores
        } else if m == "memory" || m == "mem" || m.ends_with("_bytes") {
            Unit::Bytes
        } else {
            Unit::Other
        }
    }

    /// Whether values are a resource amount that can never be negative
    /// (CPU, memory, utilisation, counters). Negative values of these are rejected.
    pub fn is_non_negative(self) -> bool {
        !matches!(self, Unit::Other)
    }

    /// Whether the series is a counter (resampled as a rate, resets handled).
    pub fn is_counter(self) -> bool {
        matches!(self, Unit::Counter)
    }

    /// The unit's name as written in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Cores => "cores",
            Unit::Bytes => "bytes",
            Unit::Percent => "percent",
            Unit::Counter => "counter",
            Unit::Other => "other",
        }
    }
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_follow_metric_names() {
        assert_eq!(Unit::infer("cpu"), Unit::Cores);
        assert_eq!(Unit::infer("memory"), Unit::Bytes);
        assert_eq!(Unit::infer("cpu_pct"), Unit::Percent);
        assert_eq!(Unit::infer("mem_util_percent"), Unit::Percent);
        assert_eq!(Unit::infer("restarts"), Unit::Counter);
        assert_eq!(Unit::infer("container_cpu_usage_seconds_total"), Unit::Counter);
        assert_eq!(Unit::infer("working_set_bytes"), Unit::Bytes);
        assert_eq!(Unit::infer("m7"), Unit::Other);
        assert!(Unit::Percent.is_non_negative());
        assert!(!Unit::Other.is_non_negative());
    }

    #[test]
    fn bad_names_are_refused_with_the_reason() {
        let err = SeriesKey::new("", "cpu").unwrap_err().to_string();
        assert!(err.contains("entity") && err.contains("empty"), "{err}");
        let err = SeriesKey::new("host/a", "cpu\n").unwrap_err().to_string();
        assert!(err.contains("control character"), "{err}");
        let err = SeriesKey::new(" host/a", "cpu").unwrap_err().to_string();
        assert!(err.contains("whitespace"), "{err}");
        assert_eq!(SeriesKey::new("host/a", "cpu").unwrap().to_string(), "host/a:cpu");
    }
}
