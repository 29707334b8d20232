//! Allocations per operation, counted by a global allocator wrapper ([`stats_alloc`]) that the
//! bench binary installs. Counting costs an atomic add per allocation on a counter both cores
//! share, so benches count in a pass of their own, never in the timed rounds.
//!
//! ```
//! use switchyard_bench_support::allocations::{self, Counter};
//!
//! // In a bench binary:
//! // #[global_allocator]
//! // static ALLOCATOR: Counter = &allocations::INSTRUMENTED_SYSTEM;
//! static ALLOCATOR: Counter = &allocations::INSTRUMENTED_SYSTEM;
//! let per_call = allocations::per_call(ALLOCATOR, 100, || drop(vec![1u8; 8]));
//! // Nothing is counted here, as this doc test did not install the counter.
//! assert!(per_call >= 0.0);
//! ```

use std::alloc::System;

pub use stats_alloc::INSTRUMENTED_SYSTEM;
use stats_alloc::{Region, StatsAlloc};

/// What a bench binary installs as its `#[global_allocator]`.
pub type Counter = &'static StatsAlloc<System>;

/// The allocations (fresh blocks and reallocations, on every thread) per call of `op`, over
/// `calls` calls.
pub fn per_call(counter: Counter, calls: u64, mut op: impl FnMut()) -> f64 {
    let region = Region::new(counter);
    for _ in 0..calls {
        op();
    }
    let change = region.change();
    (change.allocations + change.reallocations) as f64 / calls.max(1) as f64
}
