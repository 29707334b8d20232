//! Query services: an in-memory read model served by router services, read at once or at a
//! command's position, rebuilt when its process starts, and called from another node.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Tests fail loudly.

#[path = "../common/account.rs"]
mod account;
mod consistency;
#[path = "../common/leases.rs"]
mod leases;
mod remote;
mod support;
mod view;
