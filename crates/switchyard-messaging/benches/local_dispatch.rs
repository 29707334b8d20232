//! Local dispatch: one caller's round trip and throughput with many concurrent callers, each
//! beside its floor (a raw tokio `spawn` + `oneshot` round trip) measured in the same run.
//!
//! Run with `cargo xtask bench` (which writes `docs/benchmarks.md`) or
//! `cargo bench -p switchyard-messaging --bench local_dispatch`.
//!
//! The set-up is the default a user gets: a node with the default configuration (5 s timeout
//! armed on every call), tracing compiled in with no subscriber, a new message built per call,
//! on a multi-thread runtime with 2 workers. The machine's cores switch between full and half
//! speed every few seconds, so the subject and its floor are measured in alternating short rounds
//! and the ratio is taken per round.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod fixture;

use std::time::Instant;

use criterion::{Criterion, criterion_group};
use switchyard_messaging::Node;
use tokio::runtime::Runtime;

use switchyard_bench_support::{self as support, Rounds, alternate, median, runtime, target_dir};

use crate::fixture::{
    Floor, Latency, calls_per_second, dispatch_round_trip, floor_round_trip, latency, node,
};

fn criterion_benches(c: &mut Criterion) {
    let rt = runtime();
    let node = node();
    let mut group = c.benchmark_group("local_dispatch");
    // The caller is itself a task on the runtime, as a service calling another would be.
    group.bench_function("floor_spawn_oneshot", |b| {
        b.iter_custom(|iters| {
            rt.block_on(rt.spawn(async move {
                let started = Instant::now();
                for _ in 0..iters {
                    floor_round_trip().await;
                }
                started.elapsed()
            }))
            .unwrap()
        })
    });
    group.bench_function("dispatch_round_trip", |b| {
        b.iter_custom(|iters| {
            let node = node.clone();
            rt.block_on(rt.spawn(async move {
                let started = Instant::now();
                for _ in 0..iters {
                    dispatch_round_trip(&node).await;
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

/// Calls per second with `callers` concurrent callers, floor and subject in alternating rounds.
struct Throughput {
    callers: usize,
    rounds: Rounds,
}

/// Calls per throughput round, all callers together.
fn throughput_calls() -> usize {
    if support::quick() { 40_000 } else { 400_000 }
}

fn measure_throughput(rt: &Runtime, node: &Node, callers: usize) -> Throughput {
    let rounds = if support::quick() { 3 } else { 10 };
    let calls = throughput_calls();
    Throughput {
        callers,
        rounds: alternate(
            rounds,
            || calls_per_second(rt, callers, calls, &Floor),
            || calls_per_second(rt, callers, calls, node),
        ),
    }
}

fn micros(nanos: u64) -> String {
    format!("{:.2} µs", nanos as f64 / 1_000.0)
}

/// Criterion's mean estimate for one benchmark of this run, in nanoseconds.
fn criterion_mean(out_dir: &std::path::Path, id: &str) -> Option<f64> {
    let path = out_dir
        .join("criterion")
        .join("local_dispatch")
        .join(id)
        .join("new")
        .join("estimates.json");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
    json["mean"]["point_estimate"].as_f64()
}

fn report(latency: &Latency, throughputs: &[Throughput]) -> String {
    let target = target_dir();
    let mut out = String::new();
    out.push_str("## Local dispatch (`switchyard-messaging`, bench `local_dispatch`)\n\n");
    out.push_str(&format!(
        "Default node (5 s timeout armed), a new message per call, tracing compiled in without a \
         subscriber, multi-thread runtime with 2 workers. Floor: a raw tokio `spawn` + \
         `oneshot` round trip, measured in alternating rounds in the same run. A local handler \
         runs on the caller's task, polled under the call's deadline with its panics caught; \
         the deadline's timer is registered only if the handler has not finished within one \
         scheduling turn of the caller. Load average at the start (1, 5, 15 min): {}.\n\n",
        support::load_average()
    ));
    out.push_str("| one caller | p50 | p99 | p99.9 |\n|---|---|---|---|\n");
    for (name, histogram) in [
        ("floor: spawn + oneshot", &latency.floor),
        ("dispatch", &latency.subject),
    ] {
        out.push_str(&format!(
            "| {name} | {} | {} | {} |\n",
            micros(histogram.value_at_quantile(0.5)),
            micros(histogram.value_at_quantile(0.99)),
            micros(histogram.value_at_quantile(0.999)),
        ));
    }
    out.push_str(
        "\n| concurrent callers | floor calls/s | dispatches/s | dispatch / floor |\n|---|---|---|---|\n",
    );
    for t in throughputs {
        out.push_str(&format!(
            "| {} | {:.0} | {:.0} | {:.2} |\n",
            t.callers,
            median(&t.rounds.floor),
            median(&t.rounds.subject),
            t.rounds.ratio(),
        ));
    }
    out.push_str(&format!(
        "\nThroughput: medians of {} alternating rounds of {},000 calls each; the ratio is taken \
         round by round. Allocations per call: the next section.\n\n",
        throughputs.first().map_or(0, |t| t.rounds.floor.len()),
        throughput_calls() / 1_000,
    ));
    let p50_ratio = median(&latency.ratios);
    let p50 = latency.subject.value_at_quantile(0.5);
    out.push_str("| target | figure | |\n|---|---|---|\n");
    out.push_str(&format!(
        "| one caller: dispatch p50 ≤ 1.5× the floor's p50 | {p50_ratio:.2}× (median of {} \
         rounds) | {} |\n",
        latency.ratios.len(),
        support::met(p50_ratio <= 1.5),
    ));
    out.push_str(&format!(
        "| one caller: dispatch p50 ≤ 2 µs | {} | {} |\n",
        micros(p50),
        support::met(p50 <= 2_000),
    ));
    for t in throughputs {
        let ratio = t.rounds.ratio();
        out.push_str(&format!(
            "| {} callers: dispatches/s ≥ 0.8× the floor's | {ratio:.2}× | {} |\n",
            t.callers,
            support::met(ratio >= 0.8),
        ));
    }
    for t in throughputs {
        let rate = median(&t.rounds.subject);
        out.push_str(&format!(
            "| {} callers: ≥ 1,000,000 dispatches/s | {rate:.0} | {} |\n",
            t.callers,
            support::met(rate >= 1_000_000.0),
        ));
    }
    if let (Some(floor), Some(dispatch)) = (
        criterion_mean(&target, "floor_spawn_oneshot"),
        criterion_mean(&target, "dispatch_round_trip"),
    ) {
        out.push_str(&format!(
            "\nCriterion means (one caller, this run): floor {:.0} ns, dispatch {:.0} ns, ratio {:.2}×.\n",
            floor,
            dispatch,
            dispatch / floor
        ));
    }
    out
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();

    // `cargo test --benches` runs this binary too: the percentiles are for `cargo bench` only.
    if support::criterion_only() {
        return;
    }
    let rt = runtime();
    let node = node();
    let (rounds, calls) = if support::quick() {
        (3, 2_000)
    } else {
        (12, 20_000)
    };
    let latency = latency(&rt, rounds, calls, &node);
    let throughputs: Vec<_> = [64, 1_024]
        .into_iter()
        .map(|callers| measure_throughput(&rt, &node, callers))
        .collect();
    let report = report(&latency, &throughputs);
    println!("\n{report}");
    support::write_section("10-local_dispatch.md", &report);
}
