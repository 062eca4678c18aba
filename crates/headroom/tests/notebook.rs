//! `notebooks/backtest.ipynb` as an analyst runs it: a small real backtest into
//! a temporary directory, then the notebook executed headless on its output
//! (it must run without error, agree with the scores the backtest wrote,
//! draw its plots, and read saturation from the limits the backtest read).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

fn ok(what: &str, out: &Output) -> String {
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{what} failed: {}\nstdout:\n{stdout}\nstderr:\n{stderr}", out.status);
    stdout.into_owned()
}

fn python(script: &str, args: &[&Path], envs: &[(&str, &Path)]) -> Output {
    Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .envs(envs.iter().map(|(k, v)| (*k, *v)))
        .output()
        .expect("running python3")
}

/// Three NAB series of the sample (14 days of 5-minute points each) and their limits.
const SMALL_DATA: &str = r#"
import sys
import pandas as pd
src, dst, limits = sys.argv[1:4]
m = pd.read_parquet(src)
keys = m[m["entity"].str.startswith("nab/")][["entity", "metric"]].drop_duplicates().sort_values("entity").head(3)
m.merge(keys).to_parquet(dst, index=False)
keys.assign(threshold=80.0).to_csv(limits, index=False)
print(len(keys))
"#;

/// Executes the notebook in place of a person (kernel in `notebooks/`), saving the result.
const EXECUTE: &str = r#"
import sys
from pathlib import Path
import nbclient
import nbformat
src, dst = sys.argv[1:3]
nb = nbformat.read(src, as_version=4)
where = {"metadata": {"path": str(Path(src).parent)}}
client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3", resources=where)
try:
    client.execute()
finally:
    nbformat.write(nb, dst)
"#;

#[test]
fn the_backtest_notebook_reproduces_the_headline_table() {
    let deps = "import pandas, pyarrow, matplotlib, nbclient, nbformat, ipykernel";
    let check = Command::new("python3").args(["-c", deps]).output().expect("running python3");
    assert!(
        check.status.success(),
        "the notebook needs pandas, pyarrow, matplotlib, nbclient, nbformat and ipykernel \
         (scripts/test.sh installs them: python3 -m pip install pandas pyarrow matplotlib nbclient nbformat ipykernel):\n{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let root = repo();
    let dir = tempfile::tempdir().unwrap();
    let (data, limits, out) =
        (dir.path().join("metrics.parquet"), dir.path().join("limits.csv"), dir.path().join("out"));
    let n = ok(
        "writing the small data",
        &python(SMALL_DATA, &[&root.join("data/sample/metrics.parquet"), &data, &limits], &[]),
    );
    assert_eq!(n.trim(), "3");

    let backtest = Command::new(env!("CARGO_BIN_EXE_headroom"))
        .args(["backtest", "--models", "snaive-daily,last", "--data"])
        .arg(&data)
        .arg("--limits")
        .arg(&limits)
        .arg("--out")
        .arg(&out)
        .current_dir(&root)
        .output()
        .unwrap();
    ok("headroom backtest", &backtest);
    assert!(out.join("forecasts.parquet").is_file());

    let executed = dir.path().join("executed.ipynb");
    let run = python(
        EXECUTE,
        &[&root.join("notebooks/backtest.ipynb"), &executed],
        &[("HEADROOM_OUT", &out), ("HEADROOM_DATA", &data), ("HEADROOM_LIMITS", &limits)],
    );
    ok("executing notebooks/backtest.ipynb", &run);

    let nb: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&executed).unwrap()).unwrap();
    let outputs: Vec<&serde_json::Value> =
        nb["cells"].as_array().unwrap().iter().filter_map(|c| c["outputs"].as_array()).flatten().collect();
    let text: String = outputs
        .iter()
        .flat_map(|o| [&o["text"], &o["data"]["text/plain"]])
        .flat_map(|t| match t {
            serde_json::Value::String(s) => vec![s.clone()],
            serde_json::Value::Array(lines) => lines.iter().filter_map(|l| l.as_str().map(str::to_owned)).collect(),
            _ => vec![],
        })
        .collect();
    let images = outputs.iter().filter(|o| o["data"]["image/png"].is_string()).count();
    assert!(images >= 2, "{images} plots in the executed notebook:\n{text}");
    // The headline table names both models; the scores the backtest wrote agree with the notebook's.
    assert!(text.contains("mean MASE") && text.contains("snaive-daily") && text.contains("last"), "{text}");
    if out.join("scores.json").is_file() {
        assert!(text.contains("scores.json: every model's scores agree"), "{text}");
        // Saturation at every recall, for both models, agreeing with the
        // backtest's own precision at recall >= 0.95 and >= 0.99.
        assert!(text.contains("recall >= 0.97") && text.contains("P at the threshold"), "{text}");
        assert!(text.contains("scores.json: sat_p90_precision_at_recall agrees (4 values,"), "{text}");
    }
    if out.join("scores.parquet").is_file() {
        assert!(text.contains("rows agree with the scores computed here"), "{text}");
    } else {
        eprintln!("note: the backtest wrote no scores.parquet; the notebook computed the table itself");
    }
}
