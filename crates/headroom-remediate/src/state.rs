//! The observed state of each target, as the policy sees it: fresh or stale
//! samples, current replicas, recent actual values, forecast health, and the
//! actions already taken (read back from the audit log).

use headroom_core::{Action, Decision, Evidence, Mode};
use serde::{Deserialize, Serialize};

use crate::risk::ForecastHealth;

/// How an action recorded in the audit log ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    /// An intent was written but no outcome yet (in flight, or the process died).
    Pending,
    /// Recorded only: the target was in dry-run.
    DryRun,
    /// Carried out.
    Succeeded,
    /// Tried and failed.
    Failed {
        /// What the actuator said.
        error: String,
    },
    /// Carried out, but the metric did not come back under the threshold (or the
    /// crash pattern did not go away) within the verification window.
    VerificationFailed {
        /// What was still wrong.
        detail: String,
    },
}

/// One action taken (or recorded in dry-run) earlier, for cooldowns, caps,
/// escalation and verification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PastAction {
    /// Decision id.
    pub id: String,
    /// Target name.
    pub target: String,
    /// What was done.
    pub action: Action,
    /// Risk kind that led to it (`saturation`, `restart_loop`, …).
    pub risk: String,
    /// Start of that risk's window.
    pub window_start_ms: i64,
    /// When it was decided (the intent's `decided_at_ms`).
    pub at_ms: i64,
    /// Dry-run or enforce.
    pub mode: Mode,
    /// How it ended.
    pub outcome: Outcome,
}

impl PastAction {
    /// The record of `decision`, taken at `at_ms`, that ended as `outcome`.
    pub fn of(decision: &Decision, at_ms: i64, outcome: Outcome) -> Self {
        Self {
            id: decision.id.clone(),
            target: decision.target.clone(),
            action: decision.action,
            risk: decision.risk.clone(),
            window_start_ms: decision.window_start_ms,
            at_ms,
            mode: decision.mode,
            outcome,
        }
    }
}

/// What is known about one target now.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TargetState {
    /// Time of the newest sample of the target's metric, if any.
    pub last_sample_ms: Option<i64>,
    /// Current replica count, if the target is scalable and it is known.
    pub replicas: Option<u32>,
    /// Recent actual values of the target's metric (newest last), over the
    /// scale-in window; used for scale-in and for verification.
    pub recent: Vec<f64>,
    /// The newest forecast of the target's metric at the target's quantile:
    /// its peak over the horizon and the saturation level (for scale-in and
    /// verification; crossings arrive as risks).
    pub forecast: Option<Evidence>,
    /// The saturation level of the target's metric at the current replicas
    /// (for the reactive rules that work without a forecast).
    pub level: Option<f64>,
    /// Rolling accuracy of recent forecasts of the target's metric.
    pub health: Option<ForecastHealth>,
    /// Times the target was (re)started recently, by anyone (from its restart
    /// counter), so restarts headroom adds never hit the platform's start limit.
    pub recent_starts_ms: Vec<i64>,
    /// Actions already taken for this target, oldest first.
    pub history: Vec<PastAction>,
}
