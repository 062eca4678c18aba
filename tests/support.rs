//! What the end-to-end tests share: the built `headroom` binary, plain
//! HTTP/1.1 requests, waiting for a condition, a running daemon and its
//! config; and, from `headroom-testing`, a free loopback port, a real
//! Prometheus and a real systemd in a sandbox of its own.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

pub use headroom_testing::prometheus::{Prometheus, backfill};
pub use headroom_testing::systemd::Sandbox;
pub use headroom_testing::{Process, free_port, require_binary};

/// The `headroom` binary of this build (beside the test executable's `deps/`).
///
/// This package cannot depend on a binary, so `cargo nextest run -p
/// headroom-e2e` alone does not rebuild it: a binary older than a source
/// file (`src/`) of a crate it is built from is refused rather than tested.
pub fn headroom_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target/<profile>/deps/..");
    let bin = dir.join(format!("headroom{}", std::env::consts::EXE_SUFFIX));
    let stale = "run the tests through the workspace (cargo nextest run --workspace), which builds it";
    let built = std::fs::metadata(&bin).and_then(|m| m.modified());
    let built = built.unwrap_or_else(|_| panic!("{} is not built: {stale}", bin.display()));
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates");
    for krate in std::fs::read_dir(&crates).into_iter().flatten().flatten() {
        // The fuzz bodies and the test support are not part of the binary.
        if krate.file_name() == "headroom-fuzz" || krate.file_name() == "headroom-testing" {
            continue;
        }
        if let Some(newer) = newer_source(&krate.path().join("src"), built) {
            panic!("{} is older than {}: {stale}", bin.display(), newer.display());
        }
    }
    bin
}

/// A `.rs` file under `dir` changed after `than`.
fn newer_source(dir: &Path, than: std::time::SystemTime) -> Option<PathBuf> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if let Some(p) = newer_source(&path, than) {
                return Some(p);
            }
        } else if path.extension().is_some_and(|e| e == "rs")
            && entry.metadata().and_then(|m| m.modified()).is_ok_and(|m| m > than)
        {
            return Some(path);
        }
    }
    None
}

/// A response: status code and body.
#[derive(Debug, Clone)]
pub struct Response {
    /// The HTTP status code.
    pub status: u16,
    /// The body, as text.
    pub body: String,
}

/// Sends one HTTP/1.1 request to 127.0.0.1:`port` and reads the whole answer.
pub fn request(port: u16, method: &str, path: &str, headers: &[(&str, &str)]) -> std::io::Result<Response> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: 0\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body =
        if head.to_ascii_lowercase().contains("transfer-encoding: chunked") { unchunk(body) } else { body.to_owned() };
    Ok(Response { status, body })
}

fn unchunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// `GET path` (no headers).
pub fn get(port: u16, path: &str) -> std::io::Result<Response> {
    request(port, "GET", path, &[])
}

/// Polls `check` every 200 ms until it returns `Some`, for at most `limit`;
/// panics with `what` and the last state otherwise.
pub fn wait_for<T>(what: &str, limit: Duration, mut check: impl FnMut() -> Result<T, String>) -> T {
    let started = Instant::now();
    let mut last = String::new();
    while started.elapsed() < limit {
        match check() {
            Ok(v) => return v,
            Err(e) => last = e,
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("waited {limit:?} for {what}; last: {last}");
}

/// A `headroom run` process, killed when dropped.
#[derive(Debug)]
pub struct Daemon {
    /// The process.
    pub child: Child,
    /// Its HTTP port.
    pub port: u16,
    log: PathBuf,
}

impl Daemon {
    /// Starts `headroom run --config CONFIG [--enforce]` in `dir`, its log in `dir/daemon.log`.
    pub fn start(config: &Path, port: u16, dir: &Path, enforce: bool) -> Self {
        let log = dir.join("daemon.log");
        let mut cmd = Command::new(headroom_bin());
        cmd.arg("run").arg("--config").arg(config).current_dir(dir);
        if enforce {
            cmd.arg("--enforce");
        }
        let child = cmd
            .env("HEADROOM_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Self { child, port, log }
    }

    /// `GET path` on its HTTP endpoint.
    pub fn get(&self, path: &str) -> std::io::Result<Response> {
        get(self.port, path)
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends it `s`.
    pub fn signal(&self, s: Signal) {
        kill(Pid::from_raw(self.child.id() as i32), s).unwrap();
    }

    /// Waits at most `limit` for it to exit.
    pub fn wait(&mut self, limit: Duration) -> std::process::ExitStatus {
        let started = std::time::Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(started.elapsed() < limit, "the daemon did not exit within {limit:?}:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Now, in ms since the epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("a clock after 1970").as_millis() as i64
}

/// Writes to `path` (CSV: timestamp, entity, metric, value) three days of
/// `entity`'s CPU every 15 minutes, up to now: quiet (0.3 cores) but for a
/// daily peak of 1.2 cores that comes again two hours from now.
pub fn recorded_cpu(path: &Path, entity: &str) {
    use std::fmt::Write as _;
    const STEP_MS: i64 = 15 * 60_000;
    const DAY_MS: i64 = 86_400_000;
    let now = now_ms();
    let end = now - now.rem_euclid(STEP_MS);
    let peak_at = now + 2 * 3_600_000;
    let mut csv = String::from("timestamp,entity,metric,value\n");
    let mut t = end - 3 * DAY_MS;
    while t <= end {
        // Hours from the nearest daily peak.
        let off = ((t - peak_at).rem_euclid(DAY_MS) as f64).min((peak_at - t).rem_euclid(DAY_MS) as f64) / 3_600_000.0;
        let v = 0.3 + 0.9 * (-off * off / 2.0).exp();
        writeln!(csv, "{},{entity},cpu,{v:.4}", headroom_core::format_ts(t)).expect("writing to a String");
        t += STEP_MS;
    }
    std::fs::write(path, csv).expect("writing the recorded CPU");
}

/// Starts `headroom run --config CONFIG` in `dir` (as [`Daemon::start`]) on a
/// free loopback port, once `write_config(port)` has written the config for
/// that port, and waits (at most 60 s) until it listens. A port free a
/// moment ago may be taken before the daemon binds it: then (the daemon
/// exits saying it cannot listen) the config is written again for another
/// port, three times at most.
pub fn start_daemon_on_free_port(
    config: &Path,
    dir: &Path,
    enforce: bool,
    mut write_config: impl FnMut(u16),
) -> Daemon {
    let mut last = String::new();
    for _ in 0..3 {
        let port = free_port();
        write_config(port);
        let mut daemon = Daemon::start(config, port, dir, enforce);
        let started = Instant::now();
        loop {
            let log = daemon.log();
            if log.contains("headroom daemon started") {
                return daemon;
            }
            if daemon.child.try_wait().ok().flatten().is_some() {
                assert!(log.contains("cannot listen"), "the daemon exited at start:\n{log}");
                last = log;
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(60), "the daemon did not start within 60 s:\n{log}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    panic!("the daemon found no free port in three tries:\n{last}");
}

/// The sections every daemon test shares: the store and the audit log in
/// `dir`, daily seasonal naive, jobs every second or two, `listen` on
/// `port`; `daemon_extra` holds more `[daemon]` keys, one per line.
pub fn common_config(dir: &Path, port: u16, daemon_extra: &str) -> String {
    format!(
        r#"
[store]
path = {store:?}

[audit]
path = {audit:?}

[forecast]
model = "snaive-daily"

[schedule]
collect = "1s"
forecast = "2s"
act = "1s"

[daemon]
listen = "127.0.0.1:{port}"
shutdown_timeout = "10s"
{daemon_extra}
"#,
        store = dir.join("store").display().to_string(),
        audit = dir.join("audit.jsonl").display().to_string(),
    )
}

/// A files source reading `files`.
pub fn files_source(files: &[&Path]) -> String {
    let paths: Vec<String> = files.iter().map(|p| format!("{:?}", p.display().to_string())).collect();
    format!("\n[[sources]]\ntype = \"files\"\npaths = [{}]\n", paths.join(", "))
}

/// A supervised `sleep 600` named `worker` at one instance, and a process
/// target scaling it in enforce mode (1 to 4 instances; 1 core, level 0.8).
pub const WORKER: &str = r#"
[[processes]]
name = "worker"
command = ["sleep", "600"]
stop_timeout = "2s"

[[targets]]
name = "worker"
platform = "process"
entity = "proc/worker"
metric = "cpu"
capacity = 1.0
threshold = 0.8
replicas = 1
max_replicas = 4
mode = "enforce"
"#;

/// The pids of `parent`'s children whose command name starts with `name`
/// (from /proc: `pid (comm) state ppid …`).
pub fn children(parent: u32, name: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        let Some((head, rest)) = stat.rsplit_once(") ") else { continue };
        let comm = head.split_once(" (").map_or("", |(_, c)| c);
        let ppid = rest.split_whitespace().nth(1).and_then(|p| p.parse::<u32>().ok());
        if comm.starts_with(name) && ppid == Some(parent) {
            out.push(pid);
        }
    }
    out
}

impl Daemon {
    /// Waits at most `limit` for a `scale_to` decision on `/api/v1/decisions`, and returns it.
    pub fn wait_for_scale_out(&self, limit: Duration) -> serde_json::Value {
        wait_for("a scale-out on /api/v1/decisions", limit, || {
            let r = self.get("/api/v1/decisions").map_err(|e| e.to_string())?;
            let doc: serde_json::Value = serde_json::from_str(&r.body).map_err(|e| format!("{e}: {}", r.body))?;
            doc["decisions"]
                .as_array()
                .and_then(|v| v.iter().find(|d| d["decision"]["action"]["type"] == "scale_to").cloned())
                .ok_or_else(|| format!("{}\n{}", r.body, self.log()))
        })
    }
}

/// Asserts that decision `id` has exactly two records in the audit log at
/// `path`: its intent, then its `succeeded` outcome.
pub fn assert_intent_then_success(path: &Path, id: &str) {
    let audit = std::fs::read_to_string(path).expect("the audit log");
    let ours: Vec<&str> = audit.lines().filter(|l| l.contains(id)).collect();
    assert_eq!(ours.len(), 2, "intent and outcome of {id}:\n{audit}");
    assert!(ours[0].contains("intent") && ours[1].contains("succeeded"), "{ours:?}");
}
