//! Behaviour of the LSTM a user would notice: the losses, scaling and calendar
//! against hand-computed values; forecasts of a series parked at one level; a tiny model learns a daily cycle; model
//! files round-trip bit for bit and refuse mismatches; training is deterministic.

use candle_core::{Device, Tensor};
use headroom_core::SeriesKey;
use headroom_forecast::{Error as FE, Forecaster, History};
use headroom_lstm::card::{CARD, FORMAT_VERSION};
use headroom_lstm::features::{Inputs, Scaling, calendar, pinball, seasonal, seasonal_max, seasonal_median};
use headroom_lstm::model::{Output, peak_head_loss, peak_loss, pinball_loss, training_loss};
use headroom_lstm::{Base, Error, Expectation, LstmConfig, LstmForecaster, LstmModel, TrainOptions, train};

const DAY: usize = 96;
const STEP: i64 = 15 * 60_000;

fn close(a: f64, b: f64) {
    assert!((a - b).abs() < 1e-9, "{a} != {b}");
}

#[test]
fn pinball_matches_hand_values() {
    close(pinball(0.9, 2.0, 1.0), 0.9); // under-forecast: q · (y − p)
    close(pinball(0.1, 2.0, 1.0), 0.1);
    close(pinball(0.9, 0.0, 1.0), 0.1); // over-forecast: (1 − q) · (p − y)
    close(pinball(0.5, 3.0, 1.0), 1.0);
    // Tensor loss: one row, horizon 2, quantiles (0.1, 0.5, 0.9), target (1, 3).
    // p10 = (0, 0): 0.1·1 + 0.1·3 = 0.4; p50 = (1, 1): 0 + 0.5·2 = 1.0; p90 = (2, 2): 0.1·1 + 0.9·1 = 1.0.
    // Mean over 2 steps and 3 quantiles: (0.4 + 1.0 + 1.0) / 6 = 0.4.
    let d = Device::Cpu;
    let pred = Tensor::from_vec(vec![0f32, 0., 1., 1., 2., 2.], (1, 3, 2), &d).unwrap();
    let target = Tensor::from_vec(vec![1f32, 3.], (1, 2), &d).unwrap();
    let l = pinball_loss(&pred, &target, [0.1, 0.5, 0.9]).unwrap().to_scalar::<f32>().unwrap();
    assert!((l as f64 - 0.4).abs() < 1e-6, "{l}");
    // Peak loss: the p90 path (2, 2) peaks at 2, the target at 3: under by 1,
    // 0.5 · 1 at the median of the peak, 0.9 · 1 at its p90.
    let peak = |q| peak_loss(&pred, &target, q, true).unwrap().to_scalar::<f32>().unwrap() as f64;
    assert!((peak(0.5) - 0.5).abs() < 1e-6 && (peak(0.9) - 0.9).abs() < 1e-6, "{} {}", peak(0.5), peak(0.9));
    // Two rows, the second over-forecasting its peak by 2 (p90 path (5, 4) against (1, 3)): (0.5 + 0.5·2) / 2.
    let pred2 = Tensor::from_vec(vec![0f32, 0., 1., 1., 2., 2., 0., 0., 1., 1., 5., 4.], (2, 3, 2), &d).unwrap();
    let target2 = Tensor::from_vec(vec![1f32, 3., 1., 3.], (2, 2), &d).unwrap();
    let l2 = peak_loss(&pred2, &target2, 0.5, true).unwrap().to_scalar::<f32>().unwrap();
    assert!((l2 as f64 - 0.75).abs() < 1e-6, "{l2}");
    // Training loss = pinball + weight × peak: 0.4 + 0.25 · 0.5.
    let cfg = LstmConfig { peak_weight: 0.25, peak_quantile: 0.5, ..LstmConfig::default() };
    let out = Output { paths: pred.clone(), peak: None };
    let t = training_loss(&out, &target, &cfg).unwrap().to_scalar::<f32>().unwrap();
    assert!((t as f64 - 0.525).abs() < 1e-6, "{t}");
    // With a peak head, its output is judged instead of the p90 path: a peak
    // of 4 against the target's 3 is over by 1, (1 − 0.5) · 1 at the median.
    let head = Tensor::from_vec(vec![4f32], 1, &d).unwrap();
    close(peak_head_loss(&head, &target, 0.5).unwrap().to_scalar::<f32>().unwrap() as f64, 0.5);
    let out = Output { paths: pred, peak: Some(head) };
    let t = training_loss(&out, &target, &cfg).unwrap().to_scalar::<f32>().unwrap();
    assert!((t as f64 - 0.525).abs() < 1e-6, "0.4 + 0.25 · 0.5: {t}");
}

#[test]
fn the_peak_loss_shapes_the_upper_spread_not_the_median_unless_asked() {
    // One row, horizon 2: median (1, 1) and upper spread (1, 1), so the p90
    // path (2, 2) peaks under the target's 3. The peak loss pulls that peak
    // up; with `moves_median` false it may only widen the spread.
    let d = Device::Cpu;
    let mid = candle_core::Var::from_vec(vec![1f32, 1.], (1, 1, 2), &d).unwrap();
    let spread = candle_core::Var::from_vec(vec![1f32, 1.], (1, 1, 2), &d).unwrap();
    let target = Tensor::from_vec(vec![1f32, 3.], (1, 2), &d).unwrap();
    let grads = |moves_median: bool| {
        let lo = mid.as_tensor().clone();
        let hi = (mid.as_tensor() + spread.as_tensor()).unwrap();
        let pred = Tensor::cat(&[&lo, mid.as_tensor(), &hi], 1).unwrap();
        let loss = peak_loss(&pred, &target, 0.5, moves_median).unwrap();
        // Same value either way: 0.5 · (3 − 2).
        close(loss.to_scalar::<f32>().unwrap() as f64, 0.5);
        let g = loss.backward().unwrap();
        let sum = |v: &candle_core::Var| {
            g.get(v).map_or(0.0, |t| t.abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap())
        };
        (sum(&mid), sum(&spread))
    };
    let (m, s) = grads(true);
    assert!(m > 0.0 && s > 0.0, "both move: {m} {s}");
    let (m, s) = grads(false);
    assert!(m == 0.0 && s > 0.0, "only the spread moves: {m} {s}");
}

#[test]
fn scaling_is_level_of_last_day_over_seasonal_mae() {
    // Two "days" of two bins: level = mean(3, 5) = 4; seasonal MAE = (|3−1| + |5−2|)/2 = 2.5.
    let s = Scaling::of(&[1.0, 2.0, 3.0, 5.0], 2);
    close(s.level, 4.0);
    close(s.scale, 2.5);
    close(s.apply(6.5, 30.0), 1.0);
    close(s.apply(1e9, 30.0), 30.0);
    close(s.invert(1.0), 6.5);
    // A perfectly periodic window has seasonal MAE 0: floored at 5 % of its std (0.5 → 0.025).
    let s = Scaling::of(&[0.0, 1.0, 0.0, 1.0], 2);
    close(s.scale, 0.025);
    // Seasonal channels of 1,2,3,5 (day 2) over 3 steps: last day 3,5,3; no week → last day; mean of 2 days 2,3.5,2.
    let (d, w, m, has_week) = seasonal(&[1.0, 2.0, 3.0, 5.0], 2, 3);
    assert_eq!((d.clone(), w, m, has_week), (vec![3.0, 5.0, 3.0], d, vec![2.0, 3.5, 2.0], false));
    // The seasonal maximum: a spike at the second bin of one day of three
    // (9) stays whole where the mean would smooth it to (2 + 9 + 2) / 3.
    assert_eq!(seasonal_max(&[1.0, 2.0, 1.0, 9.0, 1.0, 2.0], 2, 3), vec![1.0, 9.0, 1.0]);
    // The seasonal median leaves that spike out (2, where the mean is 13/3);
    // over an even number of days the middle two are averaged.
    assert_eq!(seasonal_median(&[1.0, 2.0, 1.0, 9.0, 1.0, 2.0], 2, 3), vec![1.0, 2.0, 1.0]);
    assert_eq!(seasonal_median(&[1.0, 2.0, 3.0, 5.0], 2, 3), vec![2.0, 3.5, 2.0]);
}

#[test]
fn the_default_median_is_a_residual_over_the_seasonal_median_so_one_spiky_day_does_not_lift_it() {
    let cfg = LstmConfig::default();
    assert_eq!(cfg.base, Base::SeasonalMedian);
    // A week of 1.0 with one 9.0 at 20:00 on one day: the base at 20:00
    // tomorrow is 1.0; the mean of the seven days is lifted by the spike
    // (to 15/7 before scaled values are clipped).
    let mut week = vec![1.0; 7 * DAY];
    week[3 * DAY + 80] = 9.0;
    let mut rows = Inputs::default();
    rows.push(&cfg, &week, 7 * DAY as i64 * STEP, None);
    let base: Vec<f64> = rows.base.iter().map(|b| rows.scaling[0].invert(f64::from(*b))).collect();
    assert_eq!(base.len(), cfg.horizon);
    assert!((base[80] - 1.0).abs() < 1e-5, "{}", base[80]);
    let mean = LstmConfig { base: Base::SeasonalMean, ..LstmConfig::default() };
    let mut rows = Inputs::default();
    rows.push(&mean, &week, 7 * DAY as i64 * STEP, None);
    let at_80 = rows.scaling[0].invert(f64::from(rows.base[80]));
    assert!(at_80 > 1.5, "the mean base is lifted by the spike: {at_80}");
}

#[test]
fn the_seasonal_maximum_is_one_more_channel_of_the_horizon_and_named_in_the_feature_set() {
    let plain = LstmConfig::default();
    assert!(!plain.seasonal_max && !plain.feature_set().contains("max_days"), "{}", plain.feature_set());
    let with = LstmConfig { seasonal_max: true, ..LstmConfig::default() };
    assert!(with.feature_set().contains("max_days"), "{}", with.feature_set());
    assert_eq!(with.context_features(), plain.context_features() + plain.horizon);
    // A model trained with the channel forecasts with it.
    let series: Vec<f64> =
        (0..10 * DAY).map(|t| if t % DAY == 80 && (t / DAY).is_multiple_of(2) { 9.0 } else { 1.0 }).collect();
    let key = SeriesKey::new("host/a", "cpu").unwrap();
    let hist = History { key: &key, start_ms: 0, step_ms: STEP, values: &series };
    let cfg = LstmConfig { seasonal_channels: true, seasonal_max: true, max_steps: 3, ..tiny() };
    let (model, _) = train(&[hist], &cfg, &opts()).unwrap();
    assert!(model.card.feature_set.contains("max_days"), "{}", model.card.feature_set);
    let f = model.forecast(&[hist], DAY).unwrap().remove(0);
    assert_eq!(f.q.p50.len(), DAY);
}

#[test]
fn calendar_features_follow_utc_day_and_week() {
    let s37 = (std::f64::consts::TAU * 3.0 / 7.0).sin();
    let c37 = (std::f64::consts::TAU * 3.0 / 7.0).cos();
    let c = calendar(0); // Thursday 1970-01-01 00:00: time of day 0, day of week 3/7.
    for (a, b) in c.iter().zip([0.0, 1.0, s37, c37]) {
        close(*a, b);
    }
    // Monday 1970-01-05 06:00: time of day 1/4, day of week (0 + 1/4)/7.
    let c = calendar(4 * 86_400_000 + 6 * 3_600_000);
    let w = std::f64::consts::TAU * 0.25 / 7.0;
    for (a, b) in c.iter().zip([1.0, 0.0, w.sin(), w.cos()]) {
        assert!((a - b).abs() < 1e-12, "{a} != {b}");
    }
}

/// Eight synthetic series: a daily cycle of different amplitude, phase and
/// level, plus deterministic noise; 12 days each.
fn synthetic() -> (Vec<SeriesKey>, Vec<Vec<f64>>) {
    let mut keys = Vec::new();
    let mut values = Vec::new();
    let mut state = 7u64;
    for s in 0..8 {
        keys.push(SeriesKey::new(format!("synthetic/s{s}"), "cpu").unwrap());
        let (amp, phase, level) = (1.0 + s as f64, s as f64 * 0.7, 10.0 + 3.0 * s as f64);
        values.push(
            (0..12 * DAY)
                .map(|t| {
                    state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    let noise = ((state >> 33) as f64 / (1u64 << 31) as f64 - 0.5) * 0.2 * amp;
                    level + amp * (std::f64::consts::TAU * t as f64 / DAY as f64 + phase).sin() + noise
                })
                .collect(),
        );
    }
    (keys, values)
}

fn histories<'a>(keys: &'a [SeriesKey], values: &'a [Vec<f64>], upto: usize) -> Vec<History<'a>> {
    keys.iter().zip(values).map(|(k, v)| History { key: k, start_ms: 0, step_ms: STEP, values: &v[..upto] }).collect()
}

/// A tiny model: no seasonal shortcut, so the LSTM itself must learn the cycle.
fn tiny() -> LstmConfig {
    LstmConfig {
        window: 2 * DAY,
        min_history: 2 * DAY,
        patch: 16,
        hidden: 16,
        head_hidden: 32,
        horizon: DAY,
        seasonal_channels: false,
        base: Base::Zero,
        batch: 32,
        max_steps: 120,
        eval_every: 40,
        stride: 4,
        val_days: 1,
        pad_prob: 0.0,
        shift_prob: 0.0,
        lr: 1e-2,
        ..LstmConfig::default()
    }
}

fn opts() -> TrainOptions {
    TrainOptions {
        cut: None,
        command: "cargo test --workspace --test lstm".into(),
        progress: false,
        interrupt: Default::default(),
    }
}

fn trained() -> (LstmModel, Vec<SeriesKey>, Vec<Vec<f64>>) {
    let (keys, values) = synthetic();
    // Train on the first 10 days; days 11–12 stay unseen.
    let (model, report) = train(&histories(&keys, &values, 10 * DAY), &tiny(), &opts()).unwrap();
    assert!(report.train_samples > 0 && report.val_samples > 0);
    (model, keys, values)
}

#[test]
fn tiny_lstm_beats_last_value_on_a_daily_cycle() {
    let (model, keys, values) = trained();
    let fc = LstmForecaster::new(model);
    let origin = 11 * DAY;
    let out = fc.forecast_batch(&histories(&keys, &values, origin), DAY).unwrap();
    let (mut lstm, mut last) = (0.0, 0.0);
    for (f, v) in out.iter().zip(&values) {
        assert_eq!(f.model, "lstm");
        assert_eq!(f.origin_ms, origin as i64 * STEP);
        for k in 0..DAY {
            lstm += (f.q.p50[k] - v[origin + k]).abs();
            last += (v[origin - 1] - v[origin + k]).abs();
            assert!(f.q.p10[k] <= f.q.p50[k] && f.q.p50[k] <= f.q.p90[k]);
        }
    }
    assert!(lstm < 0.5 * last, "lstm MAE sum {lstm:.2} vs last value {last:.2}");
}

#[test]
fn model_files_round_trip_bit_for_bit_and_refuse_mismatches() {
    let (model, keys, values) = trained();
    let dir = tempfile::tempdir().unwrap();
    model.save(dir.path()).unwrap();
    let expect = Expectation {
        step_ms: STEP,
        horizon: DAY,
        feature_set: Some(tiny().feature_set()),
        format_version: FORMAT_VERSION,
        quantiles: [0.1, 0.5, 0.9],
    };
    let loaded = LstmModel::load(dir.path(), &expect).unwrap();
    let h = histories(&keys, &values, 11 * DAY);
    let a = model.forecast(&h, DAY).unwrap();
    let b = loaded.forecast(&h, DAY).unwrap();
    for (x, y) in a.iter().zip(&b) {
        for (p, q) in [(&x.q.p10, &y.q.p10), (&x.q.p50, &y.q.p50), (&x.q.p90, &y.q.p90)] {
            assert!(p.iter().zip(q).all(|(u, v)| u.to_bits() == v.to_bits()));
        }
    }
    let card: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join(CARD)).unwrap()).unwrap();
    assert_eq!(card["training"]["command"], "cargo test --workspace --test lstm");
    assert!(card["training"]["data_fingerprint"].as_str().unwrap().starts_with("fnv1a64:"));

    let refuse = |e: Expectation, field: &str, card: &str, expected: &str| {
        let err = LstmModel::load(dir.path(), &e).unwrap_err();
        assert!(matches!(err, Error::Mismatch { .. }), "{err}");
        let msg = err.to_string();
        assert!(msg.contains(&format!("`{field}`")) && msg.contains(card) && msg.contains(expected), "{msg}");
    };
    refuse(Expectation { horizon: 192, ..expect.clone() }, "horizon", "96", "192");
    refuse(Expectation { step_ms: 300_000, ..expect.clone() }, "step_ms", "900000", "300000");
    refuse(
        Expectation { feature_set: Some("values/patch4".into()), ..expect.clone() },
        "feature_set",
        "patch16",
        "patch4",
    );
    refuse(
        Expectation { quantiles: [0.2, 0.5, 0.8], ..expect.clone() },
        "quantiles",
        "[0.1, 0.5, 0.9]",
        "[0.2, 0.5, 0.8]",
    );
    refuse(Expectation { format_version: 99, ..expect.clone() }, "format_version", &FORMAT_VERSION.to_string(), "99");

    // A card whose config disagrees with its own summary: both values named, and different.
    let text = std::fs::read_to_string(dir.path().join(CARD)).unwrap();
    let mut card: serde_json::Value = serde_json::from_str(&text).unwrap();
    card["config"]["horizon"] = 48.into();
    std::fs::write(dir.path().join(CARD), card.to_string()).unwrap();
    let msg = LstmModel::load(dir.path(), &expect).unwrap_err().to_string();
    assert!(msg.contains("`config.horizon` is 48 but 96 (its `horizon`) is expected"), "{msg}");
}

#[test]
fn same_seed_same_weights() {
    let (keys, values) = synthetic();
    let h = histories(&keys, &values, 10 * DAY);
    let cfg = LstmConfig { max_steps: 40, ..tiny() };
    let weights = |cfg: &LstmConfig| -> Vec<(String, Vec<f32>)> {
        let (m, _) = train(&h, cfg, &opts()).unwrap();
        m.vars().into_iter().map(|(n, v)| (n, v.as_tensor().flatten_all().unwrap().to_vec1().unwrap())).collect()
    };
    let a = weights(&cfg);
    assert_eq!(a, weights(&cfg));
    assert_ne!(a, weights(&LstmConfig { seed: 1, ..cfg }));
}

#[test]
fn short_or_gappy_history_is_a_named_error() {
    let model = LstmModel::init(LstmConfig::default()).unwrap();
    let key = SeriesKey::new("node/a", "cpu").unwrap();
    let short = vec![1.0; 100];
    let err = model.forecast(&[History { key: &key, start_ms: 0, step_ms: STEP, values: &short }], 192).unwrap_err();
    assert!(matches!(err, FE::TooShort { need: 192, have: 100, .. }), "{err}");
    let mut gappy = vec![1.0; 700];
    gappy[650] = f64::NAN;
    let err = model.forecast(&[History { key: &key, start_ms: 0, step_ms: STEP, values: &gappy }], 192).unwrap_err();
    assert!(matches!(err, FE::Missing { .. }), "{err}");
    assert!(err.to_string().contains("node/a:cpu") && err.to_string().contains("1970-01-07T18:30:00"), "{err}");
    // Shorter than the window but above the minimum: padded, and forecast.
    let ok = vec![1.0; 300];
    let f = model.forecast(&[History { key: &key, start_ms: 0, step_ms: STEP, values: &ok }], 192).unwrap();
    assert_eq!(f[0].q.len(), 192);
}

#[test]
fn shipped_default_model_loads_and_forecasts() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/default");
    let model = LstmModel::load(&dir, &Expectation::reference()).unwrap();
    assert_eq!(model.config(), &model.card.config);
    assert!(model.card.training.as_ref().is_some_and(|t| t.report.seconds < 600.0), "trained in under 10 minutes");
    let (keys, values) = synthetic();
    let f = LstmForecaster::new(model).forecast_batch(&histories(&keys, &values, 8 * DAY), 192).unwrap();
    for fc in &f {
        assert_eq!(fc.q.len(), 192);
        assert!((0..192).all(|k| fc.q.p10[k] <= fc.q.p50[k] && fc.q.p50[k] <= fc.q.p90[k]));
    }
}

#[test]
fn a_gauge_parked_at_one_level_is_forecast_at_that_level_not_beside_it() {
    // 8 days at 0.5 with a one-bin spike to 0.7 each afternoon: the median and
    // the p90 of most bins are exactly 0.5, and no forecast value may fall
    // between the two levels the series takes.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/default");
    let model = LstmModel::load(&dir, &Expectation::reference()).unwrap();
    assert!(model.config().snap_to_window, "the shipped model rounds to the window's values");
    let key = SeriesKey::new("host/a", "memory_ratio").unwrap();
    let values: Vec<f64> = (0..8 * DAY).map(|t| if t % DAY == 60 { 0.7 } else { 0.5 }).collect();
    let hist = History { key: &key, start_ms: 0, step_ms: STEP, values: &values };
    let f = LstmForecaster::new(model).forecast_batch(&[hist], 192).unwrap().remove(0);
    for (k, v) in f.q.p10.iter().chain(&f.q.p50).chain(&f.q.p90).enumerate() {
        assert!(*v == 0.5 || *v == 0.7 || !(0.5..=0.7).contains(v), "value {k} is {v}, between the two levels");
    }
    assert!(f.q.p50.iter().filter(|v| **v == 0.5).count() > 150, "median parked at 0.5: {:?}", f.q.p50);
}

#[test]
fn online_calibration_widens_the_bands_of_a_series_that_recently_missed_them_and_keeps_the_median() {
    let (mut model, keys, mut values) = trained();
    // Series 0's last day (the horizon the hindcast is judged on) swings far
    // beyond the model's bands; series 1 keeps to its cycle.
    let origin = 11 * DAY;
    for (t, v) in values[0][origin - DAY..origin].iter_mut().enumerate() {
        *v += if t % 2 == 0 { 8.0 } else { -8.0 };
    }
    // Training is deterministic: a second training gives the same weights.
    let (same, _, _) = trained();
    let before = LstmForecaster::new(same).forecast_batch(&histories(&keys, &values, origin), DAY).unwrap();
    model.follow(&LstmConfig { online_calibration: true, online_prior: 0.0, ..tiny() }).unwrap();
    let after = LstmForecaster::new(model).forecast_batch(&histories(&keys, &values, origin), DAY).unwrap();
    let width = |q: &headroom_core::Quantiles| -> f64 { q.p90.iter().zip(&q.p10).map(|(h, l)| h - l).sum::<f64>() };
    // The hindcasts share the batch, so the median agrees to float rounding.
    let moved = after[0].q.p50.iter().zip(&before[0].q.p50).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    assert!(moved < 1e-4, "the median is never moved: {moved}");
    assert!(
        width(&after[0].q) > 2.0 * width(&before[0].q),
        "missed series widens: {} -> {}",
        width(&before[0].q),
        width(&after[0].q)
    );
    assert!(after[0].q.p99.iter().zip(&after[0].q.p90).all(|(a, b)| a >= b), "the tail stays above p90");
    // A series whose bands held gets factors near 1, never a blow-up.
    let ratio = width(&after[1].q) / width(&before[1].q);
    assert!((0.25..2.0).contains(&ratio), "series 1: width ratio {ratio}");
}

#[test]
fn a_trained_model_refuses_to_follow_a_config_that_trains_other_weights() {
    let (mut model, _, _) = trained();
    let err = model.follow(&LstmConfig { hidden: 32, ..tiny() }).unwrap_err().to_string();
    assert!(err.contains("hidden"), "{err}");
    model.follow(&LstmConfig { envelope: 0, snap_to_window: false, ..tiny() }).unwrap();
    assert_eq!(model.config().envelope, 0);
}
