//! Appends and cold loads on PostgreSQL, each beside its raw floor measured in the same run.
//!
//! - Append throughput (events/s) with 1 and 50 concurrent writers, each on its own stream, in
//!   batches of 1 and 100 events, through `PostgresStore::append` (pool of 50). Floor: the same
//!   rows inserted by hand through tokio-postgres and a deadpool-postgres pool of the same size,
//!   one `INSERT … SELECT … FROM unnest(…)` in a `BEGIN … COMMIT` transaction per batch, into a
//!   table of the same columns keyed by `(stream, version)`.
//! - Cold load of a 10,000-event stream: `read_stream` over every page (512 events, the
//!   repository's default), and `load_snapshot` plus the 10 events after it. Floor: one raw
//!   `SELECT` of the same rows (and of the snapshot row, then the tail). Target: ≤ 1.2× the
//!   floor without a snapshot.
//!
//! Before the first round, the store and the floor append to the empty tables 400 times (so
//! the cached plans of their connections date from then, as in a fresh deployment), then both
//! tables are filled with [`PREFILLED_EVENTS`] events of other streams, as a store in use
//! holds: an empty table hides a plan that scans it (the append statement's duplicate probe once
//! did, at 0.07× its floor).
//!
//! `SWITCHYARD_BENCH_QUICK=1` runs short rounds; `SWITCHYARD_POSTGRES_APPENDS=1x100,50x1` runs
//! only the append cases named (writers × batch) and no cold load, printing the section
//! without writing it for `cargo xtask bench`: to bisect or profile one case.
//!
//! The server syncs every commit to disk (`fsync` and `synchronous_commit` on). It is
//! `SWITCHYARD_TEST_DATABASE_URL` when set (as `cargo xtask bench` sets it), else a throwaway
//! one started for this run.
//!
//! Run with `cargo xtask bench` (which writes `docs/benchmarks.md`) or
//! `cargo bench -p switchyard-postgres --bench postgres_append`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group};
use futures::StreamExt;
use switchyard_aggregates::store::{
    EventAppender, EventMetadata, EventReader, ExpectedVersion, NewEvent, SnapshotStore,
    StoredState,
};
use switchyard_postgres::test_server;
use switchyard_postgres::{PostgresOptions, PostgresStore};
use tokio::runtime::Runtime;

use switchyard_bench_support::{self as support, alternate, closing, median, met, runtime};

const POOL: usize = 50;
const ROUND: Duration = Duration::from_millis(1_500);
const QUICK_ROUND: Duration = Duration::from_millis(300);
/// Events of other streams in the store and in the floor's table before the first round.
const PREFILLED_EVENTS: usize = 100_000;
/// The append cases: writers × events per append.
const CASES: [(usize, usize); 4] = [(1, 1), (50, 1), (1, 100), (50, 100)];
const COLD_EVENTS: usize = 10_000;
const PAGE: usize = 512;
const SNAPSHOT_TAIL: usize = 10;

/// The floor's table: the events' columns, keyed as the store keys them.
const FLOOR_TABLE: &str = "
CREATE TABLE floor_events (
    position       bigserial   PRIMARY KEY,
    stream         text        NOT NULL,
    version        bigint      NOT NULL,
    event_type     text        NOT NULL,
    schema_version bigint      NOT NULL,
    data           bytea       NOT NULL,
    message_id     text        NOT NULL,
    correlation_id text        NOT NULL,
    causation_id   text        NOT NULL,
    user_metadata  jsonb       NOT NULL,
    recorded_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (stream, version)
);
CREATE TABLE floor_snapshots (stream text PRIMARY KEY, version bigint NOT NULL, data bytea NOT NULL);
";

const FLOOR_INSERT: &str = "
INSERT INTO floor_events (stream, version, event_type, schema_version, data, message_id,
                          correlation_id, causation_id, user_metadata)
SELECT $1, $2 + e.ord, e.event_type, e.schema_version, e.data, $6, $7, $8, $9::text::jsonb
FROM unnest($3::text[], $4::bigint[], $5::bytea[]) WITH ORDINALITY AS e (event_type, schema_version, data, ord)";

const FLOOR_LOAD: &str = "
SELECT stream, version, position, event_type, schema_version, data, message_id, correlation_id,
       causation_id, user_metadata::text, recorded_at
FROM floor_events WHERE stream = $1 AND version >= $2 ORDER BY version";

/// The server's URL: the given one, or a throwaway server's, started once and stopped by its
/// watchdog when this process ends.
fn server() -> String {
    test_server::shared_url().unwrap_or_else(|error| panic!("{error}"))
}

struct Bench {
    store: PostgresStore,
    floor: deadpool_postgres::Pool,
}

fn bench(rt: &Runtime, url: &str) -> Bench {
    let schema = format!("bench_{:016x}", fastrand::u64(..));
    rt.block_on(async {
        let store = PostgresStore::connect_with(
            url,
            PostgresOptions::default()
                .schema(schema.clone())
                .pool_size(POOL),
        )
        .await
        .unwrap();
        let mut config: tokio_postgres::Config = url.parse().unwrap();
        config.options(format!("-c search_path={schema}"));
        let manager = deadpool_postgres::Manager::new(config, tokio_postgres::NoTls);
        let floor = deadpool_postgres::Pool::builder(manager)
            .max_size(POOL)
            .build()
            .unwrap();
        floor
            .get()
            .await
            .unwrap()
            .batch_execute(FLOOR_TABLE)
            .await
            .unwrap();
        Bench { store, floor }
    })
}

fn batch(size: usize) -> Vec<NewEvent> {
    (0..size)
        .map(|i| NewEvent {
            event_type: "deposited".into(),
            schema_version: 1,
            data: vec![i as u8; 64].into(),
        })
        .collect()
}

fn metadata(message_id: String) -> EventMetadata {
    EventMetadata {
        correlation_id: message_id.clone(),
        causation_id: message_id.clone(),
        message_id,
        user: Default::default(),
    }
}

async fn store_writer(store: PostgresStore, stream: String, size: usize, until: Instant) -> usize {
    let mut expected = ExpectedVersion::NoStream;
    let mut appended = 0;
    while Instant::now() < until {
        let message_id = format!("{stream}-{appended}");
        let version = store
            .append(&stream, expected, batch(size), metadata(message_id))
            .await
            .unwrap();
        expected = ExpectedVersion::Exactly(version);
        appended += size;
    }
    appended
}

async fn floor_append(
    pool: &deadpool_postgres::Pool,
    stream: &str,
    before: i64,
    events: &[NewEvent],
    metadata: &EventMetadata,
) {
    let types: Vec<&str> = events.iter().map(|e| &*e.event_type).collect();
    let schema_versions: Vec<i64> = events.iter().map(|e| i64::from(e.schema_version)).collect();
    let data: Vec<&[u8]> = events.iter().map(|e| e.data.as_ref()).collect();
    let user = serde_json::to_string(&metadata.user).unwrap();
    let mut client = pool.get().await.unwrap();
    let insert = client.prepare_cached(FLOOR_INSERT).await.unwrap();
    let tx = client.transaction().await.unwrap();
    tx.execute(
        &insert,
        &[
            &stream,
            &before,
            &types,
            &schema_versions,
            &data,
            &metadata.message_id,
            &metadata.correlation_id,
            &metadata.causation_id,
            &user,
        ],
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
}

async fn floor_writer(
    pool: deadpool_postgres::Pool,
    stream: String,
    size: usize,
    until: Instant,
) -> usize {
    let mut appended = 0;
    while Instant::now() < until {
        let metadata = metadata(format!("{stream}-{appended}"));
        floor_append(&pool, &stream, appended as i64 - 1, &batch(size), &metadata).await;
        appended += size;
    }
    appended
}

/// Events per second with `writers` concurrent writers appending batches of `size` for
/// `length`.
fn throughput(
    rt: &Runtime,
    bench: &Bench,
    (writers, size): (usize, usize),
    length: Duration,
    subject: bool,
) -> f64 {
    let round = fastrand::u64(..);
    rt.block_on(async {
        let started = Instant::now();
        let until = started + length;
        let tasks: Vec<_> = (0..writers)
            .map(|w| {
                let stream = format!("r{round:x}-w{w}");
                if subject {
                    tokio::spawn(store_writer(bench.store.clone(), stream, size, until))
                } else {
                    tokio::spawn(floor_writer(bench.floor.clone(), stream, size, until))
                }
            })
            .collect();
        let mut events = 0;
        for task in tasks {
            events += task.await.unwrap();
        }
        events as f64 / started.elapsed().as_secs_f64()
    })
}

/// Appends to the empty tables, enough times for the connections used to keep a generic plan
/// of their statements (PostgreSQL settles on one after five runs); then [`PREFILLED_EVENTS`] events in streams of 1,000, in the store and in the
/// floor's table.
fn prefill(rt: &Runtime, bench: &Bench) {
    rt.block_on(async {
        for n in 0..POOL * 8 {
            let stream = format!("empty-{n}");
            let message = metadata(stream.clone());
            bench
                .store
                .append(
                    &stream,
                    ExpectedVersion::NoStream,
                    batch(1),
                    message.clone(),
                )
                .await
                .unwrap();
            floor_append(&bench.floor, &stream, -1, &batch(1), &message).await;
        }
        for chunk in 0..PREFILLED_EVENTS / 1_000 {
            let stream = format!("prefilled-{chunk}");
            let message = metadata(format!("prefilled-{chunk}"));
            bench
                .store
                .append(
                    &stream,
                    ExpectedVersion::NoStream,
                    batch(1_000),
                    message.clone(),
                )
                .await
                .unwrap();
            floor_append(&bench.floor, &stream, -1, &batch(1_000), &message).await;
        }
    });
}

/// The append cases `SWITCHYARD_POSTGRES_APPENDS` names (`1x100,50x1`), or none when unset.
fn selected_cases() -> Option<Vec<(usize, usize)>> {
    let names = std::env::var("SWITCHYARD_POSTGRES_APPENDS").ok()?;
    let cases: Vec<(usize, usize)> = CASES
        .into_iter()
        .filter(|(writers, size)| {
            names
                .split(',')
                .any(|name| name.trim() == format!("{writers}x{size}"))
        })
        .collect();
    assert!(
        !cases.is_empty(),
        "SWITCHYARD_POSTGRES_APPENDS={names} names none of the cases {CASES:?} (as 1x100,50x1)"
    );
    Some(cases)
}

/// The 10,000-event stream and its snapshot, in the store and in the floor's tables.
fn seed_cold(rt: &Runtime, bench: &Bench) {
    rt.block_on(async {
        let mut expected = ExpectedVersion::NoStream;
        for chunk in 0..COLD_EVENTS / 1_000 {
            let message = metadata(format!("cold-{chunk}"));
            let version = bench
                .store
                .append("cold", expected, batch(1_000), message.clone())
                .await
                .unwrap();
            expected = ExpectedVersion::Exactly(version);
            floor_append(
                &bench.floor,
                "cold",
                chunk as i64 * 1_000 - 1,
                &batch(1_000),
                &message,
            )
            .await;
        }
        let snapshot = StoredState {
            version: (COLD_EVENTS - SNAPSHOT_TAIL - 1) as i64,
            schema_version: 1,
            data: vec![7; 256].into(),
        };
        bench
            .store
            .save_snapshot("cold", snapshot.clone())
            .await
            .unwrap();
        bench
            .floor
            .get()
            .await
            .unwrap()
            .execute(
                "INSERT INTO floor_snapshots (stream, version, data) VALUES ('cold', $1, $2)",
                &[&snapshot.version, &snapshot.data.as_ref()],
            )
            .await
            .unwrap();
    });
}

/// Milliseconds to load the cold stream through the store, with or without its snapshot.
fn time_load(rt: &Runtime, store: &PostgresStore, snapshot: bool) -> f64 {
    rt.block_on(async {
        let started = Instant::now();
        let from = if snapshot {
            let snapshot = store.load_snapshot("cold").await.unwrap().unwrap();
            std::hint::black_box(&snapshot);
            snapshot.version + 1
        } else {
            0
        };
        let mut pages = store.read_stream("cold", from, PAGE);
        let mut count = 0;
        while let Some(page) = pages.next().await {
            count += std::hint::black_box(page.unwrap()).len();
        }
        let expected = if snapshot { SNAPSHOT_TAIL } else { COLD_EVENTS };
        assert_eq!(count, expected);
        started.elapsed().as_secs_f64() * 1_000.0
    })
}

/// Milliseconds to load the same rows by hand: one `SELECT` (after the snapshot's).
fn time_floor_load(rt: &Runtime, pool: &deadpool_postgres::Pool, snapshot: bool) -> f64 {
    rt.block_on(async {
        let started = Instant::now();
        let client = pool.get().await.unwrap();
        let from: i64 = if snapshot {
            let row = client
                .query_one(
                    "SELECT version, data FROM floor_snapshots WHERE stream = 'cold'",
                    &[],
                )
                .await
                .unwrap();
            let data: Vec<u8> = row.get(1);
            std::hint::black_box(data);
            row.get::<_, i64>(0) + 1
        } else {
            0
        };
        let load = client.prepare_cached(FLOOR_LOAD).await.unwrap();
        let rows = client.query(&load, &[&"cold", &from]).await.unwrap();
        let events: Vec<(i64, Vec<u8>)> = rows.iter().map(|r| (r.get(1), r.get(5))).collect();
        let expected = if snapshot { SNAPSHOT_TAIL } else { COLD_EVENTS };
        assert_eq!(std::hint::black_box(events).len(), expected);
        started.elapsed().as_secs_f64() * 1_000.0
    })
}

fn criterion_benches(c: &mut Criterion) {
    let url = server();
    let rt = runtime();
    let bench = bench(&rt, &url);
    let mut group = c.benchmark_group("postgres_append");
    group.bench_function("append_one_event", |b| {
        b.iter_custom(|iters| {
            let store = bench.store.clone();
            rt.block_on(async move {
                let stream = format!("criterion-{:x}", fastrand::u64(..));
                let mut expected = ExpectedVersion::NoStream;
                let started = Instant::now();
                for i in 0..iters {
                    expected = ExpectedVersion::Exactly(
                        store
                            .append(&stream, expected, batch(1), metadata(format!("c-{i}")))
                            .await
                            .unwrap(),
                    );
                }
                started.elapsed()
            })
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = support::criterion();
    targets = criterion_benches
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    if support::criterion_only() {
        return;
    }
    let url = server();
    let rt = runtime();
    let selected = selected_cases();
    let (length, rounds, cold_rounds) = if support::quick() {
        (QUICK_ROUND, 2, 5)
    } else {
        (ROUND, 5, 15)
    };
    let bench = Arc::new(bench(&rt, &url));
    prefill(&rt, &bench);
    let load_before = support::load_average();
    let mut appends = Vec::new();
    for case @ (writers, size) in selected.clone().unwrap_or(CASES.to_vec()) {
        let rounds = alternate(
            rounds,
            || throughput(&rt, &bench, case, length, false),
            || throughput(&rt, &bench, case, length, true),
        );
        appends.push((writers, size, rounds));
    }
    let cold = selected.is_none().then(|| {
        seed_cold(&rt, &bench);
        let without = alternate(
            cold_rounds,
            || time_floor_load(&rt, &bench.floor, false),
            || time_load(&rt, &bench.store, false),
        );
        let with = alternate(
            cold_rounds,
            || time_floor_load(&rt, &bench.floor, true),
            || time_load(&rt, &bench.store, true),
        );
        (without, with)
    });

    let mut out = String::new();
    out.push_str(
        "## PostgreSQL appends and loads (`switchyard-postgres`, bench `postgres_append`)\n\n",
    );
    out.push_str(
        "`PostgresStore::append` on a throwaway PostgreSQL 15 server on this machine's disk \
         (`fsync` and `synchronous_commit` on: every acknowledged append is on disk), pool of 50 \
         connections, 2-worker runtime; each writer appends to its own stream with the expected \
         version, 64-byte events, a message id per append. Floor: the same rows inserted by hand \
         through tokio-postgres and a deadpool-postgres pool of 50, one multi-row `INSERT` in a \
         `BEGIN … COMMIT` per batch, into a table of the same columns keyed by `(stream, \
         version)`. Both tables hold 100,000 events of other streams before the first round, \
         filled after 400 appends to them empty. \
         Medians of 5 alternating rounds of 1.5 s.\n\n",
    );
    if support::quick() || selected.is_some() {
        out.push_str(
            "**Quick mode (`SWITCHYARD_BENCH_QUICK`) or a selection of cases \
             (`SWITCHYARD_POSTGRES_APPENDS`): figures not comparable.**\n\n",
        );
    }
    out.push_str(
        "| writers × batch | floor events/s | events/s | events/s / floor | targets |\n|---|---|---|---|---|\n",
    );
    let mut misses: Vec<String> = Vec::new();
    for (writers, size, rounds) in &appends {
        let rate = median(&rounds.subject);
        let share = rounds.ratio();
        let mut targets = format!("≥ 0.7 of floor: {}", met(share >= 0.7));
        if share < 0.7 {
            misses.push(format!(
                "{writers} × {size}: {share:.2} of its floor (target 0.7)"
            ));
        }
        let wanted = match (writers, size) {
            (50, 1) => Some(10_000.0),
            (_, 100) => Some(50_000.0),
            _ => None,
        };
        if let Some(wanted) = wanted {
            targets.push_str(&format!(
                "; ≥ {wanted:.0} events/s: {}",
                met(rate >= wanted)
            ));
            if rate < wanted {
                misses.push(format!(
                    "{writers} × {size}: {rate:.0} events/s (target {wanted:.0})"
                ));
            }
        }
        out.push_str(&format!(
            "| {writers} × {size} | {:.0} | {:.0} | {share:.2} | {targets} |\n",
            median(&rounds.floor),
            rate,
        ));
    }
    if let Some((without, with)) = &cold {
        out.push_str(&format!(
            "\nCold load of a {COLD_EVENTS}-event stream: `read_stream` over every page of {PAGE} \
             events (one statement, its rows handed out in pages as they arrive), and \
             `load_snapshot` plus the {SNAPSHOT_TAIL} events after the snapshot. Floor: one raw \
             `SELECT` of the same rows (after the snapshot's row) through the same kind of pool. \
             Medians of 15 alternating rounds.\n\n"
        ));
        out.push_str(
            "| cold load | floor | load | load / floor | targets |\n|---|---|---|---|---|\n",
        );
        for (name, rounds, target, ratio_target) in [
            ("without a snapshot", without, 20.0, Some(1.2)),
            ("with a snapshot", with, 1.0, None),
        ] {
            let load = median(&rounds.subject);
            let ratio = rounds.ratio();
            let mut targets = format!("≤ {target} ms: {}", met(load <= target));
            if load > target {
                misses.push(format!(
                    "cold load {name}: {load:.3} ms (target {target} ms)"
                ));
            }
            if let Some(wanted) = ratio_target {
                targets.push_str(&format!(
                    "; ≤ {wanted}× the floor: {}",
                    met(ratio <= wanted)
                ));
                if ratio > wanted {
                    misses.push(format!(
                        "cold load {name}: {ratio:.2}× its floor (target {wanted}×)"
                    ));
                }
            }
            out.push_str(&format!(
                "| {name} | {:.3} ms | {load:.3} ms | {ratio:.2}× | {targets} |\n",
                median(&rounds.floor),
            ));
        }
    }
    out.push_str(&closing(
        &misses,
        (&load_before, &support::load_average()),
        "counting this bench and its server; other work on the machine's 2 cores and its disk \
         slows every figure",
    ));
    println!("\n{out}");
    if selected.is_none() {
        support::write_section("31-postgres_append.md", &out);
    }
}
