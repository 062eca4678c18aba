//! One line per series: what `headroom inspect` and `headroom collect` print.

use headroom_core::{RepairReport, SampleFrame, Unit, format_duration, format_ts};
use serde::Serialize;

use crate::error::Result;
use crate::resample::{ResampleConfig, median_step, resample};

/// A summary of one series: its raw points and what resampling would do to it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeriesSummary {
    /// Entity name.
    pub entity: String,
    /// Metric name.
    pub metric: String,
    /// Unit implied by the metric name.
    pub unit: Unit,
    /// Raw points.
    pub points: usize,
    /// First raw timestamp (RFC 3339), if any.
    pub first: Option<String>,
    /// Last raw timestamp (RFC 3339), if any.
    pub last: Option<String>,
    /// Median spacing of raw points (`5m`), if there are two.
    pub step: Option<String>,
    /// Grid step used for the gap and repair counts.
    pub grid_step: String,
    /// Bins on the covering grid.
    pub bins: usize,
    /// Gaps left missing (longer than the interpolation limit).
    pub gaps: usize,
    /// Bins left missing.
    pub missing_bins: usize,
    /// Total repairs (see [`RepairReport::repairs`]).
    pub repairs: usize,
    /// The full report.
    pub report: RepairReport,
}

impl SeriesSummary {
    /// The gap column for a person: `none` or `2 gaps, 30 bins missing (longest …)`.
    pub fn gaps_text(&self, step_ms: i64) -> String {
        self.report.gap_summary(step_ms)
    }
}

/// Summarises every series of the frame on the grid `cfg` describes.
pub fn summarize(frame: &SampleFrame, cfg: &ResampleConfig) -> Result<Vec<SeriesSummary>> {
    let mut out = Vec::new();
    for s in frame.series()? {
        let r = resample(&s, None, cfg)?;
        let (first, last) = (s.ts.iter().min(), s.ts.iter().max());
        out.push(SeriesSummary {
            entity: s.key.entity.clone(),
            metric: s.key.metric.clone(),
            unit: s.key.unit(),
            points: s.len(),
            first: first.map(|&t| format_ts(t)),
            last: last.map(|&t| format_ts(t)),
            step: median_step(&s.ts).map(format_duration),
            grid_step: format_duration(cfg.step_ms),
            bins: r.report.bins,
            gaps: r.report.missing_gaps().count(),
            missing_bins: r.report.missing_bins,
            repairs: r.report.repairs(),
            report: r.report,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use headroom_core::{SeriesData, SeriesKey};

    use super::*;

    #[test]
    fn summaries_count_points_span_step_gaps_and_repairs() {
        let mut s = SeriesData::new(SeriesKey::new("host/a", "cpu").unwrap());
        for i in 0..12 {
            s.push(i * 300_000, 1.0);
        }
        s.push(100 * 300_000, f64::NAN);
        s.push(100 * 300_000, 2.0);
        let frame = SampleFrame::from_series([&s]).unwrap();
        let got = summarize(&frame, &ResampleConfig::default()).unwrap();
        assert_eq!(got.len(), 1);
        let g = &got[0];
        assert_eq!(g.points, 14);
        assert_eq!(g.first.as_deref(), Some("1970-01-01T00:00:00Z"));
        assert_eq!(g.last.as_deref(), Some("1970-01-01T08:20:00Z"));
        assert_eq!(g.step.as_deref(), Some("5m"));
        assert_eq!(g.bins, 101);
        assert_eq!((g.gaps, g.missing_bins, g.repairs), (1, 88, 1));
        assert_eq!(g.unit, Unit::Cores);
    }
}
