//! `headroom run` end to end: the real binary, its process supervisor with
//! real children, its store, audit log and HTTP endpoint.

use std::time::Duration;

use headroom_e2e::{Daemon, WORKER, common_config, files_source, get, recorded_cpu, request, wait_for};
use nix::sys::signal::Signal;

/// The pids of the daemon's children running `sleep`.
fn sleepers(daemon: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        // pid (comm) state ppid …
        let Some((comm, rest)) = stat.split_once(") ") else { continue };
        let ppid = rest.split_whitespace().nth(1).and_then(|p| p.parse::<u32>().ok());
        if comm.ends_with("(sleep") && ppid == Some(daemon) {
            out.push(pid);
        }
    }
    out
}

#[test]
fn the_daemon_scales_a_supervised_process_before_its_predicted_peak_and_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    recorded_cpu(&d.join("cpu.csv"), "proc/worker");
    let port = headroom_e2e::free_port();
    let config = d.join("headroom.toml");
    let text = files_source(&[&d.join("cpu.csv")]) + &common_config(d, port, "") + WORKER;
    std::fs::write(&config, text).unwrap();

    let mut daemon = Daemon::start(&config, port, d, true);
    let pid = daemon.child.id();
    // Alive at once; ready once it has collected and forecast.
    wait_for("/healthz", Duration::from_secs(30), || match get(port, "/healthz") {
        Ok(r) if r.status == 200 => Ok(()),
        other => Err(format!("{other:?}\n{}", daemon.log())),
    });
    wait_for("/readyz", Duration::from_secs(60), || match get(port, "/readyz") {
        Ok(r) if r.status == 200 => Ok(()),
        other => Err(format!("{other:?}\n{}", daemon.log())),
    });
    assert_eq!(sleepers(pid).len(), 1, "one instance supervised at start");

    // The p90 of the daily peak two hours ahead crosses 0.8 cores: scaled out, in enforce mode.
    let decision = wait_for("a scale-out on /api/v1/decisions", Duration::from_secs(60), || {
        let r = get(port, "/api/v1/decisions").map_err(|e| e.to_string())?;
        let doc: serde_json::Value = serde_json::from_str(&r.body).map_err(|e| format!("{e}: {}", r.body))?;
        doc["decisions"]
            .as_array()
            .and_then(|v| v.iter().find(|d| d["decision"]["action"]["type"] == "scale_to").cloned())
            .ok_or_else(|| format!("{}\n{}", r.body, daemon.log()))
    });
    let replicas = decision["decision"]["action"]["replicas"].as_u64().unwrap();
    assert!(replicas >= 2, "{decision}");
    assert_eq!(decision["decision"]["mode"], "enforce", "{decision}");
    assert_eq!(decision["executed"]["outcome"]["status"], "succeeded", "{decision}");
    assert!(decision["decision"]["reason"].as_str().unwrap().contains("p90"), "explained: {decision}");
    let id = decision["decision"]["id"].as_str().unwrap().to_owned();
    wait_for("the new instances", Duration::from_secs(10), || {
        let n = sleepers(pid).len() as u64;
        if n == replicas { Ok(()) } else { Err(format!("{n} instances")) }
    });

    // In the audit log: the intent before the outcome.
    let audit = std::fs::read_to_string(d.join("audit.jsonl")).unwrap();
    let ours: Vec<&str> = audit.lines().filter(|l| l.contains(&id)).collect();
    assert_eq!(ours.len(), 2, "intent and outcome of {id}:\n{audit}");
    assert!(ours[0].contains("intent") && ours[1].contains("succeeded"), "{ours:?}");

    // Counted on /metrics.
    let metrics = get(port, "/metrics").unwrap().body;
    assert!(metrics.contains(r#"headroom_actions_total{action="scale",outcome="succeeded"} 1"#), "{metrics}");
    assert!(metrics.contains(r#"headroom_config_last_reload_successful 1"#), "{metrics}");
    // The health check's score of the forecasts, per target and model.
    assert!(metrics.contains(r#"headroom_forecast_coverage{target="worker",model="snaive-daily"}"#), "{metrics}");
    assert!(request(port, "GET", "/api/v1/forecasts", &[]).unwrap().body.contains("\"p90\""));

    // SIGTERM: not ready, children stopped, exit 0, nothing carried out twice.
    daemon.signal(Signal::SIGTERM);
    let status = daemon.wait(Duration::from_secs(30));
    assert!(status.success(), "{status:?}\n{}", daemon.log());
    assert!(sleepers(pid).is_empty(), "supervised children left behind");
    let audit = std::fs::read_to_string(d.join("audit.jsonl")).unwrap();
    assert_eq!(audit.lines().filter(|l| l.contains(&id)).count(), 2, "{audit}");
    assert!(daemon.log().contains("headroom daemon stopped"), "{}", daemon.log());
}
