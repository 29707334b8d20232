//! The takeover on SQLite, on disk: the event store and the checkpoint store in one file.

use switchyard_sqlite::SqliteStore;

use crate::takeover::one_dies_mid_batch_and_the_other_takes_over;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sqlite_on_disk_one_dies_mid_batch_and_the_other_takes_over() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("store.db")).unwrap();
    one_dies_mid_batch_and_the_other_takes_over(store.clone(), store).await;
}
