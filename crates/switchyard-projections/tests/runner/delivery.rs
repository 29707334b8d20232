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

/// The memory store, counting the pages read from its global order.
struct CountingReads {
    store: MemoryStore,
    reads: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl switchyard_aggregates::store::GlobalReader for CountingReads {
    fn read_all(
        &self,
        from_position: u64,
        limit: usize,
    ) -> futures::future::BoxFuture<
        '_,
        Result<
            Vec<switchyard_aggregates::store::RecordedEvent>,
            switchyard_aggregates::store::StoreError,
        >,
    > {
        self.reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.store.read_all(from_position, limit)
    }

    fn watch_head(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        self.store.watch_head()
    }
}

/// Applies its first batch only once the runner asked the store for the page after it: the
/// next batch is read while one is applied.
struct WaitsForTheNextRead {
    reads: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    batches: usize,
}

impl switchyard_projections::Projection for WaitsForTheNextRead {
    type Event = Ledger;

    async fn apply(
        &mut self,
        _: &[switchyard_aggregates::DecodedEvent<Ledger>],
    ) -> Result<(), switchyard_projections::BoxError> {
        self.batches += 1;
        if self.batches > 1 {
            return Ok(());
        }
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        while self.reads.load(std::sync::atomic::Ordering::SeqCst) < 2 {
            if tokio::time::Instant::now() > deadline {
                return Err(format!("batch {} applied with no read ahead", self.batches).into());
            }
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_batch_is_read_while_one_is_applied() {
    let store = MemoryStore::new();
    for n in 0..8_u64 {
        deposit(&store, 1, n).await;
    }
    let reads = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counting = CountingReads {
        store: store.clone(),
        reads: reads.clone(),
    };
    let runner = ProjectionRunner::builder(
        "ahead",
        WaitsForTheNextRead {
            reads: reads.clone(),
            batches: 0,
        },
        std::sync::Arc::new(counting)
            as std::sync::Arc<dyn switchyard_aggregates::store::GlobalReader>,
        MemoryCheckpointStore::new(),
    )
    .aggregate::<Account>()
    .batch_size(4)
    .retry(fast_retry())
    .start()
    .unwrap();
    let head = head(&store).await;
    eventually("the runner to apply both batches", || {
        runner.caught_up_to(head)
    })
    .await;
    let projection = runner.stop().await.unwrap();
    assert_eq!(projection.batches, 2);
}
