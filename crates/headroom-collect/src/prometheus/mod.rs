//! Pulls history from Prometheus' HTTP API (`/api/v1/query_range`).
//!
//! [`PrometheusConfig`] is plain serde data: the base URL, PromQL queries
//! (each with a metric name and an [`EntityTemplate`] filled from the
//! result's labels), ready-made [`Preset`]s for Kubernetes and node-exporter,
//! the time range and step, and the transport settings (timeout, retries,
//! concurrency, [`AuthConfig`], CA file). [`PrometheusSource`] runs it:
//!
//! * The range is split into chunks of at most `max_points_per_request`
//!   evaluation points per series ([`plan_chunks`]); every chunk is aligned
//!   on the unchunked query's evaluation times, so chunking never moves a point.
//! * Each (query, chunk) is one GET of `query_range`, at most `concurrency`
//!   in flight. 5xx, 429 (honouring `Retry-After`), timeouts and connection
//!   errors are retried with exponential backoff (the shared
//!   [`Backoff`](headroom_core::retry::Backoff)); other 4xx are not.
//! * Prometheus' `"status":"error"` answers become [`Error::PromQl`];
//!   anything unreachable or unusable after the retries, [`Error::Prometheus`].
//! * Values are kept as Prometheus sends them, `NaN` and `±Inf` included: the
//!   resampler drops and counts non-finite values.
//! * A pull either yields the whole range or fails: no partial frame is ever
//!   returned, and cancellation yields [`Error::Cancelled`].
//!
//! Credentials are read once from a file or an environment variable into a
//! [`Secret`], which never prints; they never reach a log line or an error.
//!
//! One module per concern: `config` (the config and its checks), `presets`,
//! `auth`, `entity` (templates), `chunk` (planning), `parse` (answers),
//! `client` (one HTTP exchange and how it failed) and `source` (the requests
//! of a pull, their retries, and the frame they make).
//!
//! [`Error::PromQl`]: crate::Error::PromQl
//! [`Error::Prometheus`]: crate::Error::Prometheus
//! [`Error::Cancelled`]: crate::Error::Cancelled

mod auth;
mod chunk;
mod client;
mod config;
mod entity;
#[cfg(test)]
mod fixtures;
mod parse;
mod presets;
mod source;

pub use auth::{AuthConfig, Secret, SecretSource};
pub use chunk::{Chunk, plan_chunks};
pub use config::{PROMETHEUS_MAX_POINTS, PrometheusConfig, QueryConfig};
pub use entity::EntityTemplate;
pub use parse::parse_answer_for_fuzzing;
pub use presets::Preset;
pub use source::PrometheusSource;
