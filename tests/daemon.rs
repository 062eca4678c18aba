//! `headroom run` end to end: the real binary, its process supervisor with
//! real children, its store, audit log and HTTP endpoint.

use std::time::Duration;

use headroom_e2e::{
    Daemon, WORKER, assert_intent_then_success, children, common_config, files_source, get, recorded_cpu, request,
    wait_for,
};
use nix::sys::signal::Signal;

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
    assert_eq!(children(pid, "sleep").len(), 1, "one instance supervised at start");

    // The p90 of the daily peak two hours ahead crosses 0.8 cores: scaled out, in enforce mode.
    let decision = daemon.wait_for_scale_out(Duration::from_secs(60));
    let replicas = decision["decision"]["action"]["replicas"].as_u64().unwrap();
    assert!(replicas >= 2, "{decision}");
    assert_eq!(decision["decision"]["mode"], "enforce", "{decision}");
    assert_eq!(decision["executed"]["outcome"]["status"], "succeeded", "{decision}");
    assert!(decision["decision"]["reason"].as_str().unwrap().contains("p90"), "explained: {decision}");
    let id = decision["decision"]["id"].as_str().unwrap().to_owned();
    wait_for("the new instances", Duration::from_secs(10), || {
        let n = children(pid, "sleep").len() as u64;
        if n == replicas { Ok(()) } else { Err(format!("{n} instances")) }
    });

    // In the audit log: the intent before the outcome.
    assert_intent_then_success(&d.join("audit.jsonl"), &id);

    // Counted on /metrics.
    let metrics = get(port, "/metrics").unwrap().body;
    assert!(metrics.contains(r#"headroom_actions_total{action="scale",outcome="succeeded"} 1"#), "{metrics}");
    assert!(metrics.contains(r#"headroom_config_last_reload_successful 1"#), "{metrics}");
    // The health check's score of the forecasts, per target and model.
    assert!(metrics.contains(r#"headroom_forecast_coverage{target="worker",model="snaive-daily"}"#), "{metrics}");
    let forecasts = request(port, "GET", "/api/v1/forecasts", &[]).unwrap().body;
    for path in ["p10", "p50", "p90", "p95", "p99"] {
        assert!(forecasts.contains(&format!("\"{path}\"")), "{path} missing: {forecasts}");
    }

    // SIGTERM: not ready, children stopped, exit 0, nothing carried out twice.
    daemon.signal(Signal::SIGTERM);
    let status = daemon.wait(Duration::from_secs(30));
    assert!(status.success(), "{status:?}\n{}", daemon.log());
    assert!(children(pid, "sleep").is_empty(), "supervised children left behind");
    let audit = std::fs::read_to_string(d.join("audit.jsonl")).unwrap();
    assert_eq!(audit.lines().filter(|l| l.contains(&id)).count(), 2, "{audit}");
    assert!(daemon.log().contains("headroom daemon stopped"), "{}", daemon.log());
}
