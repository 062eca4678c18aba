//! A backtest's files and printed scores: forecasts.parquet, scores.json,
//! scores.parquet, scores.csv, decisions.parquet, decision_scores.csv; the
//! terminal tables and the JSON document. Every file is written whole or not
//! at all (a temporary file renamed into place).

use std::io::Write;
use std::path::Path;

use headroom_collect::store::write_atomically;
use headroom_core::forecast::QUANTILE_COLUMNS;
use headroom_core::frame::timestamp_column;
use headroom_core::{Action, Forecast, format_ts};
use headroom_engine::replay::{ReplayReport, Replayed};
use headroom_forecast::evaluate::{AUTO, Evaluation};
use headroom_forecast::metrics::SeriesScore;
use polars::prelude::{Column, DataFrame, ParquetWriter};

use crate::columns::{self, MODEL_SCORES, POLICY_SCORES, SERIES_SCORES};
use crate::error::{Error, Result};
use crate::evaluation::Backtest;

/// Writes every output file of a backtest into `dir` (created if missing).
pub fn write_outputs(dir: &Path, bt: &Backtest, replay: Option<&ReplayReport>) -> Result<()> {
    let eval = &bt.eval;
    std::fs::create_dir_all(dir).map_err(|source| Error::CreateDir { path: dir.to_owned(), source })?;
    write_forecasts(&dir.join("forecasts.parquet"), &eval.forecasts)?;
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
        write_decisions(dir, r)?;
    }
    if let Some(cv) = &bt.cross_validation {
        scores["cross_validation"] = serde_json::to_value(cv)?;
        write_json(&dir.join("cross_validation.json"), &serde_json::to_value(cv)?)?;
    }
    write_json(&dir.join("scores.json"), &scores)
}

/// Writes `value` as pretty JSON, whole or not at all.
fn write_json(path: &Path, value: &serde_json::Value) -> Result<()> {
    let text = serde_json::to_string_pretty(value)? + "\n";
    write_atomically(path, |file| file.write_all(text.as_bytes()).map_err(headroom_collect::Error::io(path)))?;
    Ok(())
}

/// Writes forecasts in the one forecast schema: Parquet, or CSV with RFC 3339 times.
pub fn write_forecasts(path: &Path, forecasts: &[Forecast]) -> Result<()> {
    let csv = match path.extension().and_then(|e| e.to_str()) {
        Some("parquet") => false,
        Some("csv") => true,
        _ => return Err(Error::ForecastsFormat { path: path.to_owned() }),
    };
    write_atomically(path, |file| {
        if !csv {
            let mut df = Forecast::to_frame(forecasts)?;
            ParquetWriter::new(file)
                .finish(&mut df)
                .map_err(|source| headroom_collect::Error::Parquet { path: path.into(), source })?;
            return Ok(());
        }
        let mut w = csv::WriterBuilder::new().quote_style(csv::QuoteStyle::Necessary).from_writer(file);
        let fail = |e: csv::Error| csv_error(path, e);
        let header = ["entity", "metric", "model", "origin", "ts"].into_iter().chain(QUANTILE_COLUMNS);
        w.write_record(header).map_err(fail)?;
        for f in forecasts {
            let origin = format_ts(f.origin_ms);
            for i in 0..f.q.len() {
                let mut row = vec![
                    f.key.entity.clone(),
                    f.key.metric.clone(),
                    f.model.clone(),
                    origin.clone(),
                    format_ts(f.ts(i)),
                ];
                row.extend(f.q.paths().map(|(_, path)| path[i].to_string()));
                w.write_record(&row).map_err(fail)?;
            }
        }
        w.flush().map_err(headroom_collect::Error::io(path))
    })?;
    Ok(())
}

/// Writes one row per model and series ([`SERIES_SCORES`]) as Parquet or, for `.csv`, CSV.
pub fn write_series_scores(path: &Path, rows: &[SeriesScore]) -> Result<()> {
    let csv = path.extension().is_some_and(|e| e == "csv");
    write_atomically(path, |file| {
        if csv {
            return columns::write_csv(file, &SERIES_SCORES, rows).map_err(|e| csv_error(path, e));
        }
        let parquet = |source| headroom_collect::Error::Parquet { path: path.into(), source };
        let mut df = columns::frame(&SERIES_SCORES, rows).map_err(parquet)?;
        ParquetWriter::new(file).finish(&mut df).map_err(parquet)?;
        Ok(())
    })?;
    Ok(())
}

/// `decisions.parquet` (every replayed action) and `decision_scores.csv` ([`POLICY_SCORES`]).
pub fn write_decisions(dir: &Path, report: &ReplayReport) -> Result<()> {
    let d = &report.decisions;
    let path = dir.join("decisions.parquet");
    write_atomically(&path, |file| {
        let parquet = |source| headroom_collect::Error::Parquet { path: path.clone(), source };
        let text = |f: &dyn Fn(&Replayed) -> String| d.iter().map(f).collect::<Vec<String>>();
        let mut df = DataFrame::new(
            d.len(),
            vec![
                Column::new("policy".into(), text(&|r| r.policy.clone())),
                Column::new("target".into(), text(&|r| r.decision.target.clone())),
                Column::new("entity".into(), text(&|r| r.decision.entity.clone())),
                timestamp_column("ts", d.iter().map(|r| r.decision.decided_at_ms).collect()),
                Column::new("action".into(), text(&|r| r.decision.action.to_string())),
                Column::new(
                    "replicas".into(),
                    d.iter()
                        .map(|r| match r.decision.action {
                            Action::ScaleTo { replicas } => Some(replicas),
                            _ => None,
                        })
                        .collect::<Vec<Option<u32>>>(),
                ),
                Column::new("risk".into(), text(&|r| r.decision.risk.clone())),
                Column::new("id".into(), text(&|r| r.decision.id.clone())),
                Column::new("reason".into(), text(&|r| r.decision.reason.clone())),
            ],
        )
        .map_err(parquet)?;
        ParquetWriter::new(file).finish(&mut df).map(|_| ()).map_err(parquet)
    })?;
    let path = dir.join("decision_scores.csv");
    write_atomically(&path, |file| {
        columns::write_csv(file, &POLICY_SCORES, &report.policies).map_err(|e| csv_error(&path, e))
    })?;
    Ok(())
}

/// A CSV writer's error as the file's IO error.
fn csv_error(path: &Path, e: csv::Error) -> headroom_collect::Error {
    headroom_collect::Error::io(path)(std::io::Error::other(e))
}

/// The scores as the terminal shows them: one table over all series, one per
/// group, what `auto` chose, fallbacks, and the decision table.
pub fn scores_text(eval: &Evaluation, replay: Option<&ReplayReport>) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    out.push_str("all series\n");
    out.push_str(&columns::text_table(&MODEL_SCORES, &eval.scores));
    for (group, scores) in &eval.groups {
        let _ = writeln!(out, "\n{group}");
        out.push_str(&columns::text_table(&MODEL_SCORES, scores));
    }
    if let Some(auto) = &eval.auto {
        let total: usize = auto.choices.iter().sum();
        let shares: Vec<String> =
            auto.counts().map(|(m, n)| format!("{m} {n} ({:.0}%)", 100.0 * n as f64 / total.max(1) as f64)).collect();
        let _ = writeln!(out, "\n{AUTO} chose, over {total} pairs: {}", shares.join(", "));
        for (group, counts) in &auto.groups {
            let c: Vec<String> = auto.candidates.iter().zip(counts).map(|(m, n)| format!("{m} {n}")).collect();
            let _ = writeln!(out, "  {group}: {}", c.join(", "));
        }
        if auto.without_evidence > 0 {
            let _ = writeln!(
                out,
                "  ({} pairs had no finished forecast to choose by and took {})",
                auto.without_evidence, auto.candidates[0]
            );
        }
    }
    if !eval.fallbacks.is_empty() {
        let _ = writeln!(out, "\n{} pairs forecast by a fallback model (see scores.json)", eval.fallbacks.len());
    }
    if let Some(r) = replay {
        out.push_str(
            "\ndecisions replayed (predictive policy per model vs the reactive one; model@q: every target on \
             quantile q; events = runs above the level at the starting replicas)\n",
        );
        out.push_str(&columns::text_table(&POLICY_SCORES, &r.policies));
    }
    out
}

/// The scores as one JSON document (`--output json`).
pub fn scores_json(eval: &Evaluation, replay: Option<&ReplayReport>) -> serde_json::Value {
    let auto_choices: serde_json::Map<String, serde_json::Value> =
        eval.auto.iter().flat_map(|a| a.counts()).map(|(m, n)| (m.to_owned(), n.into())).collect();
    serde_json::json!({
        "scores": eval.scores,
        "groups": eval.groups,
        "auto_choices": auto_choices,
        "decisions": replay.map(|r| &r.policies),
    })
}
