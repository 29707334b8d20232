//! PostgreSQL stores for Switchyard: events, snapshots and states, with a global order that a
//! reader never sees out of order.
//!
//! [`PostgresStore`] keeps events, snapshots and states in one schema of a PostgreSQL database
//! (version 14 or later), through a pool of `tokio-postgres` connections. With the `events`
//! feature (on by default) it implements the store traits of
//! [`switchyard_aggregates::store`](https://docs.rs/switchyard-aggregates) and passes their
//! conformance suite. With the `scheduler` feature it is also an alarm store of
//! [`switchyard_scheduler`](https://docs.rs/switchyard-scheduler) (table `alarms`), shared safely
//! by schedulers on several nodes.
//!
//! ```no_run
//! # #[cfg(feature = "events")]
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use switchyard_aggregates::store::{
//!     EventAppender, EventMetadata, EventReader, ExpectedVersion, GlobalReader, NewEvent,
//! };
//! use switchyard_postgres::PostgresStore;
//!
//! // Connects, creates the `switchyard` schema and migrates it if needed.
//! let store = PostgresStore::connect("postgres://postgres@127.0.0.1:5432/postgres").await?;
//! let opened = NewEvent { event_type: "opened".into(), schema_version: 1, data: vec![1].into() };
//! let metadata = EventMetadata { message_id: "m-1".into(), ..EventMetadata::default() };
//! let version = store
//!     .append("account-1", ExpectedVersion::NoStream, vec![opened], metadata)
//!     .await?;
//! assert_eq!(version, 0);
//! assert!(store.has_stream("account-1").await?);
//! assert_eq!(store.find_message("account-1", "m-1").await?, Some(0));
//! let everything = store.read_all(0, 100).await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Features
//!
//! | feature | what it adds |
//! |---|---|
//! | `events` (default) | [`PostgresStore`] and the event, snapshot and state store traits |
//! | `projections` | [`PostgresStore`] as a checkpoint store of `switchyard-projections` (table `checkpoints`), `save_checkpoint_in` for SQL read models, and subscriptions woken by `LISTEN/NOTIFY` (`GlobalReader::watch_head`; see [Waking subscriptions](#waking-subscriptions)); without it they poll |
//! | `tls` | [`PostgresOptions::tls`]: TLS with rustls and its `ring` provider |
//! | `test-server` | [`test_server`]: a throwaway server for tests and benchmarks, std only |
//!
//! # How it writes
//!
//! - **Appends share commits.** A few committer tasks (a quarter of the pool, 1 to 8) take
//!   the appends waiting at that moment, one per stream and up to 128, and write them in one
//!   statement (`INSERT … SELECT … FROM unnest(…)` over arrays of events): one round trip and
//!   one commit to disk for all, whatever their number of events. A lone append goes at once;
//!   under load, many share a commit. Each append still succeeds or conflicts on its own. The
//!   committers run on the Tokio runtime the store was connected on; should it stop, appends
//!   run on their caller's task instead.
//! - **Optimistic concurrency, per stream.** The stream's row is updated only if it is at the
//!   expected version when its row lock is held, so of two writers expecting the same version
//!   one wins and the other gets [`AppendError::Conflict`] with the version it lost to. There is
//!   no table lock: an append takes its own stream's row lock, and a batch takes its streams'
//!   row locks in stream order, so batches never deadlock (appends batched together do share
//!   the wait when one of their streams' rows is held by another session). A unique key on
//!   `(stream, version)` backs it; a violation (SQLSTATE 23505) rolls the statement back and
//!   its appends are tried again (with retries configured), to succeed or conflict on their own.
//! - **A message records events in a stream once.** Once it holds the stream's row lock, the
//!   append statement probes an index of each append's last event by `(stream, message_id,
//!   version)` (one entry per append, not per event: migration 7): an append whose message id
//!   already recorded visible events in the stream writes nothing and gets
//!   [`AppendError::Duplicate`] (the others of its batch go on). The probe runs in a function
//!   of the schema (`recorded_version`, migrations 6 and 7) whose query takes a snapshot of its
//!   own, so it sees every event committed by the writers that held the lock before, as the
//!   version check does. A stream another writer created after the statement began is locked
//!   and moved by the insert that meets it. So concurrent
//!   [`ExpectedVersion::Any`](switchyard_aggregates::store::ExpectedVersion::Any) appends with
//!   message ids to one stream, new or not, each succeed or are refused as duplicates in one
//!   run of the statement.
//! - **Soft and hard delete** behave exactly as the memory store's: a soft delete hides the
//!   events through the last version, keeps the stream's versions (`NoStream` then conflicts,
//!   `Any` or the last version continue it), a hard delete removes the events, the stream and
//!   its snapshot.
//! - **Retries.** An operation is tried again, with exponential backoff and jitter
//!   ([`PostgresOptions::retries`]), only when nothing can have been written: no connection
//!   could be had, or the connection was found closed before the statement was sent. Reads
//!   and snapshot saves (idempotent) are also retried after a connection broke under them.
//! - **Unknown outcomes are settled, never retried blindly.** When the connection breaks after
//!   an append was sent, it may have committed. The store then ends that server session
//!   (`pg_terminate_backend`, so its transaction can no longer commit later), and looks the
//!   append up by its message id: found where it belongs, the append succeeded; not found,
//!   nothing was written, reported as a conflict when the stream has moved on and as a store
//!   failure otherwise; found elsewhere (an earlier append of the message), a duplicate. Without a message id, or when the check itself cannot be done, the
//!   caller gets [`AppendError::Unknown`].
//!
//! # A global order readers can trust
//!
//! `read_all` promises that once it returned an event at position `p`, no event with a position
//! below `p` will ever appear. A sequence cannot promise that: a transaction takes its number,
//! a later one takes a higher number and commits first, and a reader that already moved past
//! the higher number never sees the lower one.
//!
//! The store uses the transaction ids instead, and no lock:
//!
//! 1. Every event row is stamped with its writer's transaction id (`pg_current_xact_id()`,
//!    column `transaction_id`), and its position is that id shifted left by 20 bits, plus its
//!    index in the transaction. Positions thus increase with transaction ids, which PostgreSQL
//!    hands out in order; an append holds at most [`MAX_EVENTS_PER_APPEND`] events.
//! 2. `read_all` returns only events of transactions older than the oldest transaction still
//!    running on the server, `pg_snapshot_xmin(pg_current_snapshot())`. Every older
//!    transaction has committed (its events are visible) or rolled back (they never will be),
//!    and every transaction still running or yet to start has an id, hence positions, at or
//!    above that bound.
//!
//! So a reader can remember the last position it saw and ask for what follows, and never skips
//! an event. The price: an event becomes visible to `read_all` only once every transaction that
//! started before it ended, so a long-running writing transaction anywhere on the server (in
//! any database) holds `read_all` back, though never appends or stream reads. To read its own
//! writes, `read_all` waits (up to [`PostgresOptions::read_all_wait`], 1 s by default) for the
//! transactions holding back events that were committed before it was called; concurrent
//! appends end within milliseconds. Positions are large, with gaps, as the trait allows.
//!
//! A sequence-numbered position with the same `pg_snapshot_xmin` filter is not enough: a
//! transaction that got its id first may take its number last, commit first, and be returned
//! while a younger transaction's lower number is still to commit. Positions derived from the
//! transaction id close that hole (the test `an_older_transaction_writing_last_cannot_make_a_
//! reader_skip_a_younger_one` drives exactly that interleaving).
//!
//! # Waking subscriptions
//!
//! With the `projections` feature, subscriptions of `switchyard-projections` are woken through
//! `LISTEN/NOTIFY` rather than polled:
//!
//! - **The notifier.** After appends commit, the store sends `NOTIFY switchyard_events` with
//!   its schema as the payload, on a connection of its own started by the first append. It is
//!   sent after the commit, not inside the append's transaction: PostgreSQL commits notifying
//!   transactions one at a time (a lock held through the commit orders its notification
//!   queue), which in a trial here (pgbench, 8 clients, 10-row inserts, `fsync` on) cut commits
//!   from 2,000–3,500 to 300–580 per second. The notifier's transactions write nothing else and
//!   commit without waiting for the disk (`synchronous_commit = off`), and the commits made
//!   while one is under way share the next, so appends never wait for it (in the same trial, a
//!   client sending such notifications flat out, about 9,500 a second, left the 8 clients'
//!   commit rate unchanged within the noise).
//! - **The listener.** The first `GlobalReader::watch_head` starts a connection of its own that
//!   `LISTEN`s and publishes the *readable head*, the greatest position below `read_all`'s
//!   bound. On a notification it reads the readable head and the newest committed position;
//!   while an older transaction holds the former below the latter (perhaps one that writes no
//!   events and will notify nothing), it reads again after a short pause, 1 ms doubling to
//!   50 ms. Without notifications it reads the head every 2 s, which makes up for a
//!   notification lost with its process, or events appended by a process without this
//!   feature. After a broken connection it connects again (100 ms doubling to 5 s) and
//!   publishes the head at once. Both tasks run on the Tokio runtime of the call that started
//!   them (keep the store on one runtime) and stop with the last clone of the store.
//!
//! A woken subscription reads through `read_all`, so a notification is a wake-up only: an event
//! committed late by an older transaction is read in its place, never skipped. Turn the feature
//! on in every process that appends, or their appends wake other processes' subscriptions only
//! at the listener's 2 s re-read. `GlobalReader::head` (any feature) reads the readable head
//! from the primary key's index.
//!
//! # Schema
//!
//! Created and migrated by the store when it connects (or by [`PostgresStore::migrate`]):
//! numbered migrations (`migrations/*.sql` in this crate) applied in one transaction under an
//! advisory lock, recorded in the schema's `switchyard_migrations` table, so processes starting
//! together take turns. Tables: `streams`, `events`, `snapshots`, `states`.
//!
//! [`AppendError::Conflict`]: https://docs.rs/switchyard-aggregates/latest/switchyard_aggregates/store/enum.AppendError.html
//! [`AppendError::Duplicate`]: https://docs.rs/switchyard-aggregates/latest/switchyard_aggregates/store/enum.AppendError.html
//! [`AppendError::Unknown`]: https://docs.rs/switchyard-aggregates/latest/switchyard_aggregates/store/enum.AppendError.html

#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "scheduler")]
mod alarms;
#[cfg(feature = "events")]
mod append;
#[cfg(feature = "projections")]
mod checkpoints;
#[cfg(feature = "events")]
mod config;
#[cfg(feature = "events")]
mod db;
#[cfg(feature = "events")]
mod error;
#[cfg(feature = "events")]
mod events;
#[cfg(feature = "events")]
mod expected;
#[cfg(feature = "events")]
#[doc(hidden)]
pub mod fuzzing;
#[cfg(feature = "projections")]
mod listen;
#[cfg(feature = "events")]
mod migrations;
#[cfg(feature = "projections")]
mod notify;
#[cfg(feature = "events")]
mod pages;
#[cfg(feature = "events")]
mod pool;
#[cfg(feature = "projections")]
mod projection;
#[cfg(feature = "events")]
mod rows;
#[cfg(feature = "events")]
mod store;
#[cfg(feature = "test-server")]
#[cfg_attr(docsrs, doc(cfg(feature = "test-server")))]
pub mod test_server;
#[cfg(feature = "projections")]
mod wake;

#[cfg(feature = "events")]
#[doc(inline)]
pub use crate::append::MAX_EVENTS_PER_APPEND;
#[cfg(feature = "projections")]
#[cfg_attr(docsrs, doc(cfg(feature = "projections")))]
#[doc(inline)]
pub use crate::checkpoints::{reset_checkpoint_in, save_checkpoint_in};
#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
#[doc(inline)]
pub use crate::config::tls_config;
#[cfg(feature = "events")]
#[doc(inline)]
pub use crate::config::{DEFAULT_SCHEMA, PostgresOptions};
#[cfg(feature = "events")]
#[doc(inline)]
pub use crate::error::{ConnectTimeout, PostgresError};
#[cfg(feature = "projections")]
#[cfg_attr(docsrs, doc(cfg(feature = "projections")))]
#[doc(inline)]
pub use crate::projection::{PostgresProjection, PostgresReadModel};
#[cfg(feature = "events")]
#[doc(inline)]
pub use crate::store::PostgresStore;
/// The rustls crate, to build a [`PostgresOptions::tls`] configuration with the same version.
#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub use rustls;
/// The tokio-postgres crate, for a [`PostgresReadModel`]'s transactions with the same version.
#[cfg(feature = "projections")]
#[cfg_attr(docsrs, doc(cfg(feature = "projections")))]
pub use tokio_postgres;
