//! The `Source` plug-in boundary: anything that yields samples in the canonical schema.

use std::fmt::Debug;

use futures::future::BoxFuture;
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
