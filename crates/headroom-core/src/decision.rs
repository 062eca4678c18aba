//! Decisions: what the policy chose for one target, and why.
//!
//! A decision is data. It is written to the audit log before anything is
//! carried out, and its [`Decision::id`] is deterministic ([`decision_id`]:
//! target, action, risk, risk window and mode), so the same reason found again
//! yields the same id and an actuator that already carried it out does nothing.

use std::fmt;
use std::hash::Hasher;

use serde::{Deserialize, Serialize};

/// What to do to a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Action {
    /// Nothing (the explanation says why; `alert` may ask a human to look).
    None,
    /// Set the replica count.
    ScaleTo {
        /// The new replica count.
        replicas: u32,
    },
    /// Restart the service or roll out the workload again.
    Restart,
}

impl Action {
    /// Whether the action changes anything.
    pub fn is_some(&self) -> bool {
        !matches!(self, Action::None)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::None => write!(f, "none"),
            Action::ScaleTo { replicas } => write!(f, "scale_to {replicas}"),
            Action::Restart => write!(f, "restart"),
        }
    }
}

/// Whether a decision is carried out or only recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Record and explain, change nothing (the default).
    #[default]
    DryRun,
    /// Carry the decision out.
    Enforce,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::DryRun => "dry-run",
            Mode::Enforce => "enforce",
        })
    }
}

/// A guardrail's verdict on a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The guardrail let the action through unchanged.
    Passed,
    /// The guardrail changed the action (e.g. clamped the replica count).
    Clamped,
    /// The guardrail stopped the action.
    Blocked,
}

/// One guardrail checked, with what it said.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Guardrail {
    /// Name, e.g. `cooldown`, `max_step`, `hourly_cap`.
    pub name: String,
    /// What it did.
    pub verdict: Verdict,
    /// The numbers behind it, in words.
    pub detail: String,
}

/// The forecast evidence behind a predictive decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// Series the evidence comes from (`entity:metric`).
    pub series: String,
    /// Forecasting model, or `observed` for evidence from samples.
    pub model: String,
    /// Forecast origin, ms since the epoch (the newest sample time for observed evidence).
    pub origin_ms: i64,
    /// Quantile used (0.1, 0.5, 0.9), if the evidence is a forecast.
    pub quantile: Option<f64>,
    /// Predicted (or observed) peak.
    pub peak: f64,
    /// When the peak is predicted (or was observed).
    pub peak_at_ms: i64,
    /// The threshold value it is compared with.
    pub threshold: f64,
    /// When the threshold is first crossed, if it is.
    pub crosses_at_ms: Option<i64>,
}

/// What the policy chose for one target, with its explanation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// Deterministic id: [`decision_id`] of target, action, risk, risk window and mode.
    pub id: String,
    /// Target name, from the configuration.
    pub target: String,
    /// Entity acted on.
    pub entity: String,
    /// What to do.
    pub action: Action,
    /// Dry-run (default) or enforce.
    pub mode: Mode,
    /// The risk that led here (`saturation`, `restart_loop`, …), or `none`.
    pub risk: String,
    /// Start of the risk window, ms since the epoch (part of the id).
    pub window_start_ms: i64,
    /// One sentence: why this action (or why none).
    pub reason: String,
    /// The forecast or observation behind it.
    pub evidence: Option<Evidence>,
    /// Every guardrail checked, in order.
    pub guardrails: Vec<Guardrail>,
    /// Whether a human should look (ladder exhausted, verification failed, forecast degraded).
    pub alert: bool,
    /// When the decision was made (the `now` given to the policy).
    pub decided_at_ms: i64,
}

impl Decision {
    /// A decision to do nothing (yet) about `risk` on `target`, with its id,
    /// no reason, evidence or guardrails; [`Decision::set_action`] changes the
    /// action and the id with it.
    pub fn new(target: &str, entity: &str, mode: Mode, risk: &str, window_start_ms: i64, decided_at_ms: i64) -> Self {
        Self {
            id: decision_id(target, &Action::None, risk, window_start_ms, mode),
            target: target.into(),
            entity: entity.into(),
            action: Action::None,
            mode,
            risk: risk.into(),
            window_start_ms,
            reason: String::new(),
            evidence: None,
            guardrails: Vec::new(),
            alert: false,
            decided_at_ms,
        }
    }

    /// Sets the action, and the id that goes with it.
    pub fn set_action(&mut self, action: Action) {
        self.action = action;
        self.id = decision_id(&self.target, &action, &self.risk, self.window_start_ms, self.mode);
    }

    /// The decision with `action` (and its id).
    pub fn with_action(mut self, action: Action) -> Self {
        self.set_action(action);
        self
    }

    /// This decision recorded as a dry run instead of carried out (an
    /// enforced target acted on without `--enforce`): mode dry-run, the id
    /// that goes with it, and the `mode` guardrail saying `why`. Its own id
    /// keeps the rehearsal apart from the enforced decision in the audit log,
    /// so recording it never makes the real action count as done.
    pub fn as_dry_run(&self, why: &str) -> Decision {
        let mut d = self.clone();
        d.mode = Mode::DryRun;
        d.id = decision_id(&d.target, &d.action, &d.risk, d.window_start_ms, d.mode);
        let detail = format!("dry-run: {why}; recorded only (the enforced decision is {})", self.id);
        match d.guardrails.iter_mut().find(|g| g.name == "mode") {
            Some(g) => g.detail = detail,
            None => d.guardrails.push(Guardrail { name: "mode".into(), verdict: Verdict::Passed, detail }),
        }
        d
    }
}

/// The deterministic decision id: FNV-1a 64 of `target`, `action`, `risk`,
/// `window_start_ms` and `mode`, as 16 hex digits. Stable across runs, builds
/// and platforms. The mode is part of it so that a decision recorded in
/// dry-run is still carried out once the target is switched to enforce.
pub fn decision_id(target: &str, action: &Action, risk: &str, window_start_ms: i64, mode: Mode) -> String {
    let mut h = crate::Fnv1a64::default();
    h.write(format!("{target}\u{1f}{action}\u{1f}{risk}\u{1f}{window_start_ms}\u{1f}{mode}").as_bytes());
    format!("{:016x}", h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_depend_on_every_part_and_nothing_else() {
        let a = decision_id("cart", &Action::ScaleTo { replicas: 4 }, "saturation", 3_600_000, Mode::DryRun);
        assert_eq!(a, decision_id("cart", &Action::ScaleTo { replicas: 4 }, "saturation", 3_600_000, Mode::DryRun));
        assert_eq!(a.len(), 16);
        for other in [
            decision_id("carts", &Action::ScaleTo { replicas: 4 }, "saturation", 3_600_000, Mode::DryRun),
            decision_id("cart", &Action::ScaleTo { replicas: 5 }, "saturation", 3_600_000, Mode::DryRun),
            decision_id("cart", &Action::Restart, "saturation", 3_600_000, Mode::DryRun),
            decision_id("cart", &Action::ScaleTo { replicas: 4 }, "memory_leak", 3_600_000, Mode::DryRun),
            decision_id("cart", &Action::ScaleTo { replicas: 4 }, "saturation", 7_200_000, Mode::DryRun),
            decision_id("cart", &Action::ScaleTo { replicas: 4 }, "saturation", 3_600_000, Mode::Enforce),
        ] {
            assert_ne!(a, other);
        }
        // Pinned: ids written to old audit logs must still match after a rebuild.
        assert_eq!(decision_id("t", &Action::Restart, "restart_loop", 0, Mode::DryRun), "e355218aa1bdfbd7");
    }

    #[test]
    fn a_dry_run_twin_has_its_own_id_and_says_why() {
        let d = Decision::new("cart", "k8s/shop/deployment/cart", Mode::Enforce, "saturation", 0, 0)
            .with_action(Action::ScaleTo { replicas: 4 });
        let twin = d.as_dry_run("--enforce not given");
        assert_eq!(twin.mode, Mode::DryRun);
        assert_eq!(twin.id, decision_id("cart", &Action::ScaleTo { replicas: 4 }, "saturation", 0, Mode::DryRun));
        assert_ne!(twin.id, d.id);
        let g = twin.guardrails.iter().find(|g| g.name == "mode").unwrap();
        assert!(g.detail.contains("--enforce not given") && g.detail.contains(&d.id), "{}", g.detail);
        assert_eq!(twin.as_dry_run("again").id, twin.id);
    }

    #[test]
    fn actions_serialise_as_tagged_objects() {
        let j = serde_json::to_string(&Action::ScaleTo { replicas: 3 }).unwrap();
        assert_eq!(j, r#"{"type":"scale_to","replicas":3}"#);
        assert_eq!(Action::ScaleTo { replicas: 3 }.to_string(), "scale_to 3");
        assert_eq!(serde_json::to_string(&Mode::DryRun).unwrap(), r#""dry-run""#);
    }
}
