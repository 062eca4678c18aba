//! What the daemon tells Prometheus about itself, in the exposition format
//! (prometheus-client). Labels are of low cardinality: job names, actions,
//! outcomes, guardrail names, error kinds and configured target names — never
//! decision ids or series beyond the targets.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// A scheduled job. Its label is `task`, not `job`: Prometheus gives every
/// scraped series its own `job` label (the scrape job's name).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobLabel {
    /// `collect`, `forecast` or `act`.
    pub task: String,
}

/// A job's run, by result.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RunLabels {
    /// `collect`, `forecast` or `act`.
    pub task: String,
    /// `ok` or `error`.
    pub result: String,
}

/// A decision, by what it asked and how.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    /// `none`, `scale`, `restart`.
    pub action: String,
    /// `dry-run` or `enforce`.
    pub mode: String,
}

/// An action carried out (or rehearsed), by outcome.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionLabels {
    /// `scale`, `restart`.
    pub action: String,
    /// `succeeded`, `failed`, `dry_run`, `already_done`, `not_acted`.
    pub outcome: String,
}

/// A guardrail, by name.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GuardrailLabel {
    /// The guardrail's name (`cooldown`, `stale_data`, …).
    pub guardrail: String,
}

/// An error, by kind.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabel {
    /// `collect`, `forecast`, `act`, `reload`, `unreachable`…
    pub kind: String,
}

/// A configured target and the model whose forecasts it is scored on.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TargetLabel {
    /// The target's name in headroom.toml.
    pub target: String,
    /// The model that made its forecast (`lstm`, or the fallback that stood in).
    pub model: String,
}

type Hist = Family<JobLabel, Histogram, fn() -> Histogram>;

/// Every metric the daemon exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Seconds each job run took.
    pub job_duration: Hist,
    /// Runs of each job, by result.
    pub job_runs: Family<RunLabels, Counter>,
    /// Unix time of each job's last successful run.
    pub job_last_success: Family<JobLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
    /// Series in the last collection.
    pub series_collected: Gauge,
    /// Samples written to the store.
    pub samples_collected: Counter,
    /// MASE of each target's recent forecasts, by model (the health check).
    pub forecast_mase: Family<TargetLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
    /// p10–p90 coverage of each target's recent forecasts, by model (the health check).
    pub forecast_coverage: Family<TargetLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
    /// Decisions, by action and mode.
    pub decisions: Family<DecisionLabels, Counter>,
    /// Actions, by action and outcome.
    pub actions: Family<ActionLabels, Counter>,
    /// Decisions a guardrail blocked, by guardrail.
    pub guardrail_blocks: Family<GuardrailLabel, Counter>,
    /// Errors, by kind.
    pub errors: Family<ErrorLabel, Counter>,
    /// 1 if the last reload of the config succeeded, else 0.
    pub config_last_reload_successful: Gauge,
    /// Unix time of the last successful (re)load of the config.
    pub config_last_reload_success_time: Gauge<f64, std::sync::atomic::AtomicU64>,
}

fn durations() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 4.0, 10))
}

impl Metrics {
    /// Every metric at zero, registered under the `headroom` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("headroom");
        let m = Self {
            job_duration: Hist::new_with_constructor(durations),
            job_runs: Family::default(),
            job_last_success: Family::default(),
            series_collected: Gauge::default(),
            samples_collected: Counter::default(),
            forecast_mase: Family::default(),
            forecast_coverage: Family::default(),
            decisions: Family::default(),
            actions: Family::default(),
            guardrail_blocks: Family::default(),
            errors: Family::default(),
            config_last_reload_successful: Gauge::default(),
            config_last_reload_success_time: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register("job_duration_seconds", "Seconds each scheduled job run took", m.job_duration.clone());
        registry.register("job_runs", "Scheduled job runs, by result", m.job_runs.clone());
        registry.register(
            "job_last_success_timestamp_seconds",
            "Unix time of each job's last successful run",
            m.job_last_success.clone(),
        );
        registry.register("series_collected", "Series in the last collection", m.series_collected.clone());
        registry.register("samples_collected", "Samples written to the store", m.samples_collected.clone());
        registry.register(
            "forecast_mase",
            "MASE of each target's recent forecasts (health check)",
            m.forecast_mase.clone(),
        );
        registry.register(
            "forecast_coverage",
            "Share of recent actuals inside each target's p10-p90 band (health check)",
            m.forecast_coverage.clone(),
        );
        registry.register("decisions", "Decisions, by action and mode", m.decisions.clone());
        registry.register("actions", "Actions carried out or rehearsed, by outcome", m.actions.clone());
        registry.register(
            "guardrail_blocks",
            "Decisions blocked by a guardrail, by guardrail",
            m.guardrail_blocks.clone(),
        );
        registry.register("errors", "Errors, by kind", m.errors.clone());
        registry.register(
            "config_last_reload_successful",
            "1 if the last reload of the config succeeded",
            m.config_last_reload_successful.clone(),
        );
        registry.register(
            "config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful load of the config",
            m.config_last_reload_success_time.clone(),
        );
        Self { registry, ..m }
    }

    /// Counts an error of `kind`.
    pub fn error(&self, kind: &str) {
        self.errors.get_or_create(&ErrorLabel { kind: kind.into() }).inc();
    }

    /// The exposition, in the OpenMetrics text format (what Prometheus asks for).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// The exposition, in the Prometheus text format 0.0.4 (for clients that
    /// do not ask for OpenMetrics: `curl`, `promtool check metrics`).
    pub fn encode_text(&self) -> String {
        openmetrics_to_text(&self.encode())
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The media type of [`Metrics::encode`].
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The media type of [`Metrics::encode_text`].
pub const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Whether an `Accept` header asks for OpenMetrics at least as much as for
/// anything else (Prometheus does; `curl` and browsers do not).
pub fn wants_openmetrics(accept: &str) -> bool {
    let mut openmetrics = 0.0_f64;
    let mut other = 0.0_f64;
    for range in accept.split(',') {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or_default().to_ascii_lowercase();
        let q = parts.filter_map(|p| p.strip_prefix("q=")).find_map(|q| q.trim().parse::<f64>().ok()).unwrap_or(1.0);
        if media == "application/openmetrics-text" {
            openmetrics = openmetrics.max(q);
        } else if matches!(media.as_str(), "text/plain" | "text/*" | "*/*") {
            other = other.max(q);
        }
    }
    openmetrics > 0.0 && openmetrics >= other
}

/// Rewrites prometheus-client's OpenMetrics text as the Prometheus text
/// format 0.0.4, whose parsers (`promtool check metrics`, the Go client's
/// `expfmt`) name a counter family as its samples: OpenMetrics'
/// `# TYPE x counter` with samples `x_total` becomes `# TYPE x_total counter`.
/// Also: `unknown` is `untyped`, an `info` family `x` is the gauge `x_info`,
/// and `# UNIT`, `# EOF` and counters' `_created` samples are dropped (0.0.4
/// has none of them). Sample lines are unchanged. (prometheus-client writes
/// exemplars only for its exemplar types, which the daemon does not use.)
pub fn openmetrics_to_text(openmetrics: &str) -> String {
    use std::collections::{BTreeMap, BTreeSet};
    use std::fmt::Write as _;
    // Family name → its 0.0.4 name and type; and the samples 0.0.4 has no place for.
    let mut families: BTreeMap<&str, (String, &str)> = BTreeMap::new();
    let mut dropped = BTreeSet::new();
    for line in openmetrics.lines() {
        let Some((name, kind)) = line.strip_prefix("# TYPE ").and_then(|r| r.split_once(' ')) else { continue };
        let renamed = match kind {
            "counter" => {
                dropped.insert(format!("{name}_created"));
                (format!("{name}_total"), "counter")
            }
            "info" => (format!("{name}_info"), "gauge"),
            "unknown" => (name.to_owned(), "untyped"),
            other => (name.to_owned(), other),
        };
        families.insert(name, renamed);
    }
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            let name = families.get(name).map_or(name, |f| f.0.as_str());
            // 0.0.4 escapes backslashes and newlines in help text, not quotes.
            let _ = writeln!(out, "# HELP {name} {}", help.replace("\\\"", "\""));
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            let (name, kind) = families.get(name).map_or((name, kind), |f| (f.0.as_str(), f.1));
            let _ = writeln!(out, "# TYPE {name} {kind}");
        } else if !dropped.contains(&line[..line.find(['{', ' ']).unwrap_or(line.len())]) {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_gets_openmetrics_and_everyone_else_the_text_format() {
        // Prometheus 2.x's scrape Accept header.
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,\
                          text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert!(wants_openmetrics(prometheus));
        assert!(wants_openmetrics("application/openmetrics-text"));
        for other in
            ["", "*/*", "text/plain", "text/plain;version=0.0.4", "text/plain,application/openmetrics-text;q=0.5"]
        {
            assert!(!wants_openmetrics(other), "{other:?}");
        }
        assert!(!wants_openmetrics("application/openmetrics-text;q=0"));
    }

    #[test]
    fn the_text_format_names_counters_as_their_samples_and_keeps_every_sample() {
        let m = Metrics::new();
        m.job_runs.get_or_create(&RunLabels { task: "act".into(), result: "ok".into() }).inc();
        m.job_duration.get_or_create(&JobLabel { task: "act".into() }).observe(0.01);
        m.config_last_reload_successful.set(1);
        let om = m.encode();
        assert!(om.contains("# TYPE headroom_job_runs counter\n") && om.ends_with("# EOF\n"), "{om}");
        let text = m.encode_text();
        assert!(text.contains("# HELP headroom_job_runs_total Scheduled job runs, by result.\n"), "{text}");
        assert!(text.contains("# TYPE headroom_job_runs_total counter\n"), "{text}");
        assert!(text.contains("# TYPE headroom_job_duration_seconds histogram\n"), "{text}");
        assert!(!text.contains("# EOF"), "{text}");
        let samples = |s: &str| s.lines().filter(|l| !l.starts_with('#')).map(str::to_owned).collect::<Vec<_>>();
        assert_eq!(samples(&text), samples(&om), "samples are unchanged");
        assert!(text.contains("headroom_job_runs_total{task=\"act\",result=\"ok\"} 1\n"), "{text}");

        let other = "# HELP x A \\\"quoted\\\" help.\n# TYPE x counter\n# UNIT x seconds\nx_total 2\nx_created 1.5\n\
                     # TYPE b info\nb_info{v=\"1\"} 1\n# TYPE u unknown\nu 3\n# EOF\n";
        assert_eq!(
            openmetrics_to_text(other),
            "# HELP x_total A \"quoted\" help.\n# TYPE x_total counter\nx_total 2\n\
             # TYPE b_info gauge\nb_info{v=\"1\"} 1\n# TYPE u untyped\nu 3\n"
        );
    }
}
