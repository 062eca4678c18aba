//! Cross-validation by machine, end to end on a small recorded data set with
//! a tiny LSTM config: folds hold whole machines, every series is forecast by
//! the model of its own fold (which never saw it), and fold models are reused
//! when nothing that changes the weights changed.

use std::path::Path;

use headroom_backtest::crossval::{CrossValidate, CrossValidation};
use headroom_backtest::{Options, Quiet};
use headroom_core::{Forecast, Interrupt};
use headroom_forecast::{Forecaster, History};
use headroom_lstm::{Base, Expectation, LstmConfig, LstmForecaster, LstmModel};

const DAY: usize = 96;
const STEP_MS: i64 = 900_000;

/// Six machines (one or two metrics each), 12 days of 15-minute values:
/// a daily cycle whose level and amplitude differ per machine.
fn write_data(dir: &Path) {
    let mut csv = String::from("entity,metric,timestamp,value\n");
    let mut limits = String::from("entity,metric,threshold\n");
    let machines = [("web/a", 2), ("web/b", 1), ("db/c", 2), ("db/d", 1), ("batch/e", 1), ("batch/f", 1)];
    for (m, (entity, metrics)) in machines.iter().enumerate() {
        for k in 0..*metrics {
            let metric = format!("cpu{k}");
            for i in 0..12 * DAY {
                let phase = 2.0 * std::f64::consts::PI * (i % DAY) as f64 / DAY as f64;
                let v = 20.0 + 5.0 * m as f64 + (3.0 + k as f64) * phase.sin() + ((i * 7919 + m) % 13) as f64 * 0.1;
                let ts = chrono_free_rfc3339(i as i64 * STEP_MS);
                csv.push_str(&format!("{entity},{metric},{ts},{v}\n"));
            }
            limits.push_str(&format!("{entity},{metric},{}\n", 26.0 + 5.0 * m as f64));
        }
    }
    std::fs::write(dir.join("metrics.csv"), csv).unwrap();
    std::fs::write(dir.join("limits.csv"), limits).unwrap();
}

/// `ms` after 2024-01-01T00:00:00Z as RFC 3339 (whole minutes, under a month).
fn chrono_free_rfc3339(ms: i64) -> String {
    let minutes = ms / 60_000;
    let (day, hour, minute) = (minutes / 1440, (minutes / 60) % 24, minutes % 60);
    format!("2024-01-{:02}T{hour:02}:{minute:02}:00Z", day + 1)
}

/// A tiny model on the reference protocol's step and horizon.
fn tiny(max_steps: usize) -> LstmConfig {
    LstmConfig {
        window: 2 * DAY,
        min_history: 2 * DAY,
        hidden: 8,
        head_hidden: 16,
        seasonal_channels: false,
        base: Base::SnaiveDaily,
        batch: 16,
        max_steps,
        eval_every: 10,
        stride: 16,
        val_days: 1,
        pad_prob: 0.0,
        shift_prob: 0.0,
        ..LstmConfig::default()
    }
}

fn options(dir: &Path, config: &Path) -> Options {
    Options {
        data: dir.join("metrics.csv"),
        limits: dir.join("limits.csv"),
        model: dir.join("no-model"),
        models: Some(vec!["lstm".into(), "snaive-daily".into()]),
        step: "15m".into(),
        horizon: "48h".into(),
        origin_every: "24h".into(),
        out: dir.join("out"),
        config: None,
        decide_every: "1h".into(),
        replay: false,
        cross_validate: Some(CrossValidate { folds: 3, config: Some(config.to_owned()) }),
    }
}

fn lstm_forecasts(outcome: &headroom_backtest::Outcome) -> Vec<Forecast> {
    outcome.backtest.eval.forecasts.iter().filter(|f| f.model == "lstm").cloned().collect()
}

fn folds(outcome: &headroom_backtest::Outcome) -> &CrossValidation {
    outcome.backtest.cross_validation.as_ref().expect("cross-validated")
}

#[test]
fn each_machine_is_forecast_by_the_model_of_its_fold_and_fold_models_are_reused() {
    let dir = tempfile::tempdir().unwrap();
    write_data(dir.path());
    let config = dir.path().join("tiny.json");
    std::fs::write(&config, serde_json::to_string(&tiny(30)).unwrap()).unwrap();
    let opts = options(dir.path(), &config);
    let first = headroom_backtest::run(&opts, &Quiet, &Interrupt::default()).unwrap();
    let cv = folds(&first);

    // Whole machines, each in exactly one fold; each model trained on the rest.
    assert_eq!(cv.folds.len(), 3);
    let mut machines: Vec<&String> = cv.folds.iter().flat_map(|f| &f.machines).collect();
    machines.sort();
    assert_eq!(machines, ["batch/e", "batch/f", "db/c", "db/d", "web/a", "web/b"]);
    let total: usize = cv.folds.iter().map(|f| f.series).sum();
    assert_eq!(total, 8);
    for f in &cv.folds {
        assert!(f.trained, "fold {} trained by this run", f.fold);
        assert_eq!(f.train_series, total - f.series, "fold {} trains on the other folds only", f.fold);
        assert!(f.model.join("model.safetensors").is_file(), "{}", f.model.display());
    }
    assert!(opts.out.join("cross_validation.json").is_file());
    let report = std::fs::read_to_string(opts.out.join("report.html")).unwrap();
    assert!(report.contains("the LSTM cross-validated by machine (3 folds)"), "the report says what it scores");

    // Every pair has an lstm forecast, and each is its own fold's model's.
    let lstm = lstm_forecasts(&first);
    let baseline = first.backtest.eval.forecasts.iter().filter(|f| f.model == "snaive-daily").count();
    assert_eq!(lstm.len(), baseline);
    let expected = Expectation { feature_set: None, ..Expectation::reference() };
    let models: Vec<LstmForecaster> =
        cv.folds.iter().map(|f| LstmForecaster::new(LstmModel::load(&f.model, &expected).unwrap())).collect();
    for f in &lstm {
        let series = first.backtest.series.iter().find(|s| s.key == f.key).unwrap();
        let upto = ((f.origin_ms - series.grid.start_ms) / STEP_MS) as usize;
        let history = [History {
            key: &series.key,
            start_ms: series.grid.start_ms,
            step_ms: STEP_MS,
            values: &series.values[..upto],
        }];
        let own = cv.folds.iter().position(|fold| fold.machines.contains(&f.key.entity)).unwrap();
        // The largest difference between two forecasts' paths. One history
        // alone runs through other matrix blockings than a batch of them, so
        // the same model agrees to float rounding, not bit for bit.
        let gap = |m: usize| {
            let q = models[m].forecast_batch(&history, 192).unwrap().remove(0).q;
            q.paths()
                .iter()
                .zip(f.q.paths())
                .flat_map(|((_, a), (_, b))| a.iter().zip(b).map(|(x, y)| (x - y).abs()))
                .fold(0.0, f64::max)
        };
        assert!(gap(own) < 1e-4, "{} at {}: its fold's model, off by {}", f.key, f.origin_ms, gap(own));
        assert!(gap((own + 1) % 3) > 1e-2, "{}: another fold's model forecasts otherwise", f.key);
    }

    // The same run again: nothing retrained, the same forecasts.
    let again = headroom_backtest::run(&opts, &Quiet, &Interrupt::default()).unwrap();
    assert!(folds(&again).folds.iter().all(|f| !f.trained));
    assert!(lstm_forecasts(&again) == lstm, "a reused model forecasts what it did when trained");

    // An inference-only change reuses the weights; a training change retrains.
    let inference_only = LstmConfig { snap_to_window: false, envelope: 0, ..tiny(30) };
    std::fs::write(&config, serde_json::to_string(&inference_only).unwrap()).unwrap();
    let reused = headroom_backtest::run(&opts, &Quiet, &Interrupt::default()).unwrap();
    assert!(folds(&reused).folds.iter().all(|f| !f.trained));
    assert!(lstm_forecasts(&reused) != lstm, "the envelope and snapping are off now");
    std::fs::write(&config, serde_json::to_string(&tiny(20)).unwrap()).unwrap();
    let retrained = headroom_backtest::run(&opts, &Quiet, &Interrupt::default()).unwrap();
    assert!(folds(&retrained).folds.iter().all(|f| f.trained && f.steps == 20));
}

#[test]
fn too_many_folds_or_no_lstm_are_refused_before_any_training() {
    let dir = tempfile::tempdir().unwrap();
    write_data(dir.path());
    let config = dir.path().join("tiny.json");
    std::fs::write(&config, serde_json::to_string(&tiny(30)).unwrap()).unwrap();
    let mut opts = options(dir.path(), &config);
    opts.cross_validate = Some(CrossValidate { folds: 7, config: Some(config.clone()) });
    let err = headroom_backtest::run(&opts, &Quiet, &Interrupt::default()).unwrap_err().to_string();
    assert!(err.contains("--cross-validate 7") && err.contains("6 machines"), "{err}");
    assert!(!opts.out.join("folds").exists());

    opts.cross_validate = Some(CrossValidate { folds: 3, config: Some(config) });
    opts.models = Some(vec!["snaive-daily".into()]);
    let err = headroom_backtest::run(&opts, &Quiet, &Interrupt::default()).unwrap_err().to_string();
    assert!(err.contains("--cross-validate") && err.contains("lstm"), "{err}");
}

#[test]
fn a_config_or_a_model_card_for_another_horizon_is_refused_before_any_training() {
    let dir = tempfile::tempdir().unwrap();
    write_data(dir.path());
    let half = LstmConfig { horizon: 2 * DAY / 4, ..tiny(30) };

    // A --cv-config made for 12 h while the backtest forecasts 48 h.
    let config = dir.path().join("half.json");
    std::fs::write(&config, serde_json::to_string(&half).unwrap()).unwrap();
    let opts = options(dir.path(), &config);
    let err = headroom_backtest::run(&opts, &Quiet, &Interrupt::default()).unwrap_err().to_string();
    assert!(
        err.contains("half.json") && err.contains("horizon 48 bins") && err.contains("192 bins (--horizon)"),
        "{err}"
    );
    assert!(!opts.out.join("folds").exists(), "nothing trained");

    // No --cv-config: the shipped model's card is read as loading reads it,
    // so a card for another horizon is refused with the field that differs.
    let model = dir.path().join("model");
    std::fs::create_dir_all(&model).unwrap();
    let card = headroom_lstm::ModelCard::new(&half);
    std::fs::write(model.join("card.json"), serde_json::to_string(&card).unwrap()).unwrap();
    let opts = Options {
        model: model.clone(),
        cross_validate: Some(CrossValidate { folds: 3, config: None }),
        ..options(dir.path(), &config)
    };
    let err = headroom_backtest::run(&opts, &Quiet, &Interrupt::default()).unwrap_err();
    let chain: Vec<String> =
        std::iter::successors(Some(&err as &dyn std::error::Error), |e| e.source()).map(|e| e.to_string()).collect();
    let text = chain.join(": ");
    assert!(text.contains("model card field `horizon` is 48 but 192 is expected"), "{text}");
    assert!(text.contains(&model.display().to_string()), "{text}");
    assert!(!opts.out.join("folds").exists(), "nothing trained");
}
