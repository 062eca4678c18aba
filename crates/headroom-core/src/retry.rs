//! One retry policy for requests to a server that may push back.
//!
//! A request answered "too many requests", "unavailable", or not answered at
//! all is tried again after a wait: the wait the server asked for when it
//! said one (`Retry-After`), else `base · 2^retry`; never more than `max`,
//! and no more than `attempts` tries in all. Every client headroom has (the
//! Prometheus source, the Kubernetes actuator) waits by this policy, each
//! with its own numbers. Pure: the caller sleeps.

use std::time::Duration;

/// How long to wait between the tries of one request, and how many to make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The wait before the first retry when the server says nothing; doubled
    /// for each further retry.
    pub base: Duration,
    /// No single wait is longer, the server's own included.
    pub max: Duration,
    /// Tries of one request in all, the first included.
    pub attempts: u32,
}

impl Backoff {
    /// The wait before retry number `retry` (0 for the first retry): `told`
    /// (what the server asked for) when given, else `base · 2^retry`; never
    /// over `max`.
    pub fn wait(&self, retry: u32, told: Option<Duration>) -> Duration {
        told.unwrap_or_else(|| self.base.saturating_mul(1u32 << retry.min(16))).min(self.max)
    }

    /// After `tried` tries have failed (1 after the first), the wait before
    /// the next one, or `None` when all `attempts` are spent.
    pub fn next(&self, tried: u32, told: Option<Duration>) -> Option<Duration> {
        (tried < self.attempts).then(|| self.wait(tried.saturating_sub(1), told))
    }
}

/// An HTTP `Retry-After` header in seconds (`"7"`, surrounding spaces
/// allowed). An HTTP date is not read (`None`): the backoff applies.
pub fn parse_retry_after(header: &str) -> Option<Duration> {
    header.trim().parse::<u64>().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backoff(base_ms: u64, max_s: u64) -> Backoff {
        Backoff { base: Duration::from_millis(base_ms), max: Duration::from_secs(max_s), attempts: 5 }
    }

    #[test]
    fn waits_double_and_are_capped() {
        let b = backoff(500, 60);
        let delays: Vec<u128> = (0..4).map(|r| b.wait(r, None).as_millis()).collect();
        assert_eq!(delays, vec![500, 1000, 2000, 4000]);
        assert_eq!(b.wait(30, None), Duration::from_secs(60));
        assert_eq!(b.wait(u32::MAX, None), Duration::from_secs(60));
        let b = backoff(250, 30);
        assert_eq!(b.wait(0, None), Duration::from_millis(250));
        assert_eq!(b.wait(1, None), Duration::from_millis(500));
        assert_eq!(b.wait(2, None), Duration::from_millis(1000));
        assert_eq!(b.wait(30, None), Duration::from_secs(30));
    }

    #[test]
    fn what_the_server_asked_for_wins_but_is_capped_too() {
        let b = backoff(500, 60);
        assert_eq!(b.wait(0, Some(Duration::from_secs(3))), Duration::from_secs(3));
        assert_eq!(b.wait(5, Some(Duration::from_secs(3))), Duration::from_secs(3));
        assert_eq!(b.wait(0, Some(Duration::ZERO)), Duration::ZERO);
        assert_eq!(b.wait(0, Some(Duration::from_secs(3600))), Duration::from_secs(60));
    }

    #[test]
    fn next_stops_after_the_last_attempt() {
        let b = backoff(100, 60);
        let waits: Vec<Option<u128>> = (1..=6).map(|t| b.next(t, None).map(|d| d.as_millis())).collect();
        assert_eq!(waits, vec![Some(100), Some(200), Some(400), Some(800), None, None]);
        assert_eq!(b.next(1, Some(Duration::from_secs(2))), Some(Duration::from_secs(2)));
        let once = Backoff { attempts: 1, ..b };
        assert_eq!(once.next(1, None), None);
    }

    #[test]
    fn retry_after_is_read_in_seconds_only() {
        assert_eq!(parse_retry_after(" 7 "), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("0"), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(parse_retry_after("-1"), None);
        assert_eq!(parse_retry_after("1.5"), None);
    }
}
