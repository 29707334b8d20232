//! Rebuilds: reset, replay from the origin, progress reported; lag.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use switchyard_aggregates::store::MemoryStore;
use switchyard_projections::checkpoint::{Acquire, CheckpointStore};
use switchyard_projections::{MemoryCheckpointStore, ProjectionRunner, RebuildProgress};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_resets_the_read_model_replays_everything_and_equals_the_incremental_run() {
    let store = MemoryStore::new();
    let checkpoints = MemoryCheckpointStore::new();
    for n in 0..25 {
        deposit(&store, n % 4, u64::from(n)).await;
        if n % 3 == 0 {
            unrelated(&store).await;
        }
    }
    let head = head(&store).await;
    let seen = Seen::default();
    let start = |builder: switchyard_projections::ProjectionRunnerBuilder<Recorder>| {
        builder
            .aggregate::<Account>()
            .batch_size(4)
            .start()
            .unwrap()
    };
    let builder = || {
        ProjectionRunner::builder(
            "ledger",
            Recorder::new(&seen),
            store.clone(),
            checkpoints.clone(),
        )
    };
    let incremental = start(builder());
    eventually("the incremental run", || incremental.caught_up_to(head)).await;
    incremental.stop().await.unwrap();
    let incremental_events = seen.events();

    // The same read model, rebuilt: reset first, so nothing is doubled.
    let reports: Arc<Mutex<Vec<RebuildProgress>>> = Arc::default();
    let report = reports.clone();
    let rebuilding =
        start(builder().rebuild(move |progress| report.lock().unwrap().push(*progress)));
    let finished = || reports.lock().unwrap().last().is_some_and(|p| p.finished);
    eventually("the rebuild to finish", finished).await;
    assert_eq!(seen.events(), incremental_events);

    let reports = reports.lock().unwrap().clone();
    assert!(reports.len() >= 2, "a first report, then one per batch");
    assert!(
        reports
            .windows(2)
            .all(|w| w[0].done <= w[1].done && w[0].events <= w[1].events)
    );
    assert!(reports.iter().all(|p| p.total == head));
    let last = reports.last().unwrap();
    assert_eq!((last.done, last.events, last.finished), (head, 25, true));
    assert_eq!(reports.iter().filter(|p| p.finished).count(), 1);
    assert_eq!(
        last.remaining,
        Some(Duration::ZERO).filter(|_| last.rate > 0.0)
    );

    // Live events after the rebuild.
    deposit(&store, 1, 99).await;
    eventually("the live event", || rebuilding.caught_up_to(head + 1)).await;
    assert_eq!(seen.events().len(), 26);
    rebuilding.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_of_an_empty_store_finishes_at_once() {
    let reports: Arc<Mutex<Vec<RebuildProgress>>> = Arc::default();
    let report = reports.clone();
    let runner = ProjectionRunner::builder(
        "ledger",
        Recorder::new(&Seen::default()),
        MemoryStore::new(),
        MemoryCheckpointStore::new(),
    )
    .aggregate::<Account>()
    .rebuild(move |progress| report.lock().unwrap().push(*progress))
    .start()
    .unwrap();
    eventually("the report", || !reports.lock().unwrap().is_empty()).await;
    let first = reports.lock().unwrap()[0];
    assert_eq!(
        (first.done, first.total, first.events, first.finished),
        (0, 0, 0, true)
    );
    runner.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lag_is_the_head_minus_the_position() {
    let store = MemoryStore::new();
    let checkpoints = MemoryCheckpointStore::new();
    for n in 0..5 {
        deposit(&store, 1, n).await;
    }
    // Another holder keeps the runner standing by at position 0.
    let now = SystemTime::now();
    let Acquire::Acquired(other) = checkpoints
        .acquire("ledger", "other", now, now + Duration::from_secs(3600))
        .await
        .unwrap()
    else {
        panic!("nobody held the lease");
    };
    let runner = ProjectionRunner::builder(
        "ledger",
        Recorder::new(&Seen::default()),
        store.clone(),
        checkpoints.clone(),
    )
    .aggregate::<Account>()
    .start()
    .unwrap();
    assert_eq!(runner.lag().await.unwrap(), 5);
    checkpoints.release(&other.token).await.unwrap();
    eventually("the runner to catch up", || runner.caught_up_to(5)).await;
    assert_eq!(runner.lag().await.unwrap(), 0);
    runner.stop().await.unwrap();
}
