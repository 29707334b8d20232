//! Subscriptions on the memory store (woken after each append) and on a store that cannot wake
//! them (polled): the public suite, concurrent writers in random interleavings, store failures,
//! events of older schema versions upcast.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Tests fail loudly.

mod batches;
mod failing;
mod interleavings;
mod polled;
mod upcasting;

use switchyard_aggregates::store::MemoryStore;

switchyard_projections::subscription_conformance!(async { MemoryStore::new() }, wakes);

/// A subscription and its futures move across tasks and threads.
#[tokio::test]
async fn a_subscription_and_its_futures_are_send() {
    fn assert_send<T: Send>(_: &T) {}
    let builder = switchyard_projections::Subscription::builder(MemoryStore::new());
    let build = builder.build();
    assert_send(&build);
    let mut subscription = build.await.unwrap();
    let next = subscription.next();
    assert_send(&next);
    drop(next);
    assert_send(&subscription.into_stream());
}
