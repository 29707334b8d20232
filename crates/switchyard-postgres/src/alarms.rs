//! The alarm store of `switchyard-scheduler`, on PostgreSQL.
//!
//! A claim is one conditional `UPDATE`, in a transaction of its own: of two schedulers racing
//! for an alarm, the row lock lets one through and the other finds the lease taken. Messages are stored encoded by the
//! messaging codec, times as microseconds since the Unix epoch. Statements that did nothing
//! (no connection) are retried as the store's other reads and writes are.
//!
//! An alarm whose message cannot be decoded (a poison row) is left in the table for an operator:
//! loads skip it and report its id through `tracing`, and a claim answers
//! [`AlarmStoreError::Corrupt`] and rolls its transaction back, so no lease is taken and no
//! attempt counted, not even for a moment: no other scheduler ever sees the alarm leased.
//! Cancelling it by id or aggregate removes it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::future::{BoxFuture, FutureExt};
use switchyard_messaging::Message;
use switchyard_scheduler::store::{
    Alarm, AlarmStore, AlarmStoreError, Claim, Lease, attempts_from_column, decode_message,
};
use tokio_postgres::Row;

use crate::PostgresStore;
use crate::error::Failure;
use crate::pool::Params;

fn micros(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_micros()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_micros()).map_or(i64::MIN, |m| -m),
    }
}

fn time(micros: i64) -> SystemTime {
    let magnitude = Duration::from_micros(micros.unsigned_abs());
    if micros >= 0 {
        UNIX_EPOCH + magnitude
    } else {
        UNIX_EPOCH - magnitude
    }
}

fn backend(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> AlarmStoreError {
    AlarmStoreError::backend(error)
}

/// A statement's failure: of unknown outcome when the connection broke after it was sent.
fn failed(failure: Failure) -> AlarmStoreError {
    match failure {
        Failure::Lost(source) => AlarmStoreError::unknown(source),
        other => backend(other.into_source()),
    }
}

/// An attempt count as stored; a negative one (written by hand) counts as none.
impl PostgresStore {
    /// Rows of one statement, retried while it did nothing.
    async fn alarm_query(
        &self,
        sql: &str,
        params: &Params<'_>,
    ) -> Result<Vec<Row>, AlarmStoreError> {
        self.database()
            .retrying(|| async {
                let conn = self.database().conn().await?;
                conn.query(sql, params).await
            })
            .await
            .map_err(failed)
    }

    /// Rows changed by one statement, retried while it did nothing.
    async fn alarm_execute(&self, sql: &str, params: &Params<'_>) -> Result<u64, AlarmStoreError> {
        self.database()
            .retrying(|| async {
                let conn = self.database().conn().await?;
                conn.execute(sql, params).await
            })
            .await
            .map_err(failed)
    }

    async fn claim_alarm(
        &self,
        id: &str,
        holder: &str,
        (now, due_by, lease_until): (i64, i64, i64),
    ) -> Result<Claim, AlarmStoreError> {
        // The update may miss a lease that lapses just after it; then the look-up finds the
        // alarm claimable and the update runs again.
        for _ in 0..4 {
            let claimed = self
                .database()
                .retrying(|| async {
                    let mut conn = self.database().conn().await?;
                    // One transaction: until COMMIT is sent nothing is written, so a lost
                    // connection leaves nothing behind (and the claim is tried again), and an
                    // unreadable alarm is refused by rolling back: no lease, no attempt counted,
                    // never visible to anyone else.
                    let before_commit = |error| Failure::statement(error).for_read();
                    let tx = conn.client.transaction().await.map_err(before_commit)?;
                    let row = tx
                        .query_opt(
                            include_str!("sql/alarm_claim.sql"),
                            &[&id, &holder, &now, &due_by, &lease_until],
                        )
                        .await
                        .map_err(before_commit)?;
                    let Some(row) = row else {
                        // Nothing was changed: nothing to commit.
                        tx.rollback().await.map_err(before_commit)?;
                        return Ok(None);
                    };
                    match claimed_alarm(id, &row) {
                        Ok(alarm) => {
                            tx.commit().await.map_err(Failure::statement)?;
                            Ok(Some(Ok(alarm)))
                        }
                        Err(unreadable) => {
                            tx.rollback().await.map_err(before_commit)?;
                            Ok(Some(Err(unreadable)))
                        }
                    }
                })
                .await
                .map_err(failed)?;
            if let Some(claimed) = claimed {
                return claimed.map(Claim::Claimed);
            }
            let found = self
                .alarm_query(include_str!("sql/alarm_find.sql"), &[&id])
                .await?;
            let Some(row) = found.first() else {
                return Ok(Claim::Gone);
            };
            let due: i64 = row.try_get(0).map_err(backend)?;
            let held_by: Option<String> = row.try_get(1).map_err(backend)?;
            let until: Option<i64> = row.try_get(2).map_err(backend)?;
            if due > due_by {
                return Ok(Claim::NotDue(time(due)));
            }
            if let (Some(other), Some(until)) = (held_by, until)
                && other != holder
                && until > now
            {
                return Ok(Claim::Held(Lease {
                    holder: other,
                    until: time(until),
                }));
            }
        }
        Err(backend("the alarm kept changing while it was claimed"))
    }
}

/// The alarm a claim's `UPDATE ... RETURNING` row holds; [`AlarmStoreError::Corrupt`] when its
/// message cannot be decoded.
fn claimed_alarm(id: &str, row: &Row) -> Result<Alarm, AlarmStoreError> {
    let bytes: &[u8] = row.try_get(2).map_err(backend)?;
    Ok(Alarm {
        message: decode_message(id, bytes)?,
        aggregate_id: row.try_get(0).map_err(backend)?,
        due: time(row.try_get(1).map_err(backend)?),
        attempts: attempts_from_column(row.try_get(3).map_err(backend)?),
    })
}

impl AlarmStore for PostgresStore {
    fn save(&self, alarm: Alarm) -> BoxFuture<'_, Result<Message, AlarmStoreError>> {
        async move {
            let bytes = alarm.message.to_bytes().map_err(backend)?;
            let due = micros(alarm.due);
            let counted = i64::from(alarm.attempts);
            self.alarm_execute(
                include_str!("sql/alarm_save.sql"),
                &[&alarm.id(), &alarm.aggregate_id, &due, &bytes, &counted],
            )
            .await?;
            Ok(alarm.message)
        }
        .boxed()
    }

    fn load(
        &self,
        from: Option<SystemTime>,
        until: SystemTime,
    ) -> BoxFuture<'_, Result<Vec<Alarm>, AlarmStoreError>> {
        let from = from.map_or(i64::MIN, micros);
        let until = micros(until);
        async move {
            let rows = self
                .alarm_query(include_str!("sql/alarm_load.sql"), &[&from, &until])
                .await?;
            let mut alarms = Vec::with_capacity(rows.len());
            for row in &rows {
                let id: String = row.try_get(0).map_err(backend)?;
                let bytes: &[u8] = row.try_get(3).map_err(backend)?;
                // One unreadable alarm must not stop every later one from loading: it is
                // reported and left where it is.
                let message = match decode_message(&id, bytes) {
                    Ok(message) => message,
                    Err(error) => {
                        tracing::error!(alarm = %id, %error, "skipping an unreadable alarm");
                        continue;
                    }
                };
                alarms.push(Alarm {
                    message,
                    aggregate_id: row.try_get(1).map_err(backend)?,
                    due: time(row.try_get(2).map_err(backend)?),
                    attempts: attempts_from_column(row.try_get(4).map_err(backend)?),
                });
            }
            Ok(alarms)
        }
        .boxed()
    }

    fn claim<'a>(
        &'a self,
        id: &'a str,
        holder: &'a str,
        now: SystemTime,
        due_by: SystemTime,
        lease_until: SystemTime,
    ) -> BoxFuture<'a, Result<Claim, AlarmStoreError>> {
        let times = (micros(now), micros(due_by), micros(lease_until));
        self.claim_alarm(id, holder, times).boxed()
    }

    fn renew<'a>(
        &'a self,
        id: &'a str,
        holder: &'a str,
        lease_until: SystemTime,
    ) -> BoxFuture<'a, Result<bool, AlarmStoreError>> {
        async move {
            let until = micros(lease_until);
            let changed = self
                .alarm_execute(include_str!("sql/alarm_renew.sql"), &[&id, &holder, &until])
                .await?;
            Ok(changed == 1)
        }
        .boxed()
    }

    fn reschedule<'a>(
        &'a self,
        id: &'a str,
        holder: &'a str,
        due: SystemTime,
        message: Message,
    ) -> BoxFuture<'a, Result<bool, AlarmStoreError>> {
        async move {
            let bytes = message.to_bytes().map_err(backend)?;
            let due = micros(due);
            let changed = self
                .alarm_execute(
                    include_str!("sql/alarm_reschedule.sql"),
                    &[&id, &holder, &due, &bytes],
                )
                .await?;
            Ok(changed == 1)
        }
        .boxed()
    }

    fn delete<'a>(
        &'a self,
        id: &'a str,
        holder: &'a str,
    ) -> BoxFuture<'a, Result<bool, AlarmStoreError>> {
        async move {
            let changed = self
                .alarm_execute(include_str!("sql/alarm_delete.sql"), &[&id, &holder])
                .await?;
            Ok(changed == 1)
        }
        .boxed()
    }

    fn cancel<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<bool, AlarmStoreError>> {
        async move {
            let changed = self
                .alarm_execute(include_str!("sql/alarm_cancel.sql"), &[&id])
                .await?;
            Ok(changed == 1)
        }
        .boxed()
    }

    fn cancel_for<'a>(
        &'a self,
        aggregate_id: &'a str,
    ) -> BoxFuture<'a, Result<Vec<String>, AlarmStoreError>> {
        async move {
            let rows = self
                .alarm_query(include_str!("sql/alarm_cancel_for.sql"), &[&aggregate_id])
                .await?;
            let mut ids = rows
                .iter()
                .map(|row| row.try_get::<_, String>(0).map_err(backend))
                .collect::<Result<Vec<_>, _>>()?;
            ids.sort();
            Ok(ids)
        }
        .boxed()
    }
}
