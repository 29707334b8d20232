//! Appends and cold loads on the SQLite store, each beside a raw rusqlite floor measured in the
//! same run, on a file in `target/` with the durability named in each row.
//!
//! - Append throughput (events/s) with 1 and 50 concurrent writers, each appending to its own
//!   stream with an expected version, in appends of 1 and of 100 events. Floor: the same rows
//!   inserted by one thread through rusqlite into the same table, `writers × batch` rows per
//!   transaction: what a perfect group commit would do.
//! - Allocations per append of one event, with 1 and 50 writers, counted in a pass of their own.
//! - Cold load of a 10,000-event stream through `Repo::load`, without and with a snapshot.
//!   Floor: selecting the same rows (or the snapshot's row) through rusqlite.
//!
//! Run with `cargo xtask bench` (which writes `docs/benchmarks.md`) or
//! `cargo bench -p switchyard-sqlite --bench sqlite_append`. One append shape alone, for a
//! profiler: `SWITCHYARD_BENCH_PHASE=normal-50x1 cargo xtask profile sqlite_append --label
//! before` (`full` or `normal`, then writers `x` events per append, as in the table;
//! `floor-normal-50x1` runs its floor instead).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group};
use rusqlite::{Connection, params};
use serde::{Deserialize, Serialize};
use switchyard_aggregates::repo::Repo;
use switchyard_aggregates::store::{
    EventAppender, EventMetadata, ExpectedVersion, NewEvent, SnapshotStore,
};
use switchyard_aggregates::{Aggregate, AggregateState};
use switchyard_messaging::Message;
use switchyard_sqlite::{SqliteOptions, SqliteStore, Synchronous};
use tokio::runtime::Runtime;

use switchyard_bench_support::allocations::{self, Counter};
use switchyard_bench_support::{
    self as support, alternate, closing, median, met, runtime, target_dir,
};

/// Counts allocations for the pass that reports them (not during the timed rounds).
#[global_allocator]
static ALLOCATOR: Counter = &allocations::INSTRUMENTED_SYSTEM;

#[derive(Default, Serialize, Deserialize)]
struct Account {
    balance: u64,
}

#[derive(Clone, Serialize, Deserialize)]
struct Deposited(u64);

impl Aggregate for Account {
    type Event = Deposited;
    const NAME: &'static str = "account";
    fn apply(&mut self, event: &Deposited) {
        self.balance += event.0;
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

const PAYLOAD: [u8; 64] = [7; 64];

fn new_event() -> NewEvent {
    NewEvent {
        event_type: "deposited".into(),
        schema_version: 1,
        data: PAYLOAD.to_vec().into(),
    }
}

/// Message ids that grow over time, as the default UUIDv7 ids do.
fn next_message_id() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!("message-{:012}", NEXT.fetch_add(1, Ordering::Relaxed))
}

fn metadata() -> EventMetadata {
    EventMetadata {
        message_id: next_message_id(),
        correlation_id: "correlation".into(),
        causation_id: "causation".into(),
        user: Default::default(),
    }
}

#[derive(Clone, Copy)]
struct Shape {
    synchronous: Synchronous,
    writers: usize,
    batch: usize,
    /// Appends per writer in one round.
    appends: usize,
}

impl Shape {
    fn events(&self) -> usize {
        self.writers * self.batch * self.appends
    }

    /// How a profiler's phase names it: `normal-50x1`.
    fn phase_name(&self) -> String {
        format!(
            "{}-{}x{}",
            pragma_value(self.synchronous),
            self.writers,
            self.batch
        )
    }
}

/// The `synchronous` pragma's value, lowercase as phases spell it.
fn pragma_value(synchronous: Synchronous) -> &'static str {
    match synchronous {
        Synchronous::Full => "full",
        Synchronous::Normal => "normal",
    }
}

/// The shapes the table measures, in its order.
fn shapes() -> Vec<Shape> {
    let mut shapes = Vec::new();
    for synchronous in [Synchronous::Full, Synchronous::Normal] {
        for (writers, batch, appends) in [(1, 1, 300), (50, 1, 200), (1, 100, 200), (50, 100, 20)] {
            shapes.push(Shape {
                synchronous,
                writers,
                batch,
                appends,
            });
        }
    }
    shapes
}

/// Runs one shape's rounds (the store's, or with `floor-` its floor's) until `length` passed.
fn profile_phase(phase: &str, length: Duration) {
    let (floor, name) = match phase.strip_prefix("floor-") {
        Some(name) => (true, name),
        None => (false, phase),
    };
    let known: Vec<String> = shapes().iter().map(Shape::phase_name).collect();
    let Some(shape) = shapes()
        .into_iter()
        .find(|shape| shape.phase_name() == name)
    else {
        panic!(
            "SWITCHYARD_BENCH_PHASE is one of {}, or one of those after `floor-`; not `{phase}`",
            known.join(", ")
        );
    };
    let rt = runtime();
    let started = Instant::now();
    let (mut events, mut rates) = (0, Vec::new());
    while started.elapsed() < length {
        rates.push(if floor {
            raw_round(shape)
        } else {
            store_round(&rt, shape)
        });
        events += shape.events();
    }
    println!(
        "{phase}: {events} events in {:.1} s, median {:.0} events/s over {} rounds",
        started.elapsed().as_secs_f64(),
        median(&rates),
        rates.len()
    );
}

/// Events per second appended through the store.
fn store_round(rt: &Runtime, shape: Shape) -> f64 {
    let path = fresh_path("store");
    let options = SqliteOptions::default().synchronous(shape.synchronous);
    let store = SqliteStore::open_with(&path, options).unwrap();
    let started = Instant::now();
    append_all(rt, &store, shape, "account");
    let rate = shape.events() as f64 / started.elapsed().as_secs_f64();
    drop(store);
    wait_closed(&path);
    rate
}

/// Allocations on the heap of Rust code (SQLite's own are not counted), on every thread, per
/// append of `shape`, counted over a whole round: the appends' own (their events and metadata,
/// built by the writers) included.
fn allocations_per_append(rt: &Runtime, shape: Shape) -> f64 {
    let path = fresh_path("allocations");
    let options = SqliteOptions::default().synchronous(shape.synchronous);
    let store = SqliteStore::open_with(&path, options).unwrap();
    // The statements are compiled and the runtime's threads started before counting.
    append_all(
        rt,
        &store,
        Shape {
            appends: 1,
            ..shape
        },
        "warm-up",
    );
    let per_round =
        allocations::per_call(ALLOCATOR, 1, || append_all(rt, &store, shape, "account"));
    drop(store);
    wait_closed(&path);
    per_round / (shape.writers * shape.appends) as f64
}

/// Appends `shape`'s events to `store`, each writer to a new stream of its own, `<prefix>-<n>`.
fn append_all(rt: &Runtime, store: &SqliteStore, shape: Shape, prefix: &'static str) {
    rt.block_on(async {
        let writers: Vec<_> = (0..shape.writers)
            .map(|w| {
                let store = store.clone();
                tokio::spawn(async move {
                    let stream = format!("{prefix}-{w}");
                    let mut version = -1_i64;
                    for _ in 0..shape.appends {
                        let expected = if version < 0 {
                            ExpectedVersion::NoStream
                        } else {
                            ExpectedVersion::Exactly(version)
                        };
                        let events = (0..shape.batch).map(|_| new_event()).collect();
                        version = store
                            .append(&stream, expected, events, metadata())
                            .await
                            .unwrap();
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.await.unwrap();
        }
    });
}

/// Waits until the store's threads closed the file: the last connection to close checkpoints
/// the log into the file, syncs it and deletes the log. Left to run on, that work would slow
/// the next round (the floor's) down.
fn wait_closed(path: &std::path::Path) {
    let log = PathBuf::from(format!("{}-wal", path.display()));
    let started = Instant::now();
    while log.exists() && started.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Events per second inserted raw: one thread, `writers × batch` rows per transaction.
fn raw_round(shape: Shape) -> f64 {
    let path = fresh_path("raw");
    let mut conn = Connection::open(&path).unwrap();
    let _: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .unwrap();
    conn.pragma_update(None, "synchronous", pragma_value(shape.synchronous))
        .unwrap();
    // The store's own tables and indexes: the floor writes the same rows into the same table.
    conn.execute_batch(include_str!("../migrations/0001_events.sql"))
        .unwrap();
    let started = Instant::now();
    for n in 0..shape.appends {
        let tx = conn.transaction().unwrap();
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO events (stream, version, event_type, schema_version, data,
                        message_id, correlation_id, causation_id, user_metadata, recorded_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                )
                .unwrap();
            for w in 0..shape.writers {
                for b in 0..shape.batch {
                    let version = (n * shape.batch + b) as i64;
                    insert
                        .execute(params![
                            format!("account-{w}"),
                            version,
                            "deposited",
                            1,
                            &PAYLOAD[..],
                            next_message_id(),
                            "correlation",
                            "causation",
                            "{}",
                            0_i64,
                        ])
                        .unwrap();
                }
            }
        }
        tx.commit().unwrap();
    }
    shape.events() as f64 / started.elapsed().as_secs_f64()
}

/// A 10,000-event stream in a file, a repository loading it plainly and one from a snapshot.
struct Cold {
    path: PathBuf,
    plain: Repo<Account>,
    snapshotting: Repo<Account>,
}

const COLD_EVENTS: usize = 10_000;

fn cold(rt: &Runtime) -> Cold {
    let path = fresh_path("cold");
    let store = Arc::new(SqliteStore::open(&path).unwrap());
    let plain = Repo::<Account>::event_sourced(store.clone());
    let snapshotting = Repo::<Account>::event_sourced(store.clone())
        .with_snapshots(store.clone(), COLD_EVENTS as u64);
    let events: Vec<Deposited> = (0..COLD_EVENTS as u64).map(Deposited).collect();
    rt.block_on(async {
        let mut state = AggregateState::default();
        snapshotting
            .commit(
                "cold",
                &mut state,
                events,
                &Message::new("seed"),
                Default::default(),
            )
            .await
            .unwrap();
        let snapshot = store.load_snapshot("account-cold").await.unwrap();
        assert_eq!(snapshot.map(|s| s.version), Some(COLD_EVENTS as i64 - 1));
    });
    Cold {
        path,
        plain,
        snapshotting,
    }
}

fn time_load(rt: &Runtime, repo: &Repo<Account>) -> f64 {
    rt.block_on(async {
        let started = Instant::now();
        let state = repo.load("cold").await.unwrap().unwrap();
        assert_eq!(state.version, COLD_EVENTS as i64 - 1);
        std::hint::black_box(state.state.balance);
        started.elapsed().as_secs_f64() * 1_000.0
    })
}

fn time_raw_select(conn: &Connection, sql: &str) -> f64 {
    let started = Instant::now();
    let mut statement = conn.prepare_cached(sql).unwrap();
    let mut rows = statement.query(["account-cold"]).unwrap();
    let mut bytes = 0;
    while let Some(row) = rows.next().unwrap() {
        let data: Vec<u8> = row.get(0).unwrap();
        bytes += data.len();
    }
    std::hint::black_box(bytes);
    started.elapsed().as_secs_f64() * 1_000.0
}

fn criterion_benches(c: &mut Criterion) {
    let rt = runtime();
    let path = fresh_path("criterion");
    let store = SqliteStore::open_with(
        &path,
        SqliteOptions::default().synchronous(Synchronous::Normal),
    )
    .unwrap();
    let mut group = c.benchmark_group("sqlite_append");
    group.bench_function("append_one_event_normal", |b| {
        b.iter(|| {
            rt.block_on(store.append(
                "criterion",
                ExpectedVersion::Any,
                vec![new_event()],
                metadata(),
            ))
            .unwrap()
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
    if let Some((phase, length)) = support::phase() {
        return profile_phase(&phase, length);
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
    if support::criterion_only() {
        return;
    }
    let rt = runtime();
    let load_before = support::load_average();
    let mut misses: Vec<String> = Vec::new();
    let mut out = String::new();
    out.push_str("## SQLite store (`switchyard-sqlite`, bench `sqlite_append`)\n\n");
    out.push_str(
        "Appends through `EventAppender::append` to a fresh file in `target/` (WAL; a 64-byte \
         event, message id, correlation and causation ids): each writer is a tokio task \
         appending to its own stream with an expected version, on a 2-worker runtime. Floor: the \
         same rows inserted by one thread through rusqlite into the same table and indexes (the \
         store's own schema) with the same durability, `writers × batch` rows per transaction: a \
         perfect group commit with no version check and no hand-off between threads. Medians of \
         5 alternating rounds; the ratio is taken round by round. Each store round waits for the \
         store to close its file (its last checkpoint) before the next round starts. With \
         `Full`, both sides wait on the disk's sync, whose latency other work on the machine \
         changes from round to round: `Normal` rows measure the store's own cost.\n\n",
    );
    out.push_str(
        "| synchronous | writers | events per append | floor events/s | store events/s | store / floor | targets |\n|---|---|---|---|---|---|---|\n",
    );
    for shape in shapes() {
        let rounds = alternate(5, || raw_round(shape), || store_round(&rt, shape));
        let (rate, share) = (median(&rounds.subject), rounds.ratio());
        let name = format!(
            "{:?}, {} × {}",
            shape.synchronous, shape.writers, shape.batch
        );
        let mut targets = format!("≥ 0.7 of floor: {}", met(share >= 0.7));
        if share < 0.7 {
            misses.push(format!("{name}: {share:.2} of its floor (target 0.7)"));
        }
        if shape.writers == 50 && shape.batch == 1 {
            let wanted = match shape.synchronous {
                Synchronous::Full => 25_000.0,
                Synchronous::Normal => 50_000.0,
            };
            targets.push_str(&format!(
                "; ≥ {} events/s: {}",
                support::thousands(wanted as u64),
                met(rate >= wanted)
            ));
            if rate < wanted {
                misses.push(format!(
                    "{name}: {rate:.0} events/s (target {})",
                    support::thousands(wanted as u64)
                ));
            }
        }
        let row = format!(
            "| {:?} | {} | {} | {:.0} | {rate:.0} | {share:.2} | {targets} |\n",
            shape.synchronous,
            shape.writers,
            shape.batch,
            median(&rounds.floor),
        );
        eprint!("{row}");
        out.push_str(&row);
    }
    out.push_str(
        "\nTargets: with 50 writers and 1 event per append, ≥ 25,000 events/s with `Full` and \
         ≥ 50,000 with `Normal` (absolute figures: the machine's speed and its disk's sync \
         latency move them); every append path ≥ 0.7 of its floor.\n\n",
    );
    let counted: Vec<String> = [1, 50]
        .into_iter()
        .map(|writers| {
            let shape = Shape {
                synchronous: Synchronous::Normal,
                writers,
                batch: 1,
                appends: 100,
            };
            let per_append = allocations_per_append(&rt, shape);
            let noun = if writers == 1 { "writer" } else { "writers" };
            format!("{per_append:.1} with {writers} {noun}")
        })
        .collect();
    out.push_str(&format!(
        "Allocations per append of 1 event (Rust's heap on every thread, counted in a pass of \
         their own; SQLite's own are not counted; the event, its metadata and the append's \
         future included): {}.\n\n",
        counted.join(", ")
    ));
    out.push_str(
        "Where the time goes (`cargo xtask profile sqlite_append`, with \
         `SWITCHYARD_BENCH_PHASE=normal-50x1` or `normal-1x1`; graphs under `docs/profiles/`): at \
         50 writers × 1 event, the writer thread takes about four fifths of the CPU: the inserts \
         and, at commit, their WAL frames (what the floor does too), then one look-up per append \
         (the expected version and the message id, about a tenth of the writer's time) and the \
         statement cache's bookkeeping; the writers' tasks take about a seventh. At 1 writer × \
         1 event, each append crosses from the caller's task to the writer's thread and back, \
         each crossing a wake-up and a context switch (about a quarter of the CPU, in the \
         kernel's scheduler), beside the commit's writes to the log: the floor crosses no \
         thread.\n\n",
    );

    let cold = cold(&rt);
    let conn = Connection::open(&cold.path).unwrap();
    let without = alternate(
        15,
        || {
            time_raw_select(
                &conn,
                "SELECT data FROM events WHERE stream = ?1 ORDER BY version",
            )
        },
        || time_load(&rt, &cold.plain),
    );
    let with = alternate(
        15,
        || time_raw_select(&conn, "SELECT data FROM snapshots WHERE stream = ?1"),
        || time_load(&rt, &cold.snapshotting),
    );
    out.push_str(
        "Cold load of a 10,000-event stream (`Repo::load`: read in pages, decode, fold) from a \
         file whose pages the OS has cached. Floor: selecting the same rows' data (or the \
         snapshot's row) through rusqlite on the caller's thread. Medians of 15 alternating \
         rounds.\n\n",
    );
    out.push_str("| cold load | floor | load | load / floor | target |\n|---|---|---|---|---|\n");
    for (name, rounds, target) in [
        ("without a snapshot", &without, 20.0),
        ("with a snapshot", &with, 1.0),
    ] {
        let load = median(&rounds.subject);
        if load > target {
            misses.push(format!(
                "cold load {name}: {load:.3} ms (target {target} ms)"
            ));
        }
        out.push_str(&format!(
            "| {name} | {:.3} ms | {load:.3} ms | {:.2}× | ≤ {target} ms: {} |\n",
            median(&rounds.floor),
            rounds.ratio(),
            met(load <= target)
        ));
    }
    out.push_str(&closing(
        &misses,
        (&load_before, &support::load_average()),
        "other work on the machine's 2 cores and its disk slows every figure",
    ));
    println!("\n{out}");
    support::write_section("30-sqlite_append.md", &out);
}
