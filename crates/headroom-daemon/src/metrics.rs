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

/// A scheduled job.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobLabel {
    /// `collect`, `forecast` or `act`.
    pub job: String,
}

/// A job's run, by result.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RunLabels {
    /// `collect`, `forecast` or `act`.
    pub job: String,
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

/// A configured target.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TargetLabel {
    /// The target's name in headroom.toml.
    pub target: String,
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
    /// MASE of each target's recent forecasts (the health check).
    pub forecast_mase: Family<TargetLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
    /// p10–p90 coverage of each target's recent forecasts (the health check).
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

    /// The exposition, in the text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
