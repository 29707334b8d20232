//! What a user implements: a [`Projection`], and how the runner decodes its events.

use std::future::Future;
use std::sync::Arc;

use switchyard_aggregates::store::RecordedEvent;
use switchyard_aggregates::{Aggregate, DecodedEvent, RepoError, Upcasters};

use super::commit::{CheckpointLease, CommitError};

/// Any error a projection returns: the runner logs it, retries, and reports it.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A read model kept up to date from the events of one or more aggregate types, run by a
/// [`ProjectionRunner`](super::ProjectionRunner).
///
/// The runner hands [`apply`](Self::apply) the events of the aggregate types registered with
/// [`ProjectionRunnerBuilder::aggregate`](super::ProjectionRunnerBuilder::aggregate),
/// decoded as [`Event`](Self::Event), in batches, in global order. Delivery is **at least
/// once**: the checkpoint is saved after a batch was applied, so a batch interrupted by a
/// crash, a lost lease or a stop is handed out again, whole, to whichever runner goes on.
/// `apply` must therefore be idempotent per event (for example, an upsert keyed by the
/// event's stream and version, or a check of the [`position`](DecodedEvent::position)
/// against the last one applied).
///
/// # Read models kept in SQL
///
/// A read model in the checkpoint store's database can do better: exactly once. Its writes and
/// the checkpoint commit in one transaction ([`commit`](Self::commit) overridden), so a batch
/// either landed with its checkpoint or not at all, whatever crashes. The adaptors
/// `switchyard_sqlite::SqliteProjection` and `switchyard_postgres::PostgresProjection` do it
/// for a read model handed a `rusqlite::Transaction` / `tokio_postgres::Transaction`.
pub trait Projection: Send + 'static {
    /// The events it reads: one aggregate's `Event` type, or an enum of several (each
    /// registered aggregate's `Event` converts into it with `From`).
    type Event: Send + Sync + 'static;

    /// Whether the read model lives in this process's memory, and so starts empty with each
    /// process. `false` by default: the read model is durable (a SQL table, a file), and a
    /// runner goes on from the saved checkpoint.
    ///
    /// A runner of an in-memory projection ignores the saved checkpoint, which says how far
    /// an earlier process got, not what this one holds: it
    /// [rebuilds](super::ProjectionRunnerBuilder::rebuild) the projection from the origin
    /// when it first takes the lease (progress is logged, and reported to the callback of
    /// `rebuild` if one was given), and after a lease lost and taken again it goes on from
    /// the position it reached itself. Its checkpoint and lease still say, in the store, how
    /// far it got and which runner is active. [`InMemory`](crate::InMemory) sets it.
    const IN_MEMORY: bool = false;

    /// Applies one batch, in order. An error leaves the checkpoint where it was: the runner
    /// retries the same batch with backoff, and stops with
    /// [`RunnerError::Projection`](super::RunnerError::Projection) once its retries are
    /// spent. No event is ever skipped.
    fn apply(
        &mut self,
        batch: &[DecodedEvent<Self::Event>],
    ) -> impl Future<Output = Result<(), BoxError>> + Send;

    /// Empties the read model, before a [rebuild](super::ProjectionRunnerBuilder::rebuild) replays
    /// every event from the origin. The default does nothing.
    fn reset(&mut self) -> impl Future<Output = Result<(), BoxError>> + Send {
        async { Ok(()) }
    }

    /// Applies one batch and records that the projection processed the global order through
    /// `position` (at or after the batch's last event; the batch may be empty when only events
    /// of other types were passed over), fenced by `lease`. The runner calls it once per batch
    /// and retries it whole on failure, as [`CommitError`] says.
    ///
    /// The default [applies](Self::apply) a non-empty batch, then saves through the checkpoint
    /// store ([`CheckpointLease::save`]): at least once, since a crash between the two applies
    /// the batch again. Override it to write both in one transaction (exactly once); the
    /// override must leave nothing of the batch behind when the checkpoint write fails, above
    /// all on [`CheckpointError::LeaseLost`](crate::CheckpointError::LeaseLost), where another
    /// runner took over.
    fn commit(
        &mut self,
        batch: &[DecodedEvent<Self::Event>],
        position: u64,
        lease: CheckpointLease<'_>,
    ) -> impl Future<Output = Result<(), CommitError>> + Send {
        async move {
            if !batch.is_empty() {
                self.apply(batch).await.map_err(CommitError::Projection)?;
            }
            lease.save(position).await?;
            Ok(())
        }
    }

    /// Empties the read model and sets the checkpoint back to the origin, fenced by `lease`,
    /// before a [rebuild](super::ProjectionRunnerBuilder::rebuild). The default
    /// [resets](Self::reset) the read model, then the checkpoint through the store
    /// ([`CheckpointLease::reset`]); override it to do both in one transaction.
    fn commit_reset(
        &mut self,
        lease: CheckpointLease<'_>,
    ) -> impl Future<Output = Result<(), CommitError>> + Send {
        async move {
            self.reset().await.map_err(CommitError::Projection)?;
            lease.reset().await?;
            Ok(())
        }
    }
}

/// Decodes the events of one aggregate type into a projection's event type.
pub(super) struct Decoder<E> {
    /// The aggregate type's name.
    pub(super) aggregate: &'static str,
    /// `"{NAME}-"`: the prefix of its streams.
    prefix: String,
    decode: DecodeFn<E>,
}

type DecodeFn<E> = Arc<dyn Fn(RecordedEvent) -> Result<DecodedEvent<E>, RepoError> + Send + Sync>;

impl<E> Clone for Decoder<E> {
    fn clone(&self) -> Self {
        Self {
            aggregate: self.aggregate,
            prefix: self.prefix.clone(),
            decode: self.decode.clone(),
        }
    }
}

impl<E: 'static> Decoder<E> {
    /// Decodes `A`'s events, upgraded from older schema versions by `upcasters` (none
    /// registered: an event of another version than `A::EVENT_SCHEMA_VERSION` is refused,
    /// never decoded as if it were current), converted with `From`.
    pub(super) fn upcast<A: Aggregate>(upcasters: Upcasters<A>) -> Self
    where
        E: From<A::Event>,
    {
        Self {
            aggregate: A::NAME,
            prefix: format!("{}-", A::NAME),
            decode: Arc::new(move |recorded| {
                upcasters
                    .decode(recorded)
                    .map(|decoded| decoded.map(E::from))
            }),
        }
    }
}

/// Decodes `recorded` with the decoder of its aggregate type, the longest prefix matching (a
/// type `bank` does not take `bank-account-7` when `bank-account` is registered too).
/// `recorded` is an event the runner's subscription let through, of one of the decoders'
/// streams: with a single decoder, that one.
pub(super) fn decode<E>(
    decoders: &[Decoder<E>],
    recorded: RecordedEvent,
) -> Option<Result<DecodedEvent<E>, RepoError>> {
    let decoder = match decoders {
        // The usual projection of one aggregate type: the subscription's filter let through
        // its streams only, so its prefix need not be compared again (the catch-up's profile
        // showed these compares at a tenth of the runner's own time).
        [only] => only,
        _ => decoders
            .iter()
            .filter(|d| recorded.stream.starts_with(d.prefix.as_str()))
            .max_by_key(|d| d.prefix.len())?,
    };
    Some((decoder.decode)(recorded))
}
