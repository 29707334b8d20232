//! What every Switchyard benchmark shares, included by each with
//! `#[path = "../../../benches/support.rs"] mod support;`: the runtime they measure on, the
//! median of alternating rounds, and where their Markdown section goes for `cargo xtask bench`.

// Each bench uses the part it needs.
#![allow(dead_code)]

use std::path::PathBuf;

use tokio::runtime::Runtime;

/// The runtime every bench measures on: two workers, as many as the machine has cores.
pub(crate) fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// The median of `values` (the upper one of an even count).
pub(crate) fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    sorted[sorted.len() / 2]
}

/// Cargo's target directory: `CARGO_TARGET_DIR`, else three levels above the bench binary
/// (`target/release/deps/`).
pub(crate) fn target_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.ancestors().nth(3).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("target"))
}

/// Writes a bench's section where `cargo xtask bench` collects them (`SWITCHYARD_BENCH_OUT`,
/// else `target/switchyard-bench/`), named `file` (`NN-name.md`, in report order).
pub(crate) fn write_section(file: &str, text: &str) {
    let out_dir = std::env::var("SWITCHYARD_BENCH_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|_| target_dir().join("switchyard-bench"));
    std::fs::create_dir_all(&out_dir).expect("the bench output directory");
    std::fs::write(out_dir.join(file), text).expect("the bench section");
}
