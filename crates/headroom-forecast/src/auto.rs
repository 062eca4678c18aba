//! The `auto` model: for each series and origin, the forecast of whichever
//! other model did best on that series *before* the origin.
//!
//! Each candidate's past forecasts on a series are scored by their MAE (of
//! p50; the same scale for every candidate of a series, and never undefined as
//! MASE is on a flat history). At an origin, only forecasts whose whole horizon
//! ended at or before it count ([`past_error`]): nothing after the origin is
//! read. The candidate with the lowest mean error is chosen ([`choose`]); ties
//! go to the earlier candidate. The first origins of the protocol have no
//! finished forecast yet (with a 48 h horizon and daily origins, neither the
//! first nor the second does), so each candidate also forecasts once from
//! [`selection_origin`], `horizon` bins before the first origin, so that its
//! horizon ends exactly there.
//!
//! Invariant: pure functions of bin positions and errors; no forecasting, no
//! IO. [`crate::evaluate`] makes and scores the forecasts.

/// A past forecast of one candidate on one series, scored.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scored {
    /// The bin right after its horizon (its origin + horizon): the first origin allowed to use it.
    pub end: usize,
    /// Its error (MAE of p50).
    pub error: f64,
}

/// Where the extra selection forecast of a series is made: `horizon` bins
/// before its `first` origin, so that it ends exactly at that origin. `None`
/// when that leaves no history at all.
pub fn selection_origin(first: usize, horizon: usize) -> Option<usize> {
    first.checked_sub(horizon).filter(|&s| s >= 1)
}

/// The mean error of the forecasts in `track` that ended at or before
/// `origin`; `None` when none did. A NaN error counts as +∞.
pub fn past_error(track: &[Scored], origin: usize) -> Option<f64> {
    let done: Vec<f64> = track
        .iter()
        .filter(|s| s.end <= origin)
        .map(|s| if s.error.is_nan() { f64::INFINITY } else { s.error })
        .collect();
    (!done.is_empty()).then(|| done.iter().sum::<f64>() / done.len() as f64)
}

/// The candidate (index into `tracks`, one track per candidate) with the
/// lowest [`past_error`] at `origin`; ties go to the earlier candidate, a
/// candidate without a finished forecast never beats one with. `None` when no
/// candidate has a finished forecast.
pub fn choose(tracks: &[&[Scored]], origin: usize) -> Option<usize> {
    let mut best: Option<(usize, f64)> = None;
    for (i, track) in tracks.iter().enumerate() {
        let Some(e) = past_error(track, origin) else { continue };
        if best.is_none_or(|(_, b)| e < b) {
            best = Some((i, e));
        }
    }
    best.map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(end: usize, error: f64) -> Scored {
        Scored { end, error }
    }

    #[test]
    fn the_model_better_before_the_origin_is_chosen_even_if_another_is_better_after() {
        // A was better on forecasts ending at 100 and 196; B is far better on the
        // forecast ending at 292, after the origin 200 (and so must not be seen).
        let a = [s(100, 1.0), s(196, 1.0), s(292, 5.0)];
        let b = [s(100, 2.0), s(196, 2.0), s(292, 0.1)];
        assert_eq!(choose(&[&a, &b], 200), Some(0));
        // Once that forecast has ended, B's mean (0.7) beats A's (2.33).
        assert_eq!(choose(&[&a, &b], 292), Some(1));
    }

    #[test]
    fn a_forecast_ending_exactly_at_the_origin_counts() {
        let a = [s(192, 3.0)];
        let b = [s(192, 2.0)];
        assert_eq!(choose(&[&a, &b], 191), None);
        assert_eq!(choose(&[&a, &b], 192), Some(1));
    }

    #[test]
    fn ties_go_to_the_earlier_candidate_and_nan_loses() {
        let a = [s(10, 1.0)];
        let b = [s(10, 1.0)];
        assert_eq!(choose(&[&a, &b], 10), Some(0));
        assert_eq!(choose(&[&b, &a], 10), Some(0));
        let nan = [s(10, f64::NAN)];
        assert_eq!(choose(&[&nan, &a], 10), Some(1));
        // Only NaN: still a choice (the first), never a panic.
        assert_eq!(choose(&[&nan, &nan], 10), Some(0));
    }

    #[test]
    fn a_candidate_without_a_finished_forecast_is_not_chosen() {
        let a: [Scored; 0] = [];
        let b = [s(10, 9.0)];
        assert_eq!(choose(&[&a, &b], 20), Some(1));
        assert_eq!(past_error(&[s(10, 1.0), s(30, 3.0), s(20, 2.0)], 20), Some(1.5));
    }

    #[test]
    fn the_selection_forecast_ends_at_the_first_origin() {
        assert_eq!(selection_origin(2880, 192), Some(2688));
        assert_eq!(selection_origin(192, 192), None); // no history left
        assert_eq!(selection_origin(100, 192), None);
    }
}
