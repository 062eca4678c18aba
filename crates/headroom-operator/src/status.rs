//! What a policy's status says, from what one reconcile saw: plain functions
//! of the previous status, the runner's [`Step`] and the time, tested without
//! any client.
//!
//! Conditions follow `metav1.Condition`: `lastTransitionTime` changes only
//! when the condition's status does, `observedGeneration` is the spec's
//! generation the condition describes.

use headroom_actuate::Executed;
use headroom_core::{Action, Decision, Evidence, Verdict};
use headroom_engine::{CycleReport, Step};
use headroom_remediate::config::Target;
use headroom_remediate::state::TargetState;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

use crate::crd::{CapacityPolicyStatus, LastAction, LastDecision, PredictedPeak};

/// The condition types, in the order they are written.
pub const CONDITIONS: [&str; 4] = ["Ready", "ForecastHealthy", "Acting", "Paused"];

/// RFC 3339 of `ms` since the epoch, to the second.
pub fn rfc3339(ms: i64) -> String {
    headroom_core::format_ts(ms - ms.rem_euclid(1000))
}

/// Why a policy is not ready: the condition's reason and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotReady {
    /// `InvalidSpec`, `Conflict`, `TargetNotFound`, `NoCapacity`, `MetricsUnavailable`, `ModelUnavailable`, `Failed`.
    pub reason: &'static str,
    /// What is wrong and what to do.
    pub message: String,
}

/// A status being written: the previous one with its conditions kept, so
/// transition times survive, and the fields this reconcile learned.
#[derive(Debug, Clone)]
pub struct Draft {
    /// The status to write.
    pub status: CapacityPolicyStatus,
    previous: Vec<Condition>,
    generation: Option<i64>,
    now_ms: i64,
}

impl Draft {
    /// Starts from `previous` (the object's status as read) for spec `generation` at `now_ms`.
    pub fn new(previous: Option<&CapacityPolicyStatus>, generation: Option<i64>, now_ms: i64) -> Self {
        let status = previous.cloned().unwrap_or_default();
        let previous = status.conditions.clone();
        let status = CapacityPolicyStatus { observed_generation: generation, ..status };
        Self { status, previous, generation, now_ms }
    }

    /// The same draft over a status read again (after a 409): its
    /// conditions' transition times, this draft's fields.
    pub fn rebase(&self, fresh: Option<&CapacityPolicyStatus>) -> Self {
        let previous = fresh.map(|s| s.conditions.clone()).unwrap_or_default();
        let mut next = Self { previous, ..self.clone() };
        let conditions = std::mem::take(&mut next.status.conditions);
        for c in conditions {
            next.set(&c.type_, c.status == "True", &c.reason, &c.message);
        }
        next
    }

    /// Whether condition `type_` was true before this reconcile.
    pub fn was(&self, type_: &str) -> Option<bool> {
        self.previous.iter().find(|c| c.type_ == type_).map(|c| c.status == "True")
    }

    /// Sets condition `type_`, keeping its transition time when its status is unchanged.
    pub fn set(&mut self, type_: &str, status: bool, reason: &str, message: &str) {
        let word = if status { "True" } else { "False" };
        let since = self
            .previous
            .iter()
            .find(|c| c.type_ == type_ && c.status == word)
            .map(|c| c.last_transition_time.clone())
            .unwrap_or_else(|| Time(Timestamp::from_millisecond(self.now_ms).unwrap_or(Timestamp::UNIX_EPOCH)));
        let c = Condition {
            type_: type_.into(),
            status: word.into(),
            reason: reason.into(),
            message: message.into(),
            observed_generation: self.generation,
            last_transition_time: since,
        };
        let conditions = &mut self.status.conditions;
        match conditions.iter_mut().find(|x| x.type_ == type_) {
            Some(x) => *x = c,
            None => conditions.push(c),
        }
        conditions.sort_by_key(|c| CONDITIONS.iter().position(|t| *t == c.type_).unwrap_or(CONDITIONS.len()));
    }

    /// Paused by annotation: no action, and the status says so.
    pub fn paused(&mut self) {
        self.status.mode = Some("Paused".into());
        self.set(
            "Paused",
            true,
            "Annotated",
            "headroom.dev/paused is \"true\": no forecast, no action until it is removed",
        );
        self.set("Acting", false, "Paused", "paused by annotation");
    }

    /// Not paused.
    pub fn unpaused(&mut self) {
        self.set("Paused", false, "NotPaused", "no headroom.dev/paused annotation");
    }

    /// Cannot evaluate: `Ready=False` with why, nothing acted on.
    pub fn not_ready(&mut self, why: &NotReady) {
        self.set("Ready", false, why.reason, &why.message);
        self.set("Acting", false, "NotReady", &format!("no action while not ready ({})", why.reason));
    }

    /// What one step of the runner forecast, decided and did for `target`,
    /// at `replicas` now; `enforce`: whether decisions are carried out.
    pub fn stepped(&mut self, target: &Target, step: &Step, replicas: u32, enforce: bool) {
        let r = &step.report;
        let state = r.states.get(&target.name);
        self.status.mode = Some(if enforce { "Enforce" } else { "DryRun" }.into());
        self.status.current_replicas = Some(replicas);
        self.predicted(r, state);
        self.decided(target, step, replicas);
        self.set("Ready", true, "Evaluated", &format!("forecast and decided at {}", rfc3339(self.now_ms)));
        self.forecast_healthy(r, state);
        if enforce {
            self.set("Acting", true, "Enforce", "mode Enforce: decisions are carried out");
        } else {
            self.set(
                "Acting",
                false,
                "DryRun",
                "mode DryRun: decisions are recorded and explained, nothing is changed",
            );
        }
    }

    /// What the forecast said: when it was made, the predicted peak (and
    /// which model made it), when saturation comes, and the fallback used.
    fn predicted(&mut self, r: &CycleReport, state: Option<&TargetState>) {
        let s = &mut self.status;
        s.last_forecast_time = r.forecasts.first().map(|f| rfc3339(f.origin_ms)).or(Some(rfc3339(self.now_ms)));
        let forecast = state.and_then(|st| st.forecast.as_ref());
        s.predicted_peak = forecast.map(|e| predicted_peak(r, e));
        s.saturation_eta = forecast.and_then(|e| e.crosses_at_ms).map(rfc3339);
        s.fallback = r.fallbacks.first().map(|f| format!("{} used instead of {}: {}", f.used, f.model, f.reason));
    }

    /// What was decided and done: the recommended replicas, the last
    /// decision, and the last action recorded by this step (one already
    /// done before is no news).
    fn decided(&mut self, target: &Target, step: &Step, replicas: u32) {
        let now = self.now_ms;
        let r = &step.report;
        let s = &mut self.status;
        let decision = r.plan.decisions.iter().find(|d| d.target == target.name);
        s.recommended_replicas = Some(match decision.map(|d| &d.action) {
            Some(Action::ScaleTo { replicas: n }) => *n,
            _ => replicas,
        });
        if let Some(d) = decision {
            s.last_decision = Some(LastDecision {
                id: d.id.clone(),
                action: d.action.to_string(),
                reason: d.reason.clone(),
                time: rfc3339(d.decided_at_ms),
            });
        }
        let executed = r.plan.decisions.iter().zip(&step.executed).filter(|(_, e)| e.outcome.is_some());
        for (d, e) in executed {
            if e.already_done() {
                continue;
            }
            let outcome = e.label();
            s.last_action = Some(LastAction {
                id: e.id.clone(),
                action: d.action.to_string(),
                outcome: outcome.into(),
                time: rfc3339(now),
                detail: e.detail.clone(),
                summary: format!("{}: {outcome}", d.action),
            });
        }
    }

    /// `ForecastHealthy`: false when the forecast is degraded or missing
    /// (reactive scaling then), true when healthy or not scored yet.
    fn forecast_healthy(&mut self, r: &CycleReport, state: Option<&TargetState>) {
        let health = state.and_then(|st| st.health.as_ref());
        match (health, state.and_then(|st| st.forecast.as_ref())) {
            (Some(h), _) if h.degraded => self.set(
                "ForecastHealthy",
                false,
                "Degraded",
                &format!(
                    "{}; falling back to reactive scaling: predictive actions are off until it recovers",
                    h.reason
                ),
            ),
            (Some(h), _) => self.set("ForecastHealthy", true, "Healthy", &h.reason),
            (None, None) => {
                let why = r.notes.iter().map(|n| n.note.as_str()).collect::<Vec<_>>().join("; ");
                self.set(
                    "ForecastHealthy",
                    false,
                    "NoForecast",
                    &format!("no forecast ({why}); falling back to reactive scaling on observed values"),
                )
            }
            (None, Some(_)) => self.set("ForecastHealthy", true, "NotScoredYet", "no earlier forecast to score yet"),
        }
    }
}

/// The predicted peak `e` of the step's forecast: value, time, share of the level, and the model that made it.
fn predicted_peak(r: &CycleReport, e: &Evidence) -> PredictedPeak {
    let share = if e.threshold > 0.0 { e.peak / e.threshold * 100.0 } else { f64::NAN };
    PredictedPeak {
        value: e.peak,
        at: rfc3339(e.peak_at_ms),
        quantile: e.quantile,
        saturation_level: e.threshold,
        // A fallback's forecast keeps the primary model's name: say which model made it.
        model: r
            .fallbacks
            .iter()
            .find(|f| f.series == e.series)
            .map_or_else(|| e.model.clone(), |f| format!("{} (instead of {})", f.used, f.model)),
        summary: format!("{share:.0}% at {}", short_time(e.peak_at_ms)),
    }
}

fn short_time(ms: i64) -> String {
    Timestamp::from_millisecond(ms).map(|t| t.strftime("%m-%d %H:%MZ").to_string()).unwrap_or_default()
}

/// One Kubernetes Event: its type, reason and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// Warning (true) or Normal.
    pub warning: bool,
    /// PascalCase reason (`ScaleRecommended`, `ActionSucceeded`, …).
    pub reason: String,
    /// The decision id and its explanation.
    pub message: String,
}

/// The Events of one step: one per decision that acts or is blocked (unless
/// `last_decision` already had it), and one per action outcome recorded now.
pub fn notes(decisions: &[Decision], executed: &[Executed], last_decision: Option<&str>) -> Vec<Note> {
    let mut out = Vec::new();
    for (i, d) in decisions.iter().enumerate() {
        let blocked = d.guardrails.iter().find(|g| g.verdict == Verdict::Blocked);
        let e = executed.get(i);
        let fresh = e.is_some_and(|e| e.outcome.is_some() && !e.already_done());
        if d.action.is_some() && fresh {
            let reason = match (&d.action, d.mode) {
                (Action::ScaleTo { .. }, headroom_core::Mode::DryRun) => "ScaleRecommended",
                (Action::ScaleTo { .. }, _) => "Scaling",
                (_, headroom_core::Mode::DryRun) => "RestartRecommended",
                _ => "Restarting",
            };
            out.push(Note {
                warning: false,
                reason: reason.into(),
                message: format!("{}: {}: {}", d.id, d.action, d.reason),
            });
        } else if !d.action.is_some()
            && let Some(g) = blocked
            && last_decision != Some(d.id.as_str())
        {
            out.push(Note {
                warning: true,
                reason: "ActionBlocked".into(),
                message: format!("{}: blocked by {}: {} ({})", d.id, g.name, g.detail, d.reason),
            });
        }
        if let Some(e) = e.filter(|_| fresh) {
            let (warning, reason) = match e.label() {
                "succeeded" => (false, "ActionSucceeded"),
                "dry_run" => (false, "DryRunRecorded"),
                _ => (true, "ActionFailed"),
            };
            out.push(Note { warning, reason: reason.into(), message: format!("{}: {}: {}", e.id, d.action, e.detail) });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cond<'a>(d: &'a Draft, t: &str) -> &'a Condition {
        d.status.conditions.iter().find(|c| c.type_ == t).unwrap()
    }

    #[test]
    fn transition_time_moves_only_when_the_status_does() {
        let mut first = Draft::new(None, Some(1), 1_000_000);
        first.set("Ready", true, "Evaluated", "ok");
        let t0 = cond(&first, "Ready").last_transition_time.clone();
        let mut second = Draft::new(Some(&first.status), Some(2), 2_000_000);
        second.set("Ready", true, "Evaluated", "ok again");
        assert_eq!(cond(&second, "Ready").last_transition_time, t0, "unchanged status keeps its time");
        assert_eq!(cond(&second, "Ready").observed_generation, Some(2));
        let mut third = Draft::new(Some(&second.status), Some(2), 3_000_000);
        third.set("Ready", false, "TargetNotFound", "gone");
        assert_ne!(cond(&third, "Ready").last_transition_time, t0);
        assert_eq!(third.was("Ready"), Some(true));
    }

    #[test]
    fn conditions_are_written_in_a_fixed_order() {
        let mut d = Draft::new(None, None, 0);
        d.paused();
        d.set("Ready", true, "Evaluated", "");
        let types: Vec<&str> = d.status.conditions.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, ["Ready", "Acting", "Paused"]);
    }

    fn decision(action: Action, blocked: bool) -> Decision {
        let mut d =
            Decision::new("checkout", "k8s/shop/deployment/checkout", headroom_core::Mode::Enforce, "saturation", 0, 0);
        d.set_action(action);
        d.reason = "p90 goes above the level".into();
        if blocked {
            d.guardrails.push(headroom_core::Guardrail {
                name: "cooldown".into(),
                verdict: Verdict::Blocked,
                detail: "last action 5m ago".into(),
            });
        }
        d
    }

    fn executed(d: &Decision, outcome: Option<headroom_remediate::state::Outcome>, detail: &str) -> Executed {
        Executed { id: d.id.clone(), outcome, detail: detail.into() }
    }

    #[test]
    fn an_action_makes_two_events_and_a_repeated_one_none() {
        use headroom_remediate::state::Outcome;
        let d = decision(Action::ScaleTo { replicas: 3 }, false);
        let fresh = notes(std::slice::from_ref(&d), &[executed(&d, Some(Outcome::Succeeded), "scaled")], None);
        let reasons: Vec<&str> = fresh.iter().map(|n| n.reason.as_str()).collect();
        assert_eq!(reasons, ["Scaling", "ActionSucceeded"]);
        assert!(fresh.iter().all(|n| n.message.starts_with(&d.id)), "{fresh:?}");
        let again = executed(&d, Some(Outcome::Succeeded), "already carried out: not repeated");
        assert!(notes(std::slice::from_ref(&d), &[again], None).is_empty(), "a decision id already done: no event");
        let failed = notes(
            std::slice::from_ref(&d),
            &[executed(&d, Some(Outcome::Failed { error: "403".into() }), "403")],
            None,
        );
        assert!(failed[1].warning && failed[1].reason == "ActionFailed", "{failed:?}");
    }

    #[test]
    fn a_blocked_decision_is_told_once() {
        let d = decision(Action::None, true);
        let first = notes(std::slice::from_ref(&d), &[executed(&d, None, "no action")], None);
        assert_eq!(first.len(), 1);
        assert!(first[0].warning && first[0].message.contains("blocked by cooldown"), "{first:?}");
        assert!(notes(std::slice::from_ref(&d), &[executed(&d, None, "no action")], Some(&d.id)).is_empty());
    }

    #[test]
    fn rfc3339_is_to_the_second_in_utc() {
        assert_eq!(rfc3339(1_764_700_000_123), "2025-12-02T18:26:40Z");
    }
}
