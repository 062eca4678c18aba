//! `headroom backtest`: the flags become [`headroom_backtest::Options`], the
//! library runs the backtest and writes its files; this prints the scores,
//! the progress on stderr and where the files went.

use std::io::Write;
use std::process::ExitCode;
use std::sync::OnceLock;

use headroom_backtest::output::{scores_json, scores_text};
use headroom_backtest::{Options, Outcome, Progress};
use headroom_core::Interrupt;
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::BacktestArgs;
use crate::output::Output;

pub fn run(args: BacktestArgs, interrupt: &Interrupt) -> anyhow::Result<ExitCode> {
    let options = Options {
        data: args.data,
        limits: args.limits,
        model: args.model,
        models: args.models,
        step: args.step,
        horizon: args.horizon,
        origin_every: args.origin_every,
        out: args.out,
        config: args.config,
        decide_every: args.decide_every,
        replay: !args.no_replay,
        cross_validate: args
            .cross_validate
            .map(|folds| headroom_backtest::crossval::CrossValidate { folds, config: args.cv_config }),
    };
    let Outcome { backtest: bt, replay } = headroom_backtest::run(&options, &Stderr::default(), interrupt)?;
    let mut out = std::io::stdout().lock();
    match args.output {
        Output::Json => writeln!(out, "{}", serde_json::to_string_pretty(&scores_json(&bt.eval, replay.as_ref()))?)?,
        Output::Table => write!(out, "{}", scores_text(&bt.eval, replay.as_ref()))?,
    }
    eprintln!(
        "wrote {0}/forecasts.parquet, {0}/scores.json, {0}/scores.parquet, {0}/scores.csv{2}{4} and {0}/report.html \
         ({1} series, {3} with a saturation threshold)",
        options.out.display(),
        bt.series.len(),
        if replay.is_some() {
            format!(", {0}/decisions.parquet, {0}/decision_scores.csv", options.out.display())
        } else {
            String::new()
        },
        bt.with_threshold(),
        if bt.cross_validation.is_some() {
            format!(", {0}/cross_validation.json", options.out.display())
        } else {
            String::new()
        }
    );
    Ok(ExitCode::SUCCESS)
}

/// Progress on stderr: each note a line, the decision replay a bar (drawn
/// only on a terminal).
#[derive(Debug, Default)]
struct Stderr {
    bar: OnceLock<ProgressBar>,
}

impl Progress for Stderr {
    fn note(&self, line: &str) {
        eprintln!("{line}");
    }

    fn replay_started(&self, runs: u64) {
        let style = ProgressStyle::with_template("replay {bar:30} {pos}/{len} {msg} ({elapsed}, ~{eta} left)")
            .expect("a valid template");
        let _ = self.bar.set(ProgressBar::new(runs).with_style(style));
    }

    fn replaying(&self, policy: &str, target: &str) {
        if let Some(bar) = self.bar.get() {
            bar.set_message(format!("{policy}: {target}"));
            bar.inc(1);
        }
    }

    fn replay_finished(&self) {
        if let Some(bar) = self.bar.get() {
            bar.finish_and_clear();
        }
    }
}
