//! Crash patterns read from the recent raw samples of one series: restart
//! loops, out-of-memory kills, memory leaks and flapping.

use headroom_core::{Grid, SeriesData};

use super::{DAY, FlappingConfig, HOUR, LeakConfig, OomConfig, RestartLoopConfig, check_positive, input, recent};
use crate::error::Result;
use crate::risk::{Flapping, MemoryLeak, OomKill, RestartLoop};

/// Samples an OOM drop may span, from the last one near the limit to the first near zero.
pub const DROP_SPAN: usize = 3;

/// How much a cumulative counter rose from `before` to `after`. A drop is a
/// counter reset (the process or pod was recreated and counts from zero), so
/// the rise is the new value, as Prometheus' `increase` reads it.
fn counter_rise(before: f64, after: f64) -> f64 {
    if after >= before { after - before } else { after }
}

/// A restart loop: the cumulative `restarts` counter rose at least
/// `cfg.restarts` times within the trailing `cfg.window` ending at `now_ms`.
///
/// A rise of `n` between two samples counts as `n` restarts, dated at the
/// later sample; a counter reset (a lower value) counts as a restart from
/// zero, never as negative restarts. `first_at_ms` and `last_at_ms` are the
/// first and last samples that showed a restart.
pub fn restart_loop(restarts: &SeriesData, cfg: &RestartLoopConfig, now_ms: i64) -> Result<Option<RestartLoop>> {
    let window_ms = cfg.window.ms();
    let pts = recent(restarts, window_ms, now_ms)?;
    let mut count = 0.0;
    let mut seen: Option<(i64, i64)> = None;
    for i in 1..pts.len() {
        let rise = counter_rise(pts[i - 1].1, pts[i].1);
        if rise > 0.0 {
            count += rise;
            let t = pts[i].0;
            seen = Some(seen.map_or((t, t), |(first, _)| (first, t)));
        }
    }
    let count = count.round().min(f64::from(u32::MAX)) as u32;
    Ok(match seen {
        Some((first_at_ms, last_at_ms)) if count >= cfg.restarts => {
            Some(RestartLoop { key: restarts.key.clone(), restarts: count, window_ms, first_at_ms, last_at_ms })
        }
        _ => None,
    })
}

/// The shape of an out-of-memory kill: the most recent sample within the
/// trailing `cfg.window` where memory had been at or above
/// `cfg.near_limit × limit` and falls, over at most [`DROP_SPAN`] samples that
/// never rise, to at or below `cfg.drop_to × limit` (a sampler can catch the
/// memory half freed: 63 → 27 → 0.2 MiB was seen under a 64 MiB cgroup limit).
///
/// `restarted` says whether the `restarts` counter changed (rose, or was reset)
/// between the last sample near the limit and two sample intervals after the
/// drop (the counter is often scraped a little after the kill); `false` without a counter.
/// Errors: a limit that is not a positive number, or unsorted samples.
pub fn oom_kill(
    memory: &SeriesData,
    limit: f64,
    restarts: Option<&SeriesData>,
    cfg: &OomConfig,
    now_ms: i64,
) -> Result<Option<OomKill>> {
    check_positive(&memory.key, "memory limit", limit)?;
    let pts = recent(memory, cfg.window.ms(), now_ms)?;
    let (near, low) = (cfg.near_limit * limit, cfg.drop_to * limit);
    // The newest first sample at or below `low` whose last `DROP_SPAN` samples fall
    // (never rise) from one at or above `near`: the kernel frees a killed
    // process's memory over milliseconds, and a fast sampler can catch it half way.
    let first_low = |i: usize| pts[i].1 <= low && pts[i - 1].1 > low;
    let Some((j, i)) = (1..pts.len()).rev().filter(|&i| first_low(i)).find_map(|i| {
        let mut j = i - 1;
        loop {
            if pts[j].1 >= near {
                return Some((j, i));
            }
            if i - j >= DROP_SPAN || j == 0 || pts[j - 1].1 < pts[j].1 {
                return None;
            }
            j -= 1;
        }
    }) else {
        return Ok(None);
    };
    let ((before_ms, peak), (drop_at_ms, _)) = (pts[j], pts[i]);
    let restarted = match restarts {
        None => false,
        Some(counter) => {
            // The last counter sample at or before `before_ms`, then the later ones up to
            // two sample intervals after the drop (the counter may be scraped a little late).
            let counter = recent(counter, now_ms - before_ms, now_ms)?;
            let interval = (drop_at_ms - before_ms) / (i - j) as i64;
            let until = drop_at_ms + 2 * interval;
            match counter.split_first() {
                Some((&(t, base), after)) if t <= before_ms => {
                    after.iter().take_while(|(t, _)| *t <= until).any(|(_, v)| *v != base)
                }
                _ => false,
            }
        }
    };
    Ok(Some(OomKill { key: memory.key.clone(), peak, limit, drop_at_ms, restarted }))
}

/// A memory leak: the least-squares line through the samples of the trailing
/// `cfg.window` rises (`slope > 0`), explains at least `cfg.min_r2` of their
/// variance, rises by at least `cfg.min_rise × limit` over the samples' span,
/// and reaches `limit` no later than `cfg.horizon` after `now_ms`.
///
/// The samples must span at least half the window (a trend over a few minutes
/// says nothing about hours). The exhaustion time is where the line meets the
/// limit; if the line is already above it, that time is in the past and
/// `time_left_ms` is 0.
///
/// **Window.** `window_start_ms` is the start of the fitted window rounded down
/// to the UTC day. It stays the same for every cycle whose window starts on
/// the same day, so one leak is one risk per day: the policy acts on it once,
/// and may act again the next day if the leak is still there.
/// Errors: a limit that is not a positive number, or unsorted samples.
pub fn memory_leak(memory: &SeriesData, limit: f64, cfg: &LeakConfig, now_ms: i64) -> Result<Option<MemoryLeak>> {
    check_positive(&memory.key, "memory limit", limit)?;
    let window_ms = cfg.window.ms();
    let pts = recent(memory, window_ms, now_ms)?;
    let pts = &pts[usize::from(pts.first().is_some_and(|p| p.0 <= now_ms - window_ms))..];
    let span_ms = match (pts.first(), pts.last()) {
        (Some(first), Some(last)) => last.0 - first.0,
        _ => return Ok(None),
    };
    if pts.len() < 3 || span_ms * 2 < window_ms {
        return Ok(None);
    }
    let Some(fit) = least_squares(pts, now_ms) else {
        return Ok(None);
    };
    let rise = fit.slope * span_ms as f64 / HOUR as f64;
    if !(fit.slope > 0.0 && fit.r2 >= cfg.min_r2 && rise >= cfg.min_rise * limit) {
        return Ok(None);
    }
    // Hours from now until the line meets the limit (negative: it already has).
    let hours = (limit - fit.at_now) / fit.slope;
    if hours * HOUR as f64 > cfg.horizon.ms() as f64 {
        return Ok(None);
    }
    let exhaustion_at_ms = now_ms + (hours * HOUR as f64).round() as i64;
    Ok(Some(MemoryLeak {
        key: memory.key.clone(),
        slope_per_hour: fit.slope,
        r2: fit.r2,
        limit,
        exhaustion_at_ms,
        time_left_ms: (exhaustion_at_ms - now_ms).max(0),
        window_start_ms: Grid::align(DAY, now_ms - window_ms),
    }))
}

/// A least-squares line `value = at_now + slope · hours since now`.
#[derive(Debug)]
struct Line {
    slope: f64,
    at_now: f64,
    r2: f64,
}

/// The least-squares line through `pts` (time in hours relative to `now_ms`,
/// which keeps the numbers small); `None` when every point has the same time.
/// `r2` is 0 for a flat series (the line explains nothing).
fn least_squares(pts: &[(i64, f64)], now_ms: i64) -> Option<Line> {
    let n = pts.len() as f64;
    let x = |t: i64| (t - now_ms) as f64 / HOUR as f64;
    let mean_x = pts.iter().map(|p| x(p.0)).sum::<f64>() / n;
    let mean_y = pts.iter().map(|p| p.1).sum::<f64>() / n;
    let (mut sxx, mut sxy, mut syy) = (0.0, 0.0, 0.0);
    for &(t, y) in pts {
        let (dx, dy) = (x(t) - mean_x, y - mean_y);
        sxx += dx * dx;
        sxy += dx * dy;
        syy += dy * dy;
    }
    if sxx == 0.0 {
        return None;
    }
    let slope = sxy / sxx;
    let r2 = if syy > 0.0 { (sxy * sxy / (sxx * syy)).min(1.0) } else { 0.0 };
    Some(Line { slope, at_now: mean_y - slope * mean_x, r2 })
}

/// Flapping: `series` crossed `level` (from below to at-or-above, or back) at
/// least `cfg.transitions` times within the trailing `cfg.window`.
///
/// A value equal to `level` counts as above it. `first_at_ms` is the first
/// sample in the window that showed a crossing. For an `up`-style 0/1 series
/// use a level of 0.5. Errors: a non-finite level, or unsorted samples.
pub fn flapping(series: &SeriesData, level: f64, cfg: &FlappingConfig, now_ms: i64) -> Result<Option<Flapping>> {
    if !level.is_finite() {
        return Err(input(&series.key, format!("flapping level {level} is not a number")));
    }
    let window_ms = cfg.window.ms();
    let pts = recent(series, window_ms, now_ms)?;
    let crossings: Vec<i64> =
        (1..pts.len()).filter(|&i| (pts[i - 1].1 >= level) != (pts[i].1 >= level)).map(|i| pts[i].0).collect();
    let transitions = u32::try_from(crossings.len()).unwrap_or(u32::MAX);
    Ok(match crossings.first() {
        Some(&first_at_ms) if transitions >= cfg.transitions => {
            Some(Flapping { key: series.key.clone(), transitions, window_ms, first_at_ms })
        }
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use headroom_core::SeriesKey;

    use super::*;
    use headroom_core::Span;

    const T0: i64 = 1_704_067_200_000; // 2024-01-01T00:00:00Z
    const MIN: i64 = 60_000;
    const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

    fn series(metric: &str, points: &[(i64, f64)]) -> SeriesData {
        let points: Vec<(i64, f64)> = points.iter().map(|(t, v)| (T0 + t * MIN, *v)).collect();
        SeriesData::from_points(SeriesKey::new("k8s/shop/pod/cart-1", metric).unwrap(), &points)
    }

    #[test]
    fn restarts_within_the_window_are_counted_and_counter_resets_are_restarts_from_zero() {
        let cfg = RestartLoopConfig { restarts: 3, window: Span::from_ms(30 * MIN) };
        // Minute:            0       10      20      25       30      35      40
        let s = series("restarts", &[(0, 4.0), (10, 5.0), (20, 5.0), (25, 6.0), (30, 1.0), (35, f64::NAN), (40, 2.0)]);
        // At minute 40 the window is (10, 40]: 5→6 at 25, the reset 6→1 at 30 (one
        // restart from zero), 1→2 at 40. The rise at minute 10 is outside.
        let r = restart_loop(&s, &cfg, T0 + 40 * MIN).unwrap().unwrap();
        assert_eq!(r.restarts, 3);
        assert_eq!((r.first_at_ms, r.last_at_ms), (T0 + 25 * MIN, T0 + 40 * MIN));
        assert_eq!(r.window_ms, 30 * MIN);
        // At minute 20 one restart was seen (10); the later ones are in the future.
        assert_eq!(restart_loop(&s, &cfg, T0 + 20 * MIN).unwrap(), None);
        // At minute 55 the window is (25, 55]: the restart at 25 has left it, two remain.
        assert_eq!(restart_loop(&s, &cfg, T0 + 55 * MIN).unwrap(), None);
        // A steady counter is no loop, however high it is.
        let steady = series("restarts", &[(0, 40.0), (10, 40.0), (20, 40.0)]);
        assert_eq!(restart_loop(&steady, &cfg, T0 + 20 * MIN).unwrap(), None);
        // A jump of three between two samples is three restarts.
        let jump = series("restarts", &[(0, 2.0), (5, 5.0)]);
        assert_eq!(restart_loop(&jump, &cfg, T0 + 5 * MIN).unwrap().unwrap().restarts, 3);
    }

    fn memory(gib: &[f64]) -> SeriesData {
        let points: Vec<(i64, f64)> = gib.iter().enumerate().map(|(i, g)| (i as i64, g * GIB)).collect();
        series("memory", &points)
    }

    #[test]
    fn an_oom_kill_is_a_drop_from_near_the_limit_to_near_zero() {
        let cfg = OomConfig::default(); // near 0.9, drop to 0.2, window 1h
        let limit = 2.0 * GIB;
        //                minute: 0    1    2    3     4    5    6
        let m = memory(&[1.0, 1.5, 1.9, 0.1, 0.3, 0.6, 0.9]);
        let oom = oom_kill(&m, limit, None, &cfg, T0 + 6 * MIN).unwrap().unwrap();
        assert_eq!(oom.peak, 1.9 * GIB);
        assert_eq!(oom.drop_at_ms, T0 + 3 * MIN);
        assert_eq!(oom.limit, limit);
        assert!(!oom.restarted);

        // With a restart counter that rose at minute 4 (one interval after the drop).
        let counter = series("restarts", &[(0, 7.0), (2, 7.0), (4, 8.0), (6, 8.0)]);
        assert!(oom_kill(&m, limit, Some(&counter), &cfg, T0 + 6 * MIN).unwrap().unwrap().restarted);
        // A counter that did not move: memory was freed without a restart.
        let still = series("restarts", &[(0, 7.0), (6, 7.0)]);
        assert!(!oom_kill(&m, limit, Some(&still), &cfg, T0 + 6 * MIN).unwrap().unwrap().restarted);

        // Falling only to half the limit, or from 1.7 GiB (0.85 of the limit), is not the shape.
        assert_eq!(oom_kill(&memory(&[1.9, 1.0]), limit, None, &cfg, T0 + MIN).unwrap(), None);
        assert_eq!(oom_kill(&memory(&[1.7, 0.1]), limit, None, &cfg, T0 + MIN).unwrap(), None);
        // Two kills: the most recent one is reported; an hour later neither is.
        let twice = memory(&[1.9, 0.1, 1.95, 0.2]);
        assert_eq!(oom_kill(&twice, limit, None, &cfg, T0 + 3 * MIN).unwrap().unwrap().drop_at_ms, T0 + 3 * MIN);
        assert_eq!(oom_kill(&twice, limit, None, &cfg, T0 + 63 * MIN).unwrap(), None);
        assert!(oom_kill(&m, 0.0, None, &cfg, T0).unwrap_err().to_string().contains("memory limit 0"));
    }

    #[test]
    fn a_steady_rise_is_a_leak_with_its_exhaustion_time() {
        let cfg = LeakConfig { window: Span::from_ms(6 * HOUR), ..LeakConfig::default() }; // r² ≥ 0.8, rise ≥ 5 %, 48 h
        // 100 MiB per hour from 1 GiB at T0, one sample every 30 min for 6 h; limit 4 GiB.
        let mib = 1024.0 * 1024.0;
        let pts: Vec<(i64, f64)> = (0..=12).map(|i| (i * 30, GIB + 50.0 * mib * i as f64)).collect();
        let s = series("memory", &pts);
        let now = T0 + 6 * HOUR;
        let leak = memory_leak(&s, 4.0 * GIB, &cfg, now).unwrap().unwrap();
        assert!((leak.slope_per_hour - 100.0 * mib).abs() < 1e-3, "{}", leak.slope_per_hour);
        assert!((leak.r2 - 1.0).abs() < 1e-12);
        // At now the line is at 1 GiB + 600 MiB = 1624 MiB; 4096 − 1624 = 2472 MiB to go at 100 MiB/h: 24.72 h.
        assert_eq!(leak.time_left_ms, 24 * HOUR + 43 * MIN + 12_000);
        assert_eq!(leak.exhaustion_at_ms, now + leak.time_left_ms);
        // The window (00:00 → 06:00) starts on 2024-01-01.
        assert_eq!(leak.window_start_ms, T0);

        // The same leak with a 2 GiB limit is already past it at 11:00: the line is at
        // 1024 + 1100 = 2124 MiB, 76 MiB over, so it met the limit 0.76 h (45m36s) ago.
        let later: Vec<(i64, f64)> = (0..=22).map(|i| (i * 30, GIB + 50.0 * mib * i as f64)).collect();
        let eleven = T0 + 11 * HOUR;
        let leak = memory_leak(&series("memory", &later), 2.0 * GIB, &cfg, eleven).unwrap().unwrap();
        assert_eq!(leak.time_left_ms, 0);
        assert!(
            (leak.exhaustion_at_ms - (eleven - 45 * MIN - 36_000)).abs() <= 1,
            "{}",
            leak.exhaustion_at_ms - eleven
        );

        // With a 40 GiB limit exhaustion is 393 h away, beyond the horizon (and the rise, 550 MiB, is under 5 %).
        assert_eq!(memory_leak(&s, 40.0 * GIB, &cfg, now).unwrap(), None);
        // Only the last hour of samples: too short a span to trust a trend.
        let short: Vec<(i64, f64)> = pts[10..].to_vec();
        assert_eq!(memory_leak(&series("memory", &short), 4.0 * GIB, &cfg, now).unwrap(), None);
    }

    #[test]
    fn a_noisy_or_falling_series_is_no_leak() {
        let cfg = LeakConfig { window: Span::from_ms(6 * HOUR), ..LeakConfig::default() };
        let limit = 2.0 * GIB;
        // A saw-tooth (memory freed by garbage collection every hour): no trend to speak of.
        let saw: Vec<(i64, f64)> = (0..=36).map(|i| (i * 10, GIB * (1.0 + 0.5 * (i % 6) as f64 / 5.0))).collect();
        assert_eq!(memory_leak(&series("memory", &saw), limit, &cfg, T0 + 6 * HOUR).unwrap(), None);
        let falling: Vec<(i64, f64)> = (0..=36).map(|i| (i * 10, GIB * (1.8 - 0.02 * i as f64))).collect();
        assert_eq!(memory_leak(&series("memory", &falling), limit, &cfg, T0 + 6 * HOUR).unwrap(), None);
    }

    #[test]
    fn an_ordinary_daily_rise_is_a_leak_to_a_six_hour_window_but_not_to_the_default_day() {
        // 1 GiB ± 0.5 GiB over a day, one sample every 10 min for 30 h; limit 2 GiB.
        let pts: Vec<(i64, f64)> =
            (0..=180).map(|i| (i * 10, GIB * (1.0 + 0.5 * (std::f64::consts::TAU * i as f64 / 144.0).sin()))).collect();
        let s = series("memory", &pts);
        let now = T0 + 30 * HOUR;
        // From 24 h to 30 h memory climbs a quarter of the sine: r² 0.95, and the line reaches 2 GiB in 5 h.
        let six_hours = LeakConfig { window: Span::from_ms(6 * HOUR), ..LeakConfig::default() };
        let leak = memory_leak(&s, 2.0 * GIB, &six_hours, now).unwrap().unwrap();
        assert!((leak.r2 - 0.955).abs() < 0.001, "{}", leak.r2);
        assert_eq!(leak.time_left_ms / HOUR, 5);
        // Over the whole day the trend is flat.
        assert_eq!(memory_leak(&s, 2.0 * GIB, &LeakConfig::default(), now).unwrap(), None);
    }

    #[test]
    fn crossings_of_the_level_within_the_window_are_counted() {
        let cfg = FlappingConfig { transitions: 3, window: Span::from_ms(30 * MIN) };
        // An `up` series: 1 = up. Minute: 0 up, 10 down, 20 up, 25 up, 30 down, 40 up.
        let up = series("up", &[(0, 1.0), (10, 0.0), (20, 1.0), (25, 1.0), (30, 0.0), (40, 1.0)]);
        // At minute 40 the window is (10, 40]: crossings at 20, 30 and 40.
        let f = flapping(&up, 0.5, &cfg, T0 + 40 * MIN).unwrap().unwrap();
        assert_eq!((f.transitions, f.first_at_ms, f.window_ms), (3, T0 + 20 * MIN, 30 * MIN));
        // At minute 30 the window (0, 30] holds 10, 20 and 30.
        let f = flapping(&up, 0.5, &cfg, T0 + 30 * MIN).unwrap().unwrap();
        assert_eq!((f.transitions, f.first_at_ms), (3, T0 + 10 * MIN));
        // At minute 25 only two so far.
        assert_eq!(flapping(&up, 0.5, &cfg, T0 + 25 * MIN).unwrap(), None);
        // A value equal to the level is above it: 0.5 → 1 is no crossing.
        let flat = series("up", &[(0, 0.5), (10, 1.0), (20, 0.5), (30, 1.0)]);
        assert_eq!(flapping(&flat, 0.5, &cfg, T0 + 30 * MIN).unwrap(), None);
        assert!(flapping(&up, f64::NAN, &cfg, T0).is_err());
    }
}
