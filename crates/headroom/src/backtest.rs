//! `headroom backtest`: the reference protocol over recorded metrics, every
//! model beside the baselines, forecasts and scores written to a directory.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use headroom_collect::files::FileOptions;
use headroom_collect::limits::read_limits;
use headroom_collect::resample::{ResampleConfig, resample_frame};
use headroom_forecast::baselines::baseline;
use headroom_forecast::evaluate::{Evaluation, evaluate};
use headroom_forecast::metrics::ModelScore;
use headroom_forecast::protocol::Protocol;
use headroom_forecast::{Forecaster, baselines::BASELINES};

use crate::cli::BacktestArgs;
use crate::inspect::load;
use crate::output::{Output, table};

pub fn run(args: BacktestArgs) -> anyhow::Result<ExitCode> {
    let protocol = Protocol::reference();
    let frame = load(&args.data, &FileOptions::default())?;
    let limits = read_limits(&args.limits)?;
    // The protocol interpolates every gap (there is no edge gap on a covering grid).
    let cfg = ResampleConfig { step_ms: protocol.step_ms, max_gap_ms: i64::MAX, strict: false };
    let series = resample_frame(&frame, &cfg)?;

    // Default: the LSTM when a model is there, then every baseline.
    let names: Vec<String> = match &args.models {
        Some(list) => list.clone(),
        None => {
            let lstm = args.model.join(headroom_lstm::card::CARD).is_file().then(|| headroom_lstm::NAME.to_owned());
            lstm.into_iter().chain(BASELINES.iter().map(|s| s.to_string())).collect()
        }
    };
    let models: Vec<Box<dyn Forecaster>> =
        names.iter().map(|n| model(n, &args.model)).collect::<anyhow::Result<_>>()?;
    let chain = fallback_chain()?;
    let chain: Vec<&dyn Forecaster> = chain.iter().map(|m| m.as_ref()).collect();
    let refs: Vec<&dyn Forecaster> = models.iter().map(|m| m.as_ref()).collect();
    eprintln!(
        "backtest: {} series from {}, models {}, origins every {} bins, horizon {} bins of {}",
        series.len(),
        args.data.display(),
        names.join(","),
        protocol.every,
        protocol.horizon,
        headroom_core::format_duration(protocol.step_ms)
    );
    let started = std::time::Instant::now();
    let eval = evaluate(&series, &limits, &refs, &chain, &protocol)?;
    eprintln!("backtest: {} forecasts in {:.1} s", eval.forecasts.len(), started.elapsed().as_secs_f64());

    write_outputs(&args.out, &eval)?;
    print_scores(&eval, args.output)?;
    eprintln!("wrote {0}/forecasts.parquet and {0}/scores.json", args.out.display());
    Ok(ExitCode::SUCCESS)
}

/// Where a model without enough history for a series turns: daily seasonal
/// naive (one day of history), else the last value.
pub fn fallback_chain() -> anyhow::Result<Vec<Box<dyn Forecaster>>> {
    Ok(vec![baseline("snaive-daily")?, baseline("last")?])
}

/// A model by name: `lstm` (from `model_dir`) or a baseline.
pub fn model(name: &str, model_dir: &Path) -> anyhow::Result<Box<dyn Forecaster>> {
    if name != headroom_lstm::NAME {
        return Ok(baseline(name)?);
    }
    // Any feature set this build understands; the grid step and horizon must be the protocol's.
    let expected = headroom_lstm::Expectation { feature_set: None, ..headroom_lstm::Expectation::reference() };
    let model = headroom_lstm::LstmModel::load(model_dir, &expected).with_context(|| {
        format!(
            "loading the LSTM from {} (train one with `headroom train --out {}`, or leave lstm out of --models: {})",
            model_dir.display(),
            model_dir.display(),
            BASELINES.join(",")
        )
    })?;
    Ok(Box::new(headroom_lstm::LstmForecaster::new(model)))
}

fn write_outputs(dir: &Path, eval: &Evaluation) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    crate::forecast::write_forecasts(&dir.join("forecasts.parquet"), &eval.forecasts)?;

    let scores = serde_json::json!({
        "protocol": Protocol::reference(),
        "scores": eval.scores,
        "groups": eval.groups,
        "fallbacks": eval.fallbacks,
        "skipped": eval.skipped.iter().map(|k| k.to_string()).collect::<Vec<_>>(),
    });
    std::fs::write(dir.join("scores.json"), serde_json::to_string_pretty(&scores)?)
        .with_context(|| format!("writing {}/scores.json", dir.display()))?;
    Ok(())
}

fn print_scores(eval: &Evaluation, output: Output) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if output == Output::Json {
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"scores": eval.scores, "groups": eval.groups}))?
        )?;
        return Ok(());
    }
    let header = [
        "model",
        "series",
        "pairs",
        "MAE",
        "sMAPE %",
        "MASE",
        "median MASE",
        "p10-p90 cov",
        "sat P/R p50",
        "sat P/R p90",
    ];
    let row = |s: &ModelScore| {
        vec![
            s.model.clone(),
            s.series.to_string(),
            s.pairs.to_string(),
            format!("{:.4}", s.mean_mae),
            format!("{:.2}", s.mean_smape),
            format!("{:.3}", s.mean_mase),
            format!("{:.3}", s.median_mase),
            format!("{:.3}", s.coverage),
            format!("{:.2}/{:.2}", s.sat_p50.precision(), s.sat_p50.recall()),
            format!("{:.2}/{:.2}", s.sat_p90.precision(), s.sat_p90.recall()),
        ]
    };
    writeln!(out, "all series")?;
    write!(out, "{}", table(&header, &eval.scores.iter().map(row).collect::<Vec<_>>()))?;
    for (group, scores) in &eval.groups {
        writeln!(out, "\n{group}")?;
        write!(out, "{}", table(&header, &scores.iter().map(row).collect::<Vec<_>>()))?;
    }
    if !eval.fallbacks.is_empty() {
        writeln!(out, "\n{} pairs forecast by a fallback model (see scores.json)", eval.fallbacks.len())?;
    }
    Ok(())
}
