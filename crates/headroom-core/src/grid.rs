//! The time grid every series is resampled onto.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Default grid step: 5 minutes.
pub const DEFAULT_STEP_MS: i64 = 5 * 60_000;

/// A regular time grid: bins `[start + k·step, start + (k+1)·step)` for
/// `k = 0 .. len`, labelled by their start. `end` is exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grid {
    /// Bin width in milliseconds (> 0).
    pub step_ms: i64,
    /// Start of the first bin, UTC epoch milliseconds.
    pub start_ms: i64,
    /// End of the last bin (exclusive); `end - start` is a whole number of steps.
    pub end_ms: i64,
}

impl Grid {
    /// A grid from its three parts; `end - start` must be a non-negative multiple of `step`.
    pub fn new(step_ms: i64, start_ms: i64, end_ms: i64) -> Result<Self> {
        if step_ms <= 0 {
            return Err(Error::Grid(format!("step must be positive, got {step_ms} ms")));
        }
        if end_ms < start_ms {
            return Err(Error::Grid(format!("end {end_ms} is before start {start_ms}")));
        }
        if (end_ms - start_ms) % step_ms != 0 {
            return Err(Error::Grid(format!(
                "span {} ms is not a whole number of {step_ms} ms steps",
                end_ms - start_ms
            )));
        }
        Ok(Self { step_ms, start_ms, end_ms })
    }

    /// The smallest epoch-aligned grid (bin starts are multiples of `step`, as
    /// pandas' `resample` and Prometheus' aligned queries use) holding both instants.
    pub fn covering(step_ms: i64, first_ms: i64, last_ms: i64) -> Result<Self> {
        if step_ms <= 0 {
            return Err(Error::Grid(format!("step must be positive, got {step_ms} ms")));
        }
        let start = Self::align(step_ms, first_ms.min(last_ms));
        let end = Self::align(step_ms, first_ms.max(last_ms)) + step_ms;
        Self::new(step_ms, start, end)
    }

    /// The start of the epoch-aligned bin holding `ts`.
    pub fn align(step_ms: i64, ts: i64) -> i64 {
        ts.div_euclid(step_ms) * step_ms
    }

    /// Number of bins.
    pub fn len(&self) -> usize {
        ((self.end_ms - self.start_ms) / self.step_ms) as usize
    }

    /// Whether the grid has no bins.
    pub fn is_empty(&self) -> bool {
        self.end_ms == self.start_ms
    }

    /// The index of the bin holding `ts`, if it is on the grid.
    pub fn bin_of(&self, ts: i64) -> Option<usize> {
        (ts >= self.start_ms && ts < self.end_ms).then(|| ((ts - self.start_ms) / self.step_ms) as usize)
    }

    /// The start of bin `i`.
    pub fn ts(&self, i: usize) -> i64 {
        self.start_ms + i as i64 * self.step_ms
    }

    /// Start of every bin, in order.
    pub fn timestamps(&self) -> impl Iterator<Item = i64> + '_ {
        (0..self.len()).map(|i| self.ts(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covering_aligns_to_epoch_multiples() {
        let g = Grid::covering(300_000, 1_000_000, 1_600_000).unwrap();
        assert_eq!(g.start_ms, 900_000);
        assert_eq!(g.end_ms, 1_800_000);
        assert_eq!(g.len(), 3);
        assert_eq!(g.bin_of(1_199_999), Some(0));
        assert_eq!(g.bin_of(1_200_000), Some(1));
        assert_eq!(g.bin_of(1_800_000), None);
        assert_eq!(g.timestamps().collect::<Vec<_>>(), vec![900_000, 1_200_000, 1_500_000]);
        // Before the epoch too.
        assert_eq!(Grid::align(300_000, -1), -300_000);
    }

    #[test]
    fn impossible_grids_are_refused() {
        assert!(Grid::new(0, 0, 10).is_err());
        assert!(Grid::new(5, 10, 0).is_err());
        assert!(Grid::new(3, 0, 10).unwrap_err().to_string().contains("whole number"));
    }
}
