//! Projection runners: delivery in order in batches, retries, takeover between runners.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Tests fail loudly.

#[path = "../common/account.rs"]
mod account;
mod consistency;
mod delivery;
mod interleavings;
#[path = "../common/leases.rs"]
mod leases;
mod parking;
mod policies;
mod processes;
mod rebuild;
mod sql;
mod sqlite;
mod support;
mod takeover;
