//! The reference evaluation protocol (`../shared/benchmark/BASELINES.md`,
//! `score.py`): series on a 15-minute grid, forecast origins every 24 h from
//! `max(n/2, n − 15 days)` (moved earlier so each series has at least three),
//! horizon 48 h = 192 bins. Indices are bin positions on the series' grid.

use serde::{Deserialize, Serialize};

/// Where forecasts are made and how far ahead they reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Protocol {
    /// Grid step (ms).
    pub step_ms: i64,
    /// Bins forecast from each origin.
    pub horizon: usize,
    /// Bins between consecutive origins (one day).
    pub every: usize,
    /// Evaluation starts at most this many bins before the end (15 days).
    pub lookback: usize,
    /// Fewest origins per series; the first origin moves earlier to keep them.
    pub min_origins: usize,
}

impl Protocol {
    /// The reference protocol: 15-minute bins, 192-bin horizon, daily origins over the last 15 days.
    pub fn reference() -> Self {
        Self { step_ms: 15 * 60_000, horizon: 192, every: 96, lookback: 15 * 96, min_origins: 3 }
    }

    /// The first origin of a series of `n` bins (see the module docs). Never
    /// before two days (`2 · every`), so every origin has a day of history for
    /// seasonal naive and for the MASE scale.
    pub fn first_origin(&self, n: usize) -> usize {
        let mut o = (n / 2).max(n.saturating_sub(self.lookback));
        if self.count_from(n, o) < self.min_origins {
            o = (2 * self.every).max(n.saturating_sub(self.horizon + (self.min_origins - 1) * self.every));
        }
        o
    }

    fn count_from(&self, n: usize, o: usize) -> usize {
        if n < o + self.horizon { 0 } else { (n - self.horizon - o) / self.every + 1 }
    }

    /// Every origin of a series of `n` bins: `first_origin(n)`, then every
    /// `every` bins while a whole horizon of actuals follows.
    pub fn origins(&self, n: usize) -> Vec<usize> {
        let first = self.first_origin(n);
        (0..self.count_from(n, first)).map(|k| first + k * self.every).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_follow_the_reference_scorer() {
        let p = Protocol::reference();
        // ASD: 45 days = 4320 bins → from n − 15 days, 14 origins (score.py: range(2880, 4129, 96)).
        assert_eq!(p.first_origin(4320), 2880);
        assert_eq!(p.origins(4320).len(), 14);
        assert_eq!(*p.origins(4320).last().unwrap(), 2880 + 13 * 96);
        // NAB 14 days = 1344 bins → from n/2 = 672, 6 origins.
        assert_eq!(p.origins(1344), vec![672, 768, 864, 960, 1056, 1152]);
        // Alibaba 7.8 days = 748 bins: n/2 leaves 2 origins, so it moves earlier to keep 3.
        assert_eq!(p.first_origin(748), 748 - 192 - 2 * 96);
        assert_eq!(p.origins(748).len(), 3);
        // Too short for any.
        assert!(p.origins(200).is_empty());
    }
}
