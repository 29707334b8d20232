//! Catch-up of a store's whole global order into an in-memory projection, on the memory,
//! SQLite (file) and PostgreSQL stores, beside a raw floor measured in the same run.
//!
//! - Subject: a `ProjectionRunner` (memory checkpoint store, batches of
//!   `DEFAULT_BATCH_SIZE`) from the origin until `wait_for(head)` returns; second line, a bare
//!   `Subscription` (pages of the same size) handing out every event through `next`, each
//!   decoded as the runner decodes it.
//! - Floor: a raw `read_all` loop over pages of the same size, each event decoded the same way
//!   (`DecodedEvent::decode`) and folded into the same read model.
//! - Resident memory: the growth of the peak resident set (`VmHWM`, reset through
//!   `/proc/self/clear_refs` after setting up) over one catch-up, in a child process of its own
//!   per store, reader and store size, so no earlier pass's freed memory hides it.
//!
//! 1,000,000 events (20,000 with `SWITCHYARD_BENCH_QUICK=1`), seeded through each store's batch
//! append (500 events per append, 8 appends at a time) over 1,000 accounts.
//!
//! Run with `cargo xtask bench` (which writes `docs/benchmarks.md`) or
//! `cargo bench -p switchyard-projections --bench projection_catch_up`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod fixture;

use std::process::Command;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group};
use switchyard_aggregates::DecodedEvent;
use switchyard_projections::{
    DEFAULT_BATCH_SIZE, MemoryCheckpointStore, ProjectionRunner, Subscription,
};
use tokio::runtime::Runtime;

use fixture::{Account, AccountEvent, Balances, Kind, Store};
use switchyard_bench_support::{self as support, Rounds, median, met, runtime};

/// What each reader reads per round trip: the runner's default batch, also its page.
const PAGE: usize = DEFAULT_BATCH_SIZE;

/// The target: the runner's throughput over the floor's.
const TARGET: f64 = 0.7;

/// The variable that makes this binary a child measuring one catch-up's resident memory:
/// `store,reader,events,location`.
const RSS_CHILD: &str = "SWITCHYARD_PROJECTION_RSS";

/// The three ways of reading the order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reader {
    Floor,
    Runner,
    Subscription,
}

impl Reader {
    const ALL: [Self; 3] = [Self::Floor, Self::Runner, Self::Subscription];

    fn tag(self) -> &'static str {
        match self {
            Self::Floor => "floor",
            Self::Runner => "runner",
            Self::Subscription => "subscription",
        }
    }

    fn from_tag(tag: &str) -> Self {
        Self::ALL
            .into_iter()
            .find(|reader| reader.tag() == tag)
            .unwrap()
    }
}

fn decode(event: switchyard_aggregates::store::RecordedEvent) -> DecodedEvent<AccountEvent> {
    DecodedEvent::<AccountEvent>::decode(event).unwrap()
}

/// Reads the whole order once with `reader`; the events read.
async fn catch_up(store: &Store, reader: Reader) -> u64 {
    let read = match reader {
        Reader::Floor => {
            let mut model = Balances::default();
            let mut from = 1;
            loop {
                let page = store.events.read_all(from, PAGE).await.unwrap();
                let full = page.len() == PAGE;
                if let Some(last) = page.last() {
                    from = last.position + 1;
                }
                for event in page {
                    model.fold(&decode(event));
                }
                if !full {
                    break model.events;
                }
            }
        }
        Reader::Runner => {
            static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let name = format!(
                "catch-up-{}",
                NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            );
            let head = store.events.head().await.unwrap();
            let runner = ProjectionRunner::builder(
                name,
                Balances::default(),
                store.events.clone(),
                MemoryCheckpointStore::new(),
            )
            .aggregate::<Account>()
            .batch_size(PAGE)
            .start()
            .unwrap();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
            runner.wait_for(head, deadline).await.unwrap();
            runner.stop().await.unwrap().events
        }
        Reader::Subscription => {
            let head = store.events.head().await.unwrap();
            let mut subscription = Subscription::builder(store.events.clone())
                .aggregate::<Account>()
                .page_size(PAGE)
                .build()
                .await
                .unwrap();
            let mut model = Balances::default();
            while subscription.position() < head {
                model.fold(&decode(subscription.next().await.unwrap()));
            }
            model.events
        }
    };
    assert_eq!(read, store.seeded, "{reader:?} read every event once");
    read
}

/// One catch-up's events per second, and the CPU time this process spent per event (in
/// nanoseconds, every thread's): the machine is shared, and the CPU time says what a reader
/// costs whatever share of the cores it got.
fn rate(rt: &Runtime, store: &Store, reader: Reader) -> (f64, f64) {
    rt.block_on(async {
        let cpu = cpu_ns();
        let started = Instant::now();
        let read = catch_up(store, reader).await;
        let elapsed = started.elapsed();
        let rate = read as f64 / elapsed.as_secs_f64();
        // The kernel adds a running thread's time at ticks and switches (a few ms apart): too
        // coarse for a catch-up shorter than this.
        let cpu = if elapsed >= Duration::from_millis(100) {
            (cpu_ns() - cpu) as f64 / read as f64
        } else {
            f64::NAN
        };
        (rate, cpu)
    })
}

/// The CPU time all threads of this process have run, in nanoseconds
/// (`/proc/self/task/*/schedstat`; threads that ended are not counted, and none ends during a
/// catch-up).
fn cpu_ns() -> u64 {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| {
            let path = task.ok()?.path().join("schedstat");
            let text = std::fs::read_to_string(path).ok()?;
            text.split_whitespace().next()?.parse::<u64>().ok()
        })
        .sum()
}

/// A field of `/proc/self/status`, in KiB.
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// In the child: sets the store up, then prints the growth of the peak resident set over one
/// catch-up, in KiB.
fn rss_child(spec: &str) {
    let parts: Vec<&str> = spec.split(',').collect();
    let (kind, reader) = (Kind::from_tag(parts[0]), Reader::from_tag(parts[1]));
    let events: u64 = parts[2].parse().unwrap();
    let location = parts[3];
    let rt = runtime();
    let store = rt.block_on(async {
        let mut store = match kind {
            Kind::Memory => Store::create(kind, "").await,
            _ => Store::open(kind, location, events).await,
        };
        if kind == Kind::Memory {
            store.seed_to(events).await;
        }
        // Connections, statements and the runtime's threads set up before measuring.
        let _ = store.events.read_all(1, PAGE).await.unwrap();
        store
    });
    let before = status_kib("VmRSS:");
    // "5" resets the peak resident set to the current one.
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
    rt.block_on(catch_up(&store, reader));
    let peak = status_kib("VmHWM:");
    println!("rss-growth-kib {}", peak.saturating_sub(before));
}

/// Runs a child measuring one catch-up's resident-set growth, in KiB.
fn rss_growth(store: &Store, reader: Reader) -> u64 {
    let exe = std::env::current_exe().unwrap();
    let spec = format!(
        "{},{},{},{}",
        store.kind.tag(),
        reader.tag(),
        store.seeded,
        store.location
    );
    let output = Command::new(exe)
        .env(RSS_CHILD, spec)
        .env(
            switchyard_postgres::test_server::URL_VARIABLE,
            fixture::postgres_url(),
        )
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the memory child failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
        .lines()
        .find_map(|line| line.strip_prefix("rss-growth-kib "))
        .and_then(|kib| kib.trim().parse().ok())
        .unwrap()
}

/// One store's figures.
struct Measured {
    kind: Kind,
    runner: Rounds,
    subscription: Rounds,
    /// CPU nanoseconds per event, floor and runner, then floor and subscription.
    runner_cpu: Rounds,
    subscription_cpu: Rounds,
    /// Per store size: resident-set growth (KiB) of the floor, the runner, the subscription.
    rss: Vec<(u64, [u64; 3])>,
}

fn measure(rt: &Runtime, kind: Kind, sizes: [u64; 2], rounds: usize) -> Measured {
    let mut store = rt.block_on(Store::create(kind, "projection_catch_up"));
    let mut rss = Vec::new();
    for size in sizes {
        let started = Instant::now();
        rt.block_on(store.seed_to(size));
        println!(
            "projection_catch_up: {} seeded to {size} events in {:.1} s",
            kind.name(),
            started.elapsed().as_secs_f64()
        );
        let growth = Reader::ALL.map(|reader| rss_growth(&store, reader));
        println!(
            "projection_catch_up: {} at {size}: rss growth {growth:?} KiB",
            kind.name()
        );
        rss.push((size, growth));
    }
    // One warm-up of each, then rounds of the three in turn: the machine's speed changes
    // within seconds.
    for reader in Reader::ALL {
        rate(rt, &store, reader);
    }
    let [
        mut runner,
        mut subscription,
        mut runner_cpu,
        mut subscription_cpu,
    ] = [(); 4].map(|()| Rounds::default());
    for _ in 0..rounds {
        let (floor, floor_cpu) = rate(rt, &store, Reader::Floor);
        let (by_runner, by_runner_cpu) = rate(rt, &store, Reader::Runner);
        let (by_subscription, by_subscription_cpu) = rate(rt, &store, Reader::Subscription);
        for (rounds, floor, subject) in [
            (&mut runner, floor, by_runner),
            (&mut subscription, floor, by_subscription),
            (&mut runner_cpu, floor_cpu, by_runner_cpu),
            (&mut subscription_cpu, floor_cpu, by_subscription_cpu),
        ] {
            rounds.floor.push(floor);
            rounds.subject.push(subject);
        }
        println!(
            "projection_catch_up: {}: floor {floor:.0}, runner {by_runner:.0}, subscription \
             {by_subscription:.0} events/s; CPU per event {floor_cpu:.0}, {by_runner_cpu:.0}, \
             {by_subscription_cpu:.0} ns",
            kind.name(),
        );
    }
    store.remove();
    Measured {
        kind,
        runner,
        subscription,
        runner_cpu,
        subscription_cpu,
        rss,
    }
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn report(measured: &[Measured], events: u64, rounds: usize, loads: (String, String)) -> String {
    let mut out = String::new();
    out.push_str(
        "## Projection catch-up (`switchyard-projections`, bench `projection_catch_up`)\n\n",
    );
    out.push_str(&format!(
        "{events} events of 1,000 accounts (appended 500 per append through each store's batch \
         append), read from the origin into an in-memory read model (a balance per account), \
         2-worker runtime. Subject: a `ProjectionRunner` (batches of {PAGE}, checkpoint per \
         batch in a `MemoryCheckpointStore`) until `wait_for(head)`; second line, a bare \
         `Subscription` (pages of {PAGE}) through `next`, each event decoded. Floor: a raw \
         `read_all` loop over pages of {PAGE}, each event decoded the same way \
         (`DecodedEvent::decode`, as the runner does) and folded into the same read model. \
         SQLite: a file with the store's defaults (WAL); PostgreSQL: a throwaway server on this \
         machine. Medians of {rounds} rounds of floor, runner and subscription in turn; ratios \
         taken round by round.\n\n"
    ));
    out.push_str(
        "| store | floor events/s | runner events/s | runner / floor | subscription events/s | subscription / floor | target (runner ≥ 0.7× floor) |\n\
         |---|---|---|---|---|---|---|\n",
    );
    let mut misses = Vec::new();
    for m in measured {
        let ratio = m.runner.ratio();
        if ratio < TARGET {
            misses.push(format!(
                "{} catch-up: the runner reaches {ratio:.2} of its floor (target {TARGET})",
                m.kind.name()
            ));
        }
        out.push_str(&format!(
            "| {} | {:.0} | {:.0} | {ratio:.2} | {:.0} | {:.2} | {} |\n",
            m.kind.name(),
            median(&m.runner.floor),
            median(&m.runner.subject),
            median(&m.subscription.subject),
            m.subscription.ratio(),
            met(ratio >= TARGET),
        ));
    }
    out.push_str(
        "\nCPU time per event, this process's threads (`/proc/self/task/*/schedstat`; for \
         PostgreSQL the server's own is not counted): what each reader costs whatever share of \
         the machine's cores it got, so a steadier comparison than the rates on a busy \
         machine. A reader running on one core at a time keeps ≥ 0.7 of the floor's \
         throughput on idle cores when its CPU per event is ≤ 1.43× the floor's. Medians, \
         ratios round by round.\n\n\
         | store | floor ns/event | runner ns/event | runner / floor | ≤ 1.43× | subscription ns/event | subscription / floor |\n\
         |---|---|---|---|---|---|---|\n",
    );
    for m in measured.iter().filter(|m| m.runner_cpu.ratio().is_finite()) {
        out.push_str(&format!(
            "| {} | {:.0} | {:.0} | {:.2}× | {} | {:.0} | {:.2}× |\n",
            m.kind.name(),
            median(&m.runner_cpu.floor),
            median(&m.runner_cpu.subject),
            m.runner_cpu.ratio(),
            if m.runner_cpu.ratio() <= 1.0 / TARGET {
                "yes"
            } else {
                "no"
            },
            median(&m.subscription_cpu.subject),
            m.subscription_cpu.ratio(),
        ));
    }
    let [small, large] = [0, 1].map(|i| measured[0].rss[i].0);
    out.push_str(&format!(
        "\nResident memory: the growth of the peak resident set (`VmHWM`, reset after setting \
         up) over one whole catch-up, in a child process of its own per store, reader and store \
         size (the memory store's child seeds its events before measuring, so they are not \
         counted). Target: independent of the store's size, taken here as the growth at \
         {large} events within 1 MiB or 25 % of that at {small}.\n\n\
         | store | reader | growth at {small} events | growth at {large} events | target |\n\
         |---|---|---|---|---|\n"
    ));
    for m in measured {
        for (index, reader) in Reader::ALL.into_iter().enumerate() {
            let (a, b) = (m.rss[0].1[index], m.rss[1].1[index]);
            let bounded = b <= a + 1024 || (b as f64) <= a as f64 * 1.25;
            if !bounded && reader != Reader::Floor {
                misses.push(format!(
                    "{} {}: resident growth {} at {large} events against {} at {small}",
                    m.kind.name(),
                    reader.tag(),
                    mib(b),
                    mib(a)
                ));
            }
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} |\n",
                m.kind.name(),
                reader.tag(),
                mib(a),
                mib(b),
                if reader == Reader::Floor {
                    "(floor)"
                } else {
                    met(bounded)
                },
            ));
        }
    }
    out.push_str(&support::closing(
        &misses,
        (&loads.0, &loads.1),
        "other work on the machine's 2 cores slows every figure",
    ));
    out
}

fn criterion_benches(c: &mut Criterion) {
    let rt = runtime();
    let mut store = rt.block_on(Store::create(Kind::Memory, ""));
    rt.block_on(store.seed_to(10_000));
    let mut group = c.benchmark_group("projection_catch_up");
    group.bench_function("runner_10k_memory", |b| {
        b.iter(|| rt.block_on(catch_up(&store, Reader::Runner)))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = support::criterion().sample_size(10);
    targets = criterion_benches
}

fn main() {
    if let Ok(spec) = std::env::var(RSS_CHILD) {
        rss_child(&spec);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
    if support::criterion_only() {
        return;
    }
    let quick = support::quick();
    let sizes = if quick {
        [2_000, 20_000]
    } else {
        [100_000, 1_000_000]
    };
    let rounds = if quick { 2 } else { 3 };
    let rt = runtime();
    let load_before = support::load_average();
    let measured: Vec<Measured> = fixture::stores(&[Kind::Memory, Kind::Sqlite, Kind::Postgres])
        .into_iter()
        .map(|kind| measure(&rt, kind, sizes, rounds))
        .collect();
    let out = report(
        &measured,
        sizes[1],
        rounds,
        (load_before, support::load_average()),
    );
    println!("\n{out}");
    support::write_section("60-projection_catch_up.md", &out);
}
