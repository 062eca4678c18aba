//! `PrometheusSource` against real Prometheus servers (each test starts its
//! own on a free loopback port, in its own temporary directory, and stops it
//! by PID), and against a scripted HTTP server for the retry rules.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use headroom_collect::Error;
use headroom_collect::Source;
use headroom_collect::prometheus::{AuthConfig, Preset, PrometheusConfig, PrometheusSource, QueryConfig, SecretSource};
use headroom_collect::resample::{ResampleConfig, resample_frame};
use headroom_core::{SampleFrame, SeriesData, SeriesKey, Span};
use headroom_testing::prometheus::{OpenMetrics, Prometheus, Reply, ScriptedServer, backfill, install_tls};
use headroom_testing::sample::{DAY, T0, load_sample, sample_path, window};
use headroom_testing::{Process, free_port, http_get_status, require_binary};
use tokio_util::sync::CancellationToken;

const MIN: i64 = 60_000;

async fn collect(source: &PrometheusSource) -> Result<SampleFrame, Error> {
    source.collect(&CancellationToken::new()).await
}

fn by_key(frame: &SampleFrame) -> BTreeMap<SeriesKey, SeriesData> {
    frame.series().unwrap().into_iter().map(|s| (s.key.clone(), s)).collect()
}

fn get<'a>(series: &'a BTreeMap<SeriesKey, SeriesData>, entity: &str, metric: &str) -> &'a SeriesData {
    series.get(&SeriesKey::new(entity, metric).unwrap()).unwrap_or_else(|| {
        panic!("no series {entity}:{metric}; got {:?}", series.keys().map(ToString::to_string).collect::<Vec<_>>())
    })
}

/// Recorded series → real TSDB → `query_range` at 60 s (chunked) → the same
/// values on the 5-minute grid as the recorded points themselves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfilled_history_round_trips_through_a_real_prometheus() {
    install_tls();
    let dir = tempfile::tempdir().unwrap();
    let end = T0 + 14 * DAY;

    // Six recorded series, 14 days at 5 min = 4,032 points each.
    let sample = load_sample();
    let picked: Vec<SeriesData> = ["asd/omi-1", "asd/omi-2"]
        .iter()
        .flat_map(|e| ["m1", "m2", "m4"].map(|m| (*e, m)))
        .map(|(e, m)| {
            let s = sample
                .iter()
                .find(|s| s.key.entity == e && s.key.metric == m)
                .unwrap_or_else(|| panic!("{e}:{m} is not in {}", sample_path().display()));
            window(s, T0, end)
        })
        .collect();
    let mut om = OpenMetrics::default();
    om.family("asd_value", "gauge");
    for s in &picked {
        assert_eq!(s.len(), 4032, "{}", s.key);
        let labels = format!(r#"entity="{}",metric="{}""#, s.key.entity, s.key.metric);
        om.series("asd_value", &labels, &s.ts, &s.values);
    }
    let om_path = dir.path().join("recorded.om");
    om.write(&om_path);
    let tsdb = dir.path().join("tsdb");
    let took = backfill(&om_path, &tsdb);
    eprintln!("backfilled 6 × 4032 samples in {took:?}");
    let prom = Prometheus::start(&tsdb, &Prometheus::idle_config(), dir.path());

    // Evaluation times T0, T0 + 1 min, …, end − 1 min: 20,160 points per series,
    // more than one request can hold. Prometheus 2.x looks back 5 min
    // (inclusive) for the latest sample; every evaluation time has the sample
    // of its own 5-minute bin, and stopping one step before `end` keeps the
    // last sample from leaking into a bin after the recorded range.
    let mut cfg = PrometheusConfig::new(prom.url.clone(), T0, end - MIN);
    cfg.step = Span(Duration::from_secs(60));
    for m in ["m1", "m2", "m4"] {
        cfg.queries.push(QueryConfig::new(m, format!(r#"asd_value{{metric="{m}"}}"#), "{entity}"));
    }
    let source = PrometheusSource::new(cfg).unwrap();
    assert_eq!(source.chunks().len(), 3, "20,160 points split at 10,000 per request");
    let frame = collect(&source).await.unwrap();
    // Every series came back in 3 requests (one per chunk).
    assert_eq!(source.completed_requests(), 9, "3 queries × 3 chunks");

    let pulled = by_key(&frame);
    assert_eq!(pulled.len(), picked.len());
    for s in pulled.values() {
        assert_eq!(s.len(), 20_160, "{}", s.key);
        assert!(
            s.ts.iter().enumerate().all(|(i, &t)| t == T0 + i as i64 * MIN),
            "{}: chunk boundaries moved points",
            s.key
        );
    }

    // Both onto the same 5-minute grid with the resampler.
    let recorded = SampleFrame::from_series(&picked).unwrap();
    let cfg = ResampleConfig { step_ms: 5 * MIN, ..Default::default() };
    let want: BTreeMap<SeriesKey, _> =
        resample_frame(&recorded, &cfg).unwrap().into_iter().map(|r| (r.key.clone(), r)).collect();
    let got: BTreeMap<SeriesKey, _> =
        resample_frame(&frame, &cfg).unwrap().into_iter().map(|r| (r.key.clone(), r)).collect();
    assert_eq!(want.keys().collect::<Vec<_>>(), got.keys().collect::<Vec<_>>());
    for (key, w) in &want {
        let g = &got[key];
        assert_eq!(g.grid, w.grid, "{key}");
        let count = |v: &[f64]| v.iter().filter(|x| !x.is_nan()).count();
        assert_eq!(count(&g.values), count(&w.values), "{key}");
        assert_eq!(count(&w.values), 4032, "{key}");
        for (i, (a, b)) in g.values.iter().zip(&w.values).enumerate() {
            assert!((a - b).abs() <= 1e-9, "{key} bin {i}: pulled {a}, recorded {b}");
        }
    }
}

/// Prometheus killed (by PID) in the middle of a pull: the pull fails as a
/// whole, naming the URL and the attempts, and yields no frame.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_killed_mid_pull_fails_the_whole_pull() {
    install_tls();
    let dir = tempfile::tempdir().unwrap();
    let mut prom = Prometheus::start(&dir.path().join("tsdb"), &Prometheus::idle_config(), dir.path());

    // `vector(1)` needs no data. 30 days at 5 min in chunks of 5 points, one
    // at a time: 1,729 requests, far more than can finish before the kill.
    let mut cfg = PrometheusConfig::new(prom.url.clone(), T0, T0 + 30 * DAY);
    cfg.queries.push(QueryConfig::new("one", "vector(1)", "test/one"));
    cfg.max_points_per_request = 5;
    cfg.concurrency = 1;
    cfg.retries = 4;
    cfg.retry_backoff = Span(Duration::from_millis(20));
    let source = Arc::new(PrometheusSource::new(cfg).unwrap());
    let planned = source.planned_requests();
    assert_eq!(planned, 1729);

    let pull = tokio::spawn({
        let source = source.clone();
        async move { source.collect(&CancellationToken::new()).await }
    });
    let started = Instant::now();
    while source.completed_requests() < 1 {
        assert!(started.elapsed() < Duration::from_secs(30), "no request completed in 30 s");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let pid = prom.process.pid();
    prom.process.kill();
    let done = source.completed_requests();
    eprintln!("killed prometheus (pid {pid}) after {done} of {planned} requests");

    let result = tokio::time::timeout(Duration::from_secs(60), pull).await.expect("pull hung").unwrap();
    match result {
        Err(Error::Prometheus { url, why }) => {
            assert_eq!(url, prom.url);
            assert!(why.contains("could not connect after 5 attempts"), "{why}");
            let shown = Error::Prometheus { url, why }.to_string();
            assert!(shown.contains(&prom.url), "{shown}");
        }
        Err(other) => panic!("expected Error::Prometheus, got {other:?}"),
        Ok(frame) => panic!("expected no frame, got {} rows", frame.len()),
    }
    assert!(source.completed_requests() < planned);
}

/// A PromQL syntax error comes back as `Error::PromQl` with Prometheus' own words.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_promql_is_reported_as_promql_error() {
    install_tls();
    let dir = tempfile::tempdir().unwrap();
    let prom = Prometheus::start(&dir.path().join("tsdb"), &Prometheus::idle_config(), dir.path());
    let mut cfg = PrometheusConfig::new(prom.url.clone(), T0, T0 + DAY);
    cfg.queries.push(QueryConfig::new("cpu", "rate(foo[5m]", "host/{instance}"));
    let source = PrometheusSource::new(cfg).unwrap();
    match collect(&source).await {
        Err(Error::PromQl { url, query, error_type, message }) => {
            assert_eq!(url, prom.url);
            assert_eq!(query, "rate(foo[5m]");
            assert_eq!(error_type, "bad_data");
            assert!(message.contains("parse error"), "{message}");
        }
        other => panic!("expected Error::PromQl, got {other:?}"),
    }
}

/// The kubernetes preset's PromQL, run by a real Prometheus on cAdvisor and
/// kube-state-metrics series: containers summed per workload, ReplicaSet pods
/// counted under their Deployment, pod-level and pause-container series left out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_preset_groups_containers_by_workload() {
    install_tls();
    let dir = tempfile::tempdir().unwrap();
    let ts: Vec<i64> = (0..240).map(|i| T0 + i * 15_000).collect(); // 1 h, every 15 s
    let constant = |v: f64| vec![v; ts.len()];
    let counter = |cores: f64| ts.iter().map(|t| 1000.0 + cores * ((t - T0) / 1000) as f64).collect::<Vec<_>>();
    const MIB: f64 = 1_048_576.0;

    let owners = [
        ("shop", "cart-7d9f8b6c5d-abcde", "ReplicaSet", "cart-7d9f8b6c5d"),
        ("shop", "cart-7d9f8b6c5d-fghij", "ReplicaSet", "cart-7d9f8b6c5d"),
        ("shop", "db-0", "StatefulSet", "db"),
        ("kube-system", "node-agent-x2x4z", "DaemonSet", "node-agent"),
        ("shop", "debug", "<none>", "<none>"),
    ];
    // (namespace, pod, container, cores, working-set MiB); container "" is the
    // pod-level cgroup and "POD" the pause container: both must be left out.
    let containers = [
        ("shop", "cart-7d9f8b6c5d-abcde", "cart", 0.25, 100.0),
        ("shop", "cart-7d9f8b6c5d-abcde", "envoy", 0.125, 20.0),
        ("shop", "cart-7d9f8b6c5d-abcde", "", 0.375, 120.0),
        ("shop", "cart-7d9f8b6c5d-abcde", "POD", 0.001, 1.0),
        ("shop", "cart-7d9f8b6c5d-fghij", "cart", 0.5, 110.0),
        ("shop", "db-0", "postgres", 1.0, 1024.0),
        ("kube-system", "node-agent-x2x4z", "agent", 0.05, 30.0),
        ("shop", "debug", "shell", 0.02, 5.0),
    ];
    let mut om = OpenMetrics::default();
    om.family("kube_pod_owner", "gauge");
    for (ns, pod, kind, name) in owners {
        let labels = format!(
            r#"namespace="{ns}",pod="{pod}",owner_kind="{kind}",owner_name="{name}",owner_is_controller="true",job="kube-state-metrics""#
        );
        om.series("kube_pod_owner", &labels, &ts, &constant(1.0));
    }
    om.family("container_cpu_usage_seconds", "counter");
    for (ns, pod, c, cores, _) in containers {
        let labels = format!(r#"namespace="{ns}",pod="{pod}",container="{c}",job="kubelet""#);
        om.series("container_cpu_usage_seconds_total", &labels, &ts, &counter(cores));
    }
    om.family("container_memory_working_set_bytes", "gauge");
    for (ns, pod, c, _, mib) in containers {
        let labels = format!(r#"namespace="{ns}",pod="{pod}",container="{c}",job="kubelet""#);
        om.series("container_memory_working_set_bytes", &labels, &ts, &constant(mib * MIB));
    }
    let om_path = dir.path().join("k8s.om");
    om.write(&om_path);
    let tsdb = dir.path().join("tsdb");
    backfill(&om_path, &tsdb);
    let prom = Prometheus::start(&tsdb, &Prometheus::idle_config(), dir.path());

    let mut cfg = PrometheusConfig::new(prom.url.clone(), T0 + 10 * MIN, T0 + 50 * MIN);
    cfg.presets = vec![Preset::Kubernetes];
    let frame = collect(&PrometheusSource::new(cfg).unwrap()).await.unwrap();
    let series = by_key(&frame);
    let expected = [
        ("k8s/shop/deployment/cart", 0.875, 230.0),
        ("k8s/shop/statefulset/db", 1.0, 1024.0),
        ("k8s/kube-system/daemonset/node-agent", 0.05, 30.0),
        ("k8s/shop/pod/debug", 0.02, 5.0),
    ];
    assert_eq!(series.len(), 2 * expected.len(), "{:?}", series.keys().collect::<Vec<_>>());
    for (entity, cores, mib) in expected {
        let cpu = get(&series, entity, "cpu");
        let memory = get(&series, entity, "memory");
        assert_eq!(cpu.len(), 9, "{entity}: 10 … 50 min every 5 min");
        for v in &cpu.values {
            assert!((v - cores).abs() < 1e-9, "{entity} cpu {v}, expected {cores}");
        }
        for v in &memory.values {
            assert!((v - mib * MIB).abs() < 1e-6, "{entity} memory {v}, expected {}", mib * MIB);
        }
    }
}

/// Live: node-exporter scraped every second; the `node` preset over the last minute.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_preset_pulls_live_node_exporter_metrics() {
    install_tls();
    let dir = tempfile::tempdir().unwrap();
    let exporter_bin = require_binary("prometheus-node-exporter", "prometheus-node-exporter");
    let exporter_port = free_port();
    let target = format!("127.0.0.1:{exporter_port}");
    let mut exporter = Process::spawn(
        &exporter_bin,
        &[format!("--web.listen-address={target}")],
        &dir.path().join("node-exporter.log"),
    );
    let started = Instant::now();
    while http_get_status(exporter_port, "/metrics") != Some(200) {
        assert!(exporter.exited().is_none(), "node exporter exited\n{}", exporter.log_tail());
        assert!(started.elapsed() < Duration::from_secs(30), "node exporter not up\n{}", exporter.log_tail());
        std::thread::sleep(Duration::from_millis(100));
    }
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: node\n    static_configs:\n      - targets: ['{target}']\n"
    );
    let prom = Prometheus::start(&dir.path().join("tsdb"), &config, dir.path());

    // rate() needs two or three scrapes before it answers.
    let client = reqwest::Client::new();
    let started = Instant::now();
    loop {
        let answer: serde_json::Value = client
            .get(format!("{}/api/v1/query", prom.url))
            .query(&[("query", r#"rate(node_cpu_seconds_total{mode!="idle"}[1m])"#)])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if answer["data"]["result"].as_array().is_some_and(|r| !r.is_empty()) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "rate() never answered: {answer}\n{}",
            prom.process.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The pull's end is rounded down to the 5 s step: let one more step pass so
    // it holds at least one evaluation time at which rate() answers.
    tokio::time::sleep(Duration::from_secs(6)).await;

    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let mut cfg = PrometheusConfig::new(prom.url.clone(), 0, 0);
    cfg.presets = vec![Preset::Node];
    cfg.step = Span(Duration::from_secs(5));
    let cfg = cfg.with_range(Duration::from_secs(60), None, now);
    let frame = collect(&PrometheusSource::new(cfg).unwrap()).await.unwrap();
    let series = by_key(&frame);
    let entity = format!("host/{target}");
    let cpu = get(&series, &entity, "cpu");
    let memory = get(&series, &entity, "memory");
    assert!(!cpu.is_empty() && !memory.is_empty());
    assert!(cpu.values.iter().all(|v| v.is_finite() && *v >= 0.0), "{:?}", cpu.values);
    assert!(cpu.values.iter().any(|v| *v > 0.0), "cores busy: {:?}", cpu.values);
    assert!(memory.values.iter().all(|v| *v > 1_048_576.0), "bytes used: {:?}", memory.values);
    drop(prom);
    exporter.kill();
}

// ---------------------------------------------------------------------------
// A scripted HTTP/1.1 server, for the retry rules.
// ---------------------------------------------------------------------------

fn matrix_body() -> String {
    format!(
        r#"{{"status":"success","data":{{"resultType":"matrix","result":[{{"metric":{{"instance":"a"}},"values":[[{},"0.5"],[{},"0.75"],[{},"1"]]}}]}}}}"#,
        T0 / 1000,
        T0 / 1000 + 60,
        T0 / 1000 + 120
    )
}

/// Serves `replies` in order (the last one repeats). Returns the base URL and the request heads seen.
fn scripted_server(replies: Vec<Reply>) -> (String, Arc<Mutex<Vec<String>>>) {
    let server = ScriptedServer::replies(replies);
    (server.url, server.seen)
}

fn scripted_config(url: &str) -> PrometheusConfig {
    let mut cfg = PrometheusConfig::new(url, T0, T0 + 2 * MIN);
    cfg.step = Span(Duration::from_secs(60));
    cfg.retry_backoff = Span(Duration::from_millis(50));
    cfg.queries.push(QueryConfig::new("cpu", "up", "host/{instance}"));
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_and_rate_limits_are_retried_honouring_retry_after() {
    install_tls();
    let (url, seen) = scripted_server(vec![
        Reply::answer("503 Service Unavailable", "", "overloaded"),
        Reply::answer("429 Too Many Requests", "Retry-After: 1\r\n", "slow down"),
        Reply::answer("200 OK", "", &matrix_body()),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "tok-3141\n").unwrap();
    let mut cfg = scripted_config(&url);
    cfg.auth = Some(AuthConfig::Bearer { token: SecretSource::File(token) });
    let source = PrometheusSource::new(cfg).unwrap();
    assert!(!format!("{source:?}").contains("tok-3141"));

    let started = Instant::now();
    let frame = collect(&source).await.unwrap();
    let took = started.elapsed();
    let series = by_key(&frame);
    let cpu = get(&series, "host/a", "cpu");
    assert_eq!(cpu.ts, vec![T0, T0 + MIN, T0 + 2 * MIN]);
    assert_eq!(cpu.values, vec![0.5, 0.75, 1.0]);

    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 3, "503, 429, 200");
    assert!(took >= Duration::from_secs(1), "Retry-After: 1 was not honoured ({took:?})");
    for head in seen.iter() {
        let line = head.lines().next().unwrap();
        assert_eq!(line, "GET /api/v1/query_range?query=up&start=1704067200&end=1704067320&step=60 HTTP/1.1");
        assert!(head.to_ascii_lowercase().contains("authorization: bearer tok-3141"), "{head}");
    }
}

/// Captured log output.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Debug logs say what each request and retry did, and never hold the credentials.
#[tokio::test(flavor = "current_thread")]
async fn logs_describe_requests_without_secrets() {
    install_tls();
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let (url, _seen) = scripted_server(vec![
        Reply::answer("503 Service Unavailable", "", "overloaded"),
        Reply::answer("200 OK", "", &matrix_body()),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let password = dir.path().join("password");
    std::fs::write(&password, "pw-2718\n").unwrap();
    let mut cfg = scripted_config(&url);
    cfg.auth = Some(AuthConfig::Basic { username: "me".into(), password: SecretSource::File(password) });
    collect(&PrometheusSource::new(cfg).unwrap()).await.unwrap();

    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("prometheus query_range"), "{logs}");
    assert!(logs.contains("query=queries[0]") && logs.contains("attempt=2"), "{logs}");
    assert!(logs.contains("retrying") && logs.contains("HTTP 503"), "{logs}");
    assert!(logs.contains("status=200"), "{logs}");
    // Neither the password nor the basic-auth header (base64 of me:pw-2718) appears.
    assert!(!logs.contains("pw-2718") && !logs.contains("bWU6cHctMjcxOA"), "{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_errors_are_not_retried() {
    install_tls();
    let body = r#"{"status":"error","errorType":"bad_data","error":"invalid parameter \"query\": 1:6: parse error: unexpected end of input"}"#;
    let (url, seen) = scripted_server(vec![Reply::answer("400 Bad Request", "", body)]);
    let source = PrometheusSource::new(scripted_config(&url)).unwrap();
    match collect(&source).await {
        Err(Error::PromQl { error_type, message, .. }) => {
            assert_eq!(error_type, "bad_data");
            assert!(message.contains("parse error: unexpected end of input"), "{message}");
        }
        other => panic!("expected Error::PromQl, got {other:?}"),
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(seen.lock().unwrap().len(), 1, "a 400 is not retried");

    // A 401 without a Prometheus body: one request, a hint, and no secret in the message.
    let (url, seen) = scripted_server(vec![Reply::answer("401 Unauthorized", "", "bad token")]);
    let mut cfg = scripted_config(&url);
    cfg.auth = Some(AuthConfig::Basic { username: "me".into(), password: SecretSource::Env("CARGO_PKG_NAME".into()) });
    let err = collect(&PrometheusSource::new(cfg).unwrap()).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::Prometheus { .. }), "{err:?}");
    assert!(text.contains("401") && text.contains("check prometheus.auth"), "{text}");
    assert!(!text.contains("headroom-collect") && !format!("{err:?}").contains("headroom-collect"), "{text}");
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_server_errors_give_up_after_the_retries() {
    install_tls();
    let body = r#"{"status":"error","errorType":"timeout","error":"query timed out in expression evaluation"}"#;
    let (url, seen) = scripted_server(vec![Reply::answer("503 Service Unavailable", "", body)]);
    let mut cfg = scripted_config(&url);
    cfg.retries = 2;
    match collect(&PrometheusSource::new(cfg).unwrap()).await {
        Err(Error::Prometheus { url: u, why }) => {
            assert_eq!(u, url);
            assert!(why.contains("gave up after 3 attempts"), "{why}");
            assert!(why.contains("HTTP 503 Service Unavailable: timeout: query timed out"), "{why}");
        }
        other => panic!("expected Error::Prometheus, got {other:?}"),
    }
    assert_eq!(seen.lock().unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_answers_time_out_and_cancellation_stops_the_pull() {
    install_tls();
    let (url, seen) = scripted_server(vec![Reply::Hang]);
    let mut cfg = scripted_config(&url);
    cfg.timeout = Span(Duration::from_millis(200));
    cfg.retries = 1;
    let err = collect(&PrometheusSource::new(cfg.clone()).unwrap()).await.unwrap_err().to_string();
    assert!(err.contains("within the timeout of 200ms after 2 attempts"), "{err}");
    assert_eq!(seen.lock().unwrap().len(), 2);

    cfg.timeout = Span(Duration::from_secs(30));
    let source = PrometheusSource::new(cfg).unwrap();
    let cancel = CancellationToken::new();
    let started = Instant::now();
    let (result, ()) = tokio::join!(source.collect(&cancel), async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        cancel.cancel();
    });
    assert!(matches!(result, Err(Error::Cancelled)), "{result:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
}
