//! The daemon's resident memory and idle CPU with 10,000 series × 14 days at
//! 5-minute resolution in its store:
//! `cargo build --release && cargo bench -p headroom-daemon --bench resident -- TARGETS`
//! (`./scripts/bench.sh daemon` runs it for 100 and 10,000 targets).
//!
//! Writes the store (40 M points), starts `target/release/headroom run` on it
//! with TARGETS of the series as dry-run targets (snaive-daily; no sources;
//! forecast hourly, act every 45 s), waits until it has forecast and then
//! acted, then reads its peak and current resident memory (`VmHWM`,
//! `VmRSS`) and the CPU it uses over the next 30 seconds, between two act runs.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use headroom_collect::store::Store;
use headroom_core::{SampleFrame, SeriesData, SeriesKey};

const SERIES: usize = 10_000;
const STEP: i64 = 5 * 60_000;
const POINTS: i64 = 14 * 288;

fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, out))
}

fn status_kib(pid: u32, field: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// utime + stime of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = s.rsplit_once(") ").map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
}

fn write_store(dir: &Path, now: i64) {
    let store = Store::open(dir).unwrap();
    let start = now - now.rem_euclid(STEP) - (POINTS - 1) * STEP;
    let ts: Vec<i64> = (0..POINTS).map(|k| start + k * STEP).collect();
    for chunk in (0..SERIES).collect::<Vec<_>>().chunks(500) {
        let series: Vec<SeriesData> = chunk
            .iter()
            .map(|&i| SeriesData {
                key: SeriesKey { entity: format!("k8s/bench/deployment/app-{i}"), metric: "cpu".into() },
                ts: ts.clone(),
                values: ts.iter().map(|&t| 0.4 + 0.2 * ((t / STEP + i as i64) % 288) as f64 / 288.0).collect(),
            })
            .collect();
        store.write(&SampleFrame::from_series(&series).unwrap()).unwrap();
    }
}

fn main() {
    let targets: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(100);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let bin: PathBuf = root.join("target/release/headroom");
    assert!(bin.is_file(), "build it first: cargo build --release");
    let dir = tempfile::tempdir().unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let t0 = Instant::now();
    write_store(&dir.path().join("store"), now);
    let wrote = t0.elapsed().as_secs_f64();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut cfg = format!(
        "[store]\npath = \"{}\"\n[audit]\npath = \"{}\"\n[forecast]\nmodel = \"snaive-daily\"\n\
         [schedule]\ncollect = \"1h\"\nforecast = \"1h\"\nact = \"45s\"\n[daemon]\nlisten = \"127.0.0.1:{port}\"\nwatch_config = false\n",
        dir.path().join("store").display(),
        dir.path().join("audit.jsonl").display()
    );
    for i in 0..targets {
        writeln!(
            cfg,
            "[[targets]]\nname = \"app-{i}\"\nplatform = \"kubernetes\"\nentity = \"k8s/bench/deployment/app-{i}\"\n\
             metric = \"cpu\"\ncapacity = 1.0\nreplicas = 2"
        )
        .unwrap();
    }
    std::fs::write(dir.path().join("headroom.toml"), cfg).unwrap();
    let started = Instant::now();
    let mut child = std::process::Command::new(&bin)
        .args(["run", "--config"])
        .arg(dir.path().join("headroom.toml"))
        .env("HEADROOM_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    // Ready (collected and forecast), then an act run after that.
    let last_act = || {
        get(port, "/api/v1/targets").and_then(|(_, b)| {
            let body = b.split_once("\r\n\r\n")?.1;
            let doc: serde_json::Value = serde_json::from_str(body).ok()?;
            doc["jobs"]["act"]["last_run"].as_str().map(str::to_owned)
        })
    };
    let mut ready_act = None;
    loop {
        assert!(started.elapsed() < Duration::from_secs(1_800), "not ready after 30 min");
        assert!(child.try_wait().unwrap().is_none(), "the daemon exited");
        std::thread::sleep(Duration::from_millis(200));
        if ready_act.is_none() {
            if get(port, "/readyz").is_some_and(|(s, _)| s == 200) {
                ready_act = Some(last_act());
            }
        } else if last_act() != ready_act.clone().flatten() {
            break;
        }
    }
    let first_cycle = started.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_secs(2));
    let hwm = status_kib(pid, "VmHWM:");
    let before = cpu_ticks(pid);
    let idle = Duration::from_secs(30);
    std::thread::sleep(idle);
    let ticks = cpu_ticks(pid) - before;
    let rss = status_kib(pid, "VmRSS:");
    let hz = 100.0; // USER_HZ on Linux
    println!(
        "series={SERIES} points_per_series={POINTS} targets={targets} store_written_s={wrote:.1} ready_and_acted_s={first_cycle:.1} \
         peak_rss_mib={:.0} rss_mib={:.0} idle_cpu_percent_of_a_core={:.2}",
        hwm as f64 / 1024.0,
        rss as f64 / 1024.0,
        100.0 * ticks as f64 / hz / idle.as_secs_f64()
    );
    let _ = child.kill();
    let _ = child.wait();
}
