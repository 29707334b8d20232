//! The checkpoint store of `switchyard-projections`, on PostgreSQL, and fenced checkpoint
//! writes inside a caller's own transaction.
//!
//! An acquisition is one `INSERT … ON CONFLICT DO UPDATE … WHERE`: of racing acquirers, the
//! unique key and the row lock let one through, and the others re-check against the row it
//! left. A fenced write (save, reset, renewal, release) is one `UPDATE` whose `WHERE` names the
//! holder and the lease's generation: a runner that lost its lease changes no row, and a look
//! at the row says why. A park is one statement too: the fenced `UPDATE` of the checkpoint in
//! a common table expression, and the parked event's `INSERT` from its result; a reset forgets
//! the parked events in its own statement the same way. Times are stored as microseconds since the Unix epoch. Statements that
//! did nothing (no connection) are retried as the store's other reads and writes are.

use std::time::SystemTime;

use futures::future::{BoxFuture, FutureExt};
use switchyard_projections::checkpoint::backend::{
    StoredCheckpoint, check_names, check_projection, checkpoint_info, generation_column, micros,
    park_columns, parked_event, position_column, refusal, time_from_micros, unsigned_from_column,
};
use switchyard_projections::checkpoint::{
    Acquire, CheckpointError, CheckpointInfo, CheckpointStore, Lease, LeaseHolder, LeaseToken,
    ParkedEvent,
};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use crate::PostgresStore;
use crate::error::Failure;
use crate::pool::Params;

fn backend(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> CheckpointError {
    CheckpointError::backend(error)
}

/// A statement's failure: of unknown outcome when the connection broke after it was sent.
fn failed(failure: Failure) -> CheckpointError {
    match failure {
        Failure::Lost(source) => CheckpointError::unknown(source),
        other => backend(other.into_source()),
    }
}

/// A projection's row from [`checkpoint_find.sql`].
fn stored(projection: &str, row: &Row) -> Result<StoredCheckpoint, CheckpointError> {
    let lease_until: Option<i64> = row.try_get(3).map_err(backend)?;
    Ok(StoredCheckpoint {
        position: unsigned_from_column(projection, row.try_get(0).map_err(backend)?)?,
        generation: unsigned_from_column(projection, row.try_get(1).map_err(backend)?)?,
        holder: row.try_get(2).map_err(backend)?,
        lease_until: lease_until.map(time_from_micros),
    })
}

/// The parameters of a fenced write by `lease`: checked names, its generation, and the
/// position as a column.
fn fenced_params(
    lease: &LeaseToken,
    position: Option<u64>,
) -> Result<(i64, Option<i64>), CheckpointError> {
    check_names(&lease.projection, &lease.holder)?;
    Ok((
        generation_column(lease)?,
        position.map(position_column).transpose()?,
    ))
}

/// Records, inside the caller's transaction `tx`, that `lease`'s projection has processed
/// through `position`: the read model's writes made in `tx` and the checkpoint commit together
/// or not at all, so each event's effect lands exactly once across crashes (a runner restarted
/// after a crash resumes from the checkpoint its last committed transaction wrote).
///
/// The write is fenced as [`CheckpointStore::save`] is: in the same statement, by the lease's
/// holder and generation. Once it succeeded, the checkpoint's row stays locked until `tx` ends,
/// so another runner taking the lease over waits for `tx` to commit or roll back, and then
/// starts a new generation: a replaced runner's transaction can never commit after the
/// takeover. (The runner's own lease renewals wait too: keep such transactions short.) On an
/// error, roll `tx` back: the read model's writes must not land without their checkpoint.
///
/// `tx`'s connection must have the store's schema ([`PostgresStore::schema`]) on its search
/// path (`SELECT set_config('search_path', $1, false)`), and the runner must use that store as
/// its [`CheckpointStore`] for the lease.
///
/// # Errors
///
/// As [`CheckpointStore::save`]: [`CheckpointError::LeaseLost`],
/// [`CheckpointError::NotForward`], [`CheckpointError::PositionTooLarge`], a name error, or
/// [`CheckpointError::Backend`] with the driver's error (under `REPEATABLE READ`, a takeover
/// racing the transaction fails it with a serialization error).
pub async fn save_checkpoint_in(
    tx: &tokio_postgres::Transaction<'_>,
    lease: &LeaseToken,
    position: u64,
) -> Result<(), CheckpointError> {
    fenced_in(tx, lease, Some(position)).await
}

/// Sets `lease`'s projection back to position 0 inside the caller's transaction `tx`, fenced
/// as [`CheckpointStore::reset`] is: for a rebuild that empties the read model and resets its
/// checkpoint in one transaction. It forgets the projection's parked events too, as
/// [`CheckpointStore::reset`] does. The rules of [`save_checkpoint_in`] apply.
///
/// # Errors
///
/// [`CheckpointError::LeaseLost`], a name error, or [`CheckpointError::Backend`].
pub async fn reset_checkpoint_in(
    tx: &tokio_postgres::Transaction<'_>,
    lease: &LeaseToken,
) -> Result<(), CheckpointError> {
    fenced_in(tx, lease, None).await
}

async fn fenced_in(
    tx: &tokio_postgres::Transaction<'_>,
    lease: &LeaseToken,
    position: Option<u64>,
) -> Result<(), CheckpointError> {
    let (generation, column) = fenced_params(lease, position)?;
    let (name, holder, now) = (&lease.projection, &lease.holder, micros(SystemTime::now()));
    let changed = match column {
        Some(position) => {
            tx.execute(
                include_str!("sql/checkpoint_save.sql"),
                &[name, holder, &generation, &position, &now],
            )
            .await
        }
        None => tx
            .query_one(
                include_str!("sql/checkpoint_reset.sql"),
                &[name, holder, &generation, &now],
            )
            .await
            .and_then(|row| row.try_get::<_, i64>(0))
            .map(|reset| u64::try_from(reset).unwrap_or(0)),
    }
    .map_err(backend)?;
    if changed == 1 {
        return Ok(());
    }
    let row = tx
        .query_opt(include_str!("sql/checkpoint_find.sql"), &[name])
        .await
        .map_err(backend)?;
    let found = row.map(|row| stored(name, &row)).transpose()?;
    Err(refusal(found.as_ref(), lease, position))
}

impl PostgresStore {
    /// Rows of one read, retried while nothing answers.
    async fn checkpoint_read(
        &self,
        sql: &str,
        params: &Params<'_>,
    ) -> Result<Vec<Row>, CheckpointError> {
        self.database()
            .retrying(|| async {
                let conn = self.database().conn().await?;
                conn.query(sql, params).await.map_err(Failure::for_read)
            })
            .await
            .map_err(failed)
    }

    /// Rows of one write, retried while it did nothing.
    async fn checkpoint_write(
        &self,
        sql: &str,
        params: &Params<'_>,
    ) -> Result<Vec<Row>, CheckpointError> {
        self.database()
            .retrying(|| async {
                let conn = self.database().conn().await?;
                conn.query(sql, params).await
            })
            .await
            .map_err(failed)
    }

    /// Rows changed by one write, retried while it did nothing.
    async fn checkpoint_execute(
        &self,
        sql: &str,
        params: &Params<'_>,
    ) -> Result<u64, CheckpointError> {
        self.database()
            .retrying(|| async {
                let conn = self.database().conn().await?;
                conn.execute(sql, params).await
            })
            .await
            .map_err(failed)
    }

    async fn find_checkpoint(
        &self,
        projection: &str,
    ) -> Result<Option<StoredCheckpoint>, CheckpointError> {
        let rows = self
            .checkpoint_read(include_str!("sql/checkpoint_find.sql"), &[&projection])
            .await?;
        rows.first().map(|row| stored(projection, row)).transpose()
    }

    async fn fenced(
        &self,
        lease: &LeaseToken,
        position: Option<u64>,
    ) -> Result<(), CheckpointError> {
        let (generation, column) = fenced_params(lease, position)?;
        let (name, holder, now) = (&lease.projection, &lease.holder, micros(SystemTime::now()));
        let changed = match column {
            Some(position) => {
                let params: [&(dyn ToSql + Sync); 5] = [name, holder, &generation, &position, &now];
                self.checkpoint_execute(include_str!("sql/checkpoint_save.sql"), &params)
                    .await?
            }
            None => {
                let params: [&(dyn ToSql + Sync); 4] = [name, holder, &generation, &now];
                let rows = self
                    .checkpoint_write(include_str!("sql/checkpoint_reset.sql"), &params)
                    .await?;
                let reset: i64 = match rows.first() {
                    Some(row) => row.try_get(0).map_err(backend)?,
                    None => 0,
                };
                u64::try_from(reset).unwrap_or(0)
            }
        };
        if changed == 1 {
            return Ok(());
        }
        let found = self.find_checkpoint(name).await?;
        Err(refusal(found.as_ref(), lease, position))
    }

    async fn park_event(
        &self,
        lease: &LeaseToken,
        event: &ParkedEvent,
    ) -> Result<(), CheckpointError> {
        let (generation, position) = park_columns(lease, event)?;
        let (name, holder) = (&lease.projection, &lease.holder);
        let (now, attempts, parked_at) = (
            micros(SystemTime::now()),
            i64::from(event.attempts),
            micros(event.parked_at),
        );
        let params: [&(dyn ToSql + Sync); 11] = [
            name,
            holder,
            &generation,
            &position,
            &now,
            &event.stream,
            &event.version,
            &event.event_type,
            &event.error,
            &attempts,
            &parked_at,
        ];
        let changed = self
            .checkpoint_execute(include_str!("sql/checkpoint_park.sql"), &params)
            .await?;
        if changed == 1 {
            return Ok(());
        }
        let found = self.find_checkpoint(name).await?;
        Err(refusal(found.as_ref(), lease, None))
    }

    async fn parked_events(&self, projection: &str) -> Result<Vec<ParkedEvent>, CheckpointError> {
        check_projection(projection)?;
        self.checkpoint_read(include_str!("sql/parked_list.sql"), &[&projection])
            .await?
            .iter()
            .map(|row| {
                let columns = (
                    row.try_get(0).map_err(backend)?,
                    row.try_get(1).map_err(backend)?,
                    row.try_get(2).map_err(backend)?,
                    row.try_get(3).map_err(backend)?,
                    row.try_get(4).map_err(backend)?,
                    row.try_get(5).map_err(backend)?,
                    row.try_get(6).map_err(backend)?,
                );
                parked_event(projection, columns)
            })
            .collect()
    }

    async fn unpark_event(&self, projection: &str, position: u64) -> Result<bool, CheckpointError> {
        check_projection(projection)?;
        let Ok(position) = position_column(position) else {
            return Ok(false);
        };
        let deleted = self
            .checkpoint_execute(
                include_str!("sql/parked_delete.sql"),
                &[&projection, &position],
            )
            .await?;
        Ok(deleted == 1)
    }

    async fn lease_change(
        &self,
        sql: &str,
        lease: &LeaseToken,
        until: Option<i64>,
    ) -> Result<bool, CheckpointError> {
        check_names(&lease.projection, &lease.holder)?;
        let Ok(generation) = generation_column(lease) else {
            return Ok(false);
        };
        let (name, holder) = (&lease.projection, &lease.holder);
        let changed = match until {
            Some(until) => {
                self.checkpoint_execute(sql, &[name, holder, &generation, &until])
                    .await?
            }
            None => {
                self.checkpoint_execute(sql, &[name, holder, &generation])
                    .await?
            }
        };
        Ok(changed == 1)
    }

    async fn acquire_checkpoint(
        &self,
        projection: &str,
        holder: &str,
        now: SystemTime,
        until: SystemTime,
    ) -> Result<Acquire, CheckpointError> {
        check_names(projection, holder)?;
        let (now_micros, until_micros) = (micros(now), micros(until));
        // The refusing lease may lapse or be released just after the statement: then the look
        // finds none live, and the statement runs again.
        for _ in 0..4 {
            let rows = self
                .checkpoint_write(
                    include_str!("sql/checkpoint_acquire.sql"),
                    &[&projection, &holder, &now_micros, &until_micros],
                )
                .await?;
            if let Some(row) = rows.first() {
                let generation = row.try_get(0).map_err(backend)?;
                return Ok(Acquire::Acquired(Lease {
                    token: LeaseToken {
                        projection: projection.to_owned(),
                        holder: holder.to_owned(),
                        generation: unsigned_from_column(projection, generation)?,
                    },
                    until,
                }));
            }
            if let Some(StoredCheckpoint {
                holder: Some(current),
                lease_until: Some(held_until),
                ..
            }) = self.find_checkpoint(projection).await?
                && current != holder
                && held_until > now
            {
                return Ok(Acquire::Held(LeaseHolder {
                    holder: current,
                    until: held_until,
                }));
            }
        }
        Err(backend(
            "the checkpoint's lease kept changing while it was acquired",
        ))
    }
}

fn listed(row: &Row) -> Result<CheckpointInfo, CheckpointError> {
    checkpoint_info(
        row.try_get(0).map_err(backend)?,
        row.try_get(1).map_err(backend)?,
        row.try_get(2).map_err(backend)?,
        row.try_get(3).map_err(backend)?,
        row.try_get(4).map_err(backend)?,
    )
}

impl CheckpointStore for PostgresStore {
    fn load<'a>(&'a self, projection: &'a str) -> BoxFuture<'a, Result<u64, CheckpointError>> {
        async move {
            check_projection(projection)?;
            let found = self.find_checkpoint(projection).await?;
            Ok(found.map_or(0, |stored| stored.position))
        }
        .boxed()
    }

    fn save<'a>(
        &'a self,
        lease: &'a LeaseToken,
        position: u64,
    ) -> BoxFuture<'a, Result<(), CheckpointError>> {
        self.fenced(lease, Some(position)).boxed()
    }

    fn reset<'a>(&'a self, lease: &'a LeaseToken) -> BoxFuture<'a, Result<(), CheckpointError>> {
        self.fenced(lease, None).boxed()
    }

    fn park<'a>(
        &'a self,
        lease: &'a LeaseToken,
        event: &'a ParkedEvent,
    ) -> BoxFuture<'a, Result<(), CheckpointError>> {
        self.park_event(lease, event).boxed()
    }

    fn parked<'a>(
        &'a self,
        projection: &'a str,
    ) -> BoxFuture<'a, Result<Vec<ParkedEvent>, CheckpointError>> {
        self.parked_events(projection).boxed()
    }

    fn unpark<'a>(
        &'a self,
        projection: &'a str,
        position: u64,
    ) -> BoxFuture<'a, Result<bool, CheckpointError>> {
        self.unpark_event(projection, position).boxed()
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<CheckpointInfo>, CheckpointError>> {
        async move {
            self.checkpoint_read(include_str!("sql/checkpoint_list.sql"), &[])
                .await?
                .iter()
                .map(listed)
                .collect()
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
        self.acquire_checkpoint(projection, holder, now, until)
            .boxed()
    }

    fn renew<'a>(
        &'a self,
        lease: &'a LeaseToken,
        until: SystemTime,
    ) -> BoxFuture<'a, Result<bool, CheckpointError>> {
        self.lease_change(
            include_str!("sql/checkpoint_renew.sql"),
            lease,
            Some(micros(until)),
        )
        .boxed()
    }

    fn release<'a>(
        &'a self,
        lease: &'a LeaseToken,
    ) -> BoxFuture<'a, Result<bool, CheckpointError>> {
        self.lease_change(include_str!("sql/checkpoint_release.sql"), lease, None)
            .boxed()
    }
}
