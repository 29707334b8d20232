//! Aggregates and event sourcing on Switchyard: commands decide events, a store keeps them, and
//! each live aggregate is served behind a router service, its commands run one at a time.
//!
//! An [`Aggregate`] folds its events into its state. Commands are plain functions of the state
//! and the message that return [`Events`] or a rejection. A [`Repo`] loads and saves an aggregate
//! type through an [`EventStore`](store::EventStore) (with snapshots) or a
//! [`StateStore`](store::StateStore). An [`AggregateRuntime`] keeps the live aggregates and runs
//! each command on its caller's task under the aggregate's lock, and a [`MessageHandler`] turns
//! commands into router services with idempotency, optimistic concurrency and dry runs. [`MessageHandler::event_sourced`] (or
//! [`state_based`](MessageHandler::state_based)) builds the three with default settings in one
//! call; [`MessageHandler::new`] takes a configured repo or runtime. Events recorded with an
//! older [`EVENT_SCHEMA_VERSION`](Aggregate::EVENT_SCHEMA_VERSION) are brought up to date as
//! they are read, by the [`Upcasters`] registered on the repo.
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use switchyard_aggregates::store::MemoryStore;
//! use switchyard_aggregates::{Aggregate, CommandResult, Events, MessageHandler};
//! use switchyard_messaging::{Message, Node, Response, Router};
//!
//! #[derive(Default)]
//! struct Account { balance: u64 }
//!
//! #[derive(Clone, Serialize, Deserialize)]
//! enum AccountEvent { Opened, Deposited(u64) }
//!
//! impl Aggregate for Account {
//!     type Event = AccountEvent;
//!     const NAME: &'static str = "account";
//!     fn apply(&mut self, event: &AccountEvent) {
//!         if let AccountEvent::Deposited(amount) = event {
//!             self.balance += amount;
//!         }
//!     }
//! }
//!
//! fn open(_: &Account, _: &Message) -> CommandResult<AccountEvent> {
//!     Ok(Events::one(AccountEvent::Opened))
//! }
//!
//! fn deposit(_: &Account, msg: &Message) -> CommandResult<AccountEvent> {
//!     Ok(Events::one(AccountEvent::Deposited(msg.request()?)))
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let accounts = MessageHandler::<Account>::event_sourced(MemoryStore::new());
//! let node = Node::new("bank");
//! node.register(
//!     Router::new("accounts")
//!         .service("open", accounts.on_new(open))
//!         .service("deposit", accounts.on_existing(deposit))
//!         .authorize(|_| Ok(())),
//! )
//! .unwrap();
//!
//! let opened = node.dispatch(Message::new("open").with_aggregate_id("acc-1")).await;
//! assert_eq!(opened.response(), Some(&Response::Created { id: "acc-1".into(), version: Some(0) }));
//! let deposit = Message::new("deposit").with_aggregate_id("acc-1").with_request(&10_u64);
//! let again = deposit.clone();
//! assert_eq!(node.dispatch(deposit).await.response(), Some(&Response::OkAt { payload: None, version: 1 }));
//! // The same message again is answered as the first time, and changes nothing.
//! assert_eq!(node.dispatch(again).await.response(), Some(&Response::OkAt { payload: None, version: 1 }));
//! # }
//! ```
//!
//! # Features
//!
//! - `conformance`: the [`conformance`] suite every event store must pass, public so store
//!   crates run it against their own stores.

#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod aggregate;
#[cfg(feature = "conformance")]
#[cfg_attr(docsrs, doc(cfg(feature = "conformance")))]
pub mod conformance;
mod event_name;
mod handler;
pub mod repo;
mod runtime;
mod state;
pub mod store;
pub mod test_support;

#[doc(inline)]
pub use self::aggregate::{Aggregate, Command, CommandResult, Events, HasAggregateId};
#[doc(inline)]
pub use self::handler::{CommandFuture, MessageHandler};
#[doc(inline)]
pub use self::repo::{DecodedEvent, Repo, RepoError, UpcastError, Upcasters};
#[doc(inline)]
pub use self::runtime::{AggregateRuntime, RuntimeBuilder, Unload};
#[doc(inline)]
pub use self::state::{AggregateState, ProcessedIds};
/// The name rule, shared with the scheduler's alarms: `switchyard_aggregates::names` is
/// [`switchyard_messaging::names`].
#[doc(inline)]
pub use switchyard_messaging::names;
