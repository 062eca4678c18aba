//! Splitting a range query into requests Prometheus accepts.

/// One request's share of the evaluation times of a range query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk {
    /// First evaluation time, UTC epoch ms.
    pub start_ms: i64,
    /// Last evaluation time, UTC epoch ms (inclusive; on the step grid).
    pub end_ms: i64,
}

impl Chunk {
    /// Number of evaluation points per series.
    pub fn points(&self, step_ms: i64) -> usize {
        ((self.end_ms - self.start_ms) / step_ms + 1) as usize
    }
}

/// Splits the evaluation times `start, start + step, …` (up to `end`) into
/// consecutive chunks of at most `max_points` each. Chunk `k` covers
/// `start + k·n·step … start + (k·n + n − 1)·step` (`n = max_points`), the
/// last one ending at the last evaluation time, so the chunks together
/// evaluate exactly the points of the unchunked query. Empty when `end < start`.
pub fn plan_chunks(start_ms: i64, end_ms: i64, step_ms: i64, max_points: usize) -> Vec<Chunk> {
    assert!(step_ms > 0 && max_points > 0, "plan_chunks: step and max_points must be positive");
    if end_ms < start_ms {
        return Vec::new();
    }
    let total = (end_ms - start_ms) / step_ms + 1;
    let n = max_points as i64;
    (0..(total + n - 1) / n)
        .map(|k| Chunk {
            start_ms: start_ms + k * n * step_ms,
            end_ms: start_ms + (k * n + n - 1).min(total - 1) * step_ms,
        })
        .collect()
}

/// Epoch milliseconds as the decimal seconds Prometheus reads (`1704067200`, `1704067200.5`).
pub(super) fn fmt_seconds(ms: i64) -> String {
    let sign = if ms < 0 { "-" } else { "" };
    let abs = ms.unsigned_abs();
    match abs % 1000 {
        0 => format!("{sign}{}", abs / 1000),
        frac => {
            let frac = format!("{frac:03}");
            format!("{sign}{}.{}", abs / 1000, frac.trim_end_matches('0'))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{MIN, T0};
    use super::*;

    #[test]
    fn short_ranges_are_one_chunk() {
        let chunks = plan_chunks(T0, T0 + 59 * MIN, MIN, 10_000);
        assert_eq!(chunks, vec![Chunk { start_ms: T0, end_ms: T0 + 59 * MIN }]);
        assert_eq!(chunks[0].points(MIN), 60);
        // An end between two steps: the last point is the last step before it.
        assert_eq!(plan_chunks(T0, T0 + 90_000, MIN, 10), vec![Chunk { start_ms: T0, end_ms: T0 + MIN }]);
        assert_eq!(plan_chunks(T0, T0, MIN, 10), vec![Chunk { start_ms: T0, end_ms: T0 }]);
        assert!(plan_chunks(T0, T0 - 1, MIN, 10).is_empty());
    }

    #[test]
    fn exactly_max_points_is_one_chunk_and_one_more_splits() {
        let n = 11_000;
        let chunks = plan_chunks(T0, T0 + (n - 1) * MIN, MIN, n as usize);
        assert_eq!(chunks.len(), 1);
        assert_eq!(chunks[0].points(MIN), 11_000);
        let chunks = plan_chunks(T0, T0 + n * MIN, MIN, n as usize);
        assert_eq!(chunks.len(), 2);
        assert_eq!(chunks[1], Chunk { start_ms: T0 + n * MIN, end_ms: T0 + n * MIN });
    }

    #[test]
    fn chunks_evaluate_exactly_the_points_of_the_unchunked_query() {
        // 14 days at 60 s: 20,160 points, split at 10,000.
        let end = T0 + 14 * 86_400_000 - MIN;
        let chunks = plan_chunks(T0, end, MIN, 10_000);
        assert_eq!(
            chunks,
            vec![
                Chunk { start_ms: T0, end_ms: T0 + 9_999 * MIN },
                Chunk { start_ms: T0 + 10_000 * MIN, end_ms: T0 + 19_999 * MIN },
                Chunk { start_ms: T0 + 20_000 * MIN, end_ms: end },
            ]
        );
        assert_eq!(chunks[2].points(MIN), 160, "the last chunk is partial");
        let chunked: Vec<i64> =
            chunks.iter().flat_map(|c| (0..c.points(MIN) as i64).map(move |i| c.start_ms + i * MIN)).collect();
        let unchunked: Vec<i64> = (0..20_160).map(|i| T0 + i * MIN).collect();
        assert_eq!(chunked, unchunked);
        // A start off the minute grid stays off it in every chunk, and an end
        // off the grid ends the last chunk on the last evaluation time.
        let chunks = plan_chunks(T0 + 7, T0 + 7 + 25 * MIN + 30_000, MIN, 10);
        assert_eq!(chunks.iter().map(|c| c.start_ms - T0).collect::<Vec<_>>(), vec![7, 7 + 10 * MIN, 7 + 20 * MIN]);
        assert_eq!(chunks[2].end_ms, T0 + 7 + 25 * MIN);
        assert_eq!(chunks.iter().map(|c| c.points(MIN)).sum::<usize>(), 26);
    }

    #[test]
    fn seconds_are_written_as_prometheus_reads_them() {
        assert_eq!(fmt_seconds(T0), "1704067200");
        assert_eq!(fmt_seconds(T0 + 500), "1704067200.5");
        assert_eq!(fmt_seconds(T0 + 25), "1704067200.025");
        assert_eq!(fmt_seconds(60_000), "60");
        assert_eq!(fmt_seconds(-1_500), "-1.5");
    }
}
