//! Ready-made query sets: Kubernetes workloads and nodes.

use headroom_core::Span;
use serde::{Deserialize, Serialize};

use super::config::QueryConfig;

/// Ready-made query sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// Per-workload container CPU (cores) and working-set memory (bytes), from
    /// cAdvisor (kubelet) and kube-state-metrics; entity
    /// `k8s/{namespace}/{workload_kind}/{workload}`.
    Kubernetes,
    /// Per-node CPU busy (cores) and memory used (bytes), from node-exporter;
    /// entity `host/{instance}`.
    Node,
}

/// Maps every pod to its workload: `(namespace, pod) → (workload_kind, workload)`,
/// value 1, from kube-state-metrics' `kube_pod_owner`. Assumes:
///
/// * a pod owned by a ReplicaSet belongs to the Deployment whose name is the
///   ReplicaSet's minus its last `-<pod-template-hash>` segment (true for
///   ReplicaSets created by Deployments; a bare ReplicaSet, or one of another
///   controller such as an Argo Rollout, is reported as a deployment of that
///   trimmed name);
/// * StatefulSet, DaemonSet and Job owners are the workload as they are
///   (a CronJob's pods count per Job); a pod without an owner (`<none>`) is its own
///   `pod` workload; any other owner kind is kept verbatim (e.g. `Node` for
///   static pods), since PromQL cannot lower-case;
/// * `max by` folds the duplicate series of several kube-state-metrics replicas.
const POD_WORKLOAD: &str = r#"max by (namespace, pod, workload_kind, workload) (
    label_replace(label_replace(kube_pod_owner{owner_kind="ReplicaSet"},
      "workload", "$1", "owner_name", "(.+)-[a-z0-9]+"), "workload_kind", "deployment", "owner_kind", "ReplicaSet")
  or label_replace(label_replace(kube_pod_owner{owner_kind="StatefulSet"},
      "workload", "$1", "owner_name", "(.+)"), "workload_kind", "statefulset", "owner_kind", "StatefulSet")
  or label_replace(label_replace(kube_pod_owner{owner_kind="DaemonSet"},
      "workload", "$1", "owner_name", "(.+)"), "workload_kind", "daemonset", "owner_kind", "DaemonSet")
  or label_replace(label_replace(kube_pod_owner{owner_kind="Job"},
      "workload", "$1", "owner_name", "(.+)"), "workload_kind", "job", "owner_kind", "Job")
  or label_replace(label_replace(kube_pod_owner{owner_kind="<none>"},
      "workload", "$1", "pod", "(.+)"), "workload_kind", "pod", "owner_kind", "<none>")
  or label_replace(label_replace(kube_pod_owner{owner_kind!~"ReplicaSet|StatefulSet|DaemonSet|Job|<none>"},
      "workload", "$1", "owner_name", "(.+)"), "workload_kind", "$1", "owner_kind", "(.+)")
)"#;

/// cAdvisor's per-container series: `container=""` is the pod-level cgroup (it
/// would count every container twice) and `container="POD"` the pause
/// container of older runtimes. Assumes cAdvisor is scraped once (one job),
/// with the `namespace`/`pod`/`container` labels of Kubernetes ≥ 1.16.
const CONTAINERS: &str = r#"container!="", container!="POD""#;

impl Preset {
    /// The preset's name as written in configuration.
    pub fn name(self) -> &'static str {
        match self {
            Preset::Kubernetes => "kubernetes",
            Preset::Node => "node",
        }
    }

    /// The preset's queries, with `rate()` over `rate_window`.
    pub fn queries(self, rate_window: Span) -> Vec<QueryConfig> {
        let w = rate_window.to_string();
        match self {
            Preset::Kubernetes => {
                let entity = "k8s/{namespace}/{workload_kind}/{workload}";
                let by_workload = "sum by (namespace, workload_kind, workload)";
                let join = "* on (namespace, pod) group_left (workload_kind, workload)";
                vec![
                    QueryConfig::new(
                        "cpu",
                        format!(
                            "{by_workload} (\n  rate(container_cpu_usage_seconds_total{{{CONTAINERS}}}[{w}])\n  {join}\n  {POD_WORKLOAD}\n)"
                        ),
                        entity,
                    ),
                    QueryConfig::new(
                        "memory",
                        format!(
                            "{by_workload} (\n  container_memory_working_set_bytes{{{CONTAINERS}}}\n  {join}\n  {POD_WORKLOAD}\n)"
                        ),
                        entity,
                    ),
                ]
            }
            // Assumes each node is scraped by one job (two would double the CPU sum
            // and make the memory series collide on `host/{instance}`).
            Preset::Node => vec![
                QueryConfig::new(
                    "cpu",
                    format!(r#"sum by (instance) (rate(node_cpu_seconds_total{{mode!="idle"}}[{w}]))"#),
                    "host/{instance}",
                ),
                QueryConfig::new(
                    "memory",
                    "sum by (instance) (node_memory_MemTotal_bytes - node_memory_MemAvailable_bytes)",
                    "host/{instance}",
                ),
            ],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::config;
    use super::*;

    #[test]
    fn presets_widen_the_rate_window_to_the_step() {
        let mut cfg = config();
        cfg.queries.clear();
        cfg.presets = vec![Preset::Node, Preset::Kubernetes];
        cfg.step = Span::from_secs(3_600);
        let all = cfg.all_queries();
        assert_eq!(all[0].1.promql, r#"sum by (instance) (rate(node_cpu_seconds_total{mode!="idle"}[1h]))"#);
        assert_eq!(all[1].1.entity, "host/{instance}");
        assert!(
            all[2].1.promql.contains(r#"rate(container_cpu_usage_seconds_total{container!="", container!="POD"}[1h])"#)
        );
        assert_eq!(all[3].1.entity, "k8s/{namespace}/{workload_kind}/{workload}");
        cfg.step = Span::from_secs(60);
        assert!(cfg.all_queries()[0].1.promql.contains("[5m]"));
        cfg.validate().unwrap();
    }
}
