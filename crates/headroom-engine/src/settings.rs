//! The whole `headroom.toml`: the policy (`[global]`, `[detect]`,
//! `[[targets]]`, see [`headroom_remediate::config`]) and what the daemon and
//! the one-shot jobs need around it.
//!
//! ```toml
//! [[sources]]                        # the same options as `headroom collect`
//! type = "prometheus"
//! url = "http://127.0.0.1:9090"
//! presets = ["node"]
//!
//! [store]
//! path = "/var/lib/headroom/store"   # Parquet per series
//! retention = "30d"                  # older samples are compacted away
//! backfill = "14d"                   # how far back the first pull of a range source reaches
//!
//! [audit]
//! path = "/var/lib/headroom/audit.jsonl"
//!
//! [forecast]
//! model = "lstm"                     # or a baseline: snaive-daily, snaive-weekly, …
//! model_dir = "models/default"
//! limits = "limits.csv"              # optional: capacity, threshold, replicas per series
//!
//! [schedule]
//! collect = "1m"
//! forecast = "1h"
//! act = "1m"
//!
//! [daemon]
//! listen = "127.0.0.1:9464"
//! bearer_token_file = "/etc/headroom/token"   # optional: required on every HTTP request but /healthz
//! shutdown_timeout = "30s"
//! watch = "30s"                      # how often the config file is checked for a change
//! watch_config = true                # false: reload only on SIGHUP and POST /-/reload
//!
//! [[processes]]                      # supervised by the daemon; targets with platform = "process"
//! name = "worker"
//! command = ["/usr/bin/worker", "--port", "8080"]
//! ```
//!
//! Every section is optional. Unknown keys are refused with their line;
//! values that parse but cannot be used are all listed with their key path.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use headroom_actuate::process::ProcessSpec;
use headroom_collect::SourceConfig;
use headroom_core::Span;
use headroom_remediate::config::{Global, Platform};
use headroom_remediate::detect::DetectConfig;
use headroom_remediate::error::Problem;
use headroom_remediate::{Config, Error};
use serde::{Deserialize, Serialize};

/// Where collected samples are kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreSettings {
    /// The store directory (default `headroom-store`).
    pub path: PathBuf,
    /// Samples older than this are removed when the store is compacted (default 30d).
    pub retention: Span,
    /// How far back the first pull of a range source (Prometheus) reaches (default 14d).
    pub backfill: Span,
}

impl Default for StoreSettings {
    fn default() -> Self {
        Self { path: "headroom-store".into(), retention: days(30), backfill: days(14) }
    }
}

fn days(n: u64) -> Span {
    Span(Duration::from_secs(n * 86_400))
}

/// Where decisions and their outcomes are recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditSettings {
    /// The audit log (default `headroom-audit/audit.jsonl`).
    pub path: PathBuf,
}

impl Default for AuditSettings {
    fn default() -> Self {
        Self { path: "headroom-audit/audit.jsonl".into() }
    }
}

/// The model that forecasts, and the limits it is compared against.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ForecastSettings {
    /// `lstm` or a baseline name (default `lstm`).
    pub model: String,
    /// The trained model directory used for `lstm` (default `models/default`).
    pub model_dir: PathBuf,
    /// Capacity, saturation threshold and replicas per series (`entity,metric,threshold[,capacity,replicas]`).
    pub limits: Option<PathBuf>,
}

impl Default for ForecastSettings {
    fn default() -> Self {
        Self { model: "lstm".into(), model_dir: "models/default".into(), limits: None }
    }
}

/// How often each of the daemon's jobs runs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Schedule {
    /// Collect from every source into the store (default 1m).
    pub collect: Span,
    /// Forecast every target's series (default 1h).
    pub forecast: Span,
    /// Decide and act on the latest forecasts and fresh samples (default 1m).
    pub act: Span,
}

impl Default for Schedule {
    fn default() -> Self {
        let m = |n: u64| Span(Duration::from_secs(n * 60));
        Self { collect: m(1), forecast: m(60), act: m(1) }
    }
}

/// The daemon's own settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DaemonSettings {
    /// Address of `/metrics`, `/healthz`, `/readyz`, `/api/v1/…` (default 127.0.0.1:9464).
    pub listen: SocketAddr,
    /// A file holding the bearer token every request but `/healthz` must carry (re-read when it changes).
    pub bearer_token_file: Option<PathBuf>,
    /// How long an action in flight may take to finish after a stop is asked (default 30s).
    pub shutdown_timeout: Span,
    /// How often the config file is checked for a change (default 30s).
    pub watch: Span,
    /// Whether the config file is watched at all (default true; false: only SIGHUP and `POST /-/reload`).
    pub watch_config: bool,
}

impl Default for DaemonSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9464)),
            bearer_token_file: None,
            shutdown_timeout: Span(Duration::from_secs(30)),
            watch: Span(Duration::from_secs(30)),
            watch_config: true,
        }
    }
}

/// The file as written: every top-level key, each refused if unknown.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    global: Global,
    #[serde(default)]
    detect: DetectConfig,
    #[serde(default)]
    targets: Vec<headroom_remediate::config::Target>,
    #[serde(default)]
    sources: Vec<SourceConfig>,
    store: Option<StoreSettings>,
    audit: Option<AuditSettings>,
    forecast: Option<ForecastSettings>,
    #[serde(default)]
    schedule: Schedule,
    #[serde(default)]
    daemon: DaemonSettings,
    #[serde(default)]
    processes: Vec<ProcessSpec>,
}

/// A whole, validated `headroom.toml`.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The policy: limits across targets, detectors, targets.
    pub policy: Config,
    /// Where samples come from (the daemon's collect job).
    pub sources: Vec<SourceConfig>,
    /// Where they are kept.
    pub store: StoreSettings,
    /// Where decisions are recorded.
    pub audit: AuditSettings,
    /// What forecasts.
    pub forecast: ForecastSettings,
    /// How often each job runs.
    pub schedule: Schedule,
    /// The daemon's HTTP endpoint and lifecycle.
    pub daemon: DaemonSettings,
    /// Commands the daemon supervises.
    pub processes: Vec<ProcessSpec>,
    /// Which of `[store]`, `[audit]` and `[forecast]` the file writes out
    /// (the one-shot commands take their data, audit log and model from
    /// the file only when it says where they are).
    pub declared: Declared,
}

/// Sections a file writes out, rather than leaves to their defaults.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Declared {
    /// `[store]`.
    pub store: bool,
    /// `[audit]`.
    pub audit: bool,
    /// `[forecast]`.
    pub forecast: bool,
}

impl Settings {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Parse { path: path.into(), message: format!("cannot read: {e}") })?;
        Self::parse(&text, path)
    }

    /// Parses and validates TOML `text` (`path` is used in messages only).
    pub fn parse(text: &str, path: &Path) -> Result<Self, Error> {
        let f: File = toml::from_str(text).map_err(|e| Error::Parse { path: path.into(), message: e.to_string() })?;
        let settings = Settings {
            policy: Config { global: f.global, detect: f.detect, targets: f.targets },
            sources: f.sources,
            declared: Declared { store: f.store.is_some(), audit: f.audit.is_some(), forecast: f.forecast.is_some() },
            store: f.store.unwrap_or_default(),
            audit: f.audit.unwrap_or_default(),
            forecast: f.forecast.unwrap_or_default(),
            schedule: f.schedule,
            daemon: f.daemon,
            processes: f.processes,
        };
        let problems = settings.problems();
        if problems.is_empty() { Ok(settings) } else { Err(Error::Invalid { path: path.into(), problems }) }
    }

    /// Every value that cannot be used, with its key path.
    pub fn problems(&self) -> Vec<Problem> {
        let mut out = self.policy.problems();
        // Zero and negative durations are refused by the parser, with their line.
        if self.store.backfill > self.store.retention {
            out.push(Problem::new(
                "store.backfill",
                self.store.backfill,
                format!(
                    "reaches further back than store.retention = {}: what it pulls would be compacted away",
                    self.store.retention
                ),
            ));
        }
        if self.forecast.model != crate::models::LSTM
            && let Err(e) = headroom_forecast::baselines::baseline(&self.forecast.model)
        {
            out.push(Problem::new("forecast.model", &self.forecast.model, e.to_string()));
        }
        for (i, s) in self.sources.iter().enumerate() {
            if let SourceConfig::Prometheus(p) = s
                && (p.start != 0 || p.end != 0)
            {
                out.push(Problem::new(
                    format!("sources[{i}].start"),
                    format!("{}..{}", p.start, p.end),
                    "the schedule sets the range of each pull: leave start and end out (store.backfill sets the first)",
                ));
            }
        }
        let mut names = std::collections::BTreeMap::new();
        for (i, p) in self.processes.iter().enumerate() {
            if let Some(first) = names.insert(p.name.clone(), i) {
                out.push(Problem::new(
                    format!("processes[{i}].name"),
                    format!("{:?}", p.name),
                    format!("the same name as processes[{first}]: names must be unique"),
                ));
            }
            for why in p.problems() {
                out.push(Problem::new(format!("processes[{i}]"), format!("{:?}", p.name), why));
            }
        }
        for (i, t) in self.policy.targets.iter().enumerate() {
            if t.platform != Platform::Process {
                continue;
            }
            let name = t.entity.strip_prefix("proc/").unwrap_or(&t.entity);
            if !names.contains_key(name) {
                out.push(Problem::new(
                    format!("targets[{i}].entity"),
                    format!("{:?}", t.entity),
                    "a process target names a [[processes]] entry as proc/<name>; none has that name",
                ));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Settings, Error> {
        Settings::parse(text, Path::new("headroom.toml"))
    }

    #[test]
    fn a_policy_file_alone_is_a_whole_config_with_safe_defaults() {
        let s = parse(
            "[[targets]]\nname = \"web\"\nplatform = \"kubernetes\"\nentity = \"k8s/shop/deployment/web\"\nmetric = \"cpu\"\n",
        )
        .unwrap();
        assert_eq!(s.policy.targets.len(), 1);
        assert_eq!(
            (s.schedule.collect.ms(), s.schedule.forecast.ms(), s.schedule.act.ms()),
            (60_000, 3_600_000, 60_000)
        );
        assert_eq!(s.daemon.listen.to_string(), "127.0.0.1:9464", "loopback unless told otherwise");
        assert_eq!(s.store.retention.ms(), 30 * 86_400_000);
        assert!(s.sources.is_empty() && s.processes.is_empty());
    }

    #[test]
    fn sources_processes_and_process_targets_are_read_and_checked() {
        let ok = r#"
            [[sources]]
            type = "prometheus"
            url = "http://127.0.0.1:9090"
            presets = ["node"]
            [[sources]]
            type = "host"
            interval = "5s"
            [[processes]]
            name = "worker"
            command = ["/bin/sleep", "600"]
            [[targets]]
            name = "worker"
            platform = "process"
            entity = "proc/worker"
            metric = "cpu"
        "#;
        let s = parse(ok).unwrap();
        assert_eq!(s.sources.len(), 2);
        assert_eq!(s.processes[0].command, ["/bin/sleep", "600"]);
        let bad =
            ok.replace("entity = \"proc/worker\"", "entity = \"proc/wroker\"").replace("\"5s\"", "\"5s\"\nstart = 1");
        let err = parse(&bad).unwrap_err().to_string();
        assert!(err.contains("start") && err.contains("line"), "unknown key in a host source: {err}");
        let bad = ok.replace("entity = \"proc/worker\"", "entity = \"proc/wroker\"");
        let Err(Error::Invalid { problems, .. }) = parse(&bad) else { panic!("accepted") };
        assert_eq!(problems[0].path, "targets[0].entity", "{problems:?}");
    }

    #[test]
    fn every_unusable_value_is_listed_with_its_key_path() {
        let text = "[store]\nretention = \"1d\"\n[forecast]\nmodel = \"prophet\"\n\
                    [[sources]]\ntype = \"prometheus\"\nurl = \"http://x\"\nstart = 5\n";
        let problems = match parse(text) {
            Err(Error::Invalid { problems, .. }) => problems,
            other => panic!("{other:?}"),
        };
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, ["store.backfill", "forecast.model", "sources[0].start"], "{problems:?}");
        let err = parse("[schedule]\nact = \"0s\"\n").unwrap_err().to_string();
        assert!(err.contains("line 2") && err.contains("zero"), "{err}");
        let err = parse("[daemon]\nlisten = \"nowhere\"\n").unwrap_err().to_string();
        assert!(err.contains("listen") && err.contains("line 2"), "{err}");
    }

    #[test]
    fn the_readme_example_is_a_valid_config() {
        let readme = include_str!("../../../README.md");
        let section = &readme[readme.find("## Run: the daemon").expect("the README's daemon section")..];
        let start = section.find("```toml\n").expect("its example") + "```toml\n".len();
        let example = &section[start..start + section[start..].find("```").unwrap()];
        let s = parse(example).unwrap();
        assert_eq!((s.sources.len(), s.processes.len(), s.policy.targets.len()), (1, 1, 1));
        assert!(s.declared.store && s.declared.audit && s.declared.forecast);
    }
}
