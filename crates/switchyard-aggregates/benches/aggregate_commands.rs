//! Aggregate commands through `node.dispatch` with the memory store, and cold loads, each beside
//! its floor measured in the same run.
//!
//! - Warm commands: 64 concurrent callers sending deposits (a new message each, events encoded
//!   through the codec, appended, idempotency look-up on) across 1,000 loaded aggregates, and all
//!   to one aggregate. Floor: a hand-written actor per aggregate (a tokio task, an mpsc mailbox,
//!   a oneshot reply) adding the amount, with no dispatcher, codec or store.
//! - Cold load of a 10,000-event stream, without and with a snapshot. Floor: decoding and
//!   folding the same 10,000 encoded events from memory.
//!
//! Run with `cargo xtask bench` (which writes `docs/benchmarks.md`) or
//! `cargo bench -p switchyard-aggregates --bench aggregate_commands`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group};
use serde::{Deserialize, Serialize};
use switchyard_aggregates::repo::Repo;
use switchyard_aggregates::store::MemoryStore;
use switchyard_aggregates::{
    Aggregate, AggregateRuntime, AggregateState, CommandResult, Events, MessageHandler,
};
use switchyard_messaging::{Message, Node, Response, Router, codec};
use tokio::runtime::Runtime;
use tokio::sync::{mpsc, oneshot};

use switchyard_bench_support::{self as support, alternate, median, runtime};

#[derive(Default, Serialize, Deserialize)]
struct Account {
    balance: u64,
}

#[derive(Clone, Serialize, Deserialize)]
enum AccountEvent {
    Opened,
    Deposited(u64),
}

impl Aggregate for Account {
    type Event = AccountEvent;
    const NAME: &'static str = "account";
    fn apply(&mut self, event: &AccountEvent) {
        if let AccountEvent::Deposited(n) = event {
            self.balance += n;
        }
    }
}

fn open(_: &Account, _: &Message) -> CommandResult<AccountEvent> {
    Ok(Events::one(AccountEvent::Opened))
}

fn deposit(_: &Account, msg: &Message) -> CommandResult<AccountEvent> {
    Ok(Events::one(AccountEvent::Deposited(msg.request()?)))
}

const AGGREGATES: usize = 1_000;
const CALLERS: usize = 64;

fn bank(rt: &Runtime) -> Node {
    bank_with_runtime(rt).0
}

fn bank_with_runtime(rt: &Runtime) -> (Node, AggregateRuntime<Account>) {
    let store = Arc::new(MemoryStore::new());
    let runtime = AggregateRuntime::new(Repo::<Account>::event_sourced(store));
    let accounts = MessageHandler::new(runtime.clone());
    let node = Node::new("bench");
    node.register(
        Router::new("accounts")
            .service("open", accounts.on_new(open))
            .service("deposit", accounts.on_existing(deposit))
            .authorize(|_| Ok(())),
    )
    .unwrap();
    rt.block_on(async {
        for n in 0..AGGREGATES {
            let reply = node
                .dispatch(Message::new("open").with_aggregate_id(format!("a-{n}")))
                .await;
            assert!(matches!(reply.response(), Some(Response::Created { .. })));
        }
    });
    (node, runtime)
}

/// One measured round on a fresh bank, torn down before the next round starts so its teardown
/// does not weigh on the floor measured next.
fn fresh_round(rt: &Runtime, actors: &Arc<Vec<Mailbox>>, spread: usize) -> f64 {
    let (node, runtime) = bank_with_runtime(rt);
    let rate = throughput(rt, &node, actors, spread, true);
    drop(node);
    rt.block_on(runtime.shutdown());
    rate
}

/// The floor: one task per aggregate, a mailbox in, a oneshot out.
type Mailbox = mpsc::Sender<(u64, oneshot::Sender<u64>)>;

fn actors(rt: &Runtime) -> Arc<Vec<Mailbox>> {
    let _entered = rt.enter();
    Arc::new(
        (0..AGGREGATES)
            .map(|_| {
                let (sender, mut mailbox) = mpsc::channel::<(u64, oneshot::Sender<u64>)>(4_096);
                tokio::spawn(async move {
                    let mut balance = 0_u64;
                    while let Some((amount, reply)) = mailbox.recv().await {
                        balance += amount;
                        let _ = reply.send(balance);
                    }
                });
                sender
            })
            .collect(),
    )
}

async fn command(node: &Node, aggregate: usize) {
    let reply = node
        .dispatch(
            Message::new("deposit")
                .with_aggregate_id(format!("a-{aggregate}"))
                .with_request(&1_u64),
        )
        .await;
    debug_assert!(matches!(reply.response(), Some(Response::OkAt { .. })));
    std::hint::black_box(reply);
}

async fn actor_command(actors: &[Mailbox], aggregate: usize) {
    let (reply, answer) = oneshot::channel();
    actors[aggregate].send((1, reply)).await.unwrap();
    std::hint::black_box(answer.await.unwrap());
}

/// Commands per second with `CALLERS` callers, spread over `spread` aggregates.
fn throughput(
    rt: &Runtime,
    node: &Node,
    actors: &Arc<Vec<Mailbox>>,
    spread: usize,
    subject: bool,
) -> f64 {
    const CALLS: usize = 128_000;
    let per_caller = CALLS / CALLERS;
    rt.block_on(async {
        let started = Instant::now();
        let tasks: Vec<_> = (0..CALLERS)
            .map(|caller| {
                let node = node.clone();
                let actors = actors.clone();
                tokio::spawn(async move {
                    for i in 0..per_caller {
                        let aggregate = (caller * 7919 + i * 31) % spread;
                        if subject {
                            command(&node, aggregate).await;
                        } else {
                            actor_command(&actors, aggregate).await;
                        }
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        (per_caller * CALLERS) as f64 / started.elapsed().as_secs_f64()
    })
}

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
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = criterion_benches
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    if std::env::args().any(|arg| arg == "--test" || arg == "--list" || arg == "--profile-time") {
        return;
    }
    let rt = runtime();
    let actors = actors(&rt);
    // Each round starts from a fresh store and freshly loaded aggregates, so the store's growth
    // over the whole run does not weigh on the later rounds.
    let idle = bank(&rt);
    let spread = alternate(
        8,
        || throughput(&rt, &idle, &actors, AGGREGATES, false),
        || fresh_round(&rt, &actors, AGGREGATES),
    );
    let single = alternate(
        8,
        || throughput(&rt, &idle, &actors, 1, false),
        || fresh_round(&rt, &actors, 1),
    );
    let cold = cold(&rt);
    let without = alternate(
        15,
        || time_floor_load(&cold.encoded),
        || time_load(&rt, &cold.plain),
    );
    let with = alternate(
        15,
        || time_floor_load(&cold.encoded),
        || time_load(&rt, &cold.snapshotting),
    );

    let mut out = String::new();
    out.push_str("## Aggregate commands (`switchyard-aggregates`, bench `aggregate_commands`)\n\n");
    out.push_str(
        "Deposits through `node.dispatch` to `MessageHandler::on_existing` with the memory store: \
         a new message per command, the event encoded through the codec and appended, the \
         idempotency look-up on; 64 concurrent callers on a 2-worker runtime. Floor: a \
         hand-written actor per aggregate (tokio task, mpsc mailbox, oneshot reply) adding the \
         amount. Medians of 8 alternating rounds of 128,000 commands.\n\n",
    );
    out.push_str(
        "| warm commands | floor commands/s | commands/s | floor / subject |\n|---|---|---|---|\n",
    );
    for (name, rounds) in [
        ("across 1,000 aggregates", &spread),
        ("all on one aggregate", &single),
    ] {
        out.push_str(&format!(
            "| {name} | {:.0} | {:.0} | {:.2}× |\n",
            median(&rounds.floor),
            median(&rounds.subject),
            rounds.inverse_ratio()
        ));
    }
    out.push_str("\nTarget: ≥ 300,000 commands/s across 1,000 aggregates.\n\n");
    out.push_str(
        "Cold load of a 10,000-event stream from the memory store (`Repo::load`: read, decode, \
         fold). Floor: decoding and folding the same 10,000 encoded events from a `Vec`. Medians \
         of 15 alternating rounds.\n\n",
    );
    out.push_str("| cold load | floor | load | load / floor |\n|---|---|---|---|\n");
    for (name, rounds) in [("without a snapshot", &without), ("with a snapshot", &with)] {
        out.push_str(&format!(
            "| {name} | {:.3} ms | {:.3} ms | {:.2}× |\n",
            median(&rounds.floor),
            median(&rounds.subject),
            rounds.ratio()
        ));
    }
    out.push_str("\nTargets: ≤ 20 ms without a snapshot, ≤ 1 ms with one.\n");
    println!("\n{out}");
    support::write_section("20-aggregate_commands.md", &out);
}
