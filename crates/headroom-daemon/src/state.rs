//! What the daemon holds between jobs: the config in force, the latest
//! forecasts and decisions (what `/api/v1/…` shows), readiness, and the
//! handles of the store, the audit log, the actuators and the supervisor.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use headroom_actuate::process::Supervisor;
use headroom_actuate::{AuditLog, Executed, Platforms};
use headroom_collect::store::Store;
use headroom_core::{Decision, Interrupt};
use headroom_engine::{Forecasts, ModelSet, Settings};
use headroom_remediate::ForecastHealth;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use crate::Options;
use crate::metrics::Metrics;

/// Decisions kept for `/api/v1/decisions` (the audit log keeps all).
pub const DECISIONS_KEPT: usize = 1_000;

/// The outcome of a reload, as `POST /-/reload` reports it.
pub type ReloadReply = oneshot::Sender<Result<(), Vec<String>>>;

/// A job's last run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct JobStatus {
    /// When it last ended (RFC 3339).
    pub last_run: Option<String>,
    /// When it last succeeded (RFC 3339).
    pub last_success: Option<String>,
    /// The last error, if the last run failed.
    pub last_error: Option<String>,
    /// Seconds the last run took.
    pub seconds: f64,
}

/// One decision with what became of it.
#[derive(Debug, Clone, Serialize)]
pub struct DecisionRecord {
    /// When it was decided (RFC 3339).
    pub at: String,
    /// The decision: action, reason, evidence and every guardrail's verdict.
    pub decision: Decision,
    /// What was carried out and recorded (none: a stop came before it).
    pub executed: Option<Executed>,
}

/// Per target, what the last act job saw.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TargetStatus {
    /// The health check of its recent forecasts.
    pub health: Option<ForecastHealth>,
    /// Replicas now, as its platform (or its config) says.
    pub replicas: Option<u32>,
    /// The newest sample of its series (RFC 3339).
    pub last_sample: Option<String>,
    /// What could not be evaluated, and why.
    pub notes: Vec<String>,
    /// The last decision, with its reason and every guardrail's verdict.
    pub decision: Option<Decision>,
}

/// What `/api/v1/…` shows.
#[derive(Debug, Default)]
pub struct Status {
    /// Per job.
    pub jobs: BTreeMap<&'static str, JobStatus>,
    /// Per target name.
    pub targets: BTreeMap<String, TargetStatus>,
    /// The latest decisions, oldest first.
    pub decisions: VecDeque<DecisionRecord>,
    /// The last reload's outcome (none since the start).
    pub last_reload: Option<ReloadRecord>,
}

/// How the last reload went, as `/api/v1/targets` and `headroom service status` show it.
#[derive(Debug, Clone, Serialize)]
pub struct ReloadRecord {
    /// When (RFC 3339).
    pub at: String,
    /// Whether the new config took effect.
    pub successful: bool,
    /// Why not, a problem each.
    pub problems: Vec<String>,
}

/// The daemon's shared state.
#[derive(Debug)]
pub struct Daemon {
    /// How it was started.
    pub options: Options,
    settings: RwLock<Arc<Settings>>,
    /// Its metrics.
    pub metrics: Metrics,
    /// What the API shows.
    pub status: Mutex<Status>,
    forecasts: RwLock<Option<Arc<Forecasts>>>,
    /// The model in use, loaded once per (name, directory).
    pub models: Mutex<Option<Arc<ModelSet>>>,
    /// The store (one writer per store: its lock is taken per write).
    pub store: Store,
    /// The audit log, written only by the act job.
    pub log: tokio::sync::Mutex<AuditLog>,
    /// The actuators, built on first use and kept.
    pub platforms: tokio::sync::Mutex<Platforms>,
    /// The supervisor of `[[processes]]`.
    pub supervisor: Arc<Supervisor>,
    /// Raised when shutdown begins: the act job stops between decisions.
    pub interrupt: Interrupt,
    collected: AtomicBool,
    forecast: AtomicBool,
    stopping: AtomicBool,
    reloads: Mutex<Option<mpsc::Sender<ReloadReply>>>,
    config_hash: Mutex<Option<u64>>,
}

impl Daemon {
    /// The state at start-up.
    pub fn new(
        options: Options,
        settings: Settings,
        store: Store,
        log: AuditLog,
        platforms: Platforms,
        supervisor: Arc<Supervisor>,
        interrupt: Interrupt,
    ) -> Self {
        Self {
            options,
            settings: RwLock::new(Arc::new(settings)),
            metrics: Metrics::new(),
            status: Mutex::new(Status::default()),
            forecasts: RwLock::new(None),
            models: Mutex::new(None),
            store,
            log: tokio::sync::Mutex::new(log),
            platforms: tokio::sync::Mutex::new(platforms),
            supervisor,
            interrupt,
            collected: AtomicBool::new(false),
            forecast: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            reloads: Mutex::new(None),
            config_hash: Mutex::new(None),
        }
    }

    /// The config in force. A job takes it once at its start, so a reload
    /// applies at the next job: never in the middle of one.
    pub fn settings(&self) -> Arc<Settings> {
        self.settings.read().map_or_else(|e| e.into_inner().clone(), |s| s.clone())
    }

    /// Puts `settings` in force, atomically.
    pub fn replace_settings(&self, settings: Settings) {
        let mut s = self.settings.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        *s = Arc::new(settings);
    }

    /// The latest forecasts, if any were made.
    pub fn forecasts(&self) -> Option<Arc<Forecasts>> {
        self.forecasts.read().map_or_else(|e| e.into_inner().clone(), |f| f.clone())
    }

    /// Keeps `f` as the latest forecasts; the daemon is ready once it has
    /// collected and forecast once.
    pub fn set_forecasts(&self, f: Forecasts) {
        *self.forecasts.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Arc::new(f));
        self.forecast.store(true, Ordering::SeqCst);
    }

    /// Marks the first successful collection.
    pub fn set_collected(&self) {
        self.collected.store(true, Ordering::SeqCst);
    }

    /// Ready: collected and forecast at least once, and not shutting down.
    pub fn ready(&self) -> bool {
        self.collected.load(Ordering::SeqCst) && self.forecast.load(Ordering::SeqCst) && !self.stopping()
    }

    /// Whether shutdown has begun.
    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Shutdown begins: `/readyz` answers 503 from now on.
    pub fn begin_shutdown(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    /// The status, locked (never held across an await).
    pub fn status(&self) -> std::sync::MutexGuard<'_, Status> {
        self.status.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Where reload requests go.
    pub fn set_reloads(&self, tx: mpsc::Sender<ReloadReply>) {
        *self.reloads.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(tx);
    }

    /// Asks for a reload and waits for its outcome.
    pub async fn reload(&self) -> Result<(), Vec<String>> {
        let tx = self.reloads.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        let Some(tx) = tx else { return Err(vec!["the daemon is not accepting reloads".into()]) };
        let (reply, answer) = oneshot::channel();
        if tx.send(reply).await.is_err() {
            return Err(vec!["the daemon is shutting down".into()]);
        }
        answer.await.unwrap_or_else(|_| Err(vec!["the reload was abandoned: the daemon is shutting down".into()]))
    }

    /// The hash of the config file as last read (for the file watch).
    pub fn config_hash(&self) -> Option<u64> {
        *self.config_hash.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records the hash of the config file as just read.
    pub fn set_config_hash(&self, hash: Option<u64>) {
        *self.config_hash.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = hash;
    }

    /// Records a job's run.
    pub fn job_done(&self, job: &'static str, seconds: f64, result: &Result<(), String>) {
        let now = headroom_core::format_ts(headroom_actuate::audit::wall_clock_ms());
        let labels = |r: &str| crate::metrics::RunLabels { task: job.into(), result: r.into() };
        let job_label = crate::metrics::JobLabel { task: job.into() };
        self.metrics.job_duration.get_or_create(&job_label).observe(seconds);
        let mut status = self.status();
        let s = status.jobs.entry(job).or_default();
        s.last_run = Some(now.clone());
        s.seconds = seconds;
        match result {
            Ok(()) => {
                self.metrics.job_runs.get_or_create(&labels("ok")).inc();
                self.metrics.job_last_success.get_or_create(&job_label).set(unix_seconds());
                s.last_success = Some(now);
                s.last_error = None;
            }
            Err(e) => {
                self.metrics.job_runs.get_or_create(&labels("error")).inc();
                self.metrics.error(job);
                s.last_error = Some(e.clone());
            }
        }
    }
}

/// Now, as Unix seconds (for gauges of times).
pub fn unix_seconds() -> f64 {
    headroom_actuate::audit::wall_clock_ms() as f64 / 1000.0
}
