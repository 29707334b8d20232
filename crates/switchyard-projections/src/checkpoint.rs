//! How far each projection got, and which runner may move it on: the [`CheckpointStore`] trait
//! every store implements, and the in-memory one.
//!
//! A projection's **checkpoint** is the global position of the last event it has processed
//! (`0`: none yet; positions start at 1). Saves only move it forward, and only the holder of the
//! projection's **lease** may save: of several runners of one projection, the one that
//! [acquired](CheckpointStore::acquire) the lease runs it, the others wait and take over once
//! the lease lapses.
//!
//! # Fencing
//!
//! Every acquisition by a new holder (or by the same holder after its lease lapsed) starts a new
//! **generation**, and a [`LeaseToken`] names the generation it was granted in. A save, a reset,
//! a renewal and a release are checked against the stored holder and generation in the same
//! atomic step as their write, so a runner that paused past its lease (a long GC pause, a
//! network partition) and was replaced cannot move the checkpoint any more: it gets
//! [`CheckpointError::LeaseLost`] and must stop. The lease's time to live decides when another
//! runner may take over; the generation, not the clock, decides whose writes count. A holder
//! whose lease lapsed but that nobody replaced may still save: nobody else moved the
//! checkpoint meanwhile.
//!
//! # Read models kept in SQL
//!
//! A read model in the same database as its checkpoint commits both in one transaction:
//! `switchyard_sqlite::save_checkpoint_in` takes the caller's `rusqlite::Transaction`,
//! `switchyard_postgres::save_checkpoint_in` a `tokio_postgres::Transaction` (features
//! `projections` of those crates), each fenced by the lease like [`CheckpointStore::save`]. A
//! crash before the commit leaves neither the rows nor the checkpoint written, so the restarted
//! runner applies each event's effect exactly once.
//!
//! # Clocks
//!
//! Lease times are passed in by the caller, never read by the store, as the scheduler's alarm
//! leases are: runners sharing a store must keep their clocks in step to well within the time
//! to live. Stores keep times to the microsecond.
//!
//! # Examples
//!
//! ```
//! use std::time::{Duration, SystemTime};
//! use switchyard_projections::checkpoint::{
//!     Acquire, CheckpointError, CheckpointStore, MemoryCheckpointStore,
//! };
//!
//! # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
//! let store = MemoryCheckpointStore::new();
//! let now = SystemTime::now();
//! let ttl = Duration::from_secs(30);
//!
//! // Runner A takes the lease and records its progress.
//! let Acquire::Acquired(a) = store.acquire("balances", "runner-a", now, now + ttl).await? else {
//!     unreachable!("nobody holds it yet");
//! };
//! store.save(&a.token, 42).await?;
//! assert_eq!(store.load("balances").await?, 42);
//!
//! // While A's lease is live, B waits.
//! assert!(matches!(
//!     store.acquire("balances", "runner-b", now, now + ttl).await?,
//!     Acquire::Held(_)
//! ));
//!
//! // A stalls past its lease; B takes over from A's checkpoint.
//! let later = now + ttl + Duration::from_secs(1);
//! let Acquire::Acquired(b) = store.acquire("balances", "runner-b", later, later + ttl).await? else {
//!     unreachable!("A's lease lapsed");
//! };
//! assert_eq!(store.load("balances").await?, 42);
//! store.save(&b.token, 50).await?;
//!
//! // A wakes up: its save is refused, and it must stop.
//! let refused = store.save(&a.token, 45).await;
//! assert!(matches!(refused, Err(CheckpointError::LeaseLost { .. })));
//! assert_eq!(store.load("balances").await?, 50);
//! # Ok::<_, CheckpointError>(())
//! # })?;
//! # Ok::<_, Box<dyn std::error::Error>>(())
//! ```

pub mod backend;
#[cfg(feature = "conformance")]
#[cfg_attr(docsrs, doc(cfg(feature = "conformance")))]
pub mod conformance;
mod error;
mod memory;

use std::time::SystemTime;

use futures::future::BoxFuture;

pub use self::error::CheckpointError;
pub use self::memory::MemoryCheckpointStore;

/// The highest position a checkpoint can hold: every store keeps positions in a signed 64-bit
/// column, as the event stores do, so no event is ever recorded beyond it.
pub const MAX_POSITION: u64 = i64::MAX as u64;

/// The proof of holding a projection's lease, handed to every fenced write. Only the latest
/// generation's token of the current holder is honoured.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LeaseToken {
    /// The projection the lease is on.
    pub projection: String,
    /// Who holds it.
    pub holder: String,
    /// Which acquisition granted it: it grows by at least one each time the lease changes hands
    /// (or is taken again by the same holder after it lapsed or was released).
    pub generation: u64,
}

/// A lease just granted: its token, and until when it keeps others out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The token to pass to [`save`](CheckpointStore::save) and the other fenced writes.
    pub token: LeaseToken,
    /// When it lapses, unless [renewed](CheckpointStore::renew); from then on another holder
    /// may take it.
    pub until: SystemTime,
}

/// Who holds a lease, and until when, as the store last recorded it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseHolder {
    /// The holder.
    pub holder: String,
    /// When its lease lapses (or lapsed: a listing shows leases past their time too).
    pub until: SystemTime,
}

/// The answer of [`CheckpointStore::acquire`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Acquire {
    /// The caller holds the lease now.
    Acquired(Lease),
    /// Another holder's lease is live; try again once it lapses.
    Held(LeaseHolder),
}

/// One projection's line in an operator's view ([`CheckpointStore::list`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointInfo {
    /// The projection's name.
    pub projection: String,
    /// The position it has processed through; `0` for none.
    pub position: u64,
    /// When its checkpoint was last saved or reset, by the saver's clock; `None` when it
    /// never was (its lease was taken, no more).
    pub updated_at: Option<SystemTime>,
    /// Who holds its lease, or held it last: `None` once released. Compare
    /// [`until`](LeaseHolder::until) with the time to tell a live lease from a lapsed one.
    pub lease: Option<LeaseHolder>,
}

/// An event a projection kept failing on, set aside so the projection could go on past it: a
/// dead-letter record, kept by the [`CheckpointStore`] beside the projection's checkpoint
/// ([`CheckpointStore::park`]) until an operator retries or skips it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParkedEvent {
    /// The projection that failed on it.
    pub projection: String,
    /// The event's global position.
    pub position: u64,
    /// The event's stream.
    pub stream: String,
    /// The event's version in its stream.
    pub version: i64,
    /// The event's type, as recorded.
    pub event_type: String,
    /// The last error, with its causes (`error: cause: cause`).
    pub error: String,
    /// How many times it was tried: applied alone, after its batch failed, or once when it
    /// could not be decoded (trying again cannot help then).
    pub attempts: u32,
    /// When it was parked (last), by the parking runner's clock; stores keep it to the
    /// microsecond.
    pub parked_at: SystemTime,
}

/// A durable record of projections' checkpoints and leases, shared by any number of runners.
///
/// Every write is durable when its future resolves `Ok`, and atomic with respect to the others:
/// of two holders racing for a lease exactly one gets it, and a fenced write checks the lease in
/// the same step as it writes. A refused write writes nothing. Beside each checkpoint it keeps
/// the projection's [parked events](ParkedEvent). Names are checked against the
/// [`names`](switchyard_messaging::names) rule (`NameKind::Projection`,
/// `NameKind::LeaseHolder`) before anything reaches the backend.
///
/// Every method returns a boxed future, so stores are used as `Arc<dyn CheckpointStore>`.
pub trait CheckpointStore: Send + Sync {
    /// The position `projection` has processed through: `0` when nothing was saved yet (or
    /// since a [reset](Self::reset)). Reading needs no lease.
    fn load<'a>(&'a self, projection: &'a str) -> BoxFuture<'a, Result<u64, CheckpointError>>;

    /// Records that the lease holder of `lease` has processed its projection through
    /// `position`.
    ///
    /// # Errors
    ///
    /// [`CheckpointError::LeaseLost`] when `lease` is not the current holder's current
    /// generation (checked first); [`CheckpointError::NotForward`] when `position` is not
    /// after the stored one; [`CheckpointError::PositionTooLarge`] beyond [`MAX_POSITION`].
    fn save<'a>(
        &'a self,
        lease: &'a LeaseToken,
        position: u64,
    ) -> BoxFuture<'a, Result<(), CheckpointError>>;

    /// Sets the projection's checkpoint back to `0`, for a rebuild from the origin. Fenced as
    /// [`save`](Self::save) is.
    ///
    /// It also forgets the projection's [parked events](Self::parked), in the same step: a
    /// rebuild applies them again (and parks again those that still fail).
    ///
    /// # Errors
    ///
    /// [`CheckpointError::LeaseLost`] when `lease` is not the current one.
    fn reset<'a>(&'a self, lease: &'a LeaseToken) -> BoxFuture<'a, Result<(), CheckpointError>>;

    /// Parks `event`: records it among its projection's [parked events](Self::parked) (in place
    /// of a record at the same position) and, in the same atomic step, moves the checkpoint to
    /// its position when that is after the stored one, so the runner goes on past it. Fenced as
    /// [`save`](Self::save) is.
    ///
    /// # Errors
    ///
    /// [`CheckpointError::LeaseLost`] when `lease` is not the current one;
    /// [`CheckpointError::ProjectionMismatch`] when `event` is of another projection than
    /// `lease`; [`CheckpointError::PositionTooLarge`] beyond [`MAX_POSITION`].
    fn park<'a>(
        &'a self,
        lease: &'a LeaseToken,
        event: &'a ParkedEvent,
    ) -> BoxFuture<'a, Result<(), CheckpointError>>;

    /// The parked events of `projection`, by position. Reading needs no lease.
    fn parked<'a>(
        &'a self,
        projection: &'a str,
    ) -> BoxFuture<'a, Result<Vec<ParkedEvent>, CheckpointError>>;

    /// Forgets the parked event of `projection` at `position` (skipped by an operator, or
    /// applied by a retry): `false` when there was none. Needs no lease: the checkpoint is past
    /// the event already, so removing its record changes no runner's work.
    fn unpark<'a>(
        &'a self,
        projection: &'a str,
        position: u64,
    ) -> BoxFuture<'a, Result<bool, CheckpointError>>;

    /// Every projection the store knows (whose lease was ever taken), by name.
    fn list(&self) -> BoxFuture<'_, Result<Vec<CheckpointInfo>, CheckpointError>>;

    /// Takes `projection`'s lease for `holder` until `until`, unless another holder's lease is
    /// live at `now`. A projection never seen starts at position `0`.
    ///
    /// A new generation starts unless `holder` already holds a lease live at `now`: then that
    /// lease is extended and keeps its generation (the holder asking again after an answer was
    /// lost is the same run). A refused acquisition writes nothing.
    fn acquire<'a>(
        &'a self,
        projection: &'a str,
        holder: &'a str,
        now: SystemTime,
        until: SystemTime,
    ) -> BoxFuture<'a, Result<Acquire, CheckpointError>>;

    /// Extends `lease` to `until`. `false`, with nothing changed, when it is no longer the
    /// current one: the runner must stop, another took over (or it was released).
    fn renew<'a>(
        &'a self,
        lease: &'a LeaseToken,
        until: SystemTime,
    ) -> BoxFuture<'a, Result<bool, CheckpointError>>;

    /// Gives `lease` up, so another runner may take over at once; the checkpoint stays.
    /// `false`, with nothing changed, when it was no longer the current one.
    fn release<'a>(&'a self, lease: &'a LeaseToken)
    -> BoxFuture<'a, Result<bool, CheckpointError>>;
}

impl<S: CheckpointStore + ?Sized> CheckpointStore for std::sync::Arc<S> {
    fn load<'a>(&'a self, projection: &'a str) -> BoxFuture<'a, Result<u64, CheckpointError>> {
        (**self).load(projection)
    }

    fn save<'a>(
        &'a self,
        lease: &'a LeaseToken,
        position: u64,
    ) -> BoxFuture<'a, Result<(), CheckpointError>> {
        (**self).save(lease, position)
    }

    fn reset<'a>(&'a self, lease: &'a LeaseToken) -> BoxFuture<'a, Result<(), CheckpointError>> {
        (**self).reset(lease)
    }

    fn park<'a>(
        &'a self,
        lease: &'a LeaseToken,
        event: &'a ParkedEvent,
    ) -> BoxFuture<'a, Result<(), CheckpointError>> {
        (**self).park(lease, event)
    }

    fn parked<'a>(
        &'a self,
        projection: &'a str,
    ) -> BoxFuture<'a, Result<Vec<ParkedEvent>, CheckpointError>> {
        (**self).parked(projection)
    }

    fn unpark<'a>(
        &'a self,
        projection: &'a str,
        position: u64,
    ) -> BoxFuture<'a, Result<bool, CheckpointError>> {
        (**self).unpark(projection, position)
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<CheckpointInfo>, CheckpointError>> {
        (**self).list()
    }

    fn acquire<'a>(
        &'a self,
        projection: &'a str,
        holder: &'a str,
        now: SystemTime,
        until: SystemTime,
    ) -> BoxFuture<'a, Result<Acquire, CheckpointError>> {
        (**self).acquire(projection, holder, now, until)
    }

    fn renew<'a>(
        &'a self,
        lease: &'a LeaseToken,
        until: SystemTime,
    ) -> BoxFuture<'a, Result<bool, CheckpointError>> {
        (**self).renew(lease, until)
    }

    fn release<'a>(
        &'a self,
        lease: &'a LeaseToken,
    ) -> BoxFuture<'a, Result<bool, CheckpointError>> {
        (**self).release(lease)
    }
}
