//! The PostgreSQL store: the conformance suite, the same answers as the memory store, many
//! writers, the global order under interleaved transactions, a server restart, migrations,
//! subscriptions woken by `LISTEN/NOTIFY`.
//!
//! The server comes from `SWITCHYARD_TEST_DATABASE_URL` (as `cargo xtask test` sets it), else a
//! throwaway one is started for this test binary; each test works in a fresh schema.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Tests fail loudly.

#[cfg(feature = "scheduler")]
mod alarms;
#[cfg(feature = "projections")]
mod checkpoints;
mod concurrency;
mod connect;
mod duplicates;
mod global_order;
#[cfg(feature = "projections")]
mod interleavings;
mod migrations;
mod model;
mod outcome;
#[cfg(feature = "projections")]
mod processes;
mod reads;
mod restart;
#[cfg(feature = "projections")]
mod runner;
mod subscriptions;
mod support;

switchyard_aggregates::event_store_conformance!(async { support::store().await });
