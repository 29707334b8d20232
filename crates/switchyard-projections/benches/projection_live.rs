//! Live latency on SQLite (file) and PostgreSQL: from an append's acknowledgement to the
//! projection's handler (and to a bare subscription's `next`), beside the store's own
//! notification floor and one page read, measured in alternating rounds of the same run.
//!
//! - Subject: one event appended at a time (`append_at`, a pause of 1 to 3 ms between
//!   appends so each finds its reader waiting); the latency is from the append's return to
//!   the moment `Projection::apply` is handed the event (a `ProjectionRunner`, memory
//!   checkpoint store), or `Subscription::next` returns it. A reader that had the event
//!   before the writer's caller heard of it counts 0.
//! - PostgreSQL floor: `NOTIFY` → `LISTEN` on raw tokio-postgres connections, the notifying
//!   one with `synchronous_commit` off as the store's notifier has it: from sending
//!   `pg_notify` to the listening connection receiving it.
//! - SQLite floor: the SQLite store publishes its head through a `tokio::sync::watch` from its
//!   writer thread, after the commit and before acknowledging: no round trip to a server. The
//!   floor is that mechanism raw: a plain thread's `watch` send until a task awaiting
//!   `changed` on the 2-worker runtime runs.
//! - Page read: `read_all` of the page holding the newest event, through the store: what a
//!   woken reader does once.
//!
//! Target: p99 ≤ 2× the floor's p99 plus the page read's p99.
//!
//! Run with `cargo xtask bench` (which writes `docs/benchmarks.md`) or
//! `cargo bench -p switchyard-projections --bench projection_live`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod fixture;

use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group};
use futures::StreamExt;
use switchyard_aggregates::DecodedEvent;
use switchyard_aggregates::store::ExpectedVersion;
use switchyard_projections::{
    BoxError, DEFAULT_BATCH_SIZE, MemoryCheckpointStore, Projection, ProjectionRunner, Subscription,
};
use tokio::runtime::Runtime;
use tokio::sync::{mpsc, watch};
use tokio_postgres::AsyncMessage;

use fixture::{Account, AccountEvent, Kind, Store, metadata, new_event, percentile};
use switchyard_bench_support::{self as support, met, runtime};

/// Events in the store before measuring, so reads go through an index of some size.
const SEEDED: u64 = 10_000;

/// The channel the PostgreSQL floor notifies on (not the store's).
const FLOOR_CHANNEL: &str = "switchyard_bench_floor";

/// Hands each event's position and the moment it was applied to the sampler.
struct Seen(mpsc::UnboundedSender<(u64, Instant)>);

impl Projection for Seen {
    type Event = AccountEvent;

    async fn apply(&mut self, batch: &[DecodedEvent<AccountEvent>]) -> Result<(), BoxError> {
        let now = Instant::now();
        for event in batch {
            let _ = self.0.send((event.position, now));
        }
        Ok(())
    }
}

/// Microseconds from each append's acknowledgement until `seen` reports its event.
async fn appends_seen(
    store: &Store,
    seen: &mut mpsc::UnboundedReceiver<(u64, Instant)>,
    samples: usize,
    out: &mut Vec<f64>,
) {
    for _ in 0..samples {
        let appended = store
            .events
            .append_at(
                "account-live",
                ExpectedVersion::Any,
                vec![new_event(&AccountEvent::Deposited(1))],
                metadata(format!("live-{:016x}", fastrand::u64(..))),
            )
            .await
            .unwrap();
        let acked = Instant::now();
        let position = appended.position.unwrap();
        let at = loop {
            let (reached, at) = seen.recv().await.unwrap();
            if reached >= position {
                break at;
            }
        };
        out.push(at.saturating_duration_since(acked).as_secs_f64() * 1e6);
        pause().await;
    }
}

/// 1 to 3 ms, so each append finds its reader waiting.
async fn pause() {
    tokio::time::sleep(Duration::from_micros(fastrand::u64(1_000..3_000))).await;
}

/// The runner's latency: a runner started for this round, resuming from `checkpoints`.
async fn runner_round(
    store: &Store,
    checkpoints: &MemoryCheckpointStore,
    samples: usize,
    out: &mut Vec<f64>,
) {
    let (sender, mut seen) = mpsc::unbounded_channel();
    let runner = ProjectionRunner::builder(
        "live",
        Seen(sender),
        store.events.clone(),
        checkpoints.clone(),
    )
    .aggregate::<Account>()
    .start()
    .unwrap();
    let head = store.events.head().await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    runner.wait_for(head, deadline).await.unwrap();
    while seen.try_recv().is_ok() {}
    appends_seen(store, &mut seen, samples, out).await;
    runner.stop().await.unwrap();
}

/// A bare subscription's latency, from the head.
async fn subscription_round(store: &Store, samples: usize, out: &mut Vec<f64>) {
    let (sender, mut seen) = mpsc::unbounded_channel();
    let mut subscription = Subscription::builder(store.events.clone())
        .from_head()
        .aggregate::<Account>()
        .page_size(DEFAULT_BATCH_SIZE)
        .build()
        .await
        .unwrap();
    let reader = tokio::spawn(async move {
        loop {
            let event = subscription.next().await.unwrap();
            let _ = sender.send((event.position, Instant::now()));
        }
    });
    appends_seen(store, &mut seen, samples, out).await;
    reader.abort();
}

/// Microseconds of `read_all` of the page holding the newest event.
async fn page_reads(store: &Store, samples: usize, out: &mut Vec<f64>) {
    let head = store.events.head().await.unwrap();
    for _ in 0..samples {
        let started = Instant::now();
        let page = store
            .events
            .read_all(head, DEFAULT_BATCH_SIZE)
            .await
            .unwrap();
        out.push(started.elapsed().as_secs_f64() * 1e6);
        assert_eq!(page.len(), 1);
        pause().await;
    }
}

/// The raw notification floor of a store.
enum Floor {
    /// A plain thread's `watch` send to a waiting task; the task reports the delay.
    Watch {
        publish: std::sync::mpsc::Sender<()>,
        woken: mpsc::UnboundedReceiver<Duration>,
    },
    /// `NOTIFY` on one raw connection, heard by another that `LISTEN`s.
    Notify(Box<Notifying>),
}

/// The PostgreSQL floor's connections.
struct Notifying {
    /// Held so its connection stays open.
    _listener: tokio_postgres::Client,
    notifier: tokio_postgres::Client,
    notify: tokio_postgres::Statement,
    heard: mpsc::UnboundedReceiver<Instant>,
}

impl Floor {
    async fn new(kind: Kind) -> Self {
        match kind {
            Kind::Postgres => Self::notify().await,
            _ => Self::watch(),
        }
    }

    fn watch() -> Self {
        let (sender, mut receiver) = watch::channel(Instant::now());
        let (publish, requests) = std::sync::mpsc::channel::<()>();
        std::thread::spawn(move || {
            while requests.recv().is_ok() {
                sender.send_replace(Instant::now());
            }
        });
        let (report, woken) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while receiver.changed().await.is_ok() {
                let sent = *receiver.borrow_and_update();
                if report.send(sent.elapsed()).is_err() {
                    return;
                }
            }
        });
        Self::Watch { publish, woken }
    }

    async fn notify() -> Self {
        let url = fixture::postgres_url();
        let (listener, mut connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        let (report, heard) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(message) = messages.next().await {
                if let Ok(AsyncMessage::Notification(_)) = message
                    && report.send(Instant::now()).is_err()
                {
                    return;
                }
            }
        });
        listener
            .batch_execute(&format!("LISTEN {FLOOR_CHANNEL}"))
            .await
            .unwrap();
        let (notifier, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        notifier
            .batch_execute("SET synchronous_commit = off")
            .await
            .unwrap();
        let notify = notifier
            .prepare(&format!("SELECT pg_notify('{FLOOR_CHANNEL}', 'x')"))
            .await
            .unwrap();
        Self::Notify(Box::new(Notifying {
            _listener: listener,
            notifier,
            notify,
            heard,
        }))
    }

    /// Microseconds of one notification's trip.
    async fn sample(&mut self) -> f64 {
        let trip = match self {
            Self::Watch { publish, woken } => {
                publish.send(()).unwrap();
                woken.recv().await.unwrap()
            }
            Self::Notify(floor) => {
                let sent = Instant::now();
                floor.notifier.query_one(&floor.notify, &[]).await.unwrap();
                floor.heard.recv().await.unwrap().duration_since(sent)
            }
        };
        trip.as_secs_f64() * 1e6
    }
}

/// All samples of one store, in microseconds.
#[derive(Default)]
struct Samples {
    floor: Vec<f64>,
    page: Vec<f64>,
    runner: Vec<f64>,
    subscription: Vec<f64>,
}

fn measure(rt: &Runtime, kind: Kind, rounds: usize, per_round: usize) -> Samples {
    rt.block_on(async {
        let mut store = Store::create(kind, "projection_live").await;
        store.seed_to(SEEDED).await;
        let mut floor = Floor::new(kind).await;
        let checkpoints = MemoryCheckpointStore::new();
        let mut samples = Samples::default();
        // A round to warm up, then the rounds measured: floor, page read, runner and
        // subscription in turn, as the machine's speed changes within seconds.
        for round in 0..=rounds {
            let mut taken = Samples::default();
            for _ in 0..per_round {
                taken.floor.push(floor.sample().await);
                pause().await;
            }
            page_reads(&store, per_round, &mut taken.page).await;
            runner_round(&store, &checkpoints, per_round, &mut taken.runner).await;
            subscription_round(&store, per_round, &mut taken.subscription).await;
            if round > 0 {
                samples.floor.append(&mut taken.floor);
                samples.page.append(&mut taken.page);
                samples.runner.append(&mut taken.runner);
                samples.subscription.append(&mut taken.subscription);
            }
        }
        store.remove();
        samples
    })
}

fn report(
    measured: &mut [(Kind, Samples)],
    rounds: usize,
    per_round: usize,
    loads: (String, String),
) -> String {
    let mut out = String::new();
    out.push_str(
        "## Projection live latency (`switchyard-projections`, bench `projection_live`)\n\n",
    );
    out.push_str(&format!(
        "One event appended at a time (`append_at`, 1 to 3 ms apart) to a store holding \
         {SEEDED} events, 2-worker runtime; latency from the append's return to the projection's \
         `apply` (a `ProjectionRunner`, memory checkpoint store), or to a bare `Subscription`'s \
         `next` (0 when the reader had the event before the writer's caller heard of it). \
         PostgreSQL floor: `NOTIFY` → `LISTEN` on two raw tokio-postgres connections (the \
         notifying one with `synchronous_commit` off, as the store's notifier), from sending \
         `pg_notify` to the notification's arrival. SQLite floor: the store wakes readers \
         through a `tokio::sync::watch` its writer thread sends on after the commit, with no \
         server in between, so the floor is that raw mechanism: a plain thread's `watch` send \
         until a task awaiting `changed` runs. Page read: `read_all` of the page holding the \
         newest event, through the store. {rounds} rounds of {per_round} samples of each, in \
         turn, after one to warm up. Target: p99 ≤ 2× the floor's p99 + the page read's \
         p99.\n\n"
    ));
    out.push_str(
        "| store | floor p50 / p99 | page read p50 / p99 | 2× floor + page (p99) | runner p50 / p99 | target | subscription p50 / p99 | target |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    let mut misses = Vec::new();
    for (kind, samples) in measured.iter_mut() {
        let [floor, page, runner, subscription] = [
            &mut samples.floor,
            &mut samples.page,
            &mut samples.runner,
            &mut samples.subscription,
        ]
        .map(|values| (percentile(values, 50.0), percentile(values, 99.0)));
        let bound = 2.0 * floor.1 + page.1;
        let mut verdict = |name: &str, p99: f64| {
            if p99 > bound {
                misses.push(format!(
                    "{} {name}: p99 {p99:.0} µs over 2× floor + page read ({bound:.0} µs)",
                    kind.name()
                ));
            }
            met(p99 <= bound)
        };
        let runner_met = verdict("runner", runner.1);
        let subscription_met = verdict("subscription", subscription.1);
        out.push_str(&format!(
            "| {} | {:.0} / {:.0} µs | {:.0} / {:.0} µs | {bound:.0} µs | {:.0} / {:.0} µs | {runner_met} | {:.0} / {:.0} µs | {subscription_met} |\n",
            kind.name(),
            floor.0,
            floor.1,
            page.0,
            page.1,
            runner.0,
            runner.1,
            subscription.0,
            subscription.1,
        ));
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
    let store = rt.block_on(Store::create(Kind::Memory, ""));
    let mut group = c.benchmark_group("projection_live");
    group.bench_function("memory_append_to_next", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut subscription = Subscription::builder(store.events.clone())
                    .from_head()
                    .build()
                    .await
                    .unwrap();
                let started = Instant::now();
                for i in 0..iters {
                    store
                        .events
                        .append(
                            "account-criterion",
                            ExpectedVersion::Any,
                            vec![new_event(&AccountEvent::Deposited(i))],
                            metadata(String::new()),
                        )
                        .await
                        .unwrap();
                    subscription.next().await.unwrap();
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
    let quick = support::quick();
    let (rounds, per_round) = if quick { (2, 30) } else { (5, 200) };
    let rt = runtime();
    let load_before = support::load_average();
    let mut measured: Vec<(Kind, Samples)> = fixture::stores(&[Kind::Sqlite, Kind::Postgres])
        .into_iter()
        .map(|kind| (kind, measure(&rt, kind, rounds, per_round)))
        .collect();
    let out = report(
        &mut measured,
        rounds,
        per_round,
        (load_before, support::load_average()),
    );
    println!("\n{out}");
    support::write_section("61-projection_live.md", &out);
}
