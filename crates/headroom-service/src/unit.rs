//! The systemd files of a [`Service`]: the daemon's unit, or the forecast
//! job's oneshot service and its timer, and the `sysusers.d` entry of a
//! user install creates. Plain text from plain data: the checked-in
//! expected files (`tests/expected/`) are these functions' output.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::MARKER;
use crate::spec::{Kind, Service, User};

/// How long systemd waits for `READY=1` (opening the store, loading a model).
pub const START_TIMEOUT: Duration = Duration::from_secs(120);
/// `WatchdogSec=`: the daemon sends `WATCHDOG=1` every half of it while its scheduler runs.
pub const WATCHDOG: Duration = Duration::from_secs(60);
/// `RestartSec=`.
pub const RESTART_DELAY: Duration = Duration::from_secs(10);
/// What `TimeoutStopSec=` allows above the daemon's own shutdown bound.
pub const STOP_MARGIN: Duration = Duration::from_secs(15);
/// The first systemd with `Type=notify-reload` (it then sends SIGHUP itself
/// and waits for the daemon's `RELOADING=1` … `READY=1`).
pub const NOTIFY_RELOAD_SINCE: u32 = 253;

/// One file an install writes: where, what, and with which mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    /// Its path.
    pub path: PathBuf,
    /// Its whole text (its first line is [`MARKER`], see [`crate::is_ours`]).
    pub text: String,
    /// Its permission bits.
    pub mode: u32,
}

/// The unit files of `s` under `unit_dir`: `<name>.service` for the daemon;
/// `<name>.service` (oneshot) and `<name>.timer` for the forecast job.
pub fn unit_files(s: &Service, unit_dir: &Path) -> Vec<File> {
    let mut files = vec![File { path: unit_dir.join(s.service_unit()), text: service_unit(s), mode: 0o644 }];
    if let Kind::Timer { on_calendar, .. } = &s.kind {
        files.push(File { path: unit_dir.join(s.enabled_unit()), text: timer_unit(s, on_calendar), mode: 0o644 });
    }
    files
}

/// `TimeoutStopSec=`: the daemon's shutdown bound plus [`STOP_MARGIN`], in whole seconds.
pub fn stop_timeout(s: &Service) -> u64 {
    (s.shutdown + STOP_MARGIN).as_secs_f64().ceil() as u64
}

/// A word of a command line as systemd reads `ExecStart=`: quoted when it
/// holds a space, a quote, a backslash or a `$`/`%` (which systemd would expand).
pub fn exec_word(w: &str) -> String {
    if !w.is_empty() && w.chars().all(|c| !c.is_whitespace() && !"\"'\\$%;".contains(c)) {
        return w.to_owned();
    }
    let mut out = String::from("\"");
    for c in w.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '$' => out.push_str("$$"),
            '%' => out.push_str("%%"),
            _ => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The `ExecStart=` command line.
pub fn exec_start(s: &Service) -> String {
    let mut words = vec![s.binary.display().to_string()];
    match &s.kind {
        Kind::Daemon => {
            words.extend(["run".into(), "--config".into(), s.config.display().to_string()]);
            if s.enforce {
                words.push("--enforce".into());
            }
        }
        Kind::Timer { shard, .. } => {
            words.extend(["forecast".into(), "--config".into(), s.config.display().to_string()]);
            // Into the working directory, /var/lib/<user>; one file per shard, so shards never overwrite each other.
            let out = match shard {
                Some(shard) => {
                    words.extend(["--shard".into(), shard.clone()]);
                    format!("forecasts-{}.parquet", shard.replace('/', "-of-"))
                }
                None => "forecasts.parquet".into(),
            };
            words.extend(["--out".into(), out]);
        }
    }
    words.iter().map(|w| exec_word(w)).collect::<Vec<_>>().join(" ")
}

/// The `[Service]` unit that runs headroom.
pub fn service_unit(s: &Service) -> String {
    let mut u = String::new();
    let daemon = s.kind == Kind::Daemon;
    let _ = writeln!(u, "# {MARKER}");
    if daemon {
        // Not the targets themselves: a change of targets rewrites the polkit rule, never restarts the daemon.
        let _ = writeln!(
            u,
            "# Generated from {}; run the install again after changing its targets or processes.",
            s.config.display()
        );
    } else {
        let _ = writeln!(u, "# Generated from {}.", s.config.display());
    }
    u.push_str("[Unit]\n");
    if daemon {
        u.push_str("Description=headroom capacity daemon: forecasts CPU and memory, acts before they run out\n");
    } else {
        u.push_str("Description=headroom forecast job: the targets' CPU and memory forecasts\n");
    }
    u.push_str("Documentation=https://github.com/headroom-aiops/headroom#run-as-a-service\n");
    u.push_str("Wants=network-online.target\nAfter=network-online.target\n");
    u.push_str("\n[Service]\n");
    if daemon {
        if s.systemd_version >= NOTIFY_RELOAD_SINCE {
            u.push_str("Type=notify-reload\nReloadSignal=SIGHUP\n");
        } else {
            u.push_str("Type=notify\nExecReload=/bin/kill -HUP $MAINPID\n");
        }
        u.push_str("NotifyAccess=main\n");
    } else {
        u.push_str("Type=oneshot\n");
    }
    let _ = writeln!(u, "ExecStart={}", exec_start(s));
    if daemon {
        let _ = writeln!(u, "Restart=always\nRestartSec={}", RESTART_DELAY.as_secs());
        let _ = writeln!(u, "WatchdogSec={}", WATCHDOG.as_secs());
        let _ = writeln!(u, "TimeoutStartSec={}", START_TIMEOUT.as_secs());
        let _ = writeln!(
            u,
            "# Above the daemon's shutdown bound ({} s): the action in flight finishes.",
            s.shutdown.as_secs()
        );
        let _ = writeln!(u, "TimeoutStopSec={}", stop_timeout(s));
    } else {
        u.push_str("TimeoutStartSec=1h\n");
    }
    match &s.user {
        User::Static { name, .. } => {
            let _ = writeln!(u, "User={name}\nGroup={name}");
        }
        User::Dynamic { name } => {
            let _ = writeln!(u, "DynamicUser=yes\nUser={name}\nGroup={name}");
        }
    }
    let _ = writeln!(
        u,
        "StateDirectory={0}\nStateDirectoryMode=0750\nWorkingDirectory={1}",
        s.state_name(),
        s.state_dir().display()
    );
    u.push_str("ConfigurationDirectory=headroom\nConfigurationDirectoryMode=0755\n");
    u.push_str("UMask=0077\n");
    u.push_str("\n# Sandbox (`systemd-analyze security ");
    u.push_str(&s.service_unit());
    u.push_str(if daemon { "` scores it). Supervised processes inherit it.\n" } else { "` scores it).\n" });
    u.push_str("NoNewPrivileges=yes\n");
    u.push_str("CapabilityBoundingSet=\nAmbientCapabilities=\n");
    u.push_str("ProtectSystem=strict\n");
    let _ = writeln!(u, "ReadWritePaths={}", s.state_dir().display());
    u.push_str("ProtectHome=yes\nPrivateTmp=yes\nPrivateDevices=yes\nPrivateMounts=yes\n");
    u.push_str("ProtectKernelTunables=yes\nProtectKernelModules=yes\nProtectKernelLogs=yes\n");
    if s.delegate_memory {
        u.push_str("# Supervised processes have memory limits: their cgroups live in this delegated subtree.\n");
        u.push_str("Delegate=memory\n");
    } else {
        u.push_str("ProtectControlGroups=yes\n");
    }
    u.push_str("ProtectClock=yes\nProtectHostname=yes\nProtectProc=invisible\n");
    u.push_str("RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6\n");
    u.push_str("RestrictNamespaces=yes\nRestrictRealtime=yes\nRestrictSUIDSGID=yes\n");
    u.push_str("LockPersonality=yes\nRemoveIPC=yes\n");
    if s.supervises {
        u.push_str(
            "# No MemoryDenyWriteExecute=: supervised processes inherit it, and JIT runtimes need W+X memory.\n",
        );
    } else {
        u.push_str("MemoryDenyWriteExecute=yes\n");
    }
    u.push_str("SystemCallArchitectures=native\nSystemCallFilter=@system-service\n");
    u.push_str("SystemCallFilter=~@privileged @resources\nSystemCallErrorNumber=EPERM\n");
    if daemon {
        u.push_str("\n[Install]\nWantedBy=multi-user.target\n");
    }
    u
}

/// The `.timer` that starts the forecast job.
pub fn timer_unit(s: &Service, on_calendar: &str) -> String {
    let mut u = String::new();
    let _ = writeln!(u, "# {MARKER}");
    u.push_str("[Unit]\n");
    let _ = writeln!(u, "Description=headroom forecast job, on schedule ({on_calendar})");
    u.push_str("Documentation=https://github.com/headroom-aiops/headroom#run-as-a-service\n");
    u.push_str("\n[Timer]\n");
    let _ = writeln!(u, "OnCalendar={on_calendar}");
    u.push_str("# A run missed while the machine was off starts at the next boot.\nPersistent=true\n");
    let _ = writeln!(u, "Unit={}", s.service_unit());
    u.push_str("\n[Install]\nWantedBy=timers.target\n");
    u
}

/// The comment (GECOS) of the user install creates: how `uninstall --purge`
/// knows the user is install's.
pub const USER_COMMENT: &str = "headroom capacity daemon";

/// The `sysusers.d` entry of a user install creates, or `None` when the
/// user exists or is dynamic.
pub fn sysusers_file(s: &Service, dir: &Path) -> Option<File> {
    let User::Static { name, create: true } = &s.user else { return None };
    let text = format!(
        "# {MARKER}\n# The system user {name} runs {unit}; created by systemd-sysusers.\nu {name} - \"{USER_COMMENT}\" {home} /usr/sbin/nologin\n",
        unit = s.service_unit(),
        home = s.state_dir().display(),
    );
    Some(File { path: dir.join(format!("{name}.conf")), text, mode: 0o644 })
}

/// `OnCalendar=` for a forecast every `every`: the calendar spec that
/// starts it at the same times each day, when `every` divides a day into
/// whole minutes; `None` otherwise (give `--on-calendar`).
pub fn on_calendar_every(every: Duration) -> Option<String> {
    let secs = every.as_secs();
    if secs == 0 || every.subsec_nanos() != 0 || !secs.is_multiple_of(60) || !86_400u64.is_multiple_of(secs) {
        return None;
    }
    let minutes = secs / 60;
    Some(match minutes {
        1440 => "daily".into(),
        60 => "hourly".into(),
        m if m % 60 == 0 => format!("*-*-* 00/{}:00:00", m / 60),
        m => format!("*-*-* *:00/{m}:00"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::tests::sample;
    use crate::spec::{SYSUSERS_DIR, UNIT_DIR};

    fn lines(text: &str) -> Vec<&str> {
        text.lines().collect()
    }

    #[test]
    fn the_daemon_is_a_notify_service_restarted_always_with_a_watchdog_and_a_stop_bound_above_its_own() {
        let s = sample();
        let u = service_unit(&s);
        let l = lines(&u);
        assert!(crate::is_ours(&u));
        for want in [
            "Type=notify",
            "ExecReload=/bin/kill -HUP $MAINPID",
            "ExecStart=/usr/local/bin/headroom run --config /etc/headroom/headroom.toml --enforce",
            "Restart=always",
            "RestartSec=10",
            "WatchdogSec=60",
            "TimeoutStopSec=45",
            "User=headroom",
            "StateDirectory=headroom",
            "ConfigurationDirectory=headroom",
            "ReadWritePaths=/var/lib/headroom",
            "ProtectControlGroups=yes",
            "MemoryDenyWriteExecute=yes",
            "CapabilityBoundingSet=",
            "SystemCallFilter=@system-service",
            "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
            "WantedBy=multi-user.target",
        ] {
            assert!(l.contains(&want), "{want} missing from\n{u}");
        }
        assert!(!u.contains("DynamicUser") && !u.contains("Delegate="), "{u}");
    }

    #[test]
    fn systemd_253_gets_notify_reload_and_sends_sighup_itself() {
        let mut s = sample();
        s.systemd_version = 253;
        let u = service_unit(&s);
        assert!(lines(&u).contains(&"Type=notify-reload") && lines(&u).contains(&"ReloadSignal=SIGHUP"), "{u}");
        assert!(!u.contains("ExecReload"), "{u}");
    }

    #[test]
    fn memory_limited_processes_get_a_delegated_cgroup_and_no_write_execute_ban() {
        let mut s = sample();
        s.delegate_memory = true;
        s.supervises = true;
        let u = service_unit(&s);
        assert!(lines(&u).contains(&"Delegate=memory"), "{u}");
        assert!(!lines(&u).contains(&"ProtectControlGroups=yes") && !lines(&u).contains(&"MemoryDenyWriteExecute=yes"));
    }

    #[test]
    fn a_dynamic_user_needs_no_sysusers_entry() {
        let mut s = sample();
        s.user = User::Dynamic { name: "headroom".into() };
        assert!(lines(&service_unit(&s)).contains(&"DynamicUser=yes"));
        assert_eq!(sysusers_file(&s, Path::new(SYSUSERS_DIR)), None);
        s.user = User::Static { name: "headroom".into(), create: false };
        assert_eq!(sysusers_file(&s, Path::new(SYSUSERS_DIR)), None);
        let f = sysusers_file(&sample(), Path::new(SYSUSERS_DIR)).unwrap();
        assert_eq!(f.path, Path::new("/etc/sysusers.d/headroom.conf"));
        assert!(f.text.ends_with("u headroom - \"headroom capacity daemon\" /var/lib/headroom /usr/sbin/nologin\n"));
    }

    #[test]
    fn the_timer_starts_a_oneshot_forecast_of_one_shard() {
        let mut s = sample();
        s.name = "headroom-forecast".into();
        s.kind = Kind::Timer { on_calendar: "hourly".into(), shard: Some("1/4".into()) };
        let files = unit_files(&s, Path::new(UNIT_DIR));
        assert_eq!(files.len(), 2);
        assert_eq!(files[1].path, Path::new("/etc/systemd/system/headroom-forecast.timer"));
        let svc = &files[0].text;
        assert!(lines(svc).contains(&"Type=oneshot"), "{svc}");
        assert!(
            lines(svc).contains(
                &"ExecStart=/usr/local/bin/headroom forecast --config /etc/headroom/headroom.toml --shard 1/4 --out forecasts-1-of-4.parquet"
            ),
            "{svc}"
        );
        assert!(!svc.contains("Restart=") && !svc.contains("WatchdogSec") && !svc.contains("[Install]"), "{svc}");
        let timer = &files[1].text;
        for want in ["OnCalendar=hourly", "Persistent=true", "Unit=headroom-forecast.service", "WantedBy=timers.target"]
        {
            assert!(lines(timer).contains(&want), "{want} missing from\n{timer}");
        }
    }

    #[test]
    fn odd_words_are_quoted_so_systemd_reads_them_back_whole() {
        assert_eq!(exec_word("/etc/headroom/a.toml"), "/etc/headroom/a.toml");
        assert_eq!(exec_word("/srv/my config.toml"), "\"/srv/my config.toml\"");
        assert_eq!(exec_word("/srv/100%$x"), "\"/srv/100%%$$x\"");
        assert_eq!(exec_word("a\"b"), "\"a\\\"b\"");
    }

    #[test]
    fn schedules_that_divide_a_day_become_calendar_specs() {
        let m = |m: u64| on_calendar_every(Duration::from_secs(m * 60));
        assert_eq!(m(60).as_deref(), Some("hourly"));
        assert_eq!(m(1440).as_deref(), Some("daily"));
        assert_eq!(m(15).as_deref(), Some("*-*-* *:00/15:00"));
        assert_eq!(m(360).as_deref(), Some("*-*-* 00/6:00:00"));
        assert_eq!(m(7), None);
        assert_eq!(on_calendar_every(Duration::from_secs(90)), None);
    }
}
