//! `headroom inspect`.

use std::io::Write;
use std::process::ExitCode;

use headroom_collect::inspect::{SeriesSummary, summarize};
use headroom_collect::recorded::load;
use headroom_collect::resample::ResampleConfig;

use crate::cli::InspectArgs;
use crate::output::{Output, table};

pub fn run(args: InspectArgs) -> anyhow::Result<ExitCode> {
    let cfg = args.grid.config()?;
    let frame = load(&args.path, &args.file.options()?)?;
    print_summaries(&summarize(&frame, &cfg)?, &cfg, args.output)?;
    Ok(ExitCode::SUCCESS)
}

pub fn print_summaries(rows: &[SeriesSummary], cfg: &ResampleConfig, output: Output) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match output {
        Output::Json => writeln!(out, "{}", serde_json::to_string_pretty(rows)?)?,
        Output::Table => {
            let body: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    vec![
                        r.entity.clone(),
                        r.metric.clone(),
                        r.unit.to_string(),
                        r.points.to_string(),
                        match (&r.first, &r.last) {
                            (Some(a), Some(b)) => format!("{a} → {b}"),
                            _ => "-".into(),
                        },
                        r.step.clone().unwrap_or_else(|| "-".into()),
                        r.gaps_text(cfg.step_ms),
                        r.report.summary(),
                    ]
                })
                .collect();
            write!(
                out,
                "{}",
                table(&["entity", "metric", "unit", "points", "span", "step", "gaps", "repairs"], &body)
            )?;
            let points: usize = rows.iter().map(|r| r.points).sum();
            let repaired = rows.iter().filter(|r| r.repairs > 0).count();
            let gappy = rows.iter().filter(|r| r.gaps > 0).count();
            writeln!(
                out,
                "{} series, {points} points; {repaired} with repairs, {gappy} with gaps left missing (grid {})",
                rows.len(),
                headroom_core::format_duration(cfg.step_ms)
            )?;
        }
    }
    Ok(())
}
