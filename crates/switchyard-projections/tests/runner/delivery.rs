//! One runner: every event of its aggregate types, decoded, in order, in batches; retries.

use switchyard_aggregates::store::MemoryStore;
use switchyard_projections::checkpoint::CheckpointStore;
use switchyard_projections::{MemoryCheckpointStore, ProjectionRunner, RunnerError};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn it_delivers_the_events_of_its_aggregate_types_in_order_in_batches_and_checkpoints() {
    let store = MemoryStore::new();
    let checkpoints = MemoryCheckpointStore::new();
    for n in 0..10 {
        deposit(&store, n % 3, u64::from(n)).await;
        unrelated(&store).await;
        place(&store, n, u64::from(n)).await;
    }
    let seen = Seen::default();
    let runner = ProjectionRunner::builder(
        "ledger",
        Recorder::new(&seen),
        store.clone(),
        checkpoints.clone(),
    )
    .aggregate::<Account>()
    .aggregate::<Order>()
    .batch_size(4)
    .start()
    .unwrap();
    // Live events too, after the catch-up.
    deposit(&store, 9, 100).await;
    unrelated(&store).await;
    let head = head(&store).await;
    eventually("the runner to reach the head", || runner.caught_up_to(head)).await;

    let events = seen.events();
    assert_eq!(
        events.len(),
        21,
        "every deposit and order, no unrelated event"
    );
    assert!(
        events.windows(2).all(|w| w[0].0 < w[1].0),
        "in global order"
    );
    assert_eq!(events[0].1, Ledger::Account(AccountEvent::Deposited(0)));
    assert_eq!(events[1].1, Ledger::Order(Placed(0)));
    assert_eq!(events[20].1, Ledger::Account(AccountEvent::Deposited(100)));
    assert!(seen.batches() >= 6, "batches of at most 4");
    // The checkpoint passed the trailing unrelated event too.
    assert_eq!(checkpoints.load("ledger").await.unwrap(), head);
    assert!(runner.is_active());
    runner.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn it_goes_on_from_the_saved_checkpoint_after_a_stop() {
    let store = MemoryStore::new();
    let checkpoints = MemoryCheckpointStore::new();
    deposit(&store, 1, 1).await;
    deposit(&store, 1, 2).await;
    let seen = Seen::default();
    let start = || {
        ProjectionRunner::builder(
            "ledger",
            Recorder::new(&seen),
            store.clone(),
            checkpoints.clone(),
        )
        .aggregate::<Account>()
        .start()
        .unwrap()
    };
    let first = start();
    eventually("the first runner to catch up", || first.caught_up_to(2)).await;
    first.stop().await.unwrap();
    deposit(&store, 1, 3).await;
    let second = start();
    eventually("the second runner to catch up", || second.caught_up_to(3)).await;
    assert_eq!(
        seen.positions(),
        [1, 2, 3],
        "each once: the stop saved its checkpoint"
    );
    second.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_batch_is_retried_and_applied_once_it_succeeds() {
    let store = MemoryStore::new();
    deposit(&store, 1, 1).await;
    let seen = Seen::default();
    let recorder = Recorder {
        seen: seen.clone(),
        fail: 2,
        ..Recorder::new(&seen)
    };
    let runner = ProjectionRunner::builder(
        "ledger",
        recorder,
        store.clone(),
        MemoryCheckpointStore::new(),
    )
    .aggregate::<Account>()
    .retry(fast_retry())
    .start()
    .unwrap();
    eventually("the retried batch", || runner.caught_up_to(1)).await;
    assert_eq!((seen.failures(), seen.positions()), (2, vec![1]));
    runner.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_failing_past_its_retries_stops_the_runner_without_moving_the_checkpoint() {
    let store = MemoryStore::new();
    let checkpoints = MemoryCheckpointStore::new();
    deposit(&store, 1, 1).await;
    let seen = Seen::default();
    let recorder = Recorder {
        seen: seen.clone(),
        fail: usize::MAX,
        ..Recorder::new(&seen)
    };
    let runner = ProjectionRunner::builder("ledger", recorder, store.clone(), checkpoints.clone())
        .aggregate::<Account>()
        .retry(fast_retry())
        .start()
        .unwrap();
    eventually("the runner to give up", || runner.is_finished()).await;
    let Err(error) = runner.stop().await else {
        panic!("the runner stopped without an error")
    };
    assert!(
        matches!(
            error,
            RunnerError::Projection {
                first: 1,
                last: 1,
                attempts: 4,
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(checkpoints.load("ledger").await.unwrap(), 0);
    assert!(seen.positions().is_empty());
}

#[tokio::test]
async fn a_runner_without_aggregate_types_does_not_start() {
    let started = ProjectionRunner::builder(
        "ledger",
        Recorder::new(&Seen::default()),
        MemoryStore::new(),
        MemoryCheckpointStore::new(),
    )
    .start();
    assert!(matches!(started, Err(RunnerError::NoAggregates { .. })));
}
