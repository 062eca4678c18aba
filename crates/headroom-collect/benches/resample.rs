//! Load the shipped sample (1.95 M points, 157 series) and resample it to 15 minutes.
//!
//! `cargo bench --bench resample [-- RUNS]` prints the median of RUNS (default 7)
//! runs of each phase, as `key=value` pairs that `scripts/bench.sh` compares
//! against pandas (`read_parquet` + `resample('15min').mean()`) on the same file.

use std::path::Path;
use std::time::Instant;

use headroom_collect::files::{FileOptions, read_file};
use headroom_collect::resample::{ResampleConfig, resample_frame};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let runs: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(7);
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/sample/metrics.parquet");
    let cfg = ResampleConfig { step_ms: 15 * 60_000, ..ResampleConfig::default() };
    let (mut load, mut resample, mut total) = (Vec::new(), Vec::new(), Vec::new());
    let mut bins = 0;
    for _ in 0..runs {
        let t0 = Instant::now();
        let frame = read_file(&path, &FileOptions::default()).expect("read the sample");
        let t1 = Instant::now();
        let out = resample_frame(&frame, &cfg).expect("resample");
        let t2 = Instant::now();
        bins = out.iter().map(|s| s.values.len()).sum::<usize>();
        load.push((t1 - t0).as_secs_f64());
        resample.push((t2 - t1).as_secs_f64());
        total.push((t2 - t0).as_secs_f64());
    }
    println!(
        "headroom runs={runs} bins={bins} load_s={:.4} resample_s={:.4} total_s={:.4}",
        median(load),
        median(resample),
        median(total)
    );
}
