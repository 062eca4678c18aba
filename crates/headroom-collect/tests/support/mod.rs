//! Helpers shared by the Prometheus integration tests and the pull benchmark:
//! the recorded sample data, OpenMetrics backfill with `promtool`, and real
//! `prometheus` / `prometheus-node-exporter` processes on free loopback ports,
//! stopped by PID when dropped.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use headroom_core::{SampleFrame, SeriesData};
use polars::prelude::{ParquetReader, SerReader};

/// 2024-01-01T00:00:00Z, where the recorded ASD series start.
pub const T0: i64 = 1_704_067_200_000;
/// One day in milliseconds.
pub const DAY: i64 = 86_400_000;

/// Installs the process-wide TLS provider (once; later calls are no-ops).
pub fn install_tls() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The path of `binary` on `PATH`; panics with what to install when it is missing,
/// so a machine without Prometheus fails these tests instead of skipping them.
pub fn require(binary: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).map(|dir| dir.join(binary)).find(|p| p.is_file()).unwrap_or_else(|| {
        panic!(
            "`{binary}` is not on PATH. These tests run a real Prometheus: install it with \
             `apt-get install -y --no-install-recommends prometheus prometheus-node-exporter` \
             (scripts/test.sh does this in CI)"
        )
    })
}

/// A TCP port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `data/sample/metrics.parquet` of this repository.
pub fn sample_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/sample/metrics.parquet")
}

/// Every recorded series of the sample, points sorted by time.
pub fn load_sample() -> Vec<SeriesData> {
    let path = sample_path();
    let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let df = ParquetReader::new(file).finish().unwrap();
    let mut series = SampleFrame::new(df).unwrap().series().unwrap();
    for s in &mut series {
        let mut order: Vec<usize> = (0..s.len()).collect();
        order.sort_by_key(|&i| s.ts[i]);
        s.ts = order.iter().map(|&i| s.ts[i]).collect();
        s.values = order.iter().map(|&i| s.values[i]).collect();
    }
    series
}

/// The points of `s` in `[from, to)`.
pub fn window(s: &SeriesData, from: i64, to: i64) -> SeriesData {
    let mut out = SeriesData::new(s.key.clone());
    for (&t, &v) in s.ts.iter().zip(&s.values) {
        if t >= from && t < to {
            out.push(t, v);
        }
    }
    out
}

/// Writes OpenMetrics text for promtool: one family per call of `family`.
#[derive(Debug, Default)]
pub struct OpenMetrics {
    text: String,
}

impl OpenMetrics {
    /// Starts a metric family (`type_` is `gauge` or `counter`; for a counter,
    /// the samples are named `<name>_total`).
    pub fn family(&mut self, name: &str, type_: &str) -> &mut Self {
        writeln!(self.text, "# TYPE {name} {type_}").unwrap();
        self
    }

    /// Appends one series (`labels` already formatted: `a="x",b="y"`); its
    /// points must be sorted by time (promtool drops out-of-order samples).
    pub fn series(&mut self, sample_name: &str, labels: &str, ts_ms: &[i64], values: &[f64]) -> &mut Self {
        assert!(ts_ms.windows(2).all(|w| w[0] < w[1]), "{sample_name}{{{labels}}}: points not sorted by time");
        for (&t, &v) in ts_ms.iter().zip(values) {
            let value = if v.is_nan() {
                "NaN".to_string()
            } else if v.is_infinite() {
                if v > 0.0 { "+Inf".into() } else { "-Inf".into() }
            } else {
                format!("{v:?}")
            };
            // Timestamps in seconds: milliseconds would land in the far future.
            let secs = if t % 1000 == 0 { format!("{}", t / 1000) } else { format!("{}.{:03}", t / 1000, t % 1000) };
            writeln!(self.text, "{sample_name}{{{labels}}} {value} {secs}").unwrap();
        }
        self
    }

    /// Ends the text with `# EOF` and writes it.
    pub fn write(&mut self, path: &Path) {
        self.text.push_str("# EOF\n");
        std::fs::write(path, &self.text).unwrap();
    }
}

/// Turns an OpenMetrics file into TSDB blocks in `tsdb` with
/// `promtool tsdb create-blocks-from openmetrics`; returns how long it took.
pub fn backfill(openmetrics: &Path, tsdb: &Path) -> Duration {
    let promtool = require("promtool");
    let started = Instant::now();
    let out = Command::new(promtool)
        .args(["tsdb", "create-blocks-from", "openmetrics", "-q"])
        .arg(openmetrics)
        .arg(tsdb)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool backfill failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    started.elapsed()
}

/// A child process killed (by its PID) and reaped when dropped.
#[derive(Debug)]
pub struct Process {
    child: Option<Child>,
    name: String,
    log: PathBuf,
}

impl Process {
    /// Starts `program` with `args`, stdout and stderr going to `log`.
    pub fn spawn(program: &Path, args: &[String], log: &Path) -> Process {
        let out = std::fs::File::create(log).unwrap();
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        Process { child: Some(child), name: program.display().to_string(), log: log.to_owned() }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// Kills the process (SIGKILL to its PID) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether the process has exited (with its status).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    /// The last 4 kB of what the process printed.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let start = text.len().saturating_sub(4096);
        let start = (start..text.len()).find(|&i| text.is_char_boundary(i)).unwrap_or(text.len());
        format!("--- {} ({}) ---\n{}", self.name, self.log.display(), &text[start..])
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A real Prometheus on 127.0.0.1, stopped by PID when dropped.
#[derive(Debug)]
pub struct Prometheus {
    /// The server process.
    pub process: Process,
    /// Its port.
    pub port: u16,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
}

impl Prometheus {
    /// Starts Prometheus on the TSDB directory `tsdb` with the configuration
    /// `config_yaml` (written into `workdir`), and waits until it is ready.
    /// Old (backfilled) blocks are kept: retention is 10 years.
    pub fn start(tsdb: &Path, config_yaml: &str, workdir: &Path) -> Prometheus {
        let binary = require("prometheus");
        let config = workdir.join("prometheus.yml");
        std::fs::write(&config, config_yaml).unwrap();
        let mut last_log = String::new();
        // A port that was free may be taken before Prometheus binds it: try a few.
        for _ in 0..3 {
            let port = free_port();
            let args = vec![
                format!("--config.file={}", config.display()),
                format!("--storage.tsdb.path={}", tsdb.display()),
                format!("--web.listen-address=127.0.0.1:{port}"),
                "--storage.tsdb.retention.time=10y".into(),
                "--log.level=warn".into(),
            ];
            let process = Process::spawn(&binary, &args, &workdir.join(format!("prometheus-{port}.log")));
            let mut prom = Prometheus { process, port, url: format!("http://127.0.0.1:{port}") };
            match prom.wait_ready(Duration::from_secs(120)) {
                Ok(()) => return prom,
                Err(log) => last_log = log,
            }
        }
        panic!("Prometheus did not become ready:\n{last_log}");
    }

    /// Polls `/-/ready` until it answers 200; `Err` holds the log when the
    /// process exited or the time ran out.
    fn wait_ready(&mut self, limit: Duration) -> Result<(), String> {
        let started = Instant::now();
        while started.elapsed() < limit {
            if let Some(status) = self.process.exited() {
                return Err(format!("exited with {status}\n{}", self.process.log_tail()));
            }
            if http_get_status(self.port, "/-/ready") == Some(200) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(format!("not ready after {limit:?}\n{}", self.process.log_tail()))
    }

    /// The config of a Prometheus that scrapes nothing.
    pub fn idle_config() -> String {
        "global:\n  scrape_interval: 1m\nscrape_configs: []\n".into()
    }
}

/// The status code of a plain HTTP/1.0 GET to 127.0.0.1:`port`, if it answered.
pub fn http_get_status(port: u16, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}
