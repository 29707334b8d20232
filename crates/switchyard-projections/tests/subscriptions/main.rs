//! Subscriptions on the memory store (woken after each append) and on a store that cannot wake
//! them (polled): the public suite, concurrent writers in random interleavings, store failures.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Tests fail loudly.

mod failing;
mod interleavings;
mod polled;

use switchyard_aggregates::store::MemoryStore;

switchyard_projections::subscription_conformance!(async { MemoryStore::new() }, wakes);
