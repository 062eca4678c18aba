//! The command line, as clap derive types. Subcommands are verbs.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use headroom_collect::files::{FileOptions, Layout};
use headroom_collect::resample::ResampleConfig;
use headroom_core::TimeUnit;
use headroom_engine::{Settings, Shard};

use crate::output::Output;

/// headroom predicts when services and nodes run out of CPU or memory, and acts before they do.
#[derive(Debug, Parser)]
#[command(name = "headroom", version, about, propagate_version = true)]
pub struct Cli {
    /// Log filter (tracing `EnvFilter` syntax); `HEADROOM_LOG` overrides it. `headroom run` logs at `info` unless told.
    #[arg(long, global = true)]
    pub log: Option<String>,
    /// How log lines are written: `auto` (journald under systemd, else text), `journald`, `text`, or `json`
    /// (one object per line). On Windows, `headroom run --service` logs to the Event Log.
    #[arg(long, global = true, value_enum, default_value_t)]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// `journald` when systemd connected stderr to the journal (`JOURNAL_STREAM`), else `text`.
    #[default]
    Auto,
    /// To journald, with structured fields (`journalctl DECISION_ID=…`).
    Journald,
    /// Readable on a terminal.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the reference protocol over recorded metrics: every model forecasts every origin; scores per model.
    Backtest(BacktestArgs),
    /// Forecast every series from the end of the data into the future.
    Forecast(ForecastArgs),
    /// Collect samples from files, Prometheus or this host into the store or a file.
    Collect(CollectArgs),
    /// Train the global LSTM on recorded metrics and save it as model.safetensors + card.json.
    Train(TrainArgs),
    /// Print one line per series of a store or file: points, span, step, gaps, repairs.
    Inspect(InspectArgs),
    /// Print the decisions headroom would take now for the configured targets, with explanations (changes nothing).
    Plan(PlanArgs),
    /// Carry out the current plan once, through the audit log (dry-run unless --enforce).
    Act(ActArgs),
    /// Run unattended: collect, forecast and act on the schedule of headroom.toml, serving /metrics and the API.
    Run(RunArgs),
    /// The Kubernetes operator: reconcile CapacityPolicies (`run`), or print their CRD (`crd`).
    Operator(OperatorArgs),
    /// Install the daemon (or the forecast job's timer) as a service of systemd or the Windows SCM; remove it; show it.
    Service(ServiceArgs),
}

#[derive(Debug, Args)]
pub struct ServiceArgs {
    #[command(subcommand)]
    pub command: ServiceCommand,
}

#[derive(Debug, Subcommand)]
pub enum ServiceCommand {
    /// Write, enable and start the service: a hardened systemd unit with a watchdog, its user and a polkit
    /// rule granting exactly the config's systemd units (Linux); an SCM service with recovery actions (Windows).
    Install(Box<ServiceInstallArgs>),
    /// Stop, disable and remove what install wrote (only that; the state directory and user stay unless --purge).
    Uninstall(ServiceUninstallArgs),
    /// The service's state, restarts, last decisions and last reload (from the daemon's API when it answers).
    Status(ServiceStatusArgs),
}

#[derive(Debug, Args)]
pub struct ServiceInstallArgs {
    /// The daemon's config, read now (its systemd targets become the polkit grant) and by the service.
    #[arg(long, default_value = "/etc/headroom/headroom.toml")]
    pub config: PathBuf,
    /// Run as this system user (created when missing). Default: `headroom`, a static user when the config
    /// has systemd targets (the polkit rule names it), else `DynamicUser=`. Windows: the account, default
    /// the virtual account `NT SERVICE\<name>`.
    #[arg(long)]
    pub user: Option<String>,
    /// The unit (service) name. Default: `headroom`; with --timer `headroom-forecast` (`-<i>` for shard i).
    #[arg(long)]
    pub name: Option<String>,
    /// Start `headroom run --enforce`: carry out the decisions of targets whose config says `mode = "enforce"`.
    /// Without it the service only records what it would do.
    #[arg(long, conflicts_with = "timer")]
    pub enforce: bool,
    /// Install the scheduled forecast job (`headroom forecast --config …` as a oneshot service and a timer)
    /// instead of the daemon.
    #[arg(long)]
    pub timer: bool,
    /// The timer's schedule (systemd.time(7), e.g. `hourly`, `*:0/15`). Default: the config's schedule.forecast.
    #[arg(long, requires = "timer")]
    pub on_calendar: Option<String>,
    /// With --timer: forecast only shard `i` of `n` (one timer per shard).
    #[arg(long, requires = "timer")]
    pub shard: Option<Shard>,
    /// The headroom executable the service starts. Default: this one.
    #[arg(long)]
    pub binary: Option<PathBuf>,
    /// Print every file that would be written, whole, and what systemd would be asked; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct ServiceUninstallArgs {
    /// The unit (service) name.
    #[arg(long, default_value = "headroom")]
    pub name: String,
    /// The user install created (its `sysusers.d` entry and, with --purge, the user itself).
    #[arg(long)]
    pub user: Option<String>,
    /// Also remove the state directory (/var/lib/<user>: store, audit log) and the user install created.
    #[arg(long)]
    pub purge: bool,
}

#[derive(Debug, Args)]
pub struct ServiceStatusArgs {
    /// The unit (service) name.
    #[arg(long, default_value = "headroom")]
    pub name: String,
    /// The daemon's config (where its API listens, its bearer token).
    #[arg(long, default_value = "/etc/headroom/headroom.toml")]
    pub config: PathBuf,
}

#[derive(Debug, Args)]
pub struct OperatorArgs {
    #[command(subcommand)]
    pub command: OperatorCommand,
}

#[derive(Debug, Subcommand)]
pub enum OperatorCommand {
    /// Run the controller (in the cluster, or against the current kubeconfig context).
    Run(Box<OperatorRunArgs>),
    /// Print the CapacityPolicy CustomResourceDefinition as YAML (what deploy/crd.yaml holds).
    Crd,
}

#[derive(Debug, Args)]
pub struct OperatorRunArgs {
    /// Address of /healthz, /readyz and /metrics.
    #[arg(long, default_value = "0.0.0.0:9464")]
    pub listen: std::net::SocketAddr,
    /// Where each policy's audit log is kept (`<dir>/audit/<namespace>/<policy>.jsonl`): a PersistentVolume.
    #[arg(long, default_value = "/var/lib/headroom")]
    pub state_dir: PathBuf,
    /// The model for policies that name none: `lstm` or a baseline.
    #[arg(long, default_value = "lstm")]
    pub model: String,
    /// The trained model directory for `lstm`.
    #[arg(long, default_value = "/models/default")]
    pub model_dir: PathBuf,
    /// Where Secrets named by a policy's `prometheus.secretRef` are mounted (`<dir>/<name>/token`).
    #[arg(long, default_value = "/etc/headroom/secrets")]
    pub secrets_dir: PathBuf,
    /// Only reconcile policies of this namespace (default: all namespaces).
    #[arg(long)]
    pub namespace: Option<String>,
    /// Run without leader election (one replica only).
    #[arg(long)]
    pub no_leader_election: bool,
    /// The Lease held by the leader.
    #[arg(long, default_value = "headroom-operator")]
    pub lease_name: String,
    /// The Lease's namespace (the operator's own).
    #[arg(long, env = "POD_NAMESPACE", default_value = "headroom-system")]
    pub lease_namespace: String,
    /// This replica's identity in the Lease and in Events (its pod name).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The daemon's configuration: sources, store, schedule, targets, processes, HTTP.
    #[arg(long, default_value = "headroom.toml")]
    pub config: PathBuf,
    /// Carry out decisions of targets whose config says `mode = "enforce"`. Without it, everything is dry-run.
    #[arg(long)]
    pub enforce: bool,
    /// Run under the Windows service dispatcher (what `headroom service install` registers). Windows only.
    #[arg(long)]
    pub service: bool,
    /// With --service: the service's name (its Event Log source too).
    #[arg(long, default_value = "headroom", requires = "service")]
    pub service_name: String,
}

#[derive(Debug, Args)]
pub struct BacktestArgs {
    /// Recorded metrics (a canonical long file, other files, or a store).
    #[arg(long, default_value = "data/sample/metrics.parquet")]
    pub data: PathBuf,
    /// Saturation thresholds per series (`entity,metric,threshold`).
    #[arg(long, default_value = "data/sample/limits.csv")]
    pub limits: PathBuf,
    /// The trained model directory (model.safetensors + card.json) used for `lstm`.
    #[arg(long, default_value = "models/default")]
    pub model: PathBuf,
    /// Models to run, comma-separated: `lstm`, `last`, `snaive-daily`, `snaive-weekly`, `linear`,
    /// `holt-winters`, and `auto` (per series and origin, the other model that did best before the origin).
    /// Default: `lstm` when --model holds one, every baseline, and `auto`.
    #[arg(long, value_delimiter = ',')]
    pub models: Option<Vec<String>>,
    /// Grid step the series are resampled to (must divide a day; `lstm` needs its card's step, 15m).
    #[arg(long, default_value = "15m")]
    pub step: String,
    /// How far ahead each forecast reaches, a whole number of steps (`lstm` needs its card's horizon, 48h).
    #[arg(long, default_value = "48h")]
    pub horizon: String,
    /// Time between consecutive forecast origins, a whole number of steps. Origins start at most 15 days
    /// before the end, keep at least 3 per series, and are never within 2 days of the start.
    #[arg(long, default_value = "24h")]
    pub origin_every: String,
    /// Directory for forecasts.parquet, scores.json, scores.parquet and scores.csv.
    #[arg(long, default_value = "headroom-backtest")]
    pub out: PathBuf,
    /// Policy replayed over the recorded data (headroom.toml); default: one
    /// target per series with a threshold (4 replicas, 1–16, scale-in on).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Time between decisions of the replayed policy (the simulated clock's tick).
    #[arg(long, default_value = "1h")]
    pub decide_every: String,
    /// Skip the decision replay (forecast scores only).
    #[arg(long)]
    pub no_replay: bool,
    /// Cross-validate the LSTM by machine with K folds: the machines (entities) are split into K folds and
    /// each fold is forecast by a model trained only on the other folds (before each series' first origin),
    /// instead of the model in --model. Fold models are saved under OUT/folds/ and reused when trained on
    /// the same series with the same training config.
    #[arg(long, value_name = "K")]
    pub cross_validate: Option<usize>,
    /// The LSTM config (JSON, as `headroom train --config` reads) the folds are trained with, as it is.
    /// Default: --model's config, trained fast (training origins every 8 bins, at most 1,500 steps).
    #[arg(long, value_name = "FILE", requires = "cross_validate")]
    pub cv_config: Option<PathBuf>,
    /// How to print the scores.
    #[arg(long, value_enum, default_value_t)]
    pub output: Output,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Recorded or collected metrics (a file, a directory of files, or a store). Default: the config's
    /// `[store] path` when it has one, else data/sample/metrics.parquet.
    #[arg(long)]
    pub data: Option<PathBuf>,
    #[command(flatten)]
    pub file: FileArgs,
    /// Capacity, saturation threshold and replicas per series (`entity,metric,threshold[,capacity,replicas]`).
    /// Default: the config's `[forecast] limits` when it has one, else data/sample/limits.csv.
    #[arg(long)]
    pub limits: Option<PathBuf>,
    /// The trained model directory used for `lstm`. Default: the config's `[forecast] model_dir`, else models/default.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// The forecasting model whose quantiles drive decisions (`lstm` or a baseline name).
    /// Default: the config's `[forecast] model`, else lstm.
    #[arg(long)]
    pub forecaster: Option<String>,
    /// headroom.toml: targets, thresholds, guardrails, ladder (and, for the daemon, sources, store, schedule).
    #[arg(long, default_value = "data/sample/headroom.toml")]
    pub config: PathBuf,
    /// The time to plan at: `end` (the newest sample in the data), `wall` (this machine's clock) or a timestamp.
    #[arg(long, default_value = "end")]
    pub now: String,
    /// Audit log whose past actions count for cooldowns, caps and the ladder (read only for `plan`).
    /// Default for `act`: the config's `[audit] path`, else headroom-audit/audit.jsonl.
    #[arg(long)]
    pub audit: Option<PathBuf>,
    /// Only the targets whose series fall in shard `i` of `n` (0 ≤ i < n; a stable hash of entity and metric),
    /// so n jobs cover every target exactly once.
    #[arg(long)]
    pub shard: Option<Shard>,
    /// How to print the decisions.
    #[arg(long, value_enum, default_value_t)]
    pub output: Output,
}

/// Where `plan` and `act` read from: each flag, else what the config says, else the shipped sample.
#[derive(Debug, Clone)]
pub struct Inputs {
    pub data: PathBuf,
    pub limits: Option<PathBuf>,
    pub model: PathBuf,
    pub forecaster: String,
}

impl PlanArgs {
    /// The inputs, from the flags first and then from `settings`.
    pub fn inputs(&self, settings: &Settings) -> Inputs {
        let d = settings.declared;
        let data = self.data.clone().unwrap_or_else(|| {
            if d.store { settings.store.path.clone() } else { "data/sample/metrics.parquet".into() }
        });
        // A config that says where its data is but names no limits file has none (targets carry `capacity`).
        let limits = self.limits.clone().or_else(|| match (&settings.forecast.limits, d.store) {
            (Some(l), _) => Some(l.clone()),
            (None, true) => None,
            (None, false) => Some("data/sample/limits.csv".into()),
        });
        let model = self.model.clone().unwrap_or_else(|| settings.forecast.model_dir.clone());
        let forecaster = self.forecaster.clone().unwrap_or_else(|| settings.forecast.model.clone());
        Inputs { data, limits, model, forecaster }
    }
}

#[derive(Debug, Args)]
pub struct ActArgs {
    /// The same inputs as `plan`; `--audit` is the audit log written (default headroom-audit/audit.jsonl).
    #[command(flatten)]
    pub plan: PlanArgs,
    /// Carry out decisions of targets whose config says `mode = "enforce"`. Without it, everything is dry-run.
    #[arg(long)]
    pub enforce: bool,
}

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Recorded metrics (a file, a directory of files, or a store).
    #[arg(long, default_value = "data/sample/metrics.parquet")]
    pub data: PathBuf,
    #[command(flatten)]
    pub file: FileArgs,
    /// Directory to write the model into.
    #[arg(long)]
    pub out: PathBuf,
    /// LSTM configuration (JSON; fields left out take their defaults).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Use each series only up to its first evaluation origin of the reference
    /// protocol, so that a backtest on the same data is honest.
    #[arg(long)]
    pub before_first_origin: bool,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct ForecastArgs {
    /// Recorded metrics (a file, a directory of files, or a store). Default: the `[store] path` of
    /// --config when given, else data/sample/metrics.parquet.
    #[arg(long)]
    pub data: Option<PathBuf>,
    #[command(flatten)]
    pub file: FileArgs,
    /// The trained model directory used for `lstm`. Default: the `[forecast] model_dir` of --config, else models/default.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// headroom.toml to take the store and model from (a scheduled job beside the daemon). Only its targets'
    /// series are forecast.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Only the series in shard `i` of `n` (0 ≤ i < n; a stable hash of entity and metric), so n jobs
    /// forecast every series exactly once.
    #[arg(long)]
    pub shard: Option<Shard>,
    /// Models to run, comma-separated (`lstm` or a baseline name).
    #[arg(long, value_delimiter = ',', default_value = "snaive-daily")]
    pub models: Vec<String>,
    /// How far ahead, e.g. `48h`.
    #[arg(long, default_value = "48h")]
    pub horizon: String,
    /// Output file (`.parquet` or `.csv`), columns entity, metric, model, origin, ts, p10, p50, p90, p95, p99.
    #[arg(long, default_value = "forecasts.parquet")]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct CollectArgs {
    #[command(subcommand)]
    pub source: CollectSource,
}

#[derive(Debug, Subcommand)]
pub enum CollectSource {
    /// Recorded CSV or Parquet files (long or wide), or directories of them.
    Files {
        /// Files or directories (their .csv and .parquet files are read).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        #[command(flatten)]
        file: FileArgs,
        #[command(flatten)]
        sink: SinkArgs,
    },
    /// A Prometheus server, through `/api/v1/query_range`.
    Prometheus(Box<PrometheusArgs>),
    /// This machine: CPU and memory of the host and of chosen processes and systemd units.
    Host {
        #[command(flatten)]
        host: HostArgs,
        #[command(flatten)]
        sink: SinkArgs,
    },
}

/// How to read recorded files.
#[derive(Debug, Clone, Args)]
pub struct FileArgs {
    /// Force the layout (default: `long` when the columns are entity, metric, value; else `wide`).
    #[arg(long)]
    pub layout: Option<Layout>,
    /// Name of the timestamp column.
    #[arg(long, default_value = "timestamp")]
    pub timestamp_column: String,
    /// Unit of epoch-number timestamps (`s` or `ms`); bare numbers are never guessed.
    #[arg(long)]
    pub time_unit: Option<TimeUnit>,
    /// For files without a timestamp column: time of the first row (RFC 3339 or `YYYY-MM-DD HH:MM:SS` UTC).
    #[arg(long, requires = "step")]
    pub start: Option<String>,
    /// For files without a timestamp column: time between rows (e.g. `5m`).
    #[arg(long, requires = "start")]
    pub step: Option<String>,
    /// Wide files: entity name; `{stem}` is the file name without extension.
    #[arg(long)]
    pub entity: Option<String>,
    /// Wide files with one value column: the metric name to give it.
    #[arg(long)]
    pub metric: Option<String>,
}

impl FileArgs {
    pub fn options(&self) -> anyhow::Result<FileOptions> {
        Ok(FileOptions {
            layout: self.layout,
            timestamp_column: Some(self.timestamp_column.clone()),
            time_unit: self.time_unit,
            start_ms: self.start.as_deref().map(|s| headroom_core::parse_timestamp(s, None)).transpose()?,
            step_ms: self.step.as_deref().map(duration_ms).transpose()?,
            entity: self.entity.clone(),
            metric: self.metric.clone(),
        })
    }
}

/// Where collected samples go.
#[derive(Debug, Clone, Args)]
pub struct SinkArgs {
    /// Store directory (Parquet per series) to merge the samples into.
    #[arg(long, env = "HEADROOM_STORE", default_value = "headroom-store", conflicts_with = "out")]
    pub store: PathBuf,
    /// Write one canonical long file instead (`.parquet` or `.csv`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub grid: GridArgs,
    /// How to print the summary of what was collected.
    #[arg(long, value_enum, default_value_t)]
    pub output: Output,
}

/// The grid used to count gaps and repairs.
#[derive(Debug, Clone, Args)]
pub struct GridArgs {
    /// Grid step for gap and repair counts.
    #[arg(long = "grid-step", default_value = "5m")]
    pub grid_step: String,
    /// Longest gap that resampling interpolates; longer gaps stay missing.
    #[arg(long, default_value = "1h")]
    pub max_gap: String,
}

impl GridArgs {
    pub fn config(&self) -> anyhow::Result<ResampleConfig> {
        Ok(ResampleConfig {
            step_ms: duration_ms(&self.grid_step)?,
            max_gap_ms: duration_ms(&self.max_gap)?,
            strict: false,
        })
    }
}

#[derive(Debug, Args)]
pub struct PrometheusArgs {
    /// Base URL of the Prometheus server, e.g. `http://127.0.0.1:9090`.
    #[arg(long)]
    pub url: String,
    /// How far back from `--end` to pull, e.g. `14d`.
    #[arg(long, default_value = "1d")]
    pub range: String,
    /// End of the range (RFC 3339; default: now).
    #[arg(long)]
    pub end: Option<String>,
    /// Query resolution (`step` of query_range).
    #[arg(long, default_value = "5m")]
    pub step: String,
    /// Query presets to run: `kubernetes` (workloads via cAdvisor + kube-state-metrics), `node` (node-exporter).
    #[arg(long, value_delimiter = ',', default_value = "kubernetes,node")]
    pub preset: Vec<String>,
    /// Extra query, `METRIC=PROMQL`; its entity comes from `--entity`. Replaces the presets.
    #[arg(long = "query", value_name = "METRIC=PROMQL")]
    pub queries: Vec<String>,
    /// Entity template for `--query` results, filled from labels, e.g. `host/{instance}`.
    #[arg(long, default_value = "prom/{instance}")]
    pub entity: String,
    /// Bearer token read from this file.
    #[arg(long, conflicts_with_all = ["bearer_token_env", "basic_user"])]
    pub bearer_token_file: Option<PathBuf>,
    /// Bearer token read from this environment variable.
    #[arg(long, conflicts_with = "basic_user")]
    pub bearer_token_env: Option<String>,
    /// Basic-auth user name.
    #[arg(long)]
    pub basic_user: Option<String>,
    /// Basic-auth password read from this file.
    #[arg(long, requires = "basic_user", conflicts_with = "basic_password_env")]
    pub basic_password_file: Option<PathBuf>,
    /// Basic-auth password read from this environment variable.
    #[arg(long, requires = "basic_user")]
    pub basic_password_env: Option<String>,
    /// PEM file of the CA(s) to trust for Prometheus' certificate (instead of the system roots).
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// Timeout of each HTTP request.
    #[arg(long, default_value = "30s")]
    pub timeout: String,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Retries of a request after 5xx, 429, timeouts and connection errors.
    #[arg(long, default_value_t = 4)]
    pub retries: u32,
    /// Most evaluation points per series in one request (Prometheus refuses > 11,000).
    #[arg(long, default_value_t = 10_000)]
    pub max_points_per_request: usize,
    #[command(flatten)]
    pub sink: SinkArgs,
}

#[derive(Debug, Clone, Args)]
pub struct HostArgs {
    /// Time between samples.
    #[arg(long, default_value = "15s")]
    pub interval: String,
    /// How long to sample (default: until Ctrl-C; what was sampled is kept).
    #[arg(long = "for")]
    pub duration: Option<String>,
    /// Follow processes with this name (`proc/<name>`); repeatable.
    #[arg(long = "process")]
    pub processes: Vec<String>,
    /// Follow this systemd unit (`systemd/<unit>`); repeatable.
    #[arg(long = "unit")]
    pub units: Vec<String>,
    /// Follow every systemd unit seen.
    #[arg(long)]
    pub all_units: bool,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// A store directory, a file, or a directory of CSV/Parquet files.
    pub path: PathBuf,
    #[command(flatten)]
    pub file: FileArgs,
    #[command(flatten)]
    pub grid: GridArgs,
    /// How to print.
    #[arg(long, value_enum, default_value_t)]
    pub output: Output,
}

/// A duration flag in milliseconds.
pub fn duration_ms(s: &str) -> anyhow::Result<i64> {
    Ok(headroom_core::parse_duration(s)?.as_millis() as i64)
}
