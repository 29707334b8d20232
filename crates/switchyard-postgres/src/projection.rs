//! A read model kept in PostgreSQL, run by a `ProjectionRunner`: each batch's writes and the
//! projection's checkpoint commit in one transaction.

use std::future::Future;

use switchyard_aggregates::DecodedEvent;
use switchyard_projections::checkpoint::CheckpointError;
use switchyard_projections::{BoxError, CheckpointLease, CommitError, Projection};
use tokio_postgres::{Client, Transaction};

use crate::checkpoints::{reset_checkpoint_in, save_checkpoint_in};

/// A read model kept in PostgreSQL tables: what a user implements, and runs as a
/// [`PostgresProjection`].
///
/// Each method is handed the open transaction its writes belong to: the runner's checkpoint is
/// written in the same transaction, so a batch's effects land exactly once, whatever crashes.
/// Neither may commit or roll `tx` back.
pub trait PostgresReadModel: Send + 'static {
    /// The events it reads, as [`Projection::Event`].
    type Event: Send + Sync + 'static;

    /// Writes one batch's effects (never empty), in order, in `tx`. An error rolls the whole
    /// transaction back, checkpoint included; the runner retries the batch.
    fn apply(
        &mut self,
        tx: &Transaction<'_>,
        batch: &[DecodedEvent<Self::Event>],
    ) -> impl Future<Output = Result<(), BoxError>> + Send;

    /// Empties the read model in `tx`, before a rebuild (the checkpoint is set back to the
    /// origin in the same transaction).
    fn reset(&mut self, tx: &Transaction<'_>) -> impl Future<Output = Result<(), BoxError>> + Send;
}

/// Runs a [`PostgresReadModel`] as a [`Projection`], on a connection of its own to the
/// database of the [`PostgresStore`](crate::PostgresStore) the runner keeps its checkpoints
/// in.
///
/// For each batch it begins a transaction, saves the checkpoint in it (fenced by the runner's
/// lease, as [`save_checkpoint_in`] is: the checkpoint's row stays locked until the commit, so
/// a runner taking over waits for it), has the read model write the batch, and commits: the
/// batch's effects and the checkpoint land together or not at all. A batch already
/// checkpointed (an earlier commit whose answer was lost) writes nothing, and a runner that lost
/// its lease writes nothing either, so each event's effect lands **exactly once** across
/// crashes, restarts and takeovers. A rebuild empties the read model and resets the checkpoint
/// in one transaction too.
///
/// The connection is the caller's: it must have the store's schema
/// ([`PostgresStore::schema`](crate::PostgresStore::schema)) on its search path
/// (`SELECT set_config('search_path', $1, false)`), and its connection task must run. A
/// connection that broke stays broken: every batch then fails, and the runner stops once its
/// retries are spent; start it again on a new connection.
pub struct PostgresProjection<M> {
    model: M,
    client: Client,
}

impl<M> std::fmt::Debug for PostgresProjection<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresProjection").finish_non_exhaustive()
    }
}

impl<M> PostgresProjection<M> {
    /// Runs `model` on `client` (see the type's docs for what the connection must be).
    pub fn new(model: M, client: Client) -> Self {
        Self { model, client }
    }

    /// The read model.
    pub fn get_ref(&self) -> &M {
        &self.model
    }

    /// The read model, mutably.
    pub fn get_mut(&mut self) -> &mut M {
        &mut self.model
    }

    /// The connection the read model is written on: to read it, or create its tables.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The read model and its connection.
    pub fn into_parts(self) -> (M, Client) {
        (self.model, self.client)
    }
}

impl<M: PostgresReadModel> Projection for PostgresProjection<M> {
    type Event = M::Event;

    /// Applies `batch` in a transaction of its own, without a checkpoint (the runner calls
    /// [`commit`](Projection::commit) instead).
    async fn apply(&mut self, batch: &[DecodedEvent<Self::Event>]) -> Result<(), BoxError> {
        let tx = self.client.transaction().await?;
        self.model.apply(&tx, batch).await?;
        Ok(tx.commit().await?)
    }

    /// Empties the read model in a transaction of its own, without touching the checkpoint.
    async fn reset(&mut self) -> Result<(), BoxError> {
        let tx = self.client.transaction().await?;
        self.model.reset(&tx).await?;
        Ok(tx.commit().await?)
    }

    async fn commit(
        &mut self,
        batch: &[DecodedEvent<Self::Event>],
        position: u64,
        lease: CheckpointLease<'_>,
    ) -> Result<(), CommitError> {
        let tx = self.client.transaction().await.map_err(not_begun)?;
        // The checkpoint first: a lost lease or a batch already committed stops the
        // transaction before the read model is written. Dropping `tx` on an error rolls it
        // back.
        save_checkpoint_in(&tx, lease.token(), position).await?;
        if !batch.is_empty() {
            self.model
                .apply(&tx, batch)
                .await
                .map_err(CommitError::Projection)?;
        }
        tx.commit().await.map_err(commit_unknown)
    }

    async fn commit_reset(&mut self, lease: CheckpointLease<'_>) -> Result<(), CommitError> {
        let tx = self.client.transaction().await.map_err(not_begun)?;
        reset_checkpoint_in(&tx, lease.token()).await?;
        self.model
            .reset(&tx)
            .await
            .map_err(CommitError::Projection)?;
        tx.commit().await.map_err(commit_unknown)
    }
}

fn not_begun(error: tokio_postgres::Error) -> CommitError {
    CommitError::Checkpoint(CheckpointError::backend(error))
}

/// A commit whose answer was lost may have landed: the runner's retry finds out, its fenced
/// save refused as not forward when it did.
fn commit_unknown(error: tokio_postgres::Error) -> CommitError {
    CommitError::Checkpoint(CheckpointError::unknown(error))
}
