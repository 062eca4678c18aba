//! The `CapacityPolicy` custom resource (`headroom.dev/v1alpha1`, short name
//! `cap`): one workload, the forecast that drives it and the policy's
//! guardrails — the fields of a `[[targets]]` table in `headroom.toml`,
//! written the Kubernetes way (camelCase, durations as `30m`).
//!
//! Every tunable is optional: a field left out takes the default of the
//! `[[targets]]` table ([`headroom_remediate::config::Target::new`]), and the
//! mapping in [`crate::policy`] writes the given ones onto it. The schema
//! carries what the API server can check (ranges, patterns, and CEL rules
//! such as `minReplicas <= maxReplicas`); the controller checks everything
//! again with the config checker `headroom.toml` uses.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, CustomResourceExt, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The API group.
pub const GROUP: &str = "headroom.dev";

/// The annotation that pauses a policy (`"true"`): no action, status says Paused.
pub const PAUSED_ANNOTATION: &str = "headroom.dev/paused";

/// What headroom may do with one Deployment or StatefulSet, and when.
// clippy reads the repeated `type_ = "string"` of the printer columns as duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "headroom.dev",
    version = "v1alpha1",
    kind = "CapacityPolicy",
    namespaced,
    shortname = "cap",
    status = "CapacityPolicyStatus",
    doc = "Forecast-driven capacity for one workload: headroom predicts its CPU or memory up to 48 hours ahead and scales it (or restarts it on a crash pattern) before it saturates, within these guardrails.",
    printcolumn(name = "Target", type_ = "string", json_path = ".spec.targetRef.name"),
    printcolumn(name = "Mode", type_ = "string", json_path = ".status.mode"),
    printcolumn(name = "Current", type_ = "integer", json_path = ".status.currentReplicas"),
    printcolumn(name = "Recommended", type_ = "integer", json_path = ".status.recommendedReplicas"),
    printcolumn(name = "Peak", type_ = "string", json_path = ".status.predictedPeak.summary"),
    printcolumn(name = "ETA", type_ = "string", json_path = ".status.saturationEta"),
    printcolumn(name = "Last Action", type_ = "string", json_path = ".status.lastAction.summary"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[x_kube(validation = Rule::new("!has(self.minReplicas) || !has(self.maxReplicas) || self.minReplicas <= self.maxReplicas").message("minReplicas must not be above maxReplicas"))]
#[serde(rename_all = "camelCase")]
pub struct CapacityPolicySpec {
    /// The workload acted on, in the policy's namespace.
    pub target_ref: TargetRef,
    /// Which resource drives scaling, and the PromQL that reads each one.
    #[serde(default)]
    pub metrics: Metrics,
    /// Where the workload's history is read.
    pub prometheus: PrometheusRef,
    /// Forecast quantile acted on: 0.1, 0.5, 0.9, 0.95 or 0.99 (default 0.9; higher accepts less risk).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub quantile: Option<f64>,
    /// Saturation level as a fraction of capacity, in (0, 1] (default 0.8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub threshold: Option<f64>,
    /// Capacity of one replica (cores for cpu, bytes for memory). Default:
    /// the sum of the pod template's container limits (else requests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0))]
    pub capacity: Option<f64>,
    /// Act on predicted saturation only when it is at most this far ahead (default 6h).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?(ms|s|m|h|d|w)$"))]
    pub lead_time: Option<String>,
    /// Fewest replicas headroom may leave (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub min_replicas: Option<u32>,
    /// Most replicas headroom may set (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_replicas: Option<u32>,
    /// Replicas added or removed by one action at most (default 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_step: Option<u32>,
    /// No action within this long after the previous one (default 30m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?(ms|s|m|h|d|w)$"))]
    pub cooldown: Option<String>,
    /// At most this many actions in any hour (default 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_actions_per_hour: Option<u32>,
    /// Removing replicas: off unless enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_in: Option<ScaleInSpec>,
    /// `DryRun` (the default: explain, change nothing) or `Enforce`.
    #[serde(default)]
    pub mode: PolicyMode,
    /// How often the policy is evaluated (default 5m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?(ms|s|m|h|d|w)$"))]
    pub interval: Option<String>,
    /// The forecasting model (default: the operator's `--model` from `--model-dir`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelRef>,
    /// The crash-pattern ladder: what to do, in order, while the workload keeps crashing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart: Option<RestartSpec>,
}

impl CapacityPolicySpec {
    /// A policy for the `kind` named `name`, read from the Prometheus at
    /// `prometheus_url`, with every other field left to its default.
    pub fn new(kind: WorkloadKind, name: &str, prometheus_url: &str) -> Self {
        Self {
            target_ref: TargetRef { api_version: apps_v1(), kind, name: name.into() },
            prometheus: PrometheusRef { url: prometheus_url.into(), secret_ref: None },
            ..Self::default()
        }
    }
}

/// The workload a policy acts on.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct TargetRef {
    /// `apps/v1`.
    #[serde(default = "apps_v1")]
    #[schemars(extend("enum" = ["apps/v1"]))]
    pub api_version: String,
    /// `Deployment` or `StatefulSet`.
    pub kind: WorkloadKind,
    /// The workload's name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

fn apps_v1() -> String {
    "apps/v1".into()
}

/// The workload kinds headroom scales.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
pub enum WorkloadKind {
    /// An `apps/v1` Deployment.
    #[default]
    Deployment,
    /// An `apps/v1` StatefulSet.
    StatefulSet,
}

impl WorkloadKind {
    /// The lower-case word of headroom's entities (`k8s/<ns>/deployment/<name>`).
    pub fn word(self) -> &'static str {
        match self {
            WorkloadKind::Deployment => "deployment",
            WorkloadKind::StatefulSet => "statefulset",
        }
    }
}

/// The resource whose forecast drives scaling.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum Resource {
    /// CPU, in cores.
    #[default]
    Cpu,
    /// Memory (working set), in bytes.
    Memory,
}

impl Resource {
    /// headroom's metric name.
    pub fn metric(self) -> &'static str {
        match self {
            Resource::Cpu => "cpu",
            Resource::Memory => "memory",
        }
    }
}

/// The resource that drives scaling, and optional PromQL for each series.
/// Every query must return one series: the workload's total over its pods.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct Metrics {
    /// `cpu` (default) or `memory`.
    #[serde(default)]
    pub scale_on: Resource,
    /// PromQL for the workload's CPU in cores (default: cAdvisor's
    /// `container_cpu_usage_seconds_total` summed over its pods).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    /// PromQL for its memory in bytes (default: `container_memory_working_set_bytes`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    /// PromQL for its container restarts, a counter (default: kube-state-metrics'
    /// `kube_pod_container_status_restarts_total`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restarts: Option<String>,
}

/// The Prometheus the workload's history is read from.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct PrometheusRef {
    /// Base URL of the HTTP API, e.g. `http://prometheus.monitoring:9090`.
    #[schemars(regex(pattern = r"^https?://"))]
    pub url: String,
    /// Credentials: a Secret mounted into the operator's pod (see the README:
    /// the operator reads no Secret through the API). Keys `token` (bearer)
    /// or `username` and `password` (basic).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretRef>,
}

/// A Secret by name.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
pub struct SecretRef {
    /// The Secret's name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// Scale-in: off unless enabled, and then only when the forecast and the
/// recent actual values are both below `below` of the saturation level.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct ScaleInSpec {
    /// Whether headroom may remove replicas (default false).
    #[serde(default)]
    pub enabled: bool,
    /// Fraction of the saturation level both must stay below (default 0.5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub below: Option<f64>,
    /// How far back "recent actual values" reach (default 6h).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?(ms|s|m|h|d|w)$"))]
    pub window: Option<String>,
}

/// The forecasting model.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct ModelRef {
    /// `lstm` or a baseline (`snaive-daily`, `snaive-weekly`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The trained model directory, mounted in the operator's pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<String>,
}

/// The crash-pattern ladder.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct RestartSpec {
    /// Rungs in order: `restart`, `scale_out`, `alert` (default restart,
    /// restart, scale_out, alert). `alert` ends the ladder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("items" = {"type": "string", "enum": ["restart", "scale_out", "alert"]}))]
    pub ladder: Option<Vec<String>>,
    /// Wait before rung n: `backoff × 2^(n-1)` (default 5m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?(ms|s|m|h|d|w)$"))]
    pub backoff: Option<String>,
    /// The ladder starts again after this long without a crash action (default 24h).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?(ms|s|m|h|d|w)$"))]
    pub ladder_reset: Option<String>,
}

/// Whether decisions are carried out.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
pub enum PolicyMode {
    /// Record and explain, change nothing (the default).
    #[default]
    DryRun,
    /// Carry decisions out.
    Enforce,
}

/// What headroom saw, predicts and did — written by the controller only.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct CapacityPolicyStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `ForecastHealthy`, `Acting`, `Paused`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// `DryRun`, `Enforce` or `Paused`: what the controller does now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// The workload's replicas as last read (`spec.replicas` of its scale).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_replicas: Option<u32>,
    /// What the policy would set now (the current count when no change is needed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recommended_replicas: Option<u32>,
    /// When the last forecast was made (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_forecast_time: Option<String>,
    /// The forecast's highest value over the lead time, at the policy's quantile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predicted_peak: Option<PredictedPeak>,
    /// When the forecast first crosses the saturation level (RFC 3339), if it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub saturation_eta: Option<String>,
    /// The last decision and its explanation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_decision: Option<LastDecision>,
    /// The last action carried out (or recorded as a dry run), and how it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_action: Option<LastAction>,
    /// Why a baseline forecast was used instead of the model (e.g. too little history).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
}

/// The forecast's peak.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct PredictedPeak {
    /// The peak (cores or bytes, the workload's total).
    pub value: f64,
    /// When (RFC 3339).
    pub at: String,
    /// The quantile it is read at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantile: Option<f64>,
    /// The saturation level it is compared with, at the current replicas.
    pub saturation_level: f64,
    /// The model that made it.
    pub model: String,
    /// In one line, for `kubectl get cap`: `112% of saturation at 14:05Z`.
    pub summary: String,
}

/// A decision, with its explanation.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct LastDecision {
    /// The decision id (as in the audit log and the Events).
    pub id: String,
    /// `none`, `scale to N`, `restart`.
    pub action: String,
    /// Why, in one sentence.
    pub reason: String,
    /// When it was decided (RFC 3339).
    pub time: String,
}

/// An action and its outcome.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct LastAction {
    /// The decision id.
    pub id: String,
    /// `scale to N` or `restart`.
    pub action: String,
    /// `succeeded`, `failed`, `dry_run`, `already_done`, …
    pub outcome: String,
    /// When (RFC 3339).
    pub time: String,
    /// What happened, in words.
    pub detail: String,
    /// In one line, for `kubectl get cap`: `scale to 5: succeeded`.
    pub summary: String,
}

/// The CRD as YAML, as `headroom operator crd` prints it and `deploy/crd.yaml` holds it.
pub fn crd_yaml() -> String {
    let crd = CapacityPolicy::crd();
    let body = serde_saphyr::to_string(&crd).expect("a CustomResourceDefinition serializes to YAML");
    format!(
        "# Generated by `headroom operator crd` from crates/headroom-operator/src/crd.rs: do not edit.\n---\n{body}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_crd_is_namespaced_with_short_name_cap_and_a_status_subresource() {
        let crd = CapacityPolicy::crd();
        assert_eq!(crd.spec.group, GROUP);
        assert_eq!(crd.spec.scope, "Namespaced");
        assert_eq!(crd.spec.names.short_names.as_deref(), Some(&["cap".to_string()][..]));
        let v = &crd.spec.versions[0];
        assert_eq!(v.name, "v1alpha1");
        assert!(v.subresources.as_ref().and_then(|s| s.status.as_ref()).is_some());
        let columns: Vec<&str> = v.additional_printer_columns.iter().flatten().map(|c| c.name.as_str()).collect();
        assert_eq!(columns, ["Target", "Mode", "Current", "Recommended", "Peak", "ETA", "Last Action", "Age"]);
    }

    #[test]
    fn the_schema_carries_the_cel_rule_and_ranges() {
        let json = serde_json::to_string(&CapacityPolicy::crd()).unwrap();
        assert!(json.contains("self.minReplicas <= self.maxReplicas"), "{json}");
        assert!(json.contains("x-kubernetes-validations"));
        let crd = serde_json::to_value(CapacityPolicy::crd()).unwrap();
        let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
        assert_eq!(spec["properties"]["leadTime"]["pattern"], r"^[0-9]+(\.[0-9]+)?(ms|s|m|h|d|w)$");
        assert_eq!(spec["properties"]["quantile"]["maximum"], 1.0);
    }
}
