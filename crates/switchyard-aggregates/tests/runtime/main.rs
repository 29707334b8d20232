//! The aggregate runtime and message handler, end to end through a node.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Tests fail loudly.

mod cancellation;
mod concurrency;
mod event_names;
mod failures;
mod faulty;
mod fixture;
mod idempotency;
mod lifecycle;
mod persistence;
mod positions;
mod reading;
mod responses;
mod x3m;
