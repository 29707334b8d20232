//! The alarm store of `switchyard-scheduler`.
//!
//! Every change goes through the writer's group commit, so a claim's check and its update are
//! one step of the only writer: two schedulers racing for an alarm cannot both get the lease.
//! Windows are read on reader threads. Messages are stored encoded by the messaging codec,
//! times as microseconds since the Unix epoch.
//!
//! An alarm whose message cannot be decoded (a poison row) is left in the table for an operator:
//! loads skip it and report its id through `tracing`, and a claim answers
//! [`AlarmStoreError::Corrupt`] without taking the lease or counting an attempt. Cancelling it
//! by id or aggregate removes it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::future::{BoxFuture, FutureExt};
use rusqlite::{Connection, OptionalExtension, params};
use switchyard_messaging::Message;
use switchyard_scheduler::store::{
    Alarm, AlarmStore, AlarmStoreError, Claim, ClaimRequest, DeleteRequest, Lease,
    attempts_from_column, decode_message,
};

use crate::SqliteStore;
use crate::error::{WorkersStopped, WritePanicked};
use crate::worker::WriteFailed;

fn backend(error: rusqlite::Error) -> AlarmStoreError {
    AlarmStoreError::backend(error)
}

fn write_failed(failed: WriteFailed) -> AlarmStoreError {
    match failed {
        WriteFailed::NotWritten(error) => AlarmStoreError::backend(error),
        WriteFailed::CommitUnknown(error) => AlarmStoreError::unknown(error),
        WriteFailed::Panicked => AlarmStoreError::backend(WritePanicked),
        WriteFailed::Stopped => AlarmStoreError::backend(WorkersStopped),
    }
}

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

fn encode(message: &Message) -> Result<Vec<u8>, AlarmStoreError> {
    message.to_bytes().map_err(AlarmStoreError::backend)
}

impl SqliteStore {
    async fn write_alarm<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Connection) -> rusqlite::Result<Result<T, AlarmStoreError>> + Send + 'static,
    ) -> Result<T, AlarmStoreError> {
        self.workers
            .write(work)
            .await
            .unwrap_or_else(|failed| Err(write_failed(failed)))
    }

    /// Writes `each` of `requests` as one job of the writer, committed with whatever else is
    /// queued, instead of a job (and a commit, when the writer is idle) per request. Answers
    /// each request's own result in order, or the job's failure for every one (it was rolled
    /// back, or its commit's outcome is unknown).
    async fn write_each<R: Send + 'static, T: Send + 'static>(
        &self,
        requests: Vec<R>,
        each: fn(&Connection, &R) -> rusqlite::Result<Result<T, AlarmStoreError>>,
    ) -> Vec<Result<T, AlarmStoreError>> {
        let count = requests.len();
        let batch = self.workers.write(move |conn| {
            requests
                .iter()
                .map(|request| each(conn, request))
                .collect::<rusqlite::Result<Vec<_>>>()
                .map(Ok::<_, std::convert::Infallible>)
        });
        match batch.await {
            Ok(Ok(answers)) => answers,
            Ok(Err(never)) => match never {},
            Err(failed) => (0..count)
                .map(|_| Err(write_failed(failed.clone_for_member())))
                .collect(),
        }
    }
}

/// An alarm's row as stored.
struct Stored {
    aggregate_id: String,
    due: i64,
    message: Vec<u8>,
    holder: Option<String>,
    lease_until: Option<i64>,
    attempts: i64,
}

fn find(conn: &Connection, id: &str) -> rusqlite::Result<Option<Stored>> {
    conn.prepare_cached(include_str!("sql/alarm_find.sql"))?
        .query_row([id], |row| {
            Ok(Stored {
                aggregate_id: row.get(0)?,
                due: row.get(1)?,
                message: row.get(2)?,
                holder: row.get(3)?,
                lease_until: row.get(4)?,
                attempts: row.get(5)?,
            })
        })
        .optional()
}

fn claim_in(
    conn: &Connection,
    id: &str,
    holder: &str,
    (now, due_by, lease_until): (i64, i64, i64),
) -> rusqlite::Result<Result<Claim, AlarmStoreError>> {
    let Some(Stored {
        aggregate_id,
        due,
        message,
        holder: held_by,
        lease_until: held_until,
        attempts: counted,
    }) = find(conn, id)?
    else {
        return Ok(Ok(Claim::Gone));
    };
    if due > due_by {
        return Ok(Ok(Claim::NotDue(time(due))));
    }
    // Claiming again what this holder still holds (its earlier claim answered too late, say)
    // starts no new delivery: it counts nothing.
    let mut holds_it = false;
    if let (Some(other), Some(until)) = (held_by, held_until)
        && until > now
    {
        if other != holder {
            return Ok(Ok(Claim::Held(Lease {
                holder: other,
                until: time(until),
            })));
        }
        holds_it = true;
    }
    // Decoded before the update, so an unreadable alarm refuses without writing.
    let message = match decode_message(id, &message) {
        Ok(message) => message,
        Err(error) => return Ok(Err(error)),
    };
    let counted = counted.max(0).saturating_add(if holds_it { 0 } else { 1 });
    conn.prepare_cached(include_str!("sql/alarm_claim.sql"))?
        .execute(params![id, holder, lease_until, counted])?;
    Ok(Ok(Claim::Claimed(Alarm {
        message,
        aggregate_id,
        due: time(due),
        attempts: attempts_from_column(counted),
    })))
}

fn delete_in(
    conn: &Connection,
    id: &str,
    holder: &str,
) -> rusqlite::Result<Result<bool, AlarmStoreError>> {
    conn.prepare_cached(include_str!("sql/alarm_delete.sql"))?
        .execute(params![id, holder])
        .map(|changed| Ok(changed == 1))
}

impl AlarmStore for SqliteStore {
    fn save(&self, alarm: Alarm) -> BoxFuture<'_, Result<Message, AlarmStoreError>> {
        async move {
            let bytes = encode(&alarm.message)?;
            let id = alarm.id().to_owned();
            let aggregate_id = alarm.aggregate_id;
            let due = micros(alarm.due);
            let counted = i64::from(alarm.attempts);
            self.write_alarm(move |conn| {
                conn.prepare_cached(include_str!("sql/alarm_save.sql"))?
                    .execute(params![id, aggregate_id, due, bytes, counted])
                    .map(|_| Ok(()))
            })
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
            self.workers
                .read(move |conn| -> Result<Vec<Alarm>, AlarmStoreError> {
                    let mut statement = conn
                        .prepare_cached(include_str!("sql/alarm_load.sql"))
                        .map_err(backend)?;
                    let mut rows = statement.query(params![from, until]).map_err(backend)?;
                    let mut alarms = Vec::new();
                    while let Some(row) = rows.next().map_err(backend)? {
                        let id: String = row.get(0).map_err(backend)?;
                        let message = row
                            .get_ref(3)
                            .map_err(backend)?
                            .as_blob()
                            .map_err(|e| AlarmStoreError::Corrupt {
                                id: id.clone(),
                                reason: e.to_string(),
                            })
                            .and_then(|bytes| decode_message(&id, bytes));
                        // One unreadable alarm must not stop every later one from loading:
                        // it is reported and left where it is.
                        let message = match message {
                            Ok(message) => message,
                            Err(error) => {
                                tracing::error!(alarm = %id, %error, "skipping an unreadable alarm");
                                continue;
                            }
                        };
                        alarms.push(Alarm {
                            message,
                            aggregate_id: row.get(1).map_err(backend)?,
                            due: time(row.get(2).map_err(backend)?),
                            attempts: attempts_from_column(row.get(4).map_err(backend)?),
                        });
                    }
                    Ok(alarms)
                })
                .await
                .map_err(AlarmStoreError::backend)?
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
        let (id, holder) = (id.to_owned(), holder.to_owned());
        let times = (micros(now), micros(due_by), micros(lease_until));
        self.write_alarm(move |conn| claim_in(conn, &id, &holder, times))
            .boxed()
    }

    fn renew<'a>(
        &'a self,
        id: &'a str,
        holder: &'a str,
        lease_until: SystemTime,
    ) -> BoxFuture<'a, Result<bool, AlarmStoreError>> {
        let (id, holder) = (id.to_owned(), holder.to_owned());
        let lease_until = micros(lease_until);
        self.write_alarm(move |conn| {
            conn.prepare_cached(include_str!("sql/alarm_renew.sql"))?
                .execute(params![id, holder, lease_until])
                .map(|changed| Ok(changed == 1))
        })
        .boxed()
    }

    fn reschedule<'a>(
        &'a self,
        id: &'a str,
        holder: &'a str,
        due: SystemTime,
        message: Message,
    ) -> BoxFuture<'a, Result<bool, AlarmStoreError>> {
        let (id, holder) = (id.to_owned(), holder.to_owned());
        let due = micros(due);
        async move {
            let bytes = encode(&message)?;
            self.write_alarm(move |conn| {
                conn.prepare_cached(include_str!("sql/alarm_reschedule.sql"))?
                    .execute(params![id, holder, due, bytes])
                    .map(|changed| Ok(changed == 1))
            })
            .await
        }
        .boxed()
    }

    fn delete<'a>(
        &'a self,
        id: &'a str,
        holder: &'a str,
    ) -> BoxFuture<'a, Result<bool, AlarmStoreError>> {
        let (id, holder) = (id.to_owned(), holder.to_owned());
        self.write_alarm(move |conn| delete_in(conn, &id, &holder))
            .boxed()
    }

    /// Yes: a batch is one job of the writer and shares one commit.
    fn prefers_batches(&self) -> bool {
        true
    }

    fn claim_many(
        &self,
        requests: Vec<ClaimRequest>,
    ) -> BoxFuture<'_, Vec<Result<Claim, AlarmStoreError>>> {
        self.write_each(requests, |conn, r| {
            let times = (micros(r.now), micros(r.due_by), micros(r.lease_until));
            claim_in(conn, &r.id, &r.holder, times)
        })
        .boxed()
    }

    fn delete_many(
        &self,
        requests: Vec<DeleteRequest>,
    ) -> BoxFuture<'_, Vec<Result<bool, AlarmStoreError>>> {
        self.write_each(requests, |conn, r| delete_in(conn, &r.id, &r.holder))
            .boxed()
    }

    fn cancel<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<bool, AlarmStoreError>> {
        let id = id.to_owned();
        self.write_alarm(move |conn| {
            conn.prepare_cached(include_str!("sql/alarm_cancel.sql"))?
                .execute([id])
                .map(|changed| Ok(changed == 1))
        })
        .boxed()
    }

    fn cancel_for<'a>(
        &'a self,
        aggregate_id: &'a str,
    ) -> BoxFuture<'a, Result<Vec<String>, AlarmStoreError>> {
        let aggregate_id = aggregate_id.to_owned();
        self.write_alarm(move |conn| {
            let mut ids = conn
                .prepare_cached(include_str!("sql/alarm_cancel_for.sql"))?
                .query_map([aggregate_id], |row| row.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            ids.sort();
            Ok(Ok(ids))
        })
        .boxed()
    }
}
