//! The SQLite store against the public conformance suite, in memory and on disk.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Tests fail loudly.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use switchyard_sqlite::SqliteStore;

/// A new database file under Cargo's scratch directory for integration tests.
fn fresh_file() -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("sqlite-conformance");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!(
        "{}-{}.db",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    path
}

mod on_disk {
    use super::*;

    switchyard_aggregates::event_store_conformance!(async {
        SqliteStore::open(fresh_file()).unwrap()
    });
}

mod in_memory {
    use super::*;

    switchyard_aggregates::event_store_conformance!(async { SqliteStore::in_memory().unwrap() });
}
