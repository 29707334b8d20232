//! The committed seed corpus: each target's seeds are made from real encoded values and kept
//! under `corpus/<target>/` (written once, when the test runs with `SWITCHYARD_WRITE_SEEDS=1`); every corpus file (seeds, and inputs that once crashed) runs
//! through its target without a panic.
//!
//! `SWITCHYARD_WRITE_SEEDS=1 cargo test` (from `fuzz/`) rewrites the seeds after a format change.

use std::fs;

use switchyard_fuzz::{TARGETS, corpus_dir, run, seeds};

#[test]
fn every_target_has_its_seeds_committed() {
    let write = std::env::var_os("SWITCHYARD_WRITE_SEEDS").is_some();
    for target in TARGETS {
        let made = seeds(target);
        assert!(!made.is_empty(), "`{target}` has no seeds");
        let dir = corpus_dir(target);
        for (name, bytes) in made {
            let path = dir.join(&name);
            if write {
                fs::create_dir_all(&dir).unwrap();
                fs::write(&path, &bytes).unwrap();
            }
            // Messages carry fresh ids and times, so a seed is never the same twice: only its
            // presence is checked.
            assert!(
                path.is_file(),
                "{} is missing: run with SWITCHYARD_WRITE_SEEDS=1",
                path.display()
            );
        }
    }
}

#[test]
fn every_corpus_file_runs_through_its_target() {
    for target in TARGETS {
        for entry in fs::read_dir(corpus_dir(target)).unwrap() {
            let path = entry.unwrap().path();
            assert!(
                run(target, &fs::read(&path).unwrap()),
                "unknown target {target}"
            );
        }
    }
}
