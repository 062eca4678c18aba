//! The source: every (query, chunk) request of a pull, with its retries,
//! assembled into one frame.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use futures::{StreamExt, TryStreamExt, stream};
use headroom_core::{BoxFuture, SampleFrame, SeriesData, SeriesKey, format_ts};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::chunk::{Chunk, plan_chunks};
use super::client::{Client, Failure, Transient};
use super::config::PrometheusConfig;
use super::entity::{EntityTemplate, fmt_labels};
use super::parse::PulledSeries;
use crate::error::{Error, Result};
use crate::source::Source;

/// One resolved query.
#[derive(Debug, Clone)]
pub(super) struct Query {
    /// Config path for messages (`queries[0]`, `presets[node].cpu`).
    pub(super) name: String,
    pub(super) metric: String,
    pub(super) promql: String,
    pub(super) entity: EntityTemplate,
}

impl Query {
    /// Every query `cfg` pulls, its entity template parsed.
    fn all(cfg: &PrometheusConfig) -> Result<Vec<Query>> {
        cfg.all_queries()
            .into_iter()
            .map(|(name, q)| {
                let entity = EntityTemplate::parse(&q.entity)
                    .map_err(|why| Error::Config(format!("prometheus.{name}.entity = {:?}: {why}", q.entity)))?;
                Ok(Query { name, metric: q.metric, promql: q.promql, entity })
            })
            .collect()
    }

    /// The entity of the result series with `labels`.
    fn entity_of(&self, labels: &BTreeMap<String, String>) -> Result<String> {
        self.entity.render(labels).map_err(|label| {
            Error::Config(format!(
                "prometheus.{} (metric {:?}): entity template {:?} needs label {label:?}, \
                 but result series {} has only the labels [{}]; change the template or the query",
                self.name,
                self.metric,
                self.entity.as_str(),
                fmt_labels(labels),
                labels.keys().map(String::as_str).collect::<Vec<_>>().join(", ")
            ))
        })
    }

    /// The series key of `entity`, the rendering of `labels`.
    fn key(&self, entity: &str, labels: &BTreeMap<String, String>) -> Result<SeriesKey> {
        SeriesKey::new(entity, self.metric.as_str()).map_err(|e| {
            Error::Config(format!(
                "prometheus.{}: series {} gives entity {entity:?}: {e}",
                self.name,
                fmt_labels(labels)
            ))
        })
    }

    /// The error for a result series with `labels` mapping to the `entity`
    /// (and metric) that the series with `other_labels` of `other` already has.
    fn collision(
        &self,
        entity: &str,
        labels: &BTreeMap<String, String>,
        other: &Query,
        other_labels: &BTreeMap<String, String>,
    ) -> Error {
        Error::Config(format!(
            "prometheus.{} (metric {:?}): result series {} and {} (from {}) both map to \
             entity {entity:?}; add the label that tells them apart to the entity template, \
             or aggregate them in PromQL (sum by / max by)",
            self.name,
            self.metric,
            fmt_labels(labels),
            fmt_labels(other_labels),
            other.name,
        ))
    }
}

/// Pulls a time range from Prometheus; see the module docs.
#[derive(Debug)]
pub struct PrometheusSource {
    cfg: PrometheusConfig,
    queries: Vec<Query>,
    chunks: Vec<Chunk>,
    pub(super) client: Client,
    completed: AtomicUsize,
}

impl PrometheusSource {
    /// Validates `cfg`, reads the credentials and the CA file, and builds the
    /// HTTP client. Needs a rustls crypto provider installed in the process
    /// (`rustls::crypto::ring::default_provider().install_default()`).
    pub fn new(cfg: PrometheusConfig) -> Result<Self> {
        cfg.validate()?;
        let queries = Query::all(&cfg)?;
        let chunks = plan_chunks(cfg.start, cfg.end, cfg.step.ms(), cfg.max_points_per_request);
        let client = Client::new(&cfg)?;
        Ok(Self { cfg, queries, chunks, client, completed: AtomicUsize::new(0) })
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
        let url = &self.client.url;
        let tasks: Vec<(usize, usize)> =
            (0..self.queries.len()).flat_map(|q| (0..self.chunks.len()).map(move |c| (q, c))).collect();
        debug!(url = %url, queries = self.queries.len(), chunks = self.chunks.len(),
               requests = tasks.len(), concurrency = self.cfg.concurrency, "prometheus pull starts");
        let mut results: Vec<(usize, usize, Vec<PulledSeries>)> = stream::iter(tasks)
            .map(|(q, c)| async move { self.fetch(q, c).await.map(|series| (q, c, series)) })
            .buffer_unordered(self.cfg.concurrency)
            .try_collect()
            .await?;
        results.sort_unstable_by_key(|(q, c, _)| (*q, *c));
        let frame = self.assemble(results)?;
        debug!(url = %url, rows = frame.len(), elapsed_ms = started.elapsed().as_millis() as u64,
               "prometheus pull done");
        Ok(frame)
    }

    /// Maps result series to entities, concatenates chunks (in time order) and
    /// builds the frame. Two label sets mapping to one entity and metric are an error.
    fn assemble(&self, results: Vec<(usize, usize, Vec<PulledSeries>)>) -> Result<SampleFrame> {
        // (entity, metric) → index in `out` of (query index, labels, points)
        let mut index: HashMap<(String, String), usize> = HashMap::new();
        let mut out: Vec<(usize, BTreeMap<String, String>, SeriesData)> = Vec::new();
        for (qi, _chunk, series) in results {
            let q = &self.queries[qi];
            for s in series {
                let entity = q.entity_of(&s.labels)?;
                let slot = match index.get(&(entity.clone(), q.metric.clone())) {
                    Some(&i) => {
                        let (other_q, other_labels, _) = &out[i];
                        if *other_q != qi || *other_labels != s.labels {
                            return Err(q.collision(&entity, &s.labels, &self.queries[*other_q], other_labels));
                        }
                        i
                    }
                    None => {
                        let key = q.key(&entity, &s.labels)?;
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
                warn!(url = %self.client.url, query = %q.name, metric = %q.metric,
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
        let backoff = self.cfg.backoff();
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            match self.client.attempt(q, chunk, ci, attempt).await {
                Ok(series) => {
                    self.completed.fetch_add(1, Ordering::Relaxed);
                    return Ok(series);
                }
                Err(Failure::Fatal(e)) => return Err(e),
                Err(Failure::Transient(t)) => {
                    let Some(delay) = backoff.next(attempt, t.retry_after()) else {
                        return Err(self.give_up(q, chunk, &t, attempt));
                    };
                    warn!(url = %self.client.url, query = %q.name, chunk = ci, attempt, error = %t,
                          retry_in_ms = delay.as_millis() as u64, "prometheus request failed; retrying");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// The error after the last of `attempts` failed with `t`.
    fn give_up(&self, q: &Query, chunk: Chunk, t: &Transient, attempts: u32) -> Error {
        Error::Prometheus {
            url: self.client.url.clone(),
            why: format!(
                "{} (metric {:?}), {} … {}: {}",
                q.name,
                q.metric,
                format_ts(chunk.start_ms),
                format_ts(chunk.end_ms),
                t.give_up(attempts, self.cfg.timeout)
            ),
        }
    }
}

impl Source for PrometheusSource {
    fn describe(&self) -> String {
        format!(
            "prometheus {} ({} queries, {} … {}, step {})",
            self.client.url,
            self.queries.len(),
            format_ts(self.cfg.start),
            format_ts(self.cfg.end),
            self.cfg.step
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
    use headroom_core::Span;

    use super::super::fixtures::{MIN, T0, config, pulled, source};
    use super::super::{Preset, QueryConfig};
    use super::*;

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

    #[test]
    fn describe_and_plan() {
        let mut cfg = config();
        cfg.url = "https://prom.example.org/prometheus/?x=1".into();
        cfg.step = Span::from_secs(60);
        cfg.max_points_per_request = 25;
        cfg.presets = vec![Preset::Node];
        let src = source(cfg);
        assert_eq!(src.chunks().len(), 3);
        assert_eq!(src.planned_requests(), 9);
        assert_eq!(src.client.endpoint.as_str(), "https://prom.example.org/prometheus/api/v1/query_range?x=1");
        assert_eq!(
            src.describe(),
            "prometheus https://prom.example.org/prometheus (3 queries, 2024-01-01T00:00:00Z … 2024-01-01T01:00:00Z, step 1m)"
        );
    }
}
