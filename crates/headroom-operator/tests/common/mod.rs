//! Shared by the operator's integration tests: recorded history behind the `Source` boundary.

use headroom_collect::Source;
use headroom_core::BoxFuture;
use headroom_core::{SampleFrame, SeriesData};
use tokio_util::sync::CancellationToken;

/// A source that yields the series it was given (what Prometheus would have answered).
#[derive(Debug)]
pub struct Recorded(pub Vec<SeriesData>);

impl Source for Recorded {
    fn describe(&self) -> String {
        "recorded history".into()
    }
    fn collect<'a>(&'a self, _: &'a CancellationToken) -> BoxFuture<'a, headroom_collect::Result<SampleFrame>> {
        Box::pin(async move { Ok(SampleFrame::from_series(self.0.iter())?) })
    }
}
