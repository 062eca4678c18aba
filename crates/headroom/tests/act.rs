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

/// Issue 11, defect 1: `act` without `--enforce` on an enforced target records
/// a dry run that must not block the real action later.
#[test]
fn a_dry_run_never_blocks_the_enforced_action() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let log_arg = log.to_str().unwrap();
    let cfg = dir.path().join("headroom.toml");
    let sample = std::fs::read_to_string(repo().join("data/sample/headroom.toml")).unwrap();
    std::fs::write(&cfg, sample.replacen("max_step = 1\n", "max_step = 1\nmode = \"enforce\"\n", 1)).unwrap();
    let cfg_arg = cfg.to_str().unwrap();

    let out = headroom(&["act", "--config", cfg_arg, "--audit", log_arg, "--output", "json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let records = lines(&log);
    assert_eq!(records.len(), 2, "{records:?}");
    let rehearsal = &records[0]["decision"];
    assert_eq!(rehearsal["mode"], "dry-run");
    assert_eq!(records[1]["outcome"]["status"], "dry_run");
    assert!(records.iter().all(|r| r["written_ms"].as_i64().is_some_and(|t| t > 1_700_000_000_000)), "{records:?}");

    // The plan still carries the enforced action out: not already done, no cooldown.
    let out = headroom(&["plan", "--config", cfg_arg, "--audit", log_arg, "--output", "json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let checkout = doc["decisions"].as_array().unwrap().iter().find(|d| d["target"] == "checkout").unwrap();
    assert_eq!(checkout["mode"], "enforce");
    assert_eq!(checkout["action"], serde_json::json!({"type": "scale_to", "replicas": 7}));
    assert_ne!(checkout["id"], rehearsal["id"]);
    for g in checkout["guardrails"].as_array().unwrap() {
        assert_ne!(g["verdict"], "blocked", "{g}");
    }

    // A second dry run records nothing new; `act --enforce` goes for the real
    // action (here it cannot reach a cluster, and says so, recording nothing).
    let out = headroom(&["act", "--config", cfg_arg, "--audit", log_arg]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(lines(&log).len(), 2);
    let out = headroom(&["act", "--config", cfg_arg, "--audit", log_arg, "--enforce"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("Kubernetes"), "{err}");
    assert_eq!(lines(&log).len(), 2);
}

/// Issue 11, defect 5: a dry-run intent left pending by a crash is settled
/// as a dry run (exit 0), and unexpected records are reported with file:line, once.
#[test]
fn a_pending_dry_run_is_settled_as_a_dry_run_and_odd_records_are_reported_once() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let log_arg = log.to_str().unwrap();
    let out = headroom(&["act", "--audit", log_arg, "--output", "json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let records = lines(&log);
    let text = std::fs::read_to_string(&log).unwrap();
    let (intent, outcome) = text.split_once('\n').unwrap();
    // As if the process had died between the intent and its outcome, plus a stray
    // outcome for an id that has no intent, written by hand.
    let stray = outcome.replace(records[0]["decision"]["id"].as_str().unwrap(), "00000000deadbeef");
    std::fs::write(&log, format!("{intent}\n{stray}")).unwrap();
    let out = headroom(&["act", "--audit", log_arg, "--output", "json"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let reconciled = doc["reconciled"].as_array().unwrap();
    assert_eq!(reconciled.len(), 1, "{doc}");
    assert_eq!(reconciled[0]["outcome"]["status"], "dry_run");
    let warning = format!("{log_arg}:2: decision 00000000deadbeef: outcome with no intent");
    assert_eq!(err.matches(&warning).count(), 1, "printed once:\n{err}");
}
