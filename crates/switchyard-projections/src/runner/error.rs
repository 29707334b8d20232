//! Errors of projection runners.

use switchyard_aggregates::RepoError;
use switchyard_aggregates::store::StoreError;

use super::projection::BoxError;
use crate::checkpoint::CheckpointError;
use crate::subscription::SubscriptionError;

/// Why a projection runner stopped on its own. It never skips an event: each of these leaves
/// the checkpoint before the events it could not process, so a runner started again goes on
/// from there.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunnerError {
    /// The runner was started without any aggregate type to read.
    #[error(
        "projection `{projection}` reads no aggregate type: register at least one with \
         `ProjectionRunnerBuilder::aggregate`"
    )]
    NoAggregates {
        /// The projection.
        projection: String,
    },
    /// The projection kept failing on a batch after every retry.
    #[error(
        "projection `{projection}` failed on its batch of positions {first}..={last} after \
         {attempts} attempts: fix the projection (or the event) and start the runner again"
    )]
    Projection {
        /// The projection.
        projection: String,
        /// The position of the batch's first event.
        first: u64,
        /// The position of the batch's last event.
        last: u64,
        /// How many times the batch was tried.
        attempts: usize,
        /// The projection's last error.
        #[source]
        source: BoxError,
    },
    /// The projection could not empty its read model for a rebuild.
    #[error("projection `{projection}` could not reset its read model for a rebuild")]
    Reset {
        /// The projection.
        projection: String,
        /// The projection's error.
        #[source]
        source: BoxError,
    },
    /// An event of a registered aggregate type does not decode as its `Event` type (written
    /// by another version of the aggregate?): retrying cannot help.
    #[error("projection `{projection}` cannot decode an event: upcast or fix the event")]
    Decode {
        /// The projection.
        projection: String,
        /// What did not decode, and where (boxed: a rare error keeps the runner's results small).
        #[source]
        source: Box<RepoError>,
    },
    /// The event store kept failing after every retry.
    #[error("projection `{projection}` could not read the event store: retry once it is back")]
    Read {
        /// The projection.
        projection: String,
        /// The store's last error.
        #[source]
        source: SubscriptionError,
    },
    /// The event store's head could not be read (for a rebuild's total).
    #[error("projection `{projection}` could not read the event store's head")]
    Head {
        /// The projection.
        projection: String,
        /// The store's error.
        #[source]
        source: StoreError,
    },
    /// The checkpoint store kept failing after every retry (or refused a name).
    #[error("projection `{projection}` could not use its checkpoint store: retry once it is back")]
    Checkpoint {
        /// The projection.
        projection: String,
        /// The store's last error.
        #[source]
        source: CheckpointError,
    },
    /// The runner's task panicked or was cancelled from outside.
    #[error("the runner of projection `{projection}` ended abnormally: {reason}")]
    Aborted {
        /// The projection.
        projection: String,
        /// What the task's join said.
        reason: String,
    },
}

/// [`ProjectionRunner::wait_for`](super::ProjectionRunner::wait_for) gave up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WaitError {
    /// The deadline passed first.
    #[error(
        "projection `{projection}` reached position {reached}, not {position}, by the deadline: \
         answer from the write side, or wait longer"
    )]
    Timeout {
        /// The projection.
        projection: String,
        /// The position waited for.
        position: u64,
        /// The position it had processed through at the deadline.
        reached: u64,
    },
    /// The runner stopped before reaching the position.
    #[error(
        "the runner of projection `{projection}` stopped at position {reached}, before {position}"
    )]
    Stopped {
        /// The projection.
        projection: String,
        /// The position waited for.
        position: u64,
        /// The position it had processed through.
        reached: u64,
    },
}
