//! One decide/act step of the runner over many targets with fresh forecasts
//! (what the daemon's act job does every minute), against the decide step
//! alone on the same data: `cargo bench -p headroom-engine --bench step [-- RUNS]`.
//!
//! Each target is a dry-run Kubernetes workload with two days of CPU at
//! 15-minute steps; one in a hundred peaks above its level within the lead
//! time. Forecasts (daily seasonal naive, and one day earlier for the health
//! check) are made once, before timing, as the daemon's forecast job does
//! hourly. A step is timed from the raw samples: resampling the targets'
//! series, detectors and policy per target, settling, and every decision
//! with an action written to a real audit log (intent fsynced, then outcome).
//! Each timed run is a minute after the previous one, as in the daemon.

use std::collections::BTreeMap;
use std::time::Instant;

use headroom_actuate::{AuditLog, AuditOptions};
use headroom_core::{Interrupt, Limits, SeriesData};
use headroom_engine::runner::{self, Data, Forecasting, Reach};
use headroom_engine::{ModelSet, Settings};
use headroom_remediate::Config;
use headroom_remediate::config::{Platform, Target};

const STEP: i64 = 15 * 60_000;
const DAY: i64 = 86_400_000;
const NOW: i64 = 1_796_256_000_000; // 2026-12-03T00:00:00Z, a multiple of the step

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn world(n: usize) -> (Config, Vec<SeriesData>) {
    let mut targets = Vec::with_capacity(n);
    let mut raw = Vec::with_capacity(n);
    for i in 0..n {
        let mut t =
            Target::new(&format!("app-{i}"), Platform::Kubernetes, &format!("k8s/bench/deployment/app-{i}"), "cpu");
        t.capacity = Some(1.0);
        t.replicas = Some(3);
        let peak = if i % 100 == 0 { 1.1 } else { 0.6 };
        let ts: Vec<i64> = (0..2 * DAY / STEP + 1).map(|k| NOW - 2 * DAY + k * STEP).collect();
        // A daily peak two hours after midnight (two hours after now).
        let values = ts
            .iter()
            .map(|&t| {
                let h = ((t - 2 * 3_600_000).rem_euclid(DAY)) as f64 / 3_600_000.0;
                let off = h.min(24.0 - h);
                0.3 + (peak - 0.3) * (-off * off / 4.0).exp() + (i % 7) as f64 * 1e-3
            })
            .collect();
        raw.push(SeriesData {
            key: headroom_core::SeriesKey { entity: t.entity.clone(), metric: "cpu".into() },
            ts,
            values,
        });
        targets.push(t);
    }
    (Config { targets, ..Settings::parse("", std::path::Path::new("bench.toml")).unwrap().policy }, raw)
}

fn main() {
    let runs: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(5);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let models = ModelSet::load("snaive-daily", std::path::Path::new("models/default")).unwrap();
    for n in [1_000, 10_000] {
        let (cfg, raw) = world(n);
        let limits = Limits::new();
        let data = Data { raw: &raw, limits: &limits };
        let made = Instant::now();
        let forecasts = runner::forecast(&data, &models, &cfg, NOW).unwrap();
        let forecast_s = made.elapsed().as_secs_f64();
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = AuditLog::open(dir.path().join("audit.jsonl"), AuditOptions::default()).unwrap();
        let (mut decide, mut step) = (Vec::new(), Vec::new());
        let mut acted = 0;
        for r in 0..runs {
            let now = NOW + 60_000 * r as i64;
            let t0 = Instant::now();
            let report =
                runner::plan(&data, Forecasting::Made(&forecasts), &cfg, &BTreeMap::new(), &BTreeMap::new(), now)
                    .unwrap();
            decide.push(t0.elapsed().as_secs_f64());
            assert_eq!(report.plan.decisions.len(), n);
            let t1 = Instant::now();
            let s = rt
                .block_on(runner::step(
                    &data,
                    Forecasting::Made(&forecasts),
                    &cfg,
                    &mut log,
                    &Reach::none(),
                    now,
                    &Interrupt::new(),
                ))
                .unwrap();
            step.push(t1.elapsed().as_secs_f64());
            acted += s.executed.iter().filter(|e| e.outcome.is_some()).count();
        }
        let (d, s) = (median(decide), median(step));
        println!(
            "targets={n} runs={runs} forecast_once_s={forecast_s:.3} decide_s={d:.3} step_s={s:.3} step/decide={:.2} actions_recorded={acted}",
            s / d
        );
    }
}
