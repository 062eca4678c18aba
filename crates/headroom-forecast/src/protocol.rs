//! The reference evaluation protocol (`../shared/benchmark/BASELINES.md`,
//! `score.py`): series on a 15-minute grid, forecast origins every 24 h from
//! `max(n/2, n − 15 days)` (moved earlier so each series has at least three),
//! horizon 48 h = 192 bins. Indices are bin positions on the series' grid.
//!
//! [`Protocol::new`] builds the same protocol for another step, horizon and
//! origin spacing: the rule for the first origin keeps its units of time
//! (15 days, at least three origins, never before two days), converted to bins
//! of the new step.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One day in milliseconds.
const DAY_MS: i64 = 86_400_000;

/// Where forecasts are made and how far ahead they reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Protocol {
    /// Grid step (ms).
    pub step_ms: i64,
    /// Bins forecast from each origin.
    pub horizon: usize,
    /// Bins between consecutive origins (one day in the reference).
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

    /// The reference rule on another grid: `step_ms` bins (which must divide a
    /// day), `horizon` bins forecast, an origin every `every` bins. Evaluation
    /// starts at most 15 days before the end, with at least three origins, and
    /// never before two days (see [`Protocol::first_origin`]). With the
    /// reference's numbers this is [`Protocol::reference`].
    pub fn new(step_ms: i64, horizon: usize, every: usize) -> Result<Self> {
        if step_ms <= 0 || DAY_MS % step_ms != 0 {
            return Err(Error::Invalid(format!(
                "a grid step of {step_ms} ms does not divide a day; daily seasonality and MASE need whole bins per day"
            )));
        }
        if horizon == 0 || every == 0 {
            return Err(Error::Invalid(format!(
                "the horizon ({horizon} bins) and the spacing of origins ({every} bins) must be at least one bin"
            )));
        }
        let day = (DAY_MS / step_ms) as usize;
        Ok(Self { step_ms, horizon, every, lookback: 15 * day, min_origins: 3 })
    }

    /// Bins per day on this protocol's grid (96 in the reference).
    pub fn bins_per_day(&self) -> usize {
        (DAY_MS / self.step_ms.max(1)) as usize
    }

    /// The first origin of a series of `n` bins (see the module docs). Never
    /// before two days of bins, so every origin has more than a day of history
    /// for seasonal naive and for the MASE scale (in the reference two days are
    /// `2 · every`, as in `score.py`).
    pub fn first_origin(&self, n: usize) -> usize {
        let mut o = (n / 2).max(n.saturating_sub(self.lookback));
        if self.count_from(n, o) < self.min_origins {
            o = (2 * self.bins_per_day()).max(n.saturating_sub(self.horizon + (self.min_origins - 1) * self.every));
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

    #[test]
    fn the_reference_numbers_build_the_reference() {
        assert_eq!(Protocol::new(900_000, 192, 96).unwrap(), Protocol::reference());
    }

    #[test]
    fn other_numbers_keep_the_rule_in_days() {
        // 5-minute bins, 24 h horizon, origins every 12 h: 288 bins a day.
        let p = Protocol::new(300_000, 288, 144).unwrap();
        assert_eq!((p.lookback, p.bins_per_day()), (15 * 288, 288));
        // 45 days: from n − 15 days, while a whole horizon follows.
        let n = 45 * 288;
        let o = p.origins(n);
        assert_eq!(o[0], n - 15 * 288);
        assert_eq!(*o.last().unwrap(), n - 288);
        assert_eq!(o.len(), 29);
        // Short: three origins, but never before two days of history.
        assert_eq!(p.first_origin(900), 576);
        assert_eq!(p.origins(900), vec![576]);
        // Hourly origins on the reference grid: spacing and horizon are independent.
        let h = Protocol::new(900_000, 96, 4).unwrap();
        assert_eq!(h.first_origin(1344), 672);
        assert_eq!(h.origins(1344).len(), (1344 - 96 - 672) / 4 + 1);
    }

    #[test]
    fn a_step_that_does_not_divide_a_day_is_refused() {
        let e = Protocol::new(7 * 60_000, 10, 10).unwrap_err().to_string();
        assert!(e.contains("420000 ms does not divide a day"), "{e}");
        assert!(Protocol::new(900_000, 0, 96).is_err());
    }
}
