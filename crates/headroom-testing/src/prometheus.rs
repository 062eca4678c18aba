//! A real Prometheus for tests and benchmarks: OpenMetrics text backfilled
//! into a TSDB by `promtool`, a `prometheus` process on a free loopback port
//! (stopped by PID when dropped), and a scripted HTTP server for what a
//! real one will not do on demand (errors, slow answers, recording headers).
//!
//! Needs the Debian packages `prometheus` (and `prometheus-node-exporter`
//! for live node metrics): a machine without them fails these tests rather
//! than skipping them (scripts/test.sh installs them).

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::{Process, free_port, http_get_status, require_binary};

/// Installs the process-wide TLS provider that headroom's HTTP clients
/// expect (once; later calls are no-ops).
pub fn install_tls() {
    let _ = rustls::crypto::ring::default_provider().install_default();
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
    let promtool = require_binary("promtool", "prometheus");
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
    /// [`Prometheus::start_with`] without extra flags.
    pub fn start(tsdb: &Path, config_yaml: &str, workdir: &Path) -> Prometheus {
        Self::start_with(tsdb, config_yaml, workdir, &[])
    }

    /// Starts Prometheus on the TSDB directory `tsdb` with the configuration
    /// `config_yaml` (written to `workdir/prometheus.yml`) and the `extra`
    /// flags, its log in `workdir`, and waits (at most 120 s) until `/-/ready`
    /// answers 200 without credentials. Old (backfilled) blocks are kept:
    /// retention is 10 years.
    pub fn start_with(tsdb: &Path, config_yaml: &str, workdir: &Path, extra: &[String]) -> Prometheus {
        let binary = require_binary("prometheus", "prometheus");
        let config = workdir.join("prometheus.yml");
        std::fs::write(&config, config_yaml).unwrap();
        let mut last_log = String::new();
        // A port that was free may be taken before Prometheus binds it: try a few.
        for _ in 0..3 {
            let port = free_port();
            let mut args = vec![
                format!("--config.file={}", config.display()),
                format!("--storage.tsdb.path={}", tsdb.display()),
                format!("--web.listen-address=127.0.0.1:{port}"),
                "--storage.tsdb.retention.time=10y".into(),
                "--log.level=warn".into(),
            ];
            args.extend_from_slice(extra);
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

    /// What it logged so far.
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// The config of a Prometheus that scrapes nothing.
    pub fn idle_config() -> String {
        "global:\n  scrape_interval: 1m\nscrape_configs: []\n".into()
    }
}

/// What a [`ScriptedServer`] does with one request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// Answers `HTTP/1.1 <status>` (e.g. `200 OK`) with a JSON content type,
    /// the extra `headers` (each line ending in `\r\n`) and `body`, then closes.
    Answer {
        /// The status code and reason.
        status: String,
        /// Extra header lines, each ending in `\r\n`.
        headers: String,
        /// The body.
        body: String,
    },
    /// Holds the connection open (for an hour) without answering.
    Hang,
    /// Closes the connection without answering.
    Close,
}

impl Reply {
    /// A [`Reply::Answer`].
    pub fn answer(status: &str, headers: &str, body: &str) -> Reply {
        Reply::Answer { status: status.into(), headers: headers.into(), body: body.into() }
    }
}

/// A scripted HTTP/1.1 server on a free loopback port: each request, on a
/// thread of its own, has its head (request line and headers) recorded and
/// gets the [`Reply`] the test scripted for it. It serves until the test
/// process ends.
#[derive(Debug)]
pub struct ScriptedServer {
    /// Its port.
    pub port: u16,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// The heads (request line and headers) of the requests seen so far, in order.
    pub seen: Arc<Mutex<Vec<String>>>,
}

impl ScriptedServer {
    /// Serves `replies` in the order the requests come (the last one repeats).
    pub fn replies(replies: Vec<Reply>) -> ScriptedServer {
        assert!(!replies.is_empty(), "a scripted server needs at least one reply");
        Self::start(move |n, _| replies[n.min(replies.len() - 1)].clone())
    }

    /// Answers request number `n` (from 0, in the order their heads were
    /// read) with `reply(n, head)`.
    pub fn start(reply: impl Fn(usize, &str) -> Reply + Send + Sync + 'static) -> ScriptedServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        let reply = Arc::new(reply);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (record, reply) = (record.clone(), reply.clone());
                std::thread::spawn(move || Self::serve(stream, &record, &*reply));
            }
        });
        ScriptedServer { port, url: format!("http://127.0.0.1:{port}"), seen }
    }

    /// Reads one request's head, records it and replies.
    fn serve(mut stream: TcpStream, record: &Mutex<Vec<String>>, reply: &dyn Fn(usize, &str) -> Reply) {
        let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        let head = String::from_utf8_lossy(&head).into_owned();
        let n = {
            let mut seen = record.lock().unwrap();
            seen.push(head.clone());
            seen.len() - 1
        };
        match reply(n, &head) {
            Reply::Answer { status, headers, body } => {
                let response = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n{headers}\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes());
                let _ = stream.shutdown(std::net::Shutdown::Write);
            }
            Reply::Hang => {
                std::thread::sleep(Duration::from_secs(3600));
                drop(stream);
            }
            Reply::Close => drop(stream),
        }
    }
}
