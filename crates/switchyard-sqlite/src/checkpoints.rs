//! The checkpoint store of `switchyard-projections`, and fenced checkpoint writes inside a
//! caller's own transaction.
//!
//! Every change goes through the writer's group commit, so an acquisition's check and its
//! update are one step of the only writer. A fenced write (save, reset, renewal, release) is
//! one `UPDATE` whose `WHERE` names the holder and the lease's generation: a runner that lost
//! its lease changes no row, and is told why by a look at the row in the same step. Times are
//! stored as microseconds since the Unix epoch. A park records the parked event and moves the
//! checkpoint in one write job, so in one transaction; a reset forgets the parked events in the
//! same way.
//!
//! For a read model kept in the store's own file, [`save_checkpoint_in`] records the checkpoint
//! in the transaction that writes the read model, on the caller's own connection: both land, or
//! neither does.

use std::time::SystemTime;

use futures::future::{BoxFuture, FutureExt};
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use switchyard_projections::checkpoint::backend::{
    StoredCheckpoint, check_names, check_projection, checkpoint_info, generation_column, micros,
    park_columns, parked_event, position_column, refusal, time_from_micros, unsigned_from_column,
};
use switchyard_projections::checkpoint::{
    Acquire, CheckpointError, CheckpointInfo, CheckpointStore, Lease, LeaseHolder, LeaseToken,
    ParkedEvent,
};

use crate::SqliteStore;
use crate::error::{WorkersStopped, WritePanicked};
use crate::worker::WriteFailed;

fn backend(error: rusqlite::Error) -> CheckpointError {
    CheckpointError::backend(error)
}

fn write_failed(failed: WriteFailed) -> CheckpointError {
    match failed {
        WriteFailed::NotWritten(error) => CheckpointError::backend(error),
        WriteFailed::CommitUnknown(error) => CheckpointError::unknown(error),
        WriteFailed::Panicked => CheckpointError::backend(WritePanicked),
        WriteFailed::Stopped => CheckpointError::backend(WorkersStopped),
    }
}

/// Projection `projection`'s row, if it has one.
fn find(
    conn: &Connection,
    projection: &str,
) -> rusqlite::Result<Result<Option<StoredCheckpoint>, CheckpointError>> {
    let row = conn
        .prepare_cached(include_str!("sql/checkpoint_find.sql"))?
        .query_row([projection], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, i64>(1)?,
                row.get::<_, Option<String>>(2)?,
                row.get::<_, Option<i64>>(3)?,
            ))
        })
        .optional()?;
    Ok(row
        .map(|(position, generation, holder, lease_until)| {
            Ok(StoredCheckpoint {
                position: unsigned_from_column(projection, position)?,
                generation: unsigned_from_column(projection, generation)?,
                holder,
                lease_until: lease_until.map(time_from_micros),
            })
        })
        .transpose())
}

/// A fenced write: `sql` (a save with `position`, or a reset) changes the row only when `lease`
/// is current (and the save moves forward); otherwise the row says why, and nothing was written.
fn fenced_in(
    conn: &Connection,
    lease: &LeaseToken,
    position: Option<u64>,
    now: SystemTime,
) -> rusqlite::Result<Result<(), CheckpointError>> {
    let checked = check_names(&lease.projection, &lease.holder).and_then(|()| {
        Ok((
            generation_column(lease)?,
            position.map(position_column).transpose()?,
        ))
    });
    let (generation, column) = match checked {
        Ok(checked) => checked,
        Err(refused) => return Ok(Err(refused)),
    };
    let (name, holder, now) = (&lease.projection, &lease.holder, micros(now));
    let changed = match column {
        Some(position) => conn
            .prepare_cached(include_str!("sql/checkpoint_save.sql"))?
            .execute(params![name, holder, generation, position, now])?,
        None => conn
            .prepare_cached(include_str!("sql/checkpoint_reset.sql"))?
            .execute(params![name, holder, generation, now])?,
    };
    if changed == 1 {
        if column.is_none() {
            conn.prepare_cached(include_str!("sql/parked_forget.sql"))?
                .execute([name])?;
        }
        return Ok(Ok(()));
    }
    Ok(find(conn, name)?.and_then(|stored| Err(refusal(stored.as_ref(), lease, position))))
}

/// Records, inside the caller's transaction `tx`, that `lease`'s projection has processed
/// through `position`: the read model's writes made in `tx` and the checkpoint commit together
/// or not at all, so each event's effect lands exactly once across crashes (a runner restarted
/// after a crash resumes from the checkpoint its last committed transaction wrote).
///
/// The write is fenced as [`CheckpointStore::save`] is: in the same statement, by the lease's
/// holder and generation. On an error, roll `tx` back: the read model's writes must not land
/// without their checkpoint.
///
/// `tx` must be on a connection to the file of a [`SqliteStore`] (opened by the store first, so
/// its `checkpoints` table exists), whose [`CheckpointStore`] the runner uses for its lease.
/// Open it with a busy timeout (the store's writer shares the file), and begin `tx` with
/// [`TransactionBehavior::Immediate`](rusqlite::TransactionBehavior::Immediate) so it takes
/// the write lock at once rather than failing to upgrade a read.
///
/// # Examples
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use rusqlite::{Connection, TransactionBehavior};
/// use switchyard_projections::checkpoint::{Acquire, CheckpointStore};
/// use switchyard_sqlite::{SqliteStore, save_checkpoint_in};
///
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("app.db");
/// let store = SqliteStore::open(&path)?;
/// # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
/// let now = SystemTime::now();
/// let Acquire::Acquired(lease) =
///     store.acquire("balances", "runner-1", now, now + Duration::from_secs(30)).await?
/// else {
///     unreachable!("a new projection is free");
/// };
///
/// let mut conn = Connection::open(&path)?;
/// conn.busy_timeout(Duration::from_secs(5))?;
/// conn.execute_batch("CREATE TABLE balances (account TEXT PRIMARY KEY, cents INTEGER)")?;
/// let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
/// tx.execute("INSERT INTO balances VALUES ('acc-1', 500)", [])?;
/// save_checkpoint_in(&tx, &lease.token, 17)?;
/// tx.commit()?;
///
/// assert_eq!(store.load("balances").await?, 17);
/// # Ok::<_, Box<dyn std::error::Error>>(())
/// # })?;
/// # Ok::<_, Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
///
/// As [`CheckpointStore::save`]: [`CheckpointError::LeaseLost`],
/// [`CheckpointError::NotForward`], [`CheckpointError::PositionTooLarge`], a name error, or
/// [`CheckpointError::Backend`] with SQLite's error.
pub fn save_checkpoint_in(
    tx: &Transaction<'_>,
    lease: &LeaseToken,
    position: u64,
) -> Result<(), CheckpointError> {
    fenced_in(tx, lease, Some(position), SystemTime::now())
        .unwrap_or_else(|error| Err(backend(error)))
}

/// Sets `lease`'s projection back to position 0 inside the caller's transaction `tx`, fenced
/// as [`CheckpointStore::reset`] is: for a rebuild that empties the read model and resets its
/// checkpoint in one transaction. It forgets the projection's parked events too, as
/// [`CheckpointStore::reset`] does. The rules of [`save_checkpoint_in`] apply.
///
/// # Errors
///
/// [`CheckpointError::LeaseLost`], a name error, or [`CheckpointError::Backend`].
pub fn reset_checkpoint_in(
    tx: &Transaction<'_>,
    lease: &LeaseToken,
) -> Result<(), CheckpointError> {
    fenced_in(tx, lease, None, SystemTime::now()).unwrap_or_else(|error| Err(backend(error)))
}

/// Parks `event` and moves the checkpoint past it, in one step of the writer, fenced by
/// `lease` as a save is.
fn park_in(
    conn: &Connection,
    lease: &LeaseToken,
    event: &ParkedEvent,
    now: SystemTime,
) -> rusqlite::Result<Result<(), CheckpointError>> {
    let (generation, position) = match park_columns(lease, event) {
        Ok(columns) => columns,
        Err(refused) => return Ok(Err(refused)),
    };
    let (name, holder) = (&lease.projection, &lease.holder);
    let changed = conn
        .prepare_cached(include_str!("sql/checkpoint_park.sql"))?
        .execute(params![name, holder, generation, position, micros(now)])?;
    if changed != 1 {
        return Ok(find(conn, name)?.and_then(|stored| Err(refusal(stored.as_ref(), lease, None))));
    }
    conn.prepare_cached(include_str!("sql/parked_insert.sql"))?
        .execute(params![
            name,
            position,
            event.stream,
            event.version,
            event.event_type,
            event.error,
            i64::from(event.attempts),
            micros(event.parked_at),
        ])?;
    Ok(Ok(()))
}

fn parked_in(
    conn: &Connection,
    projection: &str,
) -> rusqlite::Result<Result<Vec<ParkedEvent>, CheckpointError>> {
    let mut statement = conn.prepare_cached(include_str!("sql/parked_list.sql"))?;
    let columns = statement
        .query_map([projection], |row| {
            Ok((
                row.get(0)?,
                row.get(1)?,
                row.get(2)?,
                row.get(3)?,
                row.get(4)?,
                row.get(5)?,
                row.get(6)?,
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(columns
        .into_iter()
        .map(|columns| parked_event(projection, columns))
        .collect())
}

fn acquire_in(
    conn: &Connection,
    projection: &str,
    holder: &str,
    (now, until): (SystemTime, SystemTime),
) -> rusqlite::Result<Result<Acquire, CheckpointError>> {
    let generation: Option<i64> = conn
        .prepare_cached(include_str!("sql/checkpoint_acquire.sql"))?
        .query_row(
            params![projection, holder, micros(now), micros(until)],
            |row| row.get(0),
        )
        .optional()?;
    if let Some(generation) = generation {
        return Ok(
            unsigned_from_column(projection, generation).map(|generation| {
                Acquire::Acquired(Lease {
                    token: LeaseToken {
                        projection: projection.to_owned(),
                        holder: holder.to_owned(),
                        generation,
                    },
                    until,
                })
            }),
        );
    }
    // Refused: in this same step of the only writer, the row holds the live lease that refused.
    Ok(find(conn, projection)?.and_then(|stored| {
        let stored = stored.ok_or_else(|| corrupt(projection))?;
        match (stored.holder, stored.lease_until) {
            (Some(holder), Some(until)) => Ok(Acquire::Held(LeaseHolder { holder, until })),
            _ => Err(corrupt(projection)),
        }
    }))
}

fn corrupt(projection: &str) -> CheckpointError {
    CheckpointError::Corrupt {
        projection: projection.to_owned(),
        reason: "an acquisition was refused without a live lease".to_owned(),
    }
}

/// A change of `lease`'s own lease (`sql` taking name, holder, generation and maybe a time):
/// `true` when it was current.
fn lease_change_in(
    conn: &Connection,
    sql: &str,
    lease: &LeaseToken,
    until: Option<i64>,
) -> rusqlite::Result<Result<bool, CheckpointError>> {
    let generation = match check_names(&lease.projection, &lease.holder)
        .and_then(|()| generation_column(lease))
    {
        Ok(generation) => generation,
        Err(CheckpointError::LeaseLost { .. }) => return Ok(Ok(false)),
        Err(refused) => return Ok(Err(refused)),
    };
    let mut statement = conn.prepare_cached(sql)?;
    let changed = match until {
        Some(until) => {
            statement.execute(params![lease.projection, lease.holder, generation, until])?
        }
        None => statement.execute(params![lease.projection, lease.holder, generation])?,
    };
    Ok(Ok(changed == 1))
}

impl SqliteStore {
    async fn write_checkpoint<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Connection) -> rusqlite::Result<Result<T, CheckpointError>> + Send + 'static,
    ) -> Result<T, CheckpointError> {
        self.workers
            .write(work)
            .await
            .unwrap_or_else(|failed| Err(write_failed(failed)))
    }
}

fn listed(row: &rusqlite::Row<'_>) -> Result<CheckpointInfo, CheckpointError> {
    checkpoint_info(
        row.get(0).map_err(backend)?,
        row.get(1).map_err(backend)?,
        row.get(2).map_err(backend)?,
        row.get(3).map_err(backend)?,
        row.get(4).map_err(backend)?,
    )
}

impl CheckpointStore for SqliteStore {
    fn load<'a>(&'a self, projection: &'a str) -> BoxFuture<'a, Result<u64, CheckpointError>> {
        async move {
            check_projection(projection)?;
            let projection = projection.to_owned();
            let stored = self
                .workers
                .read(move |conn| {
                    find(conn, &projection).unwrap_or_else(|error| Err(backend(error)))
                })
                .await
                .map_err(CheckpointError::backend)??;
            Ok(stored.map_or(0, |stored| stored.position))
        }
        .boxed()
    }

    fn save<'a>(
        &'a self,
        lease: &'a LeaseToken,
        position: u64,
    ) -> BoxFuture<'a, Result<(), CheckpointError>> {
        let lease = lease.clone();
        self.write_checkpoint(move |conn| {
            fenced_in(conn, &lease, Some(position), SystemTime::now())
        })
        .boxed()
    }

    fn reset<'a>(&'a self, lease: &'a LeaseToken) -> BoxFuture<'a, Result<(), CheckpointError>> {
        let lease = lease.clone();
        self.write_checkpoint(move |conn| fenced_in(conn, &lease, None, SystemTime::now()))
            .boxed()
    }

    fn park<'a>(
        &'a self,
        lease: &'a LeaseToken,
        event: &'a ParkedEvent,
    ) -> BoxFuture<'a, Result<(), CheckpointError>> {
        let (lease, event) = (lease.clone(), event.clone());
        self.write_checkpoint(move |conn| park_in(conn, &lease, &event, SystemTime::now()))
            .boxed()
    }

    fn parked<'a>(
        &'a self,
        projection: &'a str,
    ) -> BoxFuture<'a, Result<Vec<ParkedEvent>, CheckpointError>> {
        async move {
            check_projection(projection)?;
            let projection = projection.to_owned();
            self.workers
                .read(move |conn| {
                    parked_in(conn, &projection).unwrap_or_else(|error| Err(backend(error)))
                })
                .await
                .map_err(CheckpointError::backend)?
        }
        .boxed()
    }

    fn unpark<'a>(
        &'a self,
        projection: &'a str,
        position: u64,
    ) -> BoxFuture<'a, Result<bool, CheckpointError>> {
        async move {
            check_projection(projection)?;
            let Ok(position) = position_column(position) else {
                return Ok(false);
            };
            let projection = projection.to_owned();
            self.write_checkpoint(move |conn| {
                let deleted = conn
                    .prepare_cached(include_str!("sql/parked_delete.sql"))?
                    .execute(params![projection, position])?;
                Ok(Ok(deleted == 1))
            })
            .await
        }
        .boxed()
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<CheckpointInfo>, CheckpointError>> {
        async move {
            self.workers
                .read(|conn| -> Result<Vec<CheckpointInfo>, CheckpointError> {
                    let mut statement = conn
                        .prepare_cached(include_str!("sql/checkpoint_list.sql"))
                        .map_err(backend)?;
                    let mut rows = statement.query([]).map_err(backend)?;
                    let mut all = Vec::new();
                    while let Some(row) = rows.next().map_err(backend)? {
                        all.push(listed(row)?);
                    }
                    Ok(all)
                })
                .await
                .map_err(CheckpointError::backend)?
        }
        .boxed()
    }

    fn acquire<'a>(
        &'a self,
        projection: &'a str,
        holder: &'a str,
        now: SystemTime,
        until: SystemTime,
    ) -> BoxFuture<'a, Result<Acquire, CheckpointError>> {
        async move {
            check_names(projection, holder)?;
            let (projection, holder) = (projection.to_owned(), holder.to_owned());
            self.write_checkpoint(move |conn| acquire_in(conn, &projection, &holder, (now, until)))
                .await
        }
        .boxed()
    }

    fn renew<'a>(
        &'a self,
        lease: &'a LeaseToken,
        until: SystemTime,
    ) -> BoxFuture<'a, Result<bool, CheckpointError>> {
        let lease = lease.clone();
        let until = micros(until);
        self.write_checkpoint(move |conn| {
            lease_change_in(
                conn,
                include_str!("sql/checkpoint_renew.sql"),
                &lease,
                Some(until),
            )
        })
        .boxed()
    }

    fn release<'a>(
        &'a self,
        lease: &'a LeaseToken,
    ) -> BoxFuture<'a, Result<bool, CheckpointError>> {
        let lease = lease.clone();
        self.write_checkpoint(move |conn| {
            lease_change_in(
                conn,
                include_str!("sql/checkpoint_release.sql"),
                &lease,
                None,
            )
        })
        .boxed()
    }
}
