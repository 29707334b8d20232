//! Dispatch on one node and across nodes linked by an in-memory twin of the cluster.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Tests fail loudly.

mod concurrency;
mod ctx;
mod execution;
mod failures;
mod remote;
mod support;
mod x3m;
