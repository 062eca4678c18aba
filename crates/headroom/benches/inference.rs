//! Batched inference: 10,000 series (the development series tiled) × 48 h × 5
//! quantiles with the shipped LSTM, beside Holt-Winters on the same series in
//! the same process; single-series latency; peak memory.
//!
//! `cargo bench --bench inference [-- MODEL_DIR]` (default `models/default`).
//! Prints medians as `key=value`. Not run in CI.

use std::path::PathBuf;
use std::time::Instant;

use headroom_collect::files::{FileOptions, read_file};
use headroom_collect::resample::{ResampleConfig, resample_frame};
use headroom_forecast::baselines::baseline;
use headroom_forecast::evaluate::forecast_with_fallback;
use headroom_forecast::{Forecaster, History};
use headroom_lstm::{Expectation, LstmForecaster, LstmModel};

const SERIES: usize = 10_000;
const HORIZON: usize = 192;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Peak resident memory of this process so far (VmHWM), in MiB.
fn peak_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let model_dir =
        std::env::args().skip(1).find(|a| !a.starts_with('-')).map_or(root.join("models/default"), PathBuf::from);
    let frame = read_file(&root.join("data/sample/metrics.parquet"), &FileOptions::default()).expect("the sample");
    let cfg = ResampleConfig { step_ms: 15 * 60_000, max_gap_ms: i64::MAX, strict: false };
    let series = resample_frame(&frame, &cfg).expect("resample");
    drop(frame);
    let histories: Vec<History<'_>> = series.iter().cycle().take(SERIES).map(History::of).collect();
    let before = peak_mib();

    let expected = Expectation { feature_set: None, ..Expectation::reference() };
    let lstm = LstmForecaster::new(LstmModel::load(&model_dir, &expected).expect("a trained model"));
    let mut runs = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        // The production path: one batch per core, as `forecast` and `backtest` run it.
        let (out, _) = forecast_with_fallback(&lstm, &[], &histories, HORIZON).expect("lstm forecasts");
        runs.push(t.elapsed().as_secs_f64());
        assert_eq!(out.len(), SERIES);
    }
    let lstm_s = median(runs);
    let lstm_peak = peak_mib();

    let one = &histories[..1];
    let mut single = Vec::new();
    for _ in 0..101 {
        let t = Instant::now();
        lstm.forecast_batch(one, HORIZON).expect("one forecast");
        single.push(t.elapsed().as_secs_f64() * 1000.0);
    }

    let hw = baseline("holt-winters").expect("holt-winters");
    let t = Instant::now();
    let (out, _) = forecast_with_fallback(hw.as_ref(), &[], &histories, HORIZON).expect("holt-winters forecasts");
    let hw_s = t.elapsed().as_secs_f64();
    assert_eq!(out.len(), SERIES);

    println!(
        "series={SERIES} horizon={HORIZON} lstm_s={lstm_s:.3} lstm_ms_per_series={:.4} holt_winters_s={hw_s:.3} \
         holt_winters_ms_per_series={:.4} ratio_hw_over_lstm={:.2} single_series_ms={:.3} \
         peak_mib_before={before:.0} peak_mib_after_lstm={lstm_peak:.0}",
        lstm_s * 1000.0 / SERIES as f64,
        hw_s * 1000.0 / SERIES as f64,
        hw_s / lstm_s,
        median(single)
    );
}
