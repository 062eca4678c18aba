//! `headroom act` as a user runs it: the shipped sample and config, dry-run,
//! an audit log that makes a second run do nothing again, and `--enforce`
//! refusing what it cannot reach before anything is recorded.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

fn headroom(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_headroom"))
        .args(args)
        .current_dir(repo())
        .env_remove("KUBECONFIG")
        .env("HOME", "/nonexistent")
        .output()
        .unwrap()
}

fn lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn act_records_dry_run_decisions_once_and_enforce_needs_a_reachable_platform() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let log_arg = log.to_str().unwrap();

    // Dry-run (no --enforce): the one decision with an action gets an intent and a dry_run outcome.
    let out = headroom(&["act", "--audit", log_arg, "--output", "json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let executed = doc["executed"].as_array().unwrap();
    let recorded: Vec<_> = executed.iter().filter(|e| !e["outcome"].is_null()).collect();
    assert_eq!(recorded.len(), 1, "{executed:?}");
    assert_eq!(recorded[0]["target"], "checkout");
    assert_eq!(recorded[0]["outcome"]["status"], "dry_run");
    let records = lines(&log);
    assert_eq!(records.len(), 2, "{records:?}");
    assert_eq!((records[0]["kind"].as_str(), records[1]["kind"].as_str()), (Some("intent"), Some("outcome")));
    assert_eq!(records[0]["decision"]["action"], serde_json::json!({"type": "scale_to", "replicas": 7}));

    // Again: the same reason, the same id, already recorded: nothing new is done or written.
    let out = headroom(&["act", "--audit", log_arg]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("blocked by already_done"), "{table}");
    assert_eq!(lines(&log).len(), 2);

    // --enforce with a target in enforce mode on a Kubernetes cluster that cannot be reached:
    // a clear error, and no intent written for an action that could not be carried out.
    let cfg = dir.path().join("headroom.toml");
    let sample = std::fs::read_to_string(repo().join("data/sample/headroom.toml")).unwrap();
    let enforced = sample.replacen("max_step = 1\n", "max_step = 1\nmode = \"enforce\"\n", 1);
    assert_ne!(sample, enforced);
    std::fs::write(&cfg, enforced).unwrap();
    let fresh = dir.path().join("fresh.jsonl");
    let out = headroom(&["act", "--config", cfg.to_str().unwrap(), "--audit", fresh.to_str().unwrap(), "--enforce"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("target checkout") && err.contains("Kubernetes"), "{err}");
    assert!(std::fs::read_to_string(&fresh).unwrap_or_default().is_empty(), "nothing recorded");
}
