//! Several `headroom collect files … --store DIR` processes writing one store
//! at once, as a user running two collections by hand (or two cron jobs) would:
//! every point of every process ends up in the store, and every process exits 0.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use headroom_collect::store::{Query, Store};

/// Processes started at once on one store.
const WRITERS: usize = 4;
/// Series every writer adds points to (the ones a race would lose points of).
const SHARED: usize = 40;
/// Points per writer and series.
const POINTS: usize = 800;
/// 2023-11-14T22:13:20Z, in ms.
const T0: i64 = 1_700_000_000_000;
const MINUTE: i64 = 60_000;

/// Writer `w`'s point `k`: interleaved timestamps no other writer uses, and a value that says who wrote it.
fn point(w: usize, k: usize) -> (i64, f64) {
    (T0 + (k * WRITERS + w) as i64 * MINUTE, (w * 1_000_000 + k) as f64)
}

/// Writer `w`'s input: its points of every shared series, and one series of its own.
/// Long layout, epoch-ms timestamps: `SHARED + 1` series × `POINTS` rows.
fn input(dir: &Path, w: usize) -> PathBuf {
    let mut csv = String::from("timestamp,entity,metric,value\n");
    let entities = (0..SHARED).map(|s| format!("shared/s{s:02}")).chain([format!("own/w{w}")]);
    for entity in entities {
        for k in 0..POINTS {
            let (t, v) = point(w, k);
            writeln!(csv, "{t},{entity},cpu,{v}").unwrap();
        }
    }
    let path = dir.join(format!("w{w}.csv"));
    std::fs::write(&path, csv).unwrap();
    path
}

#[test]
fn concurrent_collections_into_one_store_keep_every_point() {
    let dir = tempfile::tempdir().unwrap();
    let inputs: Vec<PathBuf> = (0..WRITERS).map(|w| input(dir.path(), w)).collect();

    for round in 0..3 {
        let store = dir.path().join(format!("store-{round}"));
        let children: Vec<_> = inputs
            .iter()
            .map(|csv| {
                Command::new(env!("CARGO_BIN_EXE_headroom"))
                    .args(["collect", "files", csv.to_str().unwrap(), "--time-unit", "ms", "--output", "json"])
                    .arg("--store")
                    .arg(&store)
                    .current_dir(dir.path())
                    .env_remove("HEADROOM_STORE")
                    .env_remove("HEADROOM_LOG")
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let mut stderr = String::new();
        for (w, child) in children.into_iter().enumerate() {
            let out = child.wait_with_output().unwrap();
            let text = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "round {round}: writer {w} failed ({}):\n{text}", out.status);
            writeln!(stderr, "writer {w}:\n{text}").unwrap();
        }

        let stored = Store::open(&store).unwrap().read(&Query::default()).unwrap().series().unwrap();
        assert_eq!(stored.len(), SHARED + WRITERS, "round {round}: series in the store\n{stderr}");
        let mut total = 0;
        for s in &stored {
            let writers: Vec<usize> = match s.key.entity.strip_prefix("own/w") {
                Some(w) => vec![w.parse().unwrap()],
                None => (0..WRITERS).collect(),
            };
            let mut want: Vec<(i64, f64)> =
                writers.iter().flat_map(|&w| (0..POINTS).map(move |k| point(w, k))).collect();
            want.sort_by_key(|p| p.0);
            let got: Vec<(i64, f64)> = s.ts.iter().copied().zip(s.values.iter().copied()).collect();
            assert_eq!(
                got.len(),
                want.len(),
                "round {round}: {} holds {} of its {} points\n{stderr}",
                s.key,
                got.len(),
                want.len()
            );
            assert!(got == want, "round {round}: {} holds other points than were written", s.key);
            total += got.len();
        }
        assert_eq!(total, WRITERS * (SHARED + 1) * POINTS);
    }
}
