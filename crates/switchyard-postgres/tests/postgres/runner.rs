//! Projection runners on PostgreSQL: a read model kept in the store's database by a
//! `PostgresProjection`, its rows and checkpoint committed in one transaction; a runner dying
//! mid-batch and another taking over with nothing skipped or doubled; a lost lease rolling the
//! read model back.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use switchyard_aggregates::store::{
    EventAppender, EventMetadata, ExpectedVersion, GlobalReader, NewEvent,
};
use switchyard_aggregates::{Aggregate, DecodedEvent};
use switchyard_postgres::{PostgresProjection, PostgresReadModel, PostgresStore};
use switchyard_projections::checkpoint::{Acquire, CheckpointError, CheckpointStore};
use switchyard_projections::{
    BoxError, CheckpointLease, CommitError, Projection, ProjectionRunner,
};
use tokio_postgres::Transaction;

use crate::support;

/// The bound on every wait of these tests: generous, never a timing assertion.
pub(crate) const PATIENCE: Duration = Duration::from_secs(30);
/// Short, so a dead runner's lease lapses soon; long against a renewal's round trip.
pub(crate) const TTL: Duration = Duration::from_millis(900);

#[derive(Default)]
pub(crate) struct Account;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Deposited(pub(crate) i64);

impl Aggregate for Account {
    type Event = Deposited;
    const NAME: &'static str = "account";
    fn apply(&mut self, _: &Deposited) {}
}

/// Each stream's balance and event count (an upsert that adds: applied twice, it is wrong),
/// and every position applied (a primary key: applied twice, the batch fails).
#[derive(Default)]
pub(crate) struct Balances {
    /// Hangs forever on the event it applies as its `hang_at`th (from 1), inside the batch's
    /// transaction, once it set `hung`.
    pub(crate) hang_at: Option<usize>,
    pub(crate) hung: Arc<AtomicBool>,
    pub(crate) applied: usize,
}

pub(crate) type Table = (BTreeMap<String, (i64, i64)>, Vec<i64>);

impl PostgresReadModel for Balances {
    type Event = Deposited;

    async fn apply(
        &mut self,
        tx: &Transaction<'_>,
        batch: &[DecodedEvent<Deposited>],
    ) -> Result<(), BoxError> {
        for event in batch {
            tx.execute(
                "INSERT INTO balances (stream, cents, events) VALUES ($1, $2, 1)
                 ON CONFLICT (stream) DO UPDATE
                 SET cents = balances.cents + $2, events = balances.events + 1",
                &[&&*event.stream, &event.event.0],
            )
            .await?;
            tx.execute(
                "INSERT INTO applied (position) VALUES ($1)",
                &[&i64::try_from(event.position)?],
            )
            .await?;
            self.applied += 1;
            if self.hang_at == Some(self.applied) {
                self.hung.store(true, Ordering::SeqCst);
                std::future::pending::<()>().await;
            }
        }
        Ok(())
    }

    async fn reset(&mut self, tx: &Transaction<'_>) -> Result<(), BoxError> {
        tx.batch_execute("DELETE FROM balances; DELETE FROM applied")
            .await?;
        Ok(())
    }
}

/// A client on `store`'s schema, its read model's tables created.
pub(crate) async fn client(store: &PostgresStore) -> tokio_postgres::Client {
    let client = support::raw_client(&support::url(), store.schema()).await;
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS balances
                 (stream text PRIMARY KEY, cents bigint NOT NULL, events bigint NOT NULL);
             CREATE TABLE IF NOT EXISTS applied (position bigint PRIMARY KEY);",
        )
        .await
        .unwrap();
    client
}

pub(crate) async fn table(client: &tokio_postgres::Client) -> Table {
    let balances = client
        .query("SELECT stream, cents, events FROM balances", &[])
        .await
        .unwrap()
        .into_iter()
        .map(|row| (row.get(0), (row.get(1), row.get(2))))
        .collect();
    let applied = client
        .query("SELECT position FROM applied ORDER BY position", &[])
        .await
        .unwrap()
        .into_iter()
        .map(|row| row.get(0))
        .collect();
    (balances, applied)
}

/// What the read model must hold once every event of `store` was applied exactly once.
pub(crate) async fn expected(store: &PostgresStore) -> Table {
    let mut table = Table::default();
    for event in store.read_all(1, usize::MAX).await.unwrap() {
        let event = DecodedEvent::<Deposited>::decode(event).unwrap();
        let entry = table.0.entry(event.stream.to_string()).or_default();
        entry.0 += event.event.0;
        entry.1 += 1;
        table.1.push(i64::try_from(event.position).unwrap());
    }
    table
}

pub(crate) async fn deposit(store: &PostgresStore, account: u32, cents: i64) {
    let event = NewEvent {
        event_type: "Deposited".into(),
        schema_version: 1,
        data: switchyard_messaging::codec::encode(&Deposited(cents))
            .unwrap()
            .into(),
    };
    store
        .append(
            &format!("account-{account}"),
            ExpectedVersion::Any,
            vec![event],
            EventMetadata::default(),
        )
        .await
        .unwrap();
}

/// The positions of `store`'s events once all `count` are readable: positions have gaps, and
/// the readable head may trail an append another transaction is still committing ahead of it.
pub(crate) async fn positions(store: &PostgresStore, count: usize) -> Vec<u64> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let events = store.read_all(1, usize::MAX).await.unwrap();
        if events.len() == count {
            return events.iter().map(|event| event.position).collect();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "gave up waiting for {count} events to be readable"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "gave up waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

pub(crate) fn runner(
    holder: &str,
    projection: PostgresProjection<Balances>,
    store: &PostgresStore,
) -> ProjectionRunner<PostgresProjection<Balances>> {
    ProjectionRunner::builder("balances", projection, store.clone(), store.clone())
        .aggregate::<Account>()
        .holder(holder)
        .batch_size(2)
        .lease_ttl(TTL)
        .start()
        .unwrap()
}

/// The takeover scenario of the runner's tests, with a read model in SQL: A dies in the
/// middle of a batch's transaction (its lease not released); B, standing by, takes over once
/// the lease lapses and goes on from A's checkpoint. A's unfinished batch is rolled back and
/// applied once by B: nothing skipped, nothing doubled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sql_projection_dies_mid_batch_and_another_runner_takes_over_exactly_once() {
    let store = support::store().await;
    for n in 0..10 {
        deposit(&store, n % 3, i64::from(n) + 1).await;
    }
    let hung = Arc::new(AtomicBool::new(false));
    let a = PostgresProjection::new(
        Balances {
            hang_at: Some(6),
            hung: hung.clone(),
            applied: 0,
        },
        client(&store).await,
    );
    let a = runner("runner-a", a, &store);
    eventually("A to hang in its third batch", || {
        hung.load(Ordering::SeqCst)
    })
    .await;
    let b = runner(
        "runner-b",
        PostgresProjection::new(Balances::default(), client(&store).await),
        &store,
    );
    assert!(a.is_active());
    let checkpoint = positions(&store, 10).await[3];
    assert_eq!(store.load("balances").await.unwrap(), checkpoint);

    drop(a); // dies: its transaction rolled back, its lease not released
    for n in 10..12 {
        deposit(&store, 1, i64::from(n) + 1).await;
    }
    let head = positions(&store, 12).await[11];
    eventually("B to take over and catch up", || b.caught_up_to(head)).await;
    assert!(b.is_active());
    let b = b.stop().await.unwrap();
    assert_eq!(table(b.client()).await, expected(&store).await);
    assert_eq!(store.load("balances").await.unwrap(), head);
}

/// A rebuild empties the read model and resets the checkpoint in one transaction, then
/// replays: the rows equal the incremental run's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_of_a_sql_read_model_equals_the_incremental_run() {
    let store = support::store().await;
    for n in 0..9 {
        deposit(&store, n % 4, i64::from(n)).await;
    }
    let head = positions(&store, 9).await[8];
    let projection = PostgresProjection::new(Balances::default(), client(&store).await);
    let incremental = runner("runner-a", projection, &store);
    eventually("the incremental run", || incremental.caught_up_to(head)).await;
    let projection = incremental.stop().await.unwrap();
    let rows = table(projection.client()).await;
    assert_eq!(rows, expected(&store).await);

    let rebuild = ProjectionRunner::builder("balances", projection, store.clone(), store.clone())
        .aggregate::<Account>()
        .rebuild(|_| {})
        .start()
        .unwrap();
    eventually("the rebuild", || rebuild.caught_up_to(head)).await;
    let projection = rebuild.stop().await.unwrap();
    assert_eq!(table(projection.client()).await, rows);
}

/// A runner whose lease was taken over commits nothing: its fenced save fails inside the
/// transaction and the read model's rows roll back with it; a batch already committed commits
/// nothing again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_under_a_lost_lease_or_already_made_writes_nothing() {
    let store = support::store().await;
    deposit(&store, 1, 5).await;
    let batch: Vec<_> = store
        .read_all(1, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|e| DecodedEvent::<Deposited>::decode(e).unwrap())
        .collect();
    let mut projection = PostgresProjection::new(Balances::default(), client(&store).await);
    let long_ago = SystemTime::now() - Duration::from_secs(60);
    let Acquire::Acquired(stale) = store
        .acquire("balances", "runner-a", long_ago, long_ago + TTL)
        .await
        .unwrap()
    else {
        panic!("a new projection is free");
    };
    let now = SystemTime::now();
    let Acquire::Acquired(current) = store
        .acquire("balances", "runner-b", now, now + Duration::from_secs(60))
        .await
        .unwrap()
    else {
        panic!("A's lease lapsed");
    };

    let refused = projection
        .commit(&batch, 1, CheckpointLease::new(&store, &stale.token))
        .await;
    assert!(matches!(
        refused,
        Err(CommitError::Checkpoint(CheckpointError::LeaseLost { .. }))
    ));
    assert_eq!(table(projection.client()).await, Table::default());

    let checkpoint = CheckpointLease::new(&store, &current.token);
    projection.commit(&batch, 1, checkpoint).await.unwrap();
    let again = projection.commit(&batch, 1, checkpoint).await;
    assert!(matches!(
        again,
        Err(CommitError::Checkpoint(CheckpointError::NotForward {
            current: 1,
            ..
        }))
    ));
    assert_eq!(table(projection.client()).await, expected(&store).await);
}
