//! The in-memory view: rebuilt from the origin when its process starts, each event applied
//! once.

use std::sync::atomic::Ordering;
use std::time::Duration;

use backon::ExponentialBuilder;
use switchyard_aggregates::DecodedEvent;
use switchyard_aggregates::store::{GlobalReader, MemoryStore};
use switchyard_messaging::Node;
use switchyard_projections::{
    BoxError, CheckpointStore, InMemory, MemoryCheckpointStore, ProjectionRunner, View,
};
use switchyard_sqlite::SqliteStore;
use tokio::time::Instant;

use crate::leases::FaultyLeases;
use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_memory_view_is_rebuilt_from_the_origin_when_its_process_starts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bank.db");

    // The first process: deposits, a read model that follows them, its checkpoint saved in
    // the same durable store.
    {
        let store = SqliteStore::open(&path).unwrap();
        let (runner, _) = start_balances(store.clone(), store.clone());
        let node = Node::new("bank");
        node.register(commands(store.clone())).unwrap();
        for amount in [5, 7] {
            node.dispatch(deposit_of(1, amount))
                .await
                .success()
                .unwrap();
        }
        let head = store.head().await.unwrap();
        runner
            .wait_for(head, Instant::now() + PATIENCE)
            .await
            .unwrap();
        runner.stop().await.unwrap();
        let saved = store.load("balances").await.unwrap();
        assert_eq!(saved, head, "the first process saved its checkpoint");
    }

    // The second process starts with an empty view: it must see the deposits made before the
    // saved checkpoint too, not only those after it.
    let store = SqliteStore::open(&path).unwrap();
    let (runner, balances) = start_balances(store.clone(), store.clone());
    let node = Node::new("bank");
    node.register(commands(store.clone())).unwrap();
    node.register(queries(balances.clone())).unwrap();
    let reply = node.dispatch(deposit_of(1, 10)).await;
    let position = reply.position().unwrap();
    balances
        .watermark()
        .wait_for(position, Instant::now() + PATIENCE)
        .await
        .unwrap();
    assert_eq!(balances.read_now().0["account-1"], 22);
    assert_eq!(
        node.dispatch(balance_of(1)).await.answer::<u64>().unwrap(),
        22
    );
    runner.stop().await.unwrap();
}

/// Balances that fail once, on the second event they see.
#[derive(Default)]
struct Flaky {
    balances: Balances,
    seen: usize,
    failed: bool,
}

impl View for Flaky {
    type Event = AccountEvent;

    fn apply(&mut self, event: &DecodedEvent<AccountEvent>) -> Result<(), BoxError> {
        self.seen += 1;
        if self.seen == 2 && !self.failed {
            self.failed = true;
            return Err("the view is busy".into());
        }
        self.balances.apply(event)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_retried_after_a_failure_applies_each_event_once() {
    let store = MemoryStore::new();
    let node = Node::new("bank");
    node.register(commands(store.clone())).unwrap();
    for amount in [1, 2, 4] {
        node.dispatch(deposit_of(1, amount))
            .await
            .success()
            .unwrap();
    }
    let view = InMemory::<Flaky>::new();
    let runner = ProjectionRunner::builder(
        "balances",
        view.clone(),
        store.clone(),
        MemoryCheckpointStore::new(),
    )
    .aggregate::<Account>()
    .retry(
        ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(1))
            .with_max_times(3),
    )
    .start()
    .unwrap();
    let flaky = view.serve(&runner);
    let head = store.head().await.unwrap();
    flaky
        .watermark()
        .wait_for(head, Instant::now() + PATIENCE)
        .await
        .unwrap();
    let view = flaky.read_now();
    assert!(view.failed, "the batch failed once");
    // The first deposit, applied before the failure, is not applied again by the retry.
    assert_eq!(view.balances.0["account-1"], 7);
    drop(view);
    runner.stop().await.unwrap();
}

/// How far ahead the saved checkpoint claims to be.
const AHEAD: u64 = 1_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_lost_lease_an_in_memory_view_goes_on_from_its_own_position() {
    let store = MemoryStore::new();
    let node = Node::new("bank");
    node.register(commands(store.clone())).unwrap();
    node.dispatch(deposit_of(1, 1)).await.success().unwrap();
    // The saved checkpoints say an earlier process got far ahead.
    let checkpoints = FaultyLeases {
        load_ahead: AHEAD,
        ..FaultyLeases::default()
    };
    let view = InMemory::<Balances>::new();
    let runner =
        ProjectionRunner::builder("balances", view.clone(), store.clone(), checkpoints.clone())
            .aggregate::<Account>()
            .lease_ttl(Duration::from_millis(150))
            .start()
            .unwrap();
    let balances = view.serve(&runner);
    let head = store.head().await.unwrap();
    let deadline = Instant::now() + PATIENCE;
    balances.watermark().wait_for(head, deadline).await.unwrap();

    // The runner loses its lease and takes it again: the saved checkpoint (far ahead) says
    // nothing of what its view holds.
    checkpoints.lose_next_renewal.store(true, Ordering::SeqCst);
    while checkpoints.acquisitions.load(Ordering::SeqCst) < 2 || !runner.is_active() {
        assert!(Instant::now() < deadline, "the runner took its lease again");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    let reply = node.dispatch(deposit_of(1, 2)).await;
    balances
        .watermark()
        .wait_for(reply.position().unwrap(), deadline)
        .await
        .unwrap();
    assert_eq!(
        balances.read_now().0["account-1"],
        3,
        "the second deposit is in the view"
    );
    runner.stop().await.unwrap();
}
