//! `headroom backtest`: the reference protocol (or the same rule on another
//! step, horizon and origin spacing) over recorded metrics, every model beside
//! the baselines and `auto`, forecasts and scores written to a directory.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use headroom_collect::files::FileOptions;
use headroom_collect::limits::read_limits;
use headroom_collect::resample::{ResampleConfig, resample_frame};
use headroom_core::{Interrupt, Limits, ResampledSeries, SeriesData, format_duration};
use headroom_engine::models;
use headroom_engine::replay::ReplayReport;
use headroom_forecast::baselines::baseline;
use headroom_forecast::evaluate::{AUTO, Evaluation, Progress, evaluate};
use headroom_forecast::metrics::{ModelScore, SeriesScore};
use headroom_forecast::protocol::Protocol;
use headroom_forecast::{Forecaster, baselines::BASELINES};
use polars::prelude::{Column, DataFrame, ParquetWriter};

use crate::cli::{BacktestArgs, duration_ms};
use crate::inspect::load;
use crate::output::{Output, table};

/// A backtest once every forecast is made and scored: what the outputs, and
/// the decision replay, are made from.
#[derive(Debug)]
pub struct Backtest {
    /// The protocol run (the reference one unless --step, --horizon or --origin-every say otherwise).
    pub protocol: Protocol,
    /// Every series, resampled to the protocol's step with every gap interpolated.
    pub series: Vec<ResampledSeries>,
    /// The raw samples of every series (for the replay's stale-data and crash checks).
    pub raw: Vec<SeriesData>,
    /// Saturation thresholds per series.
    pub limits: Limits,
    /// Forecasts (model by model, `auto` last) and their scores.
    pub eval: Evaluation,
}

pub fn run(args: BacktestArgs, interrupt: &Interrupt) -> anyhow::Result<ExitCode> {
    let bt = backtest(&args, interrupt)?;
    // The decisions each model's forecasts would have led to, and the reactive baseline's.
    let replay = if args.no_replay { None } else { Some(crate::decisions::run(&args, &bt, interrupt)?) };
    // Last chance to stop before anything is written: then every file is written.
    interrupt.check()?;
    write_outputs(&args.out, &bt, replay.as_ref())?;
    let report = crate::report::ReportInput {
        title: format!("headroom backtest of {}", args.data.display()),
        series: &bt.series,
        forecasts: &bt.eval.forecasts,
        scores: &bt.eval.scores,
        series_scores: &bt.eval.series_scores,
        replay: replay.as_ref(),
    };
    crate::report::write_report(&args.out.join("report.html"), &report)?;
    print_scores(&bt.eval, replay.as_ref(), args.output)?;
    let with_threshold = bt.series.iter().filter(|s| bt.limits.get(&s.key).is_some()).count();
    eprintln!(
        "wrote {0}/forecasts.parquet, {0}/scores.json, {0}/scores.parquet, {0}/scores.csv{2} and {0}/report.html \
         ({1} series, {with_threshold} with a saturation threshold)",
        args.out.display(),
        bt.series.len(),
        if replay.is_some() {
            format!(", {0}/decisions.parquet, {0}/decision_scores.csv", args.out.display())
        } else {
            String::new()
        }
    );
    Ok(ExitCode::SUCCESS)
}

/// Loads the data, runs every model of `--models` over the protocol and scores them.
pub fn backtest(args: &BacktestArgs, interrupt: &Interrupt) -> anyhow::Result<Backtest> {
    let protocol = protocol(args)?;
    if !args.no_replay {
        crate::decisions::decide_every_ms(args, &protocol)?;
    }
    // Default: the LSTM when a model is there, then every baseline, then auto.
    let names: Vec<String> = match &args.models {
        Some(list) => list.iter().map(|n| n.trim().to_owned()).collect(),
        None => {
            let lstm = args.model.join(headroom_lstm::card::CARD).is_file().then(|| headroom_lstm::NAME.to_owned());
            lstm.into_iter().chain(BASELINES.iter().map(|s| s.to_string())).chain([AUTO.to_owned()]).collect()
        }
    };
    if let Some(twice) = names.iter().enumerate().find(|(i, n)| names[..*i].contains(n)).map(|(_, n)| n) {
        anyhow::bail!("--models: {twice} is listed twice");
    }
    let auto = names.iter().any(|n| n == AUTO);
    // Models first: a wrong name or an LSTM that cannot run this protocol fails before the data is read.
    let models: Vec<Box<dyn Forecaster>> = names
        .iter()
        .filter(|n| *n != AUTO)
        .map(|n| backtest_model(n, args, &protocol))
        .collect::<anyhow::Result<_>>()?;
    if auto && models.is_empty() {
        anyhow::bail!("--models: {AUTO} chooses among the other models run; add at least one (lstm or a baseline)");
    }
    let chain = models::fallback_chain()?;
    let chain: Vec<&dyn Forecaster> = chain.iter().map(|m| m.as_ref()).collect();
    let refs: Vec<&dyn Forecaster> = models.iter().map(|m| m.as_ref()).collect();

    let frame = load(&args.data, &FileOptions::default())?;
    let raw = frame.series()?;
    let limits = read_limits(&args.limits)?;
    // The protocol interpolates every gap (there is no edge gap on a covering grid).
    let cfg = ResampleConfig { step_ms: protocol.step_ms, max_gap_ms: i64::MAX, strict: false };
    let series = resample_frame(&frame, &cfg)?;
    check_work(&series, &protocol, names.len())?;
    eprintln!(
        "backtest: {} series from {}, models {}, an origin every {} ({} bins), horizon {} ({} bins of {})",
        series.len(),
        args.data.display(),
        names.join(","),
        format_duration(protocol.every as i64 * protocol.step_ms),
        protocol.every,
        format_duration(protocol.horizon as i64 * protocol.step_ms),
        protocol.horizon,
        format_duration(protocol.step_ms)
    );
    let started = Instant::now();
    let mut model_started = Instant::now();
    let mut progress = |p: Progress<'_>| match p {
        Progress::Started { model, index, of, pairs } => {
            model_started = Instant::now();
            eprintln!("backtest: [{}/{of}] {model}: forecasting {pairs} (series, origin) pairs", index + 1);
        }
        Progress::Finished { model } => {
            eprintln!("backtest: {model} done in {:.1} s", model_started.elapsed().as_secs_f64());
        }
    };
    let eval = evaluate(&series, &limits, &refs, &chain, &protocol, auto, &mut progress, interrupt)?;
    eprintln!("backtest: {} forecasts in {:.1} s", eval.forecasts.len(), started.elapsed().as_secs_f64());
    for key in &eval.skipped {
        let len = series.iter().find(|s| &s.key == key).map_or(0, |s| s.values.len());
        eprintln!(
            "backtest: skipped {key}: {len} bins of {} leave no origin (it needs 2 days before an origin and the horizon after it)",
            format_duration(protocol.step_ms)
        );
    }
    Ok(Backtest { protocol, series, raw, limits, eval })
}

/// The most forecast values (bins × quantiles, over every model and pair) a
/// backtest may hold: 2^28 values are 2 GiB of f64.
pub const MAX_FORECAST_VALUES: usize = 1 << 28;

/// Refuses, before any forecasting, a backtest with nothing to score or one
/// too large to hold: the error names the flags to change.
fn check_work(series: &[ResampledSeries], protocol: &Protocol, models: usize) -> anyhow::Result<()> {
    let pairs: usize = series.iter().map(|s| protocol.origins(s.values.len()).len()).sum();
    let longest = series.iter().map(|s| s.values.len()).max().unwrap_or(0);
    let step = format_duration(protocol.step_ms);
    if pairs == 0 {
        anyhow::bail!(
            "no series is long enough for one forecast origin: the longest has {longest} bins of {step} ({}), \
             and an origin needs 2 days of history before it and --horizon ({}) after it; \
             give longer data or a shorter --horizon",
            format_duration(longest as i64 * protocol.step_ms),
            format_duration(protocol.horizon as i64 * protocol.step_ms)
        );
    }
    let values = pairs.saturating_mul(protocol.horizon).saturating_mul(3).saturating_mul(models);
    if values > MAX_FORECAST_VALUES {
        anyhow::bail!(
            "{pairs} (series, origin) pairs × {} bins × {models} models would be {values} forecast values \
             (more than {MAX_FORECAST_VALUES}, 2 GiB): space the origins out (--origin-every, now every {}), \
             shorten --horizon, or run fewer --models",
            protocol.horizon,
            format_duration(protocol.every as i64 * protocol.step_ms)
        );
    }
    Ok(())
}

/// The protocol of --step, --horizon and --origin-every (their defaults give
/// [`Protocol::reference`]).
fn protocol(args: &BacktestArgs) -> anyhow::Result<Protocol> {
    let step_ms = duration_ms(&args.step).with_context(|| format!("--step {}", args.step))?;
    if step_ms <= 0 {
        anyhow::bail!("--step {}: must be longer than zero", args.step);
    }
    let bins = |flag: &str, value: &str| -> anyhow::Result<usize> {
        let ms = duration_ms(value).with_context(|| format!("{flag} {value}"))?;
        if ms <= 0 || ms % step_ms != 0 {
            anyhow::bail!(
                "{flag} {value}: must be a whole, non-zero number of steps of {} (--step)",
                format_duration(step_ms)
            );
        }
        Ok((ms / step_ms) as usize)
    };
    let horizon = bins("--horizon", &args.horizon)?;
    let every = bins("--origin-every", &args.origin_every)?;
    Protocol::new(step_ms, horizon, every).with_context(|| format!("--step {}", args.step))
}

/// A model of `--models` for the backtest's protocol: an LSTM made for another
/// step or horizon is refused naming the flag to change.
fn backtest_model(name: &str, args: &BacktestArgs, protocol: &Protocol) -> anyhow::Result<Box<dyn Forecaster>> {
    if name != headroom_lstm::NAME {
        return baseline(name)
            .with_context(|| format!("--models: known models are lstm, {}, {AUTO}", BASELINES.join(", ")));
    }
    let dir = args.model.display();
    let leave = "or leave lstm out of --models (the baselines and auto take any step and horizon)";
    match models::load_lstm(&args.model, protocol) {
        Ok(m) => Ok(Box::new(headroom_lstm::LstmForecaster::new(m))),
        Err(headroom_lstm::Error::Mismatch { field: "step_ms", card, .. }) => {
            let card = card.parse::<i64>().map_or(card.clone(), format_duration);
            anyhow::bail!(
                "--step {}: the LSTM in {dir} was trained on {card} steps; use --step {card}, {leave}",
                args.step
            )
        }
        Err(headroom_lstm::Error::Mismatch { field: "horizon", card, .. }) => {
            let (step, bins) = (format_duration(protocol.step_ms), protocol.horizon);
            let card = match card.parse::<i64>() {
                Ok(b) => format!("{} ({b} bins)", format_duration(b * protocol.step_ms)),
                Err(_) => format!("{card} bins"),
            };
            anyhow::bail!(
                "--horizon {} ({bins} bins of {step}): the LSTM in {dir} forecasts {card} only; use that horizon, {leave}",
                args.horizon
            )
        }
        Err(e) => Err(e).with_context(|| models::loading_hint(&args.model)),
    }
}

fn write_outputs(dir: &Path, bt: &Backtest, replay: Option<&ReplayReport>) -> anyhow::Result<()> {
    let eval = &bt.eval;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    crate::forecast::write_forecasts(&dir.join("forecasts.parquet"), &eval.forecasts)?;
    write_series_scores(&dir.join("scores.parquet"), &eval.series_scores)?;
    write_series_scores(&dir.join("scores.csv"), &eval.series_scores)?;

    let mut scores = serde_json::json!({
        "protocol": bt.protocol,
        "scores": eval.scores,
        "groups": eval.groups,
        "fallbacks": eval.fallbacks,
        "skipped": eval.skipped.iter().map(|k| k.to_string()).collect::<Vec<_>>(),
    });
    if let Some(auto) = &eval.auto {
        let counts = |c: &[usize]| -> serde_json::Map<String, serde_json::Value> {
            auto.candidates.iter().zip(c).map(|(m, n)| (m.clone(), (*n).into())).collect()
        };
        scores["auto_choices"] = counts(&auto.choices).into();
        scores["auto"] = serde_json::json!({
            "candidates": auto.candidates,
            "choices_by_group": auto.groups.iter().map(|(g, c)| (g.clone(), counts(c).into())).collect::<serde_json::Map<_, _>>(),
            "without_evidence": auto.without_evidence,
            "selection_fallbacks": auto.fallbacks,
        });
    }
    if let Some(r) = replay {
        scores["decisions"] = serde_json::to_value(&r.policies)?;
        crate::decisions::write(dir, r)?;
    }
    let path = dir.join("scores.json");
    let text = serde_json::to_string_pretty(&scores)? + "\n";
    headroom_collect::store::write_atomically(&path, |file| {
        file.write_all(text.as_bytes()).map_err(headroom_collect::Error::io(&path))
    })?;
    Ok(())
}

/// Writes one row per model and series (model, group, entity, metric, pairs,
/// mae, smape, mase, pinball, coverage) as Parquet or, for `.csv`, CSV.
fn write_series_scores(path: &Path, rows: &[SeriesScore]) -> anyhow::Result<()> {
    let io = |e: std::io::Error| headroom_collect::Error::io(path)(e);
    let csv = path.extension().is_some_and(|e| e == "csv");
    headroom_collect::store::write_atomically(path, |file| {
        if csv {
            let mut w = std::io::BufWriter::new(file);
            writeln!(w, "model,group,entity,metric,pairs,mae,smape,mase,pinball,coverage").map_err(io)?;
            for r in rows {
                writeln!(
                    w,
                    "{},{},{},{},{},{},{},{},{},{}",
                    csv_field(&r.model),
                    csv_field(&r.group),
                    csv_field(&r.entity),
                    csv_field(&r.metric),
                    r.pairs,
                    r.mae,
                    r.smape,
                    r.mase,
                    r.pinball,
                    r.coverage
                )
                .map_err(io)?;
            }
            return w.flush().map_err(io);
        }
        let text = |f: fn(&SeriesScore) -> &str| rows.iter().map(f).collect::<Vec<_>>();
        let num = |f: fn(&SeriesScore) -> f64| rows.iter().map(f).collect::<Vec<_>>();
        let parquet = |source| headroom_collect::Error::Parquet { path: path.into(), source };
        let mut df = DataFrame::new(
            rows.len(),
            vec![
                Column::new("model".into(), text(|r| &r.model)),
                Column::new("group".into(), text(|r| &r.group)),
                Column::new("entity".into(), text(|r| &r.entity)),
                Column::new("metric".into(), text(|r| &r.metric)),
                Column::new("pairs".into(), rows.iter().map(|r| r.pairs as i64).collect::<Vec<_>>()),
                Column::new("mae".into(), num(|r| r.mae)),
                Column::new("smape".into(), num(|r| r.smape)),
                Column::new("mase".into(), num(|r| r.mase)),
                Column::new("pinball".into(), num(|r| r.pinball)),
                Column::new("coverage".into(), num(|r| r.coverage)),
            ],
        )
        .map_err(parquet)?;
        ParquetWriter::new(file).finish(&mut df).map_err(parquet)?;
        Ok(())
    })?;
    Ok(())
}

/// A CSV field, quoted when it holds a comma, a quote or a line break.
fn csv_field(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")).into() } else { s.into() }
}

fn print_scores(eval: &Evaluation, replay: Option<&ReplayReport>, output: Output) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if output == Output::Json {
        let auto_choices: serde_json::Map<String, serde_json::Value> =
            eval.auto.iter().flat_map(|a| a.counts()).map(|(m, n)| (m.to_owned(), n.into())).collect();
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "scores": eval.scores,
                "groups": eval.groups,
                "auto_choices": auto_choices,
                "decisions": replay.map(|r| &r.policies),
            }))?
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
    if let Some(auto) = &eval.auto {
        let total: usize = auto.choices.iter().sum();
        let shares: Vec<String> =
            auto.counts().map(|(m, n)| format!("{m} {n} ({:.0}%)", 100.0 * n as f64 / total.max(1) as f64)).collect();
        writeln!(out, "\n{AUTO} chose, over {total} pairs: {}", shares.join(", "))?;
        for (group, counts) in &auto.groups {
            let c: Vec<String> = auto.candidates.iter().zip(counts).map(|(m, n)| format!("{m} {n}")).collect();
            writeln!(out, "  {group}: {}", c.join(", "))?;
        }
        if auto.without_evidence > 0 {
            writeln!(
                out,
                "  ({} pairs had no finished forecast to choose by and took {})",
                auto.without_evidence, auto.candidates[0]
            )?;
        }
    }
    if !eval.fallbacks.is_empty() {
        writeln!(out, "\n{} pairs forecast by a fallback model (see scores.json)", eval.fallbacks.len())?;
    }
    if let Some(r) = replay {
        writeln!(
            out,
            "\ndecisions replayed (predictive policy per model vs the reactive one; \
             events = runs above the level at the starting replicas)"
        )?;
        write!(out, "{}", crate::decisions::table(&r.policies))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_only_when_needed() {
        assert_eq!(csv_field("nab/a"), "nab/a");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
    }
}
