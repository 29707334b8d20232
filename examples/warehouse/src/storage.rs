//! Opening what a configuration names: the event store, the checkpoint store and the product
//! list, all in one place (memory, one SQLite file, or one PostgreSQL schema).

use std::sync::Arc;

use switchyard::aggregates::store::{EventStore, MemoryStore};
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
            database: describe(&config.database),
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

/// The database as the command line names it.
pub(crate) fn describe(database: &Database) -> String {
    match database {
        Database::Memory => "memory".to_owned(),
        Database::Sqlite(path) => format!("the SQLite file {}", path.display()),
        Database::Postgres { schema, .. } => format!("PostgreSQL (schema `{schema}`)"),
    }
}
