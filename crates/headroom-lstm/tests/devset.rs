//! Development-set evaluation of the LSTM under the reference protocol.
//! Slow (trains a model): run explicitly with
//!
//! ```text
//! RAYON_NUM_THREADS=1 cargo test --workspace --test devset -- --ignored --nocapture
//! python3 ../shared/benchmark/score.py target/lstm-dev/forecasts.parquet data/sample --baseline
//! ```
//!
//! Environment: `LSTM_CFG` (JSON overrides of `LstmConfig`), `LSTM_OUT`
//! (output dir, default `target/lstm-dev`), `LSTM_SAVE` (save the model there),
//! `LSTM_COMMAND` (training command recorded in the card).

use std::path::{Path, PathBuf};

use headroom_collect::files::{FileOptions, read_file};
use headroom_collect::resample::{ResampleConfig, resample_frame};
use headroom_core::{Forecast, ResampledSeries};
use headroom_forecast::History;
use headroom_forecast::protocol::Protocol;
use headroom_lstm::{LstmConfig, LstmForecaster, TrainOptions, train};
use polars::prelude::ParquetWriter;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn group(entity: &str) -> &'static str {
    if entity.starts_with("nab/") {
        "NAB"
    } else if entity.starts_with("dc/") {
        "DC"
    } else {
        "ASD"
    }
}

/// Mean over origins of MAE / in-sample daily seasonal naive MAE (score.py's MASE).
fn mase(y: &[f64], origin: usize, p50: &[f64]) -> f64 {
    let s = 96;
    let hist = &y[..origin];
    let scale = hist[s..].iter().zip(hist).map(|(a, b)| (a - b).abs()).sum::<f64>() / (hist.len() - s) as f64;
    let mae = p50.iter().zip(&y[origin..]).map(|(p, a)| (p - a).abs()).sum::<f64>() / p50.len() as f64;
    mae / scale
}

#[test]
#[ignore = "trains the development model (minutes)"]
fn devset() {
    let data = root().join("data/sample");
    let frame = read_file(&data.join("metrics.parquet"), &FileOptions::default()).unwrap();
    let cfg_r = ResampleConfig { step_ms: 15 * 60_000, max_gap_ms: i64::MAX, strict: false };
    let series: Vec<ResampledSeries> = resample_frame(&frame, &cfg_r).unwrap();
    let proto = Protocol::reference();
    let mut cfg_json = serde_json::to_value(LstmConfig::default()).unwrap();
    if let Ok(over) = std::env::var("LSTM_CFG") {
        let over: serde_json::Value = serde_json::from_str(&over).unwrap();
        for (k, v) in over.as_object().unwrap() {
            cfg_json[k] = v.clone();
        }
    }
    let cfg: LstmConfig = serde_json::from_value(cfg_json).unwrap();
    println!("config: {}", serde_json::to_string(&cfg).unwrap());
    let hists: Vec<History> = series.iter().map(History::of).collect();
    let command = std::env::var("LSTM_COMMAND").unwrap_or_else(|_| {
        format!(
            "LSTM_CFG='{}' RAYON_NUM_THREADS=1 cargo test --workspace --test devset -- --ignored --nocapture",
            std::env::var("LSTM_CFG").unwrap_or_default()
        )
    });
    let opts = TrainOptions { cut: Some(proto), command, progress: true, interrupt: Default::default() };
    let (model, report) = train(&hists, &cfg, &opts).unwrap();
    println!(
        "trained: {:.1} s, {} steps (best {}), val loss {:.4}, train/val samples {}/{}, calibration {:?}, val coverage {:?}",
        report.seconds,
        report.steps,
        report.best_step,
        report.best_val_loss,
        report.train_samples,
        report.val_samples,
        report.calibration,
        report.val_coverage
    );
    println!("val history: {:?}", report.val_history);
    let out = std::env::var("LSTM_OUT").map(PathBuf::from).unwrap_or_else(|_| root().join("target/lstm-dev"));
    std::fs::create_dir_all(&out).unwrap();
    if let Ok(dir) = std::env::var("LSTM_SAVE") {
        model.save(Path::new(&dir)).unwrap();
        println!("saved to {dir}");
    }
    let fc = LstmForecaster::new(model);

    // Every origin of every series, batched in one call.
    let mut windows = Vec::new();
    let mut index = Vec::new();
    for (i, s) in series.iter().enumerate() {
        for o in proto.origins(s.values.len()) {
            windows.push(History {
                key: &s.key,
                start_ms: s.grid.start_ms,
                step_ms: s.grid.step_ms,
                values: &s.values[..o],
            });
            index.push((i, o));
        }
    }
    let t = std::time::Instant::now();
    let forecasts: Vec<Forecast> = headroom_forecast::Forecaster::forecast_batch(&fc, &windows, 192).unwrap();
    println!("forecast {} windows in {:.2} s", forecasts.len(), t.elapsed().as_secs_f64());

    // Per-group MASE, ours and daily seasonal naive.
    let mut per: std::collections::BTreeMap<&str, (Vec<f64>, Vec<f64>)> = Default::default();
    let mut cur: Option<(usize, Vec<f64>, Vec<f64>)> = None;
    let mut flush = |c: Option<(usize, Vec<f64>, Vec<f64>)>| {
        if let Some((i, a, b)) = c {
            let (a, b): (Vec<f64>, Vec<f64>) =
                a.into_iter().zip(b).filter(|(x, y)| x.is_finite() && y.is_finite()).unzip();
            if a.is_empty() {
                return;
            }
            let e = per.entry(group(&series[i].key.entity)).or_default();
            e.0.push(a.iter().sum::<f64>() / a.len() as f64);
            e.1.push(b.iter().sum::<f64>() / b.len() as f64);
        }
    };
    for (f, &(i, o)) in forecasts.iter().zip(&index) {
        let y = &series[i].values;
        let sn: Vec<f64> = (0..192).map(|k| y[o - 96 + k % 96]).collect();
        if cur.as_ref().is_some_and(|c| c.0 != i) {
            flush(cur.take());
        }
        let c = cur.get_or_insert((i, vec![], vec![]));
        c.1.push(mase(y, o, &f.q.p50));
        c.2.push(mase(y, o, &sn));
    }
    flush(cur.take());
    let mut all = (vec![], vec![]);
    let mut backtest = serde_json::Map::new();
    for (g, (a, b)) in &per {
        backtest.insert(
            format!("mean_mase_{g}"),
            serde_json::json!({"lstm": a.iter().sum::<f64>() / a.len() as f64, "snaive_daily": b.iter().sum::<f64>() / b.len() as f64, "series": a.len()}),
        );
        println!(
            "group {g}: series {} lstm MASE {:.3}  snaive_daily {:.3}",
            a.len(),
            a.iter().sum::<f64>() / a.len() as f64,
            b.iter().sum::<f64>() / b.len() as f64
        );
        all.0.extend(a);
        all.1.extend(b);
    }
    println!(
        "all: lstm MASE {:.3}  snaive_daily {:.3}",
        all.0.iter().sum::<f64>() / all.0.len() as f64,
        all.1.iter().sum::<f64>() / all.1.len() as f64
    );
    backtest.insert(
        "mean_mase_all".into(),
        serde_json::json!({"lstm": all.0.iter().sum::<f64>() / all.0.len() as f64, "snaive_daily": all.1.iter().sum::<f64>() / all.1.len() as f64, "series": all.0.len()}),
    );
    if let Ok(dir) = std::env::var("LSTM_SAVE") {
        // The caller's backtest slot: this run's per-group MASE (score.py's JSON can be merged in later).
        let path = Path::new(&dir).join("card.json");
        let mut card: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        card["backtest"] = serde_json::json!({"protocol": "reference (score.py): 15-min bins, daily origins, 48 h", "devset": backtest});
        if let Ok(notes) = std::env::var("LSTM_NOTES") {
            card["notes"] = serde_json::from_str(&std::fs::read_to_string(notes).unwrap()).unwrap();
        }
        std::fs::write(&path, serde_json::to_string_pretty(&card).unwrap() + "\n").unwrap();
    }
    let mut df = Forecast::to_frame(&forecasts).unwrap();
    let path = out.join("forecasts.parquet");
    ParquetWriter::new(std::fs::File::create(&path).unwrap()).finish(&mut df).unwrap();
    println!("wrote {}", path.display());
}
