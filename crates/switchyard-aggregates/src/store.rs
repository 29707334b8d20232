//! Where events, snapshots and states are kept: the traits every store implements.
//!
//! The event store is split by capability ([`EventReader`], [`EventAppender`],
//! [`EventDeleter`], [`GlobalReader`]) and joined by [`EventStore`], implemented for every type
//! that has all four; a projection asks only for what it uses. Every method returns a boxed
//! future, so stores are used as `Arc<dyn EventStore>` and a decorator (publishing appended
//! events, tracing) can wrap any of them.

mod error;
mod memory;
mod shared;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};

pub use self::error::{AppendError, StoreError};
pub use self::memory::MemoryStore;
pub use self::shared::IntoShared;

/// The version a writer expects a stream to be at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ExpectedVersion {
    /// Whatever it is.
    Any,
    /// The stream must not exist (nor have been soft-deleted).
    NoStream,
    /// The stream's last event must have this version.
    Exactly(i64),
}

/// How a stream is deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DeleteMode {
    /// Hidden: the stream reads as not found, its versions are never reused, and creating it
    /// anew (`NoStream`) is a conflict. Appending with `Any` or the last version continues it,
    /// so a writer still holding the aggregate from before the delete can revive it: the
    /// runtime deletes under the aggregate's lock and unloads it, so none of its own can, but
    /// another runtime on the same store that has the aggregate loaded can.
    Soft,
    /// Gone: its events are removed, also from the global order, and the stream may be created
    /// again from version 0.
    Hard,
}

/// What travels with every event of one append: who caused it, and the user's own fields.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventMetadata {
    /// The id of the message whose command produced the events (indexed, for idempotency).
    pub message_id: String,
    /// The conversation.
    pub correlation_id: String,
    /// The message that caused the command.
    pub causation_id: String,
    /// The user's metadata.
    pub user: BTreeMap<String, String>,
}

/// An event to append.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewEvent {
    /// The event's type name: borrowed for the `&'static str` names of
    /// [`Aggregate::event_type`](crate::Aggregate::event_type), so the runtime's appends
    /// allocate none; owned for a name made at run time (`format!(..).into()`).
    pub event_type: Cow<'static, str>,
    /// The event's schema version.
    pub schema_version: u32,
    /// The encoded event.
    pub data: Bytes,
}

/// An event as the store recorded it. Cheap to clone: its text and data are shared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedEvent {
    /// The stream it belongs to.
    pub stream: Arc<str>,
    /// Its version in the stream, from 0.
    pub version: i64,
    /// Its position in the global order, from 1; gaps are allowed, order is strict.
    pub position: u64,
    /// The event's type name.
    pub event_type: Arc<str>,
    /// The event's schema version.
    pub schema_version: u32,
    /// The encoded event.
    pub data: Bytes,
    /// The metadata of the append that recorded it, shared by the events of that append.
    pub metadata: Arc<EventMetadata>,
    /// When the store recorded it.
    pub recorded_at: SystemTime,
}

/// What an append recorded ([`EventAppender::append_at`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Appended {
    /// The stream's version after the append (-1 for a stream that does not exist).
    pub version: i64,
    /// The global position of the last event appended, when the store knows it without
    /// another read: `None` when no event was appended, or the store does not report it.
    pub position: Option<u64>,
}

/// A saved state: a snapshot of an event-sourced aggregate, or the whole of a state-based one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredState {
    /// The aggregate's version the state is at.
    pub version: i64,
    /// The schema version of the encoded state.
    pub schema_version: u32,
    /// The encoded state.
    pub data: Bytes,
}

/// Reads streams.
pub trait EventReader: Send + Sync {
    /// Whether the stream exists and is not deleted.
    fn has_stream<'a>(&'a self, stream: &'a str) -> BoxFuture<'a, Result<bool, StoreError>>;

    /// The stream's events from `from_version` on, in pages of at most `page_size` events. A
    /// missing or deleted stream yields nothing.
    fn read_stream<'a>(
        &'a self,
        stream: &'a str,
        from_version: i64,
        page_size: usize,
    ) -> BoxStream<'a, Result<Vec<RecordedEvent>, StoreError>>;

    /// The version of the last event that message `message_id` recorded in the stream, if it
    /// recorded any.
    fn find_message<'a>(
        &'a self,
        stream: &'a str,
        message_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<i64>, StoreError>>;
}

/// Appends to streams.
pub trait EventAppender: Send + Sync {
    /// Appends `events` atomically if the stream is at `expected`, and returns the stream's
    /// version after the append. Appending no events checks `expected` and returns the current
    /// version (-1 for a stream that does not exist).
    ///
    /// # Errors
    ///
    /// [`AppendError::Conflict`] when the stream is not at `expected` (checked first), then
    /// [`AppendError::Duplicate`] when there are events to append, `metadata.message_id` is
    /// not empty, and that message already recorded
    /// events in this stream that are not deleted (what
    /// [`find_message`](EventReader::find_message) finds); a store or an unknown outcome
    /// otherwise.
    fn append<'a>(
        &'a self,
        stream: &'a str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
        metadata: EventMetadata,
    ) -> BoxFuture<'a, Result<i64, AppendError>>;
    /// [`append`](Self::append), also reporting the global position of the last event
    /// appended. The position is what [`GlobalReader::read_all`] shows for that event, so a
    /// reader that has reached it has seen the whole append. By default, `append` with no
    /// position: a store that knows the positions it wrote overrides it (the memory, SQLite and
    /// PostgreSQL stores do), and must not spend another read to find them.
    ///
    /// # Errors
    ///
    /// As [`append`](Self::append).
    fn append_at<'a>(
        &'a self,
        stream: &'a str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
        metadata: EventMetadata,
    ) -> BoxFuture<'a, Result<Appended, AppendError>> {
        let append = self.append(stream, expected, events, metadata);
        Box::pin(async move {
            Ok(Appended {
                version: append.await?,
                position: None,
            })
        })
    }
}

/// Deletes streams.
pub trait EventDeleter: Send + Sync {
    /// Deletes the stream if it is at `expected`.
    fn delete_stream<'a>(
        &'a self,
        stream: &'a str,
        mode: DeleteMode,
        expected: ExpectedVersion,
    ) -> BoxFuture<'a, Result<(), AppendError>>;
}

/// Reads every stream in the global order.
///
/// Besides [`read_all`](GlobalReader::read_all), two provided methods let a reader follow the
/// order as it grows (subscriptions, read-your-writes): [`head`](GlobalReader::head), where the
/// readable order ends now, and [`watch_head`](GlobalReader::watch_head), a wake-up after each
/// commit. Their defaults work for any store (a scan, and no wake-up: callers poll); stores
/// override them.
pub trait GlobalReader: Send + Sync {
    /// Up to `limit` events with a position of at least `from_position`, in order.
    fn read_all(
        &self,
        from_position: u64,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<RecordedEvent>, StoreError>>;

    /// The readable head: a position such that every event at or below it that will ever be in
    /// the global order is readable now (0 for an empty store). An event committed later gets
    /// a greater position, so reading from `head() + 1` on misses nothing committed after the
    /// call. It may be the position of an event since hard-deleted.
    ///
    /// The default reads the whole order page by page; stores answer from an index.
    fn head(&self) -> BoxFuture<'_, Result<u64, StoreError>> {
        const PAGE: usize = 1024;
        Box::pin(async move {
            let mut head = 0;
            loop {
                let page = self.read_all(head + 1, PAGE).await?;
                match page.last() {
                    Some(last) => head = last.position,
                    None => return Ok(head),
                }
                if page.len() < PAGE {
                    return Ok(head);
                }
            }
        })
    }

    /// A wake-up after each commit: a receiver whose value is the store's readable head (as
    /// [`head`](GlobalReader::head) defines it) and that changes after every commit that
    /// added events, once they are readable. `None` (the default) when the store cannot
    /// notify: callers then poll [`read_all`](GlobalReader::read_all).
    ///
    /// The value is a hint for waking up, never a promise of what a read returns: mark it seen
    /// ([`borrow_and_update`](tokio::sync::watch::Receiver::borrow_and_update)) *before*
    /// reading, read until a short page, then await
    /// [`changed`](tokio::sync::watch::Receiver::changed): a commit during the read is then
    /// never missed. A closed channel (the store is gone, or its listener stopped) means no
    /// more wake-ups: fall back to polling.
    fn watch_head(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        None
    }
}

/// A complete event store: implemented for every type that reads, appends, deletes and reads
/// globally.
pub trait EventStore: EventReader + EventAppender + EventDeleter + GlobalReader {}

impl<T: EventReader + EventAppender + EventDeleter + GlobalReader> EventStore for T {}

/// Keeps the latest snapshot of each stream.
pub trait SnapshotStore: Send + Sync {
    /// Saves `snapshot`, replacing an older one.
    fn save_snapshot<'a>(
        &'a self,
        stream: &'a str,
        snapshot: StoredState,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// The latest snapshot, if any.
    fn load_snapshot<'a>(
        &'a self,
        stream: &'a str,
    ) -> BoxFuture<'a, Result<Option<StoredState>, StoreError>>;

    /// Removes the stream's snapshot; removing one that does not exist is not an error.
    /// [`Repo::delete`](crate::Repo::delete) calls it on a hard delete, so a stream created
    /// again never starts from its former life's state.
    fn delete_snapshot<'a>(&'a self, stream: &'a str) -> BoxFuture<'a, Result<(), StoreError>>;
}

/// Keeps the whole state of state-based aggregates, with optimistic concurrency.
pub trait StateStore: Send + Sync {
    /// Saves `state` if the stored one is at `expected` (`NoStream`: none is stored).
    fn save_state<'a>(
        &'a self,
        stream: &'a str,
        state: StoredState,
        expected: ExpectedVersion,
    ) -> BoxFuture<'a, Result<(), AppendError>>;

    /// The stored state, if any.
    fn load_state<'a>(
        &'a self,
        stream: &'a str,
    ) -> BoxFuture<'a, Result<Option<StoredState>, StoreError>>;

    /// Removes the stored state if it is at `expected`, with the rules of
    /// [`save_state`](StateStore::save_state): `Any` removes whatever is stored (or nothing),
    /// `NoStream` and `Exactly(-1)` succeed only when nothing is stored, `Exactly(v)` only when
    /// the state is at `v`; otherwise [`AppendError::Conflict`] with the stored version. Once
    /// removed, the state can be saved again with `NoStream`.
    fn delete_state<'a>(
        &'a self,
        stream: &'a str,
        expected: ExpectedVersion,
    ) -> BoxFuture<'a, Result<(), AppendError>>;
}
