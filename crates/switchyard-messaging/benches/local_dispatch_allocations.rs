//! Allocations per local dispatch beside its floor (a raw tokio `spawn` + `oneshot` round trip),
//! counted by `stats_alloc` installed as this binary's global allocator.
//!
//! A binary of its own, apart from `local_dispatch`'s timed rounds: an installed counting
//! allocator adds atomic adds to every allocation, on counters both cores contend for, so it
//! slows whichever side allocates more (with it in `local_dispatch`, the 64- and 1,024-caller
//! ratios read about 0.1 and 0.2 lower). Its section follows `local_dispatch`'s in
//! `docs/benchmarks.md`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

// The fixture's round-trip measurements are `local_dispatch`'s: this binary only counts.
#[allow(dead_code)]
mod fixture;

use std::future::Future;

use switchyard_bench_support::allocations::{self, Counter};
use switchyard_bench_support::{self as support, runtime};
use switchyard_messaging::Message;
use tokio::runtime::Runtime;

use crate::fixture::{dispatch_round_trip, floor_round_trip, node};

#[global_allocator]
static ALLOCATOR: Counter = &allocations::INSTRUMENTED_SYSTEM;

/// Calls counted per figure, after as many to warm up.
const CALLS: u64 = 10_000;

/// Allocations per call of `op`, run by one caller task on the runtime.
fn per_call<F, Fut>(rt: &Runtime, op: F) -> f64
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let batch = || {
        let op = op.clone();
        rt.block_on(rt.spawn(async move {
            for _ in 0..CALLS {
                op().await;
            }
        }))
        .unwrap();
    };
    batch();
    allocations::per_call(ALLOCATOR, 1, batch) / CALLS as f64
}

fn main() {
    // `cargo test --benches` runs this binary too: the counts are for `cargo bench` only.
    if support::criterion_only() {
        return;
    }
    let rt = runtime();
    let node = node();
    let floor = per_call(&rt, floor_round_trip);
    let dispatch = {
        let node = node.clone();
        per_call(&rt, move || {
            let node = node.clone();
            async move { dispatch_round_trip(&node).await }
        })
    };
    let message_alone = per_call(&rt, || async {
        std::hint::black_box(Message::new("echo"));
    });
    let report = format!(
        "### Allocations per local dispatch (bench `local_dispatch_allocations`)\n\n\
         Counted by a global allocator wrapper (`stats_alloc`) in a binary of its own, over \
         {},000 calls by one caller task after as many to warm up; the timed rounds above run \
         without it.\n\n\
         | per call | allocations |\n|---|---|\n\
         | floor: spawn + oneshot | {floor:.2} |\n\
         | dispatch, building its message included | {dispatch:.2} |\n\
         | of which `Message::new(\"echo\")` | {message_alone:.2} |\n\n\
         Before this recut (commit `a9fc721`): 5.00 per dispatch with its message (the message's \
         box, its id, its service name; the reply skeleton's box; the handler's task), 2.00 for \
         the floor. Now the dispatch itself allocates only the handler's boxed future; the rest \
         is the message.\n",
        CALLS / 1_000
    );
    println!("\n{report}");
    support::write_section("10-local_dispatch_allocations.md", &report);
}
