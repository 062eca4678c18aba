//! Pulls history from Prometheus' HTTP API (`/api/v1/query_range`).
//!
//! [`PrometheusConfig`] is plain serde data: the base URL, PromQL queries
//! (each with a metric name and an entity template filled from the result's
//! labels), ready-made [`Preset`]s for Kubernetes and node-exporter, the time
//! range and step, and the transport settings (timeout, retries, concurrency,
//! auth, CA file). [`PrometheusSource`] runs it:
//!
//! * The range is split into chunks of at most `max_points_per_request`
//!   evaluation points per series ([`plan_chunks`]); every chunk is aligned
//!   on the unchunked query's evaluation times, so chunking never moves a point.
//! * Each (query, chunk) is one GET of `query_range`, at most `concurrency`
//!   in flight. 5xx, 429 (honouring `Retry-After`), timeouts and connection
//!   errors are retried with exponential backoff; other 4xx are not.
//! * Prometheus' `"status":"error"` answers become [`Error::PromQl`];
//!   anything unreachable or unusable after the retries, [`Error::Prometheus`].
//! * Values are kept as Prometheus sends them, `NaN` and `±Inf` included: the
//!   resampler drops and counts non-finite values.
//! * A pull either yields the whole range or fails: no partial frame is ever
//!   returned, and cancellation yields [`Error::Cancelled`].
//!
//! Credentials are read once from a file or an environment variable into a
//! [`Secret`], which never prints; they never reach a log line or an error.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt, stream};
use headroom_core::BoxFuture;
use headroom_core::{SampleFrame, SeriesData, SeriesKey, format_duration, format_ts};
use reqwest::{StatusCode, Url};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::error::{Error, Result};
use crate::source::Source;

/// Prometheus refuses `query_range` answers of more points than this per series.
pub const PROMETHEUS_MAX_POINTS: usize = 11_000;

/// Longest wait between two attempts of one request, whatever the backoff or
/// `Retry-After` says.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(60);

/// A range holding more points per series than this is surely a mistake
/// (epoch seconds given as milliseconds, or a tiny step).
const MAX_POINTS_PER_SERIES: i64 = 10_000_000;

/// How much of an unusable answer is quoted in an error.
const SNIPPET_CHARS: usize = 200;

// ---------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------

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
    #[serde(default = "default_step", with = "duration_text")]
    pub step: Duration,
    /// Window of `rate()` in the presets (`5m`); widened to `step` when
    /// shorter so no sample between two points is skipped. Make it at least
    /// four scrape intervals.
    #[serde(default = "default_rate_window", with = "duration_text")]
    pub rate_window: Duration,
    /// Most evaluation points per series in one request; longer ranges are
    /// split. Prometheus refuses more than 11,000.
    #[serde(default = "default_max_points_per_request")]
    pub max_points_per_request: usize,
    /// Requests in flight at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Time allowed for one request, from connecting to the last byte (`30s`).
    #[serde(default = "default_timeout", with = "duration_text")]
    pub timeout: Duration,
    /// Retries of one request after a 5xx, a 429, a timeout or a connection
    /// error. Other 4xx answers are never retried.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Wait before the first retry, doubled for each further one (at most
    /// 60 s). A 429's `Retry-After` (seconds) is honoured instead.
    #[serde(default = "default_retry_backoff", with = "duration_text")]
    pub retry_backoff: Duration,
    /// Credentials sent with every request.
    #[serde(default)]
    pub auth: Option<AuthConfig>,
    /// PEM file with the CA certificate(s) of Prometheus' TLS certificate.
    /// When set, only these CAs are trusted.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

fn default_step() -> Duration {
    Duration::from_secs(300)
}
fn default_rate_window() -> Duration {
    Duration::from_secs(300)
}
fn default_max_points_per_request() -> usize {
    10_000
}
fn default_concurrency() -> usize {
    4
}
fn default_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_retries() -> u32 {
    4
}
fn default_retry_backoff() -> Duration {
    Duration::from_millis(500)
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
        let step = (self.step.as_millis() as i64).max(1);
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

    /// Checks every field; the message names the field and its value.
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &str, value: &dyn fmt::Display, why: &str| {
            Err(Error::Config(format!("prometheus.{field} = {value}: {why}")))
        };
        parse_base_url(&self.url)?;
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
        let step_ms = self.step.as_millis() as i64;
        if step_ms < 1 {
            return bad("step", &format!("{:?}", self.step), "must be at least 1ms");
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
                &format_duration(step_ms),
                &format!(
                    "the range {} … {} holds {points} points per series, more than {MAX_POINTS_PER_SERIES}; \
                     use a larger step or check that start and end are milliseconds",
                    format_ts(self.start),
                    format_ts(self.end)
                ),
            );
        }
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
        if self.timeout.is_zero() {
            return bad("timeout", &format!("{:?}", self.timeout), "must be positive");
        }
        if self.retries > 20 {
            return bad("retries", &self.retries, "must be at most 20");
        }
        Ok(())
    }
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

/// Ready-made query sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// Per-workload container CPU (cores) and working-set memory (bytes), from
    /// cAdvisor (kubelet) and kube-state-metrics; entity
    /// `k8s/{namespace}/{workload_kind}/{workload}`.
    Kubernetes,
    /// Per-node CPU busy (cores) and memory used (bytes), from node-exporter;
    /// entity `host/{instance}`.
    Node,
}

/// Maps every pod to its workload: `(namespace, pod) → (workload_kind, workload)`,
/// value 1, from kube-state-metrics' `kube_pod_owner`. Assumes:
///
/// * a pod owned by a ReplicaSet belongs to the Deployment whose name is the
///   ReplicaSet's minus its last `-<pod-template-hash>` segment (true for
///   ReplicaSets created by Deployments; a bare ReplicaSet, or one of another
///   controller such as an Argo Rollout, is reported as a deployment of that
///   trimmed name);
/// * StatefulSet, DaemonSet and Job owners are the workload as they are
///   (a CronJob's pods count per Job); a pod without an owner (`<none>`) is its own
///   `pod` workload; any other owner kind is kept verbatim (e.g. `Node` for
///   static pods), since PromQL cannot lower-case;
/// * `max by` folds the duplicate series of several kube-state-metrics replicas.
const POD_WORKLOAD: &str = r#"max by (namespace, pod, workload_kind, workload) (
    label_replace(label_replace(kube_pod_owner{owner_kind="ReplicaSet"},
      "workload", "$1", "owner_name", "(.+)-[a-z0-9]+"), "workload_kind", "deployment", "owner_kind", "ReplicaSet")
  or label_replace(label_replace(kube_pod_owner{owner_kind="StatefulSet"},
      "workload", "$1", "owner_name", "(.+)"), "workload_kind", "statefulset", "owner_kind", "StatefulSet")
  or label_replace(label_replace(kube_pod_owner{owner_kind="DaemonSet"},
      "workload", "$1", "owner_name", "(.+)"), "workload_kind", "daemonset", "owner_kind", "DaemonSet")
  or label_replace(label_replace(kube_pod_owner{owner_kind="Job"},
      "workload", "$1", "owner_name", "(.+)"), "workload_kind", "job", "owner_kind", "Job")
  or label_replace(label_replace(kube_pod_owner{owner_kind="<none>"},
      "workload", "$1", "pod", "(.+)"), "workload_kind", "pod", "owner_kind", "<none>")
  or label_replace(label_replace(kube_pod_owner{owner_kind!~"ReplicaSet|StatefulSet|DaemonSet|Job|<none>"},
      "workload", "$1", "owner_name", "(.+)"), "workload_kind", "$1", "owner_kind", "(.+)")
)"#;

/// cAdvisor's per-container series: `container=""` is the pod-level cgroup (it
/// would count every container twice) and `container="POD"` the pause
/// container of older runtimes. Assumes cAdvisor is scraped once (one job),
/// with the `namespace`/`pod`/`container` labels of Kubernetes ≥ 1.16.
const CONTAINERS: &str = r#"container!="", container!="POD""#;

impl Preset {
    /// The preset's name as written in configuration.
    pub fn name(self) -> &'static str {
        match self {
            Preset::Kubernetes => "kubernetes",
            Preset::Node => "node",
        }
    }

    /// The preset's queries, with `rate()` over `rate_window`.
    pub fn queries(self, rate_window: Duration) -> Vec<QueryConfig> {
        let w = format_duration(rate_window.as_millis() as i64);
        match self {
            Preset::Kubernetes => {
                let entity = "k8s/{namespace}/{workload_kind}/{workload}";
                let by_workload = "sum by (namespace, workload_kind, workload)";
                let join = "* on (namespace, pod) group_left (workload_kind, workload)";
                vec![
                    QueryConfig::new(
                        "cpu",
                        format!(
                            "{by_workload} (\n  rate(container_cpu_usage_seconds_total{{{CONTAINERS}}}[{w}])\n  {join}\n  {POD_WORKLOAD}\n)"
                        ),
                        entity,
                    ),
                    QueryConfig::new(
                        "memory",
                        format!(
                            "{by_workload} (\n  container_memory_working_set_bytes{{{CONTAINERS}}}\n  {join}\n  {POD_WORKLOAD}\n)"
                        ),
                        entity,
                    ),
                ]
            }
            // Assumes each node is scraped by one job (two would double the CPU sum
            // and make the memory series collide on `host/{instance}`).
            Preset::Node => vec![
                QueryConfig::new(
                    "cpu",
                    format!(r#"sum by (instance) (rate(node_cpu_seconds_total{{mode!="idle"}}[{w}]))"#),
                    "host/{instance}",
                ),
                QueryConfig::new(
                    "memory",
                    "sum by (instance) (node_memory_MemTotal_bytes - node_memory_MemAvailable_bytes)",
                    "host/{instance}",
                ),
            ],
        }
    }
}

/// Credentials sent with every request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum AuthConfig {
    /// `Authorization: Bearer <token>`.
    Bearer {
        /// Where to read the token.
        token: SecretSource,
    },
    /// HTTP basic authentication.
    Basic {
        /// User name (not secret).
        username: String,
        /// Where to read the password.
        password: SecretSource,
    },
}

/// Where a secret is read from, once, when the source is built. Secrets are
/// never written in configuration files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum SecretSource {
    /// A file holding the secret; surrounding whitespace (the trailing newline) is dropped.
    File(PathBuf),
    /// An environment variable holding the secret.
    Env(String),
}

impl SecretSource {
    /// Reads the secret; `field` names it in errors (which never hold the secret).
    pub fn read(&self, field: &str) -> Result<Secret> {
        let value = match self {
            SecretSource::File(path) => std::fs::read_to_string(path).map_err(Error::io(path))?,
            SecretSource::Env(name) => std::env::var(name).map_err(|e| {
                Error::Config(format!("prometheus.{field}: environment variable {name:?} cannot be read ({e})"))
            })?,
        };
        let value = value.trim();
        if value.is_empty() {
            let from = match self {
                SecretSource::File(path) => format!("file {}", path.display()),
                SecretSource::Env(name) => format!("environment variable {name:?}"),
            };
            return Err(Error::Config(format!("prometheus.{field}: {from} is empty")));
        }
        Ok(Secret::new(value))
    }
}

/// A credential. `Debug` and `Display` print `***`; only [`Secret::expose`]
/// gives the value, to put it in a request header.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret value. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Durations in configuration are written the way [`parse_duration`] reads them.
mod duration_text {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&headroom_core::format_duration(d.as_millis() as i64))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        headroom_core::parse_duration(&text).map_err(serde::de::Error::custom)
    }
}

/// Parses and checks the base URL; the message never echoes credentials.
fn parse_base_url(text: &str) -> Result<Url> {
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
fn display_url(url: &Url) -> String {
    let mut shown = url.clone();
    shown.set_query(None);
    shown.set_fragment(None);
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.as_str().trim_end_matches('/').to_owned()
}

// ---------------------------------------------------------------------------
// Entity templates
// ---------------------------------------------------------------------------

/// An entity template such as `k8s/{namespace}/{workload}`: literal text and
/// `{label}` placeholders (label names as in Prometheus: `[a-zA-Z_][a-zA-Z0-9_]*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntityTemplate {
    text: String,
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Label(String),
}

impl EntityTemplate {
    /// Parses a template; the error says what is wrong with it.
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        if text.trim().is_empty() {
            return Err("the entity template is empty".into());
        }
        let mut parts = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            match rest.find(['{', '}']) {
                None => {
                    parts.push(Part::Text(rest.to_owned()));
                    break;
                }
                Some(i) if rest.as_bytes()[i] == b'}' => {
                    return Err(format!("'}}' at byte {} has no matching '{{'", text.len() - rest.len() + i));
                }
                Some(i) => {
                    if i > 0 {
                        parts.push(Part::Text(rest[..i].to_owned()));
                    }
                    let after = &rest[i + 1..];
                    let Some(close) = after.find('}') else {
                        return Err(format!("'{{' at byte {} is not closed", text.len() - rest.len() + i));
                    };
                    let label = &after[..close];
                    if !is_label_name(label) {
                        return Err(format!(
                            "{{{label}}} is not a label name (letters, digits and '_', not starting with a digit)"
                        ));
                    }
                    parts.push(Part::Label(label.to_owned()));
                    rest = &after[close + 1..];
                }
            }
        }
        Ok(Self { text: text.to_owned(), parts })
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Fills the template from `labels`; `Err(label)` names the first missing label.
    pub fn render(&self, labels: &BTreeMap<String, String>) -> std::result::Result<String, &str> {
        let mut out = String::with_capacity(self.text.len() + 32);
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Label(l) => out.push_str(labels.get(l).ok_or(l.as_str())?),
            }
        }
        Ok(out)
    }
}

fn is_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `{a="x", b="y"}`, as Prometheus prints a label set.
fn fmt_labels(labels: &BTreeMap<String, String>) -> String {
    let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{{}}}", inner.join(", "))
}

// ---------------------------------------------------------------------------
// Chunk planning
// ---------------------------------------------------------------------------

/// One request's share of the evaluation times of a range query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk {
    /// First evaluation time, UTC epoch ms.
    pub start_ms: i64,
    /// Last evaluation time, UTC epoch ms (inclusive; on the step grid).
    pub end_ms: i64,
}

impl Chunk {
    /// Number of evaluation points per series.
    pub fn points(&self, step_ms: i64) -> usize {
        ((self.end_ms - self.start_ms) / step_ms + 1) as usize
    }
}

/// Splits the evaluation times `start, start + step, …` (up to `end`) into
/// consecutive chunks of at most `max_points` each. Chunk `k` covers
/// `start + k·n·step … start + (k·n + n − 1)·step` (`n = max_points`), the
/// last one ending at the last evaluation time, so the chunks together
/// evaluate exactly the points of the unchunked query. Empty when `end < start`.
pub fn plan_chunks(start_ms: i64, end_ms: i64, step_ms: i64, max_points: usize) -> Vec<Chunk> {
    assert!(step_ms > 0 && max_points > 0, "plan_chunks: step and max_points must be positive");
    if end_ms < start_ms {
        return Vec::new();
    }
    let total = (end_ms - start_ms) / step_ms + 1;
    let n = max_points as i64;
    (0..(total + n - 1) / n)
        .map(|k| Chunk {
            start_ms: start_ms + k * n * step_ms,
            end_ms: start_ms + (k * n + n - 1).min(total - 1) * step_ms,
        })
        .collect()
}

/// Epoch milliseconds as the decimal seconds Prometheus reads (`1704067200`, `1704067200.5`).
fn fmt_seconds(ms: i64) -> String {
    let sign = if ms < 0 { "-" } else { "" };
    let abs = ms.unsigned_abs();
    match abs % 1000 {
        0 => format!("{sign}{}", abs / 1000),
        frac => {
            let frac = format!("{frac:03}");
            format!("{sign}{}.{}", abs / 1000, frac.trim_end_matches('0'))
        }
    }
}

// ---------------------------------------------------------------------------
// Answers
// ---------------------------------------------------------------------------

/// One series of a matrix answer, owned.
#[derive(Debug, Clone, PartialEq)]
struct PulledSeries {
    labels: BTreeMap<String, String>,
    ts: Vec<i64>,
    values: Vec<f64>,
}

/// What a `query_range` answer said.
#[derive(Debug, Clone, PartialEq)]
enum Answer {
    /// `"status":"success"` with a matrix.
    Matrix { series: Vec<PulledSeries>, warnings: Vec<String> },
    /// `"status":"error"`.
    Error { error_type: String, message: String },
}

#[derive(Deserialize)]
struct ApiAnswer<'a> {
    status: String,
    #[serde(default, borrow)]
    data: Option<ApiData<'a>>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    warnings: Vec<String>,
}

#[derive(Deserialize)]
struct ApiData<'a> {
    #[serde(rename = "resultType")]
    result_type: String,
    /// Read as a matrix: `query_range` answers nothing else.
    #[serde(borrow)]
    result: Vec<ApiSeries<'a>>,
}

#[derive(Deserialize)]
struct ApiSeries<'a> {
    metric: BTreeMap<String, String>,
    /// `[seconds, "value"]` pairs; value strings never hold escapes, so they borrow.
    #[serde(default, borrow)]
    values: Vec<(f64, &'a str)>,
}

/// A Prometheus sample value: decimal text, `NaN`, `+Inf` or `-Inf` (kept non-finite).
fn parse_value(text: &str) -> Option<f64> {
    match text {
        "NaN" => Some(f64::NAN),
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        _ => text.parse().ok(),
    }
}

/// The first characters of an answer, for error messages.
fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut out: String = text.chars().take(SNIPPET_CHARS).map(|c| if c.is_control() { ' ' } else { c }).collect();
    if text.chars().nth(SNIPPET_CHARS).is_some() {
        out.push('…');
    }
    out
}

/// Parses a `query_range` answer. The error says what is wrong and quotes the
/// start of the body.
fn parse_answer(body: &[u8]) -> std::result::Result<Answer, String> {
    let bad = |why: String| format!("{why}; the answer starts with {:?}", snippet(body));
    let answer: ApiAnswer<'_> =
        serde_json::from_slice(body).map_err(|e| bad(format!("not a Prometheus query_range answer ({e})")))?;
    match answer.status.as_str() {
        "success" => {}
        "error" => {
            return Ok(Answer::Error {
                error_type: answer.error_type.unwrap_or_else(|| "unknown".into()),
                message: answer.error.unwrap_or_default(),
            });
        }
        other => return Err(bad(format!("unknown status {other:?}"))),
    }
    let Some(data) = answer.data else {
        return Err(bad("a success answer without `data`".into()));
    };
    if data.result_type != "matrix" {
        return Err(bad(format!("resultType is {:?}, expected \"matrix\"", data.result_type)));
    }
    let mut series = Vec::with_capacity(data.result.len());
    for s in data.result {
        let mut ts = Vec::with_capacity(s.values.len());
        let mut values = Vec::with_capacity(s.values.len());
        for (secs, text) in s.values {
            let v = parse_value(text).ok_or_else(|| {
                bad(format!("series {} has value {text:?} at {secs}, not a number", fmt_labels(&s.metric)))
            })?;
            ts.push((secs * 1000.0).round() as i64);
            values.push(v);
        }
        series.push(PulledSeries { labels: s.metric, ts, values });
    }
    Ok(Answer::Matrix { series, warnings: answer.warnings })
}

/// [`parse_answer`] for the fuzz targets (its types stay private): the number
/// of series of a matrix answer, zero for an error answer, or why the body is
/// not an answer. Also takes the [`snippet`] every failed request quotes.
#[doc(hidden)]
pub fn parse_answer_for_fuzzing(body: &[u8]) -> std::result::Result<usize, String> {
    let _ = snippet(body);
    match parse_answer(body)? {
        Answer::Matrix { series, .. } => Ok(series.len()),
        Answer::Error { .. } => Ok(0),
    }
}

// ---------------------------------------------------------------------------
// Retries
// ---------------------------------------------------------------------------

/// Whether an HTTP status is worth retrying: 429 and every 5xx.
fn is_retryable_status(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

/// `Retry-After` in seconds (an HTTP date is ignored: the backoff applies).
fn parse_retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// The wait before retry number `retry` (0 for the first): `Retry-After` when
/// the server gave one, else `base · 2^retry`; never more than a minute.
fn retry_delay(retry: u32, base: Duration, retry_after: Option<Duration>) -> Duration {
    retry_after.unwrap_or_else(|| base.saturating_mul(1u32 << retry.min(16))).min(MAX_RETRY_DELAY)
}

/// Why one attempt failed in a way worth retrying.
#[derive(Debug, Clone, PartialEq)]
enum Transient {
    /// No connection could be opened.
    Connect(String),
    /// No complete answer within the timeout.
    Timeout,
    /// A 5xx or 429 answer.
    Status { status: StatusCode, detail: String, retry_after: Option<Duration> },
    /// The connection broke during the exchange.
    Transport(String),
}

impl Transient {
    fn retry_after(&self) -> Option<Duration> {
        match self {
            Transient::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The message after the last attempt.
    fn give_up(&self, attempts: u32, timeout: Duration) -> String {
        match self {
            Transient::Connect(cause) => format!("could not connect after {attempts} attempts: {cause}"),
            Transient::Timeout => format!(
                "no complete answer within the timeout of {} after {attempts} attempts; \
                 raise prometheus.timeout or lower prometheus.max_points_per_request",
                format_duration(timeout.as_millis() as i64)
            ),
            Transient::Status { status, detail, .. } => {
                format!("gave up after {attempts} attempts; the last answer was HTTP {status}: {detail}")
            }
            Transient::Transport(cause) => format!("request failed after {attempts} attempts: {cause}"),
        }
    }
}

impl fmt::Display for Transient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Transient::Connect(cause) => write!(f, "cannot connect: {cause}"),
            Transient::Timeout => f.write_str("timed out"),
            Transient::Status { status, detail, .. } => write!(f, "HTTP {status}: {detail}"),
            Transient::Transport(cause) => write!(f, "{cause}"),
        }
    }
}

/// An error and its causes on one line, without the request URL (which holds the query).
fn error_chain(err: reqwest::Error) -> String {
    let err = err.without_url();
    let mut out = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

/// How one attempt ended, when it did not succeed.
enum Failure {
    /// Retrying cannot help.
    Fatal(Error),
    /// Retrying may help.
    Transient(Transient),
}

// ---------------------------------------------------------------------------
// The source
// ---------------------------------------------------------------------------

/// Resolved credentials.
#[derive(Debug, Clone)]
enum Auth {
    None,
    Bearer(Secret),
    Basic { username: String, password: Secret },
}

/// One resolved query.
#[derive(Debug, Clone)]
struct Query {
    /// Config path for messages (`queries[0]`, `presets[node].cpu`).
    name: String,
    metric: String,
    promql: String,
    entity: EntityTemplate,
}

/// Pulls a time range from Prometheus; see the module docs.
#[derive(Debug)]
pub struct PrometheusSource {
    cfg: PrometheusConfig,
    /// The URL shown in logs and errors.
    url: String,
    endpoint: Url,
    queries: Vec<Query>,
    chunks: Vec<Chunk>,
    client: reqwest::Client,
    auth: Auth,
    completed: AtomicUsize,
}

impl PrometheusSource {
    /// Validates `cfg`, reads the credentials and the CA file, and builds the
    /// HTTP client. Needs a rustls crypto provider installed in the process
    /// (`rustls::crypto::ring::default_provider().install_default()`).
    pub fn new(cfg: PrometheusConfig) -> Result<Self> {
        cfg.validate()?;
        let base = parse_base_url(&cfg.url)?;
        let url = display_url(&base);
        let mut endpoint = base.clone();
        if !endpoint.path().ends_with('/') {
            endpoint.set_path(&format!("{}/", endpoint.path()));
        }
        // Query parameters of the base URL (e.g. Thanos' `dedup=true`) are sent with every request.
        let mut endpoint = endpoint
            .join("api/v1/query_range")
            .map_err(|e| Error::Config(format!("prometheus.url = {url:?}: cannot add the API path ({e})")))?;
        endpoint.set_query(base.query());

        let queries = cfg
            .all_queries()
            .into_iter()
            .map(|(name, q)| {
                let entity = EntityTemplate::parse(&q.entity)
                    .map_err(|why| Error::Config(format!("prometheus.{name}.entity = {:?}: {why}", q.entity)))?;
                Ok(Query { name, metric: q.metric, promql: q.promql, entity })
            })
            .collect::<Result<Vec<_>>>()?;
        let chunks = plan_chunks(cfg.start, cfg.end, cfg.step.as_millis() as i64, cfg.max_points_per_request);

        let auth = match &cfg.auth {
            None => Auth::None,
            Some(AuthConfig::Bearer { token }) => Auth::Bearer(token.read("auth.token")?),
            Some(AuthConfig::Basic { username, password }) => {
                Auth::Basic { username: username.clone(), password: password.read("auth.password")? }
            }
        };

        if rustls::crypto::CryptoProvider::get_default().is_none() {
            return Err(Error::Config(
                "no TLS crypto provider is installed in this process; call \
                 rustls::crypto::ring::default_provider().install_default() at start-up"
                    .into(),
            ));
        }
        let mut builder =
            reqwest::Client::builder().timeout(cfg.timeout).user_agent(concat!("headroom/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &cfg.ca_file {
            let pem = std::fs::read(path).map_err(Error::io(path))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                Error::Config(format!("prometheus.ca_file = {}: not a PEM certificate bundle ({e})", path.display()))
            })?;
            if certs.is_empty() {
                return Err(Error::Config(format!(
                    "prometheus.ca_file = {}: no PEM certificate found (expected -----BEGIN CERTIFICATE-----)",
                    path.display()
                )));
            }
            builder = builder.tls_certs_only(certs);
        }
        let client = builder
            .build()
            .map_err(|e| Error::Config(format!("prometheus: cannot build the HTTP client: {}", error_chain(e))))?;

        Ok(Self { cfg, url, endpoint, queries, chunks, client, auth, completed: AtomicUsize::new(0) })
    }

    /// The configuration this source runs.
    pub fn config(&self) -> &PrometheusConfig {
        &self.cfg
    }

    /// The chunks every query's range is split into.
    pub fn chunks(&self) -> &[Chunk] {
        &self.chunks
    }

    /// Requests one full pull makes (queries × chunks), retries not counted.
    pub fn planned_requests(&self) -> usize {
        self.queries.len() * self.chunks.len()
    }

    /// Requests answered successfully so far, over every pull of this source.
    /// Progress for a caller (a progress bar, or a test that interrupts a pull).
    pub fn completed_requests(&self) -> usize {
        self.completed.load(Ordering::Relaxed)
    }

    /// Runs every (query, chunk) request and assembles the frame.
    async fn pull(&self) -> Result<SampleFrame> {
        let started = Instant::now();
        let tasks: Vec<(usize, usize)> =
            (0..self.queries.len()).flat_map(|q| (0..self.chunks.len()).map(move |c| (q, c))).collect();
        debug!(url = %self.url, queries = self.queries.len(), chunks = self.chunks.len(),
               requests = tasks.len(), concurrency = self.cfg.concurrency, "prometheus pull starts");
        let mut results: Vec<(usize, usize, Vec<PulledSeries>)> = stream::iter(tasks)
            .map(|(q, c)| async move { self.fetch(q, c).await.map(|series| (q, c, series)) })
            .buffer_unordered(self.cfg.concurrency)
            .try_collect()
            .await?;
        results.sort_unstable_by_key(|(q, c, _)| (*q, *c));
        let frame = self.assemble(results)?;
        debug!(url = %self.url, rows = frame.len(), elapsed_ms = started.elapsed().as_millis() as u64,
               "prometheus pull done");
        Ok(frame)
    }

    /// Maps result series to entities, concatenates chunks (in time order) and
    /// builds the frame. Two label sets mapping to one entity and metric are an error.
    fn assemble(&self, results: Vec<(usize, usize, Vec<PulledSeries>)>) -> Result<SampleFrame> {
        // (entity, metric) → (query index, labels, points)
        let mut index: HashMap<(String, String), usize> = HashMap::new();
        let mut out: Vec<(usize, BTreeMap<String, String>, SeriesData)> = Vec::new();
        for (qi, _chunk, series) in results {
            let q = &self.queries[qi];
            for s in series {
                let entity = q.entity.render(&s.labels).map_err(|label| {
                    Error::Config(format!(
                        "prometheus.{} (metric {:?}): entity template {:?} needs label {label:?}, \
                         but result series {} has only the labels [{}]; change the template or the query",
                        q.name,
                        q.metric,
                        q.entity.as_str(),
                        fmt_labels(&s.labels),
                        s.labels.keys().map(String::as_str).collect::<Vec<_>>().join(", ")
                    ))
                })?;
                let slot = match index.get(&(entity.clone(), q.metric.clone())) {
                    Some(&i) => {
                        let (other_q, other_labels, _) = &out[i];
                        if *other_q != qi || *other_labels != s.labels {
                            let other = &self.queries[*other_q];
                            return Err(Error::Config(format!(
                                "prometheus.{} (metric {:?}): result series {} and {} (from {}) both map to \
                                 entity {entity:?}; add the label that tells them apart to the entity template, \
                                 or aggregate them in PromQL (sum by / max by)",
                                q.name,
                                q.metric,
                                fmt_labels(&s.labels),
                                fmt_labels(other_labels),
                                other.name,
                            )));
                        }
                        i
                    }
                    None => {
                        let key = SeriesKey::new(entity.as_str(), q.metric.as_str()).map_err(|e| {
                            Error::Config(format!(
                                "prometheus.{}: series {} gives entity {entity:?}: {e}",
                                q.name,
                                fmt_labels(&s.labels)
                            ))
                        })?;
                        index.insert((entity, q.metric.clone()), out.len());
                        out.push((qi, s.labels.clone(), SeriesData::new(key)));
                        out.len() - 1
                    }
                };
                let data = &mut out[slot].2;
                data.ts.extend_from_slice(&s.ts);
                data.values.extend_from_slice(&s.values);
            }
        }
        for (qi, q) in self.queries.iter().enumerate() {
            if !out.iter().any(|(i, _, _)| *i == qi) {
                warn!(url = %self.url, query = %q.name, metric = %q.metric,
                      "prometheus query returned no series over the whole range");
            }
        }
        out.sort_by(|a, b| (a.0, &a.2.key).cmp(&(b.0, &b.2.key)));
        Ok(SampleFrame::from_series(out.iter().map(|(_, _, s)| s))?)
    }

    /// One request with its retries.
    async fn fetch(&self, qi: usize, ci: usize) -> Result<Vec<PulledSeries>> {
        let q = &self.queries[qi];
        let chunk = self.chunks[ci];
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            match self.attempt(q, chunk, ci, attempt).await {
                Ok(series) => {
                    self.completed.fetch_add(1, Ordering::Relaxed);
                    return Ok(series);
                }
                Err(Failure::Fatal(e)) => return Err(e),
                Err(Failure::Transient(t)) => {
                    if attempt > self.cfg.retries {
                        return Err(Error::Prometheus {
                            url: self.url.clone(),
                            why: format!(
                                "{} (metric {:?}), {} … {}: {}",
                                q.name,
                                q.metric,
                                format_ts(chunk.start_ms),
                                format_ts(chunk.end_ms),
                                t.give_up(attempt, self.cfg.timeout)
                            ),
                        });
                    }
                    let delay = retry_delay(attempt - 1, self.cfg.retry_backoff, t.retry_after());
                    warn!(url = %self.url, query = %q.name, chunk = ci, attempt, error = %t,
                          retry_in_ms = delay.as_millis() as u64, "prometheus request failed; retrying");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// One HTTP exchange.
    async fn attempt(
        &self,
        q: &Query,
        chunk: Chunk,
        ci: usize,
        attempt: u32,
    ) -> std::result::Result<Vec<PulledSeries>, Failure> {
        let step_ms = self.cfg.step.as_millis() as i64;
        let (start, end, step) = (fmt_seconds(chunk.start_ms), fmt_seconds(chunk.end_ms), fmt_seconds(step_ms));
        debug!(url = %self.url, query = %q.name, metric = %q.metric, chunk = ci,
               start = %format_ts(chunk.start_ms), end = %format_ts(chunk.end_ms),
               points = chunk.points(step_ms), attempt, "prometheus query_range");
        let sent = Instant::now();
        let mut request = self.client.get(self.endpoint.clone()).query(&[
            ("query", q.promql.as_str()),
            ("start", &start),
            ("end", &end),
            ("step", &step),
        ]);
        request = match &self.auth {
            Auth::None => request,
            Auth::Bearer(token) => request.bearer_auth(token.expose()),
            Auth::Basic { username, password } => request.basic_auth(username, Some(password.expose())),
        };
        let transport = |e: reqwest::Error| {
            if e.is_timeout() {
                Failure::Transient(Transient::Timeout)
            } else if e.is_connect() {
                Failure::Transient(Transient::Connect(error_chain(e)))
            } else if e.is_builder() || e.is_redirect() || e.is_decode() {
                Failure::Fatal(Error::Prometheus { url: self.url.clone(), why: error_chain(e) })
            } else {
                Failure::Transient(Transient::Transport(error_chain(e)))
            }
        };
        let response = request.send().await.map_err(transport)?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let body = response.bytes().await.map_err(transport)?;
        let bytes = body.len();
        let raw = body.clone();
        let answer = tokio::task::spawn_blocking(move || parse_answer(&body)).await.map_err(|e| {
            Failure::Fatal(Error::Prometheus { url: self.url.clone(), why: format!("reading the answer failed: {e}") })
        })?;
        debug!(url = %self.url, query = %q.name, chunk = ci, attempt, status = status.as_u16(), bytes,
               elapsed_ms = sent.elapsed().as_millis() as u64, "prometheus answered");

        let fatal = |why: String| Failure::Fatal(Error::Prometheus { url: self.url.clone(), why });
        let promql = |error_type, message| {
            Failure::Fatal(Error::PromQl { url: self.url.clone(), query: q.promql.clone(), error_type, message })
        };
        if status.is_success() {
            return match answer {
                Ok(Answer::Matrix { series, warnings }) => {
                    for w in warnings {
                        warn!(url = %self.url, query = %q.name, warning = %w, "prometheus warning");
                    }
                    Ok(series)
                }
                Ok(Answer::Error { error_type, message }) => Err(promql(error_type, message)),
                Err(why) => Err(fatal(format!("{} (metric {:?}): {why}", q.name, q.metric))),
            };
        }
        if is_retryable_status(status) {
            let detail = match answer {
                Ok(Answer::Error { error_type, message }) => format!("{error_type}: {message}"),
                _ => format!("{:?}", snippet(&raw)),
            };
            return Err(Failure::Transient(Transient::Status { status, detail, retry_after }));
        }
        match answer {
            Ok(Answer::Error { error_type, message }) => Err(promql(error_type, message)),
            _ => Err(fatal(format!(
                "{} (metric {:?}): HTTP {status}{}; the answer starts with {:?}",
                q.name,
                q.metric,
                status_hint(status),
                snippet(&raw)
            ))),
        }
    }
}

/// What to check for a non-retryable status without a Prometheus error body.
fn status_hint(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 | 403 => " (check prometheus.auth)",
        404 => " (is prometheus.url the Prometheus base URL, without /api/v1?)",
        _ => "",
    }
}

impl Source for PrometheusSource {
    fn describe(&self) -> String {
        format!(
            "prometheus {} ({} queries, {} … {}, step {})",
            self.url,
            self.queries.len(),
            format_ts(self.cfg.start),
            format_ts(self.cfg.end),
            format_duration(self.cfg.step.as_millis() as i64)
        )
    }

    fn collect<'a>(&'a self, cancel: &'a CancellationToken) -> BoxFuture<'a, Result<SampleFrame>> {
        Box::pin(async move {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => Err(Error::Cancelled),
                frame = self.pull() => frame,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_704_067_200_000; // 2024-01-01T00:00:00Z
    const MIN: i64 = 60_000;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn config() -> PrometheusConfig {
        let mut cfg = PrometheusConfig::new("http://127.0.0.1:9090", T0, T0 + 60 * MIN);
        cfg.queries.push(QueryConfig::new("cpu", "up", "host/{instance}"));
        cfg
    }

    fn install_tls() {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }

    fn source(cfg: PrometheusConfig) -> PrometheusSource {
        install_tls();
        PrometheusSource::new(cfg).unwrap()
    }

    fn config_error(cfg: &PrometheusConfig) -> String {
        match cfg.validate() {
            Err(Error::Config(msg)) => msg,
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    // --- chunk planning ---

    #[test]
    fn short_ranges_are_one_chunk() {
        let chunks = plan_chunks(T0, T0 + 59 * MIN, MIN, 10_000);
        assert_eq!(chunks, vec![Chunk { start_ms: T0, end_ms: T0 + 59 * MIN }]);
        assert_eq!(chunks[0].points(MIN), 60);
        // An end between two steps: the last point is the last step before it.
        assert_eq!(plan_chunks(T0, T0 + 90_000, MIN, 10), vec![Chunk { start_ms: T0, end_ms: T0 + MIN }]);
        assert_eq!(plan_chunks(T0, T0, MIN, 10), vec![Chunk { start_ms: T0, end_ms: T0 }]);
        assert!(plan_chunks(T0, T0 - 1, MIN, 10).is_empty());
    }

    #[test]
    fn exactly_max_points_is_one_chunk_and_one_more_splits() {
        let n = 11_000;
        let chunks = plan_chunks(T0, T0 + (n - 1) * MIN, MIN, n as usize);
        assert_eq!(chunks.len(), 1);
        assert_eq!(chunks[0].points(MIN), 11_000);
        let chunks = plan_chunks(T0, T0 + n * MIN, MIN, n as usize);
        assert_eq!(chunks.len(), 2);
        assert_eq!(chunks[1], Chunk { start_ms: T0 + n * MIN, end_ms: T0 + n * MIN });
    }

    #[test]
    fn chunks_evaluate_exactly_the_points_of_the_unchunked_query() {
        // 14 days at 60 s: 20,160 points, split at 10,000.
        let end = T0 + 14 * 86_400_000 - MIN;
        let chunks = plan_chunks(T0, end, MIN, 10_000);
        assert_eq!(
            chunks,
            vec![
                Chunk { start_ms: T0, end_ms: T0 + 9_999 * MIN },
                Chunk { start_ms: T0 + 10_000 * MIN, end_ms: T0 + 19_999 * MIN },
                Chunk { start_ms: T0 + 20_000 * MIN, end_ms: end },
            ]
        );
        assert_eq!(chunks[2].points(MIN), 160, "the last chunk is partial");
        let chunked: Vec<i64> =
            chunks.iter().flat_map(|c| (0..c.points(MIN) as i64).map(move |i| c.start_ms + i * MIN)).collect();
        let unchunked: Vec<i64> = (0..20_160).map(|i| T0 + i * MIN).collect();
        assert_eq!(chunked, unchunked);
        // A start off the minute grid stays off it in every chunk, and an end
        // off the grid ends the last chunk on the last evaluation time.
        let chunks = plan_chunks(T0 + 7, T0 + 7 + 25 * MIN + 30_000, MIN, 10);
        assert_eq!(chunks.iter().map(|c| c.start_ms - T0).collect::<Vec<_>>(), vec![7, 7 + 10 * MIN, 7 + 20 * MIN]);
        assert_eq!(chunks[2].end_ms, T0 + 7 + 25 * MIN);
        assert_eq!(chunks.iter().map(|c| c.points(MIN)).sum::<usize>(), 26);
    }

    #[test]
    fn seconds_are_written_as_prometheus_reads_them() {
        assert_eq!(fmt_seconds(T0), "1704067200");
        assert_eq!(fmt_seconds(T0 + 500), "1704067200.5");
        assert_eq!(fmt_seconds(T0 + 25), "1704067200.025");
        assert_eq!(fmt_seconds(60_000), "60");
        assert_eq!(fmt_seconds(-1_500), "-1.5");
    }

    #[test]
    fn with_range_aligns_to_the_step() {
        let now = T0 + 3 * 3_600_000 + 123_456;
        let mut cfg = config();
        cfg.step = Duration::from_secs(300);
        let cfg = cfg.with_range(Duration::from_secs(3_600), None, now);
        assert_eq!(cfg.end, T0 + 3 * 3_600_000);
        assert_eq!(cfg.start, T0 + 2 * 3_600_000);
        let cfg = cfg.with_range(Duration::from_secs(3_600 + 10), Some(T0 + 3_600_000), now);
        assert_eq!((cfg.start, cfg.end), (T0, T0 + 3_600_000), "start is rounded up onto the step grid");
    }

    // --- entity templates ---

    #[test]
    fn templates_fill_labels() {
        let t = EntityTemplate::parse("k8s/{namespace}/{workload_kind}/{workload}").unwrap();
        let l = labels(&[("namespace", "shop"), ("workload_kind", "deployment"), ("workload", "cart"), ("x", "y")]);
        assert_eq!(t.render(&l).unwrap(), "k8s/shop/deployment/cart");
        let t = EntityTemplate::parse("host/{instance}").unwrap();
        assert_eq!(t.render(&labels(&[("instance", "10.0.0.1:9100")])).unwrap(), "host/10.0.0.1:9100");
        let t = EntityTemplate::parse("cluster/total").unwrap();
        assert_eq!(t.render(&BTreeMap::new()).unwrap(), "cluster/total");
        let t = EntityTemplate::parse("{__name__}").unwrap();
        assert_eq!(t.render(&labels(&[("__name__", "up")])).unwrap(), "up");
    }

    #[test]
    fn template_errors_say_what_is_wrong() {
        assert_eq!(EntityTemplate::parse("host/{instance").unwrap_err(), "'{' at byte 5 is not closed");
        assert_eq!(EntityTemplate::parse("host/instance}").unwrap_err(), "'}' at byte 13 has no matching '{'");
        assert!(EntityTemplate::parse("host/{}").unwrap_err().contains("{} is not a label name"));
        assert!(EntityTemplate::parse("host/{1a}").unwrap_err().contains("{1a} is not a label name"));
        assert!(EntityTemplate::parse("host/{a-b}").unwrap_err().contains("not a label name"));
        assert!(EntityTemplate::parse(" ").unwrap_err().contains("empty"));
        let t = EntityTemplate::parse("k8s/{namespace}/{pod}").unwrap();
        assert_eq!(t.render(&labels(&[("namespace", "shop")])), Err("pod"));
    }

    fn pulled(pairs: &[(&str, &str)], points: &[(i64, f64)]) -> PulledSeries {
        PulledSeries {
            labels: labels(pairs),
            ts: points.iter().map(|p| p.0).collect(),
            values: points.iter().map(|p| p.1).collect(),
        }
    }

    #[test]
    fn chunks_are_concatenated_per_series_in_time_order() {
        let mut cfg = config();
        cfg.queries.push(QueryConfig::new("memory", "mem", "host/{instance}"));
        let src = source(cfg);
        let a = [("instance", "a")];
        let b = [("instance", "b")];
        let results = vec![
            (0, 0, vec![pulled(&a, &[(T0, 1.0)]), pulled(&b, &[(T0, 5.0)])]),
            (0, 1, vec![pulled(&b, &[(T0 + MIN, f64::NAN)]), pulled(&a, &[(T0 + MIN, f64::INFINITY)])]),
            (1, 0, vec![pulled(&a, &[(T0, 1e9)])]),
        ];
        let series = src.assemble(results).unwrap().series().unwrap();
        let keys: Vec<String> = series.iter().map(|s| s.key.to_string()).collect();
        assert_eq!(keys, ["host/a:cpu", "host/b:cpu", "host/a:memory"]);
        assert_eq!(series[0].ts, vec![T0, T0 + MIN]);
        assert_eq!(series[0].values[1], f64::INFINITY, "non-finite values are kept for the resampler");
        assert!(series[1].values[1].is_nan());
    }

    #[test]
    fn missing_labels_and_collisions_are_errors() {
        let src = source(config());
        let err = src
            .assemble(vec![(0, 0, vec![pulled(&[("job", "node"), ("__name__", "up")], &[(T0, 1.0)])])])
            .unwrap_err()
            .to_string();
        assert!(err.contains("queries[0]"), "{err}");
        assert!(err.contains("needs label \"instance\""), "{err}");
        assert!(err.contains("[__name__, job]"), "{err}");

        let one = pulled(&[("instance", "a"), ("job", "x")], &[(T0, 1.0)]);
        let two = pulled(&[("instance", "a"), ("job", "y")], &[(T0, 2.0)]);
        let err = src.assemble(vec![(0, 0, vec![one.clone(), two.clone()])]).unwrap_err().to_string();
        assert!(err.contains("both map to entity \"host/a\""), "{err}");
        assert!(err.contains("job=\"x\"") && err.contains("job=\"y\""), "{err}");
        // Also when the second series only shows up in a later chunk.
        let err = src.assemble(vec![(0, 0, vec![one]), (0, 1, vec![two])]).unwrap_err().to_string();
        assert!(err.contains("both map to entity"), "{err}");
    }

    #[test]
    fn two_queries_for_one_entity_and_metric_collide() {
        let mut cfg = config();
        cfg.queries.push(QueryConfig::new("cpu", "other", "host/{instance}"));
        let src = source(cfg);
        let s = pulled(&[("instance", "a")], &[(T0, 1.0)]);
        let err = src.assemble(vec![(0, 0, vec![s.clone()]), (1, 0, vec![s])]).unwrap_err().to_string();
        assert!(err.contains("prometheus.queries[1]") && err.contains("(from queries[0])"), "{err}");
    }

    // --- answers ---

    #[test]
    fn matrix_answers_are_parsed() {
        let body = br#"{"status":"success","data":{"resultType":"matrix","result":[
            {"metric":{"__name__":"x","instance":"a"},"values":[[1704067200,"0.5"],[1704067260.5,"NaN"],[1704067320,"+Inf"],[1704067380,"-Inf"],[1704067440,"1e-3"]]},
            {"metric":{"instance":"b"},"values":[]}]},"warnings":["careful"]}"#;
        let Answer::Matrix { series, warnings } = parse_answer(body).unwrap() else { panic!("not a matrix") };
        assert_eq!(warnings, vec!["careful".to_string()]);
        assert_eq!(series.len(), 2);
        assert_eq!(series[0].labels, labels(&[("__name__", "x"), ("instance", "a")]));
        assert_eq!(series[0].ts, vec![T0, T0 + 60_500, T0 + 2 * MIN, T0 + 3 * MIN, T0 + 4 * MIN]);
        let v = &series[0].values;
        assert_eq!(v[0], 0.5);
        assert!(v[1].is_nan());
        assert_eq!((v[2], v[3], v[4]), (f64::INFINITY, f64::NEG_INFINITY, 0.001));
        assert!(series[1].ts.is_empty());
        let empty = parse_answer(br#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#).unwrap();
        assert_eq!(empty, Answer::Matrix { series: vec![], warnings: vec![] });
    }

    #[test]
    fn error_answers_are_parsed() {
        let body =
            br#"{"status":"error","errorType":"bad_data","error":"1:14: parse error: unclosed left parenthesis"}"#;
        assert_eq!(
            parse_answer(body).unwrap(),
            Answer::Error {
                error_type: "bad_data".into(),
                message: "1:14: parse error: unclosed left parenthesis".into()
            }
        );
    }

    #[test]
    fn unusable_answers_quote_the_body() {
        let err = parse_answer(b"<html><body>502 Bad Gateway</body></html>").unwrap_err();
        assert!(err.contains("not a Prometheus query_range answer"), "{err}");
        assert!(err.contains("starts with \"<html><body>502 Bad Gateway"), "{err}");
        let long = format!(r#"{{"status":"success","data":{}"#, "x".repeat(1000));
        let err = parse_answer(long.as_bytes()).unwrap_err();
        assert!(err.contains('…') && err.len() < 600, "{err}");
        let err = parse_answer(br#"{"status":"success","data":{"resultType":"vector","result":[]}}"#).unwrap_err();
        assert!(err.contains("resultType is \"vector\""), "{err}");
        let err = parse_answer(
            br#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1,"abc"]]}]}}"#,
        )
        .unwrap_err();
        assert!(err.contains("value \"abc\""), "{err}");
        let err = parse_answer(br#"{"status":"maybe"}"#).unwrap_err();
        assert!(err.contains("unknown status \"maybe\""), "{err}");
    }

    // --- retries ---

    #[test]
    fn only_429_and_5xx_are_retried() {
        for code in [429, 500, 502, 503, 504] {
            assert!(is_retryable_status(StatusCode::from_u16(code).unwrap()), "{code}");
        }
        for code in [200, 400, 401, 403, 404, 422] {
            assert!(!is_retryable_status(StatusCode::from_u16(code).unwrap()), "{code}");
        }
    }

    #[test]
    fn backoff_doubles_and_retry_after_wins() {
        let base = Duration::from_millis(500);
        let delays: Vec<u128> = (0..4).map(|r| retry_delay(r, base, None).as_millis()).collect();
        assert_eq!(delays, vec![500, 1000, 2000, 4000]);
        assert_eq!(retry_delay(30, base, None), MAX_RETRY_DELAY);
        assert_eq!(retry_delay(0, base, Some(Duration::from_secs(3))), Duration::from_secs(3));
        assert_eq!(retry_delay(0, base, Some(Duration::from_secs(3600))), MAX_RETRY_DELAY);
        assert_eq!(parse_retry_after(" 7 "), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }

    #[test]
    fn give_up_messages_count_attempts() {
        let t = Transient::Connect("tcp connect error: Connection refused".into());
        assert_eq!(
            t.give_up(5, Duration::from_secs(30)),
            "could not connect after 5 attempts: tcp connect error: Connection refused"
        );
        let t = Transient::Timeout;
        assert!(t.give_up(3, Duration::from_secs(30)).contains("timeout of 30s after 3 attempts"));
        let t = Transient::Status {
            status: StatusCode::SERVICE_UNAVAILABLE,
            detail: "timeout: query timed out".into(),
            retry_after: None,
        };
        assert!(
            t.give_up(2, Duration::from_secs(1)).contains(
                "after 2 attempts; the last answer was HTTP 503 Service Unavailable: timeout: query timed out"
            )
        );
    }

    // --- secrets ---

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s}"), "***");
        assert_eq!(format!("{s:?}"), "***");
        assert_eq!(s.expose(), "hunter2");

        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "s3cr3t-token\n").unwrap();
        let mut cfg = config();
        cfg.auth = Some(AuthConfig::Bearer { token: SecretSource::File(token) });
        let src = source(cfg);
        assert!(matches!(&src.auth, Auth::Bearer(t) if t.expose() == "s3cr3t-token"), "trailing newline dropped");
        let debug = format!("{src:?}");
        assert!(!debug.contains("s3cr3t"), "{debug}");
        assert!(debug.contains("***"), "{debug}");

        // CARGO_PKG_NAME is set by cargo for test binaries.
        let mut cfg = config();
        cfg.auth =
            Some(AuthConfig::Basic { username: "me".into(), password: SecretSource::Env("CARGO_PKG_NAME".into()) });
        let src = source(cfg);
        let debug = format!("{src:?}");
        assert!(matches!(&src.auth, Auth::Basic { password, .. } if password.expose() == "headroom-collect"));
        assert!(!debug.contains("headroom-collect"), "{debug}");
    }

    #[test]
    fn unreadable_secrets_are_named_not_shown() {
        install_tls();
        let mut cfg = config();
        cfg.auth = Some(AuthConfig::Bearer { token: SecretSource::Env("HEADROOM_TEST_SURELY_UNSET_4711".into()) });
        let err = PrometheusSource::new(cfg).unwrap_err().to_string();
        assert!(err.contains("prometheus.auth.token") && err.contains("HEADROOM_TEST_SURELY_UNSET_4711"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let mut cfg = config();
        cfg.auth = Some(AuthConfig::Basic { username: "me".into(), password: SecretSource::File(empty) });
        let err = PrometheusSource::new(cfg).unwrap_err().to_string();
        assert!(err.contains("prometheus.auth.password") && err.contains("is empty"), "{err}");
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

    // --- configuration ---

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
            (|c| c.step = Duration::from_micros(10), "prometheus.step"),
            (
                |c| {
                    c.step = Duration::from_millis(1);
                    c.end = c.start + 86_400_000;
                },
                "holds 86400001 points per series, more than 10000000",
            ),
            (|c| c.timeout = Duration::ZERO, "prometheus.timeout"),
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
        assert_eq!(cfg.step, Duration::from_secs(60));
        assert_eq!(cfg.timeout, Duration::from_secs(30));
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

    #[test]
    fn presets_widen_the_rate_window_to_the_step() {
        let mut cfg = config();
        cfg.queries.clear();
        cfg.presets = vec![Preset::Node, Preset::Kubernetes];
        cfg.step = Duration::from_secs(3_600);
        let all = cfg.all_queries();
        assert_eq!(all[0].1.promql, r#"sum by (instance) (rate(node_cpu_seconds_total{mode!="idle"}[1h]))"#);
        assert_eq!(all[1].1.entity, "host/{instance}");
        assert!(
            all[2].1.promql.contains(r#"rate(container_cpu_usage_seconds_total{container!="", container!="POD"}[1h])"#)
        );
        assert_eq!(all[3].1.entity, "k8s/{namespace}/{workload_kind}/{workload}");
        cfg.step = Duration::from_secs(60);
        assert!(cfg.all_queries()[0].1.promql.contains("[5m]"));
        cfg.validate().unwrap();
    }

    #[test]
    fn ca_files_are_checked() {
        install_tls();
        let dir = tempfile::tempdir().unwrap();
        let bogus = dir.path().join("ca.pem");
        std::fs::write(&bogus, "not a certificate\n").unwrap();
        let mut cfg = config();
        cfg.ca_file = Some(bogus.clone());
        let err = PrometheusSource::new(cfg.clone()).unwrap_err().to_string();
        assert!(err.contains("prometheus.ca_file") && err.contains("no PEM certificate"), "{err}");
        cfg.ca_file = Some(dir.path().join("missing.pem"));
        let err = PrometheusSource::new(cfg.clone()).unwrap_err().to_string();
        assert!(err.contains("missing.pem"), "{err}");
        let system = PathBuf::from("/etc/ssl/certs/ca-certificates.crt");
        if system.exists() {
            cfg.ca_file = Some(system);
            PrometheusSource::new(cfg).unwrap();
        }
    }

    #[test]
    fn describe_and_plan() {
        let mut cfg = config();
        cfg.url = "https://prom.example.org/prometheus/?x=1".into();
        cfg.step = Duration::from_secs(60);
        cfg.max_points_per_request = 25;
        cfg.presets = vec![Preset::Node];
        let src = source(cfg);
        assert_eq!(src.chunks().len(), 3);
        assert_eq!(src.planned_requests(), 9);
        assert_eq!(src.endpoint.as_str(), "https://prom.example.org/prometheus/api/v1/query_range?x=1");
        assert_eq!(
            src.describe(),
            "prometheus https://prom.example.org/prometheus (3 queries, 2024-01-01T00:00:00Z … 2024-01-01T01:00:00Z, step 1m)"
        );
    }
}
