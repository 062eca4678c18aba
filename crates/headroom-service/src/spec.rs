//! What a service install needs to know, as plain data: the binary turns
//! `headroom.toml` and the command line into a [`Service`]; [`crate::unit`]
//! and [`crate::polkit`] turn it into files.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result};

/// The unit names and directories `service install` uses by default.
pub const DEFAULT_NAME: &str = "headroom";
/// Where the unit files go (the administrator's units, above the vendor's).
pub const UNIT_DIR: &str = "/etc/systemd/system";
/// Where the polkit rule goes.
pub const POLKIT_DIR: &str = "/etc/polkit-1/rules.d";
/// Where the `sysusers.d` entry for a created user goes.
pub const SYSUSERS_DIR: &str = "/etc/sysusers.d";
/// The parent of `StateDirectory=`.
pub const STATE_ROOT: &str = "/var/lib";

/// What runs: the daemon, or the scheduled forecast job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// `headroom run`: `Type=notify`, watchdog, restarted always.
    Daemon,
    /// `headroom forecast` as a oneshot service started by a `.timer`.
    Timer {
        /// The timer's `OnCalendar=` (systemd.time(7)), e.g. `hourly` or `*:0/15`.
        on_calendar: String,
        /// `--shard i/n`, as given.
        shard: Option<String>,
    },
}

/// The account the service runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum User {
    /// A system user of that name, in /etc/passwd: created through a
    /// `sysusers.d` entry when `create` (it did not exist), else used as is.
    Static {
        /// The user (and group) name.
        name: String,
        /// Whether install creates it (and `uninstall --purge` removes it).
        create: bool,
    },
    /// `DynamicUser=yes`: systemd allocates the user when the unit starts.
    Dynamic {
        /// The name it gets (`User=`).
        name: String,
    },
}

impl User {
    /// The user name.
    pub fn name(&self) -> &str {
        match self {
            Self::Static { name, .. } | Self::Dynamic { name } => name,
        }
    }
}

/// A unit (or a template's instances) the service may start, stop and restart.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum UnitGrant {
    /// Exactly this unit, e.g. `app.service`.
    Unit(String),
    /// The numbered instances of a template, e.g. `worker@.service` →
    /// `worker@1.service`, `worker@2.service`, …
    Template(String),
}

impl UnitGrant {
    /// The unit name as the config names it.
    pub fn name(&self) -> &str {
        match self {
            Self::Unit(n) | Self::Template(n) => n,
        }
    }
}

/// Everything the unit, the timer, the polkit rule and the sysusers entry
/// are made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// The unit's name without suffix (`headroom` → `headroom.service`).
    pub name: String,
    /// The `headroom` executable the unit starts (absolute).
    pub binary: PathBuf,
    /// The config it reads (absolute).
    pub config: PathBuf,
    /// `headroom run --enforce`: carry out the decisions of targets whose
    /// config says `mode = "enforce"` (without it, everything is dry-run).
    pub enforce: bool,
    /// The daemon or the timer.
    pub kind: Kind,
    /// Who it runs as.
    pub user: User,
    /// The systemd units the config's targets act on: the polkit rule grants exactly these.
    pub units: Vec<UnitGrant>,
    /// Supervised `[[processes]]` have memory limits: the unit gets a
    /// delegated memory cgroup (`Delegate=memory`) instead of `ProtectControlGroups=`.
    pub delegate_memory: bool,
    /// The daemon supervises `[[processes]]`: they inherit its sandbox, so
    /// `MemoryDenyWriteExecute=` (which breaks JIT runtimes) is left out.
    pub supervises: bool,
    /// `daemon.shutdown_timeout` plus the longest supervised `stop_timeout`:
    /// `TimeoutStopSec=` is above it.
    pub shutdown: Duration,
    /// systemd's version (`Manager.Version`, e.g. 252): 253 and later get
    /// `Type=notify-reload`.
    pub systemd_version: u32,
    /// Files the config has the service read, by their config field
    /// (`sources[0].paths[1]`, `forecast.model_dir`, …).
    pub reads: Vec<(String, PathBuf)>,
    /// Paths the config has the service write (`store.path`, `audit.path`):
    /// the sandbox lets it write only its state directory.
    pub writes: Vec<(String, PathBuf)>,
}

impl Service {
    /// The unit that runs headroom: `<name>.service`.
    pub fn service_unit(&self) -> String {
        format!("{}.service", self.name)
    }

    /// The unit to enable: the timer for [`Kind::Timer`], else the service.
    pub fn enabled_unit(&self) -> String {
        match self.kind {
            Kind::Daemon => self.service_unit(),
            Kind::Timer { .. } => format!("{}.timer", self.name),
        }
    }

    /// `StateDirectory=`: named after the user, so the daemon and the
    /// forecast job's timer (which run as the same user) share one store.
    pub fn state_name(&self) -> &str {
        self.user.name()
    }

    /// `/var/lib/<user>`: the store, the audit log, the working directory.
    pub fn state_dir(&self) -> PathBuf {
        Path::new(STATE_ROOT).join(self.state_name())
    }

    /// Refuses what would give a unit that cannot work: a unit name systemd
    /// refuses, relative paths, a binary or config the unit's sandbox hides
    /// (`ProtectHome=` hides /home, /root and /run/user; `PrivateTmp=` gives
    /// the service its own /tmp and /var/tmp).
    pub fn validate(&self) -> Result<()> {
        let ok = |c: char| c.is_ascii_alphanumeric() || ":-_.\\".contains(c);
        if self.name.is_empty() || self.name.len() > 200 || !self.name.chars().all(ok) || self.name.contains('@') {
            return Err(Error::Invalid(format!(
                "--name {:?}: a unit name is 1 to 200 of A-Z a-z 0-9 : - _ . \\ (no `@`, no suffix)",
                self.name
            )));
        }
        for (flag, path) in [("the headroom binary", &self.binary), ("--config", &self.config)] {
            if !path.is_absolute() {
                return Err(Error::Invalid(format!("{flag} {}: must be an absolute path", path.display())));
            }
        }
        let hint = |what: &str| match what {
            "the headroom binary" => {
                "install the binary first, e.g. `install -m 0755 target/release/headroom /usr/local/bin/`"
            }
            "--config" => "put the config in /etc/headroom",
            _ => "move it, e.g. under /etc/headroom",
        };
        let readable =
            [("the headroom binary".to_owned(), &self.binary, " "), ("--config".to_owned(), &self.config, " ")]
                .into_iter()
                .chain(self.reads.iter().map(|(field, path)| (field.clone(), path, " = ")));
        for (what, path, sep) in readable {
            if let Some(hidden) = hidden_by_sandbox(path) {
                return Err(Error::Invalid(format!(
                    "{what}{sep}{}: the unit's sandbox hides {hidden} ({}), so the service could not read it; {}",
                    path.display(),
                    if hidden.ends_with("tmp") { "PrivateTmp=yes" } else { "ProtectHome=yes" },
                    hint(&what)
                )));
            }
        }
        let state = self.state_dir();
        for (field, path) in &self.writes {
            if path.is_absolute() && !path.starts_with(&state) {
                return Err(Error::Invalid(format!(
                    "{field} = {}: the service may write only under {} (ProtectSystem=strict); give a path under it, or a relative one (relative paths resolve there)",
                    path.display(),
                    state.display()
                )));
            }
        }
        let user = self.user.name();
        let user_ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-';
        if user.is_empty()
            || user.len() > 31
            || !user.chars().all(user_ok)
            || user.starts_with('-')
            || user.starts_with(|c: char| c.is_ascii_digit())
        {
            return Err(Error::Invalid(format!(
                "--user {user:?}: a system user name is 1 to 31 of a-z 0-9 _ -, starting with a letter or _"
            )));
        }
        if user == "root" {
            return Err(Error::Invalid(
                "--user root: the service runs unprivileged; the polkit rule grants the units it acts on".into(),
            ));
        }
        if let Kind::Timer { on_calendar, .. } = &self.kind
            && (on_calendar.trim().is_empty() || on_calendar.contains('\n'))
        {
            return Err(Error::Invalid(format!("--on-calendar {on_calendar:?}: empty, or more than one line")));
        }
        Ok(())
    }
}

/// The directory the unit's sandbox hides `path` under, if any.
pub fn hidden_by_sandbox(path: &Path) -> Option<&'static str> {
    ["/home", "/root", "/run/user", "/tmp", "/var/tmp"].into_iter().find(|dir| path.starts_with(dir))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A daemon service for `app.service` and the `worker@.service` template.
    pub(crate) fn sample() -> Service {
        Service {
            name: "headroom".into(),
            binary: "/usr/local/bin/headroom".into(),
            config: "/etc/headroom/headroom.toml".into(),
            enforce: true,
            kind: Kind::Daemon,
            user: User::Static { name: "headroom".into(), create: true },
            units: vec![UnitGrant::Unit("app.service".into()), UnitGrant::Template("worker@.service".into())],
            delegate_memory: false,
            supervises: false,
            shutdown: Duration::from_secs(30),
            systemd_version: 252,
            reads: vec![("sources[0].paths[0]".into(), "/etc/headroom/recorded.csv".into())],
            writes: vec![
                ("store.path".into(), "store".into()),
                ("audit.path".into(), "/var/lib/headroom/audit.jsonl".into()),
            ],
        }
    }

    #[test]
    fn files_the_sandbox_hides_or_keeps_read_only_are_refused_by_their_field() {
        let mut s = sample();
        s.reads.push(("sources[1].paths[0]".into(), "/home/ops/cpu.csv".into()));
        let e = s.validate().unwrap_err().to_string();
        assert!(e.starts_with("sources[1].paths[0] = /home/ops/cpu.csv") && e.contains("ProtectHome=yes"), "{e}");
        let mut s = sample();
        s.writes.push(("audit.path".into(), "/srv/headroom/audit.jsonl".into()));
        let e = s.validate().unwrap_err().to_string();
        assert!(
            e.starts_with("audit.path = /srv/headroom/audit.jsonl") && e.contains("only under /var/lib/headroom"),
            "{e}"
        );
    }

    #[test]
    fn paths_the_sandbox_hides_are_refused_with_the_setting_that_hides_them() {
        let mut s = sample();
        s.binary = "/tmp/x/target/release/headroom".into();
        let e = s.validate().unwrap_err().to_string();
        assert!(e.contains("/tmp/x/target/release/headroom") && e.contains("PrivateTmp=yes"), "{e}");
        assert!(e.contains("install -m 0755"), "{e}");
        let mut s = sample();
        s.config = "/root/headroom.toml".into();
        let e = s.validate().unwrap_err().to_string();
        assert!(e.contains("--config /root/headroom.toml") && e.contains("ProtectHome=yes"), "{e}");
        let mut s = sample();
        s.config = "headroom.toml".into();
        assert!(s.validate().unwrap_err().to_string().contains("absolute"));
        assert!(sample().validate().is_ok());
    }

    #[test]
    fn bad_names_and_root_are_refused() {
        for (name, user) in [("head room", "headroom"), ("a@b", "headroom"), ("headroom", "root"), ("headroom", "9x")] {
            let mut s = sample();
            s.name = name.into();
            s.user = User::Static { name: user.into(), create: false };
            assert!(s.validate().is_err(), "{name} as {user}");
        }
    }
}
