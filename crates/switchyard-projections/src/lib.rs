//! The read side of Switchyard: follow the event stores' global order, keep read models with
//! durable checkpoints, and wait until a read model has seen a command's events.
//!
//! The guide, `docs/guides/projections.md` in the repository, walks through each part; in
//! short:
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
//! - [`Projection`] and [`ProjectionRunner`]: a read model fed with the decoded events of one
//!   or more aggregate types, in order, at least once, in batches, its checkpoint saved after
//!   each batch under a lease, so that of several runners one applies events and another
//!   takes over from the checkpoint when it dies. Failing batches are retried with backoff,
//!   never skipped. A runner answers [`caught_up_to`](ProjectionRunner::caught_up_to) and
//!   [`wait_for`](ProjectionRunner::wait_for) (read your writes), reports its
//!   [`lag`](ProjectionRunner::lag), and [rebuilds](ProjectionRunnerBuilder::rebuild) a
//!   projection from the origin with progress reports.
//!
//! ```
//! use std::collections::BTreeMap;
//! use std::sync::{Arc, Mutex};
//! use serde::{Deserialize, Serialize};
//! use switchyard_aggregates::store::MemoryStore;
//! use switchyard_aggregates::{Aggregate, CommandResult, DecodedEvent, Events, MessageHandler};
//! use switchyard_messaging::{Message, Node, Router};
//! use switchyard_projections::{BoxError, MemoryCheckpointStore, Projection, ProjectionRunner};
//!
//! #[derive(Default)]
//! struct Account;
//! #[derive(Clone, Serialize, Deserialize)]
//! enum AccountEvent { Deposited(u64) }
//! impl Aggregate for Account {
//!     type Event = AccountEvent;
//!     const NAME: &'static str = "account";
//!     fn apply(&mut self, _: &AccountEvent) {}
//! }
//!
//! /// The read model: each account's balance, shared with the queries that read it.
//! #[derive(Clone, Default)]
//! struct Balances(Arc<Mutex<BTreeMap<String, u64>>>);
//!
//! impl Projection for Balances {
//!     type Event = AccountEvent;
//!
//!     async fn apply(&mut self, batch: &[DecodedEvent<AccountEvent>]) -> Result<(), BoxError> {
//!         let mut balances = self.0.lock().map_err(|_| "poisoned")?;
//!         for event in batch {
//!             let AccountEvent::Deposited(amount) = event.event;
//!             *balances.entry(event.stream.to_string()).or_default() += amount;
//!         }
//!         Ok(())
//!     }
//!
//!     async fn reset(&mut self) -> Result<(), BoxError> {
//!         self.0.lock().map_err(|_| "poisoned")?.clear();
//!         Ok(())
//!     }
//! }
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let store = MemoryStore::new();
//! let balances = Balances::default();
//! let runner = ProjectionRunner::builder("balances", balances.clone(), store.clone(), MemoryCheckpointStore::new())
//!     .aggregate::<Account>()
//!     .start()?;
//!
//! fn deposit(_: &Account, message: &Message) -> CommandResult<AccountEvent> {
//!     Ok(Events::one(AccountEvent::Deposited(message.request()?)))
//! }
//! let accounts = MessageHandler::<Account>::event_sourced(store.clone());
//! let node = Node::new("bank");
//! node.register(
//!     Router::new("bank")
//!         .service("deposit", accounts.on_maybe_new(deposit))
//!         .authorize(|_| Ok(())),
//! )?;
//! let reply = node
//!     .dispatch(Message::new("deposit").with_aggregate_id("1").with_request(&5_u64))
//!     .await;
//!
//! // Strong consistency for this request: wait until the read model has seen the command's
//! // events, whose last position the reply carries.
//! let written = reply.position().ok_or("the deposit appended nothing")?;
//! let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
//! runner.wait_for(written, deadline).await?;
//! assert_eq!(balances.0.lock().unwrap()["account-1"], 5);
//! runner.stop().await?;
//! # Ok::<_, Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! - Query services ([`View`], [`InMemory`], [`ReadModel`]): a read model held in memory,
//!   kept by a projection that replays the order from the origin when its process starts
//!   ([`Projection::IN_MEMORY`]), served by router services that read it through their
//!   router's state. A query reads at once (eventual consistency), or, when its message carries
//!   a [`ReadAt`] ([`QueryMessage::with_read_after`] a command's reply), once the read model
//!   has processed that position, answering `Response::ServiceTimeout` if it does not in time.
//!   See [`ReadModel`] for a query handler.
//!
//! - Poison events: with [`OnPoison::Park`] a runner parks the event a batch keeps failing on
//!   (a [`ParkedEvent`] beside the checkpoint, which moves past it in the same step) and goes
//!   on; [`ProjectionRunner::parked`], [`retry_parked`](ProjectionRunner::retry_parked) and
//!   [`skip_parked`](ProjectionRunner::skip_parked) let an operator deal with them.
//!
//! - [`Policy`]: process managers, reacting to events with commands dispatched through a
//!   node ([`ProjectionRunner::policy`]), each with a message id derived from the policy and
//!   the event ([`command_id`]) so the aggregates' idempotency answers a redelivered event's
//!   commands as it answered the first delivery.
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
pub use crate::checkpoint::{CheckpointError, CheckpointStore, MemoryCheckpointStore, ParkedEvent};
mod policy;
mod query;
mod runner;
mod subscription;

#[doc(inline)]
pub use crate::policy::{CommandFailed, Policy, PolicyProjection, PolicyRunner, command_id};
#[doc(inline)]
pub use crate::query::{
    InMemory, QueryError, QueryMessage, READ_AT_ASSIGN, ReadAt, ReadModel, View, ViewGuard,
};
#[doc(inline)]
pub use crate::runner::{
    BoxError, CheckpointLease, CommitError, DEFAULT_BATCH_SIZE, DEFAULT_LEASE_TTL, OnPoison,
    Projection, ProjectionRunner, ProjectionRunnerBuilder, RebuildProgress, RetryError,
    RunnerError, WaitError, Watermark,
};

/// The check every event store and checkpoint store run to show a projection runner sees
/// every event once, in global order, under concurrent writers.
#[cfg(feature = "conformance")]
#[cfg_attr(docsrs, doc(cfg(feature = "conformance")))]
pub use crate::runner::conformance as runner_conformance;
/// The suite every event store runs to show subscriptions follow its global order.
#[cfg(feature = "conformance")]
#[cfg_attr(docsrs, doc(cfg(feature = "conformance")))]
pub use crate::subscription::conformance as subscription_conformance;
#[doc(inline)]
pub use crate::subscription::{
    DEFAULT_PAGE_SIZE, DEFAULT_POLL_INTERVAL, Start, Subscription, SubscriptionBuilder,
    SubscriptionError,
};
