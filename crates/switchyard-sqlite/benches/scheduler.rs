//! The scheduler on its stores: schedule throughput (memory, SQLite), delivery lateness on SQLite
//! with leases (10,000 alarms spread over one second, and a burst of 10,000 due at once), and
//! resident memory with 1,000,000 pending alarms of which only the window is held.
//!
//! Run with `cargo xtask bench` (which writes `docs/benchmarks.md`) or
//! `cargo bench -p switchyard-sqlite --features scheduler --bench scheduler`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use criterion::{Criterion, criterion_group};
use rusqlite::{Connection, params};
use switchyard_messaging::{Message, Node, Router};
use switchyard_scheduler::store::{AlarmStore, MemoryAlarmStore};
use switchyard_scheduler::{Scheduler, SchedulerConfig, When, assigns};
use switchyard_sqlite::{SqliteOptions, SqliteStore, Synchronous};
use tokio::runtime::Runtime;

#[path = "../../../benches/support.rs"]
mod support;
use support::{runtime, target_dir};

fn fresh_path(name: &str) -> PathBuf {
    let dir = target_dir().join("switchyard-bench-scratch");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.db"));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    path
}

/// Lateness of every delivery, recorded by the service.
type Lateness = Arc<Mutex<Vec<Duration>>>;

fn node(name: &str, lateness: Lateness) -> Node {
    let node = Node::new(name);
    node.register(
        Router::new("bench")
            .service("tick", move |msg: Message| {
                let now = SystemTime::now();
                if let Some(due) = assigns::dispatch_at(&msg) {
                    let late = now.duration_since(due).unwrap_or_default();
                    lateness.lock().unwrap().push(late);
                }
                async move { msg.ok() }
            })
            .authorize(|_| Ok(())),
    )
    .unwrap();
    node
}

/// Alarms per second scheduled by 50 concurrent tasks.
fn throughput(rt: &Runtime, store: impl AlarmStore + Clone + 'static, count: usize) -> f64 {
    rt.block_on(async {
        let scheduler = Scheduler::start(
            node("tp", Lateness::default()),
            store,
            SchedulerConfig::default(),
        )
        .unwrap();
        let started = Instant::now();
        let tasks = (0..50).map(|t| {
            let scheduler = scheduler.clone();
            tokio::spawn(async move {
                for n in 0..count / 50 {
                    scheduler
                        .schedule(
                            Message::new("tick").with_id(format!("tp-{t}-{n}")),
                            "bench",
                            When::In(Duration::from_secs(3_600 * 24)),
                        )
                        .await
                        .unwrap();
                }
            })
        });
        futures::future::join_all(tasks).await;
        let rate = count as f64 / started.elapsed().as_secs_f64();
        scheduler.shutdown().await;
        rate
    })
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// Schedules `count` alarms due over `spread` from `lead` ahead, waits for every delivery, and
/// returns the sorted lateness.
fn lateness(
    rt: &Runtime,
    name: &str,
    synchronous: Synchronous,
    count: usize,
    spread: Duration,
) -> Vec<Duration> {
    rt.block_on(async {
        let recorded = Lateness::default();
        let options = SqliteOptions::default().synchronous(synchronous);
        let store = SqliteStore::open_with(fresh_path(name), options).unwrap();
        let scheduler = Scheduler::start(
            node(name, recorded.clone()),
            store,
            SchedulerConfig::default(),
        )
        .unwrap();
        let start = SystemTime::now() + Duration::from_secs(4);
        let tasks = (0..50_usize).map(|t| {
            let scheduler = scheduler.clone();
            tokio::spawn(async move {
                for n in (t..count).step_by(50) {
                    let offset = spread.mul_f64(n as f64 / count as f64);
                    scheduler
                        .schedule(
                            Message::new("tick").with_id(format!("{t}-{n}")),
                            "bench",
                            When::At(start + offset),
                        )
                        .await
                        .unwrap();
                }
            })
        });
        futures::future::join_all(tasks).await;
        assert!(
            SystemTime::now() < start,
            "scheduling took longer than the lead"
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        while recorded.lock().unwrap().len() < count {
            assert!(Instant::now() < deadline, "not every alarm was delivered");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        scheduler.shutdown().await;
        let mut late = recorded.lock().unwrap().clone();
        late.sort();
        late
    })
}

fn resident_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("VmRSS:"))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|kib| kib.parse().ok())
        })
        .unwrap_or(0)
}

fn micros(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH).unwrap().as_micros() as i64
}

/// Fills a file with `pending` alarms due from tomorrow on and `window` due within the hour,
/// through rusqlite (the store's own schema), then measures a scheduler started on it.
fn memory(rt: &Runtime, pending: usize, window: usize) -> (u64, u64, usize) {
    let path = fresh_path(&format!("scheduler-memory-{window}"));
    drop(SqliteStore::open(&path).unwrap());
    let mut conn = Connection::open(&path).unwrap();
    let tx = conn.transaction().unwrap();
    {
        let mut insert = tx
            .prepare("INSERT INTO alarms (id, aggregate_id, due, message) VALUES (?1, ?2, ?3, ?4)")
            .unwrap();
        let now = SystemTime::now();
        for n in 0..pending + window {
            let due = if n < window {
                now + Duration::from_secs(60 + n as u64 % 3_000)
            } else {
                now + Duration::from_secs(2 * 86_400 + n as u64)
            };
            let message = Message::new("tick")
                .with_id(format!("m-{n}"))
                .assign(assigns::DISPATCH_AT, &due)
                .assign(assigns::DISPATCH_ATTEMPTS, &0_u32);
            insert
                .execute(params![
                    message.id(),
                    "bench",
                    micros(due),
                    message.to_bytes().unwrap()
                ])
                .unwrap();
        }
    }
    tx.commit().unwrap();
    drop(conn);
    rt.block_on(async {
        let before = resident_kib();
        let store = SqliteStore::open(&path).unwrap();
        let scheduler = Scheduler::start(
            node("mem", Lateness::default()),
            store,
            SchedulerConfig::default(),
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while scheduler.held().await < window {
            assert!(Instant::now() < deadline, "the window was not loaded");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let held = scheduler.held().await;
        let after = resident_kib();
        scheduler.shutdown().await;
        (before, after, held)
    })
}

fn memory_section() -> String {
    let rt = runtime();
    let (before, after, held) = memory(&rt, 1_000_000, 1_000);
    let (wide_before, wide_after, wide_held) = memory(&rt, 0, 100_000);
    format!(
        "Resident memory of a scheduler started on a SQLite file, from before it starts to once \
         its window is loaded (resident set, measured first in the bench process):\n\n\
         | pending in the file | held in the window | resident before | after | growth |\n\
         |---|---|---|---|---|\n\
         | 1,001,000 (1,000,000 due from two days on) | {held} | {:.1} MiB | {:.1} MiB | +{:.1} MiB |\n\
         | 100,000 (all within the window) | {wide_held} | {:.1} MiB | {:.1} MiB | +{:.1} MiB |\n\n\
         Target: memory bounded by the window, not by the pending count.\n",
        before as f64 / 1024.0,
        after as f64 / 1024.0,
        after.saturating_sub(before) as f64 / 1024.0,
        wide_before as f64 / 1024.0,
        wide_after as f64 / 1024.0,
        wide_after.saturating_sub(wide_before) as f64 / 1024.0,
    )
}

fn criterion_benches(c: &mut Criterion) {
    let rt = runtime();
    let store = MemoryAlarmStore::new();
    let scheduler = rt.block_on(async {
        Scheduler::start(
            node("crit", Lateness::default()),
            store,
            SchedulerConfig::default(),
        )
        .unwrap()
    });
    let mut group = c.benchmark_group("scheduler");
    group.bench_function("schedule_memory", |b| {
        b.to_async(&rt).iter(|| async {
            scheduler
                .schedule(
                    Message::new("tick"),
                    "bench",
                    When::In(Duration::from_secs(86_400)),
                )
                .await
                .unwrap()
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    targets = criterion_benches
}

fn main() {
    let measuring =
        !std::env::args().any(|arg| arg == "--test" || arg == "--list" || arg == "--profile-time");
    // First, before anything else has grown the heap: resident memory only ever grows.
    let memory_section = if measuring {
        memory_section()
    } else {
        String::new()
    };
    benches();
    Criterion::default().configure_from_args().final_summary();
    if std::env::args().any(|arg| arg == "--test" || arg == "--list" || arg == "--profile-time") {
        return;
    }
    let rt = runtime();
    let mut out = String::new();
    out.push_str(
        "## Scheduler (`switchyard-scheduler`, bench `scheduler` of `switchyard-sqlite`)\n\n",
    );
    out.push_str(
        "`Scheduler::schedule` by 50 concurrent tasks on a 2-worker runtime, alarms a day ahead \
         (saved, not armed). SQLite: a fresh file in `target/`, `Synchronous::Full`, so every \
         acknowledged alarm is synced.\n\n| store | alarms | alarms/s |\n|---|---|---|\n",
    );
    let memory_rate = throughput(&rt, MemoryAlarmStore::new(), 100_000);
    out.push_str(&format!("| memory | 100,000 | {memory_rate:.0} |\n"));
    let sqlite_rate = throughput(
        &rt,
        SqliteStore::open(fresh_path("scheduler-tp")).unwrap(),
        20_000,
    );
    out.push_str(&format!("| SQLite | 20,000 | {sqlite_rate:.0} |\n"));

    out.push_str(
        "\nDelivery lateness (arrival at the service minus `dispatch_at`) on SQLite with leases: \
         every delivery claims its alarm (a write), dispatches, and deletes it (a write), all \
         through the one writer thread, so with `Full` each delivery first waits for a synced \
         group commit.\n\n| load | synchronous | alarms | p50 | p99 | max |\n|---|---|---|---|---|---|\n",
    );
    for (name, synchronous, spread) in [
        ("spread over 1 s", Synchronous::Full, Duration::from_secs(1)),
        (
            "spread over 1 s",
            Synchronous::Normal,
            Duration::from_secs(1),
        ),
        ("burst, all due at once", Synchronous::Full, Duration::ZERO),
        (
            "burst, all due at once",
            Synchronous::Normal,
            Duration::ZERO,
        ),
    ] {
        let file = format!("scheduler-late-{}-{synchronous:?}", spread.as_millis());
        let late = lateness(&rt, &file, synchronous, 10_000, spread);
        out.push_str(&format!(
            "| {name} | {synchronous:?} | 10,000 | {:.2} ms | {:.2} ms | {:.2} ms |\n",
            percentile(&late, 0.5).as_secs_f64() * 1e3,
            percentile(&late, 0.99).as_secs_f64() * 1e3,
            late.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        ));
    }
    out.push_str("\nTarget: p99 ≤ 5 ms for the spread load.\n\n");

    out.push_str(&memory_section);
    println!("\n{out}");
    support::write_section("50-scheduler.md", &out);
}
