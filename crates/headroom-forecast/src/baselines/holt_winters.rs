//! `holt-winters`: additive Holt-Winters (ETS(A,Ad,A)) with a daily season,
//! fitted by Nelder–Mead on the in-sample one-step squared error.
//!
//! Written here rather than taken from a crate: `augurs-ets` 0.10 does not
//! implement seasonal ETS (its seasonal path is `unimplemented!`), and its
//! MSTL + non-seasonal AutoETS route is a different model that took ~120 ms
//! per fit on 2,880 bins and pulled in nalgebra, rand and stlrs (~50 CPU-s to
//! build). This one is a few dozen lines and fits in milliseconds.

use super::naive::{Season, SeasonalNaive};
use super::{BaselineFit, IntervalConfig, Method};
use crate::error::Result;
use crate::forecaster::{Fitted, Forecaster, History};

/// `holt-winters`: additive level, damped additive trend and an additive
/// daily season (period = `bins_per_day`), updated in error-correction form
/// for each bin `t` with one-step error `e = y[t] − (level + φ·trend + season[t])`:
///
/// ```text
/// level  ← level + φ·trend + α·e
/// trend  ← φ·trend + β·e
/// season ← season + γ·e
/// ```
///
/// and forecast `level + (φ + … + φ^k)·trend + season` at step `k`. The
/// smoothing weights `0 < α < 1`, `0 < β < α`, `0 < γ < 1 − α` minimise the
/// in-sample one-step sum of squared errors (Nelder–Mead); the damping `φ` is
/// fixed ([`HoltWinters::damping`]) because one-step errors barely tell it.
/// The initial state comes from the first (up to) three days: their mean
/// daily profile for the season, the first day's mean for the level and the
/// day-to-day change of the means for the trend.
///
/// Needs two days of gap-free history and reads at most
/// [`HoltWinters::max_history_ms`]. With under two days (but at least one), or
/// when the fit fails (non-finite error), it falls back to `snaive-daily`:
/// logged as a warning and reported by [`BaselineFit::fallback`] (see
/// [`HoltWinters::fit_with_note`]).
#[derive(Debug, Clone, Copy)]
pub struct HoltWinters {
    /// Trend damping per bin, 0 < φ ≤ 1 (default 0.98: a slope's effect halves in
    /// about 8.5 h at 15-min bins and adds at most ~49 bins' worth of trend).
    /// 1 is undamped Holt-Winters.
    pub damping: f64,
    /// Fit on at most this much history (ms; default 30 days).
    pub max_history_ms: i64,
    /// Most Nelder–Mead evaluations of the in-sample error (default 300).
    pub max_evals: usize,
    /// How the p10/p90 band and the p95/p99 tails are estimated.
    pub intervals: IntervalConfig,
}

impl Default for HoltWinters {
    fn default() -> Self {
        Self { damping: 0.98, max_history_ms: 30 * 86_400_000, max_evals: 300, intervals: IntervalConfig::default() }
    }
}

impl HoltWinters {
    /// Fits like [`Forecaster::fit`], but returns the concrete fit so the
    /// caller can see whether (and why) it fell back to `snaive-daily`.
    pub fn fit_with_note(&self, history: &History<'_>) -> Result<BaselineFit> {
        let m = history.bins_per_day();
        let fallback = |why: String| -> Result<BaselineFit> {
            // Name holt-winters in TooShort/Missing: it is what the user asked for.
            history.window(m, "holt-winters")?;
            tracing::warn!(series = %history.key, model = "holt-winters", fallback = "snaive-daily", why = %why, "holt-winters fell back");
            let mut fit = SeasonalNaive { season: Season::Daily, intervals: self.intervals }
                .fit_named(history, "snaive-daily")?;
            fit.fallback = Some(format!("holt-winters fell back to snaive-daily: {why}"));
            Ok(fit)
        };
        if m < 2 || history.values.len() < 2 * m {
            return fallback(format!("history of {} bins is under two seasons ({} bins)", history.values.len(), 2 * m));
        }
        let max = ((self.max_history_ms / history.step_ms.max(1)) as usize).max(2 * m);
        let mut fit =
            BaselineFit::new(history, "holt-winters", Box::new(Hw::unfitted(m, self.damping)), max, self.intervals)?;
        match Hw::fit(&fit.y, m, self.damping, self.max_evals) {
            Ok(hw) => {
                tracing::debug!(series = %history.key, alpha = hw.alpha, beta = hw.beta, gamma = hw.gamma, "holt-winters fitted");
                fit.method = Box::new(hw);
                Ok(fit)
            }
            Err(why) => fallback(why),
        }
    }
}

impl Forecaster for HoltWinters {
    fn name(&self) -> &str {
        "holt-winters"
    }

    fn fit(&self, history: &History<'_>) -> Result<Box<dyn Fitted>> {
        Ok(Box::new(self.fit_with_note(history)?))
    }
}

/// A Holt-Winters model with fixed weights; the state is rebuilt from the
/// start of the series for each forecast (one pass for a whole replay).
#[derive(Debug, Clone, Copy)]
struct Hw {
    period: usize,
    alpha: f64,
    beta: f64,
    gamma: f64,
    phi: f64,
}

/// Level, trend and one season of the filter.
struct State {
    level: f64,
    trend: f64,
    season: Vec<f64>,
}

impl Hw {
    fn unfitted(period: usize, phi: f64) -> Self {
        Self { period, alpha: 0.5, beta: 0.01, gamma: 0.1, phi }
    }

    /// Weights from unconstrained `u`: α = σ(u₀), β = α·σ(u₁), γ = (1 − α)·σ(u₂).
    fn from_u(period: usize, phi: f64, u: &[f64; 3]) -> Self {
        let s = |x: f64| 1.0 / (1.0 + (-x).exp());
        let alpha = s(u[0]);
        Self { period, alpha, beta: alpha * s(u[1]), gamma: (1.0 - alpha) * s(u[2]), phi }
    }

    /// Minimises the one-step SSE over `y`; `Err` says why the fit is unusable.
    fn fit(y: &[f64], period: usize, phi: f64, max_evals: usize) -> Result<Self, String> {
        let sse = |u: &[f64; 3]| Self::from_u(period, phi, u).run(y, |_, _| {});
        // Start from the best of a few typical weight sets, then refine.
        let logit = |p: f64| (p / (1.0 - p)).ln();
        let starts = [[0.2, 0.05, 0.1], [0.5, 0.05, 0.2], [0.8, 0.02, 0.5], [0.1, 0.1, 0.05]];
        let start = starts
            .iter()
            .map(|[a, b, g]| [logit(*a), logit(*b), logit(*g)])
            .min_by(|a, b| sse(a).total_cmp(&sse(b)))
            .unwrap_or([0.0; 3]);
        let (u, best) = nelder_mead(sse, start, max_evals);
        if !best.is_finite() {
            return Err(format!("in-sample squared error is {best}"));
        }
        Ok(Self::from_u(period, phi, &u))
    }

    /// Initial state from the first up to three whole periods of `y` (at least two).
    fn init(&self, y: &[f64]) -> State {
        let m = self.period;
        let days = (y.len() / m).clamp(1, 3);
        let means: Vec<f64> = (0..days).map(|d| y[d * m..(d + 1) * m].iter().sum::<f64>() / m as f64).collect();
        let trend = if days > 1 { (means[days - 1] - means[0]) / ((days - 1) * m) as f64 } else { 0.0 };
        // Each bin's deviation from its day's mean, less the trend within the day.
        let mid = (m as f64 - 1.0) / 2.0;
        let mut season = vec![0.0; m];
        for (d, mean) in means.iter().enumerate() {
            for (i, s) in season.iter_mut().enumerate() {
                *s += (y[d * m + i] - mean - trend * (i as f64 - mid)) / days as f64;
            }
        }
        // The level one bin before the first: the first day's mean less half a day of trend.
        State { level: means[0] - trend * (m as f64 + 1.0) / 2.0, trend, season }
    }

    /// Runs the filter over `y`, calling `at(t, &state)` with the state after
    /// `y[..t]` for every `t` in `0..=y.len()`, and returns the one-step SSE.
    fn run(&self, y: &[f64], mut at: impl FnMut(usize, &State)) -> f64 {
        let mut s = self.init(y);
        let mut sse = 0.0;
        for (t, v) in y.iter().enumerate() {
            at(t, &s);
            let i = t % self.period;
            let trend = self.phi * s.trend;
            let e = v - (s.level + trend + s.season[i]);
            sse += e * e;
            s.level += trend + self.alpha * e;
            s.trend = trend + self.beta * e;
            s.season[i] += self.gamma * e;
        }
        at(y.len(), &s);
        sse
    }

    /// Forecast from `state` at origin `t` into `out`.
    fn extend(&self, state: &State, t: usize, out: &mut [f64]) {
        let mut damp = 0.0;
        let mut pow = 1.0;
        for (k, o) in out.iter_mut().enumerate() {
            pow *= self.phi;
            damp += pow;
            *o = state.level + damp * state.trend + state.season[(t + k) % self.period];
        }
    }
}

impl Method for Hw {
    fn min_history(&self) -> usize {
        2 * self.period
    }

    fn point(&self, y: &[f64], origin: usize, out: &mut [f64]) {
        self.replay(&y[..origin], &[origin], out.len(), &mut |_, f| out.copy_from_slice(f));
    }

    fn replay(&self, y: &[f64], origins: &[usize], horizon: usize, sink: &mut dyn FnMut(usize, &[f64])) {
        // The initial state is taken from the start of `y`; an origin before the
        // end of `y` thus sees the same initial state as the final forecast.
        let mut buf = vec![0.0; horizon];
        let mut next = origins.iter().peekable();
        self.run(y, |t, s| {
            while let Some(&&o) = next.peek() {
                if o > t {
                    break;
                }
                next.next();
                if o == t {
                    // Inside `y` only the steps that have actuals; at its end, the whole horizon.
                    let f = &mut buf[..if o < y.len() { horizon.min(y.len() - o) } else { horizon }];
                    self.extend(s, t, f);
                    sink(o, f);
                }
            }
        });
    }
}

/// Minimises `f` from `x0` with the Nelder–Mead simplex (reflection 1,
/// expansion 2, contraction ½, shrink ½) for at most `max_evals` evaluations;
/// returns the best point and its value.
fn nelder_mead(f: impl Fn(&[f64; 3]) -> f64, x0: [f64; 3], max_evals: usize) -> ([f64; 3], f64) {
    let val = |x: &[f64; 3]| {
        let v = f(x);
        if v.is_nan() { f64::INFINITY } else { v }
    };
    let mut simplex: Vec<([f64; 3], f64)> = (0..4)
        .map(|i| {
            let mut x = x0;
            if i > 0 {
                x[i - 1] += 1.0;
            }
            (x, val(&x))
        })
        .collect();
    let mut evals = 4;
    let towards = |a: &[f64; 3], b: &[f64; 3], t: f64| {
        [a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1]), a[2] + t * (b[2] - a[2])]
    };
    while evals < max_evals {
        simplex.sort_by(|a, b| a.1.total_cmp(&b.1));
        let (best, worst) = (simplex[0].1, simplex[3].1);
        if (worst - best).abs() <= 1e-10 * best.abs().max(1e-300) {
            break;
        }
        let mut c = [0.0; 3];
        for (x, _) in &simplex[..3] {
            for d in 0..3 {
                c[d] += x[d] / 3.0;
            }
        }
        let w = simplex[3].0;
        let r = towards(&c, &w, -1.0);
        let fr = val(&r);
        evals += 1;
        if fr < simplex[0].1 {
            let e = towards(&c, &w, -2.0);
            let fe = val(&e);
            evals += 1;
            simplex[3] = if fe < fr { (e, fe) } else { (r, fr) };
        } else if fr < simplex[2].1 {
            simplex[3] = (r, fr);
        } else {
            let k = if fr < worst { towards(&c, &r, 0.5) } else { towards(&c, &w, 0.5) };
            let fk = val(&k);
            evals += 1;
            if fk < fr.min(worst) {
                simplex[3] = (k, fk);
            } else {
                let b = simplex[0].0;
                for p in simplex.iter_mut().skip(1) {
                    p.0 = towards(&b, &p.0, 0.5);
                    p.1 = val(&p.0);
                }
                evals += 3;
            }
        }
    }
    simplex.sort_by(|a, b| a.1.total_cmp(&b.1));
    simplex[0]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::baselines::SeasonalNaive;
    use crate::baselines::test_util::*;

    /// Deterministic noise, uniform in [−1, 1).
    fn noise(i: usize) -> f64 {
        ((i as u64 + 1).wrapping_mul(6_364_136_223_846_793_005) >> 11) as f64 / (1u64 << 52) as f64 - 1.0
    }

    /// `days` of a daily sine (amplitude 10) plus a trend of 2 per day, with
    /// noise of ±1, at 15 minutes.
    fn sine_trend(days: usize) -> Vec<f64> {
        (0..days * 96)
            .map(|i| {
                let t = i as f64;
                100.0 + 2.0 * t / 96.0 + 10.0 * (t * std::f64::consts::TAU / 96.0).sin() + noise(i)
            })
            .collect()
    }

    fn mae(p: &[f64], a: &[f64]) -> f64 {
        p.iter().zip(a).map(|(p, a)| (p - a).abs()).sum::<f64>() / p.len() as f64
    }

    #[test]
    fn nelder_mead_finds_a_quadratic_minimum() {
        let (x, v) =
            nelder_mead(|x| (x[0] - 1.0).powi(2) + 2.0 * (x[1] + 2.0).powi(2) + (x[2] - 0.5).powi(2), [0.0; 3], 500);
        assert!(v < 1e-8, "{x:?} {v}");
        assert!((x[0] - 1.0).abs() < 1e-3 && (x[1] + 2.0).abs() < 1e-3 && (x[2] - 0.5).abs() < 1e-3);
    }

    #[test]
    fn a_noise_free_season_and_trend_is_forecast_exactly() {
        // Period 4, trend 1 per bin, no noise: whatever the weights, the
        // one-step error is 0 from the start, so the forecast continues the pattern.
        let key = key();
        let pat = [0.0, 5.0, -3.0, -2.0];
        let v: Vec<f64> = (0..40).map(|i| i as f64 + pat[i % 4]).collect();
        let hw = HoltWinters { damping: 1.0, ..HoltWinters::default() };
        let fit = hw.fit_with_note(&history(&key, 6 * 3_600_000, &v)).unwrap();
        assert_eq!(fit.fallback(), None);
        let q = fit.predict(6).unwrap();
        for k in 0..6 {
            let want = (40 + k) as f64 + pat[(40 + k) % 4];
            assert!((q.p50[k] - want).abs() < 1e-9, "step {k}: {} vs {want}", q.p50[k]);
        }
    }

    #[test]
    fn beats_seasonal_naive_on_a_daily_sine_with_trend() {
        let key = key();
        let all = sine_trend(30 + 2);
        let (hist, actual) = all.split_at(30 * 96);
        let h = history(&key, 900_000, hist);
        let hw = HoltWinters::default().fit(&h).unwrap().predict(192).unwrap();
        let sn = SeasonalNaive::new(Season::Daily).fit(&h).unwrap().predict(192).unwrap();
        let (e_hw, e_sn) = (mae(&hw.p50, actual), mae(&sn.p50, actual));
        // Seasonal naive lags the trend by one to two days (2–4 units); Holt-Winters follows it.
        assert!(e_hw < 0.6 * e_sn, "holt-winters MAE {e_hw:.3} vs snaive-daily {e_sn:.3}");
        // Its band covers most of the actuals.
        let inside = (0..192).filter(|&k| hw.p10[k] <= actual[k] && actual[k] <= hw.p90[k]).count();
        assert!(inside as f64 / 192.0 > 0.5, "coverage {inside}/192");
    }

    #[test]
    fn under_two_days_falls_back_to_snaive_daily() {
        let key = key();
        let v = sine_trend(2);
        let h = history(&key, 900_000, &v[..150]);
        let fit = HoltWinters::default().fit_with_note(&h).unwrap();
        assert!(fit.fallback().unwrap().contains("under two seasons"), "{:?}", fit.fallback());
        assert_eq!(fit.model(), "snaive-daily");
        let q = fit.predict(96).unwrap();
        assert_eq!(q.p50[..], v[150 - 96..150]);
        // Under one day there is nothing to fall back to: TooShort naming holt-winters.
        let e = HoltWinters::default().fit(&history(&key, 900_000, &v[..50])).unwrap_err();
        assert!(e.to_string().contains("holt-winters needs at least 96"), "{e}");
    }

    #[test]
    fn a_failed_fit_falls_back_to_snaive_daily() {
        // Irregular values so large that every squared error overflows to infinity.
        let key = key();
        let v: Vec<f64> = (0..3 * 96).map(|i| if i * 7919 % 13 < 6 { 1e155 } else { -1e155 }).collect();
        let fit = HoltWinters::default().fit_with_note(&history(&key, 900_000, &v)).unwrap();
        assert!(fit.fallback().unwrap().contains("squared error"), "{:?}", fit.fallback());
        assert_eq!(fit.predict(2).unwrap().p50, v[2 * 96..2 * 96 + 2]);
    }

    #[test]
    fn a_replay_sees_only_the_past() {
        // Forecasts replayed at an origin equal those made on the truncated series.
        let v = sine_trend(4);
        let hw = Hw { period: 96, alpha: 0.3, beta: 0.02, gamma: 0.2, phi: 0.98 };
        let mut direct = vec![0.0; 10];
        hw.point(&v, 300, &mut direct);
        let mut replayed = vec![];
        hw.replay(&v, &[300], 10, &mut |_, f| replayed = f.to_vec());
        assert_eq!(direct, replayed);
    }
}
