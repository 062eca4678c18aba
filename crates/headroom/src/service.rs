//! `headroom service install|uninstall|status`: the config read into a
//! [`headroom_service::Service`], handed to the platform's shell
//! (`headroom_service::linux` over systemd's D-Bus API; on Windows, the SCM).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use headroom_engine::Settings;
use headroom_remediate::config::Platform;
use headroom_service::{Kind, Service, UnitGrant, User};

use crate::cli::{ServiceArgs, ServiceCommand, ServiceInstallArgs};

/// The user a service runs as when `--user` is not given.
pub const DEFAULT_USER: &str = "headroom";

pub async fn run(args: ServiceArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        ServiceCommand::Install(a) => install(*a).await,
        ServiceCommand::Uninstall(a) => uninstall(a.name, a.user, a.purge).await,
        ServiceCommand::Status(a) => status(a.name, a.config).await,
    }
}

/// The default unit name: `headroom` for the daemon, `headroom-forecast`
/// for the forecast job (`headroom-forecast-<i>` for shard `i`).
fn unit_name(a: &ServiceInstallArgs) -> String {
    if let Some(n) = &a.name {
        return n.clone();
    }
    match (&a.timer, &a.shard) {
        (false, _) => "headroom".into(),
        (true, None) => "headroom-forecast".into(),
        (true, Some(s)) => format!("headroom-forecast-{}", s.index),
    }
}

/// An absolute, symlink-free path to an existing file.
fn absolute(path: &Path, what: &str) -> anyhow::Result<PathBuf> {
    std::fs::canonicalize(path).with_context(|| format!("{what} {}", path.display()))
}

/// Who the service runs as: `--user` (created when missing); else
/// `headroom`, a static user when systemd targets need the polkit rule to
/// name it (polkitd resolves it from /etc/passwd at any time), else
/// `DynamicUser=` (nothing outside the unit needs to know it).
fn account(user: Option<&str>, units: &[UnitGrant]) -> User {
    let exists = user_exists;
    match user {
        Some(n) => User::Static { name: n.into(), create: !exists(n) },
        None if !units.is_empty() => User::Static { name: DEFAULT_USER.into(), create: !exists(DEFAULT_USER) },
        None => User::Dynamic { name: DEFAULT_USER.into() },
    }
}

#[cfg(unix)]
fn user_exists(name: &str) -> bool {
    headroom_service::linux::user_exists(name)
}

#[cfg(not(unix))]
fn user_exists(_: &str) -> bool {
    false
}

/// The service `a` asks for: `settings` read from `config`, started as
/// `binary` (both absolute), for systemd `systemd_version`. Not validated
/// (see [`Service::validate`]).
pub fn service_of(
    a: &ServiceInstallArgs,
    settings: &Settings,
    config: PathBuf,
    binary: PathBuf,
    systemd_version: u32,
) -> anyhow::Result<Service> {
    let mut units = Vec::new();
    for t in settings.policy.targets.iter().filter(|t| t.platform == Platform::Systemd) {
        let unit = headroom_actuate::systemd::UnitName::of_target(t)?;
        let grant = match unit.kind() {
            headroom_actuate::systemd::UnitKind::Template => UnitGrant::Template(unit.as_str().into()),
            _ => UnitGrant::Unit(unit.as_str().into()),
        };
        units.push(grant);
    }
    units.sort();
    units.dedup();
    let kind = if a.timer {
        let on_calendar = match &a.on_calendar {
            Some(c) => c.clone(),
            None => headroom_service::unit::on_calendar_every(settings.schedule.forecast.0).with_context(|| {
                format!(
                    "schedule.forecast = {:?} does not divide a day into whole minutes: give --on-calendar (systemd.time(7), e.g. hourly)",
                    settings.schedule.forecast.0
                )
            })?,
        };
        Kind::Timer { on_calendar, shard: a.shard.map(|s| s.to_string()) }
    } else {
        Kind::Daemon
    };
    let longest_stop = settings.processes.iter().map(|p| p.stop_timeout.0).max().unwrap_or(Duration::ZERO);
    let mut reads = Vec::new();
    for (i, source) in settings.sources.iter().enumerate() {
        if let headroom_collect::SourceConfig::Files { paths, .. } = source {
            reads.extend(paths.iter().enumerate().map(|(j, p)| (format!("sources[{i}].paths[{j}]"), p.clone())));
        }
    }
    reads.push(("forecast.model_dir".into(), settings.forecast.model_dir.clone()));
    reads.extend(settings.forecast.limits.iter().map(|p| ("forecast.limits".into(), p.clone())));
    reads.extend(settings.daemon.bearer_token_file.iter().map(|p| ("daemon.bearer_token_file".into(), p.clone())));
    let writes =
        vec![("store.path".into(), settings.store.path.clone()), ("audit.path".into(), settings.audit.path.clone())];
    let s = Service {
        name: unit_name(a),
        binary,
        config,
        enforce: a.enforce,
        // The daemon and the forecast job of one config run as the same user: one state directory.
        user: account(a.user.as_deref(), &units),
        units: if a.timer { Vec::new() } else { units },
        delegate_memory: !a.timer && settings.processes.iter().any(|p| p.memory_limit_bytes.is_some()),
        supervises: !a.timer && !settings.processes.is_empty(),
        shutdown: settings.daemon.shutdown_timeout.0 + longest_stop,
        kind,
        systemd_version,
        reads,
        writes,
    };
    Ok(s)
}

#[cfg(unix)]
async fn install(a: ServiceInstallArgs) -> anyhow::Result<ExitCode> {
    use headroom_actuate::systemd::SystemdActuator;
    let settings = Settings::load(&a.config)?;
    let sd = SystemdActuator::system().await;
    let version = match &sd {
        Ok(sd) => {
            let v = sd.version().await?;
            headroom_service::linux::major_version(&v).with_context(|| format!("systemd's version {v:?}"))?
        }
        Err(e) if a.dry_run => {
            eprintln!("note: systemd is not reachable ({e}); the unit is written for systemd 252");
            252
        }
        Err(e) => return Err(anyhow::anyhow!("{e}")),
    };
    let config = absolute(&a.config, "--config")?;
    let binary = match &a.binary {
        Some(b) => absolute(b, "--binary")?,
        None => std::env::current_exe().context("the path of this headroom binary")?,
    };
    let s = service_of(&a, &settings, config, binary, version)?;
    s.validate()?;
    if a.dry_run {
        print!("{}", headroom_service::linux::dry_run(&s));
        return Ok(ExitCode::SUCCESS);
    }
    let sd = sd.map_err(|e| anyhow::anyhow!("{e}"))?;
    for line in headroom_service::linux::install(&s, &sd).await? {
        println!("{line}");
    }
    println!("check it: systemctl status {0}; journalctl -u {0}; systemd-analyze security {0}", s.enabled_unit());
    Ok(ExitCode::SUCCESS)
}

#[cfg(unix)]
async fn uninstall(name: String, user: Option<String>, purge: bool) -> anyhow::Result<ExitCode> {
    let sd = headroom_actuate::systemd::SystemdActuator::system().await?;
    let user = user.unwrap_or_else(|| DEFAULT_USER.into());
    for line in headroom_service::linux::uninstall(&name, &user, purge, &sd).await? {
        println!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(unix)]
async fn status(name: String, config: PathBuf) -> anyhow::Result<ExitCode> {
    let sd = headroom_actuate::systemd::SystemdActuator::system().await?;
    let units = headroom_service::linux::status(&name, &sd).await?;
    if units.is_empty() {
        println!("{name}.service: not installed (`headroom service install`)");
        return Ok(ExitCode::from(3));
    }
    let mut active = false;
    for u in &units {
        let st = &u.status;
        active |= st.unit.ends_with(".service") && st.active_state == "active";
        print!("{}: {} ({})", st.unit, st.state(), u.file_state);
        if let Some(n) = st.n_restarts {
            print!(", NRestarts {n}");
        }
        if let Some(p) = st.main_pid {
            print!(", MainPID {p}");
        }
        if let Some(r) = &st.result {
            print!(", Result {r}");
        }
        if let Some(t) = st.exec_main_start_us.filter(|t| *t > 0) {
            print!(", started {}", headroom_core::format_ts((t / 1000) as i64));
        }
        if let Some(t) = u.next_elapse_us.filter(|t| *t > 0) {
            print!(", next run {}", headroom_core::format_ts((t / 1000) as i64));
        }
        println!();
    }
    if active {
        // The file on disk may be the one the daemon just refused: then its
        // `[daemon]` table alone says where to ask.
        let (listen, token) = match Settings::load(&config) {
            Ok(s) => (s.daemon.listen, s.daemon.bearer_token_file),
            Err(e) => {
                println!("{}: {e}", config.display());
                daemon_table(&config)
            }
        };
        print!("{}", api_summary(listen, token.as_deref()).await);
    }
    Ok(ExitCode::SUCCESS)
}

/// `daemon.listen` and `daemon.bearer_token_file` of a config that does not
/// load as a whole (the defaults where they cannot be read either).
fn daemon_table(config: &Path) -> (std::net::SocketAddr, Option<PathBuf>) {
    let default = headroom_engine::settings::DaemonSettings::default();
    let table: Option<toml::Table> = std::fs::read_to_string(config).ok().and_then(|t| t.parse().ok());
    let daemon = table.as_ref().and_then(|t| t.get("daemon")).and_then(|d| d.as_table());
    let listen = daemon.and_then(|d| d.get("listen")?.as_str()?.parse().ok()).unwrap_or(default.listen);
    let token = daemon.and_then(|d| d.get("bearer_token_file")?.as_str().map(PathBuf::from));
    (listen, token)
}

/// The last decisions and the last reload, from the daemon's `/api`
/// (with its bearer token when it has one), or why they could not be read.
async fn api_summary(listen: std::net::SocketAddr, token_file: Option<&Path>) -> String {
    let base = format!("http://{listen}");
    let token = token_file.and_then(|p| std::fs::read_to_string(p).ok());
    let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build();
    let Ok(client) = client else { return "the daemon's API: no HTTP client\n".into() };
    let get = |path: &str| {
        let mut r = client.get(format!("{base}{path}"));
        if let Some(t) = &token {
            r = r.bearer_auth(t.trim());
        }
        async move {
            let resp = r.send().await.map_err(|e| e.to_string())?;
            if !resp.status().is_success() {
                return Err(format!("{}", resp.status()));
            }
            resp.json::<serde_json::Value>().await.map_err(|e| e.to_string())
        }
    };
    let mut out = String::new();
    match get("/api/v1/targets").await {
        Ok(doc) => match doc.get("last_reload").filter(|r| !r.is_null()) {
            Some(r) if r["successful"] == true => {
                out.push_str(&format!("last reload: succeeded at {}\n", r["at"].as_str().unwrap_or("?")))
            }
            Some(r) => {
                out.push_str(&format!(
                    "last reload: REFUSED at {}, the old config stays:\n",
                    r["at"].as_str().unwrap_or("?")
                ));
                for p in r["problems"].as_array().into_iter().flatten() {
                    out.push_str(&format!("  {}\n", p.as_str().unwrap_or("")));
                }
            }
            None => out.push_str("last reload: none since the start\n"),
        },
        Err(e) => return format!("the daemon's API at {base} did not answer: {e}\n"),
    }
    if let Ok(doc) = get("/api/v1/decisions").await {
        let decisions = doc["decisions"].as_array().cloned().unwrap_or_default();
        out.push_str(&format!("last decisions ({} kept by the daemon):\n", decisions.len()));
        for d in decisions.iter().rev().take(5) {
            let dec = &d["decision"];
            out.push_str(&format!(
                "  {} {} {}: {} [{}] {}\n",
                d["at"].as_str().unwrap_or("?"),
                dec["target"].as_str().unwrap_or("?"),
                action_text(&dec["action"]),
                d["executed"]["detail"].as_str().unwrap_or("not carried out"),
                d["executed"]["id"].as_str().unwrap_or("-"),
                dec["reason"].as_str().unwrap_or(""),
            ));
        }
    }
    out
}

fn action_text(a: &serde_json::Value) -> String {
    match a["type"].as_str() {
        Some("scale_to") => format!("scale_to {}", a["replicas"]),
        Some(t) => t.to_owned(),
        None => a.to_string(),
    }
}

#[cfg(not(unix))]
async fn install(a: ServiceInstallArgs) -> anyhow::Result<ExitCode> {
    Settings::load(&a.config)?;
    let binary = std::env::current_exe()?;
    let s = headroom_service::scm::ScmService::new(
        a.name.as_deref().unwrap_or("headroom"),
        binary,
        absolute(&a.config, "--config")?,
        a.enforce,
        a.user.clone(),
    );
    if a.dry_run {
        print!("{}", s.describe());
        return Ok(ExitCode::SUCCESS);
    }
    println!("{}", headroom_service::windows::install(&s)?);
    Ok(ExitCode::SUCCESS)
}

#[cfg(not(unix))]
async fn uninstall(name: String, _user: Option<String>, _purge: bool) -> anyhow::Result<ExitCode> {
    println!("{}", headroom_service::windows::uninstall(&name)?);
    Ok(ExitCode::SUCCESS)
}

#[cfg(not(unix))]
async fn status(name: String, _config: PathBuf) -> anyhow::Result<ExitCode> {
    println!("{}", headroom_service::windows::status(&name)?);
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    /// `deploy/systemd/`: the sample config, and what install writes for it.
    fn deploy() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/systemd")
    }

    /// The files `args` gives for the sample config, as install would write them.
    fn rendered(args: &[&str]) -> Vec<headroom_service::unit::File> {
        let cli = crate::cli::Cli::parse_from(args);
        let crate::cli::Command::Service(crate::cli::ServiceArgs { command: ServiceCommand::Install(a) }) = cli.command
        else {
            panic!("not an install")
        };
        let settings = Settings::load(&deploy().join("headroom.toml")).unwrap();
        let mut s =
            service_of(&a, &settings, "/etc/headroom/headroom.toml".into(), "/usr/local/bin/headroom".into(), 252)
                .unwrap();
        // Whether `headroom` exists on the machine running the test must not change the expected files.
        if let User::Static { create, .. } = &mut s.user {
            *create = true;
        }
        s.validate().unwrap();
        headroom_service::linux::files(&s)
    }

    /// Compares `files` with `deploy/systemd/expected/<file name>`
    /// (`HEADROOM_UPDATE_EXPECTED=1` writes them instead).
    fn compare(files: &[headroom_service::unit::File]) {
        let dir = deploy().join("expected");
        for f in files {
            let name = f.path.file_name().unwrap();
            let path = dir.join(name);
            if std::env::var("HEADROOM_UPDATE_EXPECTED").as_deref() == Ok("1") {
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(&path, &f.text).unwrap();
            }
            let want = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert_eq!(
                f.text,
                want,
                "{} differs from {} (HEADROOM_UPDATE_EXPECTED=1 rewrites it)",
                f.path.display(),
                path.display()
            );
        }
    }

    #[test]
    fn the_sample_configs_unit_rule_and_user_are_the_checked_in_files() {
        let files = rendered(&["headroom", "service", "install", "--enforce"]);
        let names: Vec<String> = files.iter().map(|f| f.path.display().to_string()).collect();
        assert_eq!(
            names,
            [
                "/etc/systemd/system/headroom.service",
                "/etc/polkit-1/rules.d/50-headroom.rules",
                "/etc/sysusers.d/headroom.conf"
            ]
        );
        compare(&files);
    }

    #[test]
    fn the_sample_configs_forecast_timer_is_the_checked_in_files() {
        let files = rendered(&["headroom", "service", "install", "--timer", "--shard", "0/2"]);
        let names: Vec<String> = files.iter().map(|f| f.path.display().to_string()).collect();
        assert_eq!(
            names,
            [
                "/etc/systemd/system/headroom-forecast-0.service",
                "/etc/systemd/system/headroom-forecast-0.timer",
                "/etc/sysusers.d/headroom.conf"
            ]
        );
        compare(&files[..2]);
    }

    #[test]
    fn the_polkit_grant_follows_the_configs_systemd_targets_only() {
        let cli = crate::cli::Cli::parse_from(["headroom", "service", "install"]);
        let crate::cli::Command::Service(crate::cli::ServiceArgs { command: ServiceCommand::Install(a) }) = cli.command
        else {
            panic!("not an install")
        };
        let settings = Settings::load(&deploy().join("headroom.toml")).unwrap();
        let s = service_of(&a, &settings, "/etc/headroom/headroom.toml".into(), "/usr/local/bin/headroom".into(), 252)
            .unwrap();
        assert_eq!(s.units, [UnitGrant::Unit("app.service".into()), UnitGrant::Template("worker@.service".into())]);
        assert!(matches!(&s.user, User::Static { name, .. } if name == "headroom"));
        // The same config without its systemd targets: nothing to grant, a dynamic user.
        let text = std::fs::read_to_string(deploy().join("headroom.toml")).unwrap();
        let only_first = text.split("[[targets]]").next().unwrap();
        let settings = Settings::parse(only_first, Path::new("headroom.toml")).unwrap();
        let s = service_of(&a, &settings, "/etc/headroom/headroom.toml".into(), "/usr/local/bin/headroom".into(), 252)
            .unwrap();
        assert!(s.units.is_empty() && matches!(s.user, User::Dynamic { .. }), "{s:?}");
        assert_eq!(headroom_service::polkit::rule_file(&s, Path::new("/etc/polkit-1/rules.d")), None);
    }
}
