//! `headroom collect prometheus` against a real Prometheus: a stopped server
//! mid-pull fails the command and leaves the store untouched.

use std::process::{Command, Stdio};
use std::time::Duration;

use headroom_testing::prometheus::{OpenMetrics, Prometheus, backfill};
use headroom_testing::sample::{DAY, T0, load_sample, window};

#[test]
fn collect_prometheus_pulls_recorded_history_into_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let sample = load_sample();
    let mut om = OpenMetrics::default();
    om.family("asd_value", "gauge");
    for m in ["m1", "m2"] {
        let s = sample.iter().find(|s| s.key.entity == "asd/omi-1" && s.key.metric == m).unwrap();
        let s = window(s, T0, T0 + 2 * DAY);
        om.series("asd_value", &format!(r#"entity="asd/omi-1",metric="{m}""#), &s.ts, &s.values);
    }
    om.write(&dir.path().join("in.om"));
    backfill(&dir.path().join("in.om"), &dir.path().join("tsdb"));
    let prom = Prometheus::start(&dir.path().join("tsdb"), &Prometheus::idle_config(), dir.path());
    let store = dir.path().join("store");

    let out = Command::new(env!("CARGO_BIN_EXE_headroom"))
        .args([
            "collect",
            "prometheus",
            "--url",
            &prom.url,
            "--query",
            "value=asd_value",
            "--entity",
            "{entity}/{metric}",
        ])
        .args(["--range", "2d", "--end", "2024-01-02T23:55:00Z", "--step", "5m", "--output", "json"])
        .arg("--store")
        .arg(&store)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("stored 1152 samples of 2 series"), "{stderr}");

    let listing = Command::new(env!("CARGO_BIN_EXE_headroom"))
        .arg("inspect")
        .arg(&store)
        .args(["--output", "json"])
        .output()
        .unwrap();
    let rows: serde_json::Value = serde_json::from_slice(&listing.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    for r in rows {
        assert_eq!(r["points"], 576, "{r}");
        assert_eq!(r["first"], "2024-01-01T00:00:00Z", "{r}");
        assert_eq!(r["last"], "2024-01-02T23:55:00Z", "{r}");
        assert_eq!(r["repairs"], 0, "{r}");
    }
}

#[test]
fn prometheus_stopped_mid_pull_fails_and_writes_nothing_to_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let mut prom = Prometheus::start(&dir.path().join("tsdb"), &Prometheus::idle_config(), dir.path());
    let store = dir.path().join("store");

    // `vector(1)` needs no data; 60 days at 5 min, 2 points per request, one
    // request at a time: 8,641 requests, seconds of work.
    let mut cli = Command::new(env!("CARGO_BIN_EXE_headroom"))
        .args(["collect", "prometheus", "--url", &prom.url, "--query", "one=vector(1)", "--entity", "test/one"])
        .args(["--range", "60d", "--end", "2024-03-01T00:00:00Z", "--step", "5m"])
        .args(["--max-points-per-request", "2", "--concurrency", "1", "--retries", "2"])
        .arg("--store")
        .arg(&store)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    assert!(cli.try_wait().unwrap().is_none(), "the pull finished before Prometheus could be stopped");
    prom.process.kill();

    let out = cli.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a cut pull must fail:\n{stderr}");
    assert!(stderr.contains(&format!("prometheus at {}", prom.url)), "{stderr}");
    assert!(stderr.contains("could not connect after 3 attempts"), "{stderr}");
    let written: Vec<_> = walk(&store);
    assert!(written.is_empty(), "nothing may reach the store, found {written:?}");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    entries
        .flat_map(|e| {
            let p = e.unwrap().path();
            if p.is_dir() { walk(&p) } else { vec![p] }
        })
        .collect()
}
