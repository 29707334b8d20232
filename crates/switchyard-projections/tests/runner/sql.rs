//! A read model kept in SQLite, run through the runner by `SqliteProjection`: its rows and the
//! checkpoint commit in one transaction, so a batch lands exactly once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rusqlite::{Connection, Transaction, params};
use switchyard_aggregates::DecodedEvent;
use switchyard_aggregates::store::GlobalReader;
use switchyard_projections::checkpoint::{Acquire, CheckpointError, CheckpointStore, Lease};
use switchyard_projections::{
    BoxError, CheckpointLease, CommitError, OnPoison, Projection, ProjectionRunner,
};
use switchyard_sqlite::{SqliteProjection, SqliteReadModel, SqliteStore};

use crate::support::*;

/// Each stream's balance and event count (an upsert that adds: applied twice, it is wrong),
/// and every position applied (a primary key: applied twice, the batch fails).
pub(crate) struct Balances {
    /// Hangs forever on this position, inside the batch's transaction, once it created the
    /// file: a process to kill mid-batch.
    pub(crate) hang_at: Option<(u64, PathBuf)>,
    /// Refuses every event of this amount, after writing its rows: a poison event whose
    /// half-done writes must roll back.
    pub(crate) refuse: Option<u64>,
}

/// What a [`Balances`] read model holds: `stream -> (cents, events)`, and the positions.
pub(crate) type Table = (BTreeMap<String, (i64, i64)>, Vec<u64>);

impl Balances {
    pub(crate) fn new() -> Self {
        Self {
            hang_at: None,
            refuse: None,
        }
    }

    pub(crate) fn create_tables(connection: &Connection) {
        connection
            .execute_batch(
                "CREATE TABLE IF NOT EXISTS balances
                     (stream TEXT PRIMARY KEY, cents INTEGER NOT NULL, events INTEGER NOT NULL);
                 CREATE TABLE IF NOT EXISTS applied (position INTEGER PRIMARY KEY);",
            )
            .unwrap();
    }

    pub(crate) fn table(connection: &Connection) -> Table {
        let mut balances = connection
            .prepare("SELECT stream, cents, events FROM balances ORDER BY stream")
            .unwrap();
        let balances = balances
            .query_map([], |row| Ok((row.get(0)?, (row.get(1)?, row.get(2)?))))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let mut applied = connection
            .prepare("SELECT position FROM applied ORDER BY position")
            .unwrap();
        let applied = applied
            .query_map([], |row| row.get::<_, i64>(0))
            .unwrap()
            .map(|p| u64::try_from(p.unwrap()).unwrap())
            .collect();
        (balances, applied)
    }
}

pub(crate) fn amount(event: &Ledger) -> u64 {
    match event {
        Ledger::Account(AccountEvent::Deposited(n)) | Ledger::Order(Placed(n)) => *n,
    }
}

impl SqliteReadModel for Balances {
    type Event = Ledger;

    fn apply(
        &mut self,
        tx: &Transaction<'_>,
        batch: &[DecodedEvent<Ledger>],
    ) -> Result<(), BoxError> {
        let mut upsert = tx.prepare_cached(
            "INSERT INTO balances (stream, cents, events) VALUES (?1, ?2, 1)
             ON CONFLICT (stream) DO UPDATE SET cents = cents + ?2, events = events + 1",
        )?;
        let mut applied = tx.prepare_cached("INSERT INTO applied (position) VALUES (?1)")?;
        for event in batch {
            upsert.execute(params![
                &*event.stream,
                i64::try_from(amount(&event.event))?
            ])?;
            applied.execute([i64::try_from(event.position)?])?;
            if self.refuse == Some(amount(&event.event)) {
                return Err(format!("refused a deposit of {}", amount(&event.event)).into());
            }
            if let Some((position, marker)) = &self.hang_at
                && event.position == *position
            {
                std::fs::write(marker, b"hung")?;
                // Until killed; a process nobody kills ends after two minutes.
                std::thread::sleep(Duration::from_secs(120));
                std::process::exit(1);
            }
        }
        Ok(())
    }

    fn reset(&mut self, tx: &Transaction<'_>) -> Result<(), BoxError> {
        tx.execute_batch("DELETE FROM balances; DELETE FROM applied;")?;
        Ok(())
    }
}

/// What the read model must hold after every event of `store` was applied exactly once.
pub(crate) async fn expected(store: &impl GlobalReader) -> Table {
    expected_through(store, u64::MAX).await
}

/// What the read model must hold after every event of `store` up to `through` was applied
/// exactly once.
pub(crate) async fn expected_through(store: &impl GlobalReader, through: u64) -> Table {
    let mut balances = BTreeMap::<String, (i64, i64)>::new();
    let mut applied = Vec::new();
    for event in store.read_all(1, usize::MAX).await.unwrap() {
        if event.position > through {
            break;
        }
        let decoded = match event.stream.split_once('-') {
            Some(("account", _)) => DecodedEvent::<AccountEvent>::decode(event)
                .unwrap()
                .map(Ledger::from),
            Some(("order", _)) => DecodedEvent::<Placed>::decode(event)
                .unwrap()
                .map(Ledger::from),
            _ => continue,
        };
        let entry = balances.entry(decoded.stream.to_string()).or_default();
        entry.0 += i64::try_from(amount(&decoded.event)).unwrap();
        entry.1 += 1;
        applied.push(decoded.position);
    }
    (balances, applied)
}

/// A store on disk and the read model's projection on its file, tables created.
pub(crate) fn open(path: &Path, model: Balances) -> (SqliteStore, SqliteProjection<Balances>) {
    let store = SqliteStore::open(path).unwrap();
    let projection = SqliteProjection::open(path, model).unwrap();
    Balances::create_tables(projection.connection());
    (store, projection)
}

async fn lease(store: &SqliteStore, holder: &str, now: SystemTime) -> Lease {
    let Acquire::Acquired(lease) = store
        .acquire("balances", holder, now, now + Duration::from_secs(1))
        .await
        .unwrap()
    else {
        panic!("{holder} should get the lease");
    };
    lease
}

async fn batch(store: &SqliteStore) -> Vec<DecodedEvent<Ledger>> {
    store
        .read_all(1, usize::MAX)
        .await
        .unwrap()
        .into_iter()
        .map(|e| {
            DecodedEvent::<AccountEvent>::decode(e)
                .unwrap()
                .map(Ledger::from)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runner_commits_each_batch_with_its_checkpoint_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let (store, projection) = open(&dir.path().join("store.db"), Balances::new());
    for n in 1..=7 {
        deposit(&store, n % 3, n.into()).await;
        place(&store, n % 2, 100 + u64::from(n)).await;
        unrelated(&store).await;
    }
    let runner = ProjectionRunner::builder("balances", projection, store.clone(), store.clone())
        .aggregate::<Account>()
        .aggregate::<Order>()
        .batch_size(4)
        .retry(fast_retry())
        .start()
        .unwrap();
    let head = head(&store).await;
    eventually("the runner to catch up", || runner.caught_up_to(head)).await;
    let projection = runner.stop().await.unwrap();
    assert_eq!(
        Balances::table(projection.connection()),
        expected(&store).await
    );
    assert_eq!(store.load("balances").await.unwrap(), head);
}

/// A runner whose lease was taken over commits nothing: its fenced save fails inside the
/// transaction, and the read model's rows roll back with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_under_a_lost_lease_rolls_the_read_model_back() {
    let dir = tempfile::tempdir().unwrap();
    let (store, mut projection) = open(&dir.path().join("store.db"), Balances::new());
    deposit(&store, 1, 5).await;
    let long_ago = SystemTime::now() - Duration::from_secs(60);
    let stale = lease(&store, "runner-a", long_ago).await;
    let _current = lease(&store, "runner-b", SystemTime::now()).await;

    let committed = projection
        .commit(
            &batch(&store).await,
            1,
            CheckpointLease::new(&store, &stale.token),
        )
        .await;
    assert!(matches!(
        committed,
        Err(CommitError::Checkpoint(CheckpointError::LeaseLost { .. }))
    ));
    let reset = projection
        .commit_reset(CheckpointLease::new(&store, &stale.token))
        .await;
    assert!(matches!(
        reset,
        Err(CommitError::Checkpoint(CheckpointError::LeaseLost { .. }))
    ));
    assert_eq!(Balances::table(projection.connection()), Table::default());
    assert_eq!(store.load("balances").await.unwrap(), 0);
}

/// A batch whose commit landed but whose answer was lost is committed again by the runner's
/// retry: the checkpoint is there already, so the second transaction writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_committed_again_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (store, mut projection) = open(&dir.path().join("store.db"), Balances::new());
    deposit(&store, 1, 5).await;
    deposit(&store, 2, 7).await;
    let lease = lease(&store, "runner-a", SystemTime::now()).await;
    let batch = batch(&store).await;
    let checkpoint = CheckpointLease::new(&store, &lease.token);
    projection.commit(&batch, 2, checkpoint).await.unwrap();
    let again = projection.commit(&batch, 2, checkpoint).await;
    assert!(matches!(
        again,
        Err(CommitError::Checkpoint(CheckpointError::NotForward {
            current: 2,
            ..
        }))
    ));
    assert_eq!(
        Balances::table(projection.connection()),
        expected(&store).await
    );
}

/// A rebuild empties the rows and resets the checkpoint in one transaction, then replays:
/// the rows equal the incremental run's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_of_a_sql_read_model_equals_the_incremental_run() {
    let dir = tempfile::tempdir().unwrap();
    let (store, projection) = open(&dir.path().join("store.db"), Balances::new());
    for n in 1..=9 {
        deposit(&store, n % 4, n.into()).await;
    }
    let start = |projection| {
        ProjectionRunner::builder("balances", projection, store.clone(), store.clone())
            .aggregate::<Account>()
            .batch_size(2)
            .retry(fast_retry())
    };
    let head = head(&store).await;
    let runner = start(projection).start().unwrap();
    eventually("the incremental run", || runner.caught_up_to(head)).await;
    let projection = runner.stop().await.unwrap();
    let incremental = Balances::table(projection.connection());

    let runner = start(projection).rebuild(|_| {}).start().unwrap();
    eventually("the rebuild", || runner.caught_up_to(head)).await;
    let projection = runner.stop().await.unwrap();
    assert_eq!(Balances::table(projection.connection()), incremental);
    assert_eq!(incremental, expected(&store).await);
}

/// A poison event in a SQL read model: its batch rolls back, the runner commits the batch's
/// events one at a time (each with its checkpoint), parks the poison one, and every other
/// event's rows land exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_event_of_a_sql_read_model_is_parked_and_the_others_land_once() {
    let dir = tempfile::tempdir().unwrap();
    let model = Balances {
        refuse: Some(13),
        ..Balances::new()
    };
    let (store, projection) = open(&dir.path().join("store.db"), model);
    for n in [1, 2, 13, 4, 5, 6, 7] {
        deposit(&store, n % 3, n.into()).await;
        unrelated(&store).await;
    }
    let runner = ProjectionRunner::builder("balances", projection, store.clone(), store.clone())
        .aggregate::<Account>()
        .batch_size(4)
        .retry(fast_retry())
        .on_poison(OnPoison::Park)
        .start()
        .unwrap();
    let head = head(&store).await;
    eventually("the runner to pass every event", || {
        runner.caught_up_to(head)
    })
    .await;
    let parked = runner.parked().await.unwrap();
    assert_eq!(parked.len(), 1, "{parked:?}");
    assert!(
        parked[0].error.contains("refused a deposit of 13"),
        "{}",
        parked[0].error
    );
    let projection = runner.stop().await.unwrap();

    let (mut balances, mut applied) = expected(&store).await;
    let poison = parked[0].position;
    applied.retain(|position| *position != poison);
    let entry = balances.get_mut(&parked[0].stream).unwrap();
    *entry = (entry.0 - 13, entry.1 - 1);
    assert_eq!(
        Balances::table(projection.connection()),
        (balances, applied)
    );
    assert_eq!(store.load("balances").await.unwrap(), head);
}
