//! The `Source` plug-in boundary: anything that yields samples in the canonical schema.

use std::fmt::Debug;

use headroom_core::BoxFuture;
use headroom_core::SampleFrame;
use tokio_util::sync::CancellationToken;

use crate::error::Result;

/// A configured, ready-to-run source of samples.
///
/// A source is built from plain serde configuration (its `*Config` type) and
/// yields one frame in the canonical samples schema per call. What it covers
/// (files, a time range, a sampling period) is part of its configuration.
///
/// On cancellation a source either returns what it has and says so in its
/// docs (the host sampler: sampled points are never thrown away) or returns
/// [`crate::Error::Cancelled`] (range pulls: a partial range is never
/// passed on as if it were whole).
pub trait Source: Send + Sync + Debug {
    /// A short description for logs and reports, e.g. `prometheus http://127.0.0.1:9090`.
    /// Never contains credentials.
    fn describe(&self) -> String;

    /// Collects samples.
    fn collect<'a>(&'a self, cancel: &'a CancellationToken) -> BoxFuture<'a, Result<SampleFrame>>;
}

/// Which source to run and how: plain data, chosen by its `type` field
/// (`files`, `prometheus`, `host`), checked when built.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SourceConfig {
    /// Recorded CSV or Parquet files, or directories of them.
    Files {
        /// Files or directories.
        paths: Vec<std::path::PathBuf>,
        /// How to read them.
        #[serde(default)]
        options: crate::files::FileOptions,
    },
    /// A Prometheus server.
    Prometheus(crate::prometheus::PrometheusConfig),
    /// This host.
    Host(crate::host::HostConfig),
}

impl SourceConfig {
    /// Checks the configuration and returns the ready source.
    pub fn build(self) -> Result<Box<dyn Source>> {
        Ok(match self {
            SourceConfig::Files { paths, options } => Box::new(crate::files::FilesSource::new(paths, options)?),
            SourceConfig::Prometheus(cfg) => Box::new(crate::prometheus::PrometheusSource::new(cfg)?),
            SourceConfig::Host(cfg) => Box::new(crate::host::HostSource::new(cfg)?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_pick_the_source_by_type_and_refuse_unknown_fields() {
        let cfg: SourceConfig =
            serde_json::from_str(r#"{"type": "files", "paths": ["data"], "options": {"time_unit": "s"}}"#).unwrap();
        let SourceConfig::Files { options, .. } = &cfg else { panic!("{cfg:?}") };
        assert_eq!(options.time_unit, Some(headroom_core::TimeUnit::S));
        assert!(cfg.build().unwrap().describe().contains("data"));

        let err =
            serde_json::from_str::<SourceConfig>(r#"{"type": "files", "paths": [], "options": {"time_uint": "s"}}"#)
                .unwrap_err()
                .to_string();
        assert!(err.contains("time_uint"), "{err}");
        let err = serde_json::from_str::<SourceConfig>(r#"{"type": "kafka"}"#).unwrap_err().to_string();
        assert!(err.contains("kafka"), "{err}");
    }
}
