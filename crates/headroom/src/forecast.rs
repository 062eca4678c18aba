//! `headroom forecast`: from the end of the data into the future.

use std::process::ExitCode;

use headroom_backtest::MAX_FORECAST_VALUES;
use headroom_backtest::output::write_forecasts;
use headroom_collect::resample::{DEFAULT_MAX_GAP_MS, ResampleConfig, resample_frame};
use headroom_core::{Forecast, Interrupt, format_duration, parse_duration};
use headroom_forecast::evaluate::forecast_until;
use headroom_forecast::protocol::Protocol;
use headroom_forecast::{Forecaster, History};

use crate::cli::ForecastArgs;
use headroom_collect::recorded::load;
use headroom_engine::Settings;
use headroom_engine::models::{fallback_chain, model};

pub fn run(args: ForecastArgs, interrupt: &Interrupt) -> anyhow::Result<ExitCode> {
    let step_ms = Protocol::reference().step_ms;
    let horizon_ms = i64::try_from(parse_duration(&args.horizon)?.as_millis())?;
    if horizon_ms % step_ms != 0 {
        anyhow::bail!("--horizon {}: must be a whole number of {} bins", args.horizon, format_duration(step_ms));
    }
    let horizon = (horizon_ms / step_ms) as usize;
    // With --config, a scheduled job beside the daemon: its store, its model, its targets' series.
    let settings = args.config.as_deref().map(Settings::load).transpose()?;
    let data = match (&args.data, &settings) {
        (Some(d), _) => d.clone(),
        (None, Some(s)) => s.store.path.clone(),
        (None, None) => "data/sample/metrics.parquet".into(),
    };
    let model_dir = match (&args.model, &settings) {
        (Some(m), _) => m.clone(),
        (None, Some(s)) => s.forecast.model_dir.clone(),
        (None, None) => "models/default".into(),
    };
    let wanted = |key: &headroom_core::SeriesKey| {
        args.shard.is_none_or(|s| s.holds(key))
            && settings
                .as_ref()
                .is_none_or(|s| s.policy.targets.iter().any(|t| t.entity == key.entity && t.metric == key.metric))
    };
    let frame = load(&data, &args.file.options()?)?;
    // Short gaps are interpolated; a long gap inside a model's window is an error naming the series and time.
    let cfg = ResampleConfig { step_ms, max_gap_ms: DEFAULT_MAX_GAP_MS, strict: false };
    let series = resample_frame(&frame, &cfg)?;
    let histories: Vec<History<'_>> =
        series.iter().filter(|s| !s.values.is_empty() && wanted(&s.key)).map(History::of).collect();
    // Bounded before any work: at most a week ahead, or as far as the longest
    // history reaches back if that is longer, and at most 2^28 values out.
    let longest = histories.iter().map(|h| h.values.len()).max().unwrap_or(0);
    let week = (7 * 86_400_000 / step_ms) as usize;
    if horizon > longest.max(week) {
        anyhow::bail!(
            "--horizon {}: {horizon} bins of {}, more than a week and longer than the longest series in {} \
             ({longest} bins, {}); a forecast reaches at most a week, or as far ahead as its history reaches back",
            args.horizon,
            format_duration(step_ms),
            data.display(),
            format_duration(longest as i64 * step_ms)
        );
    }
    let values = horizon.saturating_mul(3).saturating_mul(histories.len()).saturating_mul(args.models.len());
    if values > MAX_FORECAST_VALUES {
        anyhow::bail!(
            "--horizon {} over {} series and {} models would be {values} forecast values (more than {}, 2 GiB): \
             shorten --horizon or forecast fewer series or models at a time",
            args.horizon,
            histories.len(),
            args.models.len(),
            MAX_FORECAST_VALUES
        );
    }
    let chain = fallback_chain()?;
    let chain: Vec<&dyn Forecaster> = chain.iter().map(|m| m.as_ref()).collect();
    let mut forecasts: Vec<Forecast> = Vec::new();
    let mut fallbacks = Vec::new();
    for name in &args.models {
        let m: Box<dyn Forecaster> = model(name, &model_dir)?;
        let (f, used) = forecast_until(m.as_ref(), &chain, &histories, horizon, interrupt)?;
        forecasts.extend(f);
        fallbacks.extend(used);
    }
    write_forecasts(&args.out, &forecasts)?;
    if !fallbacks.is_empty() {
        let sidecar = args.out.with_extension("fallbacks.json");
        std::fs::write(&sidecar, serde_json::to_string_pretty(&fallbacks)?)?;
        for f in &fallbacks {
            eprintln!("{}: {} used {} instead: {}", f.series, f.model, f.used, f.reason);
        }
        eprintln!("{} series forecast by a fallback model, listed in {}", fallbacks.len(), sidecar.display());
    }
    eprintln!(
        "wrote {} forecasts ({} series × {} models, {horizon} bins of {}) to {}",
        forecasts.len(),
        histories.len(),
        args.models.len(),
        format_duration(step_ms),
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}
