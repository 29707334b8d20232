//! A SQL projection's throughput on SQLite: a `SqliteProjection` run by a `ProjectionRunner`,
//! one read-model row upserted per event and the checkpoint saved in each batch's
//! transaction, beside a raw rusqlite floor measured in the same run: the same rows upserted
//! in transactions of the same size, on a connection opened the same way, with nothing read,
//! decoded or checkpointed.
//!
//! Run with `cargo xtask bench` (which writes `docs/benchmarks.md`) or
//! `cargo bench -p switchyard-sqlite --features projections --bench sql_projection`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::{Connection, Transaction, TransactionBehavior, params};
use serde::{Deserialize, Serialize};
use switchyard_aggregates::store::{EventAppender, EventMetadata, ExpectedVersion, NewEvent};
use switchyard_aggregates::{Aggregate, DecodedEvent};
use switchyard_projections::{BoxError, ProjectionRunner};
use switchyard_sqlite::{SqliteProjection, SqliteReadModel, SqliteStore};
use tokio::runtime::Runtime;

use switchyard_bench_support::{self as support, alternate, median, runtime, target_dir};

#[derive(Default)]
struct Account;

#[derive(Clone, Serialize, Deserialize)]
struct Deposited(u64);

impl Aggregate for Account {
    type Event = Deposited;
    const NAME: &'static str = "account";
    fn apply(&mut self, _: &Deposited) {}
}

/// The row both sides upsert for an event: keyed by its position, holding its amount.
const UPSERT: &str = "INSERT INTO rows (id, amount) VALUES (?1, ?2)
                      ON CONFLICT (id) DO UPDATE SET amount = excluded.amount";

/// One row per event.
struct Rows;

impl SqliteReadModel for Rows {
    type Event = Deposited;

    fn apply(
        &mut self,
        tx: &Transaction<'_>,
        batch: &[DecodedEvent<Deposited>],
    ) -> Result<(), BoxError> {
        let mut upsert = tx.prepare_cached(UPSERT)?;
        for event in batch {
            upsert.execute(params![
                i64::try_from(event.position)?,
                i64::try_from(event.event.0)?
            ])?;
        }
        Ok(())
    }

    fn reset(&mut self, tx: &Transaction<'_>) -> Result<(), BoxError> {
        tx.execute("DELETE FROM rows", [])?;
        Ok(())
    }
}

/// A fresh database path in a scratch directory under `target/`.
fn fresh_path(name: &str) -> PathBuf {
    let dir = target_dir().join("switchyard-bench-scratch");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.db"));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    path
}

/// A connection as `SqliteProjection::open` makes one, in WAL mode as the store's file is,
/// with `synchronous` set, and an empty `rows` table.
fn connection(path: &Path, synchronous: &str) -> Connection {
    let connection = Connection::open(path).unwrap();
    connection
        .busy_timeout(switchyard_sqlite::PROJECTION_BUSY_TIMEOUT)
        .unwrap();
    connection
        .pragma_update(None, "journal_mode", "WAL")
        .unwrap();
    connection
        .pragma_update(None, "synchronous", synchronous)
        .unwrap();
    connection
        .execute_batch(
            "CREATE TABLE IF NOT EXISTS rows (id INTEGER PRIMARY KEY, amount INTEGER NOT NULL);
             DELETE FROM rows;",
        )
        .unwrap();
    connection
}

/// A store holding `events` deposits, appended 1,000 at a time.
fn filled_store(rt: &Runtime, path: &Path, events: u64) -> SqliteStore {
    let store = SqliteStore::open(path).unwrap();
    rt.block_on(async {
        for chunk in 0..events.div_ceil(1_000) {
            let batch = (chunk * 1_000..((chunk + 1) * 1_000).min(events))
                .map(|n| NewEvent {
                    event_type: "Deposited".into(),
                    schema_version: 1,
                    data: switchyard_messaging::codec::encode(&Deposited(n))
                        .unwrap()
                        .into(),
                })
                .collect();
            store
                .append(
                    &format!("account-{chunk}"),
                    ExpectedVersion::Any,
                    batch,
                    EventMetadata::default(),
                )
                .await
                .unwrap();
        }
    });
    store
}

/// Rows per second: `events` rows upserted through rusqlite, `batch` per transaction.
fn raw_round(path: &Path, synchronous: &str, events: u64, batch: u64) -> f64 {
    let mut connection = connection(path, synchronous);
    let started = Instant::now();
    let mut id = 1;
    while id <= events {
        let tx = connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .unwrap();
        {
            let mut upsert = tx.prepare_cached(UPSERT).unwrap();
            for id in id..(id + batch).min(events + 1) {
                let id = i64::try_from(id).unwrap();
                upsert.execute(params![id, id - 1]).unwrap();
            }
        }
        tx.commit().unwrap();
        id += batch;
    }
    events as f64 / started.elapsed().as_secs_f64()
}

/// Events per second: a new projection caught up over the store's `events` events by a runner
/// with batches of `batch`, from its start to its last checkpoint.
fn projection_round(
    rt: &Runtime,
    store: &SqliteStore,
    path: &Path,
    synchronous: &str,
    (events, batch): (u64, u64),
    round: usize,
) -> f64 {
    let projection = SqliteProjection::new(Rows, connection(path, synchronous));
    rt.block_on(async {
        let started = Instant::now();
        let runner = ProjectionRunner::builder(
            format!("rows-{round}"),
            projection,
            store.clone(),
            store.clone(),
        )
        .aggregate::<Account>()
        .batch_size(usize::try_from(batch).unwrap())
        .start()
        .unwrap();
        runner
            .wait_for(
                events,
                tokio::time::Instant::now() + Duration::from_secs(600),
            )
            .await
            .unwrap();
        let rate = events as f64 / started.elapsed().as_secs_f64();
        runner.stop().await.unwrap();
        rate
    })
}

fn main() {
    if support::criterion_only() {
        return;
    }
    let rt = runtime();
    let load_before = support::load_average();
    let (events, rounds) = if support::quick() {
        (2_000, 2)
    } else {
        (50_000, 5)
    };
    let path = fresh_path("sql_projection");
    let store = filled_store(&rt, &path, events);
    // The floor's file of its own: nothing else on it (the store's writer and readers hold the
    // projection's file open).
    let floor_path = fresh_path("sql_projection_floor");
    let mut out = String::new();
    out.push_str("## SQL projection on SQLite (`switchyard-sqlite`, bench `sql_projection`)\n\n");
    out.push_str(&format!(
        "A `SqliteProjection` run by a `ProjectionRunner` over {events} stored events: per event \
         one read-model row upserted, per batch the checkpoint saved (fenced by the lease) in \
         the batch's own `IMMEDIATE` transaction; timed from the runner's start to its last \
         checkpoint, so reading the events in pages and decoding them counts. Floor: the same \
         rows upserted through rusqlite on a connection opened the same way (WAL, same \
         `synchronous`) to a file of its own, in transactions of the same size, with nothing read, decoded or \
         checkpointed. Medians of {rounds} alternating rounds; the ratio is taken round by \
         round. With `FULL` both sides wait on one sync of the log per commit (the same count \
         on both, checked with strace), whose latency on a shared disk changes several times \
         over between rounds: the `NORMAL` rows measure the projection's own cost.\n\n"
    ));
    out.push_str(
        "| synchronous | events per batch | floor rows/s | projection events/s | projection / floor | target |\n|---|---|---|---|---|---|\n",
    );
    let mut misses = Vec::new();
    let mut round = 0;
    for synchronous in ["FULL", "NORMAL"] {
        for batch in [256, 16] {
            let measured = alternate(
                rounds,
                || raw_round(&floor_path, synchronous, events, batch),
                || {
                    round += 1;
                    projection_round(&rt, &store, &path, synchronous, (events, batch), round)
                },
            );
            let share = measured.ratio();
            if share < 0.7 {
                misses.push(format!(
                    "{synchronous}, {batch} per batch: {share:.2} of its floor (target 0.7)"
                ));
            }
            let row = format!(
                "| {synchronous} | {batch} | {:.0} | {:.0} | {share:.2} | ≥ 0.7 of floor: {} |\n",
                median(&measured.floor),
                median(&measured.subject),
                support::met(share >= 0.7),
            );
            eprint!("{row}");
            out.push_str(&row);
        }
    }
    out.push_str(&support::closing(
        &misses,
        (&load_before, &support::load_average()),
        "other work on the machine's 2 cores and its disk slows every figure",
    ));
    println!("\n{out}");
    support::write_section("62-sql_projection.md", &out);
}
