//! A SQL projection's throughput on PostgreSQL: a `PostgresProjection` run by a
//! `ProjectionRunner`, one read-model row upserted per event and the checkpoint saved in each
//! batch's transaction, beside a raw tokio-postgres floor measured in the same run: the same
//! rows upserted with the same prepared statement in transactions of the same size, with
//! nothing read, decoded or checkpointed.
//!
//! Run with `cargo xtask bench` (which writes `docs/benchmarks.md`) or
//! `cargo bench -p switchyard-postgres --features projections --bench sql_projection_postgres`.
//! The server comes from `SWITCHYARD_TEST_DATABASE_URL`, else a throwaway one is started.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use switchyard_aggregates::store::{
    EventAppender, EventMetadata, ExpectedVersion, GlobalReader, NewEvent,
};
use switchyard_aggregates::{Aggregate, DecodedEvent};
use switchyard_postgres::{
    PostgresOptions, PostgresProjection, PostgresReadModel, PostgresStore, test_server,
};
use switchyard_projections::{BoxError, ProjectionRunner};
use tokio::runtime::Runtime;
use tokio_postgres::{Client, Statement, Transaction};

use switchyard_bench_support::{self as support, alternate, median, runtime};

#[derive(Default)]
struct Account;

#[derive(Clone, Serialize, Deserialize)]
struct Deposited(i64);

impl Aggregate for Account {
    type Event = Deposited;
    const NAME: &'static str = "account";
    fn apply(&mut self, _: &Deposited) {}
}

/// The row both sides upsert for an event: keyed by its position, holding its amount.
const UPSERT: &str = "INSERT INTO rows (id, amount) VALUES ($1, $2)
                      ON CONFLICT (id) DO UPDATE SET amount = excluded.amount";

/// One row per event, through a statement prepared once on its connection.
#[derive(Default)]
struct Rows {
    upsert: Option<Statement>,
}

impl PostgresReadModel for Rows {
    type Event = Deposited;

    async fn apply(
        &mut self,
        tx: &Transaction<'_>,
        batch: &[DecodedEvent<Deposited>],
    ) -> Result<(), BoxError> {
        let upsert = match &self.upsert {
            Some(upsert) => upsert.clone(),
            None => self.upsert.insert(tx.prepare(UPSERT).await?).clone(),
        };
        for event in batch {
            tx.execute(&upsert, &[&i64::try_from(event.position)?, &event.event.0])
                .await?;
        }
        Ok(())
    }

    async fn reset(&mut self, tx: &Transaction<'_>) -> Result<(), BoxError> {
        tx.execute("DELETE FROM rows", &[]).await?;
        Ok(())
    }
}

/// A connection with `schema` on its search path and an empty `rows` table.
async fn client(url: &str, schema: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .execute("SELECT set_config('search_path', $1, false)", &[&schema])
        .await
        .unwrap();
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS rows (id bigint PRIMARY KEY, amount bigint NOT NULL);
             DELETE FROM rows;",
        )
        .await
        .unwrap();
    client
}

/// A store in a fresh schema holding `events` deposits, appended 500 at a time.
async fn filled_store(url: &str, events: u64) -> PostgresStore {
    let schema = format!("bench_{:016x}", fastrand::u64(..));
    let store = PostgresStore::connect_with(url, PostgresOptions::default().schema(schema))
        .await
        .unwrap();
    for chunk in 0..events.div_ceil(500) {
        let batch = (chunk * 500..((chunk + 1) * 500).min(events))
            .map(|n| NewEvent {
                event_type: "Deposited".into(),
                schema_version: 1,
                data: switchyard_messaging::codec::encode(&Deposited(n as i64))
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
    store
}

/// Rows per second: `events` rows upserted, `batch` per transaction.
fn raw_round(rt: &Runtime, url: &str, schema: &str, events: i64, batch: i64) -> f64 {
    rt.block_on(async {
        let mut client = client(url, schema).await;
        let upsert = client.prepare(UPSERT).await.unwrap();
        let started = Instant::now();
        let mut id = 1;
        while id <= events {
            let tx = client.transaction().await.unwrap();
            for id in id..(id + batch).min(events + 1) {
                tx.execute(&upsert, &[&id, &(id - 1)]).await.unwrap();
            }
            tx.commit().await.unwrap();
            id += batch;
        }
        events as f64 / started.elapsed().as_secs_f64()
    })
}

/// Events per second: a new projection caught up over the store's events by a runner with
/// batches of `batch`, from its start to its last checkpoint at `head`.
fn projection_round(
    rt: &Runtime,
    (url, store): (&str, &PostgresStore),
    (events, head): (u64, u64),
    batch: usize,
    round: usize,
) -> f64 {
    rt.block_on(async {
        let projection =
            PostgresProjection::new(Rows::default(), client(url, store.schema()).await);
        let started = Instant::now();
        let runner = ProjectionRunner::builder(
            format!("rows-{round}"),
            projection,
            store.clone(),
            store.clone(),
        )
        .aggregate::<Account>()
        .batch_size(batch)
        .start()
        .unwrap();
        runner
            .wait_for(head, tokio::time::Instant::now() + Duration::from_secs(600))
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
    let url = test_server::shared_url().unwrap_or_else(|error| panic!("{error}"));
    let load_before = support::load_average();
    let (events, rounds) = if support::quick() {
        (2_000, 2)
    } else {
        (20_000, 5)
    };
    let store = rt.block_on(filled_store(&url, events));
    let head = rt.block_on(store.head()).unwrap();
    let mut out = String::new();
    out.push_str(
        "## SQL projection on PostgreSQL (`switchyard-postgres`, bench `sql_projection_postgres`)\n\n",
    );
    out.push_str(&format!(
        "A `PostgresProjection` run by a `ProjectionRunner` over {events} stored events: per \
         event one read-model row upserted (a statement prepared once), per batch the \
         checkpoint saved (fenced by the lease) in the batch's own transaction; timed from the \
         runner's start to its last checkpoint, so reading the events in pages and decoding \
         them counts. Floor: the same rows upserted with the same prepared statement on a \
         connection of its own, in transactions of the same size, with nothing read, decoded \
         or checkpointed. Medians of {rounds} alternating rounds; the ratio is taken round by \
         round.\n\n"
    ));
    out.push_str(
        "| events per batch | floor rows/s | projection events/s | projection / floor | target |\n|---|---|---|---|---|\n",
    );
    let mut misses = Vec::new();
    let mut round = 0;
    for batch in [256, 16] {
        let measured = alternate(
            rounds,
            || {
                raw_round(
                    &rt,
                    &url,
                    store.schema(),
                    i64::try_from(events).unwrap(),
                    batch,
                )
            },
            || {
                round += 1;
                projection_round(
                    &rt,
                    (&url, &store),
                    (events, head),
                    usize::try_from(batch).unwrap(),
                    round,
                )
            },
        );
        let share = measured.ratio();
        if share < 0.7 {
            misses.push(format!(
                "{batch} per batch: {share:.2} of its floor (target 0.7)"
            ));
        }
        let row = format!(
            "| {batch} | {:.0} | {:.0} | {share:.2} | ≥ 0.7 of floor: {} |\n",
            median(&measured.floor),
            median(&measured.subject),
            support::met(share >= 0.7),
        );
        eprint!("{row}");
        out.push_str(&row);
    }
    out.push_str(&support::closing(
        &misses,
        (&load_before, &support::load_average()),
        "other work on the machine's 2 cores slows every figure",
    ));
    println!("\n{out}");
    support::write_section("63-sql_projection_postgres.md", &out);
}
