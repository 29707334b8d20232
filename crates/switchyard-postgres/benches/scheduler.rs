//! The scheduler on PostgreSQL: schedule throughput beside its raw floor measured in the same
//! run.
//!
//! - `Scheduler::schedule` alarms per second with 1 and 50 concurrent tasks, alarms a day ahead
//!   (saved, not armed), on a `PostgresStore` with a pool of 50 connections. Floor: the same
//!   rows (the message with its assigns, encoded by the codec) inserted by hand through
//!   tokio-postgres and a deadpool-postgres pool of the same size, one `INSERT` per alarm by
//!   the same number of tasks, into the store's own `alarms` table in a schema of its own.
//!
//! The server syncs every commit to disk (`fsync` and `synchronous_commit` on). It is
//! `SWITCHYARD_TEST_DATABASE_URL` when set (as `cargo xtask bench` sets it), else a throwaway
//! one started for this run.
//!
//! Run with `cargo xtask bench` (which writes `docs/benchmarks.md`) or
//! `cargo bench -p switchyard-postgres --features scheduler --bench scheduler`;
//! `SWITCHYARD_BENCH_QUICK=1` runs short rounds to check the bench itself.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use criterion::{Criterion, criterion_group};
use switchyard_messaging::{Message, Node, Router};
use switchyard_postgres::test_server;
use switchyard_postgres::{PostgresOptions, PostgresStore};
use switchyard_scheduler::{Scheduler, SchedulerConfig, When, assigns};
use tokio::runtime::Runtime;

use switchyard_bench_support::{
    self as support, alternate, concurrent_rate, load_average, median, quick, runtime,
};

const POOL: usize = 50;

/// How far ahead alarms are due: beyond the default window's two-window horizon (12 hours), so
/// they are saved but never armed.
const DAY: Duration = Duration::from_secs(86_400);

/// The floor's statement: the store's columns, a new alarm has no lease.
const FLOOR_INSERT: &str =
    "INSERT INTO alarms (id, aggregate_id, due, message, holder, lease_until)
                            VALUES ($1, $2, $3, $4, NULL, NULL)";

/// The server's URL: the given one, or a throwaway server's, started once and stopped by its
/// watchdog when this process ends.
fn server() -> String {
    test_server::shared_url().unwrap_or_else(|error| panic!("{error}"))
}

fn node() -> Node {
    let node = Node::new("bench");
    node.register(
        Router::new("bench")
            .service("tick", |msg: Message| async move { msg.ok() })
            .authorize(|_| Ok(())),
    )
    .unwrap();
    node
}

struct Bench {
    scheduler: Scheduler,
    floor: deadpool_postgres::Pool,
}

/// A scheduler on a store in a fresh schema, and the floor's pool on another fresh schema
/// holding the same tables (made by the store's migrations).
fn bench(rt: &Runtime, url: &str) -> Bench {
    let schema = format!("bench_{:016x}", fastrand::u64(..));
    let floor_schema = format!("{schema}_floor");
    rt.block_on(async {
        let options = |schema: &str| {
            PostgresOptions::default()
                .schema(schema.to_owned())
                .pool_size(POOL)
        };
        let store = PostgresStore::connect_with(url, options(&schema))
            .await
            .unwrap();
        drop(
            PostgresStore::connect_with(url, options(&floor_schema))
                .await
                .unwrap(),
        );
        let scheduler = Scheduler::start(node(), store, SchedulerConfig::default()).unwrap();
        let mut config: tokio_postgres::Config = url.parse().unwrap();
        config.options(format!("-c search_path={floor_schema}"));
        let manager = deadpool_postgres::Manager::new(config, tokio_postgres::NoTls);
        let floor = deadpool_postgres::Pool::builder(manager)
            .max_size(POOL)
            .build()
            .unwrap();
        Bench { scheduler, floor }
    })
}

fn micros(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH).unwrap().as_micros() as i64
}

/// Alarms per second scheduled (`subject`) or inserted raw by `tasks` concurrent tasks for one
/// round.
fn round(rt: &Runtime, bench: &Bench, tasks: usize, round: Duration, subject: bool) -> f64 {
    let (scheduler, floor) = (bench.scheduler.clone(), bench.floor.clone());
    concurrent_rate(rt, tasks, round, move |id| {
        let (scheduler, floor) = (scheduler.clone(), floor.clone());
        async move {
            if subject {
                scheduler
                    .schedule(Message::new("tick").with_id(id), "bench", When::In(DAY))
                    .await
                    .unwrap();
            } else {
                floor_insert(&floor, id).await;
            }
        }
    })
}

/// The row the store writes for a new alarm, written by hand.
async fn floor_insert(pool: &deadpool_postgres::Pool, id: String) {
    let due = SystemTime::now() + DAY;
    let message = Message::new("tick")
        .with_id(id)
        .assign(assigns::DISPATCH_AT, &due)
        .assign(assigns::DISPATCH_ATTEMPTS, &0_u32);
    let bytes = message.to_bytes().unwrap();
    let client = pool.get().await.unwrap();
    let insert = client.prepare_cached(FLOOR_INSERT).await.unwrap();
    client
        .execute(&insert, &[&message.id(), &"bench", &micros(due), &bytes])
        .await
        .unwrap();
}

fn criterion_benches(c: &mut Criterion) {
    let url = server();
    let rt = runtime();
    let bench = bench(&rt, &url);
    let mut group = c.benchmark_group("postgres_scheduler");
    group.bench_function("schedule_one", |b| {
        b.to_async(&rt).iter(|| async {
            bench
                .scheduler
                .schedule(Message::new("tick"), "bench", When::In(DAY))
                .await
                .unwrap()
        })
    });
    group.finish();
    rt.block_on(bench.scheduler.shutdown());
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
    let (length, rounds) = if quick() {
        (Duration::from_millis(300), 2)
    } else {
        (Duration::from_millis(1_500), 5)
    };
    let load_before = load_average();
    let url = server();
    let rt = runtime();
    let bench = bench(&rt, &url);
    let mut results = Vec::new();
    for tasks in [1, POOL] {
        let measured = alternate(
            rounds,
            || round(&rt, &bench, tasks, length, false),
            || round(&rt, &bench, tasks, length, true),
        );
        results.push((tasks, measured));
    }
    rt.block_on(bench.scheduler.shutdown());
    let load_after = load_average();

    let mut out = String::new();
    out.push_str("### Scheduler on PostgreSQL (bench `scheduler` of `switchyard-postgres`)\n\n");
    if quick() {
        out.push_str(
            "**Quick mode (`SWITCHYARD_BENCH_QUICK`): short rounds, figures not comparable.**\n\n",
        );
    }
    out.push_str(&format!(
        "`Scheduler::schedule` by 1 and {POOL} concurrent tasks on a 2-worker runtime, alarms a \
         day ahead (saved, not armed), on a throwaway PostgreSQL 15 server on this machine's \
         disk (`fsync` and `synchronous_commit` on: every acknowledged alarm is on disk), pool \
         of {POOL} connections. Floor: the same rows (the message with its `dispatch_at` and \
         `dispatch_attempts` assigns, encoded by the codec) inserted by hand by as many tasks \
         through tokio-postgres and a deadpool-postgres pool of {POOL}, one prepared `INSERT` \
         per alarm, into the store's own `alarms` table (with its indexes) in a schema of its \
         own. Medians of {rounds} alternating rounds of {:.1} s.\n\n\
         | tasks | floor alarms/s | alarms/s | alarms/s / floor |\n|---|---|---|---|\n",
        length.as_secs_f64(),
    ));
    for (tasks, measured) in &results {
        out.push_str(&format!(
            "| {tasks} | {:.0} | {:.0} | {:.2} |\n",
            median(&measured.floor),
            median(&measured.subject),
            measured.ratio(),
        ));
    }
    out.push_str(
        "\nTarget: issue 14 sets none for PostgreSQL (its schedule target, ≥ 0.7× the floor, is \
         for memory and SQLite); shown for comparison.\n",
    );
    out.push_str(&support::closing(
        &[],
        (&load_before, &load_after),
        "counting this bench and its server; other work on the machine's 2 cores slows every \
         figure",
    ));
    println!("\n{out}");
    support::write_section("51-scheduler_postgres.md", &out);
}
