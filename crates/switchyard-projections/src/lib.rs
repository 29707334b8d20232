//! The read side of Switchyard: follow the event stores' global order, keep read models with
//! durable checkpoints, and wait until a read model has seen a command's events.
//!
//! Being built (issue 15): subscriptions over
//! [`GlobalReader`](switchyard_aggregates::store::GlobalReader), checkpoint stores, projection
//! runners, read-your-writes, query services, process managers and upcasting.
//!
//! ```
//! // The crate's parts are added one by one; each comes with its own example.
//! ```
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]
