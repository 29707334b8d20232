//! The event, snapshot and state stores of `switchyard-aggregates`.
//!
//! Reads run on reader threads; every change goes through the writer's group commit. The writer
//! is the only one to write, so the expected-version check it makes is authoritative, and the
//! global position (an `AUTOINCREMENT` key given inside the writer's transactions) is never
//! taken by a transaction that commits after a later one: the global order has no late
//! arrivals.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::future::{BoxFuture, FutureExt};
use futures::stream::{self, BoxStream, StreamExt};
use rusqlite::{Connection, OptionalExtension, Row, params};
use switchyard_aggregates::store::{
    AppendError, Appended, DeleteMode, EventAppender, EventDeleter, EventMetadata, EventReader,
    ExpectedVersion, GlobalReader, NewEvent, RecordedEvent, SnapshotStore, StateStore, StoreError,
    StoredState,
};

use crate::SqliteStore;
use crate::error::{WorkersStopped, WritePanicked};
use crate::worker::{self, WriteFailed};

fn backend(error: rusqlite::Error) -> StoreError {
    StoreError::backend(error)
}

/// The store error of a write that did not happen: [`StoreError::DiskFull`] when the disk is
/// full, else the backend's failure.
fn not_written(error: Arc<rusqlite::Error>) -> StoreError {
    if worker::is_disk_full(&error) {
        StoreError::DiskFull {
            source: Box::new(error),
        }
    } else {
        StoreError::backend(error)
    }
}

fn append_failed(stream: &str, failed: WriteFailed) -> AppendError {
    match failed {
        WriteFailed::NotWritten(error) => AppendError::Store(not_written(error)),
        WriteFailed::CommitUnknown(error) => AppendError::Unknown {
            stream: stream.to_owned(),
            source: Box::new(error),
        },
        WriteFailed::Panicked => AppendError::Store(StoreError::backend(WritePanicked)),
        WriteFailed::Stopped => AppendError::Store(StoreError::backend(WorkersStopped)),
    }
}

fn store_failed(failed: WriteFailed) -> StoreError {
    match failed {
        WriteFailed::NotWritten(error) => not_written(error),
        WriteFailed::CommitUnknown(error) => StoreError::backend(error),
        WriteFailed::Panicked => StoreError::backend(WritePanicked),
        WriteFailed::Stopped => StoreError::backend(WorkersStopped),
    }
}

fn conflict(stream: &str, expected: ExpectedVersion, actual: Option<i64>) -> AppendError {
    AppendError::Conflict {
        stream: stream.to_owned(),
        expected,
        actual,
    }
}

/// Whether a stream at `actual` (`None`: no stream, not even a soft-deleted one) may be written
/// by a writer expecting `expected`.
fn matches(expected: ExpectedVersion, actual: Option<i64>) -> bool {
    match expected {
        ExpectedVersion::Any => true,
        ExpectedVersion::NoStream | ExpectedVersion::Exactly(-1) => actual.is_none(),
        ExpectedVersion::Exactly(version) => actual == Some(version),
    }
}

/// The stream's last version, soft-deleted events included; `None`: no such stream.
fn last_version(conn: &Connection, stream: &str) -> rusqlite::Result<Option<i64>> {
    conn.prepare_cached(include_str!("sql/last_version.sql"))?
        .query_row([stream], |row| row.get(0))
}

/// The last version of `stream` that message `message_id` recorded and a soft delete did not
/// hide; `None` if none, and always for an empty id (see `sql/find_message.sql`).
fn recorded_by(conn: &Connection, stream: &str, message_id: &str) -> rusqlite::Result<Option<i64>> {
    if message_id.is_empty() {
        return Ok(None);
    }
    conn.prepare_cached(include_str!("sql/find_message.sql"))?
        .query_row(params![stream, message_id], |row| row.get(0))
}

/// The user's metadata as the JSON the `user_metadata` column holds: most appends carry none,
/// and their `{}` costs no allocation.
fn user_metadata(metadata: &EventMetadata) -> Result<Cow<'static, str>, AppendError> {
    if metadata.user.is_empty() {
        return Ok(Cow::Borrowed("{}"));
    }
    serde_json::to_string(&metadata.user)
        .map(Cow::Owned)
        .map_err(|error| AppendError::Store(StoreError::backend(error)))
}

fn micros_since_epoch(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |elapsed| {
        i64::try_from(elapsed.as_micros()).unwrap_or(i64::MAX)
    })
}

/// The stream's last version and the last version message `message_id` recorded in it (see
/// `sql/append_check.sql`): one statement, as both are read for every append.
fn append_check(
    conn: &Connection,
    stream: &str,
    message_id: &str,
) -> rusqlite::Result<(Option<i64>, Option<i64>)> {
    conn.prepare_cached(include_str!("sql/append_check.sql"))?
        .query_row(params![stream, message_id], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
}

/// An append, run by the writer inside a batch. Refuses before writing anything: a conflict
/// first, then a message that already recorded events in the stream (one probe of the
/// `events_by_message` index, in the writer's transaction, so no other append slips in between).
fn append_in(
    conn: &Connection,
    stream: &str,
    expected: ExpectedVersion,
    events: &[NewEvent],
    metadata: &EventMetadata,
    user_metadata: &str,
) -> rusqlite::Result<Result<Appended, AppendError>> {
    let (current, recorded) = append_check(conn, stream, &metadata.message_id)?;
    if !matches(expected, current) {
        return Ok(Err(conflict(stream, expected, current)));
    }
    if !events.is_empty()
        && let Some(version) = recorded
    {
        return Ok(Err(AppendError::Duplicate {
            stream: stream.to_owned(),
            message_id: metadata.message_id.clone(),
            version,
        }));
    }
    let first = current.unwrap_or(-1) + 1;
    let recorded_at = micros_since_epoch(SystemTime::now());
    let mut insert = conn.prepare_cached(include_str!("sql/insert_event.sql"))?;
    let mut last = first - 1;
    let mut position = None;
    for (version, event) in (first..).zip(events) {
        last = version;
        insert.execute(params![
            stream,
            version,
            event.event_type,
            event.schema_version,
            &event.data[..],
            metadata.message_id,
            metadata.correlation_id,
            metadata.causation_id,
            user_metadata,
            recorded_at,
        ])?;
        // The position is the row id (`INTEGER PRIMARY KEY`): known here, without a read.
        position = u64::try_from(conn.last_insert_rowid()).ok();
    }
    Ok(Ok(Appended {
        version: last,
        position,
    }))
}

/// A delete, run by the writer inside a batch. Refuses before writing anything.
fn delete_in(
    conn: &Connection,
    stream: &str,
    mode: DeleteMode,
    expected: ExpectedVersion,
) -> rusqlite::Result<Result<(), AppendError>> {
    let current = last_version(conn, stream)?;
    if !matches(expected, current) {
        return Ok(Err(conflict(stream, expected, current)));
    }
    match (mode, current) {
        (DeleteMode::Soft, Some(last)) => {
            conn.prepare_cached(include_str!("sql/soft_delete.sql"))?
                .execute(params![stream, last])?;
        }
        (DeleteMode::Soft, None) => {}
        (DeleteMode::Hard, _) => {
            for sql in [
                include_str!("sql/hard_delete_events.sql"),
                include_str!("sql/hard_delete_tombstone.sql"),
                include_str!("sql/delete_snapshot.sql"),
            ] {
                conn.prepare_cached(sql)?.execute([stream])?;
            }
        }
    }
    Ok(Ok(()))
}

/// Turns rows of `sql/read_all.sql` and `sql/read_stream.sql` (their columns in the same order)
/// into events, sharing the stream name, the type and the metadata between
/// consecutive events that have the same: one allocation per distinct value, not per row.
#[derive(Default)]
pub(crate) struct EventRows {
    stream: Option<Arc<str>>,
    fixed_stream: bool,
    event_type: Option<Arc<str>>,
    metadata: Option<(String, Arc<EventMetadata>)>,
}

/// A text column's bytes, not yet checked to be UTF-8: compared first, checked only when new.
fn raw<'r>(row: &'r Row<'_>, index: usize) -> Result<&'r [u8], StoreError> {
    row.get_ref(index)
        .and_then(|value| value.as_bytes().map_err(Into::into))
        .map_err(backend)
}

fn utf8<'r>(bytes: &'r [u8], stream: &str, column: &str) -> Result<&'r str, StoreError> {
    std::str::from_utf8(bytes).map_err(|_| StoreError::Corrupt {
        stream: stream.to_owned(),
        reason: format!("{column} is not UTF-8"),
    })
}

/// The shared value if it equals `found`, else a new one.
fn shared(
    slot: &mut Option<Arc<str>>,
    found: &[u8],
    stream: &str,
    column: &str,
) -> Result<Arc<str>, StoreError> {
    match slot {
        Some(value) if value.as_bytes() == found => Ok(value.clone()),
        _ => Ok(slot.insert(Arc::from(utf8(found, stream, column)?)).clone()),
    }
}

impl EventRows {
    /// Rows of one stream: the stream column is not read.
    fn of_stream(stream: Arc<str>) -> Self {
        Self {
            stream: Some(stream),
            fixed_stream: true,
            ..Self::default()
        }
    }

    pub(crate) fn read(&mut self, row: &Row<'_>) -> Result<RecordedEvent, StoreError> {
        let stream = match &self.stream {
            Some(known) if self.fixed_stream => known.clone(),
            _ => shared(&mut self.stream, raw(row, 0)?, "?", "stream")?,
        };
        let corrupt = |reason: String| StoreError::Corrupt {
            stream: stream.to_string(),
            reason,
        };
        let event_type = shared(&mut self.event_type, raw(row, 3)?, &stream, "event type")?;
        let schema_version: i64 = row.get(4).map_err(backend)?;
        let schema_version = u32::try_from(schema_version)
            .map_err(|_| corrupt(format!("schema version {schema_version} is out of range")))?;
        let position: i64 = row.get(2).map_err(backend)?;
        let position = u64::try_from(position)
            .map_err(|_| corrupt(format!("position {position} is negative")))?;
        let (message_id, correlation_id, causation_id, user) =
            (raw(row, 6)?, raw(row, 7)?, raw(row, 8)?, raw(row, 9)?);
        let metadata = match &self.metadata {
            Some((user_text, known))
                if known.message_id.as_bytes() == message_id
                    && known.correlation_id.as_bytes() == correlation_id
                    && known.causation_id.as_bytes() == causation_id
                    && user_text.as_bytes() == user =>
            {
                known.clone()
            }
            _ => {
                let user = utf8(user, &stream, "user metadata")?;
                let parsed = serde_json::from_str(user)
                    .map_err(|error| corrupt(format!("user metadata is not JSON: {error}")))?;
                let metadata = Arc::new(EventMetadata {
                    message_id: utf8(message_id, &stream, "message id")?.to_owned(),
                    correlation_id: utf8(correlation_id, &stream, "correlation id")?.to_owned(),
                    causation_id: utf8(causation_id, &stream, "causation id")?.to_owned(),
                    user: parsed,
                });
                self.metadata = Some((user.to_owned(), metadata.clone()));
                metadata
            }
        };
        let recorded_at: i64 = row.get(10).map_err(backend)?;
        let data = row
            .get_ref(5)
            .and_then(|value| value.as_blob().map_err(Into::into))
            .map_err(backend)?;
        Ok(RecordedEvent {
            stream,
            version: row.get(1).map_err(backend)?,
            position,
            event_type,
            schema_version,
            data: Bytes::copy_from_slice(data),
            metadata,
            recorded_at: UNIX_EPOCH + Duration::from_micros(recorded_at.max(0).unsigned_abs()),
        })
    }
}

fn page_in(
    conn: &Connection,
    stream: &Arc<str>,
    from_version: i64,
    limit: usize,
) -> Result<Vec<RecordedEvent>, StoreError> {
    let mut statement = conn
        .prepare_cached(include_str!("sql/read_stream.sql"))
        .map_err(backend)?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut rows = statement
        .query(params![&**stream, from_version, limit])
        .map_err(backend)?;
    let mut reader = EventRows::of_stream(stream.clone());
    let mut events = Vec::new();
    while let Some(row) = rows.next().map_err(backend)? {
        events.push(reader.read(row)?);
    }
    Ok(events)
}

impl SqliteStore {
    async fn read<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.workers.read(work).await.map_err(StoreError::backend)?
    }
}

impl EventReader for SqliteStore {
    fn has_stream<'a>(&'a self, stream: &'a str) -> BoxFuture<'a, Result<bool, StoreError>> {
        let stream = stream.to_owned();
        self.read(move |conn| {
            conn.prepare_cached(include_str!("sql/has_stream.sql"))
                .and_then(|mut statement| {
                    statement.query_row([stream], |row| row.get::<_, bool>(0))
                })
                .map_err(backend)
        })
        .boxed()
    }

    fn read_stream<'a>(
        &'a self,
        stream: &'a str,
        from_version: i64,
        page_size: usize,
    ) -> BoxStream<'a, Result<Vec<RecordedEvent>, StoreError>> {
        let page_size = page_size.max(1);
        let name: Arc<str> = Arc::from(stream);
        let request = move |from: i64| {
            let name = name.clone();
            self.workers
                .submit_read(move |conn| page_in(conn, &name, from, page_size))
                .map_err(StoreError::backend)
        };
        // Each page is its own read, starting after the last version the previous one saw. The
        // next page is asked for as soon as this one arrives, so reading it overlaps with the
        // caller's work on this one.
        let first = request(from_version);
        stream::unfold(Some(first), move |pending| {
            let request = request.clone();
            async move {
                let page = match pending? {
                    Ok(receiver) => receiver
                        .await
                        .map_err(|_| StoreError::backend(WorkersStopped))
                        .and_then(|page| page),
                    Err(error) => Err(error),
                };
                match page {
                    Ok(events) if events.is_empty() => None,
                    Ok(events) => {
                        let next = match events.last() {
                            Some(last) if events.len() == page_size => {
                                Some(request(last.version + 1))
                            }
                            _ => None,
                        };
                        Some((Ok(events), next))
                    }
                    Err(error) => Some((Err(error), None)),
                }
            }
        })
        .boxed()
    }

    fn find_message<'a>(
        &'a self,
        stream: &'a str,
        message_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<i64>, StoreError>> {
        let stream = stream.to_owned();
        let message_id = message_id.to_owned();
        self.read(move |conn| recorded_by(conn, &stream, &message_id).map_err(backend))
            .boxed()
    }
}

impl EventAppender for SqliteStore {
    fn append<'a>(
        &'a self,
        stream: &'a str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
        metadata: EventMetadata,
    ) -> BoxFuture<'a, Result<i64, AppendError>> {
        async move {
            self.append_recorded(stream, expected, events, metadata)
                .await
                .map(|appended| appended.version)
        }
        .boxed()
    }

    fn append_at<'a>(
        &'a self,
        stream: &'a str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
        metadata: EventMetadata,
    ) -> BoxFuture<'a, Result<Appended, AppendError>> {
        self.append_recorded(stream, expected, events, metadata)
            .boxed()
    }
}

impl SqliteStore {
    /// The append of both [`EventAppender`] methods, run by the writer.
    async fn append_recorded(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
        metadata: EventMetadata,
    ) -> Result<Appended, AppendError> {
        let name = stream.to_owned();
        let user = user_metadata(&metadata)?;
        self.workers
            .write(move |conn| append_in(conn, &name, expected, &events, &metadata, &user))
            .await
            .unwrap_or_else(|failed| Err(append_failed(stream, failed)))
    }
}

impl EventDeleter for SqliteStore {
    fn delete_stream<'a>(
        &'a self,
        stream: &'a str,
        mode: DeleteMode,
        expected: ExpectedVersion,
    ) -> BoxFuture<'a, Result<(), AppendError>> {
        let name = stream.to_owned();
        async move {
            self.workers
                .write(move |conn| delete_in(conn, &name, mode, expected))
                .await
                .unwrap_or_else(|failed| Err(append_failed(stream, failed)))
        }
        .boxed()
    }
}

impl GlobalReader for SqliteStore {
    fn read_all(
        &self,
        from_position: u64,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<RecordedEvent>, StoreError>> {
        self.read(move |conn| {
            let mut statement = conn
                .prepare_cached(include_str!("sql/read_all.sql"))
                .map_err(backend)?;
            let from = i64::try_from(from_position).unwrap_or(i64::MAX);
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let mut rows = statement.query(params![from, limit]).map_err(backend)?;
            let mut reader = EventRows::default();
            let mut events = Vec::new();
            while let Some(row) = rows.next().map_err(backend)? {
                events.push(reader.read(row)?);
            }
            Ok(events)
        })
        .boxed()
    }

    /// The head the writer published after its last commit: every position up to it is
    /// committed, hence readable.
    fn head(&self) -> BoxFuture<'_, Result<u64, StoreError>> {
        let head = self.workers.head().get();
        async move { Ok(head) }.boxed()
    }

    /// The writer publishes the head after each commit, before the appends in it are
    /// acknowledged.
    fn watch_head(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        Some(self.workers.head().watch())
    }
}

/// The two kinds of value kept one per stream, in tables of the same shape.
#[derive(Clone, Copy, Debug)]
enum Kept {
    /// A snapshot of an event-sourced aggregate (table `snapshots`).
    Snapshot,
    /// The state of a state-based aggregate (table `states`).
    State,
}

impl Kept {
    /// The statement that loads a stream's value.
    fn load_sql(self) -> &'static str {
        match self {
            Self::Snapshot => include_str!("sql/load_snapshot.sql"),
            Self::State => include_str!("sql/load_state.sql"),
        }
    }

    /// The statement that saves a stream's value, replacing any.
    fn save_sql(self) -> &'static str {
        match self {
            Self::Snapshot => include_str!("sql/save_snapshot.sql"),
            Self::State => include_str!("sql/save_state.sql"),
        }
    }

    /// The table's name, as errors say it.
    fn table(self) -> &'static str {
        match self {
            Self::Snapshot => "snapshots",
            Self::State => "states",
        }
    }
}

fn load_saved(
    conn: &Connection,
    kept: Kept,
    stream: &str,
) -> Result<Option<StoredState>, StoreError> {
    let found = conn
        .prepare_cached(kept.load_sql())
        .and_then(|mut statement| {
            statement
                .query_row([stream], |row| {
                    Ok((
                        row.get::<_, i64>(0)?,
                        row.get::<_, i64>(1)?,
                        row.get::<_, Vec<u8>>(2)?,
                    ))
                })
                .optional()
        })
        .map_err(backend)?;
    found
        .map(|(version, schema_version, data)| {
            let schema_version =
                u32::try_from(schema_version).map_err(|_| StoreError::Corrupt {
                    stream: stream.to_owned(),
                    reason: format!(
                        "{table} schema version {schema_version} is out of range",
                        table = kept.table()
                    ),
                })?;
            Ok(StoredState {
                version,
                schema_version,
                data: Bytes::from(data),
            })
        })
        .transpose()
}

/// The version of the stored state, `None` when there is none.
fn state_version(conn: &Connection, stream: &str) -> rusqlite::Result<Option<i64>> {
    conn.prepare_cached(include_str!("sql/state_version.sql"))?
        .query_row([stream], |row| row.get(0))
        .optional()
}

fn save_in(
    conn: &Connection,
    kept: Kept,
    stream: &str,
    state: &StoredState,
) -> rusqlite::Result<()> {
    conn.prepare_cached(kept.save_sql())?
        .execute(params![
            stream,
            state.version,
            state.schema_version,
            &state.data[..]
        ])
        .map(drop)
}

impl SnapshotStore for SqliteStore {
    fn save_snapshot<'a>(
        &'a self,
        stream: &'a str,
        snapshot: StoredState,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let name = stream.to_owned();
        async move {
            self.workers
                .write(move |conn| save_in(conn, Kept::Snapshot, &name, &snapshot).map(Ok))
                .await
                .unwrap_or_else(|failed| Err(store_failed(failed)))
        }
        .boxed()
    }

    fn delete_snapshot<'a>(&'a self, stream: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
        let name = stream.to_owned();
        async move {
            self.workers
                .write(move |conn| {
                    conn.prepare_cached(include_str!("sql/delete_snapshot.sql"))?
                        .execute([&name])
                        .map(|_| Ok(()))
                })
                .await
                .unwrap_or_else(|failed| Err(store_failed(failed)))
        }
        .boxed()
    }

    fn load_snapshot<'a>(
        &'a self,
        stream: &'a str,
    ) -> BoxFuture<'a, Result<Option<StoredState>, StoreError>> {
        let name = stream.to_owned();
        self.read(move |conn| load_saved(conn, Kept::Snapshot, &name))
            .boxed()
    }
}

impl StateStore for SqliteStore {
    fn save_state<'a>(
        &'a self,
        stream: &'a str,
        state: StoredState,
        expected: ExpectedVersion,
    ) -> BoxFuture<'a, Result<(), AppendError>> {
        let name = stream.to_owned();
        async move {
            self.workers
                .write(move |conn| {
                    let actual = state_version(conn, &name)?;
                    if !matches(expected, actual) {
                        return Ok(Err(conflict(&name, expected, actual)));
                    }
                    save_in(conn, Kept::State, &name, &state).map(Ok)
                })
                .await
                .unwrap_or_else(|failed| Err(append_failed(stream, failed)))
        }
        .boxed()
    }

    fn delete_state<'a>(
        &'a self,
        stream: &'a str,
        expected: ExpectedVersion,
    ) -> BoxFuture<'a, Result<(), AppendError>> {
        let name = stream.to_owned();
        async move {
            self.workers
                .write(move |conn| {
                    let actual = state_version(conn, &name)?;
                    if !matches(expected, actual) {
                        return Ok(Err(conflict(&name, expected, actual)));
                    }
                    conn.prepare_cached(include_str!("sql/delete_state.sql"))?
                        .execute([&name])
                        .map(|_| Ok(()))
                })
                .await
                .unwrap_or_else(|failed| Err(append_failed(stream, failed)))
        }
        .boxed()
    }

    fn load_state<'a>(
        &'a self,
        stream: &'a str,
    ) -> BoxFuture<'a, Result<Option<StoredState>, StoreError>> {
        let name = stream.to_owned();
        self.read(move |conn| load_saved(conn, Kept::State, &name))
            .boxed()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use rusqlite::StatementStatus;

    use super::*;
    use crate::SqliteOptions;
    use crate::database;

    fn event() -> NewEvent {
        NewEvent {
            event_type: "e".into(),
            schema_version: 1,
            data: vec![1].into(),
        }
    }

    fn metadata(message_id: &str) -> EventMetadata {
        EventMetadata {
            message_id: message_id.into(),
            ..EventMetadata::default()
        }
    }

    /// How often the cached statement `sql` was compiled again since it was first prepared.
    fn reprepared(conn: &Connection, sql: &str) -> i32 {
        conn.prepare_cached(sql)
            .unwrap()
            .get_status(StatementStatus::RePrepare)
    }

    #[test]
    fn the_writers_statements_are_compiled_once_whatever_is_bound() {
        let conn = database::open_in_memory(&SqliteOptions::default()).unwrap();
        for n in 0..20 {
            let stream = format!("s-{}", n % 4);
            let message = format!("m-{n}");
            append_in(
                &conn,
                &stream,
                ExpectedVersion::Any,
                &[event()],
                &metadata(&message),
                "{}",
            )
            .unwrap()
            .unwrap();
        }
        for (from, limit) in [(0, 2), (1, 3), (2, 100)] {
            page_in(&conn, &Arc::from("s-1"), from, limit).unwrap();
        }
        for sql in [
            include_str!("sql/append_check.sql"),
            include_str!("sql/insert_event.sql"),
            include_str!("sql/read_stream.sql"),
        ] {
            assert_eq!(reprepared(&conn, sql), 0, "{sql}");
        }
    }
}
