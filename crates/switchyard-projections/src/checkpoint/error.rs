//! Errors of checkpoint stores.

use switchyard_messaging::names::NameError;

/// A checkpoint store could not do what was asked. Nothing was written, except for
/// [`Unknown`](CheckpointError::Unknown), where the store cannot tell.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// The lease a fenced write named is no longer the current one: another runner took the
    /// projection over, or the lease was released. The runner must stop processing the
    /// projection (its work since the last save will be done again by the new holder), and
    /// [acquire](super::CheckpointStore::acquire) the lease anew before it runs it again.
    #[error(
        "the lease on projection `{projection}` granted to `{holder}` (generation {generation}) \
         is no longer held: stop running the projection and acquire its lease again"
    )]
    LeaseLost {
        /// The projection.
        projection: String,
        /// The holder the lease was granted to.
        holder: String,
        /// The generation the lease was granted in.
        generation: u64,
    },
    /// A save did not move the checkpoint forward: the projection has already processed
    /// through `current`. Save only positions after the last one saved; to process again from
    /// the origin, [reset](super::CheckpointStore::reset) first.
    #[error(
        "the checkpoint of projection `{projection}` is at {current}, so saving {position} would \
         not move it forward: save a later position, or reset the checkpoint first"
    )]
    NotForward {
        /// The projection.
        projection: String,
        /// The position refused.
        position: u64,
        /// The position stored.
        current: u64,
    },
    /// A position beyond [`MAX_POSITION`](super::MAX_POSITION), which no event store records.
    #[error(
        "position {position} is beyond the highest position a checkpoint keeps ({}): save a \
         position an event store recorded",
        super::MAX_POSITION
    )]
    PositionTooLarge {
        /// The position refused.
        position: u64,
    },
    /// A parked event names another projection than the lease it was parked with: park an
    /// event with its own projection's lease.
    #[error(
        "an event of projection `{parked}` was parked with the lease on projection `{lease}`: \
         park it with its own projection's lease"
    )]
    ProjectionMismatch {
        /// The projection of the lease.
        lease: String,
        /// The projection the parked event names.
        parked: String,
    },
    /// A projection name or lease holder breaks the name rule; choose another.
    #[error(transparent)]
    Name(#[from] NameError),
    /// The stored row could not be read back (a value out of range, written by hand).
    #[error("the stored checkpoint of projection `{projection}` is unreadable: {reason}")]
    Corrupt {
        /// The projection.
        projection: String,
        /// What was wrong.
        reason: String,
    },
    /// The backend failed (connection lost, disk full, ...) before anything was written.
    /// Retrying later may succeed.
    #[error("checkpoint store backend failed")]
    Backend {
        /// The driver's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The write was sent but its answer was lost: it may or may not have taken effect.
    /// [Load](super::CheckpointStore::load) the checkpoint (or renew the lease) to find out.
    #[error("checkpoint store write of unknown outcome: load the checkpoint to find out")]
    Unknown {
        /// The driver's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl CheckpointError {
    /// A backend failure from any error.
    pub fn backend(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Backend {
            source: source.into(),
        }
    }

    /// A write of unknown outcome, from the driver's error.
    pub fn unknown(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Unknown {
            source: source.into(),
        }
    }

    /// [`LeaseLost`](Self::LeaseLost) for `lease`.
    pub fn lease_lost(lease: &super::LeaseToken) -> Self {
        Self::LeaseLost {
            projection: lease.projection.clone(),
            holder: lease.holder.clone(),
            generation: lease.generation,
        }
    }
}
