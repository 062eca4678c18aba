//! A real systemd for tests: `scripts/testing/systemd-sandbox.sh` boots one
//! (with its D-Bus system bus) as PID 1 of a private PID + mount namespace;
//! [`Sandbox`] runs commands in it and stops it (by its PID, via the script)
//! when dropped.
//!
//! Needs root and the Debian packages `systemd` and `dbus`. Without them a
//! test fails saying why, unless `HEADROOM_SKIP_SYSTEMD_TESTS=1` (see
//! [`Sandbox::boot`]; [`Sandbox::start`] leaves the choice to its caller).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Set to `1`, the systemd sandbox tests pass without running when the
/// sandbox cannot boot (no root, no systemd); otherwise they fail saying why.
pub const SKIP_SYSTEMD: &str = "HEADROOM_SKIP_SYSTEMD_TESTS";

/// A real systemd booted by `scripts/testing/systemd-sandbox.sh` (as PID 1
/// of a private PID + mount namespace), stopped (by its PID, via the
/// script) when dropped. One at a time across test threads and test
/// binaries (a lock file in the temporary directory): the script's cleanup
/// removes the cgroup folders created since it started.
#[derive(Debug)]
pub struct Sandbox {
    script: PathBuf,
    state: PathBuf,
    overlay: Vec<String>,
    /// The unit whose `systemctl status` a failed command's message shows.
    unit: Option<String>,
    _dir: tempfile::TempDir,
    _lock: std::fs::File,
}

impl Sandbox {
    /// The sandbox script: `HEADROOM_SYSTEMD_SANDBOX`, or
    /// `scripts/testing/systemd-sandbox.sh` of this repository.
    pub fn script() -> PathBuf {
        std::env::var_os("HEADROOM_SYSTEMD_SANDBOX")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/testing/systemd-sandbox.sh"))
    }

    /// [`Sandbox::boot_with`] without overlays.
    pub fn boot(share: &[&Path]) -> Option<Self> {
        Self::boot_with(share, &[])
    }

    /// Boots an empty sandbox (as [`Sandbox::start`], without unit files), or
    /// `None` when it cannot boot and `HEADROOM_SKIP_SYSTEMD_TESTS=1`; when it
    /// cannot boot otherwise, panics saying why and how to skip.
    pub fn boot_with(share: &[&Path], overlay: &[&str]) -> Option<Self> {
        let why = match Self::start(share, overlay, &[]) {
            Ok(sandbox) => return Some(sandbox),
            Err(why) => why,
        };
        if std::env::var(SKIP_SYSTEMD).as_deref() == Ok("1") {
            eprintln!("skipped: the systemd sandbox did not boot ({}); {SKIP_SYSTEMD}=1", why.trim());
            return None;
        }
        panic!(
            "the systemd sandbox did not boot: {}\nthis test needs root and the systemd and dbus packages (scripts/test.sh installs them); set {SKIP_SYSTEMD}=1 to skip it",
            why.trim()
        );
    }

    /// Boots a sandbox that sees the host's `share` directories (even under
    /// /tmp, which it has its own of) and the host's `overlay` directories
    /// copy-on-write (what it writes there lands in [`Sandbox::upper`], never
    /// on the host), with the unit files `units` installed and started; or
    /// what the script said when it did not boot. Waits for the sandbox lock
    /// first.
    pub fn start(share: &[&Path], overlay: &[&str], units: &[&Path]) -> Result<Self, String> {
        let lock = std::fs::File::create(std::env::temp_dir().join("headroom-systemd-sandbox.lock")).unwrap();
        lock.lock().unwrap();
        let script = Self::script();
        // In /tmp: the bus socket's path must stay short (a unix socket path is at most 107 bytes).
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let share: Vec<String> = share.iter().map(|p| p.display().to_string()).collect();
        let out = Command::new(&script)
            .arg("start")
            .arg(&state)
            .args(units)
            .env("HEADROOM_SANDBOX_SHARE", share.join(":"))
            .env("HEADROOM_SANDBOX_OVERLAY", overlay.join(":"))
            .output();
        // Built before the check, so that a half-booted sandbox is stopped too.
        let sandbox = Self {
            script: script.clone(),
            state,
            overlay: overlay.iter().map(|s| (*s).to_owned()).collect(),
            unit: None,
            _dir: dir,
            _lock: lock,
        };
        match &out {
            Ok(o) if o.status.success() => Ok(sandbox),
            Ok(o) => Err(format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))),
            Err(e) => Err(format!("cannot run {}: {e}", script.display())),
        }
    }

    /// Names the unit whose `systemctl status` the message of a failed [`Sandbox::run`] shows.
    pub fn watching(mut self, unit: &str) -> Self {
        self.unit = Some(unit.to_owned());
        self
    }

    /// The sandbox's state directory (its `/run` is `run/` in it).
    pub fn state(&self) -> &Path {
        &self.state
    }

    /// The address of the sandbox's D-Bus system bus (`unix:path=…`).
    pub fn bus_address(&self) -> String {
        format!("unix:path={}", self.state.join("run/dbus/system_bus_socket").display())
    }

    /// Where, on the host, what the sandbox wrote to the overlaid host
    /// directory `dir` (one given to [`Sandbox::boot_with`]) lands.
    pub fn upper(&self, dir: &str) -> PathBuf {
        let n = self.overlay.iter().position(|d| d == dir).unwrap_or_else(|| panic!("{dir} is not overlaid"));
        self.state.join("overlay").join(n.to_string()).join("upper")
    }

    /// Installs a unit file in the sandbox's `/run/systemd/system` and has systemd read it.
    pub fn install(&self, name: &str, text: &str) {
        std::fs::write(self.state.join("run/systemd/system").join(name), text).unwrap();
        self.run(&["systemctl", "daemon-reload"]);
    }

    /// Runs `args` inside the sandbox: its whole output.
    pub fn output(&self, args: &[&str]) -> std::process::Output {
        Command::new(&self.script).arg("exec").arg(&self.state).args(args).stdin(Stdio::null()).output().unwrap()
    }

    /// Runs `args` inside the sandbox: exit status and stdout.
    pub fn exec(&self, args: &[&str]) -> (bool, String) {
        let out = self.output(args);
        (out.status.success(), String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// Runs `args` inside the sandbox, which must succeed; its stdout.
    pub fn run(&self, args: &[&str]) -> String {
        let out = self.output(args);
        assert!(
            out.status.success(),
            "{args:?}: {}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.unit.as_deref().map(|u| self.status(u)).unwrap_or_default()
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Writes `text` to `path` inside the sandbox (through its mounts: an
    /// overlaid directory keeps the host's copy as it was), mode 0644,
    /// creating its directory.
    pub fn write(&self, path: &str, text: &str) {
        let mut child = Command::new(&self.script)
            .arg("exec")
            .arg(&self.state)
            .args(["/bin/sh", "-c", r#"umask 022 && mkdir -p "$(dirname "$1")" && cat >"$1.new" && mv "$1.new" "$1""#])
            .args(["sh", path])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "writing {path} in the sandbox: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Whether `path` exists inside the sandbox (a symlink counts, even a dangling one).
    pub fn exists(&self, path: &str) -> bool {
        self.exec(&["/bin/sh", "-c", r#"test -e "$1" || test -L "$1""#, "sh", path]).0
    }

    /// `systemctl show -p A,B,… UNIT`, as systemd's own client reads it.
    pub fn show(&self, unit: &str, properties: &[&str]) -> BTreeMap<String, String> {
        let out = self.run(&["systemctl", "show", "-p", &properties.join(","), unit]);
        out.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_owned(), v.to_owned())).collect()
    }

    /// `systemctl status` of `unit`: what a failure message needs (the
    /// sandbox's systemd logs to its own console, nowhere to read).
    pub fn status(&self, unit: &str) -> String {
        self.exec(&["systemctl", "status", "--no-pager", "--full", unit]).1
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = Command::new(&self.script).arg("stop").arg(&self.state).status();
    }
}
