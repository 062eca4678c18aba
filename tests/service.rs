//! `headroom service install|uninstall|status` on a real systemd, in the
//! sandbox of `scripts/testing/systemd-sandbox.sh` with `/etc`, `/usr/local`
//! and `/var/lib` copy-on-write (what the install writes there lands in the
//! sandbox's overlay, never on the host): the binary is installed as
//! `/usr/local/bin/headroom` and its config as `/etc/headroom/headroom.toml`,
//! as an administrator would, and every command runs inside the sandbox.
//!
//! What a user would notice: `--dry-run` changes nothing; the install
//! writes the unit, the polkit rule and the user, and returns once the
//! daemon answers; the daemon, as the unprivileged user `headroom`, scales
//! a template unit through the real polkitd, which refuses that user any
//! unit the config does not name; its decisions are in the journal by
//! `DECISION_ID`; `systemctl reload` applies a good config and refuses a
//! broken one without stopping; a SIGKILL is restarted after `RestartSec`;
//! `systemd-analyze security` rates the unit well; the uninstall removes
//! exactly what was written, keeping the state unless `--purge`.
//!
//! Needs root and polkitd. Without root the test fails with the reason,
//! unless `HEADROOM_SKIP_SYSTEMD_TESTS=1`, which turns it into a no-op.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use headroom_e2e::{Sandbox, common_config, get, headroom_bin, recorded_cpu, wait_for};
use serde_json::Value;

const UNIT: &str = "headroom.service";
const BIN: &str = "/usr/local/bin/headroom";
const CONFIG: &str = "/etc/headroom/headroom.toml";
const STATE: &str = "/var/lib/headroom";
const LIMIT: Duration = Duration::from_secs(60);
/// The host directories the sandbox sees copy-on-write.
const OVERLAY: [&str; 3] = ["/etc", "/usr/local", "/var/lib"];
const POLKITD: &str = "/usr/lib/polkit-1/polkitd";

/// What `service install` writes, under /etc.
const WRITTEN: [&str; 4] = [
    "/etc/systemd/system/headroom.service",
    "/etc/systemd/system/multi-user.target.wants/headroom.service",
    "/etc/polkit-1/rules.d/50-headroom.rules",
    "/etc/sysusers.d/headroom.conf",
];

/// The units the config's systemd targets name, and one it does not.
const APP: &str = "[Unit]\nDescription=the app headroom may restart\n[Service]\nExecStart=/bin/sleep infinity\n";
const WORKER: &str = "[Unit]\nDescription=worker %i\n[Service]\nExecStart=/bin/sleep infinity\n";
const OTHER: &str = "[Unit]\nDescription=a unit headroom may not touch\n[Service]\nExecStart=/bin/sleep infinity\n";

/// The daemon's config: the recorded CPU of the worker template, store and
/// audit log in the state directory, everything fast; `app` a plain unit
/// (restarted, never scaled; no data), `worker@.service` scaled by its
/// numbered instances from 1 (1 core each, level 0.8) in enforce mode.
/// Reloads come from `systemctl reload` (SIGHUP) alone.
fn config(port: u16, worker_threshold: &str) -> String {
    let mut text = String::from("\n[[sources]]\ntype = \"files\"\npaths = [\"/etc/headroom/cpu.csv\"]\n");
    text += &common_config(Path::new(STATE), port, "watch_config = false");
    text += &format!(
        r#"
[[targets]]
name = "app"
platform = "systemd"
entity = "systemd/app.service"
metric = "cpu"
mode = "dry-run"

[[targets]]
name = "worker"
platform = "systemd"
entity = "systemd/worker@.service"
metric = "cpu"
capacity = 1.0
threshold = {worker_threshold}
replicas = 1
min_replicas = 1
max_replicas = 4
mode = "enforce"
"#
    );
    text
}

/// Every path under `dir` (not following symlinks), relative to it.
fn tree(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        out.push(path.strip_prefix(dir).unwrap().to_owned());
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            out.extend(tree(&path).into_iter().map(|p| path.strip_prefix(dir).unwrap().join(p)));
        }
    }
    out
}

/// `/api/v1/<what>` as JSON.
fn api(port: u16, what: &str) -> Result<Value, String> {
    let r = get(port, &format!("/api/v1/{what}")).map_err(|e| e.to_string())?;
    if r.status != 200 {
        return Err(format!("{}: {}", r.status, r.body));
    }
    serde_json::from_str(&r.body).map_err(|e| format!("{e}: {}", r.body))
}

/// A call of systemd's `Manager` method `method` on `unit` as the user `headroom`.
fn as_headroom(sandbox: &Sandbox, method: &str, unit: &str) -> std::process::Output {
    sandbox.output(&[
        "setpriv",
        "--reuid",
        "headroom",
        "--regid",
        "headroom",
        "--clear-groups",
        "busctl",
        "call",
        "org.freedesktop.systemd1",
        "/org/freedesktop/systemd1",
        "org.freedesktop.systemd1.Manager",
        method,
        "ss",
        unit,
        "replace",
    ])
}

fn text(out: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[test]
fn service_install_runs_the_daemon_hardened_with_least_privilege_and_uninstall_removes_it() {
    let started = Instant::now();
    let bin = headroom_bin();
    let Some(sandbox) = Sandbox::boot_with(&[bin.parent().unwrap()], &OVERLAY) else { return };
    let sandbox = sandbox.watching(UNIT);
    assert!(
        Path::new(POLKITD).exists(),
        "{POLKITD} is missing: this test asks the real polkitd. Install it with \
         `apt-get install -y --no-install-recommends polkitd` (scripts/test.sh does)"
    );
    let journal = || sandbox.exec(&["journalctl", "-u", UNIT, "--no-pager", "-o", "cat", "-n", "60"]).1;
    let etc = sandbox.upper("/etc");
    // The host's (absent, or left by something else): never written to.
    let host_state = tree(Path::new(STATE));

    // The units the targets name (in the sandbox's /run, not /etc: they are not the install's).
    for (name, text) in [("app.service", APP), ("worker@.service", WORKER), ("other.service", OTHER)] {
        std::fs::write(sandbox.state().join("run/systemd/system").join(name), text).unwrap();
    }
    sandbox.run(&["systemctl", "daemon-reload"]);
    sandbox.run(&["systemctl", "start", "worker@1.service"]);

    // As an administrator would: the binary in /usr/local/bin, the config in /etc/headroom.
    sandbox.run(&["install", "-m", "0755", &bin.display().to_string(), BIN]);
    let csv = tempfile::NamedTempFile::new().unwrap();
    recorded_cpu(csv.path(), "systemd/worker@.service");
    sandbox.write("/etc/headroom/cpu.csv", &std::fs::read_to_string(csv.path()).unwrap());
    let port = headroom_e2e::free_port();
    let good = config(port, "0.8");
    sandbox.write(CONFIG, &good);
    let (exists, _) = sandbox.exec(&["id", "headroom"]);
    assert!(!exists, "the user headroom exists before the install");

    // 8. --dry-run: every file, whole; nothing written, no user.
    let out = sandbox.output(&[BIN, "service", "install", "--config", CONFIG, "--enforce", "--dry-run"]);
    let dry = text(&out);
    assert!(out.status.success(), "{dry}");
    for path in [
        "/etc/systemd/system/headroom.service",
        "/etc/polkit-1/rules.d/50-headroom.rules",
        "/etc/sysusers.d/headroom.conf",
    ] {
        assert!(dry.contains(&format!("would write {path}")), "{path} missing:\n{dry}");
    }
    for line in [
        "    ExecStart=/usr/local/bin/headroom run --config /etc/headroom/headroom.toml --enforce",
        "    User=headroom",
        r#"    var units = ["app.service"];"#,
        r#"    var templates = [["worker@", ".service"]];"#,
    ] {
        assert!(dry.lines().any(|l| l.trim() == line.trim()), "{line:?} missing:\n{dry}");
    }
    assert!(dry.contains("dry run: nothing was written"), "{dry}");
    for path in WRITTEN {
        assert!(!sandbox.exists(path), "{path} after a dry run");
    }
    assert!(!sandbox.exec(&["id", "headroom"]).0, "the user headroom was created by a dry run");
    assert_eq!(sandbox.show(UNIT, &["LoadState"])["LoadState"], "not-found");

    // 1. The install: the files, the user, and the daemon ready when it returns.
    let out = sandbox.output(&[BIN, "service", "install", "--config", CONFIG, "--enforce"]);
    let report = text(&out);
    assert!(out.status.success(), "the install failed:\n{report}\n{}", journal());
    eprintln!("service install:\n{report}");
    let up = sandbox.show(UNIT, &["ActiveState", "SubState", "MainPID", "NRestarts", "UnitFileState", "User"]);
    assert_eq!((up["ActiveState"].as_str(), up["SubState"].as_str()), ("active", "running"), "{up:?}\n{}", journal());
    // READY=1 comes once the endpoint listens: it answers at once, no retry.
    let health =
        get(port, "/healthz").unwrap_or_else(|e| panic!("/healthz right after the install: {e}\n{}", journal()));
    assert_eq!(health.status, 200, "{health:?}");
    assert_eq!(
        (up["UnitFileState"].as_str(), up["User"].as_str(), up["NRestarts"].as_str()),
        ("enabled", "headroom", "0")
    );
    for path in WRITTEN {
        assert!(sandbox.exists(path), "{path} not written:\n{report}");
        let host = etc.join(path.strip_prefix("/etc/").unwrap());
        assert!(host.symlink_metadata().is_ok(), "{} not in the overlay", host.display());
        assert!(!Path::new(path).exists(), "{path} written on the host");
    }
    let first_pid = up["MainPID"].clone();
    assert_eq!(sandbox.run(&["stat", "-c", "%U", &format!("/proc/{first_pid}")]), "headroom", "the daemon's user");
    let rule = std::fs::read_to_string(etc.join("polkit-1/rules.d/50-headroom.rules")).unwrap();
    assert!(
        rule.contains(r#"subject.user != "headroom""#) && rule.contains(r#"var units = ["app.service"];"#),
        "{rule}"
    );

    // 2. The scale-out of the template, by the daemon as user headroom, granted by polkit.
    let (id, detail) = wait_for("a scale_to of worker@.service carried out", LIMIT, || {
        let doc = api(port, "decisions")?;
        let found = doc["decisions"].as_array().into_iter().flatten().find(|d| {
            d["decision"]["target"] == "worker"
                && d["decision"]["action"]["type"] == "scale_to"
                && !d["executed"].is_null()
        });
        let Some(d) = found else { return Err(format!("{doc}\n{}", journal())) };
        let outcome = &d["executed"]["outcome"];
        assert!(
            outcome["status"] == "succeeded" || *outcome == "succeeded",
            "the scale-out failed: {d}\n{}",
            journal()
        );
        assert_eq!(d["decision"]["action"]["replicas"], 2, "{d}");
        Ok((d["executed"]["id"].as_str().unwrap().to_owned(), d["executed"]["detail"].as_str().unwrap().to_owned()))
    });
    assert_eq!(sandbox.show("worker@2.service", &["ActiveState"])["ActiveState"], "active");
    let workers = sandbox.run(&["systemctl", "list-units", "worker@*", "--state=active", "--no-legend", "--plain"]);
    let workers: Vec<&str> = workers.lines().filter_map(|l| l.split_whitespace().next()).collect();
    assert_eq!(workers, ["worker@1.service", "worker@2.service"]);
    // The user headroom, through the real polkitd: a unit the config does not name is refused …
    let refused = as_headroom(&sandbox, "RestartUnit", "other.service");
    let why = text(&refused);
    assert!(!refused.status.success(), "other.service restarted by the user headroom: {why}");
    assert!(
        why.contains("Interactive authentication required") || why.contains("Access denied"),
        "refused for another reason: {why}"
    );
    assert_eq!(sandbox.show("other.service", &["ActiveState"])["ActiveState"], "inactive");
    // … one it names is granted.
    let granted = as_headroom(&sandbox, "RestartUnit", "app.service");
    assert!(granted.status.success(), "app.service refused to the user headroom: {}", text(&granted));
    wait_for("app.service active", LIMIT, || {
        let s = sandbox.show("app.service", &["ActiveState"]).remove("ActiveState").unwrap_or_default();
        if s == "active" { Ok(()) } else { Err(s) }
    });

    // The grant follows the config: installed again without the `app` target, the
    // rule no longer names app.service, and the daemon (its unit unchanged) runs on.
    let app = "[[targets]]\nname = \"app\"\nplatform = \"systemd\"\nentity = \"systemd/app.service\"\nmetric = \"cpu\"\nmode = \"dry-run\"\n";
    let without_app = good.replace(app, "");
    assert_ne!(without_app, good, "the app target was not replaced");
    sandbox.write(CONFIG, &without_app);
    let out = sandbox.output(&[BIN, "service", "install", "--config", CONFIG, "--enforce"]);
    let again = text(&out);
    assert!(out.status.success(), "the second install failed:\n{again}");
    assert!(
        again.contains("unchanged /etc/systemd/system/headroom.service") && again.contains("left running"),
        "{again}"
    );
    assert!(again.contains("wrote /etc/polkit-1/rules.d/50-headroom.rules"), "{again}");
    assert_eq!(sandbox.show(UNIT, &["MainPID"])["MainPID"], first_pid, "the daemon restarted for a new rule");
    let refused = as_headroom(&sandbox, "RestartUnit", "app.service");
    assert!(!refused.status.success(), "app.service still granted after its target left the config");
    assert!(as_headroom(&sandbox, "StartUnit", "worker@3.service").status.success(), "the worker grant was lost");
    sandbox.run(&["systemctl", "stop", "worker@3.service"]);
    sandbox.write(CONFIG, &good);

    // 3. The decision's line in the journal, by its id.
    let line = wait_for("the decision in the journal", LIMIT, || {
        let field = format!("DECISION_ID={id}");
        let (_, out) = sandbox.exec(&["journalctl", "-u", UNIT, &field, "--no-pager", "-o", "cat"]);
        if out.contains(&detail) { Ok(out) } else { Err(format!("{out:?}\n{}", journal())) }
    });
    assert_eq!(line.lines().count(), 1, "{line}");
    eprintln!("journalctl DECISION_ID={id}: {line}");

    // 4. `systemctl reload`: a changed config applies …
    let last_reload = || api(port, "targets").map(|d| d["last_reload"].clone());
    assert_eq!(last_reload().unwrap(), Value::Null, "a reload before any was asked for");
    sandbox.write(CONFIG, &config(port, "0.75"));
    sandbox.run(&["systemctl", "reload", UNIT]);
    let ok = wait_for("the reload applied", LIMIT, || {
        let r = last_reload()?;
        if r["successful"] == true { Ok(r) } else { Err(format!("{r}\n{}", journal())) }
    });
    let status = sandbox.run(&[BIN, "service", "status", "--config", CONFIG]);
    assert!(status.contains("last reload: succeeded"), "{status}");
    assert!(status.contains("headroom.service: active") && status.contains("NRestarts 0"), "{status}");
    assert!(status.contains(&format!("[{id}]")), "the decision missing from the status:\n{status}");
    eprintln!("service status:\n{status}");
    // … a broken one is refused, and the daemon keeps running on the old one.
    sandbox.write(CONFIG, &config(port, "1.5"));
    sandbox.run(&["systemctl", "reload", UNIT]);
    let refused = wait_for("the reload refused", LIMIT, || {
        let r = last_reload()?;
        if r["successful"] == false { Ok(r) } else { Err(format!("{r}")) }
    });
    assert_ne!(refused["at"], Value::Null);
    assert!(refused["problems"].to_string().contains("threshold"), "{refused}");
    let st = sandbox.show(UNIT, &["ActiveState", "SubState", "MainPID"]);
    assert_eq!(
        (st["ActiveState"].as_str(), st["SubState"].as_str(), &st["MainPID"]),
        ("active", "running", &first_pid)
    );
    assert_eq!(get(port, "/healthz").unwrap().status, 200);
    let status = sandbox.run(&[BIN, "service", "status", "--config", CONFIG]);
    // The config on disk is the refused one: status says why, and still shows the daemon's refusal.
    assert!(status.contains("headroom.service: active/running") && status.contains("threshold = 1.5"), "{status}");
    assert!(status.contains("last reload: REFUSED") && status.contains("the old config stays"), "{status}");
    sandbox.write(CONFIG, &good);
    sandbox.run(&["systemctl", "reload", UNIT]);
    wait_for("the restored config applied", LIMIT, || {
        let r = last_reload()?;
        if r["successful"] == true && r["at"] != ok["at"] { Ok(()) } else { Err(format!("{r}")) }
    });

    // 5. A crash: SIGKILL; systemd starts it again, once, after RestartSec=10.
    let killed = Instant::now();
    sandbox.run(&["kill", "-KILL", &first_pid]);
    let mut died_at = None;
    let again = wait_for("the restart after the SIGKILL", Duration::from_secs(30), || {
        let s = sandbox.show(
            UNIT,
            &[
                "ActiveState",
                "SubState",
                "MainPID",
                "NRestarts",
                "ExecMainExitTimestampMonotonic",
                "ExecMainStartTimestampMonotonic",
            ],
        );
        if s["SubState"] == "auto-restart" {
            died_at = s["ExecMainExitTimestampMonotonic"].parse::<u64>().ok().filter(|t| *t > 0);
        }
        let back = s["NRestarts"] == "1" && s["ActiveState"] == "active" && s["SubState"] == "running";
        if back && s["MainPID"] != first_pid && s["MainPID"] != "0" { Ok(s) } else { Err(format!("{s:?}")) }
    });
    let elapsed = killed.elapsed();
    assert!(elapsed >= Duration::from_secs(9), "restarted {elapsed:?} after the kill, before RestartSec=10");
    // By systemd's own clock: from the death of the old main process to the start of the new one.
    let died_at = died_at.expect("the unit seen waiting for its restart");
    let restarted_at: u64 = again["ExecMainStartTimestampMonotonic"].parse().unwrap();
    let delay = Duration::from_micros(restarted_at.saturating_sub(died_at));
    assert!(delay >= Duration::from_millis(9_900), "systemd restarted it {delay:?} after its death");
    eprintln!("SIGKILL: active again after {elapsed:?} (systemd: {delay:?} from death to start)");
    get(port, "/healthz").unwrap_or_else(|e| panic!("/healthz after the restart: {e}\n{}", journal()));
    assert_eq!(sandbox.run(&["stat", "-c", "%U", &format!("/proc/{}", again["MainPID"])]), "headroom");

    // 6. The sandbox of the unit, as systemd rates it.
    let (_, security) = sandbox.exec(&["systemd-analyze", "security", "--no-pager", UNIT]);
    let needle = "Overall exposure level for headroom.service:";
    let exposure: f64 = security
        .lines()
        .find_map(|l| l.split_once(needle))
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|x| x.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{security}"));
    eprintln!("systemd-analyze security {UNIT}: exposure {exposure}");
    assert!(exposure <= 2.0, "exposure {exposure} above 2.0:\n{security}");

    // The scheduled forecast job beside it: a timer and a oneshot service, same user and state.
    let out = sandbox.output(&[BIN, "service", "install", "--config", CONFIG, "--timer", "--on-calendar", "hourly"]);
    let report = text(&out);
    assert!(out.status.success(), "the timer install failed:\n{report}");
    let timer = sandbox.show("headroom-forecast.timer", &["ActiveState", "UnitFileState"]);
    assert_eq!((timer["ActiveState"].as_str(), timer["UnitFileState"].as_str()), ("active", "enabled"), "{report}");
    assert!(!sandbox.exists("/etc/polkit-1/rules.d/50-headroom-forecast.rules"), "the forecast job acts on nothing");
    let status = sandbox.run(&[BIN, "service", "status", "--name", "headroom-forecast", "--config", CONFIG]);
    assert!(
        status.contains("headroom-forecast.timer: active/waiting (enabled)") && status.contains("next run"),
        "{status}"
    );
    // One run now, as the timer would start it: the targets' forecasts into the state directory.
    sandbox.run(&["systemctl", "start", "headroom-forecast.service"]);
    let job = sandbox.show("headroom-forecast.service", &["Result", "ExecMainStatus", "User"]);
    assert_eq!((job["Result"].as_str(), job["ExecMainStatus"].as_str()), ("success", "0"), "{job:?}");
    assert!(sandbox.exists(&format!("{STATE}/forecasts.parquet")), "the forecast job wrote nothing");
    let out = sandbox.output(&[BIN, "service", "uninstall", "--name", "headroom-forecast"]);
    assert!(out.status.success(), "the timer uninstall failed:\n{}", text(&out));
    for unit in ["headroom-forecast.timer", "headroom-forecast.service"] {
        assert!(!sandbox.exists(&format!("/etc/systemd/system/{unit}")), "{unit} left by the uninstall");
        assert_eq!(sandbox.show(unit, &["LoadState"])["LoadState"], "not-found");
    }
    assert_eq!(sandbox.show(UNIT, &["ActiveState"])["ActiveState"], "active", "the daemon stopped with the timer");
    assert!(sandbox.exists("/etc/sysusers.d/headroom.conf"), "the daemon's user entry went with the timer");
    assert!(
        text(&out).contains("kept /etc/sysusers.d/headroom.conf and the user headroom: headroom.service"),
        "{}",
        text(&out)
    );

    // 7. The uninstall: stopped, disabled, every file gone; the state and the user stay …
    let audit_log = format!("{STATE}/audit.jsonl");
    assert!(sandbox.exists(&audit_log), "no audit log in the state directory");
    let out = sandbox.output(&[BIN, "service", "uninstall"]);
    let report = text(&out);
    assert!(out.status.success(), "the uninstall failed:\n{report}");
    eprintln!("service uninstall:\n{report}");
    assert_eq!(sandbox.show(UNIT, &["LoadState"])["LoadState"], "not-found");
    assert!(get(port, "/healthz").is_err(), "the daemon still answers after the uninstall");
    for path in WRITTEN {
        assert!(!sandbox.exists(path), "{path} left by the uninstall");
    }
    let names = ["headroom.service", "50-headroom.rules", "headroom.conf"];
    let left: Vec<PathBuf> =
        tree(&etc).into_iter().filter(|p| p.file_name().is_some_and(|n| names.iter().any(|m| n == *m))).collect();
    assert!(left.is_empty(), "left in /etc by the uninstall: {left:?}");
    assert!(sandbox.exists(&audit_log), "the uninstall removed the state");
    assert!(sandbox.upper("/var/lib").join("headroom/audit.jsonl").exists(), "the state is not in the overlay");
    assert_eq!(tree(Path::new(STATE)), host_state, "the host's {STATE} changed");
    assert!(sandbox.exec(&["id", "headroom"]).0, "the uninstall removed the user");
    // … until --purge.
    let out = sandbox.output(&[BIN, "service", "uninstall", "--purge"]);
    let report = text(&out);
    assert!(out.status.success(), "the purge failed:\n{report}");
    eprintln!("service uninstall --purge:\n{report}");
    assert!(!sandbox.exists(STATE), "{STATE} left by --purge");
    assert!(!sandbox.exec(&["id", "headroom"]).0, "the user headroom left by --purge");

    // A config without systemd targets needs no grant: no rule, no user to create,
    // `DynamicUser=`; the daemon and the process it supervises run as that user.
    let mut dynamic = String::from("\n[[sources]]\ntype = \"files\"\npaths = [\"/etc/headroom/cpu.csv\"]\n");
    dynamic += &common_config(Path::new(STATE), port, "watch_config = false");
    dynamic += headroom_e2e::WORKER;
    sandbox.write(CONFIG, &dynamic);
    let out = sandbox.output(&[BIN, "service", "install", "--config", CONFIG]);
    let report = text(&out);
    assert!(out.status.success(), "the install with a dynamic user failed:\n{report}\n{}", journal());
    assert!(!report.contains("50-headroom.rules") && !report.contains("sysusers"), "{report}");
    let up = sandbox.show(UNIT, &["ActiveState", "DynamicUser", "MainPID", "WatchdogUSec"]);
    assert_eq!((up["ActiveState"].as_str(), up["DynamicUser"].as_str()), ("active", "yes"), "{up:?}");
    assert_eq!(up["WatchdogUSec"], "1min", "{up:?}");
    assert_eq!(sandbox.run(&["stat", "-c", "%U", &format!("/proc/{}", up["MainPID"])]), "headroom");
    let sleeper = wait_for("the supervised worker", LIMIT, || {
        let (_, pids) = sandbox.exec(&["pgrep", "-x", "-P", &up["MainPID"], "sleep"]);
        pids.lines().next().map(str::to_owned).ok_or_else(&journal)
    });
    assert_eq!(sandbox.run(&["stat", "-c", "%U", &format!("/proc/{sleeper}")]), "headroom");
    let out = sandbox.output(&[BIN, "service", "uninstall", "--purge"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!sandbox.exists(STATE) && !sandbox.exists("/var/lib/private/headroom"), "{}", text(&out));
    eprintln!("service test: {:?}", started.elapsed());
}
