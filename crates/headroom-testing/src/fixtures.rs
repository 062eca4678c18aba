//! Small builders of the core types tests hand to the code under test.

use headroom_core::{Action, Decision, Mode};

/// A decision to take `action` on `target` (series entity `entity`), in the
/// shape most tests need: enforced, for the risk `test` in the window
/// starting at 0, decided at 0, with the reason `a test` and the id that
/// [`Decision::new`] derives; each setter changes one of those.
///
/// ```
/// use headroom_core::{Action, Mode};
/// use headroom_testing::fixtures::decision;
///
/// let d = decision("web", "k8s/shop/deployment/web", Action::Restart).mode(Mode::DryRun).id("restart-1").build();
/// assert_eq!((d.id.as_str(), d.mode, d.reason.as_str()), ("restart-1", Mode::DryRun, "a test"));
/// ```
pub fn decision(target: &str, entity: &str, action: Action) -> DecisionBuilder {
    DecisionBuilder {
        target: target.into(),
        entity: entity.into(),
        action,
        mode: Mode::Enforce,
        risk: "test".into(),
        window_start_ms: 0,
        decided_at_ms: 0,
        reason: "a test".into(),
        id: None,
    }
}

/// A [`Decision`] being built by [`decision`].
#[derive(Debug, Clone)]
#[must_use = "call build() for the decision"]
pub struct DecisionBuilder {
    target: String,
    entity: String,
    action: Action,
    mode: Mode,
    risk: String,
    window_start_ms: i64,
    decided_at_ms: i64,
    reason: String,
    id: Option<String>,
}

impl DecisionBuilder {
    /// Dry run or enforce (part of the derived id).
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// The risk acted on, e.g. `saturation` (part of the derived id).
    pub fn risk(mut self, risk: &str) -> Self {
        self.risk = risk.into();
        self
    }

    /// The start of the risk's window (part of the derived id).
    pub fn window(mut self, window_start_ms: i64) -> Self {
        self.window_start_ms = window_start_ms;
        self
    }

    /// When the decision was made.
    pub fn decided_at(mut self, decided_at_ms: i64) -> Self {
        self.decided_at_ms = decided_at_ms;
        self
    }

    /// The reason shown to users.
    pub fn reason(mut self, reason: &str) -> Self {
        self.reason = reason.into();
        self
    }

    /// An id of the test's choosing instead of the derived one.
    pub fn id(mut self, id: &str) -> Self {
        self.id = Some(id.into());
        self
    }

    /// The decision: [`Decision::new`] with the action set, then the reason
    /// and the id if one was chosen.
    pub fn build(self) -> Decision {
        let mut d =
            Decision::new(&self.target, &self.entity, self.mode, &self.risk, self.window_start_ms, self.decided_at_ms)
                .with_action(self.action);
        d.reason = self.reason;
        if let Some(id) = self.id {
            d.id = id;
        }
        d
    }
}
