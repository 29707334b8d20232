//! What a runner does with an event its projection keeps failing on, and how an operator
//! retries one it parked.

use switchyard_aggregates::store::StoreError;
use tokio::sync::oneshot;

use super::projection::BoxError;
use crate::checkpoint::CheckpointError;

/// What a [`ProjectionRunner`](super::ProjectionRunner) does once a batch failed after all its
/// retries ([`ProjectionRunnerBuilder::on_poison`](super::ProjectionRunnerBuilder::on_poison)).
///
/// The default is [`Stop`](Self::Stop) for projections: a read model that skipped an event is
/// wrong without saying so, while a stopped runner is plain to see (its lag grows, its
/// [`stop`](super::ProjectionRunner::stop) returns the error) and loses nothing. Choose
/// [`Park`](Self::Park) where a read model that goes on without one event is worth more than
/// one that waits for a fix: every other event keeps flowing, and the parked ones are listed
/// for an operator. Policies ([`ProjectionRunner::policy`](super::ProjectionRunner::policy))
/// park by default: one command an aggregate refuses must not hold back every later reaction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum OnPoison {
    /// Stop the runner with [`RunnerError::Projection`](super::RunnerError::Projection), its
    /// checkpoint before the batch: no event is ever skipped.
    #[default]
    Stop,
    /// Find the failing event and park it. The runner applies the batch's events one at a
    /// time, each with the same retries, saving the checkpoint after each; an event that
    /// still fails (or cannot be decoded, which no retry mends) is recorded as a
    /// [`ParkedEvent`](crate::ParkedEvent) while the checkpoint moves past it in the same step
    /// ([`CheckpointStore::park`](crate::CheckpointStore::park)), and the runner goes on.
    ///
    /// A failure that is not the event's (the read model's database down longer than the
    /// retries last) parks events that are fine: give the retries more time than the outages
    /// you expect, and [retry](super::ProjectionRunner::retry_parked) what was parked once the
    /// cause is mended.
    Park,
}

/// [`ProjectionRunner::retry_parked`](super::ProjectionRunner::retry_parked) could not apply
/// a parked event.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RetryError {
    /// This runner does not hold the projection's lease (another runner does, or it stopped):
    /// retry through the active runner.
    #[error(
        "this runner of projection `{projection}` is not the active one: retry through the \
         runner holding its lease"
    )]
    NotActive {
        /// The projection.
        projection: String,
    },
    /// No event of the projection is parked at this position.
    #[error("projection `{projection}` has no event parked at position {position}")]
    NotParked {
        /// The projection.
        projection: String,
        /// The position asked for.
        position: u64,
    },
    /// The event store holds no event of the projection's aggregate types at this position
    /// any more (deleted): skip the parked event.
    #[error(
        "the event store holds no event of projection `{projection}` at position {position}: \
         skip it"
    )]
    Missing {
        /// The projection.
        projection: String,
        /// The position.
        position: u64,
    },
    /// The projection failed on the event again. It stays parked, its record updated (one more
    /// attempt, this error).
    #[error("projection `{projection}` failed again on the event at position {position}")]
    Failed {
        /// The projection.
        projection: String,
        /// The position.
        position: u64,
        /// The projection's error (or why the event does not decode).
        #[source]
        source: BoxError,
    },
    /// The event store could not be read; retry later.
    #[error("the parked event of projection `{projection}` could not be read")]
    Read {
        /// The projection.
        projection: String,
        /// The store's error.
        #[source]
        source: StoreError,
    },
    /// The checkpoint store failed (or the lease was lost meanwhile); retry later.
    #[error("the parked events of projection `{projection}` could not be read or updated")]
    Checkpoint {
        /// The projection.
        projection: String,
        /// The store's error.
        #[source]
        source: CheckpointError,
    },
}

/// An operator's request, served by the runner's task between batches, where it holds the
/// projection.
#[derive(Debug)]
pub(super) enum Request {
    /// Apply the event parked at `position` again.
    Retry {
        position: u64,
        reply: oneshot::Sender<Result<(), RetryError>>,
    },
}

/// How many requests may wait for the runner's task; more callers wait to send.
pub(super) const REQUESTS: usize = 8;

/// `error` with its causes, as a parked event records it: `error: cause: cause`.
pub(super) fn error_text(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(source) = cause {
        text.push_str(": ");
        text.push_str(&source.to_string());
        cause = source.source();
    }
    text
}
