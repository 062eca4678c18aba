//! How long `PrometheusSource` takes to pull 1,000 series × 14 days × 5 min
//! (4.03 M samples) from a real Prometheus with default settings. Target: ≤ 20 s.
//!
//! `cargo bench --bench prometheus_pull`. Needs `prometheus` and `promtool`.
//! The backfilled TSDB is cached under `target/prometheus-bench/<VERSION>/`,
//! so only the first run pays for the backfill (its time is printed then, and
//! recalled afterwards). Not run in CI.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use headroom_collect::Source;
use headroom_collect::prometheus::{PrometheusConfig, PrometheusSource, QueryConfig};
use headroom_testing::prometheus::{Prometheus, backfill, install_tls};
use headroom_testing::sample::{DAY, T0, load_sample};
use tokio_util::sync::CancellationToken;

/// Bump when the generated data changes, to rebuild the cached TSDB.
const VERSION: &str = "v1";
const SERIES: usize = 1_000;
const POINTS: usize = 14 * 288; // 14 days at 5 min
const STEP_MS: i64 = 300_000;
const RUNS: usize = 3;

fn cache_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    target.join("prometheus-bench").join(VERSION)
}

/// 1,000 distinct series of 4,032 recorded values each: 14-day windows of the
/// sample's series (several offsets per series), re-stamped onto
/// `T0 + i · 5 min`, so every series is sorted by time.
fn bench_series() -> Vec<(String, Vec<f64>)> {
    let sample = load_sample();
    let mut out = Vec::with_capacity(SERIES);
    for offset in (0..).step_by(1_296) {
        let mut any = false;
        for s in &sample {
            if out.len() == SERIES {
                return out;
            }
            if s.len() >= offset + POINTS {
                any = true;
                let values = s.values[offset..offset + POINTS].to_vec();
                out.push((format!("{}@{offset}", s.key), values));
            }
        }
        assert!(any, "the sample holds only {} windows of {POINTS} points", out.len());
    }
    unreachable!()
}

/// Writes the OpenMetrics file and backfills it; returns the time the backfill took.
fn build_tsdb(tsdb: &std::path::Path) -> Duration {
    let series = bench_series();
    let om = tsdb.with_file_name("bench.om");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&om).unwrap());
    writeln!(file, "# TYPE bench_metric gauge").unwrap();
    for (i, (source, values)) in series.iter().enumerate() {
        for (k, v) in values.iter().enumerate() {
            let secs = (T0 + k as i64 * STEP_MS) / 1000;
            let v = if v.is_nan() { "NaN".to_string() } else { format!("{v:?}") };
            writeln!(file, "bench_metric{{series=\"s{i:04}\",source=\"{source}\"}} {v} {secs}").unwrap();
        }
    }
    writeln!(file, "# EOF").unwrap();
    file.into_inner().unwrap().sync_all().unwrap();
    eprintln!("backfilling {} series × {POINTS} points …", series.len());
    let took = backfill(&om, tsdb);
    std::fs::remove_file(&om).unwrap();
    took
}

fn main() {
    install_tls();
    let cache = cache_dir();
    let tsdb = cache.join("tsdb");
    let marker = cache.join("backfill-seconds");
    match std::fs::read_to_string(&marker) {
        Ok(text) => {
            let secs: f64 = text.trim().parse().unwrap();
            println!("backfill: cached in {} (took {secs:.1} s when built)", tsdb.canonicalize().unwrap().display());
        }
        Err(_) => {
            let _ = std::fs::remove_dir_all(&cache);
            std::fs::create_dir_all(&cache).unwrap();
            let secs = build_tsdb(&tsdb).as_secs_f64();
            std::fs::write(&marker, format!("{secs}\n")).unwrap();
            println!("backfill: {SERIES} series × {POINTS} points = {} samples in {secs:.1} s", SERIES * POINTS);
        }
    }

    let workdir = tempfile::tempdir().unwrap();
    let prom = Prometheus::start(&tsdb, &Prometheus::idle_config(), workdir.path());
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();

    // Evaluation times T0 … T0 + 4031 · 5 min: exactly the recorded points.
    let mut cfg = PrometheusConfig::new(prom.url.clone(), T0, T0 + 14 * DAY - STEP_MS);
    cfg.queries.push(QueryConfig::new("value", r#"{__name__="bench_metric"}"#, "bench/{series}"));
    let source = PrometheusSource::new(cfg).unwrap();

    let mut times = Vec::new();
    let mut points = 0;
    for run in 1..=RUNS {
        let started = Instant::now();
        let frame = runtime.block_on(source.collect(&CancellationToken::new())).unwrap();
        let took = started.elapsed();
        points = frame.len();
        assert_eq!(points, SERIES * POINTS, "every point pulled");
        println!("run {run}: {:.2} s ({} requests so far)", took.as_secs_f64(), source.completed_requests());
        times.push(took);
    }
    times.sort();
    let median = times[RUNS / 2].as_secs_f64();
    println!(
        "pull: {SERIES} series, {points} points, median of {RUNS}: {median:.2} s, {:.0} points/s (target ≤ 20 s)",
        points as f64 / median
    );
    drop(prom);
}
