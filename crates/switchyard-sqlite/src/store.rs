//! The store handle: opening a database and reaching its worker threads.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::head::Head;
use crate::worker::{Batching, Workers};
use crate::{SqliteError, SqliteOptions, database};

/// A SQLite database holding Switchyard's data. Cheap to clone: clones share the database's
/// worker threads, which stop when the last clone is dropped.
///
/// With the `events` feature it is an event store, a snapshot store and a state store of
/// `switchyard-aggregates`.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    pub(crate) workers: Workers,
    path: Option<Arc<Path>>,
}

impl SqliteStore {
    /// Opens (creating it if needed) the database file at `path` with the default options:
    /// [`Synchronous::Full`](crate::Synchronous::Full), so an acknowledged write survives a
    /// power loss. The schema is created or migrated on the spot.
    ///
    /// Blocks while it opens the file; call it at start-up, or from `spawn_blocking`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, SqliteError> {
        Self::open_with(path, SqliteOptions::default())
    }

    /// Opens the store already in the file at `path`, with the default options, and refuses
    /// to start a new one: a missing file is [`SqliteError::Missing`], and a file that holds no
    /// Switchyard store (truncated to 0 bytes, or an empty SQLite database) is
    /// [`SqliteError::NoStore`], left untouched. Use it wherever data is expected (a restart, a
    /// tool reading a store): [`open`](Self::open) would silently start an empty store in such
    /// a file. The same as [`open_with`](Self::open_with) with
    /// [`SqliteOptions::create_if_missing`]`(false)`.
    ///
    /// # Examples
    ///
    /// ```
    /// use switchyard_sqlite::{SqliteError, SqliteStore};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("store.db");
    /// assert!(matches!(SqliteStore::open_existing(&path), Err(SqliteError::Missing { .. })));
    /// drop(SqliteStore::open(&path)?); // creates it
    /// let store = SqliteStore::open_existing(&path)?;
    /// # drop(store);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open), and [`SqliteError::Missing`] or [`SqliteError::NoStore`].
    pub fn open_existing(path: impl AsRef<Path>) -> Result<Self, SqliteError> {
        Self::open_with(path, SqliteOptions::default().create_if_missing(false))
    }

    /// Opens the database file at `path` with `options`.
    pub fn open_with(path: impl AsRef<Path>, options: SqliteOptions) -> Result<Self, SqliteError> {
        let path = path.as_ref();
        let writer = database::open_writer(path, &options)?;
        let readers = (0..options.readers_count())
            .map(|_| database::open_reader(path, &options))
            .collect::<Result<Vec<_>, _>>()?;
        let head = Head::read_from(&writer).map_err(|source| SqliteError::Open {
            path: path.to_owned(),
            source,
        })?;
        let workers = Workers::start(
            writer,
            readers,
            Batching::up_to(options.batch_limit()),
            head,
        )?;
        tracing::debug!(path = %path.display(), ?options, "opened SQLite store");
        Ok(Self {
            workers,
            path: Some(Arc::from(path)),
        })
    }

    /// A private database in memory, gone when the last clone is dropped: for tests and
    /// throwaway runs. Reads and writes share one connection.
    pub fn in_memory() -> Result<Self, SqliteError> {
        let options = SqliteOptions::default();
        let writer = database::open_in_memory(&options)?;
        let head = Head::read_from(&writer).map_err(|source| SqliteError::Open {
            path: PathBuf::from(":memory:"),
            source,
        })?;
        let workers = Workers::start(
            writer,
            Vec::new(),
            Batching::up_to(options.batch_limit()),
            head,
        )?;
        Ok(Self {
            workers,
            path: None,
        })
    }

    /// The database file, or `None` in memory.
    pub fn path(&self) -> Option<PathBuf> {
        self.path.as_deref().map(Path::to_owned)
    }
}
