//! A batch's effects and its checkpoint, committed together: what
//! [`Projection::commit`](super::Projection::commit) is handed, and how it fails.

use crate::checkpoint::{CheckpointError, CheckpointStore, LeaseToken};

/// The runner's lease on a projection's checkpoint, handed to
/// [`Projection::commit`](super::Projection::commit) and
/// [`Projection::commit_reset`](super::Projection::commit_reset): the token a fenced write
/// names, and the store the runner keeps its checkpoint in.
///
/// A projection whose read model lives in the checkpoint store's database writes the checkpoint
/// in its own transaction with the [`token`](Self::token) (`switchyard_sqlite::save_checkpoint_in`,
/// `switchyard_postgres::save_checkpoint_in`); any other saves through
/// [`save`](Self::save).
#[derive(Clone, Copy)]
pub struct CheckpointLease<'a> {
    checkpoints: &'a dyn CheckpointStore,
    token: &'a LeaseToken,
}

impl std::fmt::Debug for CheckpointLease<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointLease")
            .field("token", self.token)
            .finish_non_exhaustive()
    }
}

impl<'a> CheckpointLease<'a> {
    /// The lease `token` on a checkpoint kept in `checkpoints`.
    pub fn new(checkpoints: &'a dyn CheckpointStore, token: &'a LeaseToken) -> Self {
        Self { checkpoints, token }
    }

    /// The lease's token, for a fenced write in a transaction of the projection's own.
    pub fn token(&self) -> &'a LeaseToken {
        self.token
    }

    /// The checkpoint store the runner uses.
    pub fn checkpoints(&self) -> &'a dyn CheckpointStore {
        self.checkpoints
    }

    /// Saves `position` through the checkpoint store ([`CheckpointStore::save`]).
    ///
    /// # Errors
    ///
    /// The store's, as [`CheckpointStore::save`] says.
    pub async fn save(&self, position: u64) -> Result<(), CheckpointError> {
        self.checkpoints.save(self.token, position).await
    }

    /// Sets the checkpoint back to the origin through the store ([`CheckpointStore::reset`]).
    ///
    /// # Errors
    ///
    /// The store's, as [`CheckpointStore::reset`] says.
    pub async fn reset(&self) -> Result<(), CheckpointError> {
        self.checkpoints.reset(self.token).await
    }
}

/// Why [`Projection::commit`](super::Projection::commit) or
/// [`Projection::commit_reset`](super::Projection::commit_reset) failed. Either way the
/// checkpoint did not move (a transactional projection rolled its read model's writes back with
/// it), and the runner decides what comes next.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CommitError {
    /// The projection (or its read model's database) failed: the runner retries the batch
    /// with backoff, and stops with [`RunnerError::Projection`](super::RunnerError::Projection)
    /// (or [`RunnerError::Reset`](super::RunnerError::Reset)) once its retries are spent.
    #[error("the projection failed")]
    Projection(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The checkpoint write was refused or failed. On
    /// [`CheckpointError::LeaseLost`] the runner stands by; on
    /// [`CheckpointError::NotForward`] past the batch (an earlier attempt of unknown outcome
    /// committed) it goes on; a backend failure is retried with backoff.
    #[error("the checkpoint was not written")]
    Checkpoint(#[source] CheckpointError),
}

impl From<CheckpointError> for CommitError {
    fn from(error: CheckpointError) -> Self {
        Self::Checkpoint(error)
    }
}
