//! The three scheduled jobs: collect, forecast, act. Each takes the config
//! in force once at its start, does its work through the engine, records
//! its run (status, metrics, log) and reports to its scheduler.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use headroom_collect::SourceConfig;
use headroom_collect::limits::read_limits;
use headroom_collect::store::Query;
use headroom_core::{Action, Limits, Mode, SeriesData, SeriesKey, Verdict, format_ts};
use headroom_engine::runner::{self, Data, Forecasting, Reach};
use headroom_engine::{ModelSet, Settings};
use headroom_remediate::config::Platform;
use tokio_util::sync::CancellationToken;

use crate::metrics::{ActionLabels, DecisionLabels, GuardrailLabel, TargetLabel};
use crate::scheduler::{Ran, every};
use crate::state::{Daemon, DecisionRecord, TargetStatus};

/// How often the store is compacted to its retention.
pub const COMPACT_EVERY: Duration = Duration::from_secs(3_600);
/// How far back each pull of a range source reaches before the end of the
/// previous one, so a late sample is not missed.
pub const OVERLAP: Duration = Duration::from_secs(5 * 60);

/// Runs the three jobs, each on its own schedule, until `stop`.
pub async fn schedule(d: Arc<Daemon>, stop: CancellationToken) {
    let period = |pick: fn(&Settings) -> Duration| {
        let d = d.clone();
        move || pick(&d.settings())
    };
    let ranges = Arc::new(tokio::sync::Mutex::new(Ranges::default()));
    let (dc, df, da, sc) = (d.clone(), d.clone(), d.clone(), stop.clone());
    tokio::join!(
        every("collect", period(|s| s.schedule.collect.0), stop.clone(), move || {
            timed(dc.clone(), "collect", collect(dc.clone(), ranges.clone(), sc.clone()))
        }),
        every("forecast", period(|s| s.schedule.forecast.0), stop.clone(), move || {
            timed(df.clone(), "forecast", forecast(df.clone()))
        }),
        every("act", period(|s| s.schedule.act.0), stop.clone(), move || timed(da.clone(), "act", act(da.clone()))),
    );
}

async fn timed(d: Arc<Daemon>, job: &'static str, work: impl std::future::Future<Output = Result<(), String>>) -> Ran {
    let started = Instant::now();
    let result = work.await;
    d.job_done(job, started.elapsed().as_secs_f64(), &result);
    match result {
        Ok(()) => Ran::Ok,
        Err(e) => Ran::Failed(e),
    }
}

/// Per range source (by its description), the end of its last pull; and when the store was last compacted.
#[derive(Debug, Default)]
pub struct Ranges {
    pulled_to: BTreeMap<String, i64>,
    compacted: Option<Instant>,
}

/// Collects every source concurrently into the store. One failing source
/// is logged and counted; the others' samples are kept.
pub async fn collect(
    d: Arc<Daemon>,
    ranges: Arc<tokio::sync::Mutex<Ranges>>,
    stop: CancellationToken,
) -> Result<(), String> {
    let settings = d.settings();
    let now = headroom_actuate::audit::wall_clock_ms();
    let mut ranges = ranges.lock().await;
    let mut pulls = tokio::task::JoinSet::new();
    for (i, cfg) in settings.sources.iter().enumerate() {
        let (cfg, key) = with_range(cfg.clone(), &settings, &ranges.pulled_to, now);
        let stop = stop.clone();
        pulls.spawn(async move {
            let result = async {
                let source = cfg.build().map_err(|e| e.to_string())?;
                source.collect(&stop).await.map_err(|e| format!("{}: {e}", source.describe()))
            }
            .await;
            (i, key, result)
        });
    }
    let mut failed = Vec::new();
    let mut series = 0;
    while let Some(joined) = pulls.join_next().await {
        let Ok((i, key, result)) = joined else { continue };
        let written = match result {
            Ok(frame) => {
                let store = d.store.clone();
                tokio::task::spawn_blocking(move || store.write(&frame))
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|r| r.map_err(|e| e.to_string()))
            }
            Err(e) => Err(e),
        };
        match written {
            Ok(w) => {
                series += w.series;
                d.metrics.samples_collected.inc_by(w.points_in as u64);
                if let Some(key) = key {
                    ranges.pulled_to.insert(key, now);
                }
            }
            Err(e) => {
                tracing::warn!(source = i, "sources[{i}]: {e}");
                failed.push(format!("sources[{i}]: {e}"));
            }
        }
    }
    d.metrics.series_collected.set(series as i64);
    if ranges.compacted.is_none_or(|t| t.elapsed() >= COMPACT_EVERY) {
        let store = d.store.clone();
        let keep_from = now - settings.store.retention.ms();
        match tokio::task::spawn_blocking(move || store.compact(keep_from)).await {
            Ok(Ok(c)) => {
                ranges.compacted = Some(Instant::now());
                if c.points_removed > 0 {
                    tracing::info!(
                        removed = c.points_removed,
                        series_removed = c.series_removed,
                        "store compacted to its retention"
                    );
                }
            }
            Ok(Err(e)) => failed.push(format!("compacting the store: {e}")),
            Err(e) => failed.push(format!("compacting the store: {e}")),
        }
    }
    if failed.is_empty() || failed.len() < settings.sources.len() {
        d.set_collected();
    }
    if failed.is_empty() { Ok(()) } else { Err(failed.join("; ")) }
}

/// The range of this pull: from the end of the last one (less [`OVERLAP`]),
/// or `store.backfill` back for the first; the host source samples until the next collection.
fn with_range(
    cfg: SourceConfig,
    settings: &Settings,
    pulled: &BTreeMap<String, i64>,
    now: i64,
) -> (SourceConfig, Option<String>) {
    match cfg {
        SourceConfig::Prometheus(p) => {
            let key = format!("prometheus {} {:?} {:?}", p.url, p.presets, p.queries);
            let from =
                pulled.get(&key).map_or(now - settings.store.backfill.ms(), |&end| end - OVERLAP.as_millis() as i64);
            let range = Duration::from_millis((now - from).max(p.step.ms()) as u64);
            (SourceConfig::Prometheus(p.with_range(range, None, now)), Some(key))
        }
        SourceConfig::Host(mut h) => {
            if h.duration.is_none() {
                h.duration = Some(settings.schedule.collect.max(h.interval));
            }
            (SourceConfig::Host(h), None)
        }
        files @ SourceConfig::Files { .. } => (files, None),
    }
}

/// How far back the forecast job reads: a week for the weekly seasonal
/// baseline, and a day more to score the forecast of a day ago.
pub const FORECAST_HISTORY: Duration = Duration::from_secs(8 * 86_400);
/// How far back the act job reads: the health check scores the forecast of
/// one health window ago against what happened since; a day more for slack.
pub fn act_history(settings: &Settings) -> Duration {
    settings.policy.detect.health.window.0 + Duration::from_secs(86_400)
}

/// The series every target's entity has in the store, from `history` before
/// `now` on, and the limits.
fn load(d: &Daemon, settings: &Settings, now: i64, history: Duration) -> Result<(Vec<SeriesData>, Limits), String> {
    let entities: BTreeSet<&str> = settings.policy.targets.iter().map(|t| t.entity.as_str()).collect();
    let keys: Vec<SeriesKey> = d
        .store
        .list()
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter(|k| entities.contains(k.entity.as_str()))
        .collect();
    let start_ms = Some(now - history.as_millis() as i64);
    let mut raw = if keys.is_empty() {
        Vec::new()
    } else {
        d.store.read_series(&Query { series: Some(keys), start_ms, end_ms: None }).map_err(|e| e.to_string())?
    };
    // Supervised processes: their restarts, as the supervisor saw them.
    for t in settings.policy.targets.iter().filter(|t| t.platform == Platform::Process) {
        let name = t.entity.trim_start_matches("proc/");
        if let Ok(s) = d.supervisor.restart_series(name)
            && !raw.iter().any(|r| r.key == s.key)
        {
            raw.push(s);
        }
    }
    let limits = match &settings.forecast.limits {
        Some(path) => read_limits(path).map_err(|e| e.to_string())?,
        None => Limits::new(),
    };
    Ok((raw, limits))
}

/// The model of the config in force, loaded once per (name, directory).
fn models(d: &Daemon, settings: &Settings) -> Result<Arc<ModelSet>, String> {
    let mut held = d.models.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let f = &settings.forecast;
    if let Some(m) = held.as_ref()
        && m.name == f.model
        && m.dir == f.model_dir
    {
        return Ok(m.clone());
    }
    let m = Arc::new(ModelSet::load(&f.model, &f.model_dir).map_err(|e| e.to_string())?);
    *held = Some(m.clone());
    Ok(m)
}

/// Forecasts every target's series from the store.
pub async fn forecast(d: Arc<Daemon>) -> Result<(), String> {
    let settings = d.settings();
    let d2 = d.clone();
    let made = tokio::task::spawn_blocking(move || {
        let now = headroom_actuate::audit::wall_clock_ms();
        let (raw, limits) = load(&d2, &settings, now, FORECAST_HISTORY)?;
        if raw.is_empty() {
            return Err("the store holds no series of any target yet".to_string());
        }
        let models = models(&d2, &settings)?;
        runner::forecast(&Data { raw: &raw, limits: &limits }, &models, &settings.policy, now)
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())??;
    for (key, why) in &made.errors {
        tracing::warn!(series = %key, "forecast failed: {why}");
    }
    tracing::info!(forecasts = made.current.len(), fallbacks = made.fallbacks.len(), "forecast");
    d.set_forecasts(made);
    Ok(())
}

/// Decides on the latest forecasts and fresh samples, and carries the
/// decisions out through the audit log.
pub async fn act(d: Arc<Daemon>) -> Result<(), String> {
    let Some(forecasts) = d.forecasts() else {
        tracing::debug!("act: no forecast yet");
        return Ok(());
    };
    let settings = d.settings();
    let d2 = d.clone();
    let s2 = settings.clone();
    let read_at = headroom_actuate::audit::wall_clock_ms();
    let (raw, limits) = tokio::task::spawn_blocking(move || load(&d2, &s2, read_at, act_history(&s2)))
        .await
        .map_err(|e| e.to_string())??;
    let reach = if d.options.enforce {
        Reach::enforced(&settings.policy, &mut *d.platforms.lock().await).await
    } else {
        Reach::none()
    };
    for u in &reach.unreachable {
        tracing::warn!(target = %u.target, "not acted on: its platform could not be reached: {}", u.error);
        d.metrics.error("unreachable");
    }
    let now = headroom_actuate::audit::wall_clock_ms();
    let mut log = d.log.lock().await;
    let step = runner::step(
        &Data { raw: &raw, limits: &limits },
        Forecasting::Made(&forecasts),
        &settings.policy,
        &mut log,
        &reach,
        now,
        &d.interrupt,
    )
    .await
    .map_err(|e| e.to_string())?;
    drop(log);
    for w in &step.unsettled {
        tracing::warn!("{w}");
    }
    record(&d, &step, now);
    if step.failed() { Err("an action failed (see /api/v1/decisions)".into()) } else { Ok(()) }
}

fn action_label(a: Action) -> &'static str {
    match a {
        Action::None => "none",
        Action::ScaleTo { .. } => "scale",
        Action::Restart => "restart",
    }
}

/// What a step decided and did: into the status, the metrics and the log.
fn record(d: &Daemon, step: &headroom_engine::Step, now: i64) {
    let m = &d.metrics;
    let at = format_ts(now);
    let mut status = d.status();
    for (i, dec) in step.report.plan.decisions.iter().enumerate() {
        let mode = match dec.mode {
            Mode::DryRun => "dry-run",
            Mode::Enforce => "enforce",
        };
        m.decisions.get_or_create(&DecisionLabels { action: action_label(dec.action).into(), mode: mode.into() }).inc();
        for g in dec.guardrails.iter().filter(|g| g.verdict == Verdict::Blocked) {
            m.guardrail_blocks.get_or_create(&GuardrailLabel { guardrail: g.name.clone() }).inc();
        }
        let executed = step.executed.get(i).cloned();
        if let Some(e) = &executed
            && dec.action.is_some()
        {
            let outcome = e.label();
            m.actions
                .get_or_create(&ActionLabels { action: action_label(dec.action).into(), outcome: outcome.into() })
                .inc();
            // Field names as journald keeps them: `journalctl DECISION_ID=…` finds one decision's story.
            tracing::info!(target = %dec.target, decision_id = %e.id, action = %dec.action, outcome, "{}: {}", dec.reason, e.detail);
        }
        if dec.action.is_some() || dec.alert {
            status.decisions.push_back(DecisionRecord { at: at.clone(), decision: dec.clone(), executed });
            while status.decisions.len() > crate::state::DECISIONS_KEPT {
                status.decisions.pop_front();
            }
        }
    }
    status.targets.clear();
    let mut notes: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for n in &step.report.notes {
        notes.entry(n.target.as_str()).or_default().push(n.note.clone());
    }
    let decisions: BTreeMap<&str, &headroom_core::Decision> =
        step.report.plan.decisions.iter().map(|d| (d.target.as_str(), d)).collect();
    for (name, state) in &step.report.states {
        if let Some(h) = &state.health {
            let model = state.forecast.as_ref().map_or_else(String::new, |e| e.model.clone());
            let label = TargetLabel { target: name.clone(), model };
            if let Some(mase) = h.mase {
                m.forecast_mase.get_or_create(&label).set(mase);
            }
            if let Some(c) = h.coverage {
                m.forecast_coverage.get_or_create(&label).set(c);
            }
        }
        status.targets.insert(
            name.clone(),
            TargetStatus {
                health: state.health.clone(),
                replicas: state.replicas,
                last_sample: state.last_sample_ms.map(format_ts),
                notes: notes.remove(name.as_str()).unwrap_or_default(),
                decision: decisions.get(name.as_str()).map(|d| (*d).clone()),
            },
        );
    }
}
