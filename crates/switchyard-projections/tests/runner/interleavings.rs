//! Property: writers on several tasks append in random interleavings while a runner projects
//! them; the projection sees every event exactly once, in global order, on the memory stores
//! and on SQLite.

use std::sync::Arc;

use proptest::prelude::*;
use switchyard_aggregates::store::{EventStore, MemoryStore};
use switchyard_projections::MemoryCheckpointStore;
use switchyard_projections::checkpoint::CheckpointStore;
use switchyard_projections::runner_conformance::{
    Script, a_runner_sees_every_event_once_in_order, writers,
};
use switchyard_sqlite::SqliteStore;

fn scripts() -> impl Strategy<Value = Vec<Script>> {
    prop::collection::vec(
        prop::collection::vec((0..3_u8, 1..4_u8, 0..3_u8), 1..10),
        1..5,
    )
}

fn check(
    store: Arc<dyn EventStore>,
    checkpoints: impl CheckpointStore + 'static,
    scripts: Vec<Script>,
    batch_size: usize,
) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let writers = writers(&store, scripts);
    runtime.block_on(a_runner_sees_every_event_once_in_order(
        store,
        checkpoints,
        batch_size,
        writers,
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn on_the_memory_stores_a_runner_sees_every_event_once_in_order(
        scripts in scripts(),
        batch_size in 1..6_usize,
    ) {
        check(Arc::new(MemoryStore::new()), MemoryCheckpointStore::new(), scripts, batch_size);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(8))]

    #[test]
    fn on_sqlite_a_runner_sees_every_event_once_in_order(
        scripts in scripts(),
        batch_size in 1..6_usize,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("store.db")).unwrap();
        check(Arc::new(store.clone()), store, scripts, batch_size);
    }
}
