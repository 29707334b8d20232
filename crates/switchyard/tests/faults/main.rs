//! Faults injected into real node processes, as they are deployed: a network partition between
//! network namespaces, and a node killed with SIGKILL under load on a shared PostgreSQL. Each
//! test starts copies of this binary as nodes (the role is in the environment), and checks what
//! a user relies on: every acknowledged command stored exactly once, calls moving to the nodes
//! left, membership converging, no alarm delivered twice.
//!
//! The results are recorded in `docs/reliability.md` ("Faults injected by the suite").
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Tests fail loudly.

mod bank;
mod children;
mod hold;
mod kill_under_load;
mod namespaces;
mod partitions;
