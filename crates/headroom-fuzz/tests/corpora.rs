//! Replays every fuzz input kept in the repository through its target, on
//! stable Rust: `fuzz/corpus/<target>/` (the minimized corpora) and
//! `fuzz/artifacts/<target>/` (crashes, hangs and huge allocations once
//! found). A crash once found stays fixed; a panic here names the file.
//!
//! A target whose corpus directory is missing or empty fails, so this test
//! cannot pass on nothing.

use std::path::{Path, PathBuf};

use headroom_fuzz::TARGETS;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// The regular files directly in `dir`, sorted; empty if `dir` does not exist.
fn files_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut files: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).filter(|p| p.is_file()).collect();
    files.sort();
    files
}

/// Runs every file through `run`; returns one line per file that panics.
fn replay(target: &str, run: fn(&[u8]), files: &[PathBuf]) -> Vec<String> {
    let mut failures = Vec::new();
    for file in files {
        let data = std::fs::read(file).unwrap();
        if let Err(panic) = std::panic::catch_unwind(|| run(&data)) {
            let why = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("?");
            let name = file.strip_prefix(fuzz_dir()).unwrap_or(file).display().to_string();
            failures.push(format!(
                "{target}: {name}: {why}\n  reproduce: cd fuzz && cargo +nightly fuzz run -s none {target} {name}"
            ));
        }
    }
    failures
}

#[test]
fn every_corpus_file_and_artifact_runs_clean() {
    let mut missing = Vec::new();
    let mut failures = Vec::new();
    for (target, run) in TARGETS {
        let corpus = files_in(&fuzz_dir().join("corpus").join(target));
        if corpus.is_empty() {
            missing.push(target);
            continue;
        }
        let artifacts = files_in(&fuzz_dir().join("artifacts").join(target));
        failures.extend(replay(target, run, &corpus));
        failures.extend(replay(target, run, &artifacts));
        println!("{target}: {} corpus files, {} artifacts", corpus.len(), artifacts.len());
    }
    assert!(missing.is_empty(), "fuzz/corpus/<target>/ is missing or empty for {missing:?}");
    assert!(failures.is_empty(), "{} fuzz input(s) panic:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn every_fuzz_target_is_listed() {
    let dir = fuzz_dir().join("fuzz_targets");
    let mut on_disk: Vec<String> =
        files_in(&dir).iter().filter_map(|p| p.file_stem().and_then(|s| s.to_str()).map(str::to_owned)).collect();
    on_disk.sort();
    let mut listed: Vec<String> = TARGETS.iter().map(|(t, _)| (*t).to_owned()).collect();
    listed.sort();
    assert_eq!(on_disk, listed, "fuzz/fuzz_targets/*.rs and headroom_fuzz::TARGETS must name the same targets");
}
