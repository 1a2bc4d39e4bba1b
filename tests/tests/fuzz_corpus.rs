//! Replays the committed fuzz corpus (`fuzz/corpus/<target>/`) through the
//! same functions the cargo-fuzz binaries call, so every seed and every
//! regression input runs under plain `cargo test`, without nightly.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use sockeye_tests::fuzzing::{TARGETS, seeds};

/// `fuzz/` beside this crate.
fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// The files of a target's corpus, sorted. A missing or empty corpus fails:
/// a replay that replays nothing would pass whatever the core does.
fn corpus(target: &str) -> Vec<PathBuf> {
    let dir = fuzz_dir().join("corpus").join(target);
    let entries = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus of {target} at {}: {e}", dir.display()));
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.expect("readable corpus directory").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "the corpus of {target} is empty");
    files
}

#[test]
fn every_corpus_input_replays_cleanly() {
    let mut failures = Vec::new();
    for (target, run) in TARGETS {
        let files = corpus(target);
        for path in &files {
            let data = std::fs::read(path).expect("readable corpus file");
            // Catch each panic so that one run names every failing input.
            if catch_unwind(AssertUnwindSafe(|| run(&data))).is_err() {
                failures.push(path.display().to_string());
            }
        }
        println!("{target}: replayed {} inputs", files.len());
    }
    assert!(failures.is_empty(), "failing corpus inputs: {failures:#?}");
}

/// The fuzz package builds one binary per target, each calling the shared
/// function of the same name, so the fuzzer and this replay cannot drift.
#[test]
fn every_target_has_a_fuzz_binary() {
    let manifest = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).expect("fuzz/Cargo.toml");
    for (target, _) in TARGETS {
        assert!(
            manifest.contains(&format!("name = \"{target}\"")),
            "fuzz/Cargo.toml has no [[bin]] {target}"
        );
        let path = fuzz_dir().join("fuzz_targets").join(format!("{target}.rs"));
        let source =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(
            source.contains(&format!("sockeye_tests::fuzzing::{target}(")),
            "{} does not call sockeye_tests::fuzzing::{target}",
            path.display()
        );
    }
    let binaries = std::fs::read_dir(fuzz_dir().join("fuzz_targets"))
        .expect("fuzz/fuzz_targets")
        .count();
    assert_eq!(
        binaries,
        TARGETS.len(),
        "a fuzz target missing from TARGETS"
    );
}

/// Rewrites the `seed-*` files of the corpus. Deterministic; run it after
/// changing a target's input format or the seeds:
/// `cargo test -p sockeye-tests --test fuzz_corpus -- --ignored`.
#[test]
#[ignore = "writes fuzz/corpus; run by hand"]
fn generate_seed_corpus() {
    let counts = seeds::write(&fuzz_dir().join("corpus")).expect("writable corpus");
    for (target, count) in counts {
        println!("{target}: {count} seeds");
    }
}
