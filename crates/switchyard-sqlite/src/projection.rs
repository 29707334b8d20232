//! A read model kept in SQLite, run by a `ProjectionRunner`: each batch's writes and the
//! projection's checkpoint commit in one transaction.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, Transaction, TransactionBehavior};
use switchyard_aggregates::DecodedEvent;
use switchyard_projections::checkpoint::CheckpointError;
use switchyard_projections::{BoxError, CheckpointLease, CommitError, Projection};
use tokio::runtime::{Handle, RuntimeFlavor};

use crate::checkpoints::{reset_checkpoint_in, save_checkpoint_in};

/// How long [`SqliteProjection::open`]'s connection waits for the file's write lock, held by
/// the store's writer or another connection: long against a group commit, short enough that a
/// stuck writer surfaces as an error the runner retries.
pub const PROJECTION_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// A read model kept in SQLite tables: what a user implements, and runs as a
/// [`SqliteProjection`].
///
/// Each method is handed the open transaction its writes belong to: the runner's checkpoint is
/// written in the same transaction, so a batch's effects land exactly once, whatever crashes.
/// Both are called on a thread that may block (the transaction is synchronous); neither may
/// commit or roll `tx` back.
pub trait SqliteReadModel: Send + 'static {
    /// The events it reads, as [`Projection::Event`].
    type Event: Send + Sync + 'static;

    /// Writes one batch's effects (never empty), in order, in `tx`. An error rolls the whole
    /// transaction back, checkpoint included; the runner retries the batch.
    ///
    /// # Errors
    ///
    /// Whatever stops the batch; the runner logs it and retries.
    fn apply(
        &mut self,
        tx: &Transaction<'_>,
        batch: &[DecodedEvent<Self::Event>],
    ) -> Result<(), BoxError>;

    /// Empties the read model in `tx`, before a rebuild (the checkpoint is set back to the
    /// origin in the same transaction).
    ///
    /// # Errors
    ///
    /// Whatever stops it; the rebuild does not start.
    fn reset(&mut self, tx: &Transaction<'_>) -> Result<(), BoxError>;
}

/// Runs a [`SqliteReadModel`] as a [`Projection`], on a connection of its own to the file of
/// the [`SqliteStore`](crate::SqliteStore) the runner keeps its checkpoints in.
///
/// For each batch it begins an `IMMEDIATE` transaction, saves the checkpoint in it (fenced by
/// the runner's lease, as [`save_checkpoint_in`] is), has the read model write the batch, and
/// commits: the batch's effects and the checkpoint land together or not at all. A batch
/// already checkpointed (an earlier commit whose answer was lost) writes nothing, and a runner
/// that lost its lease writes nothing either, so each event's effect lands **exactly once**
/// across crashes, restarts and takeovers. A rebuild empties the read model and resets the
/// checkpoint in one transaction too.
///
/// On a multi-threaded Tokio runtime the transaction runs in
/// [`block_in_place`](tokio::task::block_in_place), so the runtime's other tasks go on; on a
/// current-thread runtime it runs inline, blocking the runtime for its duration.
///
/// # Examples
///
/// ```
/// use rusqlite::Transaction;
/// use switchyard_aggregates::DecodedEvent;
/// use switchyard_projections::BoxError;
/// use switchyard_sqlite::{SqliteProjection, SqliteReadModel, SqliteStore};
///
/// /// How many events each stream has.
/// struct EventCounts;
///
/// impl SqliteReadModel for EventCounts {
///     type Event = serde_json::Value;
///
///     fn apply(
///         &mut self,
///         tx: &Transaction<'_>,
///         batch: &[DecodedEvent<Self::Event>],
///     ) -> Result<(), BoxError> {
///         let mut upsert = tx.prepare_cached(
///             "INSERT INTO event_counts (stream, events) VALUES (?1, 1)
///              ON CONFLICT (stream) DO UPDATE SET events = events + 1",
///         )?;
///         for event in batch {
///             upsert.execute([&event.stream])?;
///         }
///         Ok(())
///     }
///
///     fn reset(&mut self, tx: &Transaction<'_>) -> Result<(), BoxError> {
///         tx.execute("DELETE FROM event_counts", [])?;
///         Ok(())
///     }
/// }
///
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("app.db");
/// let store = SqliteStore::open(&path)?;
/// let projection = SqliteProjection::open(&path, EventCounts)?;
/// projection.connection().execute_batch(
///     "CREATE TABLE IF NOT EXISTS event_counts (stream TEXT PRIMARY KEY, events INTEGER)",
/// )?;
/// // ProjectionRunner::builder("event-counts", projection, store.clone(), store)
/// //     .aggregate::<MyAggregate>()
/// //     .start()?;
/// # Ok::<_, Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct SqliteProjection<M> {
    model: M,
    connection: Connection,
}

impl<M> SqliteProjection<M> {
    /// Runs `model` on `connection`, which must be open on the store's file (opened by the
    /// store first, so its `checkpoints` table exists) with a busy timeout: the store's writer
    /// shares the file.
    pub fn new(model: M, connection: Connection) -> Self {
        Self { model, connection }
    }

    /// Runs `model` on a new connection to the store's file at `path`, waiting up to
    /// [`PROJECTION_BUSY_TIMEOUT`] for its write lock.
    ///
    /// # Errors
    ///
    /// SQLite's, when the file cannot be opened.
    pub fn open(path: impl AsRef<Path>, model: M) -> rusqlite::Result<Self> {
        let connection = Connection::open(path)?;
        connection.busy_timeout(PROJECTION_BUSY_TIMEOUT)?;
        Ok(Self::new(model, connection))
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
    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    /// The read model and its connection.
    pub fn into_parts(self) -> (M, Connection) {
        (self.model, self.connection)
    }
}

impl<M: SqliteReadModel> SqliteProjection<M> {
    /// Runs `write` in an `IMMEDIATE` transaction, committed when it succeeds.
    fn transaction(
        &mut self,
        write: impl FnOnce(&mut M, &Transaction<'_>) -> Result<(), CommitError>,
    ) -> Result<(), CommitError> {
        let (model, connection) = (&mut self.model, &mut self.connection);
        blocking(move || {
            let tx = connection
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(database_failed)?;
            // Dropping `tx` on an error rolls it back: nothing of the batch stays.
            write(model, &tx)?;
            tx.commit().map_err(database_failed)
        })
    }
}

impl<M: SqliteReadModel> Projection for SqliteProjection<M> {
    type Event = M::Event;

    /// Applies `batch` in a transaction of its own, without a checkpoint (the runner calls
    /// [`commit`](Projection::commit) instead).
    async fn apply(&mut self, batch: &[DecodedEvent<Self::Event>]) -> Result<(), BoxError> {
        self.transaction(|model, tx| model.apply(tx, batch).map_err(CommitError::Projection))
            .map_err(commit_failed)
    }

    /// Empties the read model in a transaction of its own, without touching the checkpoint.
    async fn reset(&mut self) -> Result<(), BoxError> {
        self.transaction(|model, tx| model.reset(tx).map_err(CommitError::Projection))
            .map_err(commit_failed)
    }

    async fn commit(
        &mut self,
        batch: &[DecodedEvent<Self::Event>],
        position: u64,
        lease: CheckpointLease<'_>,
    ) -> Result<(), CommitError> {
        let token = lease.token();
        self.transaction(|model, tx| {
            // The checkpoint first: a lost lease or a batch already committed stops the
            // transaction before the read model is written.
            save_checkpoint_in(tx, token, position)?;
            if batch.is_empty() {
                return Ok(());
            }
            model.apply(tx, batch).map_err(CommitError::Projection)
        })
    }

    async fn commit_reset(&mut self, lease: CheckpointLease<'_>) -> Result<(), CommitError> {
        let token = lease.token();
        self.transaction(|model, tx| {
            reset_checkpoint_in(tx, token)?;
            model.reset(tx).map_err(CommitError::Projection)
        })
    }
}

/// The read model's database failed to begin or commit: the checkpoint did not move, so the
/// runner retries the batch.
fn database_failed(error: rusqlite::Error) -> CommitError {
    CommitError::Checkpoint(CheckpointError::backend(error))
}

fn commit_failed(error: CommitError) -> BoxError {
    match error {
        CommitError::Projection(source) => source,
        other => Box::new(other),
    }
}

/// Runs `work`, which blocks on SQLite, without stalling a multi-threaded runtime's other
/// tasks.
fn blocking<T>(work: impl FnOnce() -> T) -> T {
    match Handle::try_current() {
        Ok(runtime) if runtime.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(work)
        }
        _ => work(),
    }
}
