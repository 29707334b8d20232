//! The memory checkpoint store: the public conformance suite, and its semantics (monotonic
//! saves, leases, fencing) against a model under random sequences of operations.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Tests fail loudly.

mod model;

use switchyard_projections::checkpoint::MemoryCheckpointStore;

switchyard_projections::checkpoint_store_conformance!(async { MemoryCheckpointStore::new() });
