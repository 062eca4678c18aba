//! The resampler against pandas on the shipped sample: `resample('15min').mean()`
//! per series (what the reference scorer does) gives the same bins and values.

use std::path::Path;
use std::process::Command;

use headroom_collect::files::{FileOptions, read_file};
use headroom_collect::resample::{ResampleConfig, resample_frame};
use headroom_core::ResampledSeries;
use polars::prelude::ParquetWriter;

#[test]
fn fifteen_minute_means_match_pandas_on_the_sample() {
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/sample/metrics.parquet");
    let frame = read_file(&sample, &FileOptions::default()).unwrap();
    let cfg = ResampleConfig { step_ms: 15 * 60_000, ..ResampleConfig::default() };
    let ours = resample_frame(&frame, &cfg).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("ours.parquet");
    let mut df = ResampledSeries::to_frame(&ours).unwrap();
    ParquetWriter::new(std::fs::File::create(&out).unwrap()).finish(&mut df).unwrap();

    let script = r#"
import sys
import numpy as np, pandas as pd
raw, ours = pd.read_parquet(sys.argv[1]), pd.read_parquet(sys.argv[2])
ref = (raw.set_index("timestamp").groupby(["entity", "metric"])["value"].resample("15min").mean().reset_index())
m = ref.merge(ours, on=["entity", "metric", "timestamp"], how="outer", suffixes=("_pandas", "_ours"), indicator=True)
only = (m["_merge"] != "both").sum()
both = m[m["_merge"] == "both"]
measured = both["value_pandas"].notna()
diff = (both.loc[measured, "value_pandas"] - both.loc[measured, "value_ours"]).abs().max()
filled = (~measured & both["value_ours"].notna()).sum()
imputed_ok = bool((both.loc[~measured & both["value_ours"].notna(), "imputed"]).all())
print(len(ref), len(ours), int(only), f"{diff:.3e}", int(filled), imputed_ok)
"#;
    let py = Command::new("python3")
        .args(["-c", script])
        .arg(&sample)
        .arg(&out)
        .output()
        .expect("python3 with pandas and pyarrow (scripts/test.sh installs them)");
    assert!(py.status.success(), "pandas failed: {}", String::from_utf8_lossy(&py.stderr));
    let said = String::from_utf8_lossy(&py.stdout);
    eprintln!("pandas bins, our bins, one-sided, max diff, filled by us, all marked imputed: {said}");
    let cells: Vec<&str> = said.split_whitespace().collect();
    assert_eq!(cells.len(), 6, "{said}");
    assert_eq!(cells[0], "650046", "pandas bins: {said}");
    assert_eq!(cells[1], "650046", "our bins: {said}");
    assert_eq!(cells[2], "0", "bins on one side only: {said}");
    assert!(cells[3].parse::<f64>().unwrap() <= 1e-9, "largest difference where pandas has a mean: {said}");
    // Bins pandas leaves empty are ours only when interpolated, and marked so.
    assert_eq!(cells[5], "True", "{said}");
}
