//! Repository rules, checked by `cargo test` (and so by `cargo xtask test`): every source file
//! says what it is, library crates deny missing docs and unsafe code, no test is skipped or
//! expects a panic, and no unfinished work is left in library code; the docs keep in step with
//! the crates, guides and examples ([`docs`]); the modules of every crate import one way only
//! ([`imports`]); SQL lives in `.sql` files ([`sql`]).

mod docs;
mod imports;
mod sql;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::run::root;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|name| name == "target") {
                continue;
            }
            rust_files(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
}

/// Every `.rs` file of `crates/`, `examples/` and `xtask/` with its text, sorted by path: read
/// once for all the tidy tests of this run.
fn sources() -> &'static [(PathBuf, String)] {
    static SOURCES: OnceLock<Vec<(PathBuf, String)>> = OnceLock::new();
    SOURCES.get_or_init(|| {
        let mut files = Vec::new();
        for dir in ["crates", "examples", "xtask"] {
            rust_files(&root().join(dir), &mut files);
        }
        files.sort();
        files
            .into_iter()
            .map(|path| {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                (path, text)
            })
            .collect()
    })
}

/// The library crates under `crates/`, by folder name; there is at least one.
fn library_crates() -> Vec<String> {
    let crates = crate::run::library_crates().unwrap_or_default();
    assert!(!crates.is_empty(), "no crate found under crates/");
    crates
}

/// The source files under `src`, each with its text, in path order.
fn sources_under(src: &Path) -> impl Iterator<Item = &'static (PathBuf, String)> {
    let src = src.to_path_buf();
    sources()
        .iter()
        .filter(move |(path, _)| path.starts_with(&src))
}

fn relative(path: &Path) -> String {
    path.strip_prefix(root())
        .unwrap_or(path)
        .display()
        .to_string()
}

#[test]
fn every_source_file_opens_with_a_module_doc() {
    let missing: Vec<String> = sources()
        .iter()
        .filter(|(_, text)| !text.trim_start().starts_with("//!"))
        .map(|(path, _)| relative(path))
        .collect();
    assert!(
        missing.is_empty(),
        "files without a `//!` opening: {missing:?}"
    );
}

#[test]
fn no_test_is_skipped_or_expects_a_panic() {
    // Split so this file does not match itself.
    let banned = [concat!("#[ig", "nore"), concat!("#[should_", "panic")];
    let found: Vec<String> = sources()
        .iter()
        .filter(|(_, text)| banned.iter().any(|b| text.contains(b)))
        .map(|(path, _)| relative(path))
        .collect();
    assert!(found.is_empty(), "assert the error instead: {found:?}");
}

#[test]
fn library_code_has_no_unfinished_work() {
    let banned = [concat!("to", "do!("), concat!("unimple", "mented!(")];
    let found: Vec<String> = sources()
        .iter()
        .filter(|(path, _)| relative(path).contains("/src/"))
        .filter(|(_, text)| banned.iter().any(|b| text.contains(b)))
        .map(|(path, _)| relative(path))
        .collect();
    assert!(found.is_empty(), "unfinished work in: {found:?}");
}

#[test]
fn every_library_crate_denies_missing_docs_and_forbids_unsafe() {
    let crates = library_crates();
    for name in crates {
        let dir = root().join("crates").join(&name);
        let lib = std::fs::read_to_string(dir.join("src/lib.rs")).unwrap_or_default();
        assert!(
            lib.contains("#![deny(missing_docs)]"),
            "{name}: missing_docs not denied"
        );
        assert!(
            lib.contains("#![forbid(unsafe_code)]"),
            "{name}: unsafe_code not forbidden"
        );
        let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap_or_default();
        assert!(
            manifest.contains("[lints]\nworkspace = true"),
            "{name}: Cargo.toml does not take the workspace lints"
        );
    }
}

#[test]
fn the_ci_script_runs_the_readme_test_command() {
    let ci = std::fs::read_to_string(root().join(".ci/run")).unwrap_or_default();
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap_or_default();
    assert!(
        ci.contains("cargo xtask test"),
        ".ci/run must call `cargo xtask test`"
    );
    assert!(
        readme.contains("cargo xtask test"),
        "the README must give `cargo xtask test`"
    );
}
