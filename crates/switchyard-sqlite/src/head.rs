//! The head of the global order, published by the writer after each commit that changed
//! anything, so subscriptions wake up without polling (`GlobalReader::watch_head`).
//!
//! Positions are given inside the writer's transactions, so once a commit is published every
//! position up to the head is readable by any connection: the head is exact.

use rusqlite::Connection;
use tokio::sync::watch;

/// The last position committed, as the writer publishes it.
#[derive(Debug)]
pub(crate) struct Head {
    published: watch::Sender<u64>,
}

impl Head {
    /// The head as the database holds it now, read on the writer's connection.
    pub(crate) fn read_from(conn: &Connection) -> rusqlite::Result<Self> {
        let (published, _) = watch::channel(last_position(conn)?);
        Ok(Self { published })
    }

    /// A head at `position`, for writers tested on a database without the events table.
    #[cfg(test)]
    pub(crate) fn at(position: u64) -> Self {
        Self {
            published: watch::channel(position).0,
        }
    }

    /// Publishes the head after a commit that changed something (events, or anything else:
    /// then the head stays as it was and nobody is woken). Called on the writer's thread, before
    /// the batch's callers hear their answer, so an acknowledged append is within the head.
    pub(crate) fn publish(&self, conn: &Connection) {
        match last_position(conn) {
            Ok(position) => {
                self.published.send_if_modified(|head| {
                    let moved = position > *head;
                    *head = (*head).max(position);
                    moved
                });
            }
            // The commit stands; only this wake-up is lost, and the next commit's carries it.
            Err(error) => tracing::warn!(%error, "could not read the head of the global order"),
        }
    }

    /// The head now.
    #[cfg(feature = "events")]
    pub(crate) fn get(&self) -> u64 {
        *self.published.borrow()
    }

    /// A receiver of every head published from now on.
    #[cfg(feature = "events")]
    pub(crate) fn watch(&self) -> watch::Receiver<u64> {
        self.published.subscribe()
    }
}

fn last_position(conn: &Connection) -> rusqlite::Result<u64> {
    let seq: i64 = conn
        .prepare_cached(include_str!("sql/events_head.sql"))?
        .query_row([], |row| row.get(0))?;
    Ok(u64::try_from(seq).unwrap_or(0))
}
