//! The product list in a table of the event store's SQLite file, on connections of its own.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::{ProductRow, ProductTable, ReadModelError, RowChange};

/// How long a statement waits for the store's writer to let go of the file.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the list's writer sleeps each time it finds the file's write lock taken. The
/// store's writer commits group after group under load, each holding the lock for a sync to
/// disk; SQLite's own busy handler sleeps longer and longer (up to 100 ms) between tries, and
/// the projection, starved between those groups, fell hundreds of milliseconds behind.
const BUSY_PAUSE: Duration = Duration::from_micros(250);

/// The list's writer's busy handler: after `attempts` tries found the lock taken, sleeps
/// [`BUSY_PAUSE`] and tries again (`true`), until [`BUSY_TIMEOUT`] is spent (`false`: the
/// statement fails as busy, and the runner retries the batch).
fn wait_for_lock(attempts: i32) -> bool {
    let waited = BUSY_PAUSE.saturating_mul(u32::try_from(attempts).unwrap_or(u32::MAX));
    if waited >= BUSY_TIMEOUT {
        return false;
    }
    std::thread::sleep(BUSY_PAUSE);
    true
}

/// The product list in the table `warehouse_products` of a SQLite file: one connection writes
/// (the projection), one reads (the queries), each on a blocking thread while it works.
#[derive(Clone)]
pub(crate) struct SqliteTable {
    writer: Arc<Mutex<Connection>>,
    reader: Arc<Mutex<Connection>>,
}

#[derive(Debug, thiserror::Error)]
#[error("a user of the product list's connection panicked")]
struct Poisoned;

fn open(path: &Path) -> Result<Connection, ReadModelError> {
    let conn = Connection::open(path).map_err(ReadModelError::new)?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(ReadModelError::new)?;
    Ok(conn)
}

fn row(row: &rusqlite::Row<'_>) -> rusqlite::Result<ProductRow> {
    Ok(ProductRow {
        sku: row.get(0)?,
        name: row.get(1)?,
        quantity: u64::try_from(row.get::<_, i64>(2)?).unwrap_or_default(),
        version: row.get(3)?,
    })
}

impl SqliteTable {
    /// Opens the table in the SQLite file at `path` (the event store's), creating it if needed.
    pub(crate) fn open(path: &Path) -> Result<Self, ReadModelError> {
        let mut writer = open(path)?;
        writer
            .busy_handler(Some(wait_for_lock))
            .map_err(ReadModelError::new)?;
        // No sync of its own at each commit: the runner saves the checkpoint after the rows,
        // through the store's writer, whose synced commit syncs the same WAL file and so the
        // rows' frames before it. A crash before that leaves the checkpoint before the batch,
        // which is applied again whether its rows survived or not (the upsert makes that
        // harmless).
        writer
            .pragma_update(None, "synchronous", "NORMAL")
            .map_err(ReadModelError::new)?;
        writer
            .execute_batch(include_str!("sql/create_table.sql"))
            .map_err(ReadModelError::new)?;
        Ok(Self {
            writer: Arc::new(Mutex::new(writer)),
            reader: Arc::new(Mutex::new(open(path)?)),
        })
    }

    /// Runs `work` on `conn` on a blocking thread.
    fn with<T: Send + 'static>(
        conn: &Arc<Mutex<Connection>>,
        work: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> BoxFuture<'static, Result<T, ReadModelError>> {
        let conn = conn.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                let mut conn = conn.lock().map_err(|_| ReadModelError::new(Poisoned))?;
                work(&mut conn).map_err(ReadModelError::new)
            })
            .await
            .map_err(ReadModelError::new)?
        }
        .boxed()
    }
}

impl ProductTable for SqliteTable {
    fn apply<'a>(&'a self, changes: &'a [RowChange]) -> BoxFuture<'a, Result<(), ReadModelError>> {
        let changes = changes.to_vec();
        Self::with(&self.writer, move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            {
                let mut upsert = tx.prepare_cached(include_str!("sql/upsert.sql"))?;
                for change in &changes {
                    let quantity = i64::try_from(change.quantity).unwrap_or(i64::MAX);
                    upsert.execute(params![change.sku, change.name, quantity, change.version])?;
                }
            }
            tx.commit()
        })
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<ProductRow>, ReadModelError>> {
        Self::with(&self.reader, |conn| {
            let mut list = conn.prepare_cached(include_str!("sql/list.sql"))?;
            let rows = list.query_map([], row)?;
            rows.collect()
        })
    }

    fn get<'a>(
        &'a self,
        sku: &'a str,
    ) -> BoxFuture<'a, Result<Option<ProductRow>, ReadModelError>> {
        let sku = sku.to_owned();
        Self::with(&self.reader, move |conn| {
            conn.prepare_cached(include_str!("sql/get.sql"))?
                .query_row([sku], row)
                .optional()
        })
    }

    fn clear(&self) -> BoxFuture<'_, Result<(), ReadModelError>> {
        Self::with(&self.writer, |conn| {
            conn.execute(include_str!("sql/clear.sql"), []).map(drop)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_writer_waits_for_the_lock_in_short_pauses_until_the_busy_timeout() {
        let last = i32::try_from(BUSY_TIMEOUT.as_micros() / BUSY_PAUSE.as_micros()).unwrap();
        assert!(wait_for_lock(0));
        assert!(wait_for_lock(last - 1));
        assert!(!wait_for_lock(last));
        assert!(!wait_for_lock(i32::MAX));
    }
}
