//! The read side of Switchyard: follow the event stores' global order, keep read models with
//! durable checkpoints, and wait until a read model has seen a command's events.
//!
//! Being built (issue 15): subscriptions over
//! [`GlobalReader`](switchyard_aggregates::store::GlobalReader), checkpoint stores, projection
//! runners, read-your-writes, query services, process managers and upcasting.
//!
//! - [`checkpoint`]: how far each projection got ([`CheckpointStore`]), and the lease that lets
//!   one runner of several run it, fenced so a replaced runner cannot move its checkpoint.
//!
//! # Features
//!
//! - `conformance`: the `checkpoint::conformance` suite every checkpoint store must pass,
//!   public so store crates run it (with the `checkpoint_store_conformance!` macro).
#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod checkpoint;

#[doc(inline)]
pub use crate::checkpoint::{CheckpointError, CheckpointStore, MemoryCheckpointStore};
