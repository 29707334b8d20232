//! The read side of Switchyard: follow the event stores' global order, keep read models with
//! durable checkpoints, and wait until a read model has seen a command's events.
//!
//! Being built (issue 15), part by part. Here now:
//!
//! - [`Subscription`]: a consumer's place in the global order of any
//!   [`GlobalReader`](switchyard_aggregates::store::GlobalReader). It catches up in pages,
//!   then follows live commits, woken by the store (memory, SQLite and PostgreSQL stores wake
//!   it; others are polled), filtered by aggregate type, stream and event type, in strictly
//!   increasing position, holding at most one page.
//!
//! - [`checkpoint`]: how far each projection got ([`CheckpointStore`]), and the lease that lets
//!   one runner of several run it, fenced so a replaced runner cannot move its checkpoint.
//!
//! ```
//! use switchyard_aggregates::store::{EventAppender, EventMetadata, ExpectedVersion, MemoryStore, NewEvent};
//! use switchyard_projections::Subscription;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let store = MemoryStore::new();
//! let mut deposits = Subscription::builder(store.clone())
//!     .from_head()
//!     .aggregate_type("account")
//!     .event_type("deposited")
//!     .build().await?;
//! let deposited = NewEvent { event_type: "deposited".into(), schema_version: 1, data: vec![7].into() };
//! store.append("account-1", ExpectedVersion::Any, vec![deposited], EventMetadata::default()).await?;
//! let event = deposits.next().await?;
//! assert_eq!((&*event.stream, &event.data[..]), ("account-1", &[7][..]));
//! # Ok::<_, Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! # Feature flags
//!
//! - `conformance`: the public suites stores run: [`subscription_conformance!`] (every event
//!   store's global order, as subscriptions see it) and the `checkpoint::conformance` suite
//!   every checkpoint store must pass (with the `checkpoint_store_conformance!` macro).
#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod checkpoint;

#[doc(inline)]
pub use crate::checkpoint::{CheckpointError, CheckpointStore, MemoryCheckpointStore};
mod runner;
mod subscription;

#[doc(inline)]
pub use crate::runner::{
    BoxError, DEFAULT_BATCH_SIZE, DEFAULT_LEASE_TTL, Projection, ProjectionRunner,
    ProjectionRunnerBuilder, RebuildProgress, RunnerError, WaitError,
};

/// The suite every event store runs to show subscriptions follow its global order.
#[cfg(feature = "conformance")]
#[cfg_attr(docsrs, doc(cfg(feature = "conformance")))]
pub use crate::subscription::conformance as subscription_conformance;
#[doc(inline)]
pub use crate::subscription::{
    DEFAULT_PAGE_SIZE, DEFAULT_POLL_INTERVAL, Start, Subscription, SubscriptionBuilder,
    SubscriptionError,
};
