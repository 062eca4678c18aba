//! headroom's collectors.
//!
//! This crate owns the [`Source`] trait and its three sources — recorded
//! files ([`files`]), Prometheus ([`prometheus`]) and the local host
//! ([`host`]) — the limits file ([`limits`]), validation and resampling onto a
//! grid ([`resample`]), per-series summaries ([`inspect`]), the embedded
//! Parquet store ([`store`]) and reading recorded metrics from either
//! ([`recorded`]).
//!
//! It yields frames in the canonical schemas of `headroom-core` and nothing
//! else. It must not depend on forecasting, remediation or actuation.

pub mod error;
pub mod files;
pub mod host;
pub mod inspect;
pub mod limits;
pub mod prometheus;
pub mod recorded;
pub mod resample;
pub mod source;
pub mod store;

pub use error::{Error, Result};
pub use source::{Source, SourceConfig};
