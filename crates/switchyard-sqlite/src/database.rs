//! Opening connections: pragmas and the schema, migrated by the store itself.

use std::path::Path;

use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use crate::{SqliteError, SqliteOptions};

/// `SWYD`: marks a file as Switchyard's, so a foreign database is refused, not altered.
const APPLICATION_ID: i64 = 0x5357_5944;

/// The schema, as numbered migrations; `PRAGMA user_version` counts those applied.
const MIGRATIONS: &[(&str, &str)] = &[
    ("0001_events", include_str!("../migrations/0001_events.sql")),
    ("0002_alarms", include_str!("../migrations/0002_alarms.sql")),
    (
        "0003_alarm_attempts",
        include_str!("../migrations/0003_alarm_attempts.sql"),
    ),
    (
        "0004_checkpoints",
        include_str!("../migrations/0004_checkpoints.sql"),
    ),
    (
        "0005_parked_events",
        include_str!("../migrations/0005_parked_events.sql"),
    ),
];

/// Opens the writer's connection to a file, in WAL mode, and brings its schema up to date.
pub(crate) fn open_writer(path: &Path, options: &SqliteOptions) -> Result<Connection, SqliteError> {
    let open_error = |source| SqliteError::Open {
        path: path.to_owned(),
        source,
    };
    let mut conn = if options.creates() {
        Connection::open(path).map_err(open_error)?
    } else {
        open_existing(path)?
    };
    conn.busy_timeout(options.busy()).map_err(open_error)?;
    if !options.creates() {
        refuse_if_no_store(&conn, path)?;
    }
    let mode: String = conn
        .query_row(include_str!("sql/journal_mode_wal.sql"), [], |row| {
            row.get(0)
        })
        .map_err(open_error)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(open_error(rusqlite::Error::InvalidParameterName(format!(
            "journal_mode stayed `{mode}`: WAL is required"
        ))));
    }
    configure(&conn, options).map_err(open_error)?;
    migrate(&mut conn, path)?;
    Ok(conn)
}

/// Opens a file that must exist, without creating it.
fn open_existing(path: &Path) -> Result<Connection, SqliteError> {
    match std::fs::metadata(path) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Err(SqliteError::Missing {
                path: path.to_owned(),
            });
        }
        // A store's file is never empty: WAL mode is recorded in its first page. An empty file
        // beside a leftover `-wal` file would otherwise open with whatever pages that log holds.
        Ok(meta) if meta.len() == 0 => {
            return Err(SqliteError::NoStore {
                path: path.to_owned(),
                bytes: 0,
            });
        }
        // Any other answer is SQLite's to give, with its own error.
        _ => {}
    }
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_URI
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    Connection::open_with_flags(path, flags).map_err(|source| match source.sqlite_error_code() {
        // Removed between the look and the open.
        Some(rusqlite::ErrorCode::CannotOpen) if !path.exists() => SqliteError::Missing {
            path: path.to_owned(),
        },
        _ => SqliteError::Open {
            path: path.to_owned(),
            source,
        },
    })
}

/// Refuses a file without Switchyard's mark (empty, or a database nothing was written to),
/// before anything is written to it.
fn refuse_if_no_store(conn: &Connection, path: &Path) -> Result<(), SqliteError> {
    let application_id: i64 = conn
        .pragma_query_value(None, "application_id", |row| row.get(0))
        .map_err(|source| SqliteError::Open {
            path: path.to_owned(),
            source,
        })?;
    if application_id == 0 {
        return Err(SqliteError::NoStore {
            path: path.to_owned(),
            bytes: std::fs::metadata(path).map_or(0, |meta| meta.len()),
        });
    }
    Ok(())
}

/// Opens a reader's connection to a file the writer already opened.
pub(crate) fn open_reader(path: &Path, options: &SqliteOptions) -> Result<Connection, SqliteError> {
    let open_error = |source| SqliteError::Open {
        path: path.to_owned(),
        source,
    };
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(open_error)?;
    conn.busy_timeout(options.busy()).map_err(open_error)?;
    conn.pragma_update(None, "query_only", true)
        .map_err(open_error)?;
    reuse_statements(&conn).map_err(open_error)?;
    Ok(conn)
}

/// Opens a private database in memory, with the schema.
pub(crate) fn open_in_memory(options: &SqliteOptions) -> Result<Connection, SqliteError> {
    let path = Path::new(":memory:");
    let mut conn = Connection::open_in_memory().map_err(|source| SqliteError::Open {
        path: path.to_owned(),
        source,
    })?;
    configure(&conn, options).map_err(|source| SqliteError::Open {
        path: path.to_owned(),
        source,
    })?;
    migrate(&mut conn, path)?;
    Ok(conn)
}

fn configure(conn: &Connection, options: &SqliteOptions) -> rusqlite::Result<()> {
    conn.pragma_update(None, "synchronous", options.synchronous_mode().pragma())?;
    reuse_statements(conn)
}

/// Statements are prepared once per connection and reused, and stay compiled whatever is bound
/// to them. Without the query planner stability guarantee, SQLite (built with `STAT4`, as
/// rusqlite bundles it) marks statements whose plan might depend on a bound value (a stream
/// name compared with an indexed column, a `LIMIT`) to be compiled again at every new binding:
/// a quarter of the writer's time went to recompiling its two look-ups per append.
fn reuse_statements(conn: &Connection) -> rusqlite::Result<()> {
    conn.set_prepared_statement_cache_capacity(64);
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)
        .map(drop)
}

/// Applies the migrations not yet applied, in one transaction: a failure leaves the file as it
/// was, and two processes opening a new file at once migrate it once.
fn migrate(conn: &mut Connection, path: &Path) -> Result<(), SqliteError> {
    let open_error = |source| SqliteError::Open {
        path: path.to_owned(),
        source,
    };
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(open_error)?;
    let application_id: i64 = tx
        .pragma_query_value(None, "application_id", |row| row.get(0))
        .map_err(open_error)?;
    let applied: i64 = tx
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(open_error)?;
    let known = MIGRATIONS.len() as i64;
    if application_id != 0 && application_id != APPLICATION_ID {
        return Err(SqliteError::ForeignDatabase {
            path: path.to_owned(),
            found: application_id,
        });
    }
    if application_id == 0 {
        let objects: i64 = tx
            .query_row(include_str!("sql/schema_objects.sql"), [], |row| row.get(0))
            .map_err(open_error)?;
        if objects != 0 || applied != 0 {
            return Err(SqliteError::ForeignDatabase {
                path: path.to_owned(),
                found: 0,
            });
        }
    }
    if applied > known {
        return Err(SqliteError::NewerSchema {
            path: path.to_owned(),
            found: applied,
            known,
        });
    }
    if applied == known {
        return Ok(());
    }
    for (name, sql) in MIGRATIONS.iter().skip(applied as usize) {
        tx.execute_batch(sql)
            .map_err(|source| SqliteError::Migration {
                path: path.to_owned(),
                migration: name,
                source,
            })?;
        tracing::info!(path = %path.display(), migration = name, "applied migration");
    }
    tx.pragma_update(None, "application_id", APPLICATION_ID)
        .map_err(open_error)?;
    tx.pragma_update(None, "user_version", known)
        .map_err(open_error)?;
    tx.commit().map_err(open_error)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_foreign_database_is_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("foreign.db");
        let other = Connection::open(&path).unwrap();
        other
            .execute_batch("CREATE TABLE mine (x); PRAGMA user_version = 3;")
            .unwrap();
        drop(other);
        let error = open_writer(&path, &SqliteOptions::default()).unwrap_err();
        assert!(
            matches!(error, SqliteError::ForeignDatabase { .. }),
            "{error}"
        );
        let other = Connection::open(&path).unwrap();
        let tables: i64 = other
            .query_row(
                "SELECT count(*) FROM sqlite_schema WHERE type = 'table'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(tables, 1, "nothing was added to the foreign file");
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("newer.db");
        drop(open_writer(&path, &SqliteOptions::default()).unwrap());
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        drop(conn);
        let error = open_writer(&path, &SqliteOptions::default()).unwrap_err();
        assert!(
            matches!(error, SqliteError::NewerSchema { found: 99, .. }),
            "{error}"
        );
    }

    #[test]
    fn reopening_migrates_nothing_twice() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("twice.db");
        drop(open_writer(&path, &SqliteOptions::default()).unwrap());
        let conn = open_writer(&path, &SqliteOptions::default()).unwrap();
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, MIGRATIONS.len() as i64);
    }
}
