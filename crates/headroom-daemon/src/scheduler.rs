//! Running a job every period: never overlapping itself, skipping ticks it
//! missed, backing off after failures, and never holding up another job.
//!
//! Each job has its own task and its own `tokio::time::Interval` with
//! [`MissedTickBehavior::Skip`]: a run that takes longer than its period
//! delays only that job, and the ticks it overran are dropped, not queued.
//! A failing run is logged, counted, and followed by a growing pause
//! (doubling from one period, at most [`MAX_BACKOFF`] or one period if that
//! is longer). Times come from tokio's clock, so tests run them under a
//! paused clock.

use std::future::Future;
use std::time::Duration;

use tokio::time::{Instant, MissedTickBehavior, interval_at};
use tokio_util::sync::CancellationToken;

/// The longest pause after failures (unless the period itself is longer).
pub const MAX_BACKOFF: Duration = Duration::from_secs(15 * 60);

/// The pause before the next run after `failures` failures in a row.
pub fn backoff(period: Duration, failures: u32) -> Duration {
    if failures == 0 {
        return period;
    }
    let doubled = period.saturating_mul(1u32 << failures.saturating_sub(1).min(16));
    doubled.min(MAX_BACKOFF.max(period))
}

/// What a job run reports to its scheduler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ran {
    /// Done.
    Ok,
    /// Failed, in words (already logged and counted by the job).
    Failed(String),
}

/// Runs `job` every `period()` (read again after each run, so a reloaded
/// schedule applies from the next tick) until `stop` is cancelled; the
/// first run is at once. Returns when stopped, after the run in flight.
pub async fn every<P, J, F>(name: &str, period: P, stop: CancellationToken, mut job: J)
where
    P: Fn() -> Duration,
    J: FnMut() -> F,
    F: Future<Output = Ran>,
{
    let mut current = period();
    let mut ticks = interval_at(Instant::now(), current);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut failures: u32 = 0;
    loop {
        tokio::select! {
            biased;
            () = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        match job().await {
            Ran::Ok => failures = 0,
            Ran::Failed(why) => {
                failures = failures.saturating_add(1);
                let pause = backoff(current, failures);
                tracing::warn!(job = name, failures, "failed: {why}; next run in {pause:?}");
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(pause) => {}
                }
                // The next run is now: the pause replaced the wait for a tick.
                ticks = interval_at(Instant::now(), current);
                ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
            }
        }
        let next = period();
        if next != current {
            current = next;
            ticks = interval_at(Instant::now() + current, current);
            ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn the_pause_doubles_and_is_capped() {
        assert_eq!(backoff(MIN, 0), MIN);
        assert_eq!(backoff(MIN, 1), MIN);
        assert_eq!(backoff(MIN, 3), 4 * MIN);
        assert_eq!(backoff(MIN, 30), MAX_BACKOFF);
        let hour = 60 * MIN;
        assert_eq!(backoff(hour, 5), hour, "a long period is never lengthened");
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_job_never_overlaps_itself_and_skips_the_ticks_it_missed() {
        let stop = CancellationToken::new();
        let (starts, running, overlaps) =
            (Arc::new(std::sync::Mutex::new(Vec::new())), Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
        let (s, g, o) = (starts.clone(), running.clone(), overlaps.clone());
        let t0 = Instant::now();
        let task = tokio::spawn(every(
            "slow",
            || MIN,
            stop.clone(),
            move || {
                let (s, g, o) = (s.clone(), g.clone(), o.clone());
                async move {
                    if g.fetch_add(1, Ordering::SeqCst) > 0 {
                        o.fetch_add(1, Ordering::SeqCst);
                    }
                    let first = {
                        let mut s = s.lock().unwrap();
                        s.push(t0.elapsed().as_secs());
                        s.len() == 1
                    };
                    if first {
                        // The first run takes 2.5 periods.
                        tokio::time::sleep(MIN * 5 / 2).await;
                    }
                    g.fetch_sub(1, Ordering::SeqCst);
                    Ran::Ok
                }
            },
        ));
        tokio::time::sleep(MIN * 5 + Duration::from_secs(1)).await;
        stop.cancel();
        task.await.unwrap();
        assert_eq!(overlaps.load(Ordering::SeqCst), 0);
        // The ticks at 60 and 120 s fell inside the first run: one run when it
        // ends (150 s), none queued behind it, then back on the minute.
        assert_eq!(*starts.lock().unwrap(), [0, 150, 180, 240, 300]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_job_backs_off_and_leaves_the_others_on_time() {
        let stop = CancellationToken::new();
        let (good, bad) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
        let (g, b) = (good.clone(), bad.clone());
        let ok = tokio::spawn(every(
            "collect",
            || MIN,
            stop.clone(),
            move || {
                let g = g.clone();
                async move {
                    g.fetch_add(1, Ordering::SeqCst);
                    Ran::Ok
                }
            },
        ));
        let failing = tokio::spawn(every(
            "forecast",
            || MIN,
            stop.clone(),
            move || {
                let b = b.clone();
                async move {
                    b.fetch_add(1, Ordering::SeqCst);
                    Ran::Failed("the store is empty".into())
                }
            },
        ));
        tokio::time::sleep(MIN * 30 + Duration::from_secs(1)).await;
        stop.cancel();
        ok.await.unwrap();
        failing.await.unwrap();
        assert_eq!(good.load(Ordering::SeqCst), 31, "one run a minute, 0 through 30");
        // Failing at 0, then after pauses of 1, 2, 4, 8 and 15 minutes: 0, 1, 3, 7, 15, 30.
        assert_eq!(bad.load(Ordering::SeqCst), 6);
    }

    #[tokio::test(start_paused = true)]
    async fn a_reloaded_period_applies_from_the_next_run() {
        let stop = CancellationToken::new();
        let period = Arc::new(AtomicU32::new(60));
        let runs = Arc::new(AtomicU32::new(0));
        let (p, r) = (period.clone(), runs.clone());
        let task = tokio::spawn(every(
            "act",
            move || Duration::from_secs(p.load(Ordering::SeqCst).into()),
            stop.clone(),
            move || {
                let r = r.clone();
                async move {
                    r.fetch_add(1, Ordering::SeqCst);
                    Ran::Ok
                }
            },
        ));
        tokio::time::sleep(Duration::from_secs(150)).await; // runs at 0, 60, 120
        period.store(600, Ordering::SeqCst); // applies after the run at 180
        tokio::time::sleep(Duration::from_secs(600)).await; // to 750: runs at 180, then 780 is not reached
        stop.cancel();
        task.await.unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 4);
    }
}
