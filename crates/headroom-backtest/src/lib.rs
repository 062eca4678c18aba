//! headroom's backtest: every model over recorded metrics on the reference
//! protocol (or the same rule on another step, horizon and origin spacing),
//! scored; then the policy replayed with each model's forecasts and without
//! any; the output files and the HTML report.
//!
//! This crate owns running a backtest from plain [`Options`] ([`run`]; its
//! halves [`backtest`] and [`decisions::replay_decisions`]), the policy
//! replayed when none is given ([`decisions::default_config`]), the output
//! writers ([`output`]), the one column list per score type that CSV,
//! Parquet, the terminal and the report share ([`columns`]), and the report
//! ([`report`]). It has no forecasting, scoring or decision logic of its own:
//! evaluation and metrics are headroom-forecast's, the replay is
//! headroom-engine's, every decision the policy's. It prints nothing (progress
//! goes to a [`Progress`]) and parses no command line.

pub mod columns;
pub mod crossval;
pub mod decisions;
pub mod error;
pub mod evaluation;
pub mod output;
pub mod progress;
pub mod report;

use headroom_core::Interrupt;
use headroom_engine::replay::ReplayReport;

pub use error::{Error, Result};
pub use evaluation::{Backtest, MAX_FORECAST_VALUES, Options, backtest};
pub use progress::{Progress, Quiet};

/// A finished backtest: what was written, for the caller to print.
#[derive(Debug)]
pub struct Outcome {
    /// The forecasts and their scores.
    pub backtest: Backtest,
    /// The decision replay, unless it was turned off.
    pub replay: Option<ReplayReport>,
}

/// Runs a whole backtest: [`backtest`], the decision replay (unless
/// `options.replay` is off), then, once nothing can stop it any more, every
/// output file and `report.html` into `options.out`. A raised `interrupt`
/// stops it before anything is written.
pub fn run(options: &Options, progress: &dyn Progress, interrupt: &Interrupt) -> Result<Outcome> {
    let bt = backtest(options, progress, interrupt)?;
    // The decisions each model's forecasts would have led to, and the reactive baseline's.
    let replay =
        if options.replay { Some(decisions::replay_decisions(options, &bt, progress, interrupt)?) } else { None };
    // Last chance to stop before anything is written: then every file is written.
    interrupt.check()?;
    output::write_outputs(&options.out, &bt, replay.as_ref())?;
    let report = report::ReportInput {
        title: match &bt.cross_validation {
            Some(cv) => format!(
                "headroom backtest of {}, the LSTM cross-validated by machine ({} folds)",
                options.data.display(),
                cv.folds.len()
            ),
            None => format!("headroom backtest of {}", options.data.display()),
        },
        series: &bt.series,
        forecasts: &bt.eval.forecasts,
        scores: &bt.eval.scores,
        series_scores: &bt.eval.series_scores,
        replay: replay.as_ref(),
    };
    report::write_report(&options.out.join("report.html"), &report)?;
    Ok(Outcome { backtest: bt, replay })
}
