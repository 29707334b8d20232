//! Errors of opening a SQLite store.

use std::path::PathBuf;

/// The store could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SqliteError {
    /// SQLite could not open or configure the database file. The message says what to do,
    /// depending on SQLite's error: a directory that is missing or not writable, a file that is
    /// not a database or is damaged, a lock held by another process, a full disk.
    #[error("cannot open SQLite database `{path}`: {source}; {}", open_advice(.source))]
    Open {
        /// The file (`:memory:` for an in-memory store).
        path: PathBuf,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// [`SqliteStore::open_existing`](crate::SqliteStore::open_existing) found no file at the
    /// path. Check the path; open with [`SqliteStore::open`](crate::SqliteStore::open) to
    /// create a new store.
    #[error(
        "no SQLite store at `{path}`: the file does not exist; check the path, or open it with \
         `SqliteStore::open` to create a new, empty store"
    )]
    Missing {
        /// The path.
        path: PathBuf,
    },
    /// [`SqliteStore::open_existing`](crate::SqliteStore::open_existing) found a file that holds
    /// no Switchyard store: empty (a truncated file), or a SQLite database with nothing in it.
    /// The file is left untouched. Restore it from a backup, or check the path.
    #[error(
        "`{path}` holds no Switchyard store ({bytes} bytes): it was truncated, replaced or never \
         written; restore it from a backup or check the path (`SqliteStore::open` would start \
         a new, empty store in it)"
    )]
    NoStore {
        /// The file.
        path: PathBuf,
        /// Its size in bytes.
        bytes: u64,
    },
    /// The file belongs to another application.
    #[error(
        "`{path}` is a SQLite database of another application (application id {found:#x}); give Switchyard its own file"
    )]
    ForeignDatabase {
        /// The file.
        path: PathBuf,
        /// The application id found in it.
        found: i64,
    },
    /// The file was written by a newer Switchyard, whose schema this version does not know.
    #[error(
        "`{path}` has schema version {found}, newer than the {known} this version of switchyard-sqlite knows; upgrade switchyard-sqlite"
    )]
    NewerSchema {
        /// The file.
        path: PathBuf,
        /// The schema version in the file.
        found: i64,
        /// The latest schema version this crate knows.
        known: i64,
    },
    /// A migration failed; the file is left at its previous schema version.
    #[error("migration `{migration}` of `{path}` failed: {source}")]
    Migration {
        /// The file.
        path: PathBuf,
        /// The migration's name.
        migration: &'static str,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// A worker thread could not be started.
    #[error("cannot start a SQLite worker thread: {0}")]
    Thread(#[source] std::io::Error),
}

/// What to do about SQLite's error on opening a file.
fn open_advice(error: &rusqlite::Error) -> &'static str {
    use rusqlite::ErrorCode;
    match error.sqlite_error_code() {
        Some(ErrorCode::CannotOpen | ErrorCode::PermissionDenied | ErrorCode::ReadOnly) => {
            "check that the directory exists and is writable"
        }
        Some(ErrorCode::NotADatabase) => {
            "the file is not a SQLite database (or is encrypted): check the path, and give \
             Switchyard a file of its own"
        }
        Some(ErrorCode::DatabaseCorrupt) => "the file is damaged: restore it from a backup",
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            "another process holds the database's lock: stop it, or raise \
             `SqliteOptions::busy_timeout`"
        }
        Some(ErrorCode::DiskFull) => "the disk is full: free space, then open it again",
        Some(ErrorCode::SystemIoFailure) => {
            "the disk failed to read or write: check the disk and its file system"
        }
        _ if matches!(error, rusqlite::Error::InvalidParameterName(_)) => {
            "the file system must support WAL mode (shared memory): use a local disk, not a \
             network share"
        }
        _ => "check the file, its directory and the disk",
    }
}

/// The store's worker threads are gone: the store was closed, or a worker stopped after a
/// panic. Open the store again.
#[derive(Debug, thiserror::Error)]
#[error("the SQLite store's worker threads have stopped; open the store again")]
pub(crate) struct WorkersStopped;

/// A write panicked inside the writer thread (a bug); it was rolled back alone.
#[derive(Debug, thiserror::Error)]
#[error("a write panicked in the SQLite writer thread and was rolled back")]
pub(crate) struct WritePanicked;
