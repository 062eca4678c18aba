//! The recorded series of `data/sample/metrics.parquet` (the ASD and NAB
//! series the repository ships), for tests that need real history.

use std::path::{Path, PathBuf};

use headroom_core::{SampleFrame, SeriesData};
use polars::prelude::{ParquetReader, SerReader};

/// 2024-01-01T00:00:00Z, where the recorded ASD series start.
pub const T0: i64 = 1_704_067_200_000;
/// One day in milliseconds.
pub const DAY: i64 = 86_400_000;

/// `data/sample/metrics.parquet` of this repository.
pub fn sample_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/sample/metrics.parquet")
}

/// Every recorded series of the sample, points sorted by time.
pub fn load_sample() -> Vec<SeriesData> {
    let path = sample_path();
    let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let df = ParquetReader::new(file).finish().unwrap();
    let mut series = SampleFrame::new(df).unwrap().series().unwrap();
    for s in &mut series {
        let mut order: Vec<usize> = (0..s.len()).collect();
        order.sort_by_key(|&i| s.ts[i]);
        s.ts = order.iter().map(|&i| s.ts[i]).collect();
        s.values = order.iter().map(|&i| s.values[i]).collect();
    }
    series
}

/// The points of `s` in `[from, to)`.
pub fn window(s: &SeriesData, from: i64, to: i64) -> SeriesData {
    let mut out = SeriesData::new(s.key.clone());
    for (&t, &v) in s.ts.iter().zip(&s.values) {
        if t >= from && t < to {
            out.push(t, v);
        }
    }
    out
}
