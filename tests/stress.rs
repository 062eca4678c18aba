//! `headroom run` on real metrics: a Prometheus backfilled by `promtool` with
//! three days of a worker's CPU (a daily peak that comes again two hours
//! from now) and scraping a live node-exporter, the host source sampling the
//! worker itself, and the worker a real CPU burner (`stress-ng`) under the
//! daemon's own supervisor. In enforce mode the daemon scales it out before
//! the peak, and says so in the audit log, on the API and on `/metrics`.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use headroom_e2e::{
    Daemon, Process, Prometheus, assert_intent_then_success, backfill, children, free_port, get, now_ms,
    require_binary, wait_for,
};

const LIMIT: Duration = Duration::from_secs(90);
const STEP_S: i64 = 300;

/// Three days of `worker_cpu_cores{job="stress-ng"}` up to now, every 5
/// minutes: 0.3 cores, but for a daily peak of 1.2 two hours from now.
fn openmetrics(path: &Path) {
    let now_s = now_ms() / 1000;
    let end = now_s - now_s.rem_euclid(STEP_S);
    let peak_at = now_s + 2 * 3600;
    let mut text = String::from("# TYPE worker_cpu_cores gauge\n");
    let mut t = end - 3 * 86_400;
    while t <= end {
        let d = (t - peak_at).rem_euclid(86_400).min((peak_at - t).rem_euclid(86_400)) as f64 / 3600.0;
        writeln!(text, "worker_cpu_cores{{job=\"stress-ng\"}} {:.4} {t}", 0.3 + 0.9 * (-d * d / 2.0).exp()).unwrap();
        t += STEP_S;
    }
    text.push_str("# EOF\n");
    std::fs::write(path, text).unwrap();
}

#[test]
fn the_daemon_scales_a_stressed_supervised_worker_out_before_the_peak_prometheus_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    require_binary("stress-ng", "stress-ng");
    openmetrics(&d.join("history.om"));
    backfill(&d.join("history.om"), &d.join("prometheus-data"));
    let node_port = free_port();
    let _node = Process::spawn(
        &require_binary("prometheus-node-exporter", "prometheus-node-exporter"),
        &[format!("--web.listen-address=127.0.0.1:{node_port}")],
        &d.join("node-exporter.log"),
    );
    let prom = Prometheus::start_with(
        &d.join("prometheus-data"),
        &format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: node\n    static_configs:\n      - targets: ['127.0.0.1:{node_port}']\n"
        ),
        d,
        &[],
    );
    let port = free_port();
    let config = d.join("headroom.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[[sources]]
type = "prometheus"
url = "http://127.0.0.1:{prom}"
step = "5m"
presets = ["node"]
queries = [{{ metric = "cpu", promql = "worker_cpu_cores", entity = "proc/{{job}}" }}]

[[sources]]
type = "host"
interval = "1s"
processes = ["stress-ng"]

[store]
path = "{store}"
backfill = "4d"

[audit]
path = "{audit}"

[forecast]
model = "snaive-daily"

[schedule]
collect = "2s"
forecast = "3s"
act = "1s"

[daemon]
listen = "127.0.0.1:{port}"

[[processes]]
name = "stress-ng"
command = ["stress-ng", "--cpu", "1", "--timeout", "600s", "--quiet"]
stop_timeout = "5s"

[[targets]]
name = "worker"
platform = "process"
entity = "proc/stress-ng"
metric = "cpu"
capacity = 1.0
threshold = 0.8
replicas = 1
max_replicas = 4
mode = "enforce"
"#,
            prom = prom.port,
            store = d.join("store").display(),
            audit = d.join("audit.jsonl").display(),
        ),
    )
    .unwrap();

    let mut daemon = Daemon::start(&config, port, d, true);
    wait_for("/readyz", LIMIT, || match get(port, "/readyz") {
        Ok(r) if r.status == 200 => Ok(()),
        other => Err(format!("{other:?}\n{}", daemon.log())),
    });
    // Both sources wrote: the backfilled worker and the live node-exporter.
    wait_for("the worker's history and node-exporter's series in the store", LIMIT, || {
        let has = |p: &str| d.join("store").join(p).exists();
        if has("proc/stress-ng/cpu.parquet") && has("host") { Ok(()) } else { Err(daemon.log()) }
    });
    let decision = daemon.wait_for_scale_out(LIMIT);
    assert_eq!(
        (&decision["decision"]["mode"], &decision["executed"]["outcome"]["status"]),
        (&"enforce".into(), &"succeeded".into()),
        "{decision}"
    );
    let replicas = decision["decision"]["action"]["replicas"].as_u64().unwrap();
    assert!(replicas >= 2, "{decision}");
    let reason = decision["decision"]["reason"].as_str().unwrap();
    assert!(reason.contains("p90 of proc/stress-ng:cpu") && reason.contains("goes above 0.8"), "{reason}");
    let id = decision["decision"]["id"].as_str().unwrap().to_owned();
    // The supervisor runs that many stress-ng instances now.
    let instances = |pid: u32| children(pid, "stress-ng").len() as u64;
    let pid = daemon.child.id();
    wait_for("the scaled-out instances", LIMIT, || {
        let n = instances(pid);
        if n == replicas { Ok(()) } else { Err(format!("{n} instances")) }
    });
    assert_intent_then_success(&d.join("audit.jsonl"), &id);
    let metrics = get(port, "/metrics").unwrap().body;
    assert!(metrics.contains(r#"headroom_actions_total{action="scale",outcome="succeeded"} 1"#), "{metrics}");
    daemon.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(daemon.wait(LIMIT).success(), "{}", daemon.log());
    assert_eq!(instances(pid), 0, "stress-ng left running");
}
