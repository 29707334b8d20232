//! Switchyard beside the crates a Rust user would pick instead, in one run, each against the
//! same floor measured in alternating rounds (issue 14's comparison):
//!
//! - Local request and reply: `node.dispatch` to a local echo service (as `local_dispatch`
//!   measures it), ractor's `call` and kameo's `ask` to an echo actor. Floor: a raw tokio
//!   `spawn` + `oneshot` round trip. One caller's p50, and 64 concurrent callers' calls/s.
//! - Bank deposits: Switchyard's `node.dispatch` to an aggregate with the memory store (as
//!   `aggregate_commands` measures it) and cqrs-es's `CqrsFramework::execute` with its
//!   `MemStore`, a deposit producing one event. Floor: a hand-written actor per aggregate (a
//!   tokio task, an mpsc mailbox, a oneshot reply). 64 callers across 10,000 aggregates, and one
//!   caller's sequential commands on freshly opened aggregates.
//!
//! No targets: issue 14's are on the other benches; this one compares. Run with
//! `cargo xtask bench` (which writes `docs/benchmarks.md`) or
//! `cargo bench -p switchyard-peers-bench --bench peers`; `SWITCHYARD_BENCH_QUICK=1` shortens it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

// The workloads and floors of `local_dispatch` and `aggregate_commands`, included rather than
// copied so the comparison runs exactly what those benches run; this bench uses part of each.
#[allow(dead_code)]
#[path = "../../../crates/switchyard-aggregates/benches/fixture/mod.rs"]
mod commands;
#[allow(dead_code)]
#[path = "../../../crates/switchyard-messaging/benches/fixture/mod.rs"]
mod dispatch;

use std::fmt;
use std::fs::File;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Instant;

use cqrs_es::CqrsFramework;
use cqrs_es::mem_store::MemStore;
use criterion::{Criterion, criterion_group};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use switchyard_messaging::Node;
use tokio::runtime::Runtime;

use switchyard_bench_support::{self as support, Rounds, alternate, median, quick, runtime};

use crate::commands::{
    Deposits, MANY_AGGREGATES, actor_round_trip, actors, bank, fresh_aggregate_commands,
    fresh_round, sequential, throughput, unique,
};
use crate::dispatch::{Floor, Latency, RoundTrip, calls_per_second, latency, node};

// ractor: an echo actor answering a call through its reply port.

enum RactorMsg {
    Ping(ractor::RpcReplyPort<u64>),
}

struct RactorEcho;

impl ractor::Actor for RactorEcho {
    type Msg = RactorMsg;
    type State = ();
    type Arguments = ();

    async fn pre_start(
        &self,
        _: ractor::ActorRef<RactorMsg>,
        _: (),
    ) -> Result<(), ractor::ActorProcessingErr> {
        Ok(())
    }

    async fn handle(
        &self,
        _: ractor::ActorRef<RactorMsg>,
        message: RactorMsg,
        _: &mut (),
    ) -> Result<(), ractor::ActorProcessingErr> {
        let RactorMsg::Ping(reply) = message;
        let _ = reply.send(1);
        Ok(())
    }
}

#[derive(Clone)]
struct Ractor(ractor::ActorRef<RactorMsg>);

impl Ractor {
    fn spawn(rt: &Runtime) -> Self {
        let (actor, _) = rt
            .block_on(ractor::Actor::spawn(None, RactorEcho, ()))
            .unwrap();
        Self(actor)
    }
}

impl RoundTrip for Ractor {
    async fn round_trip(&self) {
        let reply = ractor::call!(self.0, RactorMsg::Ping).unwrap();
        std::hint::black_box(reply);
    }
}

// kameo: an echo actor answering an ask, spawned with kameo's default (bounded) mailbox.

#[derive(kameo::Actor)]
struct KameoEcho;

struct Ping;

impl kameo::message::Message<Ping> for KameoEcho {
    type Reply = u64;

    async fn handle(&mut self, _: Ping, _: &mut kameo::message::Context<Self, u64>) -> u64 {
        1
    }
}

#[derive(Clone)]
struct Kameo(kameo::actor::ActorRef<KameoEcho>);

impl Kameo {
    fn spawn(rt: &Runtime) -> Self {
        let _entered = rt.enter();
        Self(kameo::actor::Spawn::spawn(KameoEcho))
    }
}

impl RoundTrip for Kameo {
    async fn round_trip(&self) {
        let reply = self.0.ask(Ping).await.unwrap();
        std::hint::black_box(reply);
    }
}

// cqrs-es: the same account, a deposit command producing one event that adds its amount.

#[derive(Default, Serialize, Deserialize)]
struct BankAccount {
    balance: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
enum BankEvent {
    Opened,
    Deposited(u64),
}

impl cqrs_es::DomainEvent for BankEvent {
    fn event_type(&self) -> String {
        match self {
            BankEvent::Opened => "Opened",
            BankEvent::Deposited(_) => "Deposited",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}

enum BankCommand {
    Open,
    Deposit(u64),
}

/// The account's commands never fail; cqrs-es asks for an error type all the same.
#[derive(Debug)]
struct BankError;

impl fmt::Display for BankError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("bank error")
    }
}

impl std::error::Error for BankError {}

impl cqrs_es::Aggregate for BankAccount {
    const TYPE: &'static str = "account";
    type Command = BankCommand;
    type Event = BankEvent;
    type Error = BankError;
    type Services = ();

    async fn handle(
        &mut self,
        command: BankCommand,
        _: &(),
        sink: &cqrs_es::event_sink::EventSink<Self>,
    ) -> Result<(), BankError> {
        let event = match command {
            BankCommand::Open => BankEvent::Opened,
            BankCommand::Deposit(amount) => BankEvent::Deposited(amount),
        };
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: BankEvent) {
        if let BankEvent::Deposited(amount) = event {
            self.balance += amount;
        }
    }
}

#[derive(Clone)]
struct CqrsEs(Arc<CqrsFramework<BankAccount, MemStore<BankAccount>>>);

impl CqrsEs {
    /// A framework on a fresh `MemStore` with the accounts `a-0` … `a-{accounts - 1}` opened.
    fn bank(rt: &Runtime, accounts: usize) -> Self {
        let bank = Self(Arc::new(CqrsFramework::new(
            MemStore::default(),
            Vec::new(),
            (),
        )));
        let _silenced = Silenced::new();
        rt.block_on(async {
            for n in 0..accounts {
                bank.execute(&format!("a-{n}"), BankCommand::Open).await;
            }
        });
        bank
    }

    async fn execute(&self, id: &str, command: BankCommand) {
        self.0.execute(id, command).await.unwrap();
    }
}

impl Deposits for CqrsEs {
    async fn deposit(&self, aggregate: usize) {
        self.execute(&format!("a-{aggregate}"), BankCommand::Deposit(1))
            .await
    }
}

/// Standard output pointed at /dev/null while this lives. cqrs-es's `MemStore` prints a line on
/// every load and every commit (`println!`, a `write` system call each); written to a terminal
/// or a log they would cost more than the command and flood the bench's output, written to
/// /dev/null they cost what printing costs at the least.
struct Silenced {
    saved: OwnedFd,
}

impl Silenced {
    fn new() -> Self {
        std::io::stdout().flush().unwrap();
        let saved = rustix::io::dup(std::io::stdout()).unwrap();
        let null = File::options().write(true).open("/dev/null").unwrap();
        rustix::stdio::dup2_stdout(&null).unwrap();
        Self { saved }
    }
}

impl Drop for Silenced {
    fn drop(&mut self) {
        let _ = std::io::stdout().flush();
        let _ = rustix::stdio::dup2_stdout(&self.saved);
    }
}

/// A round of warm deposits through cqrs-es across `aggregates` accounts, on a fresh store (as
/// Switchyard's rounds are), in commands per second.
fn cqrs_round(rt: &Runtime, aggregates: usize) -> f64 {
    let bank = CqrsEs::bank(rt, aggregates);
    let _silenced = Silenced::new();
    throughput(rt, &bank, aggregates)
}

/// Commands on each freshly opened aggregate in the sequential workload. cqrs-es loads a
/// stream's every event for each command, so its cost per command grows with this; Switchyard
/// keeps a loaded aggregate. 100 is a short-lived aggregate's history.
const COMMANDS_PER_FRESH: usize = 100;

/// Freshly opened aggregates per sequential round: 20,000 commands in all, as many as a
/// sequential round of `aggregate_commands`.
fn fresh_per_round() -> usize {
    if quick() { 20 } else { 200 }
}

/// Sequential deposits from one caller on `fresh_per_round()` aggregates opened for the round,
/// `COMMANDS_PER_FRESH` each, in microseconds per command (the opening untimed).
fn fresh_switchyard(rt: &Runtime, node: &Node) -> f64 {
    let per_aggregate: Vec<f64> = (0..fresh_per_round())
        .map(|_| fresh_aggregate_commands(rt, node, COMMANDS_PER_FRESH))
        .collect();
    per_aggregate.iter().sum::<f64>() / per_aggregate.len() as f64
}

/// The same through cqrs-es.
fn fresh_cqrs(rt: &Runtime, bank: &CqrsEs) -> f64 {
    let _silenced = Silenced::new();
    let per_aggregate: Vec<f64> = (0..fresh_per_round())
        .map(|_| {
            let id = format!("fresh-{}", unique());
            rt.block_on(bank.execute(&id, BankCommand::Open));
            let bank = bank.clone();
            sequential(rt, COMMANDS_PER_FRESH, move |_| {
                let bank = bank.clone();
                let id = id.clone();
                async move { bank.execute(&id, BankCommand::Deposit(1)).await }
            })
        })
        .collect();
    per_aggregate.iter().sum::<f64>() / per_aggregate.len() as f64
}

fn criterion_benches(c: &mut Criterion) {
    let rt = runtime();
    let node = node();
    let ractor = Ractor::spawn(&rt);
    let kameo = Kameo::spawn(&rt);
    let mut group = c.benchmark_group("peers");
    // One caller, itself a task on the runtime, as in `local_dispatch`.
    fn one_caller(rt: &Runtime, iters: u64, target: &impl RoundTrip) -> std::time::Duration {
        let target = target.clone();
        rt.block_on(rt.spawn(async move {
            let started = Instant::now();
            for _ in 0..iters {
                target.round_trip().await;
            }
            started.elapsed()
        }))
        .unwrap()
    }
    group.bench_function("floor_spawn_oneshot", |b| {
        b.iter_custom(|iters| one_caller(&rt, iters, &Floor))
    });
    group.bench_function("switchyard_dispatch", |b| {
        b.iter_custom(|iters| one_caller(&rt, iters, &node))
    });
    group.bench_function("ractor_call", |b| {
        b.iter_custom(|iters| one_caller(&rt, iters, &ractor))
    });
    group.bench_function("kameo_ask", |b| {
        b.iter_custom(|iters| one_caller(&rt, iters, &kameo))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = support::criterion();
    targets = criterion_benches
}

/// Callers of the local throughput workload, as in `local_dispatch` and issue 14's table.
const CALLERS: usize = 64;

/// The local round trips, each beside the floor.
struct Local {
    /// Name, one caller's latency, 64 callers' rounds.
    subjects: Vec<(&'static str, Latency, Rounds)>,
    rounds: usize,
    latency_calls: usize,
    throughput_calls: usize,
}

fn measure_local(rt: &Runtime) -> Local {
    let (rounds, latency_calls, throughput_calls) = if quick() {
        (3, 2_000, 40_000)
    } else {
        (10, 20_000, 400_000)
    };
    let node = node();
    let ractor = Ractor::spawn(rt);
    let kameo = Kameo::spawn(rt);
    fn measure(
        rt: &Runtime,
        rounds: usize,
        latency_calls: usize,
        throughput_calls: usize,
        subject: &impl RoundTrip,
    ) -> (Latency, Rounds) {
        (
            latency(rt, rounds, latency_calls, subject),
            alternate(
                rounds,
                || calls_per_second(rt, CALLERS, throughput_calls, &Floor),
                || calls_per_second(rt, CALLERS, throughput_calls, subject),
            ),
        )
    }
    let mut subjects = Vec::new();
    let (l, t) = measure(rt, rounds, latency_calls, throughput_calls, &node);
    subjects.push(("Switchyard `node.dispatch`", l, t));
    let (l, t) = measure(rt, rounds, latency_calls, throughput_calls, &ractor);
    subjects.push(("ractor `call`", l, t));
    let (l, t) = measure(rt, rounds, latency_calls, throughput_calls, &kameo);
    subjects.push(("kameo `ask`", l, t));
    Local {
        subjects,
        rounds,
        latency_calls,
        throughput_calls,
    }
}

/// The command workloads, each subject beside the actor floor.
struct Commands {
    many: Vec<(&'static str, Rounds)>,
    fresh: Vec<(&'static str, Rounds)>,
    many_rounds: usize,
    fresh_rounds: usize,
}

fn measure_commands(rt: &Runtime) -> Commands {
    let (many_rounds, fresh_rounds) = if quick() { (3, 3) } else { (8, 8) };
    let floor_actors = actors(rt, MANY_AGGREGATES);
    let many = vec![
        (
            "Switchyard `node.dispatch`, memory store",
            alternate(
                many_rounds,
                || throughput(rt, &floor_actors, MANY_AGGREGATES),
                || fresh_round(rt, MANY_AGGREGATES, MANY_AGGREGATES),
            ),
        ),
        (
            "cqrs-es `execute`, `MemStore`",
            alternate(
                many_rounds,
                || throughput(rt, &floor_actors, MANY_AGGREGATES),
                || cqrs_round(rt, MANY_AGGREGATES),
            ),
        ),
    ];
    let floor_calls = fresh_per_round() * COMMANDS_PER_FRESH;
    let switchyard = bank(rt);
    let cqrs = CqrsEs::bank(rt, 0);
    let fresh = vec![
        (
            "Switchyard `node.dispatch`, memory store",
            alternate(
                fresh_rounds,
                || actor_round_trip(rt, &floor_actors, floor_calls),
                || fresh_switchyard(rt, &switchyard),
            ),
        ),
        (
            "cqrs-es `execute`, `MemStore`",
            alternate(
                fresh_rounds,
                || actor_round_trip(rt, &floor_actors, floor_calls),
                || fresh_cqrs(rt, &cqrs),
            ),
        ),
    ];
    Commands {
        many,
        fresh,
        many_rounds,
        fresh_rounds,
    }
}

fn micros(nanos: u64) -> String {
    format!("{:.2} µs", nanos as f64 / 1_000.0)
}

fn report(local: &Local, commands: &Commands, loads: (&str, &str)) -> String {
    let mut out = String::new();
    out.push_str("## Beside other crates (bench `peers`)\n\n");
    out.push_str(
        "The crates a Rust user would pick instead, measured in this one run on the workloads of \
         the sections above, each beside the same floor in alternating rounds: every ratio is \
         subject / floor, taken round by round (median), so it holds across the machine's \
         changes of speed; the absolute figures are medians of the same rounds. Multi-thread \
         tokio runtime with 2 workers; release builds; the crates' default features. No \
         targets here: issue 14's are in the sections above; this one compares.\n\n",
    );
    out.push_str(&format!(
        "Local request and reply: Switchyard's default node dispatching a new message to a \
         local echo service (as in `local_dispatch`), ractor's `call` and kameo's `ask` to an \
         echo actor (kameo's default mailbox, bounded at 64). Floor: a raw tokio `spawn` + \
         `oneshot` round trip. One caller (a task on the runtime): {} rounds of {} floor calls \
         then {} subject calls; p50 and p99 over all rounds, the floor's over the rounds of all \
         three subjects. Ratio: the subject's p50 over the floor's, per round (lower is \
         faster).\n\n",
        local.rounds,
        support::thousands(local.latency_calls as u64),
        support::thousands(local.latency_calls as u64)
    ));
    let mut floor = Histogram::<u64>::new(3).unwrap();
    for (_, latency, _) in &local.subjects {
        floor.add(&latency.floor).unwrap();
    }
    out.push_str("| one caller | p50 | p99 | p50 / floor p50 |\n|---|---|---|---|\n");
    out.push_str(&format!(
        "| floor: tokio spawn + oneshot | {} | {} | 1 |\n",
        micros(floor.value_at_quantile(0.5)),
        micros(floor.value_at_quantile(0.99)),
    ));
    for (name, latency, _) in &local.subjects {
        out.push_str(&format!(
            "| {name} | {} | {} | {:.2}× |\n",
            micros(latency.subject.value_at_quantile(0.5)),
            micros(latency.subject.value_at_quantile(0.99)),
            median(&latency.ratios),
        ));
    }
    out.push_str(&format!(
        "\n{CALLERS} concurrent callers, {} calls per round in all, {} rounds per subject, \
         each beside a floor round: the floor's calls/s in the rounds beside that subject, the \
         subject's calls/s, and their ratio (higher is faster).\n\n",
        support::thousands(local.throughput_calls as u64),
        local.rounds,
    ));
    out.push_str("| 64 callers | floor calls/s | calls/s | calls/s / floor |\n|---|---|---|---|\n");
    for (name, _, rounds) in &local.subjects {
        out.push_str(&format!(
            "| {name} | {:.0} | {:.0} | {:.2}× |\n",
            median(&rounds.floor),
            median(&rounds.subject),
            rounds.ratio(),
        ));
    }
    out.push_str(&format!(
        "\nBank deposits: Switchyard's deposit through `node.dispatch` to \
         `MessageHandler::on_existing` with the memory store (a new message per command, the \
         event encoded and appended, idempotency kept; as in `aggregate_commands`), and \
         cqrs-es's `CqrsFramework::execute` of a deposit command with its `MemStore` (it loads \
         the stream, handles, commits; one event per command, the same amount added). \
         `MemStore` prints a line per load and per commit: standard output points at /dev/null \
         while it runs, so that costs a `write` system call each, no more. Floor: a hand-written \
         actor per aggregate (tokio task, mpsc mailbox, oneshot reply) adding the amount.\n\n\
         Warm: {CALLERS} callers across 10,000 aggregates opened before the round on a fresh \
         store (untimed), {} commands per round, {} rounds per subject, each beside a floor \
         round of 10,000 actors: the floor's commands/s, the subject's, and their ratio (higher \
         is faster).\n\n",
        support::thousands(commands::throughput_calls() as u64),
        commands.many_rounds,
    ));
    out.push_str(
        "| warm, 10,000 aggregates, 64 callers | floor commands/s | commands/s | commands/s / \
         floor |\n|---|---|---|---|\n",
    );
    for (name, rounds) in &commands.many {
        out.push_str(&format!(
            "| {name} | {:.0} | {:.0} | {:.3}× |\n",
            median(&rounds.floor),
            median(&rounds.subject),
            rounds.ratio(),
        ));
    }
    out.push_str(&format!(
        "\nSequential: one caller, {} aggregates opened per round (untimed), then \
         {COMMANDS_PER_FRESH} deposits on each in turn; microseconds per command, the floor's \
         being sequential round trips to one actor, as many per round; {} rounds per subject. \
         Ratio: the subject's time over the floor's (lower is faster). cqrs-es loads the whole \
         stream for every command, so its cost grows with the commands per aggregate.\n\n",
        fresh_per_round(),
        commands.fresh_rounds,
    ));
    out.push_str(
        "| sequential, fresh aggregates | floor µs | µs per command | time / floor |\n\
         |---|---|---|---|\n",
    );
    for (name, rounds) in &commands.fresh {
        out.push_str(&format!(
            "| {name} | {:.3} | {:.3} | {:.2}× |\n",
            median(&rounds.floor),
            median(&rounds.subject),
            rounds.ratio(),
        ));
    }
    out.push_str(&format!(
        "\nLoad average (1, 5, 15 min) when these measurements began: {}; when they ended: {} \
         (other work on the machine's 2 cores slows every figure; the ratios less so).\n",
        loads.0, loads.1
    ));
    out
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    // `cargo test --benches` runs this binary too: the rounds are for `cargo bench` only.
    if support::criterion_only() {
        return;
    }
    let rt = runtime();
    let load_before = support::load_average();
    let started = Instant::now();
    let local = measure_local(&rt);
    let commands = measure_commands(&rt);
    let load_after = support::load_average();
    let report = report(&local, &commands, (&load_before, &load_after));
    println!("\n{report}");
    println!(
        "peers: measured in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    support::write_section("90-peers.md", &report);
}
