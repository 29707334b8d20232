//! Opening what a configuration names: the event store, the checkpoint store and the product
//! list, all in one place (memory, one SQLite file, or one PostgreSQL schema).

use std::sync::Arc;

use futures::future::BoxFuture;
use switchyard::aggregates::store::{
    EventStore, GlobalReader, MemoryStore, RecordedEvent, StoreError,
};
use switchyard::postgres::{PostgresOptions, PostgresStore};
use switchyard::projections::{CheckpointStore, MemoryCheckpointStore};
use switchyard::sqlite::SqliteStore;

use crate::config::{Config, Database, Mode};
use crate::error::StartError;
use crate::read_model::{MemoryTable, PostgresTable, ProductTable, SqliteTable};

/// The stores of one warehouse.
#[derive(Clone)]
pub(crate) struct Stores {
    pub(crate) events: Arc<dyn EventStore>,
    pub(crate) checkpoints: Arc<dyn CheckpointStore>,
    pub(crate) table: Arc<dyn ProductTable>,
}

/// Opens the stores `config` names.
///
/// # Errors
///
/// [`StartError::Mode`] for a memory database outside `memory-sync` (or the reverse), and the
/// stores' errors.
pub(crate) async fn open(config: &Config) -> Result<Stores, StartError> {
    match (&config.database, config.mode) {
        (Database::Memory, Mode::MemorySync) => Ok(Stores {
            events: Arc::new(MemoryStore::new()),
            checkpoints: Arc::new(MemoryCheckpointStore::new()),
            table: Arc::new(MemoryTable::default()),
        }),
        (Database::Memory, mode) | (_, mode @ Mode::MemorySync) => Err(StartError::Mode {
            mode: mode.name(),
            database: config.database.to_string(),
        }),
        (Database::Sqlite(path), _) => {
            let store = Arc::new(SqliteStore::open(path).map_err(StartError::store)?);
            let table = SqliteTable::open(path).map_err(StartError::ReadModel)?;
            Ok(Stores {
                events: store.clone(),
                checkpoints: store,
                table: Arc::new(table),
            })
        }
        (Database::Postgres { url, schema }, _) => {
            let options = PostgresOptions::default().schema(schema.clone());
            let store = Arc::new(
                PostgresStore::connect_with(url, options)
                    .await
                    .map_err(StartError::store)?,
            );
            // Connecting the store checked the schema's name: a plain identifier.
            let table = PostgresTable::connect(url, schema)
                .await
                .map_err(StartError::ReadModel)?;
            Ok(Stores {
                events: store.clone(),
                checkpoints: store,
                table: Arc::new(table),
            })
        }
    }
}

/// A store read by polling: its [`watch_head`](GlobalReader::watch_head) says it wakes no
/// one, so a subscription reads again every
/// [`DEFAULT_POLL_INTERVAL`](switchyard::projections::DEFAULT_POLL_INTERVAL).
///
/// For a SQLite file followed from a process that does not write it (`warehouse project`):
/// SQLite's wake-up comes from the writer thread of the process that commits, so a projector
/// in another process would wait for a wake-up that never comes. PostgreSQL's `LISTEN/NOTIFY`
/// crosses processes and needs no such thing.
pub(crate) struct Polled(pub(crate) Arc<dyn EventStore>);

impl GlobalReader for Polled {
    fn read_all(
        &self,
        from_position: u64,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<RecordedEvent>, StoreError>> {
        self.0.read_all(from_position, limit)
    }

    fn head(&self) -> BoxFuture<'_, Result<u64, StoreError>> {
        self.0.head()
    }
}

impl Stores {
    /// What a projection in this process reads: the store itself, or, for a SQLite file
    /// another process writes, the store [`Polled`].
    pub(crate) fn followed(
        &self,
        config: &Config,
        writer_elsewhere: bool,
    ) -> Arc<dyn GlobalReader> {
        match config.database {
            Database::Sqlite(_) if writer_elsewhere => Arc::new(Polled(self.events.clone())),
            _ => self.events.clone(),
        }
    }
}
