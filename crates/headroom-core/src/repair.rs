//! The record of every change made to a series on its way onto the grid.
//!
//! Nothing is invented silently: each dropped, merged, reordered or
//! interpolated point is counted here, and each gap left missing is listed.

use serde::{Deserialize, Serialize};

use crate::time::{format_duration, format_ts};

/// A run of grid bins that had no sample.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gap {
    /// Start of the first empty bin (UTC ms).
    pub start_ms: i64,
    /// End of the last empty bin (UTC ms, exclusive).
    pub end_ms: i64,
    /// Number of empty bins.
    pub bins: usize,
    /// Whether the gap was short enough to be filled by linear interpolation.
    /// Gaps that were not filled stay missing (NaN / null) in the resampled series.
    pub interpolated: bool,
}

/// Counts of everything validation and resampling did to one series.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RepairReport {
    /// Raw points read.
    pub points_in: usize,
    /// NaN or ±Inf values dropped.
    pub non_finite_dropped: usize,
    /// Negative values of a non-negative unit (CPU, memory, percent, counter) rejected.
    pub negative_rejected: usize,
    /// The first rejected negative value: (timestamp ms, value).
    pub first_negative: Option<(i64, f64)>,
    /// Points sharing a timestamp with an earlier point, merged into it by mean.
    pub duplicates_merged: usize,
    /// Points that arrived earlier in the input than a point with a later
    /// timestamp (the series was sorted).
    pub out_of_order: usize,
    /// Counter resets (a counter value below its predecessor), handled as a restart from zero.
    pub counter_resets: usize,
    /// Points outside the requested grid, left out of it (not an error: the
    /// caller asked for a narrower window).
    pub outside_grid: usize,
    /// Bins on the grid.
    pub bins: usize,
    /// Empty bins filled by linear interpolation.
    pub interpolated_bins: usize,
    /// Empty bins left missing (gaps longer than the interpolation limit, or at the edges).
    pub missing_bins: usize,
    /// Every run of empty bins, filled or not.
    pub gaps: Vec<Gap>,
}

impl RepairReport {
    /// Gaps left missing.
    pub fn missing_gaps(&self) -> impl Iterator<Item = &Gap> {
        self.gaps.iter().filter(|g| !g.interpolated)
    }

    /// Whether anything at all was changed, dropped or left missing.
    pub fn is_clean(&self) -> bool {
        self.repairs() == 0 && self.missing_bins == 0
    }

    /// Total number of repairs (dropped, rejected, merged, reordered, reset, interpolated).
    pub fn repairs(&self) -> usize {
        self.non_finite_dropped
            + self.negative_rejected
            + self.duplicates_merged
            + self.out_of_order
            + self.counter_resets
            + self.interpolated_bins
    }

    /// One line for a person: `"2 NaN/Inf dropped, 4 bins interpolated"`, or `"none"`.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        let mut add = |n: usize, what: &str| {
            if n > 0 {
                parts.push(format!("{n} {what}"));
            }
        };
        add(self.non_finite_dropped, "NaN/Inf dropped");
        add(self.negative_rejected, "negative rejected");
        add(self.duplicates_merged, "duplicates merged");
        add(self.out_of_order, "out-of-order sorted");
        add(self.counter_resets, "counter resets");
        add(self.interpolated_bins, "bins interpolated");
        if let Some((ts, v)) = self.first_negative {
            parts.push(format!("first negative {v} at {}", format_ts(ts)));
        }
        if parts.is_empty() { "none".into() } else { parts.join(", ") }
    }

    /// One line about missing data: `"2 gaps, 30 bins missing (longest 2h at 2024-01-03T00:00:00Z)"`.
    pub fn gap_summary(&self, step_ms: i64) -> String {
        let missing: Vec<&Gap> = self.missing_gaps().collect();
        match missing.iter().max_by_key(|g| g.bins) {
            None => "none".into(),
            Some(longest) => format!(
                "{} gap{}, {} bins missing (longest {} at {})",
                missing.len(),
                if missing.len() == 1 { "" } else { "s" },
                self.missing_bins,
                format_duration(longest.bins as i64 * step_ms),
                format_ts(longest.start_ms)
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_say_what_was_done() {
        let mut r = RepairReport::default();
        assert!(r.is_clean());
        assert_eq!(r.summary(), "none");
        assert_eq!(r.gap_summary(300_000), "none");
        r.non_finite_dropped = 2;
        r.interpolated_bins = 1;
        r.missing_bins = 24;
        r.gaps.push(Gap { start_ms: 0, end_ms: 300_000, bins: 1, interpolated: true });
        r.gaps.push(Gap { start_ms: 86_400_000, end_ms: 93_600_000, bins: 24, interpolated: false });
        assert!(!r.is_clean());
        assert_eq!(r.repairs(), 3);
        assert_eq!(r.summary(), "2 NaN/Inf dropped, 1 bins interpolated");
        assert_eq!(r.gap_summary(300_000), "1 gap, 24 bins missing (longest 2h at 1970-01-02T00:00:00Z)");
    }
}
