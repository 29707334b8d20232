//! Subscriptions on the SQLite store, in memory and on disk: the public suite, woken by the
//! writer after each commit.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Tests fail loudly.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use switchyard_aggregates::store::{
    EventAppender, EventMetadata, ExpectedVersion, GlobalReader, NewEvent,
};
use switchyard_projections::Subscription;
use switchyard_sqlite::SqliteStore;

/// A new database file under Cargo's scratch directory for integration tests.
fn fresh_file() -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("sqlite-subscriptions");
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

    switchyard_projections::subscription_conformance!(
        async { SqliteStore::open(fresh_file()).unwrap() },
        wakes
    );
}

mod in_memory {
    use super::*;

    switchyard_projections::subscription_conformance!(
        async { SqliteStore::in_memory().unwrap() },
        wakes
    );
}

fn event() -> NewEvent {
    NewEvent {
        event_type: "deposited".into(),
        schema_version: 1,
        data: vec![1].into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reopened_store_starts_from_its_head() {
    let path = fresh_file();
    let store = SqliteStore::open(&path).unwrap();
    for _ in 0..3 {
        store
            .append(
                "account-1",
                ExpectedVersion::Any,
                vec![event()],
                EventMetadata::default(),
            )
            .await
            .unwrap();
    }
    drop(store);
    let store = SqliteStore::open_existing(&path).unwrap();
    assert_eq!(store.head().await.unwrap(), 3);
    assert_eq!(*store.watch_head().unwrap().borrow(), 3);
    let mut subscription = Subscription::builder(store.clone())
        .from_head()
        .build()
        .await
        .unwrap();
    store
        .append(
            "account-1",
            ExpectedVersion::Any,
            vec![event()],
            EventMetadata::default(),
        )
        .await
        .unwrap();
    assert_eq!(subscription.next().await.unwrap().position, 4);
}
