//! Real nodes on 127.0.0.1: discovery, remote calls, forwarding, fail-over, failures, security,
//! and nodes in separate processes killed with SIGKILL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Tests fail loudly.

mod calls;
mod connections;
mod discovery;
mod failures;
mod hostile;
mod processes;
mod scenarios;
mod security;
mod support;
#[cfg(feature = "tls")]
mod tls;
