//! What to pull and how: [`PrometheusConfig`] and its checks.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use headroom_core::retry::Backoff;
use headroom_core::{SeriesKey, Span, format_ts};
use reqwest::Url;
use serde::{Deserialize, Serialize};

use super::auth::AuthConfig;
use super::entity::EntityTemplate;
use super::presets::Preset;
use crate::error::{Error, Result};

/// Prometheus refuses `query_range` answers of more points than this per series.
pub const PROMETHEUS_MAX_POINTS: usize = 11_000;

/// Longest wait between two attempts of one request, whatever the backoff or
/// `Retry-After` says.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(60);

/// A range holding more points per series than this is surely a mistake
/// (epoch seconds given as milliseconds, or a tiny step).
const MAX_POINTS_PER_SERIES: i64 = 10_000_000;

/// Where and what to pull from Prometheus.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusConfig {
    /// Base URL of the Prometheus HTTP API, e.g. `http://prometheus:9090`, or
    /// `https://example.org/prometheus` behind a path prefix (kept). Must not
    /// hold credentials: use `auth`.
    pub url: String,
    /// Queries to pull. Each result series becomes one series of the frame.
    #[serde(default)]
    pub queries: Vec<QueryConfig>,
    /// Ready-made query sets pulled in addition to `queries`.
    #[serde(default)]
    pub presets: Vec<Preset>,
    /// First evaluation time, UTC epoch milliseconds (see [`PrometheusConfig::with_range`]).
    /// Left out in the daemon's `[[sources]]`, whose schedule sets the range of each pull.
    #[serde(default)]
    pub start: i64,
    /// Last evaluation time at most, UTC epoch milliseconds, inclusive.
    /// Points are evaluated at `start + k·step` up to `end`.
    #[serde(default)]
    pub end: i64,
    /// Resolution: one point per series every `step` (`30s`, `5m`, `1h`).
    #[serde(default = "default_step")]
    pub step: Span,
    /// Window of `rate()` in the presets (`5m`); widened to `step` when
    /// shorter so no sample between two points is skipped. Make it at least
    /// four scrape intervals.
    #[serde(default = "default_rate_window")]
    pub rate_window: Span,
    /// Most evaluation points per series in one request; longer ranges are
    /// split. Prometheus refuses more than 11,000.
    #[serde(default = "default_max_points_per_request")]
    pub max_points_per_request: usize,
    /// Requests in flight at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Time allowed for one request, from connecting to the last byte (`30s`).
    #[serde(default = "default_timeout")]
    pub timeout: Span,
    /// Retries of one request after a 5xx, a 429, a timeout or a connection
    /// error. Other 4xx answers are never retried.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Wait before the first retry, doubled for each further one (at most
    /// 60 s). A 429's `Retry-After` (seconds) is honoured instead.
    #[serde(default = "default_retry_backoff")]
    pub retry_backoff: Span,
    /// Credentials sent with every request.
    #[serde(default)]
    pub auth: Option<AuthConfig>,
    /// PEM file with the CA certificate(s) of Prometheus' TLS certificate.
    /// When set, only these CAs are trusted.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

fn default_step() -> Span {
    Span::from_secs(300)
}
fn default_rate_window() -> Span {
    Span::from_secs(300)
}
fn default_max_points_per_request() -> usize {
    10_000
}
fn default_concurrency() -> usize {
    4
}
fn default_timeout() -> Span {
    Span::from_secs(30)
}
fn default_retries() -> u32 {
    4
}
fn default_retry_backoff() -> Span {
    Span::from_ms(500)
}

impl PrometheusConfig {
    /// A config for `url` over `[start, end]` (epoch ms) with every other field
    /// at its default and no queries yet.
    pub fn new(url: impl Into<String>, start: i64, end: i64) -> Self {
        Self {
            url: url.into(),
            queries: Vec::new(),
            presets: Vec::new(),
            start,
            end,
            step: default_step(),
            rate_window: default_rate_window(),
            max_points_per_request: default_max_points_per_request(),
            concurrency: default_concurrency(),
            timeout: default_timeout(),
            retries: default_retries(),
            retry_backoff: default_retry_backoff(),
            auth: None,
            ca_file: None,
        }
    }

    /// Sets `start` and `end` to the `range` ending at `end` (at `now_ms` when
    /// `None`). `end` is rounded down and `start` up to a multiple of `step`,
    /// so evaluation times fall on the epoch-aligned bins the resampler uses.
    /// Set `step` first.
    pub fn with_range(mut self, range: Duration, end: Option<i64>, now_ms: i64) -> Self {
        let step = self.step.ms().max(1);
        let end = end.unwrap_or(now_ms).div_euclid(step) * step;
        let start = end - range.as_millis() as i64;
        self.start = (start + step - 1).div_euclid(step) * step;
        self.end = end;
        self
    }

    /// Every query pulled: the presets' first, then `queries`, each with the
    /// config path used in messages (`presets[node].cpu`, `queries[0]`).
    pub fn all_queries(&self) -> Vec<(String, QueryConfig)> {
        let window = self.rate_window.max(self.step);
        let mut out = Vec::new();
        for preset in &self.presets {
            for q in preset.queries(window) {
                out.push((format!("presets[{}].{}", preset.name(), q.metric), q));
            }
        }
        for (i, q) in self.queries.iter().enumerate() {
            out.push((format!("queries[{i}]"), q.clone()));
        }
        out
    }

    /// How one request is retried: `retries + 1` tries in all, waiting
    /// `retry_backoff` doubled each time (or what a 429's `Retry-After`
    /// asks), never more than a minute.
    pub fn backoff(&self) -> Backoff {
        Backoff { base: self.retry_backoff.0, max: MAX_RETRY_DELAY, attempts: self.retries.saturating_add(1) }
    }

    /// Checks every field; the message names the field and its value.
    pub fn validate(&self) -> Result<()> {
        parse_base_url(&self.url)?;
        self.check_queries()?;
        self.check_range()?;
        self.check_transport()
    }

    fn check_queries(&self) -> Result<()> {
        if self.queries.is_empty() && self.presets.is_empty() {
            return Err(Error::Config(
                "prometheus: nothing to pull; add at least one entry to `queries` or `presets` (kubernetes, node)"
                    .into(),
            ));
        }
        for (i, q) in self.queries.iter().enumerate() {
            let field = format!("queries[{i}]");
            if let Err(e) = SeriesKey::new("x", q.metric.as_str()) {
                return bad(&format!("{field}.metric"), &format!("{:?}", q.metric), &e.to_string());
            }
            if q.promql.trim().is_empty() {
                return bad(&format!("{field}.promql"), &"\"\"", "the query is empty");
            }
            if let Err(why) = EntityTemplate::parse(&q.entity) {
                return bad(&format!("{field}.entity"), &format!("{:?}", q.entity), &why);
            }
        }
        Ok(())
    }

    fn check_range(&self) -> Result<()> {
        let step_ms = self.step.ms();
        if step_ms < 1 {
            return bad("step", &format!("{:?}", self.step.0), "must be at least 1ms");
        }
        if self.start < 0 {
            return bad("start", &self.start, "must be UTC epoch milliseconds, not before 1970");
        }
        if self.end < self.start {
            return bad(
                "end",
                &self.end,
                &format!("is before start = {} ({} < {})", self.start, format_ts(self.end), format_ts(self.start)),
            );
        }
        let points = (self.end - self.start) / step_ms + 1;
        if points > MAX_POINTS_PER_SERIES {
            return bad(
                "step",
                &self.step,
                &format!(
                    "the range {} … {} holds {points} points per series, more than {MAX_POINTS_PER_SERIES}; \
                     use a larger step or check that start and end are milliseconds",
                    format_ts(self.start),
                    format_ts(self.end)
                ),
            );
        }
        Ok(())
    }

    fn check_transport(&self) -> Result<()> {
        if self.max_points_per_request == 0 || self.max_points_per_request > PROMETHEUS_MAX_POINTS {
            return bad(
                "max_points_per_request",
                &self.max_points_per_request,
                &format!("must be between 1 and {PROMETHEUS_MAX_POINTS} (Prometheus refuses more points per series)"),
            );
        }
        if self.concurrency == 0 || self.concurrency > 64 {
            return bad("concurrency", &self.concurrency, "must be between 1 and 64");
        }
        if self.timeout.0.is_zero() {
            return bad("timeout", &format!("{:?}", self.timeout.0), "must be positive");
        }
        if self.retries > 20 {
            return bad("retries", &self.retries, "must be at most 20");
        }
        Ok(())
    }
}

/// A config error naming the field and its value.
fn bad(field: &str, value: &dyn fmt::Display, why: &str) -> Result<()> {
    Err(Error::Config(format!("prometheus.{field} = {value}: {why}")))
}

/// One PromQL query and how its result series are named.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryConfig {
    /// Metric name of every series the query returns (`cpu` in cores,
    /// `memory` in bytes, or any other name).
    pub metric: String,
    /// The PromQL expression, evaluated with `query_range`.
    pub promql: String,
    /// Entity template: `{label}` is replaced by the value of that label of
    /// each result series, e.g. `host/{instance}` or
    /// `k8s/{namespace}/{workload_kind}/{workload}`. Every result series must
    /// map to a different entity.
    pub entity: String,
}

impl QueryConfig {
    /// A query from its three parts.
    pub fn new(metric: impl Into<String>, promql: impl Into<String>, entity: impl Into<String>) -> Self {
        Self { metric: metric.into(), promql: promql.into(), entity: entity.into() }
    }
}

/// Parses and checks the base URL; the message never echoes credentials.
pub(super) fn parse_base_url(text: &str) -> Result<Url> {
    let url = Url::parse(text.trim()).map_err(|e| {
        let shown = if text.contains('@') { "(not shown: it contains '@')".to_owned() } else { format!("{text:?}") };
        Error::Config(format!("prometheus.url = {shown}: not a URL ({e}); expected e.g. http://prometheus:9090"))
    })?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Error::Config(
            "prometheus.url: must not contain credentials (user or password before '@'); use prometheus.auth".into(),
        ));
    }
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Error::Config(format!(
            "prometheus.url = {:?}: scheme must be http or https, not {:?}",
            display_url(&url),
            url.scheme()
        )));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(Error::Config(format!("prometheus.url = {text:?}: has no host")));
    }
    Ok(url)
}

/// The URL as shown in logs and errors: scheme, host, port and path only.
pub(super) fn display_url(url: &Url) -> String {
    let mut shown = url.clone();
    shown.set_query(None);
    shown.set_fragment(None);
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.as_str().trim_end_matches('/').to_owned()
}

#[cfg(test)]
mod tests {
    use headroom_core::retry::parse_retry_after;

    use super::super::SecretSource;
    use super::super::fixtures::{T0, config, config_error};
    use super::*;

    #[test]
    fn with_range_aligns_to_the_step() {
        let now = T0 + 3 * 3_600_000 + 123_456;
        let mut cfg = config();
        cfg.step = Span::from_secs(300);
        let cfg = cfg.with_range(Duration::from_secs(3_600), None, now);
        assert_eq!(cfg.end, T0 + 3 * 3_600_000);
        assert_eq!(cfg.start, T0 + 2 * 3_600_000);
        let cfg = cfg.with_range(Duration::from_secs(3_600 + 10), Some(T0 + 3_600_000), now);
        assert_eq!((cfg.start, cfg.end), (T0, T0 + 3_600_000), "start is rounded up onto the step grid");
    }

    #[test]
    fn backoff_doubles_and_retry_after_wins() {
        let cfg = config();
        assert_eq!((cfg.retries, cfg.retry_backoff), (4, Span::from_ms(500)));
        let backoff = cfg.backoff();
        assert_eq!(backoff.attempts, 5, "the first try and 4 retries");
        let delays: Vec<u128> = (0..4).map(|r| backoff.wait(r, None).as_millis()).collect();
        assert_eq!(delays, vec![500, 1000, 2000, 4000]);
        assert_eq!(backoff.wait(30, None), MAX_RETRY_DELAY);
        assert_eq!(backoff.wait(0, Some(Duration::from_secs(3))), Duration::from_secs(3));
        assert_eq!(backoff.wait(0, Some(Duration::from_secs(3600))), MAX_RETRY_DELAY);
        assert_eq!(parse_retry_after(" 7 "), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }

    #[test]
    fn credentials_in_the_url_are_refused_without_echoing_them() {
        let mut cfg = config();
        cfg.url = "http://admin:hunter2@prometheus:9090".into();
        let err = config_error(&cfg);
        assert!(err.contains("must not contain credentials") && !err.contains("hunter2"), "{err}");
        cfg.url = "http://ad min:hunter2@prometheus:9090 x".into();
        let err = config_error(&cfg);
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn config_errors_name_the_field_and_value() {
        type Change = fn(&mut PrometheusConfig);
        let cases: Vec<(Change, &str)> = vec![
            (
                |c| c.max_points_per_request = 11_001,
                "prometheus.max_points_per_request = 11001: must be between 1 and 11000",
            ),
            (|c| c.max_points_per_request = 0, "prometheus.max_points_per_request = 0"),
            (|c| c.concurrency = 0, "prometheus.concurrency = 0: must be between 1 and 64"),
            (|c| c.end = c.start - 1, "prometheus.end = 1704067199999: is before start = 1704067200000"),
            (|c| c.start = -5, "prometheus.start = -5"),
            (|c| c.step = Span(Duration::from_micros(10)), "prometheus.step"),
            (
                |c| {
                    c.step = Span::from_ms(1);
                    c.end = c.start + 86_400_000;
                },
                "holds 86400001 points per series, more than 10000000",
            ),
            (|c| c.timeout = Span(Duration::ZERO), "prometheus.timeout"),
            (|c| c.retries = 100, "prometheus.retries = 100"),
            (|c| c.url = "prometheus:9090".into(), "prometheus.url = \"prometheus:9090\""),
            (|c| c.url = "ftp://prometheus".into(), "scheme must be http or https"),
            (|c| c.url = "not a url".into(), "prometheus.url = \"not a url\": not a URL"),
            (
                |c| c.queries[0].entity = "host/{inst".into(),
                "prometheus.queries[0].entity = \"host/{inst\": '{' at byte 5",
            ),
            (|c| c.queries[0].metric = "".into(), "prometheus.queries[0].metric = \"\""),
            (|c| c.queries[0].promql = " ".into(), "prometheus.queries[0].promql"),
            (|c| c.queries.clear(), "nothing to pull"),
        ];
        for (change, expected) in cases {
            let mut cfg = config();
            change(&mut cfg);
            let err = config_error(&cfg);
            assert!(err.contains(expected), "expected {expected:?} in {err:?}");
        }
        config().validate().unwrap();
        let mut cfg = config();
        cfg.max_points_per_request = 11_000;
        cfg.validate().unwrap();
    }

    #[test]
    fn config_reads_from_serde_with_defaults_and_refuses_unknown_fields() {
        let cfg: PrometheusConfig = serde_json::from_value(serde_json::json!({
            "url": "https://prom.example.org/prometheus",
            "presets": ["kubernetes", "node"],
            "queries": [{"metric": "restarts", "promql": "kube_pod_container_status_restarts_total", "entity": "pod/{pod}"}],
            "start": T0, "end": T0 + 3_600_000,
            "step": "1m",
            "auth": {"type": "basic", "username": "me", "password": {"file": "/run/secrets/prom"}}
        }))
        .unwrap();
        assert_eq!(cfg.step, Span::from_secs(60));
        assert_eq!(cfg.timeout, Span::from_secs(30));
        assert_eq!((cfg.max_points_per_request, cfg.concurrency, cfg.retries), (10_000, 4, 4));
        assert_eq!(
            cfg.auth,
            Some(AuthConfig::Basic { username: "me".into(), password: SecretSource::File("/run/secrets/prom".into()) })
        );
        let names: Vec<String> = cfg.all_queries().into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            [
                "presets[kubernetes].cpu",
                "presets[kubernetes].memory",
                "presets[node].cpu",
                "presets[node].memory",
                "queries[0]"
            ]
        );
        cfg.validate().unwrap();
        // Round trip, durations as text.
        let text = serde_json::to_string(&cfg).unwrap();
        assert!(text.contains(r#""step":"1m""#), "{text}");
        assert_eq!(serde_json::from_str::<PrometheusConfig>(&text).unwrap(), cfg);

        let err = serde_json::from_value::<PrometheusConfig>(serde_json::json!({
            "url": "http://p:9090", "start": 0, "end": 1, "stepp": "1m"
        }))
        .unwrap_err()
        .to_string();
        assert!(err.contains("unknown field `stepp`"), "{err}");
        let err = serde_json::from_value::<PrometheusConfig>(serde_json::json!({
            "url": "http://p:9090", "start": 0, "end": 1, "step": "5 minutes"
        }))
        .unwrap_err()
        .to_string();
        assert!(err.contains("\"5 minutes\""), "{err}");
        let err = serde_json::from_value::<PrometheusConfig>(serde_json::json!({
            "url": "http://p:9090", "start": 0, "end": 1, "auth": {"type": "bearer", "token": "inline"}
        }))
        .unwrap_err()
        .to_string();
        assert!(err.contains("file") && err.contains("env"), "secrets are never inline: {err}");
    }
}
