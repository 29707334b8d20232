//! Poison events parked: the runner isolates the event a failing batch keeps failing on,
//! parks it with its checkpoint moved past it, and goes on; parked events are listed, retried
//! and skipped. On the memory stores and on SQLite (on disk, events and checkpoints in one
//! file).

use std::sync::{Arc, Mutex};

use switchyard_aggregates::DecodedEvent;
use switchyard_aggregates::store::{
    EventAppender, EventMetadata, EventStore, ExpectedVersion, MemoryStore, NewEvent,
};
use switchyard_projections::checkpoint::CheckpointStore;
use switchyard_projections::{
    BoxError, MemoryCheckpointStore, OnPoison, Projection, ProjectionRunner, RetryError,
    RunnerError,
};
use switchyard_sqlite::SqliteStore;

use crate::support::*;

/// The amount no deposit may have, until the projection is mended.
const POISON: u64 = 13;

/// Balances that refuse [`POISON`] deposits while `mended` is false, recording what they
/// applied.
#[derive(Clone, Default)]
struct Picky {
    applied: Arc<Mutex<Vec<(u64, u64)>>>,
    mended: Arc<Mutex<bool>>,
}

impl Picky {
    fn applied(&self) -> Vec<(u64, u64)> {
        self.applied.lock().unwrap().clone()
    }

    fn mend(&self, mended: bool) {
        *self.mended.lock().unwrap() = mended;
    }
}

impl Projection for Picky {
    type Event = AccountEvent;

    async fn apply(&mut self, batch: &[DecodedEvent<AccountEvent>]) -> Result<(), BoxError> {
        let mended = *self.mended.lock().unwrap();
        if !mended
            && batch
                .iter()
                .any(|e| e.event == AccountEvent::Deposited(POISON))
        {
            return Err(format!("cannot apply a deposit of {POISON}").into());
        }
        let mut applied = self.applied.lock().unwrap();
        for event in batch {
            let AccountEvent::Deposited(amount) = event.event;
            applied.push((event.position, amount));
        }
        Ok(())
    }
}

fn runner<S: EventStore + Clone + 'static>(
    projection: Picky,
    events: S,
    checkpoints: impl CheckpointStore + 'static,
) -> ProjectionRunner<Picky> {
    ProjectionRunner::builder("balances", projection, events, checkpoints)
        .aggregate::<Account>()
        .batch_size(4)
        .retry(fast_retry())
        .on_poison(OnPoison::Park)
        .start()
        .unwrap()
}

/// Deposits 1, 2, POISON, 4, POISON, 6 into account 1 (positions 1 to 6), and one event of
/// account 1's stream that does not decode (position 7), then 8. In batches of 4, the first
/// fails in the projection, the second does not decode.
async fn deposits(store: &impl EventAppender) {
    for amount in [1, 2, POISON, 4, POISON, 6] {
        deposit(store, 1, amount).await;
    }
    let garbage = NewEvent {
        event_type: "Deposited".into(),
        schema_version: 1,
        data: vec![0xff, 0xff, 0xff].into(),
    };
    store
        .append(
            "account-1",
            ExpectedVersion::Any,
            vec![garbage],
            EventMetadata::default(),
        )
        .await
        .unwrap();
    deposit(store, 1, 8).await;
}

/// Appends the [`deposits`] and starts a runner parking poison events: its projection, the
/// runner, and the head, once it passed every event.
async fn passed_the_deposits(
    events: &(impl EventStore + Clone + 'static),
    checkpoints: &(impl CheckpointStore + Clone + 'static),
) -> (Picky, ProjectionRunner<Picky>, u64) {
    deposits(events).await;
    let picky = Picky::default();
    let runner = runner(picky.clone(), events.clone(), checkpoints.clone());
    let head = head(events).await;
    eventually("the runner to pass every event", || {
        runner.caught_up_to(head)
    })
    .await;
    (picky, runner, head)
}

async fn poison_events_are_parked_and_the_projection_goes_on<E, C>(events: E, checkpoints: C)
where
    E: EventStore + Clone + 'static,
    C: CheckpointStore + Clone + 'static,
{
    let (picky, runner, head) = passed_the_deposits(&events, &checkpoints).await;

    assert_eq!(
        picky.applied(),
        [(1, 1), (2, 2), (4, 4), (6, 6), (8, 8)],
        "every event but the poison ones, each once, in order"
    );
    assert_eq!(checkpoints.load("balances").await.unwrap(), head);
    let parked = runner.parked().await.unwrap();
    let summary: Vec<_> = parked
        .iter()
        .map(|p| (p.position, p.stream.as_str(), p.version, p.attempts))
        .collect();
    assert_eq!(
        summary,
        [
            (3, "account-1", 2, 4),
            (5, "account-1", 4, 4),
            (7, "account-1", 6, 1)
        ],
        "each poison event parked after its retries (the undecodable one at once)"
    );
    assert!(parked.iter().all(|p| p.projection == "balances"));
    assert!(parked.iter().all(|p| p.event_type == "Deposited"));
    assert!(
        parked[0].error.contains("cannot apply a deposit of 13"),
        "{}",
        parked[0].error
    );
    assert!(
        parked[2].error.contains("account-1"),
        "the decode error names the event: {}",
        parked[2].error
    );
    assert!(runner.is_active());

    // Live events go on being applied.
    deposit(&events, 1, 9).await;
    let head = self::head(&events).await;
    eventually("the live event", || runner.caught_up_to(head)).await;
    assert_eq!(picky.applied().last(), Some(&(9, 9)));
    runner.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_memory_poison_events_are_parked_and_the_projection_goes_on() {
    poison_events_are_parked_and_the_projection_goes_on(
        MemoryStore::new(),
        MemoryCheckpointStore::new(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sqlite_poison_events_are_parked_and_the_projection_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("store.db")).unwrap();
    poison_events_are_parked_and_the_projection_goes_on(store.clone(), store).await;
}

async fn parked_events_are_retried_and_skipped<E, C>(events: E, checkpoints: C)
where
    E: EventStore + Clone + 'static,
    C: CheckpointStore + Clone + 'static,
{
    let (picky, runner, head) = passed_the_deposits(&events, &checkpoints).await;

    // Still failing: it stays parked, with one more attempt.
    let failed = runner.retry_parked(3).await;
    assert!(
        matches!(failed, Err(RetryError::Failed { position: 3, .. })),
        "{failed:?}"
    );
    let parked = runner.parked().await.unwrap();
    assert_eq!((parked[0].position, parked[0].attempts), (3, 5));

    // Mended: the retry applies it and forgets it.
    picky.mend(true);
    runner.retry_parked(3).await.unwrap();
    assert!(picky.applied().contains(&(3, POISON)));
    let left: Vec<u64> = runner
        .parked()
        .await
        .unwrap()
        .iter()
        .map(|p| p.position)
        .collect();
    assert_eq!(left, [5, 7]);

    // An undecodable event fails again, whatever the projection.
    assert!(matches!(
        runner.retry_parked(7).await,
        Err(RetryError::Failed { position: 7, .. })
    ));
    assert!(runner.skip_parked(7).await.unwrap());
    assert!(!runner.skip_parked(7).await.unwrap(), "skipped once");
    assert!(matches!(
        runner.retry_parked(7).await,
        Err(RetryError::NotParked { position: 7, .. })
    ));
    assert!(matches!(
        runner.retry_parked(2).await,
        Err(RetryError::NotParked { position: 2, .. })
    ));
    let left: Vec<u64> = runner
        .parked()
        .await
        .unwrap()
        .iter()
        .map(|p| p.position)
        .collect();
    assert_eq!(left, [5]);
    assert_eq!(
        checkpoints.load("balances").await.unwrap(),
        head,
        "retries and skips leave the checkpoint"
    );

    // Another runner of the projection, standing by, cannot retry.
    let standby = self::runner(Picky::default(), events.clone(), checkpoints.clone());
    assert!(matches!(
        standby.retry_parked(5).await,
        Err(RetryError::NotActive { .. })
    ));
    assert_eq!(standby.parked().await.unwrap().len(), 1, "but lists");
    standby.stop().await.unwrap();
    runner.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_memory_parked_events_are_retried_and_skipped() {
    parked_events_are_retried_and_skipped(MemoryStore::new(), MemoryCheckpointStore::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sqlite_parked_events_are_retried_and_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("store.db")).unwrap();
    parked_events_are_retried_and_skipped(store.clone(), store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_default_a_poison_event_stops_the_runner_and_parks_nothing() {
    let store = MemoryStore::new();
    let checkpoints = MemoryCheckpointStore::new();
    for amount in [1, 2, POISON, 4] {
        deposit(&store, 1, amount).await;
    }
    let runner =
        ProjectionRunner::builder("balances", Picky::default(), store, checkpoints.clone())
            .aggregate::<Account>()
            .retry(fast_retry())
            .start()
            .unwrap();
    eventually("the runner to give up", || runner.is_finished()).await;
    assert!(matches!(
        runner.stop().await,
        Err(RunnerError::Projection { .. })
    ));
    assert_eq!(checkpoints.load("balances").await.unwrap(), 0);
    assert!(checkpoints.parked("balances").await.unwrap().is_empty());
}
