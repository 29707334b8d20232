//! Several runners of one projection: one active; another takes over from its checkpoint.

use std::time::Duration;

use switchyard_aggregates::store::{EventStore, MemoryStore};
use switchyard_projections::checkpoint::CheckpointStore;
use switchyard_projections::{MemoryCheckpointStore, ProjectionRunner};

use crate::leases::FaultyLeases;
use crate::support::*;

/// Short, so a dead runner's lease lapses soon; long against a renewal's round trip.
const TTL: Duration = Duration::from_millis(600);

fn runner(
    holder: &str,
    recorder: Recorder,
    store: &(impl EventStore + Clone + 'static),
    checkpoints: &(impl CheckpointStore + Clone + 'static),
) -> ProjectionRunner<Recorder> {
    ProjectionRunner::builder("ledger", recorder, store.clone(), checkpoints.clone())
        .aggregate::<Account>()
        .holder(holder)
        .batch_size(2)
        .lease_ttl(TTL)
        .retry(fast_retry())
        .start()
        .unwrap()
}

/// A runs, dies in the middle of a batch (its lease not released); B, standing by, takes
/// over once the lease lapses and goes on from A's checkpoint: A's unfinished batch again,
/// then the rest. Nothing skipped.
pub(crate) async fn one_dies_mid_batch_and_the_other_takes_over(
    store: impl EventStore + Clone + 'static,
    checkpoints: impl CheckpointStore + Clone + 'static,
) {
    for n in 0..10 {
        deposit(&store, 1, n).await;
    }
    let (seen_a, seen_b) = (Seen::default(), Seen::default());
    let a = runner(
        "runner-a",
        Recorder {
            hang_after: 2,
            ..Recorder::new(&seen_a)
        },
        &store,
        &checkpoints,
    );
    eventually("A to hang in its third batch", || seen_a.hung()).await;
    let b = runner("runner-b", Recorder::new(&seen_b), &store, &checkpoints);
    assert!(a.is_active());
    let saved = checkpoints.load("ledger").await.unwrap();
    assert_eq!((saved, seen_a.positions()), (4, vec![1, 2, 3, 4]));

    drop(a); // dies: nothing released, nothing saved
    for n in 10..12 {
        deposit(&store, 1, n).await;
    }
    let head = head(&store).await;
    eventually("B to take over and catch up", || b.caught_up_to(head)).await;
    assert!(b.is_active());
    assert_eq!(
        seen_b.positions(),
        (5..=head).collect::<Vec<_>>(),
        "from A's checkpoint on"
    );
    assert_eq!(checkpoints.load("ledger").await.unwrap(), head);
    b.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_memory_stores_one_dies_mid_batch_and_the_other_takes_over() {
    one_dies_mid_batch_and_the_other_takes_over(MemoryStore::new(), MemoryCheckpointStore::new())
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_lease_holder_applies_and_a_stop_hands_over_at_once() {
    let store = MemoryStore::new();
    let checkpoints = MemoryCheckpointStore::new();
    deposit(&store, 1, 1).await;
    let (seen_a, seen_b) = (Seen::default(), Seen::default());
    let a = runner("runner-a", Recorder::new(&seen_a), &store, &checkpoints);
    eventually("A to catch up", || a.caught_up_to(1)).await;
    // A hour-long lease: B can only get it because A releases it.
    let b = ProjectionRunner::builder(
        "ledger",
        Recorder::new(&seen_b),
        store.clone(),
        checkpoints.clone(),
    )
    .aggregate::<Account>()
    .holder("runner-b")
    .lease_ttl(Duration::from_secs(3600))
    .start()
    .unwrap();
    deposit(&store, 1, 2).await;
    eventually("A to apply the live event", || a.caught_up_to(2)).await;
    assert!(!b.is_active());
    assert!(seen_b.positions().is_empty());

    a.stop().await.unwrap();
    deposit(&store, 1, 3).await;
    eventually("B to take over", || b.caught_up_to(3)).await;
    assert_eq!(
        (seen_a.positions(), seen_b.positions()),
        (vec![1, 2], vec![3])
    );
    b.stop().await.unwrap();
}

/// A's renewals fail, its lease lapses and B takes over; A's next save is refused, and A stands
/// by instead of moving the checkpoint or stopping.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_whose_lease_lapsed_stands_by_once_its_save_is_refused() {
    let store = MemoryStore::new();
    let shared = FaultyLeases::default();
    deposit(&store, 1, 1).await;
    let (seen_a, seen_b) = (Seen::default(), Seen::default());
    let a = runner("runner-a", Recorder::new(&seen_a), &store, &shared);
    eventually("A to catch up", || a.caught_up_to(1)).await;
    shared
        .partitioned
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let b = runner("runner-b", Recorder::new(&seen_b), &store, &shared.store);
    eventually("B to take the lapsed lease", || b.is_active()).await;

    deposit(&store, 1, 2).await;
    eventually("A to stand by", || !a.is_active()).await;
    eventually("B to apply the event", || b.caught_up_to(2)).await;
    assert!(!a.is_finished(), "A waits for the lease again");
    assert!(!a.caught_up_to(2), "A's save was refused");
    assert_eq!(seen_b.positions(), [2]);
    assert_eq!(shared.store.load("ledger").await.unwrap(), 2);
    b.stop().await.unwrap();
    a.stop().await.unwrap();
}
