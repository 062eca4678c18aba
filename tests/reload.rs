//! `headroom run` reloads its config while it runs: on `POST /-/reload`, on
//! SIGHUP and when the watched file changes (a Kubernetes ConfigMap's
//! symlink swap included); it refuses a bad file with every problem and
//! keeps the config in force; and its own bearer token can be rotated
//! without a restart. The real binary, a files source, real signals.

use std::path::Path;
use std::time::Duration;

use headroom_e2e::{
    Daemon, Response, common_config, files_source, get, recorded_cpu, request, start_daemon_on_free_port, wait_for,
};
use nix::sys::signal::Signal;
use serde_json::Value;

/// Every wait: generous, for a busy 2-core machine.
const LIMIT: Duration = Duration::from_secs(60);

/// Recorded CPU of three deployments, one CSV each, in `dir`.
fn record(dir: &Path) {
    for name in ["web", "api", "db"] {
        recorded_cpu(&dir.join(format!("{name}.csv")), &format!("k8s/shop/deployment/{name}"));
    }
}

/// A whole headroom.toml: the recorded files, a seasonal-naive model, a fast
/// schedule, `[daemon]` with `daemon` added, and one dry-run Kubernetes
/// target per name in `targets` (the daemon runs without `--enforce`, so
/// nothing is asked of any platform).
fn config(dir: &Path, port: u16, daemon: &str, targets: &[&str]) -> String {
    let files: Vec<_> = ["web", "api", "db"].iter().map(|n| dir.join(format!("{n}.csv"))).collect();
    let mut text =
        files_source(&files.iter().map(|p| p.as_path()).collect::<Vec<_>>()) + &common_config(dir, port, daemon);
    for name in targets {
        text.push_str(&format!(
            r#"
[[targets]]
name = "{name}"
platform = "kubernetes"
entity = "k8s/shop/deployment/{name}"
metric = "cpu"
capacity = 1.0
threshold = 0.8
replicas = 2
max_replicas = 4
mode = "dry-run"
"#
        ));
    }
    text
}

/// Replaces `path` the way editors and config tools do: a new file renamed over the old one.
fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// `GET path` with `Authorization: Bearer token` when a token is given.
fn try_get_as(port: u16, path: &str, token: Option<&str>) -> std::io::Result<Response> {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
    request(port, "GET", path, &headers)
}

/// [`try_get_as`] of a daemon known to listen.
fn get_as(port: u16, path: &str, token: Option<&str>) -> Response {
    try_get_as(port, path, token).unwrap()
}

/// `/api/v1/targets` as JSON.
fn targets(d: &Daemon) -> Value {
    let r = get_as(d.port, "/api/v1/targets", None);
    assert_eq!(r.status, 200, "{}", r.body);
    serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{e}: {}", r.body))
}

/// The names of the targets in force.
fn names(doc: &Value) -> Vec<String> {
    doc["targets"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap().to_owned()).collect()
}

/// Waits until the daemon has collected and forecast once.
fn wait_ready(d: &Daemon, token: Option<&str>) {
    wait_for("/readyz", LIMIT, || match try_get_as(d.port, "/readyz", token) {
        Ok(r) if r.status == 200 => Ok(()),
        other => Err(format!("{other:?}\n{}", d.log())),
    });
}

/// The value of `sample` (its name and labels, as written) on `/metrics`.
fn metric(d: &Daemon, sample: &str) -> Option<f64> {
    let body = get_as(d.port, "/metrics", None).body;
    body.lines().find_map(|l| l.strip_prefix(sample)?.strip_prefix(' ')?.trim().parse().ok())
}

/// `POST /-/reload`: its status and JSON answer.
fn post_reload(d: &Daemon) -> (u16, Value) {
    let r = request(d.port, "POST", "/-/reload", &[]).unwrap();
    let doc = serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{e}: {}", r.body));
    (r.status, doc)
}

/// A daemon on a free port whose config at `path` has `daemon_cfg` and the targets `names`.
fn start_with(path: &Path, d: &Path, daemon_cfg: &str, names: &[&str]) -> Daemon {
    start_daemon_on_free_port(path, d, false, |port| {
        std::fs::write(path, config(d, port, daemon_cfg, names)).unwrap();
    })
}

/// Waits until the targets in force are `want`.
fn wait_names(daemon: &Daemon, what: &str, want: &[&str]) {
    wait_for(what, LIMIT, || {
        let n = names(&targets(daemon));
        if n == want { Ok(()) } else { Err(format!("{n:?}\n{}", daemon.log())) }
    });
}

/// Waits until an act job has evaluated target `name` (it has a last sample).
fn wait_evaluated(daemon: &Daemon, name: &str) {
    wait_for(&format!("the act job to evaluate {name}"), LIMIT, || {
        let doc = targets(daemon);
        let t = doc["targets"].as_array().unwrap().iter().find(|t| t["name"] == name).cloned().unwrap();
        if t["status"]["last_sample"].is_string() { Ok(()) } else { Err(format!("{doc}")) }
    });
}

#[test]
fn a_valid_change_applies_at_the_next_job_on_post_and_on_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    record(d);
    let path = d.join("headroom.toml");
    // No file watch: what applies the change is the POST, then the signal.
    let daemon_cfg = "watch_config = false";
    let daemon = start_with(&path, d, daemon_cfg, &["web"]);
    let port = daemon.port;
    wait_ready(&daemon, None);
    assert_eq!(names(&targets(&daemon)), ["web"]);
    let loaded_at = metric(&daemon, "headroom_config_last_reload_success_timestamp_seconds").unwrap();

    // POST /-/reload: 200, both targets in force at once, the new one evaluated by the next act job.
    replace(&path, &config(d, port, daemon_cfg, &["web", "api"]));
    let (status, answer) = post_reload(&daemon);
    assert_eq!((status, &answer), (200, &serde_json::json!({ "reloaded": true })), "{}", daemon.log());
    assert_eq!(names(&targets(&daemon)), ["web", "api"]);
    wait_evaluated(&daemon, "api");
    assert_eq!(metric(&daemon, "headroom_config_last_reload_successful"), Some(1.0));
    let reloaded_at = metric(&daemon, "headroom_config_last_reload_success_timestamp_seconds").unwrap();
    assert!(reloaded_at > loaded_at, "the success time moves on: {loaded_at} → {reloaded_at}");

    // SIGHUP: the same, without an answer; seen on the API.
    replace(&path, &config(d, port, daemon_cfg, &["web", "api", "db"]));
    daemon.signal(Signal::SIGHUP);
    wait_names(&daemon, "the SIGHUP reload", &["web", "api", "db"]);
    wait_evaluated(&daemon, "db");
    let log = daemon.log();
    assert!(log.contains("SIGHUP: reloading the config") && log.matches("config reloaded").count() == 2, "{log}");
}

#[test]
fn an_invalid_change_is_refused_with_every_problem_and_the_old_config_keeps_running() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    record(d);
    let path = d.join("headroom.toml");
    let daemon_cfg = "watch_config = false";
    let daemon = start_with(&path, d, daemon_cfg, &["web"]);
    let port = daemon.port;
    let good = config(d, port, daemon_cfg, &["web"]);
    wait_ready(&daemon, None);
    let loaded_at = metric(&daemon, "headroom_config_last_reload_success_timestamp_seconds").unwrap();

    // Two unusable values: both refused at once, each with its key path and value.
    let bad_values = config(d, port, daemon_cfg, &["web", "api"])
        .replace("mode = \"dry-run\"\n", "mode = \"dry-run\"\nquantile = 1.5\n")
        .replace("model = \"snaive-daily\"", "model = \"prophet\"");
    replace(&path, &bad_values);
    let (status, answer) = post_reload(&daemon);
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["reloaded"], false, "{answer}");
    let problems: Vec<&str> = answer["problems"].as_array().unwrap().iter().map(|p| p.as_str().unwrap()).collect();
    for expected in ["targets[0].quantile = 1.5: ", "targets[1].quantile = 1.5: ", "forecast.model = prophet: "] {
        assert!(problems.iter().any(|p| p.starts_with(expected)), "{expected:?} missing from {problems:#?}");
    }
    assert_eq!(problems.len(), 3, "{problems:#?}");

    // An unknown key: refused with its name and line (the shape is checked before the values).
    let unknown_key = good.replace("threshold = 0.8", "treshold = 0.8");
    replace(&path, &unknown_key);
    let (status, answer) = post_reload(&daemon);
    assert_eq!(status, 400, "{answer}");
    let problems = answer["problems"].as_array().unwrap();
    let line = unknown_key.lines().position(|l| l.starts_with("treshold")).unwrap() + 1;
    assert!(
        problems.len() == 1
            && problems[0].as_str().unwrap().contains("treshold")
            && problems[0].as_str().unwrap().contains(&format!("line {line}")),
        "the unknown key and its line {line}: {answer}"
    );

    // The old config keeps running: same targets, jobs still succeeding.
    assert_eq!(names(&targets(&daemon)), ["web"]);
    let before = targets(&daemon)["jobs"].clone();
    wait_for("every job to succeed again after the refusals", LIMIT, || {
        let jobs = targets(&daemon)["jobs"].clone();
        let moved = ["collect", "forecast", "act"].iter().all(|j| {
            jobs[j]["last_success"].is_string()
                && jobs[j]["last_success"] != before[j]["last_success"]
                && jobs[j]["last_error"].is_null()
        });
        if moved { Ok(()) } else { Err(format!("before {before}\nnow {jobs}")) }
    });
    // Counted and told.
    assert_eq!(metric(&daemon, "headroom_config_last_reload_successful"), Some(0.0));
    assert_eq!(metric(&daemon, r#"headroom_errors_total{kind="reload"}"#), Some(2.0));
    assert_eq!(
        metric(&daemon, "headroom_config_last_reload_success_timestamp_seconds"),
        Some(loaded_at),
        "no successful load since the start"
    );
    let log = daemon.log();
    for expected in
        ["reload refused: targets[0].quantile = 1.5", "reload refused: forecast.model = prophet", "treshold"]
    {
        assert!(log.contains(expected), "{expected:?} not in the log:\n{log}");
    }

    // Fixed: accepted, and the gauge says so.
    replace(&path, &config(d, port, daemon_cfg, &["web", "api"]));
    assert_eq!(post_reload(&daemon).0, 200, "{}", daemon.log());
    assert_eq!(names(&targets(&daemon)), ["web", "api"]);
    assert_eq!(metric(&daemon, "headroom_config_last_reload_successful"), Some(1.0));
}

/// Points `dir/..data` at `dir/<name>` (a new directory holding `headroom.toml`
/// with `text`) and removes the directory it pointed at before, as the kubelet
/// updates a ConfigMap volume: a new symlink renamed over the old one.
fn configmap_update(dir: &Path, name: &str, text: &str) {
    std::fs::create_dir(dir.join(name)).unwrap();
    std::fs::write(dir.join(name).join("headroom.toml"), text).unwrap();
    let old = std::fs::read_link(dir.join("..data")).ok();
    std::os::unix::fs::symlink(name, dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    if let Some(old) = old {
        std::fs::remove_dir_all(dir.join(old)).unwrap();
    }
}

#[test]
fn a_configmap_symlink_swap_is_picked_up_by_the_file_watch() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    record(d);
    // The layout of a mounted ConfigMap: headroom.toml → ..data/headroom.toml, ..data → ..<timestamp>.
    let cm = d.join("configmap");
    let path = cm.join("headroom.toml");
    let daemon_cfg = "watch = \"1s\"";
    let daemon = start_daemon_on_free_port(&path, d, false, |port| {
        let _ = std::fs::remove_dir_all(&cm);
        std::fs::create_dir(&cm).unwrap();
        configmap_update(&cm, "..2026_01_01_00_00_00.000000001", &config(d, port, daemon_cfg, &["web"]));
        std::os::unix::fs::symlink("..data/headroom.toml", &path).unwrap();
    });
    let port = daemon.port;
    wait_ready(&daemon, None);
    assert_eq!(names(&targets(&daemon)), ["web"]);

    // The kubelet's update: no signal, no POST.
    configmap_update(&cm, "..2026_01_01_00_01_00.000000002", &config(d, port, daemon_cfg, &["web", "api"]));
    wait_names(&daemon, "the watch to load the swapped config", &["web", "api"]);
    assert_eq!(metric(&daemon, "headroom_config_last_reload_successful"), Some(1.0));
    let log = daemon.log();
    assert!(log.contains("the config file changed: reloading") && log.contains("config reloaded"), "{log}");
}

#[test]
fn the_daemons_bearer_token_is_required_and_a_rotated_token_applies_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    record(d);
    let token = d.join("token");
    std::fs::write(&token, "token-a\n").unwrap();
    let path = d.join("headroom.toml");
    let daemon_cfg = format!("bearer_token_file = {:?}", token.display().to_string());
    let mut daemon = start_with(&path, d, &daemon_cfg, &["web"]);
    let port = daemon.port;
    let pid = daemon.child.id();
    wait_for("/healthz without a token", LIMIT, || match get(port, "/healthz") {
        Ok(r) if r.status == 200 => Ok(()),
        other => Err(format!("{other:?}\n{}", daemon.log())),
    });
    wait_ready(&daemon, Some("token-a"));

    for path in ["/api/v1/targets", "/metrics", "/readyz", "/api/v1/decisions"] {
        assert_eq!(get_as(port, path, None).status, 401, "{path} without a token");
        assert_eq!(get_as(port, path, Some("token-b")).status, 401, "{path} with a wrong token");
        assert_eq!(get_as(port, path, Some("token-a")).status, 200, "{path} with the token");
    }
    assert_eq!(request(port, "POST", "/-/reload", &[]).unwrap().status, 401, "a reload needs the token too");
    assert_eq!(get(port, "/healthz").unwrap().status, 200);

    // Rotated as a secret manager does (a new file renamed over the old one): no restart.
    std::fs::write(d.join("token.new"), "token-b\n").unwrap();
    std::fs::rename(d.join("token.new"), &token).unwrap();
    wait_for("the rotated token to apply", LIMIT, || {
        let (old, new) = (get_as(port, "/api/v1/targets", Some("token-a")), get_as(port, "/metrics", Some("token-b")));
        if (old.status, new.status) == (401, 200) { Ok(()) } else { Err(format!("old {old:?}, new {new:?}")) }
    });
    assert_eq!(get_as(port, "/metrics", Some("token-a")).status, 401, "the old token stays refused");
    assert_eq!(get_as(port, "/readyz", Some("token-b")).status, 200);
    assert_eq!(get(port, "/healthz").unwrap().status, 200);
    assert!(daemon.child.try_wait().unwrap().is_none(), "still the same process, pid {pid}");
    let log = daemon.log();
    assert!(!log.contains("token-a") && !log.contains("token-b"), "a token reached the log:\n{log}");
}
