//! Persisted, future-dated message delivery for Switchyard: schedule a message for later, and a
//! [`Scheduler`] dispatches it through the node at that time, even across restarts and with
//! several nodes sharing one store.
//!
//! An alarm is a [`Message`](switchyard_messaging::Message) with a due time, saved through an
//! [`AlarmStore`](store::AlarmStore) (in memory here; SQLite and PostgreSQL in their crates'
//! `scheduler` feature). Only alarms due within two windows (6 hours each by default) are held
//! in memory; the store is read again every window. Each delivery is claimed with a lease in
//! the store a little ahead of its due time ([`SchedulerConfig::claim_ahead`]), which counts
//! the attempt durably, and is dispatched at the due time, never before. It ends as the
//! [`RetryPolicy`] decides: deleted, or rescheduled (durably) for another attempt. At most
//! [`SchedulerConfig::max_concurrent_deliveries`] dispatches run at once; every store call is bounded by
//! [`SchedulerConfig::store_timeout`] (a call cut off may have taken effect, and the scheduler
//! allows for it), and loads by [`SchedulerConfig::load_timeout`].
//!
//! ```
//! use std::time::Duration;
//! use switchyard_messaging::{Message, Node, Router};
//! use switchyard_scheduler::store::MemoryAlarmStore;
//! use switchyard_scheduler::{RetryPolicy, Scheduler, SchedulerConfig, When};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let node = Node::new("billing");
//! node.register(
//!     Router::new("billing")
//!         .service("send_invoice", |msg: Message| async move { msg.ok() })
//!         .authorize(|_| Ok(())),
//! )?;
//! let config = SchedulerConfig::default().retry_policy(RetryPolicy::ExponentialBackoff {
//!     base: Duration::from_secs(1),
//!     cap: Duration::from_secs(60),
//!     max_attempts: 5,
//! });
//! let scheduler = Scheduler::start(node, MemoryAlarmStore::new(), config)?;
//! let saved = scheduler
//!     .schedule(Message::new("send_invoice"), "customer-7", When::In(Duration::from_secs(3_600)))
//!     .await?;
//! assert!(scheduler.cancel(saved.id()).await?);
//! scheduler.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! Delivery is at least once: see [`Scheduler`]. Every delivery runs in a `tracing` span named
//! [`DELIVERY_SPAN`] with the message id, correlation id and service.
//!
//! # Clocks
//!
//! Due times and leases follow each scheduler's [`Clock`], the node's wall clock by default,
//! not the store's. Schedulers sharing a store therefore assume their clocks agree to well
//! within the lease ([`DEFAULT_LEASE`], 30 s): keep the nodes synchronised (NTP). A node whose
//! clock runs ahead of another's by more than that node's lease has left may take over an alarm
//! the other is still delivering; one whose clock runs behind delivers late.
//!
//! # Unreadable alarms
//!
//! A stored alarm that cannot be decoded is skipped by loads and refused by claims
//! ([`AlarmStoreError::Corrupt`](store::AlarmStoreError::Corrupt), with no lease taken and no
//! attempt counted, by the memory, SQLite and PostgreSQL stores alike); the scheduler logs it
//! with its id, forgets it, and leaves it in the store for an operator, who can
//! [`cancel`](Scheduler::cancel) it.
//!
//! # Features
//!
//! - `conformance`: the [`conformance`] suite every alarm store must pass, public so store
//!   crates run it against their own stores.

#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod assigns;
mod clock;
#[cfg(feature = "conformance")]
#[cfg_attr(docsrs, doc(cfg(feature = "conformance")))]
pub mod conformance;
mod retry;
mod scheduler;
pub mod store;

#[doc(inline)]
pub use self::clock::{Clock, ManualClock, SystemClock};
#[doc(inline)]
pub use self::retry::{Decision, RetryPolicy};
#[doc(inline)]
pub use self::scheduler::{
    CLAIMED_PER_DISPATCH_SLOT, ConfigError, DEFAULT_CLAIM_AHEAD, DEFAULT_LEASE,
    DEFAULT_LOAD_TIMEOUT, DEFAULT_MAX_CONCURRENT_DELIVERIES, DEFAULT_STORE_TIMEOUT, DEFAULT_WINDOW,
    DELIVERY_SPAN, ScheduleError, Scheduler, SchedulerConfig, When,
};
