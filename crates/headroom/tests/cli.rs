//! The `headroom` binary as a user runs it: real files, a real store, pandas reading it back.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// Upstream files in their original formats (NAB, the cluster traces), copied
/// verbatim with their licences: see data/fixtures/NOTICE.
fn fixtures() -> PathBuf {
    repo().join("data/fixtures")
}

fn headroom(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_headroom"))
        .args(args)
        .current_dir(cwd)
        .env_remove("HEADROOM_STORE")
        .output()
        .unwrap()
}

fn ok(out: &Output) -> String {
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "failed: {}\nstdout:\n{stdout}\nstderr:\n{stderr}", out.status);
    stdout.into_owned()
}

/// The whitespace-separated cells of the table line for `entity` and `metric`.
fn line<'a>(table: &'a str, entity: &str, metric: &str) -> Vec<&'a str> {
    table
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|cells| cells.len() > 2 && cells[0] == entity && cells[1] == metric)
        .unwrap_or_else(|| panic!("no line for {entity} {metric} in:\n{table}"))
}

fn fails(out: &Output) -> String {
    assert!(!out.status.success(), "should have failed:\n{}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn nab_files_into_the_store_then_inspect_and_pandas_read_it_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let nab = fixtures().join("nab");
    let collect = [
        "collect",
        "files",
        nab.to_str().unwrap(),
        "--entity",
        "nab/{stem}",
        "--metric",
        "cpu_pct",
        "--store",
        store.to_str().unwrap(),
    ];
    let out = headroom(&collect, dir.path());
    let stdout = ok(&out);
    assert!(String::from_utf8_lossy(&out.stderr).contains("stored 42242 samples of 7 series"), "{:?}", out);
    assert_eq!(line(&stdout, "nab/ec2_cpu_utilization_24ae8d", "cpu_pct")[2..4], ["percent", "4032"]);
    assert!(stdout.contains("7 series, 42242 points"), "{stdout}");

    // The same data read from the store.
    let listing = ok(&headroom(&["inspect", store.to_str().unwrap(), "--output", "json"], dir.path()));
    let rows: serde_json::Value = serde_json::from_str(&listing).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 7);
    let asg = rows.iter().find(|r| r["entity"] == "nab/cpu_utilization_asg_misconfiguration").unwrap();
    assert_eq!(asg["points"], 18050);
    assert_eq!(asg["step"], "5m");
    assert_eq!(asg["unit"], "percent");

    // Collecting the same files again replaces, never duplicates.
    let again = headroom(&collect, dir.path());
    ok(&again);
    assert!(String::from_utf8_lossy(&again.stderr).contains("(42242 replaced"), "{again:?}");

    // A user opens the store with pandas.
    let py = Command::new("python3")
        .args(["-c", "import sys, pandas as pd; d = pd.read_parquet(sys.argv[1]); print(len(d), d.entity.nunique(), str(d.timestamp.dtype), sorted(d.columns))", store.to_str().unwrap()])
        .output()
        .expect("python3 with pandas and pyarrow (scripts/test.sh installs them)");
    let said = String::from_utf8_lossy(&py.stdout);
    assert!(py.status.success(), "pandas could not read the store: {}", String::from_utf8_lossy(&py.stderr));
    assert_eq!(said.trim(), "42242 7 datetime64[ms, UTC] ['entity', 'metric', 'timestamp', 'value']");
}

#[test]
fn files_without_timestamps_need_start_and_step() {
    let dir = tempfile::tempdir().unwrap();
    let f = fixtures().join("dc_aggregate/machine_usage_days_1_to_8_grouped_300_seconds.csv");
    let err = fails(&headroom(&["collect", "files", f.to_str().unwrap(), "--out", "x.parquet"], dir.path()));
    assert!(
        err.contains("machine_usage_days_1_to_8_grouped_300_seconds.csv: no timestamp column \"timestamp\""),
        "{err}"
    );
    assert!(err.contains("--start and --step"), "{err}");
    assert!(!dir.path().join("x.parquet").exists());

    let out = headroom(
        &[
            "collect",
            "files",
            f.to_str().unwrap(),
            "--entity",
            "dc/alibaba2018",
            "--start",
            "2024-01-01T00:00:00Z",
            "--step",
            "5m",
            "--out",
            "x.csv",
        ],
        dir.path(),
    );
    let stdout = ok(&out);
    assert_eq!(
        line(&stdout, "dc/alibaba2018", "cpu_util_percent")[2..8],
        ["percent", "2243", "2024-01-01T00:00:00Z", "→", "2024-01-08T18:50:00Z", "5m"]
    );
    // The CSV written reads back the same.
    let back = ok(&headroom(&["inspect", "x.csv"], dir.path()));
    assert!(back.contains("5 series, 11215 points"), "{back}");
}

#[test]
fn bad_values_are_reported_with_file_row_column_and_value() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.csv"), "timestamp,cpu\n2024-01-01T00:00:00Z,0.5\n2024-01-01T00:05:00Z,lots\n")
        .unwrap();
    let err = fails(&headroom(&["inspect", "bad.csv"], dir.path()));
    assert!(err.contains("bad.csv, row 2, column \"cpu\": not a number (value \"lots\")"), "{err}");
    std::fs::write(dir.path().join("epoch.csv"), "timestamp,cpu\n1704067200,0.5\n").unwrap();
    let err = fails(&headroom(&["inspect", "epoch.csv"], dir.path()));
    assert!(err.contains("--time-unit"), "{err}");
    ok(&headroom(&["inspect", "epoch.csv", "--time-unit", "s"], dir.path()));
}

#[test]
fn inspect_reports_repairs_and_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from("timestamp,entity,metric,value\n");
    for i in 0..24 {
        csv.push_str(&format!("2024-01-01T{:02}:{:02}:00Z,host/a,memory,{}\n", i / 12, (i % 12) * 5, 100 + i));
    }
    // A duplicate, a NaN, a negative memory value, a 10-minute hole and a 5-hour hole.
    csv.push_str("2024-01-01T00:00:00Z,host/a,memory,102\n2024-01-01T02:00:00Z,host/a,memory,NaN\n");
    csv.push_str("2024-01-01T02:15:00Z,host/a,memory,-5\n2024-01-01T02:15:00Z,host/a,memory,130\n");
    csv.push_str("2024-01-01T07:15:00Z,host/a,memory,131\n");
    std::fs::write(dir.path().join("m.csv"), csv).unwrap();
    let out = ok(&headroom(&["inspect", "m.csv"], dir.path()));
    assert!(
        out.contains(
            "1 NaN/Inf dropped, 1 negative rejected, 1 duplicates merged, 1 out-of-order sorted, 3 bins interpolated"
        ),
        "{out}"
    );
    assert!(out.contains("1 gap, 59 bins missing (longest 4h55m at 2024-01-01T02:20:00Z)"), "{out}");
    let json: serde_json::Value =
        serde_json::from_str(&ok(&headroom(&["inspect", "m.csv", "--output", "json"], dir.path()))).unwrap();
    assert_eq!(json[0]["report"]["negative_rejected"], 1);
    assert_eq!(json[0]["report"]["first_negative"][1], -5.0);
}

/// Three series of the sample, one per group, with their limits, as `data/metrics.parquet` and
/// `data/limits.csv` in `dir`. Reference protocol: 3 + 14 + 6 origins (dc, asd, nab).
fn three_series(dir: &Path) {
    use headroom_collect::files::{FileOptions, read_file, write_file};
    use headroom_core::SampleFrame;

    let sample = read_file(&repo().join("data/sample/metrics.parquet"), &FileOptions::default()).unwrap();
    let keep = ["nab/ec2_cpu_utilization_825cc2:cpu_pct", "asd/omi-1:m1", "dc/alibaba2018:cpu_util_percent"];
    let picked: Vec<_> =
        sample.series().unwrap().into_iter().filter(|s| keep.contains(&s.key.to_string().as_str())).collect();
    assert_eq!(picked.len(), 3);
    let data = dir.join("data");
    write_file(&data.join("metrics.parquet"), &SampleFrame::from_series(&picked).unwrap()).unwrap();
    let limits = std::fs::read_to_string(repo().join("data/sample/limits.csv")).unwrap();
    let mut kept = String::from("entity,metric,threshold\n");
    for line in limits.lines().filter(|l| keep.iter().any(|k| l.starts_with(&k.replace(':', ",")))) {
        kept.push_str(line);
        kept.push('\n');
    }
    std::fs::write(data.join("limits.csv"), kept).unwrap();
}

/// A saturation confusion of scores.json (`{"tp", "fp", "fn_"}`) as numbers.
fn confusion(sat: &serde_json::Value) -> (f64, f64, f64) {
    let count = |k: &str| sat[k].as_f64().unwrap_or_else(|| panic!("{k} in {sat}"));
    (count("tp"), count("fp"), count("fn_"))
}

fn json_file(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

#[test]
fn backtest_scores_agree_with_the_reference_scorer() {
    let dir = tempfile::tempdir().unwrap();
    three_series(dir.path());

    let out = headroom(
        &[
            "backtest",
            "--data",
            "data/metrics.parquet",
            "--limits",
            "data/limits.csv",
            "--models",
            "snaive-daily,linear,auto",
            "--out",
            "bt",
        ],
        dir.path(),
    );
    let table = ok(&out);
    assert_eq!(line(&table, "snaive-daily", "3")[2], "23", "3 + 14 + 6 origins:\n{table}");
    assert_eq!(line(&table, "auto", "3")[2], "23", "{table}");

    // The reference scorer reads our forecasts file and must find the same numbers. It
    // lives beside the development checkout, not in the repository: without it
    // only headroom's own numbers above are checked, and the skip is said plainly.
    let scorer = repo().join("../shared/benchmark/score.py");
    if !scorer.is_file() {
        eprintln!(
            "SKIPPED the cross-check against the reference scorer: {} is not there \
             (it is the development set's scorer, beside a development checkout)",
            scorer.display()
        );
        return;
    }
    let py = Command::new("python3")
        .arg(&scorer)
        .args(["bt/forecasts.parquet", "data", "--json", "ref.json"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(py.status.success(), "score.py failed: {}", String::from_utf8_lossy(&py.stderr));
    let reference: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("ref.json")).unwrap()).unwrap();
    let ours: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("bt/scores.json")).unwrap()).unwrap();
    let models: Vec<&str> = ours["scores"].as_array().unwrap().iter().map(|s| s["model"].as_str().unwrap()).collect();
    assert_eq!(models, ["snaive-daily", "linear", "auto"]);
    for s in ours["scores"].as_array().unwrap() {
        let r = &reference[s["model"].as_str().unwrap()];
        assert_eq!(r["pairs"], s["pairs"], "{s} vs {r}");
        for (a, b) in [
            ("mean_mase", "mean_mase"),
            ("median_mase", "median_mase"),
            ("mean_smape", "mean_smape"),
            ("coverage_p10_p90", "coverage"),
        ] {
            let (x, y) = (r[a].as_f64().unwrap(), s[b].as_f64().unwrap());
            assert!((x - y).abs() < 1e-9, "{a}: score.py {x}, headroom {y}");
        }
        let (tp, fp, fn_) = confusion(&s["sat_p90"]);
        let (p, r90) = (r["sat_p90"][0].as_f64(), r["sat_p90"][1].as_f64());
        if let Some(p) = p.filter(|p| p.is_finite()) {
            assert!((p - tp / (tp + fp)).abs() < 1e-9);
        }
        if let Some(r90) = r90.filter(|r| r.is_finite()) {
            assert!((r90 - tp / (tp + fn_)).abs() < 1e-9);
        }
    }
}

#[test]
fn backtest_scores_each_series_in_csv_and_parquet_matching_the_pooled_scores() {
    use polars::prelude::{ParquetReader, SerReader};

    let dir = tempfile::tempdir().unwrap();
    three_series(dir.path());
    let args = ["backtest", "--data", "data/metrics.parquet", "--limits", "data/limits.csv"];
    let out = headroom(&[&args[..], &["--models", "snaive-daily,last,auto", "--out", "bt"]].concat(), dir.path());
    let table = ok(&out);
    // auto's choices are counted under the table and in scores.json.
    assert!(table.contains("auto chose, over 23 pairs: snaive-daily "), "{table}");
    let json = json_file(&dir.path().join("bt/scores.json"));
    let choices = json["auto_choices"].as_object().unwrap();
    let mut chosen: Vec<&str> = choices.keys().map(String::as_str).collect();
    chosen.sort();
    assert_eq!(chosen, ["last", "snaive-daily"]);
    assert_eq!(choices.values().map(|n| n.as_u64().unwrap()).sum::<u64>(), 23);

    let csv = std::fs::read_to_string(dir.path().join("bt/scores.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("model,group,entity,metric,pairs,mae,smape,mase,pinball,coverage"));
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 3 * 3, "one row per model × series:\n{csv}");
    for model in ["snaive-daily", "last", "auto"] {
        let mine: Vec<&Vec<&str>> = rows.iter().filter(|r| r[0] == model).collect();
        let mut series: Vec<String> = mine.iter().map(|r| format!("{}:{}", r[2], r[3])).collect();
        series.sort();
        assert_eq!(
            series,
            ["asd/omi-1:m1", "dc/alibaba2018:cpu_util_percent", "nab/ec2_cpu_utilization_825cc2:cpu_pct"]
        );
        assert_eq!(mine.iter().map(|r| r[4].parse::<usize>().unwrap()).sum::<usize>(), 23);
        let group = |r: &&Vec<&str>| r[2].split('/').next().unwrap() == r[1];
        assert!(mine.iter().all(group), "{mine:?}");
        // The pooled MASE is the mean of the per-series MASE (series with one).
        let mase: Vec<f64> = mine.iter().map(|r| r[7].parse::<f64>().unwrap()).filter(|m| m.is_finite()).collect();
        let pooled = json["scores"].as_array().unwrap().iter().find(|s| s["model"] == model).unwrap();
        let want = pooled["mean_mase"].as_f64().unwrap();
        let got = mase.iter().sum::<f64>() / mase.len() as f64;
        assert!((got - want).abs() <= 1e-9 * want.abs(), "{model}: scores.csv {got}, scores.json {want}");
        // The best precision at recall >= 0.95 and >= 0.99, over every common
        // factor on the thresholds: 0.99 is the stricter, and factor 1 (the
        // p90 flag) is one of the cuts tried.
        let (tp, fp, fn_) = confusion(&pooled["sat_p90"]);
        assert!(tp + fn_ > 0.0, "{model}: the three series saturate");
        let at = &pooled["sat_p90_precision_at_recall"];
        let (at95, at99) = (at[0].as_f64().unwrap(), at[1].as_f64().unwrap());
        assert!(0.0 < at99 && at99 <= at95 && at95 <= 1.0, "{model}: {at}");
        if tp / (tp + fn_) >= 0.99 {
            assert!(at99 >= tp / (tp + fp), "{model}: {at} below the p90 flag's own precision");
        }
        let nab = json["groups"]["nab"].as_array().unwrap().iter().find(|s| s["model"] == model).unwrap();
        let nab_row = mine.iter().find(|r| r[1] == "nab").unwrap();
        assert!((nab_row[7].parse::<f64>().unwrap() - nab["mean_mase"].as_f64().unwrap()).abs() < 1e-9);
    }

    // The same rows in Parquet.
    let df = ParquetReader::new(std::fs::File::open(dir.path().join("bt/scores.parquet")).unwrap()).finish().unwrap();
    let names: Vec<&str> = df.get_column_names().into_iter().map(|n| n.as_str()).collect();
    assert_eq!(names, ["model", "group", "entity", "metric", "pairs", "mae", "smape", "mase", "pinball", "coverage"]);
    assert_eq!(df.height(), 9);
    let first = df.column("mase").unwrap().f64().unwrap().get(0).unwrap();
    assert!((first - rows[0][7].parse::<f64>().unwrap()).abs() < 1e-12);
}

#[test]
fn backtest_takes_another_horizon_and_spacing_but_the_lstm_only_its_own() {
    use polars::prelude::{ParquetReader, SerReader};

    let dir = tempfile::tempdir().unwrap();
    three_series(dir.path());
    let args = ["backtest", "--data", "data/metrics.parquet", "--limits", "data/limits.csv", "--out", "bt"];
    let day = ["--horizon", "24h", "--origin-every", "12h"];
    let out = headroom(&[&args[..], &day, &["--models", "snaive-daily,last"]].concat(), dir.path());
    let table = ok(&out);
    // 96-bin horizon, an origin every 48 bins: dc 748 bins from 374 → 6; asd 4320 from
    // 4320 − 15 days = 2880 → 29; nab 1345 from 672 → 13.
    assert_eq!(line(&table, "snaive-daily", "3")[2], "48", "{table}");
    assert_eq!(line(&table, "last", "3")[2], "48", "{table}");
    let json = json_file(&dir.path().join("bt/scores.json"));
    assert_eq!((json["protocol"]["horizon"].as_u64(), json["protocol"]["every"].as_u64()), (Some(96), Some(48)));
    assert!(json.get("auto_choices").is_none(), "auto runs only when asked for");
    let df =
        ParquetReader::new(std::fs::File::open(dir.path().join("bt/forecasts.parquet")).unwrap()).finish().unwrap();
    assert_eq!(df.height(), 2 * 48 * 96);

    // The shipped LSTM forecasts 48 h of 15-minute bins: another horizon or step is refused, naming the flag.
    let model = repo().join("models/default");
    let lstm = ["--models", "lstm", "--model", model.to_str().unwrap()];
    let err = fails(&headroom(&[&args[..], &lstm, &["--horizon", "24h"]].concat(), dir.path()));
    assert!(err.contains("--horizon 24h (96 bins of 15m): the LSTM in") && err.contains("192 bins"), "{err}");
    assert!(err.contains("leave lstm out of --models"), "{err}");
    let err = fails(&headroom(&[&args[..], &lstm, &["--step", "5m", "--horizon", "48h"]].concat(), dir.path()));
    assert!(err.contains("--step 5m: the LSTM in") && err.contains("15m"), "{err}");
    // A horizon that is not a whole number of steps, and auto alone.
    let err = fails(&headroom(&[&args[..], &["--models", "last", "--horizon", "50m"]].concat(), dir.path()));
    assert!(err.contains("--horizon 50m: must be a whole, non-zero number of steps of 15m"), "{err}");
    let err = fails(&headroom(&[&args[..], &["--models", "auto"]].concat(), dir.path()));
    assert!(err.contains("auto chooses among the other models"), "{err}");
}

/// Kills and reaps a child process when dropped.
struct Reap(std::process::Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn collect_host_samples_a_busy_process_into_a_csv() {
    let dir = tempfile::tempdir().unwrap();
    // A busy process with a name nothing else on the machine has (even another run of this test).
    let name = format!("hrbusy{}", std::process::id());
    let busy = dir.path().join(&name);
    std::fs::copy("/usr/bin/yes", &busy).unwrap();
    let child = Reap(Command::new(&busy).stdout(std::process::Stdio::null()).spawn().unwrap());
    let before = (cpu_seconds(child.0.id()), std::time::Instant::now());

    let out = headroom(
        &[
            "collect",
            "host",
            "--interval",
            "500ms",
            "--for",
            "4s",
            "--process",
            &name,
            "--out",
            "host.csv",
            "--output",
            "json",
        ],
        dir.path(),
    );
    // What the kernel says the process used meanwhile: the truth to compare with.
    let truth = (cpu_seconds(child.0.id()) - before.0) / before.1.elapsed().as_secs_f64();
    let summary: serde_json::Value = serde_json::from_str(&ok(&out)).unwrap();
    let entities: Vec<&str> = summary.as_array().unwrap().iter().map(|r| r["entity"].as_str().unwrap()).collect();
    assert!(entities.iter().any(|e| e.starts_with("host/")), "{entities:?}");

    let text = std::fs::read_to_string(dir.path().join("host.csv")).unwrap();
    let cpu: Vec<f64> = text
        .lines()
        .filter(|l| l.contains(&format!(",proc/{name},cpu,")))
        .map(|l| l.rsplit(',').next().unwrap().parse().unwrap())
        .collect();
    assert!(cpu.len() >= 5, "expected ~7 samples of the busy process, got {cpu:?}\n{text}");
    let mean = cpu.iter().sum::<f64>() / cpu.len() as f64;
    // On an idle machine both are ~1 core; on a loaded one both drop together.
    assert!(truth > 0.2, "the busy process barely ran ({truth} cores): machine overloaded?");
    assert!((mean - truth).abs() < 0.25, "headroom saw {mean} cores, the kernel says {truth} ({cpu:?})");
}

/// User + system CPU seconds of a process, from /proc/PID/stat.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap().split_whitespace().collect();
    // After the command name: state is field 3, utime 14 and stime 15 (1-based, man 5 proc).
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    let hz = Command::new("getconf").arg("CLK_TCK").output().unwrap();
    ticks / String::from_utf8_lossy(&hz.stdout).trim().parse::<f64>().unwrap()
}

#[test]
fn forecast_continues_every_series_and_names_a_gap_in_the_window() {
    let dir = tempfile::tempdir().unwrap();
    // Three days of a daily pattern at 15 minutes.
    let mut csv = String::from("timestamp,cpu\n");
    for i in 0..3 * 96 {
        let v = 1.0 + (i % 96) as f64 / 96.0;
        csv.push_str(&format!("{},{v}\n", headroom_core::format_ts(1_704_067_200_000 + i * 900_000)));
    }
    std::fs::write(dir.path().join("web.csv"), &csv).unwrap();
    let out = headroom(
        &["forecast", "--data", "web.csv", "--models", "snaive-daily", "--horizon", "24h", "--out", "f.csv"],
        dir.path(),
    );
    ok(&out);
    let text = std::fs::read_to_string(dir.path().join("f.csv")).unwrap();
    let rows: Vec<&str> = text.lines().collect();
    assert_eq!(rows[0], "entity,metric,model,origin,ts,p10,p50,p90,p95,p99");
    assert_eq!(rows.len(), 1 + 96);
    // Origin = the bin after the last sample; the daily pattern repeats.
    assert!(rows[1].starts_with("web,cpu,snaive-daily,2024-01-04T00:00:00Z,2024-01-04T00:00:00Z,"), "{}", rows[1]);
    let p50: f64 = rows[1].split(',').nth(6).unwrap().parse().unwrap();
    assert!((p50 - 1.0).abs() < 1e-12, "{}", rows[1]);

    // Half a day of history is too little for daily seasonal naive: the last value stands in, and says so.
    std::fs::write(dir.path().join("new.csv"), csv.lines().take(49).map(|l| format!("{l}\n")).collect::<String>())
        .unwrap();
    let out =
        headroom(&["forecast", "--data", "new.csv", "--models", "snaive-daily", "--out", "g.parquet"], dir.path());
    ok(&out);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("new:cpu: snaive-daily used last instead: new:cpu: snaive-daily needs at least 96 points"),
        "{said}"
    );
    let sidecar: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("g.fallbacks.json")).unwrap()).unwrap();
    assert_eq!(sidecar[0]["used"], "last");

    // Six hours missing inside the last day: the window of snaive-daily holds a gap.
    let holed: String = csv
        .lines()
        .enumerate()
        .filter(|(i, _)| *i == 0 || !(250..274).contains(i))
        .map(|(_, l)| format!("{l}\n"))
        .collect();
    std::fs::write(dir.path().join("web.csv"), holed).unwrap();
    let err =
        fails(&headroom(&["forecast", "--data", "web.csv", "--models", "snaive-daily", "--out", "f.csv"], dir.path()));
    assert!(err.contains("web:cpu: missing value at 2024-01-03T14:15:00Z"), "{err}");
}

#[test]
fn train_saves_a_model_that_forecast_loads_and_a_mismatched_card_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let nab = fixtures().join("nab");
    let nab = nab.to_str().unwrap();
    std::fs::write(dir.path().join("tiny.json"), r#"{"max_steps": 10}"#).unwrap();
    let from = ["--data", nab, "--entity", "nab/{stem}", "--metric", "cpu_pct"];
    let mut train = vec!["train", "--out", "m", "--config", "tiny.json", "--before-first-origin", "--quiet"];
    train.extend(from);
    ok(&headroom(&train, dir.path()));
    let card: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("m/card.json")).unwrap()).unwrap();
    assert!(card["training"]["command"].as_str().unwrap().contains("train --out m"), "{card}");
    assert_eq!(card["horizon"], 192);

    let mut forecast = vec!["forecast", "--model", "m", "--models", "lstm", "--out", "f.csv"];
    forecast.extend(from);
    ok(&headroom(&forecast, dir.path()));
    let rows = std::fs::read_to_string(dir.path().join("f.csv")).unwrap().lines().count();
    assert_eq!(rows, 1 + 7 * 192);

    // A card made for another grid step is refused, naming the field and both values.
    let mut card = card;
    card["step_ms"] = serde_json::json!(300_000);
    std::fs::write(dir.path().join("m/card.json"), card.to_string()).unwrap();
    let err = fails(&headroom(&forecast, dir.path()));
    assert!(err.contains("step_ms") && err.contains("300000") && err.contains("900000"), "{err}");
}

#[test]
fn every_model_is_monotone_on_the_whole_development_set() {
    use polars::prelude::{ParquetReader, SerReader};

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bt");
    // The default backtest: the shipped LSTM when models/default holds one, and every baseline.
    let run = headroom(&["backtest", "--out", out.to_str().unwrap()], &repo());
    let table = ok(&run);
    let df = ParquetReader::new(std::fs::File::open(out.join("forecasts.parquet")).unwrap()).finish().unwrap();
    let col = |n: &str| df.column(n).unwrap().f64().unwrap().clone();
    let paths = ["p10", "p50", "p90", "p95", "p99"].map(col);
    let mut columns: Vec<_> = paths.iter().map(|p| p.into_no_null_iter()).collect();
    let crossed = (0..df.height())
        .filter(|_| !columns.iter_mut().map(|c| c.next().unwrap()).collect::<Vec<f64>>().is_sorted())
        .count();
    assert_eq!(crossed, 0, "crossed quantiles in {} rows", df.height());
    let models = df.column("model").unwrap().str().unwrap().clone();
    let mut names: Vec<&str> = models.iter().flatten().collect();
    names.dedup();
    assert!(names.len() >= 5, "{names:?}\n{table}");
    assert_eq!(df.height(), names.len() * 2125 * 192, "every model forecasts every pair of the protocol");
    readme_numbers_are_what_the_backtest_wrote(&json_file(&out.join("scores.json")));
}

/// The README's headline tables quote this very backtest: each number there
/// must be the one the command writes, rounded as printed.
fn readme_numbers_are_what_the_backtest_wrote(scores: &serde_json::Value) {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let number = |cell: &str| -> f64 {
        let digits: String = cell.chars().take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ',').collect();
        digits.replace(',', "").parse().unwrap_or_else(|_| panic!("README cell {cell:?} holds no number"))
    };
    let same = |what: &str, cell: &str, value: f64| {
        let decimals = cell.trim().split('.').nth(1).map_or(0, |d| d.chars().take_while(char::is_ascii_digit).count());
        let printed = format!("{value:.decimals$}");
        assert_eq!(
            number(cell.trim()),
            printed.parse::<f64>().unwrap(),
            "README {what}: {cell:?}, the backtest wrote {value}"
        );
    };
    let rows = |first_header: &str| -> Vec<Vec<String>> {
        let start =
            readme.find(&format!("| {first_header} |")).unwrap_or_else(|| panic!("README table {first_header}"));
        readme[start..]
            .lines()
            .skip(2)
            .take_while(|l| l.starts_with('|'))
            .map(|l| l.trim_matches('|').split('|').map(|c| c.trim().to_owned()).collect())
            .collect()
    };
    let models = scores["scores"].as_array().unwrap();
    let forecast_rows = rows("model");
    assert!(forecast_rows.len() >= 3, "{forecast_rows:?}");
    for row in &forecast_rows {
        let name = row[0].split_whitespace().next().unwrap();
        let s = models.iter().find(|m| m["model"] == name).unwrap_or_else(|| panic!("README model {name}"));
        let f = |k: &str| s[k].as_f64().unwrap();
        same(&format!("{name} mean MASE"), &row[1], f("mean_mase"));
        same(&format!("{name} median MASE"), &row[2], f("median_mase"));
        let smape = if f("mean_smape") < 1.0 { 100.0 * f("mean_smape") } else { f("mean_smape") };
        same(&format!("{name} sMAPE"), &row[3], smape);
        same(&format!("{name} coverage"), &row[4], f("coverage"));
        let (tp, fp, fn_) = confusion(&s["sat_p90"]);
        let (p, r) = row[5].split_once('/').unwrap();
        same(&format!("{name} saturation precision"), p, tp / (tp + fp));
        same(&format!("{name} saturation recall"), r, tp / (tp + fn_));
    }
    let policies = scores["decisions"].as_array().unwrap();
    let policy = |name: &str| policies.iter().find(|p| p["policy"] == name).unwrap_or_else(|| panic!("policy {name}"));
    for row in rows("policy") {
        // "predictive on lstm p90" is the policy lstm; "… on lstm p95" is lstm@0.95.
        let words: Vec<&str> = row[0].split_whitespace().collect();
        let name = match (row[0].starts_with("reactive"), words.get(3)) {
            (true, _) => "reactive".to_owned(),
            (false, Some(&"p95")) => format!("{}@0.95", words[2]),
            (false, Some(&"p99")) => format!("{}@0.99", words[2]),
            (false, _) => words[2].to_owned(),
        };
        let name = name.as_str();
        let p = policy(name);
        let f = |k: &str| p[k].as_f64().unwrap();
        same(&format!("{name} caught"), &row[1], f("caught"));
        let recall = row[1].split('(').nth(1).unwrap();
        same(&format!("{name} recall %"), recall, 100.0 * f("recall"));
        if let Some(lead) = row[1].split(", ").nth(1) {
            same(&format!("{name} lead (h)"), lead, f("mean_lead_minutes") / 60.0);
        }
        same(&format!("{name} under-provisioned hours"), &row[2], f("under_provisioned_minutes") / 60.0);
        same(&format!("{name} slack"), &row[3], f("slack_replica_hours"));
        same(&format!("{name} actions"), &row[4], f("actions"));
        same(&format!("{name} churn"), &row[5], f("churn"));
    }
    let events = policy("reactive")["events"].as_f64().unwrap();
    let quoted = readme.split(" saturation\nevents").next().unwrap().rsplit(", ").next().unwrap();
    same("saturation events", quoted, events);
}

#[test]
fn forecast_shards_cover_every_series_of_the_sample_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = repo().join("data/sample/metrics.parquet");
    let series = |out: &str, args: &[&str]| -> Vec<(String, String)> {
        let mut all = vec!["forecast", "--data", data.to_str().unwrap(), "--models", "last", "--horizon", "1h"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--out", out]);
        ok(&headroom(&all, dir.path()));
        let text = std::fs::read_to_string(dir.path().join(out)).unwrap();
        let mut keys: Vec<(String, String)> = text
            .lines()
            .skip(1)
            .map(|l| {
                let mut f = l.split(',');
                (f.next().unwrap().to_owned(), f.next().unwrap().to_owned())
            })
            .collect();
        keys.dedup();
        keys
    };
    let mut whole = series("all.csv", &[]);
    whole.sort();
    assert!(whole.len() > 20, "{whole:?}");
    let mut covered = Vec::new();
    for i in 0..3 {
        let shard = series(&format!("shard{i}.csv"), &["--shard", &format!("{i}/3")]);
        assert!(!shard.is_empty() && shard.len() < whole.len(), "shard {i}/3: {} series", shard.len());
        covered.extend(shard);
    }
    covered.sort();
    assert_eq!(covered, whole, "three shards: every series once, none twice");
    let out = headroom(&["forecast", "--data", data.to_str().unwrap(), "--shard", "3/3"], dir.path());
    assert_eq!(out.status.code(), Some(2), "a clap error");
    assert!(String::from_utf8_lossy(&out.stderr).contains("0 ≤ i < n"));
}
