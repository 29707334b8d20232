//! Aggregate commands through `node.dispatch` with the memory store, and cold loads, each beside
//! its floor measured in the same run.
//!
//! - Warm commands: 64 concurrent callers sending deposits (a new message each, events encoded
//!   through the codec, appended, idempotency look-up on) across 1,000 loaded aggregates, and all
//!   to one aggregate. Floor: a hand-written actor per aggregate (a tokio task, an mpsc mailbox,
//!   a oneshot reply) adding the amount, with no dispatcher, codec or store.
//! - The same across 10,000 aggregates (floor: 10,000 such actors).
//! - Sequential commands from one caller on one freshly created aggregate. Floor: sequential
//!   round trips to one such actor.
//! - Warm sequential commands on one aggregate that processed 0, 1,000 and 100,000 message ids
//!   before (one event each), and on one whose stream holds 100,000 events of one message: the
//!   cost must not grow with the ids nor the stream. Floor: the actor round trip.
//! - Cold load of a 10,000-event stream, without and with a snapshot. Floor: decoding and
//!   folding the same 10,000 encoded events from memory.
//! - Allocations per command (a counting global allocator, in a pass of its own): a warm
//!   deposit, a `node.dispatch` to a service that only answers, and the actor round trip.
//!
//! Run with `cargo xtask bench` (which writes `docs/benchmarks.md`) or
//! `cargo bench -p switchyard-aggregates --bench aggregate_commands`. To profile one path alone,
//! `SWITCHYARD_BENCH_PHASE=spread` (64 callers across 1,000 aggregates) or `sequential` (one
//! caller, one fresh aggregate) runs only that subject for `SWITCHYARD_BENCH_PHASE_SECONDS` (20):
//! `SWITCHYARD_BENCH_PHASE=spread cargo xtask profile aggregate_commands --label spread`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod fixture;

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group};
use switchyard_aggregates::repo::Repo;
use switchyard_aggregates::store::MemoryStore;
use switchyard_aggregates::{Aggregate, AggregateRuntime, AggregateState, MessageHandler};
use switchyard_messaging::{Message, Node, Response, Router, codec};
use tokio::runtime::Runtime;

use switchyard_bench_support::allocations::{self, Counter};
use switchyard_bench_support::{self as support, Rounds, alternate, median, quick, runtime};

use crate::fixture::{
    AGGREGATES, Account, AccountEvent, MANY_AGGREGATES, actor_command, actor_round_trip, actors,
    bank, command, deposit, deposit_to, fresh_aggregate_commands, fresh_round, sequential,
    throughput, throughput_calls,
};

#[global_allocator]
static ALLOCATOR: Counter = &allocations::INSTRUMENTED_SYSTEM;

/// The aggregate layer's allocations per warm deposit before issue 14's work (commit a9fc721),
/// counted by this bench's allocation pass.
const BEFORE_SHARE: f64 = 25.6;

/// A 10,000-event stream in a store, with and without a snapshot, and the events' encodings.
struct Cold {
    plain: Repo<Account>,
    snapshotting: Repo<Account>,
    encoded: Vec<Vec<u8>>,
}

fn cold(rt: &Runtime) -> Cold {
    const EVENTS: usize = 10_000;
    let store = MemoryStore::new();
    let plain = Repo::<Account>::event_sourced(Arc::new(store.clone()));
    let snapshot_store = MemoryStore::new();
    let snapshotting = Repo::<Account>::event_sourced(Arc::new(store.clone()))
        .with_snapshots(Arc::new(snapshot_store), EVENTS as u64);
    let events: Vec<AccountEvent> = (0..EVENTS as u64).map(AccountEvent::Deposited).collect();
    rt.block_on(async {
        let mut state = AggregateState::default();
        snapshotting
            .commit(
                "cold",
                &mut state,
                events.clone(),
                &Message::new("seed"),
                Default::default(),
            )
            .await
            .unwrap();
    });
    let encoded = events.iter().map(|e| codec::encode(e).unwrap()).collect();
    Cold {
        plain,
        snapshotting,
        encoded,
    }
}

fn time_load(rt: &Runtime, repo: &Repo<Account>) -> f64 {
    rt.block_on(async {
        let started = Instant::now();
        let state = repo.load("cold").await.unwrap().unwrap();
        std::hint::black_box(state.state.balance);
        started.elapsed().as_secs_f64() * 1_000.0
    })
}

fn time_floor_load(encoded: &[Vec<u8>]) -> f64 {
    let started = Instant::now();
    let mut account = Account::default();
    for bytes in encoded {
        let event: AccountEvent = codec::decode(bytes).unwrap();
        account.apply(&event);
    }
    std::hint::black_box(account.balance);
    started.elapsed().as_secs_f64() * 1_000.0
}

/// Aggregates with a history, loaded: `(name, id)` per shape.
struct Warm {
    node: Node,
    shapes: Vec<(&'static str, String)>,
}

/// One aggregate per history shape, seeded through the repo and then loaded by one command.
fn warm(rt: &Runtime) -> Warm {
    let (ids_1k, ids_100k) = if quick() {
        (1_000, 10_000)
    } else {
        (1_000, 100_000)
    };
    let store = Arc::new(MemoryStore::new());
    let repo = Repo::<Account>::event_sourced(store.clone());
    let runtime = AggregateRuntime::new(repo.clone());
    let accounts = MessageHandler::new(runtime);
    let node = Node::new("warm");
    node.register(
        Router::new("accounts")
            .service("deposit", accounts.on_existing(deposit))
            .authorize(|_| Ok(())),
    )
    .unwrap();
    let shapes = vec![
        ("its opening only", "ids-0".to_owned(), 0, 1),
        ("1,000 processed ids", "ids-1k".to_owned(), ids_1k, 1),
        (
            if quick() {
                "10,000 processed ids"
            } else {
                "100,000 processed ids"
            },
            "ids-100k".to_owned(),
            ids_100k,
            1,
        ),
        (
            if quick() {
                "10,000 events of one message"
            } else {
                "100,000 events of one message"
            },
            "long".to_owned(),
            1,
            ids_100k,
        ),
    ];
    rt.block_on(async {
        for (_, id, messages, events_each) in &shapes {
            let mut state = AggregateState::<Account>::default();
            repo.commit(
                id,
                &mut state,
                vec![AccountEvent::Opened],
                &Message::new("open"),
                Default::default(),
            )
            .await
            .unwrap();
            for _ in 0..*messages {
                let events = vec![AccountEvent::Deposited(1); *events_each];
                repo.commit(
                    id,
                    &mut state,
                    events,
                    &Message::new("seed"),
                    Default::default(),
                )
                .await
                .unwrap();
            }
            deposit_to(&node, id).await;
        }
    });
    Warm {
        node,
        shapes: shapes
            .into_iter()
            .map(|(name, id, _, _)| (name, id))
            .collect(),
    }
}

/// Allocations per call of `op`, run `calls` times in one task on a worker.
fn allocations_per_call<F, Fut>(rt: &Runtime, calls: usize, op: F) -> f64
where
    F: Fn(usize) -> Fut + Send + Clone + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    // A warm-up pass, so lazily grown buffers are not counted.
    sequential(rt, calls, op.clone());
    allocations::per_call(ALLOCATOR, 1, || {
        sequential(rt, calls, op.clone());
    }) / calls as f64
}

fn criterion_benches(c: &mut Criterion) {
    let rt = runtime();
    let node = bank(&rt);
    let mut group = c.benchmark_group("aggregate_commands");
    group.bench_function("command_round_trip", |b| {
        b.iter_custom(|iters| {
            let node = node.clone();
            rt.block_on(rt.spawn(async move {
                let started = Instant::now();
                for i in 0..iters {
                    command(&node, (i as usize) % AGGREGATES).await;
                }
                started.elapsed()
            }))
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

/// A table row of throughput rounds: floor, subject, subject / floor, target.
fn throughput_row(name: &str, rounds: &Rounds, target: Option<f64>) -> String {
    let ratio = 1.0 / rounds.inverse_ratio();
    let verdict = match target {
        Some(target) => format!("≥ {target}× ({})", support::met(ratio >= target)),
        None => "none".to_owned(),
    };
    format!(
        "| {name} | {:.0} | {:.0} | {ratio:.3}× | {verdict} |\n",
        median(&rounds.floor),
        median(&rounds.subject),
    )
}

/// A table row of time rounds: floor, subject, subject / floor, target.
fn time_row(name: &str, unit: &str, rounds: &Rounds, target: Option<f64>) -> String {
    let ratio = rounds.ratio();
    let verdict = match target {
        Some(target) => format!("≤ {target}× ({})", support::met(ratio <= target)),
        None => "none".to_owned(),
    };
    format!(
        "| {name} | {:.3} {unit} | {:.3} {unit} | {ratio:.2}× | {verdict} |\n",
        median(&rounds.floor),
        median(&rounds.subject),
    )
}

/// One phase's subject alone, for `cargo xtask profile` (`SWITCHYARD_BENCH_PHASE=spread`: 64
/// callers across 1,000 aggregates; `sequential`: one caller on one fresh aggregate), run for
/// about `length` so the profile holds nothing else.
fn profile_phase(phase: &str, length: Duration) {
    let rt = runtime();
    let started = Instant::now();
    let node = bank(&rt);
    let mut commands = 0_usize;
    while started.elapsed() < length {
        match phase {
            "spread" => {
                throughput(&rt, &node, AGGREGATES);
                commands += throughput_calls();
            }
            "sequential" => {
                fresh_aggregate_commands(&rt, &node, 2_000);
                commands += 2_000;
            }
            other => panic!("SWITCHYARD_BENCH_PHASE is `spread` or `sequential`, not `{other}`"),
        }
    }
    println!(
        "{phase}: {commands} commands in {:.1} s",
        started.elapsed().as_secs_f64()
    );
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
    let rounds = if quick() { 3 } else { 8 };
    let rt = runtime();
    let load_before = support::load_average();
    let actors_1k = actors(&rt, AGGREGATES);
    // Each round starts from a fresh store and freshly loaded aggregates, so the store's growth
    // over the whole run does not weigh on the later rounds.
    let idle = bank(&rt);
    let spread = alternate(
        rounds,
        || throughput(&rt, &actors_1k, AGGREGATES),
        || fresh_round(&rt, AGGREGATES, AGGREGATES),
    );
    let single = alternate(
        rounds,
        || throughput(&rt, &actors_1k, 1),
        || fresh_round(&rt, 1, 1),
    );
    let actors_10k = actors(&rt, MANY_AGGREGATES);
    let many = alternate(
        rounds.min(5),
        || throughput(&rt, &actors_10k, MANY_AGGREGATES),
        || fresh_round(&rt, MANY_AGGREGATES, MANY_AGGREGATES),
    );
    drop(actors_10k);

    let calls = if quick() { 2_000 } else { 20_000 };
    let fresh = alternate(
        rounds,
        || actor_round_trip(&rt, &actors_1k, calls),
        || fresh_aggregate_commands(&rt, &idle, calls),
    );
    let warm = warm(&rt);
    // The shapes take turns within each round, each beside a floor of its own, so the machine's
    // changes of speed fall on all of them alike and the comparison down the rows holds.
    let warm_command = |id: &str| {
        let node = warm.node.clone();
        let id = id.to_owned();
        sequential(&rt, calls, move |_| {
            let node = node.clone();
            let id = id.clone();
            async move { deposit_to(&node, &id).await }
        })
    };
    for (_, id) in &warm.shapes {
        warm_command(id);
    }
    let mut warm_rounds: Vec<(&str, Rounds)> = warm
        .shapes
        .iter()
        .map(|(name, _)| (*name, Rounds::default()))
        .collect();
    for _ in 0..rounds {
        for ((_, id), (_, measured)) in warm.shapes.iter().zip(&mut warm_rounds) {
            measured
                .floor
                .push(actor_round_trip(&rt, &actors_1k, calls));
            measured.subject.push(warm_command(id));
        }
    }

    let cold = cold(&rt);
    let cold_rounds = if quick() { 5 } else { 15 };
    let without = alternate(
        cold_rounds,
        || time_floor_load(&cold.encoded),
        || time_load(&rt, &cold.plain),
    );
    let with = alternate(
        cold_rounds,
        || time_floor_load(&cold.encoded),
        || time_load(&rt, &cold.snapshotting),
    );

    let alloc_calls = if quick() { 1_000 } else { 10_000 };
    let per_command = {
        let node = idle.clone();
        allocations_per_call(&rt, alloc_calls, move |i| {
            let node = node.clone();
            async move { command(&node, i % AGGREGATES).await }
        })
    };
    let per_dispatch = {
        let node = Node::new("answers");
        node.register(
            Router::new("answers")
                .service("answer", |message: Message| async move {
                    message.return_with(Response::Ok)
                })
                .authorize(|_| Ok(())),
        )
        .unwrap();
        // The same message as a deposit's, so the difference is the aggregate layer's.
        allocations_per_call(&rt, alloc_calls, move |i| {
            let node = node.clone();
            async move {
                let message = Message::new("answer")
                    .with_aggregate_id(format!("a-{}", i % AGGREGATES))
                    .with_request(&1_u64);
                std::hint::black_box(node.dispatch(message).await);
            }
        })
    };
    let per_round_trip = {
        let actors = actors_1k.clone();
        allocations_per_call(&rt, alloc_calls, move |i| {
            let actors = actors.clone();
            async move { actor_command(&actors, i % AGGREGATES).await }
        })
    };
    let load_after = support::load_average();

    let mut out = String::new();
    out.push_str("## Aggregate commands (`switchyard-aggregates`, bench `aggregate_commands`)\n\n");
    out.push_str(&format!(
        "Load averages (1, 5, 15 min) before: {load_before}; after: {load_after}. Shared 2-core \
         machine: judge by the ratios, each floor measured in alternation with its subject.\n\n"
    ));
    out.push_str(&format!(
        "Deposits through `node.dispatch` to `MessageHandler::on_existing` with the memory store: \
         a new message per command, the event encoded through the codec and appended, \
         idempotency kept; 64 concurrent callers on a 2-worker runtime. Floor: a hand-written \
         actor per aggregate (tokio task, mpsc mailbox, oneshot reply) adding the amount. Medians \
         of {rounds} alternating rounds (5 across 10,000 aggregates).\n\n"
    ));
    out.push_str(
        "| warm commands, 64 callers | floor commands/s | commands/s | subject / floor | target |\n\
         |---|---|---|---|---|\n",
    );
    out.push_str(&throughput_row("across 1,000 aggregates", &spread, None));
    out.push_str(&throughput_row(
        "across 10,000 aggregates",
        &many,
        Some(0.3),
    ));
    out.push_str(&throughput_row("all on one aggregate", &single, None));
    out.push_str(&format!(
        "\nSequential commands from one caller ({calls} per round), microseconds per command. \
         Floor: sequential round trips to one actor. Warm rows: one aggregate whose history was \
         seeded through the repo (each processed id recorded one event; the last row's stream \
         holds its events from one message), loaded before the rounds, the shapes taking turns \
         within each round; the cost must stay flat down the rows.\n\n"
    ));
    out.push_str(
        "| sequential commands | floor | command | command / floor | target |\n|---|---|---|---|---|\n",
    );
    out.push_str(&time_row("one fresh aggregate", "µs", &fresh, Some(3.0)));
    for (name, rounds) in &warm_rounds {
        out.push_str(&time_row(&format!("warm, {name}"), "µs", rounds, None));
    }
    let flat: Vec<f64> = warm_rounds.iter().map(|(_, r)| r.ratio()).collect();
    let spread_of_warm = flat.iter().cloned().fold(f64::MIN, f64::max)
        / flat.iter().cloned().fold(f64::MAX, f64::min);
    out.push_str(&format!(
        "\nWarm cost, largest over smallest ratio across the warm rows: {spread_of_warm:.2}× \
         (target: flat, ≤ 1.3×, {}).\n\n",
        support::met(spread_of_warm <= 1.3)
    ));
    out.push_str(
        "Cold load of a 10,000-event stream from the memory store (`Repo::load`: read, decode, \
         fold, window of processed ids). Floor: decoding and folding the same 10,000 encoded \
         events from a `Vec`.\n\n",
    );
    out.push_str("| cold load | floor | load | load / floor | target |\n|---|---|---|---|---|\n");
    out.push_str(&time_row("without a snapshot", "ms", &without, None));
    out.push_str(&time_row("with a snapshot", "ms", &with, None));
    out.push_str("\nTargets: ≤ 20 ms without a snapshot, ≤ 1 ms with one.\n\n");
    out.push_str(&format!(
        "Allocations per call (a counting global allocator, in a pass of its own over \
         {alloc_calls} sequential calls after a warm-up pass):\n\n\
         | call | allocations |\n|---|---|\n\
         | warm deposit through `node.dispatch`, the message built included | {per_command:.1} |\n\
         | the same message to a service that only answers (messaging and the message) | \
         {per_dispatch:.1} |\n\
         | the aggregate layer's share (the difference) | {:.1} |\n\
         | actor round trip (floor) | {per_round_trip:.1} |\n\n\
         Target: at most half the aggregate layer's share before issue 14's work \
         ({BEFORE_SHARE:.1} at commit a9fc721, this pass): {}.\n",
        per_command - per_dispatch,
        support::met(per_command - per_dispatch <= BEFORE_SHARE / 2.0)
    ));
    println!("\n{out}");
    support::write_section("20-aggregate_commands.md", &out);
}
