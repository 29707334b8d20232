//! The scheduler on the memory and SQLite stores, each figure beside its floor measured in the
//! same run:
//!
//! - Schedule throughput (alarms/s) of `Scheduler::schedule` with 1 and 50 concurrent tasks,
//!   alarms a day ahead (saved, not armed). Floors: for memory, the same message inserted into a
//!   `Mutex<BTreeMap>` and its id sent down a tokio channel to a task, as the scheduler arms it;
//!   for SQLite, the same rows inserted by one thread through rusqlite into the store's own
//!   table with the same durability, one transaction per `tasks` rows (a perfect group commit).
//! - Delivery lateness (arrival at the service minus `dispatch_at`) of 10,000 alarms spread over
//!   one second, and of a burst of 10,000 due at the same instant, on SQLite (with leases, `Full`
//!   and `Normal`) and in memory. Floor: plain `tokio::time::sleep_until` timers for the same
//!   10,000 due instants on the same runtime, measured just before each row.
//! - Resident memory of a scheduler started in a fresh process on a SQLite file with 0, 100,000
//!   and 1,000,000 alarms pending beyond its window and 1,000 within it: the bench fills the
//!   file, then runs itself again as a child that opens the file, starts a scheduler, waits until
//!   it holds the window, and reads its own `/proc/self/status`. The empty file is the floor;
//!   a file of 100,000 alarms all within the window shows what held alarms cost instead.
//!
//! Run with `cargo xtask bench` (which writes `docs/benchmarks.md`) or
//! `cargo bench -p switchyard-sqlite --features scheduler --bench scheduler`;
//! `SWITCHYARD_BENCH_QUICK=1` runs reduced sizes to check the bench itself.
//! `SWITCHYARD_BENCH_PHASE=burst` (or `spread`, or `schedule`) runs one path alone, printing each round's
//! figures, for `cargo xtask profile sqlite/scheduler` (see `profile_phase`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use criterion::{Criterion, criterion_group};
use rusqlite::{Connection, params};
use switchyard_messaging::{Message, Node, Router};
use switchyard_scheduler::store::MemoryAlarmStore;
use switchyard_scheduler::{Scheduler, SchedulerConfig, When, assigns};
use switchyard_sqlite::{SqliteOptions, SqliteStore, Synchronous};
use tokio::runtime::Runtime;

use switchyard_bench_support::{
    self as support, Rounds, alternate, concurrent_rate, load_average, median, met, quick, runtime,
    target_dir,
};

/// Issue 14's target for the schedule path: alarms/s at least this share of the floor.
const SCHEDULE_TARGET: f64 = 0.7;
/// Issue 14's target for the burst on SQLite: every delivery's lateness at the 99th
/// percentile within this.
const BURST_P99_TARGET: Duration = Duration::from_millis(50);

/// Set in the child process that measures memory: the SQLite file to open.
const CHILD_FILE: &str = "SWITCHYARD_SCHEDULER_MEMORY_FILE";
/// Set in the child process: how many alarms its window must hold before it measures.
const CHILD_HELD: &str = "SWITCHYARD_SCHEDULER_MEMORY_HELD";
/// The child's answer on its standard output starts with this.
const CHILD_ANSWER: &str = "scheduler-memory:";

/// How far ahead throughput alarms are due: beyond the default window's two-window horizon
/// (12 hours), so they are saved but never armed.
const DAY: Duration = Duration::from_secs(86_400);

/// What one run measures; smaller in quick mode.
struct Sizes {
    round: Duration,
    rounds: usize,
    alarms: usize,
    pending: [usize; 2],
    window: usize,
    wide: usize,
    repeats: usize,
}

fn sizes() -> Sizes {
    if quick() {
        Sizes {
            round: Duration::from_millis(300),
            rounds: 2,
            alarms: 1_000,
            pending: [10_000, 100_000],
            window: 1_000,
            wide: 10_000,
            repeats: 1,
        }
    } else {
        Sizes {
            round: Duration::from_secs(1),
            // Seven, not five: a synced commit's time varies a lot on a shared disk.
            rounds: 7,
            alarms: 10_000,
            pending: [100_000, 1_000_000],
            window: 1_000,
            wide: 100_000,
            repeats: 3,
        }
    }
}

fn fresh_path(name: &str) -> PathBuf {
    let dir = target_dir().join("switchyard-bench-scratch");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.db"));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    path
}

/// A SQLite store on a fresh file with this durability.
fn sqlite(name: &str, synchronous: Synchronous) -> SqliteStore {
    let options = SqliteOptions::default().synchronous(synchronous);
    SqliteStore::open_with(fresh_path(name), options).unwrap()
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

fn start(name: &str, lateness: Lateness, store: impl StartOn) -> Scheduler {
    store.start_on(node(name, lateness))
}

/// The stores a scheduler starts on here, named so the bench does not depend on the store
/// trait's shape.
trait StartOn {
    fn start_on(self, node: Node) -> Scheduler;
}

impl StartOn for MemoryAlarmStore {
    fn start_on(self, node: Node) -> Scheduler {
        Scheduler::start(node, self, SchedulerConfig::default()).unwrap()
    }
}

impl StartOn for SqliteStore {
    fn start_on(self, node: Node) -> Scheduler {
        Scheduler::start(node, self, SchedulerConfig::default()).unwrap()
    }
}

/// A new prefix for the ids of one round, so no round replaces another's alarms.
fn round_id() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// The message the scheduler saves for an alarm due at `due`: the floors store the same one.
fn saved_message(id: String, due: SystemTime) -> Message {
    Message::new("tick")
        .with_id(id)
        .assign(assigns::DISPATCH_AT, &due)
        .assign(assigns::DISPATCH_ATTEMPTS, &0_u32)
}

/// Alarms per second scheduled by `tasks` concurrent tasks for one round.
fn schedule_round(rt: &Runtime, scheduler: &Scheduler, tasks: usize, round: Duration) -> f64 {
    let scheduler = scheduler.clone();
    concurrent_rate(rt, tasks, round, move |id| {
        let scheduler = scheduler.clone();
        async move {
            scheduler
                .schedule(Message::new("tick").with_id(id), "bench", When::In(DAY))
                .await
                .unwrap();
        }
    })
}

/// The memory floor: what the scheduler keeps of an alarm, in a map behind one mutex, and the
/// channel it arms alarms through.
#[derive(Clone)]
struct MemoryFloor {
    alarms: Arc<Mutex<BTreeMap<String, (SystemTime, Message)>>>,
    arm: tokio::sync::mpsc::UnboundedSender<(SystemTime, String)>,
}

impl MemoryFloor {
    fn start(rt: &Runtime) -> Self {
        let (arm, mut armed) = tokio::sync::mpsc::unbounded_channel();
        rt.spawn(async move { while armed.recv().await.is_some() {} });
        Self {
            alarms: Arc::default(),
            arm,
        }
    }

    fn insert(&self, id: String) {
        let due = SystemTime::now() + DAY;
        let message = saved_message(id.clone(), due);
        self.alarms
            .lock()
            .unwrap()
            .insert(id.clone(), (due, message));
        self.arm.send((due, id)).unwrap();
    }
}

/// Alarms per second inserted into the memory floor by `tasks` concurrent tasks for one round.
fn memory_floor_round(rt: &Runtime, floor: &MemoryFloor, tasks: usize, round: Duration) -> f64 {
    let floor = floor.clone();
    concurrent_rate(rt, tasks, round, move |id| {
        floor.insert(id);
        std::future::ready(())
    })
}

fn micros(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH).unwrap().as_micros() as i64
}

/// A raw connection to a file the store created (so its tables are the store's own), with the
/// store's journal mode and durability.
fn raw_connection(path: &Path, synchronous: Synchronous) -> Connection {
    drop(SqliteStore::open(path).unwrap());
    let conn = Connection::open(path).unwrap();
    let _: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
        .unwrap();
    let mode = match synchronous {
        Synchronous::Full => "FULL",
        Synchronous::Normal => "NORMAL",
    };
    conn.pragma_update(None, "synchronous", mode).unwrap();
    conn
}

const RAW_INSERT: &str = "INSERT INTO alarms (id, aggregate_id, due, message, holder, lease_until)
                          VALUES (?1, ?2, ?3, ?4, NULL, NULL)";

/// Alarms per second inserted raw by one thread into the store's table, `tasks` rows per
/// transaction, for one round.
fn sqlite_floor_round(conn: &mut Connection, tasks: usize, round: Duration) -> f64 {
    let prefix = round_id();
    let started = Instant::now();
    let until = started + round;
    let mut inserted = 0;
    while Instant::now() < until {
        let tx = conn.transaction().unwrap();
        {
            let mut insert = tx.prepare_cached(RAW_INSERT).unwrap();
            for _ in 0..tasks {
                let due = SystemTime::now() + DAY;
                let message = saved_message(format!("{prefix}-{inserted}"), due);
                insert
                    .execute(params![
                        message.id(),
                        "bench",
                        micros(due),
                        message.to_bytes().unwrap()
                    ])
                    .unwrap();
                inserted += 1;
            }
        }
        tx.commit().unwrap();
    }
    inserted as f64 / started.elapsed().as_secs_f64()
}

/// Throughput rounds of every store with 1 and 50 tasks.
fn throughput(rt: &Runtime, sizes: &Sizes) -> Vec<(&'static str, usize, Rounds)> {
    let memory =
        rt.block_on(async { start("tp-memory", Lateness::default(), MemoryAlarmStore::new()) });
    let memory_floor = MemoryFloor::start(rt);
    let sqlite = rt.block_on(async {
        start(
            "tp-sqlite",
            Lateness::default(),
            sqlite("scheduler-tp", Synchronous::Full),
        )
    });
    let mut raw = raw_connection(&fresh_path("scheduler-tp-raw"), Synchronous::Full);
    let mut results = Vec::new();
    for tasks in [1, 50] {
        let rounds = alternate(
            sizes.rounds,
            || memory_floor_round(rt, &memory_floor, tasks, sizes.round),
            || schedule_round(rt, &memory, tasks, sizes.round),
        );
        results.push(("memory", tasks, rounds));
    }
    for tasks in [1, 50] {
        let rounds = alternate(
            sizes.rounds,
            || sqlite_floor_round(&mut raw, tasks, sizes.round),
            || schedule_round(rt, &sqlite, tasks, sizes.round),
        );
        results.push(("SQLite, `Full`", tasks, rounds));
    }
    rt.block_on(async {
        memory.shutdown().await;
        sqlite.shutdown().await;
    });
    results
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// The due time of alarm `n` of `count` spread over `spread` from `start`.
fn due(start: SystemTime, spread: Duration, n: usize, count: usize) -> SystemTime {
    start + spread.mul_f64(n as f64 / count as f64)
}

/// Schedules `count` alarms due over `spread` from a few seconds ahead (time to schedule them
/// all), waits for every delivery, and returns the sorted lateness.
fn lateness(
    rt: &Runtime,
    scheduler: Scheduler,
    recorded: Lateness,
    count: usize,
    spread: Duration,
) -> Vec<Duration> {
    rt.block_on(async {
        let start = SystemTime::now() + Duration::from_secs(4);
        let tasks = (0..50_usize).map(|t| {
            let scheduler = scheduler.clone();
            tokio::spawn(async move {
                for n in (t..count).step_by(50) {
                    scheduler
                        .schedule(
                            Message::new("tick").with_id(format!("{t}-{n}")),
                            "bench",
                            When::At(due(start, spread, n, count)),
                        )
                        .await
                        .unwrap();
                }
            })
        });
        for task in futures::future::join_all(tasks).await {
            task.unwrap();
        }
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

/// The floor of lateness: a plain tokio timer per due instant, each task recording how late it
/// woke, as the service records a delivery.
fn timer_lateness(rt: &Runtime, count: usize, spread: Duration) -> Vec<Duration> {
    rt.block_on(async {
        let start = SystemTime::now() + Duration::from_secs(1);
        let (now, wall) = (tokio::time::Instant::now(), SystemTime::now());
        let timers: Vec<_> = (0..count)
            .map(|n| {
                let due = due(start, spread, n, count);
                let at = now + due.duration_since(wall).unwrap();
                tokio::spawn(async move {
                    tokio::time::sleep_until(at).await;
                    SystemTime::now().duration_since(due).unwrap_or_default()
                })
            })
            .collect();
        let mut late = Vec::with_capacity(count);
        for timer in timers {
            late.push(timer.await.unwrap());
        }
        late.sort();
        late
    })
}

fn millis(late: Duration) -> String {
    format!("{:.2} ms", late.as_secs_f64() * 1e3)
}

fn lateness_row(load: &str, store: &str, floor: &[Duration], late: &[Duration]) -> String {
    format!(
        "| {load} | {store} | {} / {} | {} / {} | {} / {} |\n",
        millis(percentile(floor, 0.5)),
        millis(percentile(late, 0.5)),
        millis(percentile(floor, 0.99)),
        millis(percentile(late, 0.99)),
        millis(floor.last().copied().unwrap_or_default()),
        millis(late.last().copied().unwrap_or_default()),
    )
}

fn lateness_section(rt: &Runtime, sizes: &Sizes, misses: &mut Vec<String>) -> String {
    let count = sizes.alarms;
    let mut out = format!(
        "Delivery lateness (arrival at the service minus `dispatch_at`) of {} alarms \
         scheduled a few seconds ahead by 50 tasks, each row on a fresh store and scheduler with \
         the default configuration (at most 1,024 dispatches at once; a burst is claimed up to \
         16 times that, 250 ms ahead of its due time). On SQLite each delivery claims its alarm \
         with a lease and deletes it once delivered; the scheduler sends the claims and the \
         deletes to the store in batches of up to 1,024 (whatever queued while the previous \
         batch was written), each one job of the store's one writer thread, which commits \
         whatever jobs are queued in one transaction, synced as the row says. Floor: a plain \
         `tokio::time::sleep_until` timer per due instant (a task each, recording how late it \
         woke), on the same runtime just before each row: the runtime's own timer lateness (its \
         wheel ticks every millisecond; for the burst, the time to wake 10,000 tasks at one \
         instant on 2 workers, which other work on the machine lengthens too).\n\n\
         | load | store | p50 floor / scheduler | p99 floor / scheduler | max floor / scheduler |\n\
         |---|---|---|---|---|\n",
        support::thousands(count as u64)
    );
    let mut spread_p99 = Vec::new();
    let mut burst_p99 = Vec::new();
    for (load, spread) in [
        ("spread over 1 s", Duration::from_secs(1)),
        ("burst, all due at once", Duration::ZERO),
    ] {
        for synchronous in [Synchronous::Full, Synchronous::Normal] {
            let floor = timer_lateness(rt, count, spread);
            let recorded = Lateness::default();
            let file = format!("scheduler-late-{}-{synchronous:?}", spread.as_millis());
            let scheduler =
                rt.block_on(async { start(&file, recorded.clone(), sqlite(&file, synchronous)) });
            let late = lateness(rt, scheduler, recorded, count, spread);
            let p99 = (
                synchronous,
                percentile(&late, 0.99),
                percentile(&floor, 0.99),
            );
            if spread.is_zero() {
                burst_p99.push(p99);
            } else {
                spread_p99.push(p99);
            }
            out.push_str(&lateness_row(
                load,
                &format!("SQLite, `{synchronous:?}`"),
                &floor,
                &late,
            ));
        }
        let floor = timer_lateness(rt, count, spread);
        let recorded = Lateness::default();
        let scheduler =
            rt.block_on(async { start("late-memory", recorded.clone(), MemoryAlarmStore::new()) });
        let late = lateness(rt, scheduler, recorded, count, spread);
        out.push_str(&lateness_row(load, "memory", &floor, &late));
    }
    for (load, target, rows) in [
        ("the spread load", Duration::from_millis(5), spread_p99),
        (
            "the burst (claims and deletes in batches, one writer job each)",
            BURST_P99_TARGET,
            burst_p99,
        ),
    ] {
        if rows.is_empty() {
            continue;
        }
        out.push_str(&format!(
            "\nTarget: p99 ≤ {} for {load} on SQLite:",
            millis(target)
        ));
        for (synchronous, p99, floor) in rows {
            if p99 > target {
                misses.push(format!(
                    "p99 lateness of {load} on SQLite `{synchronous:?}`: {} (target {})",
                    millis(p99),
                    millis(target)
                ));
            }
            out.push_str(&format!(
                " `{synchronous:?}` {} ({:.1}× the timer floor's {}), {};",
                millis(p99),
                p99.as_secs_f64() / floor.as_secs_f64().max(1e-9),
                millis(floor),
                met(p99 <= target)
            ));
        }
        out.pop();
        out.push_str(".\n");
    }
    out.push('\n');
    out
}

/// What the child reads of its own `/proc/self/status`, in KiB.
#[derive(Clone, Copy, Default)]
struct Status {
    resident: u64,
    peak: u64,
}

fn status() -> Status {
    let text = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find(|line| line.starts_with(name))
            .and_then(|line| line.split_whitespace().nth(1))
            .and_then(|kib| kib.parse().ok())
            .unwrap_or(0)
    };
    Status {
        resident: field("VmRSS:"),
        peak: field("VmHWM:"),
    }
}

/// The child: opens the file, starts a scheduler, waits until it holds `expected` alarms and a
/// little more (so a file with none has been read too), and prints its resident set before
/// opening and after loading, its peak, what it holds and how long the load took.
fn memory_child(path: &str, expected: usize) {
    let rt = runtime();
    let answer = rt.block_on(async {
        let node = node("memory", Lateness::default());
        let before = status();
        let started = Instant::now();
        let scheduler = SqliteStore::open(path).unwrap().start_on(node);
        let deadline = started + Duration::from_secs(300);
        while scheduler.held().await < expected {
            assert!(Instant::now() < deadline, "the window was not loaded");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let loaded = started.elapsed();
        tokio::time::sleep(Duration::from_millis(250)).await;
        let held = scheduler.held().await;
        let after = status();
        scheduler.shutdown().await;
        format!(
            "{CHILD_ANSWER} {} {} {} {held} {}",
            before.resident,
            after.resident,
            after.peak,
            loaded.as_micros()
        )
    });
    println!("{answer}");
}

/// One child's figures.
#[derive(Clone, Copy)]
struct Measured {
    before: u64,
    after: u64,
    peak: u64,
    held: usize,
    loaded: Duration,
}

impl Measured {
    fn growth(&self) -> f64 {
        self.after as f64 - self.before as f64
    }
}

fn run_child(path: &Path, expected: usize) -> Measured {
    let output = Command::new(std::env::current_exe().unwrap())
        .env(CHILD_FILE, path)
        .env(CHILD_HELD, expected.to_string())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let Some(line) = stdout
        .lines()
        .find_map(|line| line.strip_prefix(CHILD_ANSWER))
    else {
        panic!(
            "the memory child failed: {}\n{stdout}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    };
    let fields: Vec<u64> = line
        .split_whitespace()
        .map(|field| field.parse().unwrap())
        .collect();
    Measured {
        before: fields[0],
        after: fields[1],
        peak: fields[2],
        held: fields[3] as usize,
        loaded: Duration::from_micros(fields[4]),
    }
}

/// Fills a new file through rusqlite, in one transaction into the store's own table, with
/// `window` alarms due in the coming hour (from ten minutes on, so none is delivered while it is
/// measured) and `pending` due from two days on, beyond the default window's 12-hour horizon.
fn fill(name: &str, window: usize, pending: usize) -> PathBuf {
    let path = fresh_path(name);
    // `Off`: how the filler syncs changes nothing the child measures.
    let mut conn = raw_connection(&path, Synchronous::Normal);
    conn.pragma_update(None, "synchronous", "OFF").unwrap();
    let tx = conn.transaction().unwrap();
    {
        let mut insert = tx.prepare(RAW_INSERT).unwrap();
        let now = SystemTime::now();
        for n in 0..window + pending {
            let due = if n < window {
                now + Duration::from_secs(600 + n as u64 % 3_000)
            } else {
                now + Duration::from_secs(2 * 86_400 + n as u64)
            };
            let message = saved_message(format!("m-{n}"), due);
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
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
        .unwrap();
    path
}

/// The median child of `repeats` (by growth) on the file.
fn measure(path: &Path, expected: usize, repeats: usize) -> Measured {
    let mut runs: Vec<Measured> = (0..repeats).map(|_| run_child(path, expected)).collect();
    runs.sort_by(|a, b| a.growth().total_cmp(&b.growth()));
    runs[runs.len() / 2]
}

fn mib(kib: f64) -> String {
    format!("{:.1} MiB", kib / 1024.0)
}

fn signed_mib(kib: f64) -> String {
    format!("{:+.1} MiB", kib / 1024.0)
}

fn memory_section(sizes: &Sizes, misses: &mut Vec<String>) -> String {
    let window = sizes.window;
    let cases = [
        ("empty", 0, 0),
        ("window only", window, 0),
        ("pending-small", window, sizes.pending[0]),
        ("pending-large", window, sizes.pending[1]),
        ("wide window", sizes.wide, 0),
    ];
    let mut measured = Vec::new();
    for (name, window, pending) in cases {
        let file = format!("scheduler-memory-{}", name.replace(' ', "-"));
        let path = fill(&file, window, pending);
        let size = std::fs::metadata(&path).map_or(0, |m| m.len());
        measured.push((window, pending, size, measure(&path, window, sizes.repeats)));
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }
    let floor = measured[0].3.growth();
    let mut out = format!(
        "Resident memory of a scheduler started on a SQLite file (default window: alarms due \
         within 12 hours are held), each in a fresh process: the bench fills the file through \
         rusqlite, then runs itself again as a child that reads its resident set \
         (`/proc/self/status`), opens the file, starts the scheduler, waits until `held()` \
         reports the window's alarms plus 250 ms, and reads it again. The empty file is the \
         floor: what opening the store and starting a scheduler cost on their own. Median of \
         {} children per file (by growth).\n\n\
         | alarms in the file: in the window + beyond it | file | held | window loaded in | \
         resident before | after | growth | growth over the empty file | peak over before |\n\
         |---|---|---|---|---|---|---|---|---|\n",
        sizes.repeats
    );
    for (window, pending, size, m) in &measured {
        // With nothing to hold, there is no load to wait for.
        let loaded = if *window == 0 {
            "—".to_owned()
        } else {
            format!("{:.1} ms", m.loaded.as_secs_f64() * 1e3)
        };
        out.push_str(&format!(
            "| {} + {} | {:.0} MiB | {} | {loaded} | {} | {} | {} | {} | {} |\n",
            support::thousands(*window as u64),
            support::thousands(*pending as u64),
            *size as f64 / (1 << 20) as f64,
            support::thousands(m.held as u64),
            mib(m.before as f64),
            mib(m.after as f64),
            signed_mib(m.growth()),
            signed_mib(m.growth() - floor),
            signed_mib(m.peak as f64 - m.before as f64),
        ));
    }
    let small = measured[2].3.growth() - floor;
    let large = measured[3].3.growth() - floor;
    let bounded = (large - small).abs() <= 1024.0;
    let wide = measured[4].3.growth() - floor;
    if !bounded {
        misses.push(format!(
            "resident memory with {} alarms pending against {}: {} apart (target within 1 MiB)",
            support::thousands(sizes.pending[1] as u64),
            support::thousands(sizes.pending[0] as u64),
            signed_mib(large - small)
        ));
    }
    out.push_str(&format!(
        "\nTarget: memory bounded by the window, not by the pending count. With the same \
         {} alarms held, {} pending beyond the window cost {} over the empty file and {} cost \
         {}: {} apart, {} (met if within 1 MiB). What grows with the window is the alarms \
         held: the last row holds {} for {} over the empty file, {:.1} KiB each.\n\n",
        support::thousands(window as u64),
        support::thousands(sizes.pending[1] as u64),
        signed_mib(large),
        support::thousands(sizes.pending[0] as u64),
        signed_mib(small),
        signed_mib(large - small),
        met(bounded),
        support::thousands(sizes.wide as u64),
        signed_mib(wide),
        wide / sizes.wide as f64,
    ));
    out
}

fn criterion_benches(c: &mut Criterion) {
    let rt = runtime();
    let scheduler =
        rt.block_on(async { start("crit", Lateness::default(), MemoryAlarmStore::new()) });
    let mut group = c.benchmark_group("scheduler");
    group.bench_function("schedule_memory", |b| {
        b.to_async(&rt).iter(|| async {
            scheduler
                .schedule(Message::new("tick"), "bench", When::In(DAY))
                .await
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

/// Runs one path alone, over and over for `length`, for a profiler (`SWITCHYARD_BENCH_PHASE`,
/// as `cargo xtask profile sqlite/scheduler` records it), printing each round's figures so two
/// builds can be compared on the same load:
///
/// - `burst`: 10,000 alarms (1,000 in quick mode) due at one instant, delivered by a fresh
///   scheduler on SQLite (`Full`), then by one on the memory store, in turn; each round prints
///   the lateness at the 50th and 99th percentiles beside the timer floor's.
/// - `spread`: the same with the alarms due over one second.
/// - `schedule`: `Scheduler::schedule` by 50 tasks on the memory store, then on SQLite
///   (`Full`), rounds of a second in turn, each beside its floor.
fn profile_phase(phase: &str, length: Duration) {
    let sizes = sizes();
    let rt = runtime();
    let started = Instant::now();
    match phase {
        "burst" | "spread" => {
            let spread = if phase == "burst" {
                Duration::ZERO
            } else {
                Duration::from_secs(1)
            };
            while started.elapsed() < length {
                let floor = timer_lateness(&rt, sizes.alarms, spread);
                let sqlite_late = {
                    let recorded = Lateness::default();
                    let file = "scheduler-phase-burst";
                    let store = sqlite(file, Synchronous::Full);
                    let scheduler = rt.block_on(async { start(file, recorded.clone(), store) });
                    lateness(&rt, scheduler, recorded, sizes.alarms, spread)
                };
                let memory_late = {
                    let recorded = Lateness::default();
                    let store = MemoryAlarmStore::new();
                    let scheduler =
                        rt.block_on(async { start("phase-burst", recorded.clone(), store) });
                    lateness(&rt, scheduler, recorded, sizes.alarms, spread)
                };
                println!(
                    "{phase} of {}: p50 / p99 floor {} / {}, SQLite `Full` {} / {}, memory {} / {}",
                    sizes.alarms,
                    millis(percentile(&floor, 0.5)),
                    millis(percentile(&floor, 0.99)),
                    millis(percentile(&sqlite_late, 0.5)),
                    millis(percentile(&sqlite_late, 0.99)),
                    millis(percentile(&memory_late, 0.5)),
                    millis(percentile(&memory_late, 0.99)),
                );
            }
        }
        "schedule" => {
            let memory = rt.block_on(async {
                start("phase-memory", Lateness::default(), MemoryAlarmStore::new())
            });
            let memory_floor = MemoryFloor::start(&rt);
            let sqlite = rt.block_on(async {
                let store = sqlite("scheduler-phase-schedule", Synchronous::Full);
                start("phase-sqlite", Lateness::default(), store)
            });
            let mut raw = raw_connection(&fresh_path("scheduler-phase-raw"), Synchronous::Full);
            let round = Duration::from_secs(1);
            while started.elapsed() < length {
                let memory_rates = (
                    memory_floor_round(&rt, &memory_floor, 50, round),
                    schedule_round(&rt, &memory, 50, round),
                );
                let sqlite_rates = (
                    sqlite_floor_round(&mut raw, 50, round),
                    schedule_round(&rt, &sqlite, 50, round),
                );
                println!(
                    "schedule by 50 tasks, alarms/s (floor, scheduler, ratio): memory {:.0}, \
                     {:.0}, {:.2}; SQLite `Full` {:.0}, {:.0}, {:.2}",
                    memory_rates.0,
                    memory_rates.1,
                    memory_rates.1 / memory_rates.0,
                    sqlite_rates.0,
                    sqlite_rates.1,
                    sqlite_rates.1 / sqlite_rates.0,
                );
            }
            rt.block_on(async {
                memory.shutdown().await;
                sqlite.shutdown().await;
            });
        }
        other => {
            panic!("SWITCHYARD_BENCH_PHASE is `burst`, `spread` or `schedule`, not `{other}`")
        }
    }
}

fn main() {
    if let Ok(path) = std::env::var(CHILD_FILE) {
        let expected = std::env::var(CHILD_HELD).unwrap().parse().unwrap();
        memory_child(&path, expected);
        return;
    }
    if let Some((phase, length)) = support::phase() {
        profile_phase(&phase, length);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
    if support::criterion_only() {
        return;
    }
    let sizes = sizes();
    let load_before = load_average();
    let rt = runtime();
    let throughput = throughput(&rt, &sizes);
    let mut misses = Vec::new();
    let lateness = lateness_section(&rt, &sizes, &mut misses);
    drop(rt);
    let memory = memory_section(&sizes, &mut misses);
    let load_after = load_average();

    let mut out = String::new();
    out.push_str(
        "## Scheduler (`switchyard-scheduler`, bench `scheduler` of `switchyard-sqlite`)\n\n",
    );
    if quick() {
        out.push_str(
            "**Quick mode (`SWITCHYARD_BENCH_QUICK`): reduced sizes, figures not comparable.**\n\n",
        );
    }
    out.push_str(&format!(
        "`Scheduler::schedule` by 1 and 50 concurrent tasks on a 2-worker runtime, alarms a day \
         ahead (saved, not armed), for rounds of {:.1} s. SQLite: a file in `target/`, \
         `Synchronous::Full`, so every acknowledged alarm is synced. Floors: for memory, the \
         same message (with its `dispatch_at` and `dispatch_attempts` assigns) inserted into a \
         `Mutex<BTreeMap>` and its id sent to a task over a tokio channel; for SQLite, the same \
         rows (the message encoded by the codec) inserted by one thread through rusqlite into \
         the store's own table, `Full`, one transaction per 1 or 50 rows: what a perfect group \
         commit would do. Medians of {} alternating rounds; the ratio is the median of the \
         rounds' own ratios.\n\n\
         | store | tasks | floor alarms/s | alarms/s | alarms/s / floor | target |\n\
         |---|---|---|---|---|---|\n",
        sizes.round.as_secs_f64(),
        sizes.rounds,
    ));
    for (store, tasks, rounds) in &throughput {
        let ratio = rounds.ratio();
        if ratio < SCHEDULE_TARGET {
            misses.push(format!(
                "schedule on {store} by {tasks} task(s): {ratio:.2} of the floor (target \
                 {SCHEDULE_TARGET})"
            ));
        }
        out.push_str(&format!(
            "| {store} | {tasks} | {:.0} | {:.0} | {ratio:.2} | ≥ {SCHEDULE_TARGET} {} |\n",
            median(&rounds.floor),
            median(&rounds.subject),
            met(ratio >= SCHEDULE_TARGET),
        ));
    }
    out.push('\n');
    out.push_str(&lateness);
    out.push_str(&memory);
    out.push_str(&support::closing(
        &misses,
        (&load_before, &load_after),
        "counting this bench's own threads; other work on the machine's 2 cores slows every \
         figure",
    ));
    println!("\n{out}");
    support::write_section("50-scheduler.md", &out);
}
