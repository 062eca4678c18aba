//! `headroom.toml`: the typed remediation configuration, validated once at load.
//!
//! ```toml
//! [global]
//! max_actions_per_hour = 10          # across all targets
//!
//! [[targets]]
//! name = "checkout"
//! platform = "kubernetes"
//! entity = "k8s/shop/deployment/checkout"
//! metric = "cpu"
//! threshold = 0.8                    # of capacity
//! quantile = 0.9                     # act on p90; 0.95 or 0.99 to accept less risk
//! lead_time = "6h"
//! min_replicas = 2
//! max_replicas = 12
//! max_step = 2
//! cooldown = "30m"
//! mode = "dry-run"                   # the default; "enforce" must be written out
//! ```
//!
//! Unknown keys and values of the wrong type are rejected by the parser with
//! the line and key; values that parse but cannot be used (min > max, a
//! quantile forecasts do not carry, a zero step, duplicate target names) are all listed
//! together with their key path and value.

use std::path::Path;
use std::time::Duration;

use headroom_core::{Mode, Span};
use serde::{Deserialize, Serialize};

use crate::detect::DetectConfig;
use crate::error::{Error, Problem, Result};

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Limits across all targets.
    #[serde(default)]
    pub global: Global,
    /// Detector parameters.
    #[serde(default)]
    pub detect: DetectConfig,
    /// What headroom may act on. Nothing outside this list is ever touched.
    #[serde(default)]
    pub targets: Vec<Target>,
}

/// Limits across all targets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Global {
    /// At most this many actions (dry-run included) in any hour, across all targets (default 10).
    pub max_actions_per_hour: u32,
}

impl Default for Global {
    fn default() -> Self {
        Self { max_actions_per_hour: 10 }
    }
}

/// Where a target lives, so the right actuator and the right platform limits apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Platform {
    /// A Kubernetes workload (Deployment, StatefulSet): scale subresource, rollout restart.
    Kubernetes,
    /// A systemd unit (restart through D-Bus; a template `name@.service` scales as `name@1..N`).
    Systemd,
    /// A Windows service (restart through the SCM; not scalable).
    Windows,
    /// A process under headroom's own supervisor (restart; replicas = instances).
    Process,
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Platform::Kubernetes => "kubernetes",
            Platform::Systemd => "systemd",
            Platform::Windows => "windows",
            Platform::Process => "process",
        })
    }
}

impl Platform {
    /// Whether the platform can run more than one replica of a target
    /// (systemd only for template units: see [`Target::scalable`]).
    pub fn scalable(self) -> bool {
        matches!(self, Platform::Kubernetes | Platform::Process)
    }
}

/// One rung of the escalation ladder for crash patterns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rung {
    /// Restart the target.
    Restart,
    /// Add one replica (scalable platforms only).
    ScaleOut,
    /// Stop acting and ask a human (the ladder ends here).
    Alert,
}

/// The platform's own restart limit (systemd `StartLimitBurst` within
/// `StartLimitIntervalSec`; the Windows SCM's failure-action count within its
/// reset period). headroom never makes the restart that would hit it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartLimit {
    /// Starts allowed within `interval` (systemd default 5).
    pub burst: u32,
    /// The interval (systemd default 10s).
    pub interval: Span,
}

/// Scale-in: off unless enabled, and then only when the forecast *and* the
/// recent actual values are both low.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScaleIn {
    /// Whether headroom may remove replicas at all (default no).
    pub enabled: bool,
    /// Both the forecast peak and the recent actual peak must be below this
    /// fraction of the saturation level (default 0.5).
    pub below: f64,
    /// How far back "recent actual values" reach (default `6h`).
    pub window: Span,
}

impl Default for ScaleIn {
    fn default() -> Self {
        Self { enabled: false, below: 0.5, window: Span(Duration::from_secs(6 * 3600)) }
    }
}

/// One thing headroom may act on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// Unique name, used in decisions, ids and the audit log.
    pub name: String,
    /// Where the target lives.
    pub platform: Platform,
    /// The entity whose series drive decisions, e.g. `k8s/shop/deployment/checkout`.
    pub entity: String,
    /// The metric forecast for saturation, e.g. `cpu` or `memory`.
    pub metric: String,
    /// Restart-counter metric of the same entity, for restart loops and OOM kills.
    #[serde(default = "default_restarts_metric")]
    pub restarts_metric: String,
    /// Memory metric of the same entity, for OOM kills and leaks.
    #[serde(default = "default_memory_metric")]
    pub memory_metric: String,
    /// Saturation level as a fraction of capacity (0 < threshold ≤ 1). When the
    /// limits file gives no capacity, the limits file's threshold value is the
    /// saturation level and this fraction is not used.
    #[serde(default = "default_threshold")]
    pub threshold: f64,
    /// Capacity (cores, bytes, percent) per replica; overrides the limits file.
    #[serde(default)]
    pub capacity: Option<f64>,
    /// Forecast quantile to act on: one of 0.1, 0.5, 0.9, 0.95, 0.99 (default
    /// 0.9). The higher, the less risk accepted: the policy scales for the
    /// peak of that path, so 0.99 scales earlier and further than 0.9.
    #[serde(default = "default_quantile")]
    pub quantile: f64,
    /// Act on predicted saturation only when it is at most this far ahead.
    #[serde(default = "default_lead_time")]
    pub lead_time: Span,
    /// Fewest replicas headroom may leave (scalable platforms).
    #[serde(default = "default_min_replicas")]
    pub min_replicas: u32,
    /// Most replicas headroom may set (scalable platforms).
    #[serde(default = "default_max_replicas")]
    pub max_replicas: u32,
    /// Replicas added or removed by one action at most.
    #[serde(default = "default_max_step")]
    pub max_step: u32,
    /// Current replicas when no actuator reports them (plans on recorded data).
    #[serde(default)]
    pub replicas: Option<u32>,
    /// No action within this long after the previous one.
    #[serde(default = "default_cooldown")]
    pub cooldown: Span,
    /// At most this many actions in any hour for this target.
    #[serde(default = "default_target_cap")]
    pub max_actions_per_hour: u32,
    /// No action when the newest sample is older than this.
    #[serde(default = "default_max_sample_age")]
    pub max_sample_age: Span,
    /// After an action, the metric must be back under the threshold (or the
    /// crash pattern gone) within this long, or the action counts as failed.
    #[serde(default = "default_verify_window")]
    pub verify_window: Span,
    /// `dry-run` (default: record and explain only) or `enforce`.
    #[serde(default)]
    pub mode: Mode,
    /// Scale-in settings (off by default).
    #[serde(default)]
    pub scale_in: ScaleIn,
    /// What to do, in order, while a crash pattern persists. Default:
    /// restart, restart, scale_out, alert on scalable platforms; restart,
    /// restart, alert elsewhere.
    #[serde(default)]
    pub ladder: Option<Vec<Rung>>,
    /// Wait before rung n (n ≥ 1): `backoff × 2^(n-1)` after the previous rung.
    #[serde(default = "default_backoff")]
    pub backoff: Span,
    /// The ladder starts again from its first rung after this long without a crash action.
    #[serde(default = "default_ladder_reset")]
    pub ladder_reset: Span,
    /// The platform's own restart limit; defaults to systemd's (5 in 10 s) on systemd.
    #[serde(default)]
    pub start_limit: Option<StartLimit>,
}

fn default_restarts_metric() -> String {
    "restarts".into()
}
fn default_memory_metric() -> String {
    "memory".into()
}
fn default_threshold() -> f64 {
    0.8
}
fn default_quantile() -> f64 {
    0.9
}
fn default_lead_time() -> Span {
    Span(Duration::from_secs(6 * 3600))
}
fn default_min_replicas() -> u32 {
    1
}
fn default_max_replicas() -> u32 {
    10
}
fn default_max_step() -> u32 {
    2
}
fn default_cooldown() -> Span {
    Span(Duration::from_secs(30 * 60))
}
fn default_target_cap() -> u32 {
    2
}
fn default_max_sample_age() -> Span {
    Span(Duration::from_secs(15 * 60))
}
fn default_verify_window() -> Span {
    Span(Duration::from_secs(30 * 60))
}
fn default_backoff() -> Span {
    Span(Duration::from_secs(5 * 60))
}
fn default_ladder_reset() -> Span {
    Span(Duration::from_secs(24 * 3600))
}

/// systemd's defaults: `StartLimitBurst=5`, `StartLimitIntervalSec=10s`.
pub const SYSTEMD_START_LIMIT: StartLimit = StartLimit { burst: 5, interval: Span(Duration::from_secs(10)) };

impl Target {
    /// A target with every default, for tests and examples.
    pub fn new(name: &str, platform: Platform, entity: &str, metric: &str) -> Self {
        Self {
            name: name.into(),
            platform,
            entity: entity.into(),
            metric: metric.into(),
            restarts_metric: default_restarts_metric(),
            memory_metric: default_memory_metric(),
            threshold: default_threshold(),
            capacity: None,
            quantile: default_quantile(),
            lead_time: default_lead_time(),
            min_replicas: default_min_replicas(),
            max_replicas: default_max_replicas(),
            max_step: default_max_step(),
            replicas: None,
            cooldown: default_cooldown(),
            max_actions_per_hour: default_target_cap(),
            max_sample_age: default_max_sample_age(),
            verify_window: default_verify_window(),
            mode: Mode::DryRun,
            scale_in: ScaleIn::default(),
            ladder: None,
            backoff: default_backoff(),
            ladder_reset: default_ladder_reset(),
            start_limit: None,
        }
    }

    /// Whether this target can be scaled: Kubernetes workloads, supervised
    /// processes, and systemd template units (`systemd/name@.service`, run as
    /// `name@1..N`).
    pub fn scalable(&self) -> bool {
        self.platform.scalable() || (self.platform == Platform::Systemd && self.entity.ends_with("@.service"))
    }

    /// The escalation ladder in force (the configured one, or the platform's default).
    pub fn ladder(&self) -> Vec<Rung> {
        match &self.ladder {
            Some(l) => l.clone(),
            None if self.scalable() => vec![Rung::Restart, Rung::Restart, Rung::ScaleOut, Rung::Alert],
            None => vec![Rung::Restart, Rung::Restart, Rung::Alert],
        }
    }

    /// The restart limit in force: the configured one, else systemd's default on systemd.
    pub fn start_limit(&self) -> Option<StartLimit> {
        self.start_limit.or((self.platform == Platform::Systemd).then_some(SYSTEMD_START_LIMIT))
    }

    /// Every value of this target that cannot be used, with its key path under `at`.
    fn problems(&self, at: &str) -> Vec<Problem> {
        let mut out = Vec::new();
        let mut bad =
            |field: &str, value: String, why: &str| out.push(Problem::new(format!("{at}.{field}"), value, why));
        self.identity_problems(&mut bad);
        self.level_problems(&mut bad);
        self.replica_problems(&mut bad);
        self.limit_problems(&mut bad);
        self.scale_in_problems(&mut bad);
        self.ladder_problems(&mut bad);
        self.start_limit_problems(&mut bad);
        out
    }

    /// What the target is: a name, an entity and a metric, none blank.
    fn identity_problems(&self, bad: &mut Bad<'_>) {
        if self.name.trim().is_empty() {
            bad("name", format!("{:?}", self.name), "a target needs a non-empty name");
        }
        if self.entity.trim().is_empty() {
            bad("entity", format!("{:?}", self.entity), "a target needs the entity it acts on");
        }
        if self.metric.trim().is_empty() {
            bad("metric", format!("{:?}", self.metric), "a target needs the metric that drives it");
        }
    }

    /// The saturation level: threshold a fraction of capacity, capacity
    /// positive, quantile one the forecasts have.
    fn level_problems(&self, bad: &mut Bad<'_>) {
        if !(self.threshold > 0.0 && self.threshold <= 1.0) {
            bad("threshold", self.threshold.to_string(), "must be a fraction of capacity in (0, 1]");
        }
        if let Some(c) = self.capacity
            && !(c.is_finite() && c > 0.0)
        {
            bad("capacity", c.to_string(), "must be a positive number");
        }
        if !(0.0..=1.0).contains(&self.quantile) {
            bad(
                "quantile",
                self.quantile.to_string(),
                &format!("must be between 0 and 1 (and one of {})", headroom_core::forecast::quantile_levels()),
            );
        } else if headroom_core::forecast::quantile_index(self.quantile).is_none() {
            bad(
                "quantile",
                self.quantile.to_string(),
                &format!("forecasts have quantiles {} only", headroom_core::forecast::quantile_levels()),
            );
        }
    }

    /// Replica bounds and step: min ≤ max, max, step and a given count at least 1.
    fn replica_problems(&self, bad: &mut Bad<'_>) {
        if self.min_replicas > self.max_replicas {
            bad(
                "min_replicas",
                self.min_replicas.to_string(),
                &format!("is above max_replicas = {}", self.max_replicas),
            );
        }
        if self.max_replicas == 0 {
            bad("max_replicas", "0".into(), "must be at least 1");
        }
        if self.max_step == 0 {
            bad("max_step", "0".into(), "must be at least 1 (a step of 0 could never act)");
        }
        if let Some(r) = self.replicas
            && r == 0
        {
            bad("replicas", "0".into(), "a running target has at least 1 replica");
        }
    }

    /// The hourly cap at least 1; the stale-data limit and the verification window longer than 0s.
    fn limit_problems(&self, bad: &mut Bad<'_>) {
        if self.max_actions_per_hour == 0 {
            bad("max_actions_per_hour", "0".into(), "must be at least 1 (use mode = \"dry-run\" to never act)");
        }
        for (field, span) in [("max_sample_age", self.max_sample_age), ("verify_window", self.verify_window)] {
            if span.ms() == 0 {
                bad(field, format!("\"{span}\""), "must be longer than 0s");
            }
        }
    }

    /// `scale_in`: a fraction in (0, 1) over a window longer than 0s.
    fn scale_in_problems(&self, bad: &mut Bad<'_>) {
        if !(self.scale_in.below > 0.0 && self.scale_in.below < 1.0) {
            bad("scale_in.below", self.scale_in.below.to_string(), "must be a fraction in (0, 1)");
        }
        if self.scale_in.window.ms() == 0 {
            bad("scale_in.window", "\"0s\"".into(), "must be longer than 0s");
        }
    }

    /// The ladder in force: at least one rung, nothing after `alert`, and
    /// `scale_out` only where the target scales.
    fn ladder_problems(&self, bad: &mut Bad<'_>) {
        let ladder = self.ladder();
        if ladder.is_empty() {
            bad("ladder", "[]".into(), "needs at least one rung (e.g. [\"alert\"])");
        }
        if let Some(i) = ladder.iter().position(|r| *r == Rung::Alert)
            && i + 1 != ladder.len()
        {
            bad("ladder", format!("{ladder:?}"), "\"alert\" ends the ladder: nothing may follow it");
        }
        if ladder.contains(&Rung::ScaleOut) && !self.scalable() {
            bad("ladder", format!("{ladder:?}"), "scale_out needs a scalable platform (kubernetes or process)");
        }
    }

    /// A configured start limit: a burst of at least 2 within an interval longer than 0s.
    fn start_limit_problems(&self, bad: &mut Bad<'_>) {
        if let Some(limit) = self.start_limit {
            if limit.burst < 2 {
                bad(
                    "start_limit.burst",
                    limit.burst.to_string(),
                    "must be at least 2 (headroom keeps one start for the platform)",
                );
            }
            if limit.interval.ms() == 0 {
                bad("start_limit.interval", "\"0s\"".into(), "must be longer than 0s");
            }
        }
    }
}

/// Reports one problem of a target: its field (under the target's key path), value and why.
type Bad<'a> = dyn FnMut(&str, String, &str) + 'a;

impl Config {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Parse { path: path.into(), message: format!("cannot read: {e}") })?;
        Self::parse(&text, path)
    }

    /// Parses and validates TOML `text` (`path` is used in messages only).
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let cfg: Config =
            toml::from_str(text).map_err(|e| Error::Parse { path: path.into(), message: e.to_string() })?;
        let problems = cfg.problems();
        if problems.is_empty() { Ok(cfg) } else { Err(Error::Invalid { path: path.into(), problems }) }
    }

    /// Every value that cannot be used, with its key path.
    pub fn problems(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        if self.global.max_actions_per_hour == 0 {
            out.push(Problem::new("global.max_actions_per_hour", 0, "must be at least 1"));
        }
        out.extend(self.detect.problems("detect"));
        let mut seen = std::collections::BTreeMap::new();
        for (i, t) in self.targets.iter().enumerate() {
            let at = format!("targets[{i}]");
            if let Some(first) = seen.insert(t.name.clone(), i) {
                out.push(Problem::new(
                    format!("{at}.name"),
                    format!("{:?}", t.name),
                    format!("the same name as targets[{first}]: names must be unique"),
                ));
            }
            out.extend(t.problems(&at));
        }
        out
    }

    /// The target named `name`.
    pub fn target(&self, name: &str) -> Option<&Target> {
        self.targets.iter().find(|t| t.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config> {
        Config::parse(text, Path::new("headroom.toml"))
    }

    const ONE: &str = r#"
        [[targets]]
        name = "checkout"
        platform = "kubernetes"
        entity = "k8s/shop/deployment/checkout"
        metric = "cpu"
    "#;

    #[test]
    fn defaults_are_safe() {
        let cfg = parse(ONE).unwrap();
        let t = &cfg.targets[0];
        assert_eq!(t.mode, Mode::DryRun, "dry-run unless enforce is written out");
        assert!(!t.scale_in.enabled, "no scale-in unless enabled");
        assert_eq!(t.quantile, 0.9);
        assert_eq!(t.cooldown.ms(), 30 * 60_000);
        assert_eq!(t.ladder(), vec![Rung::Restart, Rung::Restart, Rung::ScaleOut, Rung::Alert]);
        assert_eq!(
            Target::new("u", Platform::Systemd, "systemd/x.service", "cpu").ladder(),
            vec![Rung::Restart, Rung::Restart, Rung::Alert],
            "no scale_out where nothing scales"
        );
        assert_eq!(cfg.global.max_actions_per_hour, 10);
        assert_eq!(t.start_limit(), None);
        let mut unit = Target::new("u", Platform::Systemd, "systemd/x.service", "cpu");
        assert_eq!(unit.start_limit(), Some(SYSTEMD_START_LIMIT));
        unit.start_limit = Some(StartLimit { burst: 3, interval: Span(Duration::from_secs(60)) });
        assert_eq!(unit.start_limit().unwrap().burst, 3);
    }

    #[test]
    fn unknown_keys_are_rejected_with_line_and_key() {
        let err = parse(&format!("{ONE}\ncooldwn = \"5m\"\n")).unwrap_err().to_string();
        assert!(err.contains("headroom.toml") && err.contains("cooldwn") && err.contains("line"), "{err}");
        let err = parse("[global]\nmax_actions = 3\n").unwrap_err().to_string();
        assert!(err.contains("max_actions"), "{err}");
    }

    #[test]
    fn bad_durations_and_negative_cooldowns_are_rejected() {
        let err = parse(&format!("{ONE}\ncooldown = \"-5m\"\n")).unwrap_err().to_string();
        assert!(err.contains("cooldown") && err.contains("-5m"), "{err}");
        let err = parse(&format!("{ONE}\nlead_time = \"soon\"\n")).unwrap_err().to_string();
        assert!(err.contains("lead_time") && err.contains("soon"), "{err}");
    }

    #[test]
    fn every_invalid_value_is_listed_with_its_path() {
        let text = format!(
            "{ONE}\nmin_replicas = 5\nmax_replicas = 3\nquantile = 1.5\nthreshold = 0\nmax_step = 0\n\
             [[targets]]\nname = \"checkout\"\nplatform = \"systemd\"\nentity = \"systemd/a.service\"\n\
             metric = \"cpu\"\nquantile = 0.7\nladder = [\"alert\", \"restart\"]\n"
        );
        let Err(Error::Invalid { problems, .. }) = parse(&text) else { panic!("accepted") };
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        for want in [
            "targets[0].min_replicas",
            "targets[0].quantile",
            "targets[0].threshold",
            "targets[0].max_step",
            "targets[1].name",
            "targets[1].quantile",
            "targets[1].ladder",
        ] {
            assert!(paths.contains(&want), "{want} missing from {paths:?}");
        }
        let q = problems.iter().find(|p| p.path == "targets[0].quantile").unwrap();
        assert_eq!(q.value, "1.5");
        let q = problems.iter().find(|p| p.path == "targets[1].quantile").unwrap();
        assert_eq!(q.value, "0.7");
        assert_eq!(q.why, "forecasts have quantiles 0.1, 0.5, 0.9, 0.95 and 0.99 only");
        let m = problems.iter().find(|p| p.path == "targets[0].min_replicas").unwrap();
        assert!(m.why.contains("max_replicas = 3"), "{m}");
    }

    #[test]
    fn the_risk_tails_are_quantiles_a_target_may_act_on() {
        for q in ["0.1", "0.5", "0.9", "0.95", "0.99"] {
            let cfg = parse(&format!("{ONE}\nquantile = {q}\n")).unwrap();
            assert_eq!(cfg.targets[0].quantile.to_string(), q);
        }
        let err = parse(&format!("{ONE}\nquantile = 0.999\n")).unwrap_err().to_string();
        assert!(err.contains("targets[0].quantile") && err.contains("0.1, 0.5, 0.9, 0.95 and 0.99"), "{err}");
    }

    #[test]
    fn scale_out_on_a_systemd_unit_is_rejected() {
        let text = "[[targets]]\nname = \"a\"\nplatform = \"systemd\"\nentity = \"systemd/a.service\"\n\
                    metric = \"cpu\"\nladder = [\"restart\", \"scale_out\"]\n";
        let err = parse(text).unwrap_err().to_string();
        assert!(err.contains("targets[0].ladder") && err.contains("scalable"), "{err}");
        // A template unit scales by its numbered instances.
        let template = text.replace("systemd/a.service", "systemd/worker@.service");
        let cfg = parse(&template).unwrap();
        assert!(cfg.targets[0].scalable());
        assert_eq!(cfg.targets[0].ladder(), vec![Rung::Restart, Rung::ScaleOut]);
    }
}
