//! What a user implements: a [`Projection`], and how the runner decodes its events.

use std::future::Future;
use std::sync::Arc;

use switchyard_aggregates::store::RecordedEvent;
use switchyard_aggregates::{Aggregate, DecodedEvent, RepoError};

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
pub trait Projection: Send + 'static {
    /// The events it reads: one aggregate's `Event` type, or an enum of several (each
    /// registered aggregate's `Event` converts into it with `From`).
    type Event: Send + Sync + 'static;

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
    /// Decodes `A`'s events, converted with `From`.
    pub(super) fn of<A: Aggregate>() -> Self
    where
        E: From<A::Event>,
    {
        Self {
            aggregate: A::NAME,
            prefix: format!("{}-", A::NAME),
            decode: Arc::new(|recorded| {
                DecodedEvent::<A::Event>::decode(recorded).map(|decoded| decoded.map(E::from))
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
