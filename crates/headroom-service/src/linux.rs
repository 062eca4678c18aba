//! Installing, removing and reading the systemd service: the files of
//! [`crate::unit`] and [`crate::polkit`] written to their directories,
//! then systemd told over D-Bus (the systemd actuator's client: `Reload`,
//! `EnableUnitFiles`, `StartUnit`/`RestartUnit`, `StopUnit`,
//! `DisableUnitFiles`; never `systemctl`). A user to create is created by
//! `systemd-sysusers` from the `sysusers.d` entry written for it.
//!
//! Every file is written whole (temporary file, then rename) and only over
//! a file that carries [`crate::MARKER`]; nothing is written before every
//! target path has been checked.

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use headroom_actuate::systemd::{SystemdActuator, UnitName, UnitStatus};

use crate::error::{Error, Result};
use crate::spec::{Kind, POLKIT_DIR, STATE_ROOT, SYSUSERS_DIR, Service, UNIT_DIR};
use crate::unit::File;
use crate::{is_ours, polkit, unit};

/// The files `s` is made of: its unit(s), its polkit rule (the daemon with
/// systemd targets), the `sysusers.d` entry of a user to create.
pub fn files(s: &Service) -> Vec<File> {
    let mut out = unit::unit_files(s, Path::new(UNIT_DIR));
    out.extend(polkit::rule_file(s, Path::new(POLKIT_DIR)));
    out.extend(unit::sysusers_file(s, Path::new(SYSUSERS_DIR)));
    out
}

/// The daemon's polkit rule when the config grants nothing (any more):
/// install removes it, if it is install's.
fn stale_rule(s: &Service) -> Option<PathBuf> {
    (s.kind == Kind::Daemon && polkit::rule_file(s, Path::new(POLKIT_DIR)).is_none())
        .then(|| Path::new(POLKIT_DIR).join(format!("50-{}.rules", s.name)))
}

/// The `--dry-run` text: every file install would write, whole, and what
/// it would ask systemd; nothing is changed.
pub fn dry_run(s: &Service) -> String {
    let mut out = String::new();
    for f in files(s) {
        out.push_str(&format!("would write {} (mode {:o}):\n", f.path.display(), f.mode));
        for line in f.text.lines() {
            out.push_str(&format!("    {line}\n"));
        }
        out.push('\n');
    }
    if let Some(f) = unit::sysusers_file(s, Path::new(SYSUSERS_DIR)) {
        out.push_str(&format!(
            "would run: systemd-sysusers {}  (creates the user {})\n",
            f.path.display(),
            s.user.name()
        ));
    }
    if let Some(stale) = stale_rule(s).filter(|p| p.exists()) {
        out.push_str(&format!("would remove {} (the config has no systemd target now)\n", stale.display()));
    }
    out.push_str("would ask systemd (D-Bus): Reload, ");
    out.push_str(&format!("EnableUnitFiles [{}], ", s.enabled_unit()));
    out.push_str(&format!("StartUnit {} (RestartUnit if it runs and its unit changed)\n", s.enabled_unit()));
    out.push_str("dry run: nothing was written, nothing was asked of systemd\n");
    out
}

/// The systemd major version in a `Manager.Version` string (`252.39-1~deb12u2` → 252).
pub fn major_version(version: &str) -> Option<u32> {
    let v = version.trim().trim_start_matches('v');
    let digits: String = v.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

fn manager_err(what: impl Into<String>) -> impl FnOnce(headroom_actuate::Error) -> Error {
    let what = what.into();
    move |e| Error::Manager { what, why: e.to_string() }
}

fn unit_name(name: &str) -> Result<UnitName> {
    UnitName::parse(name).map_err(|why| Error::Invalid(format!("unit {name:?}: {why}")))
}

/// Refuses, before anything is touched, to `what` without root: the files
/// go to /etc, the user to /etc/passwd (a `--dry-run` needs no root).
fn require_root(what: &str) -> Result<()> {
    if nix::unistd::geteuid().is_root() {
        return Ok(());
    }
    Err(Error::Invalid(format!(
        "service {what} needs root (it writes {UNIT_DIR}, {POLKIT_DIR} and {SYSUSERS_DIR}): run it with sudo, or see what it would write with --dry-run"
    )))
}

/// Writes `f` whole: a temporary file beside it, synced, then renamed over it.
fn write_file(f: &File) -> Result<()> {
    let dir = f.path.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(dir).map_err(Error::io(dir, "creating the directory"))?;
    let tmp = dir.join(format!(".{}.headroom-tmp", f.path.file_name().and_then(|n| n.to_str()).unwrap_or("file")));
    let mut out = std::fs::File::create(&tmp).map_err(Error::io(&tmp, "creating"))?;
    out.write_all(f.text.as_bytes()).map_err(Error::io(&tmp, "writing"))?;
    out.set_permissions(std::fs::Permissions::from_mode(f.mode)).map_err(Error::io(&tmp, "setting the mode of"))?;
    out.sync_all().map_err(Error::io(&tmp, "syncing"))?;
    std::fs::rename(&tmp, &f.path).map_err(Error::io(&f.path, "renaming the new file onto"))
}

/// What is at `path`: nothing, a file of ours (its text), or a file of someone else's.
fn existing(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) if is_ours(&text) => Ok(Some(text)),
        Ok(_) => Err(Error::NotOurs { path: path.to_owned() }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => Err(Error::NotOurs { path: path.to_owned() }),
        Err(e) => Err(Error::io(path, "reading")(e)),
    }
}

/// Writes the files of `s`, creates its user, and has systemd enable and
/// start it: the daemon once `READY=1` arrives (a start job of a
/// `Type=notify` unit ends only then), the timer at once. A unit that runs
/// and whose file changed is restarted; one that runs unchanged is left
/// alone. Returns what was done, a line each.
pub async fn install(s: &Service, sd: &SystemdActuator) -> Result<Vec<String>> {
    s.validate()?;
    require_root("install")?;
    let files = files(s);
    // Nothing is written unless every path is free or ours.
    let mut changed = Vec::new();
    for f in &files {
        let before = existing(&f.path)?;
        changed.push(before.as_deref() != Some(f.text.as_str()));
    }
    let mut report = Vec::new();
    for (f, changed) in files.iter().zip(&changed) {
        if *changed {
            write_file(f)?;
            report.push(format!("wrote {}", f.path.display()));
        } else {
            report.push(format!("unchanged {}", f.path.display()));
        }
    }
    // The daemon's grants follow the config: a rule for targets since removed goes.
    if let Some(stale) = stale_rule(s)
        && existing(&stale)?.is_some()
    {
        std::fs::remove_file(&stale).map_err(Error::io(&stale, "removing"))?;
        report.push(format!("removed {} (the config has no systemd target now)", stale.display()));
    }
    if let Some(f) = unit::sysusers_file(s, Path::new(SYSUSERS_DIR)) {
        let out = Command::new("systemd-sysusers").arg(&f.path).output().map_err(|e| Error::Manager {
            what: format!("running systemd-sysusers {}", f.path.display()),
            why: e.to_string(),
        })?;
        if !out.status.success() {
            return Err(Error::Manager {
                what: format!("systemd-sysusers {}", f.path.display()),
                why: format!("{}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim()),
            });
        }
        report.push(format!("created the system user {} (systemd-sysusers)", s.user.name()));
    }
    sd.reload().await.map_err(manager_err("Reload"))?;
    let enabled = s.enabled_unit();
    let changes =
        sd.enable_unit_files(&[enabled.as_str()]).await.map_err(manager_err(format!("EnableUnitFiles {enabled}")))?;
    for (kind, path, target) in changes {
        report.push(format!("enabled {enabled}: {kind} {path} → {target}"));
    }
    let unit = unit_name(&enabled)?;
    let before = sd.status(&unit).await.map_err(manager_err(format!("reading {enabled}")))?;
    let unit_changed = changed.iter().zip(&files).any(|(c, f)| *c && f.path.parent() == Some(Path::new(UNIT_DIR)));
    let after = if before.active_state == "active" && !unit_changed {
        report.push(format!("{enabled} runs, its unit unchanged: left running"));
        before
    } else if before.active_state == "active" {
        let (how, st) = sd.restart_unit(&unit).await.map_err(manager_err(format!("restarting {enabled}")))?;
        report.push(format!("restarted {enabled} for its new unit: {how}"));
        st
    } else {
        let st = sd.start_unit(&unit).await.map_err(manager_err(format!("starting {enabled}")))?;
        report.push(format!("started {enabled}"));
        st
    };
    report.push(format!("{enabled}: {}", after.state()));
    Ok(report)
}

/// The units in `dir` that install wrote and that run as `user`, but for
/// the files in `except`: `User=<user>` in a unit that carries the marker.
fn units_running_as(dir: &Path, user: &str, except: &[PathBuf]) -> Vec<String> {
    let line = format!("User={user}");
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "service") && !except.contains(&e.path()))
        .filter(|e| std::fs::read_to_string(e.path()).is_ok_and(|t| is_ours(&t) && t.lines().any(|l| l.trim() == line)))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    out.sort();
    out
}

/// Whether the user `name` exists (getpwnam: /etc/passwd and NSS).
pub fn user_exists(name: &str) -> bool {
    matches!(nix::unistd::User::from_name(name), Ok(Some(_)))
}

/// Whether the system user `name` was created by `service install`: a
/// system user with the home and the comment its `sysusers.d` entry gives.
fn created_by_install(name: &str) -> bool {
    let Ok(Some(u)) = nix::unistd::User::from_name(name) else { return false };
    u.dir == Path::new(STATE_ROOT).join(name) && u.gecos.to_str() == Ok(unit::USER_COMMENT)
}

/// Stops and disables the unit(s) named `name` that install wrote, removes
/// their files, the polkit rule and the `sysusers.d` entry (each only when
/// it carries the marker). The state directory (`/var/lib/<user>`: store,
/// audit log) and the user are kept unless `purge`. Returns what was done.
pub async fn uninstall(name: &str, user: &str, purge: bool, sd: &SystemdActuator) -> Result<Vec<String>> {
    require_root("uninstall")?;
    let mut report = Vec::new();
    let service = format!("{name}.service");
    let timer = format!("{name}.timer");
    let mut ours = Vec::new();
    for unit in [&timer, &service] {
        let path = Path::new(UNIT_DIR).join(unit);
        match existing(&path) {
            Ok(Some(_)) => ours.push((unit.clone(), path)),
            Ok(None) => {}
            Err(Error::NotOurs { path }) => {
                report.push(format!("left alone {} (not written by headroom)", path.display()));
            }
            Err(e) => return Err(e),
        }
    }
    for (unit, _) in &ours {
        let u = unit_name(unit)?;
        let st: UnitStatus = sd.stop_unit(&u).await.map_err(manager_err(format!("stopping {unit}")))?;
        report.push(format!("stopped {unit}: {}", st.state()));
    }
    if !ours.is_empty() {
        let names: Vec<&str> = ours.iter().map(|(u, _)| u.as_str()).collect();
        for (kind, path, _) in sd.disable_unit_files(&names).await.map_err(manager_err("DisableUnitFiles"))? {
            report.push(format!("disabled: {kind} {path}"));
        }
    }
    let mut remove: Vec<PathBuf> = ours.into_iter().map(|(_, p)| p).collect();
    remove.push(Path::new(POLKIT_DIR).join(format!("50-{name}.rules")));
    // The user and its state are shared by the daemon and the forecast job:
    // they go with the last unit of install's that runs as that user.
    let others = units_running_as(Path::new(UNIT_DIR), user, &remove);
    let sysusers = Path::new(SYSUSERS_DIR).join(format!("{user}.conf"));
    if others.is_empty() {
        remove.push(sysusers);
    } else if sysusers.exists() {
        report.push(format!(
            "kept {} and the user {user}: {} still run(s) as {user}",
            sysusers.display(),
            others.join(", ")
        ));
    }
    for path in remove {
        match existing(&path) {
            Ok(Some(_)) => {
                std::fs::remove_file(&path).map_err(Error::io(&path, "removing"))?;
                report.push(format!("removed {}", path.display()));
            }
            Ok(None) => {}
            Err(Error::NotOurs { path }) => {
                report.push(format!("left alone {} (not written by headroom)", path.display()))
            }
            Err(e) => return Err(e),
        }
    }
    sd.reload().await.map_err(manager_err("Reload"))?;
    let state = Path::new(STATE_ROOT).join(user);
    let private = Path::new(STATE_ROOT).join("private").join(user);
    if purge && !others.is_empty() {
        report.push(format!(
            "kept {} (store, audit log): {} still run(s) as {user}; uninstall it too, then --purge",
            state.display(),
            others.join(", ")
        ));
    } else if purge {
        for dir in [&state, &private] {
            match std::fs::symlink_metadata(dir) {
                Ok(m) if m.is_dir() => {
                    std::fs::remove_dir_all(dir).map_err(Error::io(dir, "removing"))?;
                    report.push(format!("purged {}", dir.display()));
                }
                Ok(_) => {
                    std::fs::remove_file(dir).map_err(Error::io(dir, "removing"))?;
                    report.push(format!("purged {}", dir.display()));
                }
                Err(_) => {}
            }
        }
        if created_by_install(user) {
            let out = Command::new("userdel")
                .arg(user)
                .output()
                .map_err(|e| Error::Manager { what: format!("running userdel {user}"), why: e.to_string() })?;
            if !out.status.success() {
                return Err(Error::Manager {
                    what: format!("userdel {user}"),
                    why: format!("{}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim()),
                });
            }
            report.push(format!("removed the system user {user}"));
        }
    } else if state.exists() || private.exists() || created_by_install(user) {
        report.push(format!(
            "kept {} (store, audit log) and the user {user}: `headroom service uninstall --purge` removes them",
            state.display()
        ));
    }
    Ok(report)
}

/// A unit as `service status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitReport {
    /// The unit's state as systemd reads it.
    pub status: UnitStatus,
    /// `UnitFileState`: `enabled`, `disabled`, …
    pub file_state: String,
    /// Timers: when it fires next, µs since the epoch (0: not scheduled).
    pub next_elapse_us: Option<u64>,
}

/// The state of `<name>.service` and, when there is one, `<name>.timer`.
pub async fn status(name: &str, sd: &SystemdActuator) -> Result<Vec<UnitReport>> {
    let mut out = Vec::new();
    for unit in [format!("{name}.service"), format!("{name}.timer")] {
        let u = unit_name(&unit)?;
        // `status` refuses a unit systemd has no file for: asked first.
        let load_state: String = sd
            .unit_property(&u, "org.freedesktop.systemd1.Unit", "LoadState")
            .await
            .map_err(manager_err(format!("reading {unit}")))?;
        if load_state == "not-found" {
            continue;
        }
        let status = sd.status(&u).await.map_err(manager_err(format!("reading {unit}")))?;
        let file_state: String = sd
            .unit_property(&u, "org.freedesktop.systemd1.Unit", "UnitFileState")
            .await
            .map_err(manager_err(format!("reading {unit}")))?;
        let next_elapse_us = if unit.ends_with(".timer") {
            sd.unit_property::<u64>(&u, "org.freedesktop.systemd1.Timer", "NextElapseUSecRealtime").await.ok()
        } else {
            None
        };
        out.push(UnitReport { status, file_state, next_elapse_us });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::tests::sample;

    #[test]
    fn versions_read_as_their_major_number() {
        assert_eq!(major_version("252.39-1~deb12u2"), Some(252));
        assert_eq!(major_version("v256"), Some(256));
        assert_eq!(major_version("unknown"), None);
    }

    #[test]
    fn the_dry_run_shows_every_file_whole_and_says_nothing_changed() {
        let s = sample();
        let text = dry_run(&s);
        for f in files(&s) {
            assert!(text.contains(&format!("would write {}", f.path.display())), "{text}");
            for line in f.text.lines() {
                assert!(text.contains(&format!("    {line}\n")), "{line} missing");
            }
        }
        assert!(text.contains("would run: systemd-sysusers /etc/sysusers.d/headroom.conf"), "{text}");
        assert!(text.ends_with("dry run: nothing was written, nothing was asked of systemd\n"), "{text}");
    }

    #[test]
    fn the_user_stays_while_another_unit_of_installs_runs_as_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut daemon = sample();
        let daemon_unit = dir.path().join("headroom.service");
        std::fs::write(&daemon_unit, unit::service_unit(&daemon)).unwrap();
        daemon.name = "headroom-forecast".into();
        daemon.kind = Kind::Timer { on_calendar: "hourly".into(), shard: None };
        let timer_unit = dir.path().join("headroom-forecast.service");
        std::fs::write(&timer_unit, unit::service_unit(&daemon)).unwrap();
        // Someone else's unit running as the same user does not count: install did not write it.
        std::fs::write(dir.path().join("mine.service"), "[Service]\nUser=headroom\n").unwrap();
        assert_eq!(units_running_as(dir.path(), "headroom", std::slice::from_ref(&timer_unit)), ["headroom.service"]);
        assert_eq!(units_running_as(dir.path(), "headroom", &[]), ["headroom-forecast.service", "headroom.service"]);
        assert!(units_running_as(dir.path(), "headroom", &[timer_unit, daemon_unit]).is_empty());
        assert!(units_running_as(dir.path(), "other", &[]).is_empty());
    }

    #[test]
    fn a_file_that_is_not_ours_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("headroom.service");
        std::fs::write(&path, "[Service]\nExecStart=/bin/true\n").unwrap();
        assert!(matches!(existing(&path), Err(Error::NotOurs { .. })));
        let f = File { path: path.clone(), text: unit::service_unit(&sample()), mode: 0o644 };
        std::fs::remove_file(&path).unwrap();
        write_file(&f).unwrap();
        assert_eq!(existing(&path).unwrap().as_deref(), Some(f.text.as_str()));
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o644);
    }
}
