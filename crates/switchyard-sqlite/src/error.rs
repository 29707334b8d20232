//! Errors of opening a SQLite store.

use std::path::PathBuf;

/// The store could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SqliteError {
    /// SQLite could not open or configure the database file.
    #[error(
        "cannot open SQLite database `{path}`: {source} (check that the directory exists and is writable)"
    )]
    Open {
        /// The file (`:memory:` for an in-memory store).
        path: PathBuf,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
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

/// The store's worker threads are gone: the store was closed, or a worker stopped after a
/// panic. Open the store again.
#[derive(Debug, thiserror::Error)]
#[error("the SQLite store's worker threads have stopped; open the store again")]
pub(crate) struct WorkersStopped;

/// A write panicked inside the writer thread (a bug); it was rolled back alone.
#[derive(Debug, thiserror::Error)]
#[error("a write panicked in the SQLite writer thread and was rolled back")]
pub(crate) struct WritePanicked;
