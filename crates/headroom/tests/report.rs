//! The backtest report as a reader gets it: one HTML file with the tables and
//! plots, no external reference, rendered by a real browser (headless Chromium).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use headroom_backtest::report::{ReportInput, write_report};
use headroom_core::{Action, Decision, Forecast, Grid, Mode, Quantiles, RepairReport, ResampledSeries, SeriesKey};
use headroom_engine::replay::{PolicyScore, ReplayReport, Replayed, Step, Timeline};
use headroom_forecast::metrics::{ModelScore, PairScore, SeriesScore, score_pair};

const STEP: i64 = 15 * 60_000;
const DAY: usize = 96;
const HORIZON: usize = 2 * DAY;
const T0: i64 = 1_704_067_200_000; // 2024-01-01T00:00:00Z

/// A deterministic pseudo-random number in [-1, 1).
fn noise(i: usize, seed: usize) -> f64 {
    let x = ((i * 7919 + seed * 104_729) % 10_007) as f64 / 10_007.0;
    2.0 * x - 1.0
}

/// Eight days of a daily pattern: `base`, `amp` peak to mean, `jitter` noise.
fn series(entity: &str, base: f64, amp: f64, jitter: f64, seed: usize) -> ResampledSeries {
    let n = 8 * DAY;
    let values: Vec<f64> = (0..n)
        .map(|i| {
            let phase = 2.0 * std::f64::consts::PI * (i % DAY) as f64 / DAY as f64;
            (base + amp * (phase - 1.2).sin() + jitter * noise(i, seed)).max(0.0)
        })
        .collect();
    ResampledSeries {
        key: SeriesKey::new(entity, "cpu").unwrap(),
        grid: Grid::new(STEP, T0, T0 + n as i64 * STEP).unwrap(),
        imputed: vec![false; n],
        values,
        report: RepairReport::default(),
    }
}

/// Seasonal naive (p10–p90 band ±`spread`, p95 and p99 at 1.5 and 2 × `spread`
/// above p50) or the last value (all offsets halved), from bin `o`.
fn forecast(s: &ResampledSeries, model: &str, o: usize, spread: f64) -> Forecast {
    let p50: Vec<f64> = match model {
        "snaive-daily" => (0..HORIZON).map(|k| s.values[o - DAY + k % DAY]).collect(),
        _ => vec![s.values[o - 1]; HORIZON],
    };
    let w = if model == "snaive-daily" { spread } else { spread / 2.0 };
    let shifted = |d: f64| p50.iter().map(|v| v + d).collect::<Vec<f64>>();
    Forecast {
        key: s.key.clone(),
        model: model.into(),
        origin_ms: s.grid.start_ms + o as i64 * STEP,
        step_ms: STEP,
        q: Quantiles::new(shifted(-w), p50.clone(), shifted(w), shifted(1.5 * w), shifted(2.0 * w)).unwrap(),
    }
}

/// Everything a small backtest with a replay produces, scored with the real metrics.
struct Fixture {
    series: Vec<ResampledSeries>,
    forecasts: Vec<Forecast>,
    scores: Vec<ModelScore>,
    series_scores: Vec<SeriesScore>,
    replay: ReplayReport,
}

fn fixture() -> Fixture {
    let series = vec![
        series("k8s/shop/deployment/cart", 2.0, 1.0, 0.1, 1),
        series("k8s/shop/deployment/checkout", 1.0, 0.3, 0.2, 2),
        series("host/db-1", 6.0, 2.5, 0.6, 3),
        series("systemd/nginx.service", 0.5, 0.1, 0.15, 4),
        series("k8s/shop/deployment/search", 3.0, 1.5, 1.0, 5),
    ];
    let origins = [5 * DAY, 6 * DAY];
    let mut forecasts = Vec::new();
    let (mut scores, mut series_scores) = (Vec::new(), Vec::new());
    for model in ["snaive-daily", "last"] {
        let mut per_series: Vec<Vec<PairScore>> = Vec::new();
        for s in &series {
            let (min, max) = s.values.iter().fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(*v), b.max(*v)));
            let mut pairs = Vec::new();
            for &o in &origins {
                let f = forecast(s, model, o, 0.2 * (max - min));
                pairs.push(score_pair(&f.q, &s.values[o..o + HORIZON], &s.values[..o], DAY, Some(8.0)));
                forecasts.push(f);
            }
            let mean = |f: fn(&PairScore) -> f64| pairs.iter().map(f).sum::<f64>() / pairs.len() as f64;
            series_scores.push(SeriesScore {
                model: model.into(),
                group: s.key.entity.split('/').next().unwrap().into(),
                entity: s.key.entity.clone(),
                metric: s.key.metric.clone(),
                pairs: pairs.len(),
                mae: mean(|p| p.mae),
                smape: mean(|p| p.smape),
                mase: mean(|p| p.mase),
                pinball: mean(|p| p.pinball),
                coverage: pairs.iter().map(|p| p.covered).sum::<usize>() as f64
                    / pairs.iter().map(|p| p.steps).sum::<usize>() as f64,
            });
            per_series.push(pairs);
        }
        scores.push(ModelScore::from_pairs(model, &per_series));
    }
    // The replay of host/db-1 (load peaks above 7.5 at 2 replicas): reactive scales late, predictive early.
    let db = &series[2];
    let start = 5 * DAY;
    let actual = db.values[start..].to_vec();
    let level = 7.5;
    let t = |i: usize| db.grid.start_ms + (start + i) as i64 * STEP;
    let mut events = Vec::new();
    let mut run: Option<usize> = None;
    for (i, v) in actual.iter().enumerate() {
        match (run, *v > level) {
            (None, true) => run = Some(i),
            (Some(b), false) => {
                events.push((t(b), t(i)));
                run = None;
            }
            _ => {}
        }
    }
    if let Some(b) = run {
        events.push((t(b), t(actual.len())));
    }
    assert!(!events.is_empty(), "the fixture must saturate");
    let steps = |lead: i64| -> Vec<Step> {
        let mut v = vec![Step { at_ms: t(0), replicas: 2 }];
        for (a, b) in &events {
            v.push(Step { at_ms: a - lead, replicas: 3 });
            v.push(Step { at_ms: b + 3_600_000, replicas: 2 });
        }
        v
    };
    let policy = |name: &str, caught: usize, lead: f64, under: f64| PolicyScore {
        policy: name.into(),
        targets: 1,
        events: events.len(),
        caught,
        recall: caught as f64 / events.len() as f64,
        precision: 1.0,
        mean_lead_minutes: lead,
        under_provisioned_minutes: under,
        slack_replica_hours: 3.5,
        actions: 2 * events.len(),
        churn: 0,
    };
    let restart = Decision {
        id: "0123456789abcdef".into(),
        reason: "memory grows towards the limit".into(),
        ..Decision::new("db <primary> & co", &db.key.entity, Mode::DryRun, "memory_leak", t(100), t(100))
            .with_action(Action::Restart)
    };
    let replicas = vec![("reactive".into(), steps(-30 * 60_000)), ("snaive-daily".into(), steps(45 * 60_000))];
    let replay = ReplayReport {
        policies: vec![policy("reactive", 0, f64::NAN, 150.0), policy("snaive-daily", events.len(), 45.0, 0.0)],
        decisions: vec![Replayed { policy: "snaive-daily".into(), decision: restart }],
        timelines: vec![Timeline {
            target: "db <primary> & co".into(),
            series: db.key.to_string(),
            level,
            start_replicas: 2,
            start_ms: t(0),
            step_ms: STEP,
            actual,
            events,
            replicas,
        }],
    };
    Fixture { series, forecasts, scores, series_scores, replay }
}

fn input(f: &Fixture) -> ReportInput<'_> {
    ReportInput {
        title: "headroom backtest: fixture <5 series>".into(),
        series: &f.series,
        forecasts: &f.forecasts,
        scores: &f.scores,
        series_scores: &f.series_scores,
        replay: Some(&f.replay),
    }
}

fn write(dir: &Path, input: &ReportInput<'_>) -> (PathBuf, String) {
    let path = dir.join("report.html");
    write_report(&path, input).unwrap();
    let html = std::fs::read_to_string(&path).unwrap();
    (path, html)
}

#[test]
fn report_has_the_tables_and_plots_and_references_nothing_outside() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let (_, html) = write(dir.path(), &input(&f));

    assert!(html.starts_with("<!DOCTYPE html>"));
    for heading in ["Forecast accuracy", "Decisions", "Forecasts of the best model", "MASE per series", "Calibration"] {
        assert!(html.contains(heading), "no section {heading}");
    }
    // Headline table: both models, their mean MASE as the CLI prints it.
    for s in &f.scores {
        assert!(html.contains(&format!("{:.3}</td>", s.mean_mase)), "no mean MASE of {}", s.model);
    }
    for col in ["mean MASE", "median MASE", "sMAPE %", "p10–p90 coverage", "saturation recall (p90)"] {
        assert!(html.contains(&format!("<th>{col}</th>")), "no column {col}");
    }
    // Decision table: both policies with the measures.
    for col in
        ["events", "caught", "recall", "precision", "mean lead", "under-provisioned min", "slack replica-h", "churn"]
    {
        assert!(html.contains(&format!("<th>{col}</th>")), "no column {col}");
    }
    assert!(html.contains("<td>reactive</td>") && html.contains("<td>45m</td>"));
    // Best, median and worst series of the best model, MASE distribution, calibration, timeline.
    let plots = html.matches("<svg").count();
    assert!(plots >= 6, "{plots} plots");
    for rank in ["best series", "median series", "worst series"] {
        assert!(html.contains(rank), "no {rank}");
    }
    // Names are escaped, in HTML and in the plots.
    assert!(html.contains("db &lt;primary&gt; &amp; co") && !html.contains("db <primary>"));
    assert!(html.contains("fixture &lt;5 series&gt;"));
    // Self-contained: no external reference, no script.
    assert!(!html.contains("http://") && !html.contains("https://"), "external reference in the report");
    assert!(!html.contains("<script") && !html.contains("<link") && !html.contains("<img"));
}

#[test]
fn report_without_replay_or_scores_says_so_instead_of_plotting() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let empty = ReportInput {
        title: "empty".into(),
        series: &[],
        forecasts: &[],
        scores: &[],
        series_scores: &[],
        replay: None,
    };
    let (_, html) = write(dir.path(), &empty);
    assert_eq!(html.matches("<svg").count(), 0);
    assert!(html.contains("No model was scored."));
    assert!(html.contains("No decision replay was run"));
    assert!(html.contains("calibration cannot be measured"));

    // Scores but a replay without timelines: the tables stay, the timeline is a sentence.
    let replay = ReplayReport { policies: f.replay.policies.clone(), ..ReplayReport::default() };
    let no_timeline = ReportInput { replay: Some(&replay), ..input(&f) };
    let (_, html) = write(dir.path(), &no_timeline);
    assert!(html.contains("<td>reactive</td>"));
    assert!(html.contains("The replay recorded no timeline."));
    assert!(html.matches("<svg").count() >= 4);
}

/// The first Chromium on PATH.
fn chromium() -> Option<PathBuf> {
    ["chromium", "chromium-browser", "google-chrome"].iter().find_map(|name| {
        std::env::var_os("PATH")?.to_str()?.split(':').map(|d| Path::new(d).join(name)).find(|p| p.is_file())
    })
}

/// What a Chromium run printed.
struct Printed {
    success: bool,
    stdout: String,
    stderr: String,
}

/// Runs headless Chromium with `args` (plus the page), killing it after two minutes.
/// Output goes to files: a pipe nobody reads while waiting would fill and stall the browser.
fn run_chromium(bin: &Path, profile: &Path, args: &[String], page: &str) -> Printed {
    let (out_path, err_path) = (profile.with_extension("stdout"), profile.with_extension("stderr"));
    let mut child = Command::new(bin)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(page)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{} did not finish within 120 s", bin.display());
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let read = |p: &Path| String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default()).into_owned();
    Printed { success: status.success(), stdout: read(&out_path), stderr: read(&err_path) }
}

#[test]
fn report_renders_in_headless_chromium() {
    let Some(bin) = chromium() else {
        if std::env::var("HEADROOM_SKIP_BROWSER").as_deref() == Ok("1") {
            eprintln!("skipped: no chromium on PATH and HEADROOM_SKIP_BROWSER=1");
            return;
        }
        panic!(
            "no chromium or chromium-browser on PATH: install it (`apt-get install chromium`, as scripts/test.sh \
             does) or set HEADROOM_SKIP_BROWSER=1 to skip this test"
        );
    };
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = write(dir.path(), &input(&f));
    let page = format!("file://{}", path.display());
    let profile = dir.path().join("profile");

    // The DOM the browser built holds the tables and the plots.
    let out = run_chromium(&bin, &profile, &["--dump-dom".into()], &page);
    let dom = &out.stdout;
    assert!(out.success, "chromium --dump-dom failed: {}", out.stderr);
    assert!(dom.contains("Forecast accuracy") && dom.contains("<td>snaive-daily</td>"), "DOM:\n{dom:.2000}");
    assert!(dom.matches("<svg").count() >= 6);

    // A screenshot: the report and, for scale, an empty page of the same size.
    let shot = |name: &str, page: &str| {
        let png = dir.path().join(name);
        let out = run_chromium(
            &bin,
            &profile,
            &[format!("--screenshot={}", png.display()), "--window-size=1400,3000".into()],
            page,
        );
        assert!(png.is_file(), "chromium wrote no screenshot: {}", out.stderr);
        let bytes = std::fs::read(&png).unwrap();
        assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "{name} is not a PNG");
        bytes.len()
    };
    let blank_page = dir.path().join("blank.html");
    std::fs::write(&blank_page, "<!DOCTYPE html><html><body></body></html>").unwrap();
    let blank = shot("blank.png", &format!("file://{}", blank_page.display()));
    let report = shot("report.png", &page);
    // HEADROOM_KEEP_SCREENSHOT=/tmp/report.png keeps the screenshot (and the page beside it) to look at.
    if let Some(keep) = std::env::var_os("HEADROOM_KEEP_SCREENSHOT").map(PathBuf::from) {
        std::fs::copy(dir.path().join("report.png"), &keep).unwrap();
        std::fs::copy(&path, keep.with_extension("html")).unwrap();
    }
    // Text, tables and plots compress far worse than a white page.
    assert!(report > 50_000 && report > 5 * blank, "report screenshot {report} bytes, blank page {blank} bytes");
}
