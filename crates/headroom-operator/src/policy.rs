//! A `CapacityPolicy` mapped onto what the engine already has: a
//! `[[targets]]` table ([`Target`], defaults and checks included) inside a
//! one-target [`Config`], and a Prometheus source for its history. Nothing
//! here re-implements a default or a check: a field left out keeps the
//! `[[targets]]` default, and the problems are the config checker's, with
//! their key paths written the CRD's way (`spec.minReplicas`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use headroom_collect::prometheus::{AuthConfig, PrometheusConfig, QueryConfig, SecretSource};
use headroom_core::Span;
use headroom_core::{Mode, parse_duration};
use headroom_remediate::Config;
use headroom_remediate::config::{Platform, Rung, Target};
use headroom_remediate::error::Problem;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use kube::ResourceExt;

use crate::crd::{CapacityPolicy, CapacityPolicySpec, PolicyMode, Resource, RestartSpec, WorkloadKind};

/// How often a policy is evaluated when its spec does not say (`spec.interval`).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(300);

/// History read from Prometheus for each evaluation: a week for the weekly
/// baselines and the model's input window, plus a day for scoring yesterday's forecast.
pub const LOOKBACK: Duration = Duration::from_secs(8 * 86_400);

/// What the operator was started with, that a policy may override.
#[derive(Debug, Clone, PartialEq)]
pub struct Defaults {
    /// The forecasting model (`lstm` or a baseline).
    pub model: String,
    /// Its directory.
    pub model_dir: PathBuf,
    /// Where Secrets named by `prometheus.secretRef` are mounted: `<dir>/<name>/<key>`.
    pub secrets_dir: PathBuf,
}

impl Default for Defaults {
    fn default() -> Self {
        Self { model: "lstm".into(), model_dir: "/models/default".into(), secrets_dir: "/etc/headroom/secrets".into() }
    }
}

/// A policy, checked and mapped.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    /// The one-target configuration the engine's runner steps.
    pub cfg: Config,
    /// How often to evaluate.
    pub interval: Duration,
    /// The model's name and directory.
    pub model: (String, PathBuf),
    /// Where and what to read (range set at each evaluation).
    pub prometheus: PrometheusConfig,
}

impl Resolved {
    /// The policy's only target.
    pub fn target(&self) -> &Target {
        &self.cfg.targets[0]
    }
}

/// headroom's entity for the workload: `k8s/<namespace>/<kind>/<name>`.
pub fn entity(namespace: &str, kind: WorkloadKind, name: &str) -> String {
    format!("k8s/{namespace}/{}/{name}", kind.word())
}

/// Whether the policy carries `headroom.dev/paused: "true"`.
pub fn paused(policy: &CapacityPolicy) -> bool {
    policy.annotations().get(crate::crd::PAUSED_ANNOTATION).is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

/// Maps `policy` onto a one-target config, its Prometheus source and its
/// schedule, or lists every problem with its `spec.` path.
pub fn resolve(policy: &CapacityPolicy, defaults: &Defaults) -> Result<Resolved, Vec<Problem>> {
    let spec = &policy.spec;
    let namespace = policy.namespace().unwrap_or_default();
    let mut problems = Vec::new();
    let t = target(policy, &namespace, &mut problems);
    let interval = span(&mut problems, "spec.interval", &spec.interval, Span(DEFAULT_INTERVAL)).0;
    if interval.is_zero() {
        problems.push(Problem::new("spec.interval", "\"0s\"", "must be longer than 0s"));
    }
    target_ref_problems(spec, &mut problems);
    let cfg = Config { global: Default::default(), detect: Default::default(), targets: vec![t] };
    problems.extend(cfg.problems().into_iter().map(|p| Problem { path: spec_path(&p.path), ..p }));

    let model = spec.model.clone().unwrap_or_default();
    let model = (
        model.name.unwrap_or_else(|| defaults.model.clone()),
        model.dir.map_or(defaults.model_dir.clone(), PathBuf::from),
    );
    let prometheus = prometheus(policy, &namespace, spec.metrics.scale_on, &defaults.secrets_dir);
    if let Err(e) = prometheus.validate() {
        problems.push(Problem::new("spec.prometheus", format!("{:?}", spec.prometheus.url), e.to_string()));
    }
    if problems.is_empty() { Ok(Resolved { cfg, interval, model, prometheus }) } else { Err(problems) }
}

/// The policy's one target: `Target::new` for its workload, with every
/// field the spec gives written over the default (durations that do not
/// parse keep the default and add a problem). Range checks are left to
/// `Config::problems`.
fn target(policy: &CapacityPolicy, namespace: &str, problems: &mut Vec<Problem>) -> Target {
    let spec = &policy.spec;
    let mut t = Target::new(
        &policy.name_any(),
        Platform::Kubernetes,
        &entity(namespace, spec.target_ref.kind, &spec.target_ref.name),
        spec.metrics.scale_on.metric(),
    );
    // The series are the workload's totals, so capacity is per replica and
    // the saturation level grows with the replicas the workload has now.
    t.replicas = Some(1);
    t.capacity = spec.capacity;
    let d = Target::new("", Platform::Kubernetes, "", "");
    t.lead_time = span(problems, "spec.leadTime", &spec.lead_time, d.lead_time);
    t.cooldown = span(problems, "spec.cooldown", &spec.cooldown, d.cooldown);
    if let Some(q) = spec.quantile {
        t.quantile = q;
    }
    if let Some(v) = spec.threshold {
        t.threshold = v;
    }
    if let Some(v) = spec.min_replicas {
        t.min_replicas = v;
    }
    if let Some(v) = spec.max_replicas {
        t.max_replicas = v;
    }
    if let Some(v) = spec.max_step {
        t.max_step = v;
    }
    if let Some(v) = spec.max_actions_per_hour {
        t.max_actions_per_hour = v;
    }
    if let Some(s) = &spec.scale_in {
        t.scale_in.enabled = s.enabled;
        if let Some(b) = s.below {
            t.scale_in.below = b;
        }
        t.scale_in.window = span(problems, "spec.scaleIn.window", &s.window, d.scale_in.window);
    }
    if let Some(r) = &spec.restart {
        restart(&mut t, r, &d, problems);
    }
    t.mode = match spec.mode {
        PolicyMode::DryRun => Mode::DryRun,
        PolicyMode::Enforce => Mode::Enforce,
    };
    t
}

/// `spec.restart` onto the target: backoff, ladder reset (defaults from `d`) and the ladder.
fn restart(t: &mut Target, r: &RestartSpec, d: &Target, problems: &mut Vec<Problem>) {
    t.backoff = span(problems, "spec.restart.backoff", &r.backoff, d.backoff);
    t.ladder_reset = span(problems, "spec.restart.ladderReset", &r.ladder_reset, d.ladder_reset);
    if let Some(words) = &r.ladder {
        t.ladder = Some(rungs(words, problems));
    }
}

/// `spec.restart.ladder` as rungs; a word that is no rung is left out, with a problem.
fn rungs(words: &[String], problems: &mut Vec<Problem>) -> Vec<Rung> {
    let mut rungs = Vec::new();
    for (i, w) in words.iter().enumerate() {
        match w.as_str() {
            "restart" => rungs.push(Rung::Restart),
            "scale_out" => rungs.push(Rung::ScaleOut),
            "alert" => rungs.push(Rung::Alert),
            other => problems.push(Problem::new(
                format!("spec.restart.ladder[{i}]"),
                format!("{other:?}"),
                "a rung is \"restart\", \"scale_out\" or \"alert\"",
            )),
        }
    }
    rungs
}

/// `spec.targetRef`: an apps/v1 workload with a name.
fn target_ref_problems(spec: &CapacityPolicySpec, problems: &mut Vec<Problem>) {
    if spec.target_ref.api_version != "apps/v1" {
        problems.push(Problem::new(
            "spec.targetRef.apiVersion",
            format!("{:?}", spec.target_ref.api_version),
            "Deployments and StatefulSets are apps/v1",
        ));
    }
    if spec.target_ref.name.trim().is_empty() {
        problems.push(Problem::new("spec.targetRef.name", "\"\"", "name the workload to act on"));
    }
}

/// A duration field: its value, or the default (and a problem) when it does not parse.
fn span(problems: &mut Vec<Problem>, path: &str, text: &Option<String>, default: Span) -> Span {
    match text {
        None => default,
        Some(t) => match parse_duration(t) {
            Ok(d) => Span(d),
            Err(e) => {
                problems.push(Problem::new(path, format!("{t:?}"), e.to_string()));
                default
            }
        },
    }
}

/// A `[[targets]]` key path as the CRD spells it: `targets[0].min_replicas` → `spec.minReplicas`.
fn spec_path(path: &str) -> String {
    let rest = path.strip_prefix("targets[0].").unwrap_or(path);
    let camel = |s: &str| {
        let mut out = String::new();
        let mut up = false;
        for c in s.chars() {
            if c == '_' {
                up = true;
            } else if up {
                out.extend(c.to_uppercase());
                up = false;
            } else {
                out.push(c);
            }
        }
        out
    };
    let rest: Vec<String> = rest.split('.').map(camel).collect();
    let rest = rest.join(".");
    match rest.as_str() {
        "ladder" | "backoff" | "ladderReset" => format!("spec.restart.{rest}"),
        _ => format!("spec.{rest}"),
    }
}

/// The pods of a workload, as a PromQL regex on the `pod` label: a
/// Deployment's pods are `<name>-<pod-template-hash>-<suffix>`, a StatefulSet's `<name>-<ordinal>`.
fn pod_regex(kind: WorkloadKind, name: &str) -> String {
    let name = name.replace('.', "\\\\.");
    match kind {
        WorkloadKind::Deployment => format!("{name}-[a-z0-9]{{1,10}}-[a-z0-9]{{5}}"),
        WorkloadKind::StatefulSet => format!("{name}-[0-9]+"),
    }
}

/// The default PromQL of each series, for a workload's pods (cAdvisor for
/// CPU and memory, kube-state-metrics for restarts), summed over its pods.
pub fn default_queries(namespace: &str, kind: WorkloadKind, name: &str) -> [(&'static str, String); 3] {
    let pods = format!(r#"namespace="{namespace}", pod=~"{}""#, pod_regex(kind, name));
    [
        (
            "cpu",
            format!(r#"sum(rate(container_cpu_usage_seconds_total{{{pods}, container!="", container!="POD"}}[5m]))"#),
        ),
        ("memory", format!(r#"sum(container_memory_working_set_bytes{{{pods}, container!="", container!="POD"}})"#)),
        ("restarts", format!(r#"sum(kube_pod_container_status_restarts_total{{{pods}}})"#)),
    ]
}

fn prometheus(policy: &CapacityPolicy, namespace: &str, scale_on: Resource, secrets: &Path) -> PrometheusConfig {
    let spec = &policy.spec;
    let entity = entity(namespace, spec.target_ref.kind, &spec.target_ref.name);
    let mut cfg = PrometheusConfig::new(spec.prometheus.url.trim_end_matches('/'), 0, 0);
    // One request per series: 8 days at the default 5-minute step are ~2,300 points (resampled to the model's grid later).
    cfg.concurrency = 3;
    cfg.retries = 2;
    for (metric, default) in default_queries(namespace, spec.target_ref.kind, &spec.target_ref.name) {
        let given = match metric {
            "cpu" => &spec.metrics.cpu,
            "memory" => &spec.metrics.memory,
            _ => &spec.metrics.restarts,
        };
        // The driving resource and restarts always; the other resource only when it
        // is the memory the crash detectors read (OOM kills, leaks).
        if metric == "cpu" && scale_on != Resource::Cpu && given.is_none() {
            continue;
        }
        cfg.queries.push(QueryConfig::new(metric, given.clone().unwrap_or(default), entity.clone()));
    }
    cfg.auth = spec.prometheus.secret_ref.as_ref().map(|s| {
        let dir = secrets.join(&s.name);
        if dir.join("token").exists() || !dir.join("username").exists() {
            AuthConfig::Bearer { token: SecretSource::File(dir.join("token")) }
        } else {
            let username = std::fs::read_to_string(dir.join("username")).unwrap_or_default().trim().to_owned();
            AuthConfig::Basic { username, password: SecretSource::File(dir.join("password")) }
        }
    });
    cfg
}

/// A Kubernetes quantity (`500m`, `2`, `1Gi`, `512M`, `1e3`) as a number.
pub fn quantity(text: &str) -> Option<f64> {
    let text = text.trim();
    let split = text.find(|c: char| c.is_ascii_alphabetic() && c != 'e' && c != 'E').unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let n: f64 = number.parse().ok()?;
    let factor = match suffix {
        "" => 1.0,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "Ki" => 1024.0,
        "Mi" => 1024.0f64.powi(2),
        "Gi" => 1024.0f64.powi(3),
        "Ti" => 1024.0f64.powi(4),
        "Pi" => 1024.0f64.powi(5),
        _ => return None,
    };
    let v = n * factor;
    (v.is_finite() && v >= 0.0).then_some(v)
}

/// One replica's capacity of `resource` from the pod template: the sum of
/// the containers' limits, else of their requests; with where it came from.
pub fn template_capacity(template: &PodTemplateSpec, resource: Resource) -> Option<(f64, &'static str)> {
    let containers = &template.spec.as_ref()?.containers;
    let sum = |pick: fn(
        &k8s_openapi::api::core::v1::ResourceRequirements,
    ) -> Option<
        &std::collections::BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
    >| {
        let mut total = 0.0;
        for c in containers {
            let q = c.resources.as_ref().and_then(pick).and_then(|m| m.get(resource.metric()))?;
            total += quantity(&q.0)?;
        }
        (total > 0.0).then_some(total)
    };
    sum(|r| r.limits.as_ref())
        .map(|v| (v, "the containers' limits"))
        .or_else(|| sum(|r| r.requests.as_ref()).map(|v| (v, "the containers' requests")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{CapacityPolicySpec, RestartSpec};
    use headroom_remediate::config::Target;

    fn policy(spec: CapacityPolicySpec) -> CapacityPolicy {
        let mut p = CapacityPolicy::new("checkout", spec);
        p.metadata.namespace = Some("shop".into());
        p
    }

    fn spec() -> CapacityPolicySpec {
        CapacityPolicySpec::new(WorkloadKind::Deployment, "checkout", "http://prometheus:9090")
    }

    #[test]
    fn an_empty_spec_takes_every_default_of_a_targets_table() {
        let r = resolve(&policy(spec()), &Defaults::default()).unwrap();
        let t = r.target();
        let want = Target {
            replicas: Some(1),
            ..Target::new("checkout", Platform::Kubernetes, "k8s/shop/deployment/checkout", "cpu")
        };
        assert_eq!(t, &want);
        assert_eq!(t.mode, Mode::DryRun, "dry-run unless Enforce is written");
        assert_eq!(r.interval, DEFAULT_INTERVAL);
        assert_eq!(r.model, ("lstm".to_string(), PathBuf::from("/models/default")));
        let metrics: Vec<&str> = r.prometheus.queries.iter().map(|q| q.metric.as_str()).collect();
        assert_eq!(metrics, ["cpu", "memory", "restarts"]);
        assert!(r.prometheus.queries[0].promql.contains(r#"pod=~"checkout-[a-z0-9]{1,10}-[a-z0-9]{5}""#));
    }

    #[test]
    fn given_fields_are_written_onto_the_target() {
        let mut s = spec();
        s.min_replicas = Some(2);
        s.max_replicas = Some(12);
        s.lead_time = Some("3h".into());
        s.mode = PolicyMode::Enforce;
        s.restart = Some(RestartSpec { ladder: Some(vec!["restart".into(), "alert".into()]), ..Default::default() });
        let r = resolve(&policy(s), &Defaults::default()).unwrap();
        let t = r.target();
        assert_eq!((t.min_replicas, t.max_replicas, t.lead_time.ms()), (2, 12, 3 * 3_600_000));
        assert_eq!(t.mode, Mode::Enforce);
        assert_eq!(t.ladder(), vec![Rung::Restart, Rung::Alert]);
    }

    #[test]
    fn every_problem_is_listed_with_its_spec_path() {
        let mut s = spec();
        s.min_replicas = Some(5);
        s.max_replicas = Some(3);
        s.quantile = Some(0.7);
        s.cooldown = Some("soon".into());
        s.restart = Some(RestartSpec { ladder: Some(vec!["reboot".into()]), ..Default::default() });
        s.prometheus.url = "ftp://x".into();
        let problems = resolve(&policy(s), &Defaults::default()).unwrap_err();
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        for want in ["spec.minReplicas", "spec.quantile", "spec.cooldown", "spec.restart.ladder[0]", "spec.prometheus"]
        {
            assert!(paths.contains(&want), "{want} missing from {paths:?}");
        }
        let m = problems.iter().find(|p| p.path == "spec.minReplicas").unwrap();
        assert!(m.why.contains("max_replicas = 3"), "{m}");
    }

    #[test]
    fn quantities_read_as_kubernetes_writes_them() {
        assert_eq!(quantity("500m"), Some(0.5));
        assert_eq!(quantity("2"), Some(2.0));
        assert_eq!(quantity("1Gi"), Some(1024.0 * 1024.0 * 1024.0));
        assert_eq!(quantity("512M"), Some(512e6));
        assert_eq!(quantity("1e3"), Some(1000.0));
        assert_eq!(quantity("lots"), None);
        assert_eq!(quantity("-1"), None);
    }

    #[test]
    fn a_statefulsets_pods_are_numbered() {
        let [(_, cpu), _, (_, restarts)] = default_queries("db", WorkloadKind::StatefulSet, "pg");
        assert!(cpu.contains(r#"namespace="db", pod=~"pg-[0-9]+""#), "{cpu}");
        assert!(restarts.starts_with("sum(kube_pod_container_status_restarts_total{"), "{restarts}");
    }
}
