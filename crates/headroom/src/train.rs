//! `headroom train`: fit the global LSTM on recorded metrics and save it.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use headroom_collect::resample::{ResampleConfig, resample_frame};
use headroom_core::Interrupt;
use headroom_forecast::History;
use headroom_forecast::protocol::Protocol;
use headroom_lstm::{LstmConfig, TrainOptions, train};

use crate::cli::TrainArgs;
use headroom_collect::recorded::load;

pub fn run(args: TrainArgs, interrupt: &Interrupt) -> anyhow::Result<ExitCode> {
    let cfg: LstmConfig = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            serde_json::from_str(&text).with_context(|| format!("{}: not an LSTM configuration", path.display()))?
        }
        None => LstmConfig::default(),
    };
    // Checked before the data is read: an absurd size is an error, not an abort.
    cfg.validate().with_context(|| {
        format!("{}", args.config.as_deref().unwrap_or(Path::new("the default LSTM config")).display())
    })?;
    let frame = load(&args.data, &args.file.options()?)?;
    let rcfg = ResampleConfig { step_ms: cfg.step_ms, max_gap_ms: i64::MAX, strict: false };
    let series = resample_frame(&frame, &rcfg)?;
    let histories: Vec<History<'_>> = series.iter().filter(|s| !s.values.is_empty()).map(History::of).collect();
    let opts = TrainOptions {
        cut: args.before_first_origin.then(Protocol::reference),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        progress: !args.quiet,
        interrupt: interrupt.clone(),
    };
    eprintln!(
        "train: {} series from {}{}",
        histories.len(),
        args.data.display(),
        if args.before_first_origin { ", each only up to its first evaluation origin" } else { "" }
    );
    let (model, report) = train(&histories, &cfg, &opts)?;
    model.save(&args.out).with_context(|| format!("saving the model to {}", args.out.display()))?;
    eprintln!("{}", serde_json::to_string_pretty(&report)?);
    eprintln!("saved {}/model.safetensors and {}/card.json", args.out.display(), args.out.display());
    Ok(ExitCode::SUCCESS)
}
