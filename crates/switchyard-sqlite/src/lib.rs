//! SQLite stores for Switchyard: the embedded default, one file, no server.
//!
//! [`SqliteStore`] keeps events, snapshots and states in one SQLite database. With the
//! `events` feature (on by default) it implements the store traits of
//! [`switchyard_aggregates::store`](https://docs.rs/switchyard-aggregates) and passes their
//! conformance suite. With the `scheduler` feature it is also an alarm store of
//! [`switchyard_scheduler`](https://docs.rs/switchyard-scheduler), written through the same
//! writer thread. With the `projections` feature it is a checkpoint store of
//! [`switchyard_projections`](https://docs.rs/switchyard-projections) (leases included), and
//! `save_checkpoint_in` records a checkpoint inside the transaction that writes a read model.
//!
//! ```
//! # #[cfg(feature = "events")]
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use switchyard_aggregates::store::{EventAppender, EventMetadata, EventReader, ExpectedVersion, NewEvent};
//! use switchyard_sqlite::SqliteStore;
//!
//! let dir = tempfile::tempdir()?;
//! let store = SqliteStore::open(dir.path().join("bank.db"))?;
//! # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
//! let opened = NewEvent { event_type: "opened".into(), schema_version: 1, data: vec![1].into() };
//! let version = store
//!     .append("account-1", ExpectedVersion::NoStream, vec![opened], EventMetadata::default())
//!     .await?;
//! assert_eq!(version, 0);
//! assert!(store.has_stream("account-1").await?);
//! # Ok::<_, Box<dyn std::error::Error>>(())
//! # })?;
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "events"))]
//! # fn main() {}
//! ```
//!
//! # How it writes
//!
//! - **One writer thread, group commit.** Every change goes to one thread owning the only
//!   writing connection. Writes that arrive while a commit is under way are committed together
//!   in the next transaction; while it holds fewer writes than the last one, the writer also
//!   takes the writes still arriving (until 200 µs pass without one), as the writers it just
//!   answered write again, so they share one sync instead of two. It runs each write as it
//!   takes it, so its work overlaps its callers' next writes, and it is woken only once a few
//!   writes are queued, not at each one. A lone writer never waits. A version conflict is
//!   found before anything is written, so it fails only its own write, and each caller hears
//!   its own result. Under load, one sync to disk serves hundreds of appends.
//! - **A message records events in a stream once.** After the version check, the writer probes
//!   the message-id index in the same transaction: an append whose message id already recorded
//!   visible events in the stream writes nothing and gets `AppendError::Duplicate`, and the
//!   other writes of its batch commit without it.
//! - **Readers never wait.** The database is in WAL mode; reads run on reader threads with
//!   connections of their own and see the last committed state.
//! - **Durability.** [`Synchronous::Full`] (the default) syncs every commit before it is
//!   acknowledged: an acknowledged event survives a power loss. [`Synchronous::Normal`] syncs at
//!   checkpoints only: it survives a crash of the process but may lose the last commits on a
//!   power loss.
//! - **The global order has no late arrivals.** Positions are given inside the writer's
//!   transactions, one at a time, so a reader that has seen position `p` will never later find
//!   a new event below `p`.
//! - **Subscriptions are woken, not polled.** After each commit that changed anything, before
//!   its callers hear their answer, the writer publishes the last position given
//!   (`GlobalReader::watch_head`): a subscription of `switchyard-projections` waiting on it
//!   reads at once. `GlobalReader::head` answers from the same value.
//! - **Schema.** Created and migrated by the store itself when it opens the file: numbered
//!   migrations (`migrations/*.sql` in this crate), counted in `PRAGMA user_version`, applied
//!   in one transaction. A file of another application, or of a newer Switchyard, is refused
//!   untouched.
//! - **Opening a store that must exist.** [`SqliteStore::open`] creates what is missing; on a
//!   restart, [`SqliteStore::open_existing`] refuses a missing file, or one that holds no store
//!   (truncated to 0 bytes), instead of starting an empty store in it.
//! - **A full disk** refuses writes with the definite `StoreError::DiskFull` (SQLite rolled the
//!   transaction back); the store goes on once space is freed.
//!
//! The handle works from any thread and any async runtime: its methods wait on channels, never
//! block the caller's thread.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

#[cfg(feature = "scheduler")]
mod alarms;
#[cfg(feature = "projections")]
mod checkpoints;
mod database;
mod error;
#[cfg(feature = "events")]
mod events;
#[cfg(feature = "events")]
#[doc(hidden)]
pub mod fuzzing;
mod head;
mod options;
#[cfg(feature = "projections")]
mod projection;
mod queue;
mod store;
mod worker;

#[cfg(feature = "projections")]
pub use crate::checkpoints::{reset_checkpoint_in, save_checkpoint_in};
pub use crate::error::SqliteError;
pub use crate::options::{SqliteOptions, Synchronous};
#[cfg(feature = "projections")]
pub use crate::projection::{PROJECTION_BUSY_TIMEOUT, SqliteProjection, SqliteReadModel};
pub use crate::store::SqliteStore;
/// The rusqlite crate, for a [`SqliteReadModel`]'s transactions with the same version.
#[cfg(feature = "projections")]
pub use rusqlite;
