//! Builders shared by the unit tests of the Prometheus source.

use std::collections::BTreeMap;

use super::parse::PulledSeries;
use super::{PrometheusConfig, PrometheusSource, QueryConfig};
use crate::error::Error;

pub(super) const T0: i64 = 1_704_067_200_000; // 2024-01-01T00:00:00Z
pub(super) const MIN: i64 = 60_000;

pub(super) fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

pub(super) fn config() -> PrometheusConfig {
    let mut cfg = PrometheusConfig::new("http://127.0.0.1:9090", T0, T0 + 60 * MIN);
    cfg.queries.push(QueryConfig::new("cpu", "up", "host/{instance}"));
    cfg
}

pub(super) fn install_tls() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

pub(super) fn source(cfg: PrometheusConfig) -> PrometheusSource {
    install_tls();
    PrometheusSource::new(cfg).unwrap()
}

pub(super) fn config_error(cfg: &PrometheusConfig) -> String {
    match cfg.validate() {
        Err(Error::Config(msg)) => msg,
        other => panic!("expected a config error, got {other:?}"),
    }
}

pub(super) fn pulled(pairs: &[(&str, &str)], points: &[(i64, f64)]) -> PulledSeries {
    PulledSeries {
        labels: labels(pairs),
        ts: points.iter().map(|p| p.0).collect(),
        values: points.iter().map(|p| p.1).collect(),
    }
}
