//! `headroom run` and Prometheus, both ways: a real Prometheus scrapes the
//! daemon's `/metrics` (and `promtool check metrics` accepts it), and the
//! daemon's Prometheus source sends rotated credentials with its next pull
//! (to a scripted API that records every bearer token, and to a real
//! Prometheus that checks basic auth itself).

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use headroom_e2e::{
    Prometheus, common_config, files_source, get, recorded_cpu, request, require_binary, start_daemon_on_free_port,
    wait_for,
};
use headroom_testing::prometheus::{Reply, ScriptedServer};
use serde_json::Value;

/// Every wait: generous, for a busy 2-core machine.
const LIMIT: Duration = Duration::from_secs(60);

/// `GET path` with a bearer token.
fn get_as(port: u16, path: &str, token: &str) -> headroom_e2e::Response {
    request(port, "GET", path, &[("Authorization", &format!("Bearer {token}"))]).unwrap()
}

/// Replaces `path` with `text` as secret managers do: a new file renamed over the old one.
fn rotate(path: &Path, text: &str) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A JSON answer of Prometheus' HTTP API (`GET path` on `port`, PromQL URL-encoded by the caller).
fn prometheus_api(port: u16, path: &str) -> Result<Value, String> {
    let r = get(port, path).map_err(|e| e.to_string())?;
    serde_json::from_str(&r.body).map_err(|e| format!("{e}: {r:?}"))
}

#[test]
fn a_real_prometheus_scrapes_the_daemon_and_promtool_accepts_its_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    recorded_cpu(&d.join("web.csv"), "k8s/shop/deployment/web");
    // The daemon requires a bearer token; Prometheus sends it from the same file.
    let token = d.join("token");
    std::fs::write(&token, "scrape-token\n").unwrap();
    let config = d.join("headroom.toml");
    let write_config = |port: u16| {
        let text = files_source(&[&d.join("web.csv")])
            + &common_config(d, port, &format!("bearer_token_file = {:?}", token.display().to_string()))
            + r#"
[[targets]]
name = "web"
platform = "kubernetes"
entity = "k8s/shop/deployment/web"
metric = "cpu"
capacity = 1.0
replicas = 2
"#;
        std::fs::write(&config, text).unwrap();
    };
    let daemon = start_daemon_on_free_port(&config, d, false, write_config);
    let port = daemon.port;
    wait_for("/readyz", LIMIT, || match request(port, "GET", "/readyz", &[("Authorization", "Bearer scrape-token")]) {
        Ok(r) if r.status == 200 => Ok(()),
        other => Err(format!("{other:?}\n{}", daemon.log())),
    });

    let prom = Prometheus::start_with(
        &d.join("prometheus-data"),
        &format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: headroom\n    \
             authorization:\n      type: Bearer\n      credentials_file: {}\n    static_configs:\n      \
             - targets: ['127.0.0.1:{port}']\n",
            token.display()
        ),
        d,
        &[],
    );
    wait_for("Prometheus to scrape the daemon", LIMIT, || {
        let doc = prometheus_api(prom.port, "/api/v1/targets")?;
        let target = doc["data"]["activeTargets"]
            .as_array()
            .and_then(|t| t.iter().find(|t| t["labels"]["job"] == "headroom"))
            .ok_or_else(|| format!("no headroom target: {doc}"))?;
        if target["health"] == "up" { Ok(()) } else { Err(format!("{target}\n{}", prom.log())) }
    });
    let runs = wait_for("headroom_job_runs_total in Prometheus", LIMIT, || {
        let doc = prometheus_api(prom.port, "/api/v1/query?query=headroom_job_runs_total")?;
        match doc["data"]["result"].as_array() {
            Some(r) if !r.is_empty() => Ok(r.clone()),
            _ => Err(doc.to_string()),
        }
    });
    let ok: Vec<&Value> = runs.iter().filter(|s| s["metric"]["result"] == "ok").collect();
    assert!(!ok.is_empty(), "{runs:?}");
    for s in &ok {
        assert_eq!(s["metric"]["job"], "headroom", "the scrape job's label: {s}");
        assert!(["collect", "forecast", "act"].contains(&s["metric"]["task"].as_str().unwrap_or("")), "{s}");
        let v: f64 = s["value"][1].as_str().unwrap().parse().unwrap();
        assert!(v >= 1.0, "{s}");
    }

    // What `curl …/metrics | promtool check metrics` says.
    let body = get_as(port, "/metrics", "scrape-token").body;
    assert!(body.contains("# TYPE headroom_job_runs_total counter"), "{body}");
    let mut promtool = Command::new(require_binary("promtool", "prometheus"))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    promtool.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}\n{}{}\n--- body ---\n{body}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A scripted Prometheus HTTP API on a free loopback port: it answers every
/// `query_range` with one series (a point at the asked start) and records
/// the `Authorization` header of each request, in order.
struct ScriptedApi(ScriptedServer);

const QUERY_RANGE: &str = "GET /api/v1/query_range?";

impl ScriptedApi {
    fn start() -> Self {
        Self(ScriptedServer::start(|_, head| {
            let first = head.lines().next().unwrap_or_default();
            if !first.starts_with(QUERY_RANGE) {
                return Reply::Close;
            }
            let start = first
                .split(['?', '&', ' '])
                .find_map(|p| p.strip_prefix("start="))
                .and_then(|s| s.parse::<f64>().ok())
                .unwrap_or(0.0);
            let body = format!(
                r#"{{"status":"success","data":{{"resultType":"matrix","result":[{{"metric":{{"instance":"scripted"}},"values":[[{start},"1"]]}}]}}}}"#
            );
            Reply::answer("200 OK", "", &body)
        }))
    }

    fn port(&self) -> u16 {
        self.0.port
    }

    /// The `Authorization` header of each `query_range` request so far ("" when it had none).
    fn seen(&self) -> Vec<String> {
        let heads = self.0.seen.lock().unwrap();
        let auth = |head: &String| {
            let mut auth = String::new();
            for line in head.lines().skip(1) {
                if let Some((k, v)) = line.split_once(':')
                    && k.eq_ignore_ascii_case("authorization")
                {
                    auth = v.trim().to_owned();
                }
            }
            auth
        };
        heads.iter().filter(|h| h.starts_with(QUERY_RANGE)).map(auth).collect()
    }
}

/// A headroom.toml whose one source is Prometheus at `url` (`promql` naming
/// its series `entity`) with `auth` (a TOML inline table), pulled every
/// second, an hour back the first time.
fn prometheus_source_config(d: &Path, port: u16, url: &str, promql: &str, entity: &str, auth: &str) -> String {
    format!(
        r#"
[[sources]]
type = "prometheus"
url = "{url}"
step = "1m"
retries = 0
queries = [{{ metric = "cpu", promql = "{promql}", entity = "{entity}" }}]
auth = {auth}

[store]
path = {store:?}
backfill = "1h"

[audit]
path = {audit:?}

[forecast]
model = "snaive-daily"

[schedule]
collect = "1s"
forecast = "1h"
act = "1h"

[daemon]
listen = "127.0.0.1:{port}"
"#,
        store = d.join("store").display().to_string(),
        audit = d.join("audit.jsonl").display().to_string(),
    )
}

#[test]
fn a_rotated_bearer_token_file_is_sent_by_the_next_pull_and_the_old_token_never_again() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let api = ScriptedApi::start();
    let token = d.join("prometheus-token");
    std::fs::write(&token, "token-a\n").unwrap();
    let config = d.join("headroom.toml");
    let auth = format!("{{ type = \"bearer\", token = {{ file = {:?} }} }}", token.display().to_string());
    let url = format!("http://127.0.0.1:{}", api.port());
    let daemon = start_daemon_on_free_port(&config, d, false, |port| {
        std::fs::write(&config, prometheus_source_config(d, port, &url, "up", "host/{instance}", &auth)).unwrap();
    });
    let port = daemon.port;

    wait_for("a pull with token A", LIMIT, || {
        let seen = api.seen();
        if seen.iter().any(|a| a == "Bearer token-a") { Ok(()) } else { Err(format!("{seen:?}\n{}", daemon.log())) }
    });
    rotate(&token, "token-b\n");
    let first_b = wait_for("a pull with token B", LIMIT, || {
        let seen = api.seen();
        seen.iter().position(|a| a == "Bearer token-b").ok_or_else(|| format!("{seen:?}\n{}", daemon.log()))
    });
    let seen = wait_for("three more pulls", LIMIT, || {
        let seen = api.seen();
        if seen.len() > first_b + 3 { Ok(seen) } else { Err(format!("{seen:?}\n{}", daemon.log())) }
    });
    assert!(seen[..first_b].iter().all(|a| a == "Bearer token-a"), "{seen:?}");
    assert!(seen[first_b..].iter().all(|a| a == "Bearer token-b"), "token A after B: {seen:?}");
    // The pulls were stored: the collect job succeeds.
    wait_for("a successful collection", LIMIT, || {
        let jobs: Value = serde_json::from_str(&get(port, "/api/v1/targets").unwrap().body).unwrap();
        let c = &jobs["jobs"]["collect"];
        if c["last_success"].is_string() && c["last_error"].is_null() { Ok(()) } else { Err(jobs.to_string()) }
    });
    let log = daemon.log();
    assert!(!log.contains("token-a") && !log.contains("token-b"), "a token reached the log:\n{log}");
}

/// bcrypt (cost 4) of `password-a` and `password-b`, for Prometheus' web config.
const HASH_A: &str = "$2b$04$MpR1ebKGyas5a1kGde3gCepBFIzfl3FoMCVGsy13tPOjVZHM3cLCq";
const HASH_B: &str = "$2b$04$QpMskbYModV8xoB65UkyRe.nYRIs5syi4nNeNKVliowdtXgLgkVAu";

/// Prometheus' web config: `headroom` may log in with the password of `hash`.
fn web_config(hash: &str) -> String {
    format!("basic_auth_users:\n  headroom: {hash}\n")
}

#[test]
fn a_rotated_password_file_is_used_by_the_next_pull_from_a_real_prometheus() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Prometheus re-reads its web config at every request: it starts open (to see it ready) and then requires A.
    let web = d.join("web.yml");
    std::fs::write(&web, "").unwrap();
    let prom = Prometheus::start_with(
        &d.join("prometheus-data"),
        "global:\n  scrape_interval: 1m\nscrape_configs: []\n",
        d,
        &[format!("--web.config.file={}", web.display())],
    );
    rotate(&web, &web_config(HASH_A));
    wait_for("Prometheus to require a password", LIMIT, || match get(prom.port, "/api/v1/query?query=vector(1)") {
        Ok(r) if r.status == 401 => Ok(()),
        other => Err(format!("{other:?}")),
    });

    let password = d.join("prometheus-password");
    std::fs::write(&password, "password-a\n").unwrap();
    let config = d.join("headroom.toml");
    let auth = format!(
        "{{ type = \"basic\", username = \"headroom\", password = {{ file = {:?} }} }}",
        password.display().to_string()
    );
    let url = format!("http://127.0.0.1:{}", prom.port);
    let daemon = start_daemon_on_free_port(&config, d, false, |port| {
        std::fs::write(&config, prometheus_source_config(d, port, &url, "vector(1)", "host/prometheus", &auth))
            .unwrap();
    });
    let port = daemon.port;
    let collect = || -> Result<Value, String> {
        let r = get(port, "/api/v1/targets").map_err(|e| e.to_string())?;
        let doc: Value = serde_json::from_str(&r.body).map_err(|e| format!("{e}: {r:?}"))?;
        Ok(doc["jobs"]["collect"].clone())
    };
    let pulled = wait_for("a pull with password A", LIMIT, || {
        let c = collect()?;
        if c["last_success"].is_string() && c["last_error"].is_null() { Ok(c) } else { Err(format!("{c}")) }
    });

    // The daemon's file rotates first: Prometheus, still wanting A, refuses the next pull.
    rotate(&password, "password-b\n");
    wait_for("the next pull to send password B (refused)", LIMIT, || {
        let c = collect()?;
        let refused = c["last_error"].as_str().is_some_and(|e| e.contains("401"));
        if refused { Ok(()) } else { Err(format!("{c}\n{}", daemon.log())) }
    });
    // Then Prometheus': pulls succeed again, with B.
    rotate(&web, &web_config(HASH_B));
    wait_for("a pull with password B", LIMIT, || {
        let c = collect()?;
        let ok = c["last_error"].is_null() && c["last_success"] != pulled["last_success"];
        if ok { Ok(()) } else { Err(format!("{c}\n{}", daemon.log())) }
    });
    let log = daemon.log();
    assert!(!log.contains("password-a") && !log.contains("password-b"), "a password reached the log:\n{log}");
}
