//! The operator's own metrics, on `/metrics` (Prometheus text format).
//! `deploy/grafana/headroom-operator.json` charts exactly these.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::crd::CapacityPolicyStatus;

type Labels = Vec<(&'static str, String)>;

/// Every metric the operator exports, registered once.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    reconciliations: Family<Labels, Counter>,
    duration: Histogram,
    decisions: Family<Labels, Counter>,
    actions: Family<Labels, Counter>,
    leader: Gauge,
    condition: Family<Labels, Gauge>,
    peak_ratio: Family<Labels, Gauge<f64, AtomicU64>>,
    current: Family<Labels, Gauge>,
    recommended: Family<Labels, Gauge>,
    failures: Mutex<BTreeMap<(String, String), u32>>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("headroom_operator");
        let reconciliations = Family::<Labels, Counter>::default();
        registry.register(
            "reconciliations",
            "Reconciles of CapacityPolicies, by result (ok, error)",
            reconciliations.clone(),
        );
        let duration = Histogram::new(exponential_buckets(0.01, 2.0, 14));
        registry.register("reconcile_duration_seconds", "Time one reconcile took", duration.clone());
        let decisions = Family::<Labels, Counter>::default();
        registry.register("decisions", "Decisions made, by action and mode", decisions.clone());
        let actions = Family::<Labels, Counter>::default();
        registry.register("actions", "Actions carried out or recorded, by outcome", actions.clone());
        let leader = Gauge::default();
        registry.register("leader", "1 while this replica holds the lease", leader.clone());
        let condition = Family::<Labels, Gauge>::default();
        registry.register("policy_condition", "A policy's condition: 1 true, 0 false", condition.clone());
        let peak_ratio = Family::<Labels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "predicted_peak_ratio",
            "A policy's predicted peak over its saturation level (above 1: saturation predicted)",
            peak_ratio.clone(),
        );
        let current = Family::<Labels, Gauge>::default();
        registry.register("current_replicas", "A policy's workload replicas as last read", current.clone());
        let recommended = Family::<Labels, Gauge>::default();
        registry.register("recommended_replicas", "The replicas a policy recommends now", recommended.clone());
        Self {
            registry,
            reconciliations,
            duration,
            decisions,
            actions,
            leader,
            condition,
            peak_ratio,
            current,
            recommended,
            failures: Mutex::new(BTreeMap::new()),
        }
    }
}

impl Metrics {
    /// One reconcile of `namespace/policy` ended (`ok` or not) after `took`.
    pub fn reconciled(&self, namespace: &str, policy: &str, ok: bool, took: Duration) {
        let result = if ok { "ok" } else { "error" };
        self.reconciliations.get_or_create(&vec![("result", result.into())]).inc();
        self.duration.observe(took.as_secs_f64());
        if ok {
            self.lock().remove(&(namespace.into(), policy.into()));
        }
    }

    /// Counts one more failure of `namespace/policy` in a row and returns the count.
    pub fn failure(&self, namespace: &str, policy: &str) -> u32 {
        let mut f = self.lock();
        let n = f.entry((namespace.into(), policy.into())).or_insert(0);
        *n = n.saturating_add(1);
        *n
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<(String, String), u32>> {
        self.failures.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One decision and what became of it (`label` of its execution).
    pub fn decided(&self, action: &str, mode: &str, outcome: &str) {
        self.decisions.get_or_create(&vec![("action", action.into()), ("mode", mode.into())]).inc();
        if !matches!(outcome, "not_acted" | "already_done") {
            self.actions.get_or_create(&vec![("outcome", outcome.into())]).inc();
        }
    }

    /// Whether this replica leads.
    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    /// A policy's status as written.
    pub fn observe(&self, namespace: &str, policy: &str, status: &CapacityPolicyStatus) {
        let at = |extra: Option<(&'static str, String)>| {
            let mut l: Labels = vec![("namespace", namespace.into()), ("policy", policy.into())];
            l.extend(extra);
            l
        };
        for c in &status.conditions {
            self.condition.get_or_create(&at(Some(("condition", c.type_.clone())))).set(i64::from(c.status == "True"));
        }
        if let Some(p) = &status.predicted_peak
            && p.saturation_level > 0.0
        {
            self.peak_ratio.get_or_create(&at(None)).set(p.value / p.saturation_level);
        }
        if let Some(n) = status.current_replicas {
            self.current.get_or_create(&at(None)).set(i64::from(n));
        }
        if let Some(n) = status.recommended_replicas {
            self.recommended.get_or_create(&at(None)).set(i64::from(n));
        }
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::PredictedPeak;

    fn exported() -> String {
        let m = Metrics::default();
        m.reconciled("shop", "checkout", true, Duration::from_millis(40));
        m.decided("scale_to 3", "enforce", "succeeded");
        m.set_leader(true);
        let status = CapacityPolicyStatus {
            current_replicas: Some(2),
            recommended_replicas: Some(3),
            predicted_peak: Some(PredictedPeak { value: 1.8, saturation_level: 1.6, ..PredictedPeak::default() }),
            ..CapacityPolicyStatus::default()
        };
        let mut draft = crate::status::Draft::new(Some(&status), Some(1), 0);
        draft.set("Ready", true, "Evaluated", "");
        m.observe("shop", "checkout", &draft.status);
        m.render()
    }

    #[test]
    fn a_policy_shows_up_by_namespace_and_name() {
        let text = exported();
        assert!(
            text.contains(r#"headroom_operator_predicted_peak_ratio{namespace="shop",policy="checkout"} 1.125"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"headroom_operator_policy_condition{namespace="shop",policy="checkout",condition="Ready"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains(r#"headroom_operator_actions_total{outcome="succeeded"} 1"#), "{text}");
        assert!(text.contains("headroom_operator_leader 1"), "{text}");
    }

    #[test]
    fn failures_count_up_and_a_success_resets_them() {
        let m = Metrics::default();
        assert_eq!((m.failure("a", "p"), m.failure("a", "p"), m.failure("a", "q")), (1, 2, 1));
        m.reconciled("a", "p", true, Duration::ZERO);
        assert_eq!(m.failure("a", "p"), 1);
    }

    /// The shipped dashboard charts only what the operator exports.
    #[test]
    fn every_metric_of_the_grafana_dashboard_is_exported() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/grafana/headroom-operator.json");
        let dashboard = std::fs::read_to_string(path).expect("deploy/grafana/headroom-operator.json");
        let text = exported();
        let names: std::collections::BTreeSet<&str> = dashboard
            .match_indices("headroom_operator_")
            .map(|(i, _)| {
                let rest = &dashboard[i..];
                &rest[..rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len())]
            })
            .collect();
        assert!(names.len() >= 8, "{names:?}");
        for name in names {
            let exported = text.lines().any(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']));
            assert!(exported, "the dashboard uses {name}, which /metrics does not export:\n{text}");
        }
    }
}
