//! `headroom plan` as a user runs it: the shipped sample, model and config;
//! an audit log of past actions; a broken config.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use headroom_core::{Decision, Mode};
use headroom_remediate::audit::Record;
use headroom_remediate::state::Outcome;
use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

fn headroom(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_headroom")).args(args).current_dir(repo()).output().unwrap()
}

fn ok(out: &Output) -> String {
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "failed: {}\nstdout:\n{stdout}\nstderr:\n{stderr}", out.status);
    stdout.into_owned()
}

fn plan_json(extra: &[&str]) -> Value {
    let mut args = vec!["plan", "--output", "json"];
    args.extend_from_slice(extra);
    serde_json::from_str(&ok(&headroom(&args))).unwrap()
}

fn decision<'a>(doc: &'a Value, target: &str) -> &'a Value {
    doc["decisions"].as_array().unwrap().iter().find(|d| d["target"] == target).unwrap()
}

fn guardrail<'a>(d: &'a Value, name: &str) -> Vec<&'a Value> {
    d["guardrails"].as_array().unwrap().iter().filter(|g| g["name"] == name).collect()
}

#[test]
fn plan_on_the_sample_prints_explained_dry_run_decisions() {
    let table = ok(&headroom(&["plan"]));
    assert!(table.starts_with("plan at 2024-02-14T23:55:00Z"), "{table}");
    assert!(table.contains("checkout  asd/omi-8  scale_to 7  [dry-run]"), "{table}");
    assert!(table.contains("BLOCKED stale_data"), "{table}");

    let doc = plan_json(&[]);
    let decisions = doc["decisions"].as_array().unwrap();
    assert_eq!(decisions.len(), 7, "one decision per configured target");
    // Nothing in the sample config is enforced: dry-run is the default.
    assert!(decisions.iter().all(|d| d["mode"] == "dry-run"));

    // Predicted saturation within the lead time: scale out, one step (max_step = 1).
    let checkout = decision(&doc, "checkout");
    assert_eq!(checkout["action"], serde_json::json!({"type": "scale_to", "replicas": 7}));
    assert_eq!(checkout["evidence"]["model"], "lstm");
    assert_eq!(checkout["evidence"]["quantile"], 0.9);
    assert!(checkout["evidence"]["peak"].as_f64().unwrap() > checkout["evidence"]["threshold"].as_f64().unwrap());
    assert_eq!(guardrail(checkout, "max_step")[0]["verdict"], "clamped");
    assert_eq!(checkout["id"].as_str().unwrap().len(), 16);

    // At max_replicas: no action, an alert.
    let search = decision(&doc, "search");
    assert_eq!(search["action"]["type"], "none");
    assert_eq!(search["alert"], true);
    // Beyond the lead time: wait.
    assert_eq!(guardrail(decision(&doc, "batch"), "lead_time")[0]["verdict"], "blocked");
    // A systemd unit is never scaled.
    let gateway = decision(&doc, "gateway");
    assert_eq!((gateway["action"]["type"].as_str(), gateway["alert"].as_bool()), (Some("none"), Some(true)));
    assert!(gateway["reason"].as_str().unwrap().contains("systemd targets cannot be scaled"), "{gateway}");
    // Degraded forecast: predictive actions off.
    assert_eq!(guardrail(decision(&doc, "reports"), "forecast_health")[0]["verdict"], "blocked");
    // Scale-in needs the forecast and recent actuals low; here the forecast is not.
    let frontend = decision(&doc, "frontend");
    assert_eq!(frontend["action"]["type"], "none");
    assert_eq!(guardrail(frontend, "scale_in")[0]["verdict"], "blocked");
    // Ten-year-old data: nothing at all.
    assert_eq!(guardrail(decision(&doc, "asg"), "stale_data")[0]["verdict"], "blocked");

    // Same data, same config: same decisions and ids.
    assert_eq!(plan_json(&[])["decisions"], doc["decisions"]);
}

#[test]
fn past_actions_in_the_audit_log_are_never_repeated_and_hold_the_cooldown() {
    let doc = plan_json(&[]);
    let checkout: Decision = serde_json::from_value(decision(&doc, "checkout").clone()).unwrap();
    let now = checkout.decided_at_ms;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let write = |records: &[Record]| {
        let text: String = records.iter().map(|r| r.to_line().unwrap()).collect();
        std::fs::write(&log, text).unwrap();
    };
    let done = |d: &Decision, at_ms: i64| {
        vec![
            Record::Intent { at_ms, decision: Decision { decided_at_ms: at_ms, ..d.clone() } },
            Record::Outcome { at_ms, id: d.id.clone(), target: d.target.clone(), outcome: Outcome::DryRun },
        ]
    };

    // The very same decision recorded two hours ago: already done, not repeated.
    write(&done(&checkout, now - 2 * 3_600_000));
    let again = plan_json(&["--audit", log.to_str().unwrap()]);
    let d = decision(&again, "checkout");
    assert_eq!(d["action"]["type"], "none", "{d}");
    assert_eq!(guardrail(d, "already_done")[0]["verdict"], "blocked");

    // Another action on the target ten minutes ago: the 30-minute cooldown holds.
    let mut other = checkout.clone();
    other.id = "0123456789abcdef".into();
    other.window_start_ms -= 86_400_000;
    write(&done(&other, now - 10 * 60_000));
    let cool = plan_json(&["--audit", log.to_str().unwrap()]);
    let d = decision(&cool, "checkout");
    assert_eq!(d["action"]["type"], "none", "{d}");
    let blocked = guardrail(d, "cooldown");
    assert_eq!(blocked[0]["verdict"], "blocked");
    assert!(blocked[0]["detail"].as_str().unwrap().contains("cooldown 30m"), "{d}");
    // Other targets are not affected by checkout's history.
    assert_eq!(decision(&cool, "search")["reason"], decision(&doc, "search")["reason"]);

    // An enforce-mode decision is a different decision from its dry-run record.
    let enforced = headroom_core::decision_id(
        &checkout.target,
        &checkout.action,
        &checkout.risk,
        checkout.window_start_ms,
        Mode::Enforce,
    );
    assert_ne!(enforced, checkout.id);
}

#[test]
fn an_invalid_config_is_refused_with_every_path_and_value() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("headroom.toml");
    std::fs::write(
        &cfg,
        "[[targets]]\nname = \"web\"\nplatform = \"kubernetes\"\nentity = \"asd/omi-1\"\nmetric = \"m3\"\n\
         min_replicas = 6\nmax_replicas = 3\nquantile = 1.2\n",
    )
    .unwrap();
    let out = headroom(&["plan", "--config", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "bad config: exit code 2");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("headroom.toml"), "{err}");
    assert!(err.contains("targets[0].min_replicas = 6") && err.contains("max_replicas = 3"), "{err}");
    assert!(err.contains("targets[0].quantile = 1.2"), "{err}");

    std::fs::write(&cfg, "[[targets]]\nname = \"web\"\nplatfrom = \"kubernetes\"\n").unwrap();
    let err = String::from_utf8_lossy(&headroom(&["plan", "--config", cfg.to_str().unwrap()]).stderr).into_owned();
    assert!(err.contains("platfrom") && err.contains("line 3"), "{err}");
}
