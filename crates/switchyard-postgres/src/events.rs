//! The store traits of `switchyard-aggregates`, on PostgreSQL.
//!
//! The trait methods are thin: appends go to the store's `Appender`; reads, deletes, snapshots
//! and states are the functions below, each given the store's shared [`Database`] access.

use std::time::{Duration, Instant};

use futures::future::{BoxFuture, FutureExt, TryFutureExt};
use futures::stream::BoxStream;
use switchyard_aggregates::store::{
    AppendError, Appended, DeleteMode, EventAppender, EventDeleter, EventMetadata, EventReader,
    ExpectedVersion, GlobalReader, NewEvent, RecordedEvent, SnapshotStore, StateStore, StoreError,
    StoredState,
};
use tokio_postgres::types::ToSql;

use crate::PostgresStore;
use crate::db::Database;
use crate::error::Failure;
use crate::expected::{self, conflict, satisfies};
use crate::pages;
use crate::pool::Params;
use crate::rows::{self, Decoder};

/// How many times a conditional delete or state save runs again when it found the stream at
/// the expected version only after its statement had missed it (a concurrent writer moved it
/// back and forth).
const CONDITIONAL_ATTEMPTS: usize = 8;

/// Runs a conditional write (returning a row when it wrote) once. A lost connection leaves
/// its outcome unknown.
async fn write_if(
    database: &Database,
    stream: &str,
    sql: &str,
    params: &Params<'_>,
) -> Result<bool, AppendError> {
    database
        .retrying(|| async {
            let conn = database.conn().await?;
            conn.query_opt(sql, params).await.map(|row| row.is_some())
        })
        .await
        .map_err(|failure| write_failed(stream, failure))
}

/// A write of `stream` that failed: a lost connection leaves its outcome unknown.
fn write_failed(stream: &str, failure: Failure) -> AppendError {
    match failure {
        Failure::Lost(source) => AppendError::Unknown {
            stream: stream.to_owned(),
            source,
        },
        other => StoreError::backend(other.into_source()).into(),
    }
}

/// Removes a stream at `expected`: its events, its row and its snapshot, in one transaction.
async fn hard_delete(
    database: &Database,
    stream: &str,
    expected: ExpectedVersion,
) -> Result<(), AppendError> {
    let (kind, version) = expected::params(expected);
    for _ in 0..CONDITIONAL_ATTEMPTS {
        let done = database
            .retrying(|| async {
                let mut conn = database.conn().await?;
                // Until COMMIT is sent nothing is written: a lost connection rolls back.
                let before_commit = |error| Failure::statement(error).for_read();
                let tx = conn.client.transaction().await.map_err(before_commit)?;
                let deleted = tx
                    .query_opt(
                        include_str!("sql/hard_delete_stream.sql"),
                        &[&stream, &kind, &version],
                    )
                    .await
                    .map_err(before_commit)?
                    .is_some();
                let actual = if deleted {
                    None
                } else {
                    tx.query_opt(include_str!("sql/stream_version.sql"), &[&stream])
                        .await
                        .map_err(before_commit)?
                        .map(|row| row.try_get::<_, i64>(0))
                        .transpose()
                        .map_err(|error| Failure::Refused(error.into()))?
                };
                if !deleted && actual.is_some() {
                    // Either not at the expected version, or moved back to it since the
                    // delete looked: decided by the caller, nothing written.
                    return Ok(Err(actual));
                }
                if !deleted && !satisfies(expected, actual) {
                    return Ok(Err(actual));
                }
                tx.execute(include_str!("sql/hard_delete_events.sql"), &[&stream])
                    .await
                    .map_err(before_commit)?;
                tx.execute(include_str!("sql/delete_snapshot.sql"), &[&stream])
                    .await
                    .map_err(before_commit)?;
                tx.commit().await.map_err(Failure::statement)?;
                Ok(Ok(()))
            })
            .await
            .map_err(|failure| write_failed(stream, failure))?;
        match done {
            Ok(()) => return Ok(()),
            Err(actual) if !satisfies(expected, actual) => {
                return Err(conflict(stream, expected, actual));
            }
            Err(_) => {}
        }
    }
    let actual = database.stream_version(stream).await?;
    Err(conflict(stream, expected, actual))
}

/// Which stored version a conditional write is held to.
#[derive(Clone, Copy)]
enum HeldTo {
    /// The stream's last event.
    Stream,
    /// The stream's stored state.
    State,
}

impl HeldTo {
    async fn version(self, database: &Database, stream: &str) -> Result<Option<i64>, StoreError> {
        match self {
            Self::Stream => database.stream_version(stream).await,
            Self::State => state_version(database, stream).await,
        }
    }
}

/// Runs `sql`, a statement that writes only if the version `held_to` is at `expected`, until
/// it writes (`Ok(true)`) or the version read back refuses `expected` (a conflict). When
/// `absent_is_done`, a version read back as none means there is nothing to act on, as
/// `expected` allows (`Ok(true)`). `Ok(false)`: the version kept changing for
/// [`CONDITIONAL_ATTEMPTS`] attempts.
async fn write_while_expected(
    database: &Database,
    stream: &str,
    expected: ExpectedVersion,
    held_to: HeldTo,
    sql: &str,
    params: &Params<'_>,
    absent_is_done: bool,
) -> Result<bool, AppendError> {
    for _ in 0..CONDITIONAL_ATTEMPTS {
        if write_if(database, stream, sql, params).await? {
            return Ok(true);
        }
        let actual = held_to.version(database, stream).await?;
        if !satisfies(expected, actual) {
            return Err(conflict(stream, expected, actual));
        }
        if actual.is_none() && absent_is_done {
            return Ok(true);
        }
    }
    Ok(false)
}

/// [`write_while_expected`] for `sql`, a removal whose parameters are the stream and
/// `expected` (its kind and version): nothing to remove is done, as `expected` allows. When the
/// version kept moving: a conflict with the stream's version, or a state that kept changing.
async fn remove_while_expected(
    database: &Database,
    stream: &str,
    expected: ExpectedVersion,
    held_to: HeldTo,
    sql: &str,
) -> Result<(), AppendError> {
    let (kind, version) = expected::params(expected);
    let params: &Params<'_> = &[&stream, &kind, &version];
    if write_while_expected(database, stream, expected, held_to, sql, params, true).await? {
        return Ok(());
    }
    match held_to {
        HeldTo::Stream => {
            let actual = database.stream_version(stream).await?;
            Err(conflict(stream, expected, actual))
        }
        HeldTo::State => Err(state_kept_changing(stream, "remove")),
    }
}

/// Hides a stream's events through its last version, if it is at `expected`.
async fn soft_delete(
    database: &Database,
    stream: &str,
    expected: ExpectedVersion,
) -> Result<(), AppendError> {
    let sql = include_str!("sql/soft_delete.sql");
    remove_while_expected(database, stream, expected, HeldTo::Stream, sql).await
}

/// The failure of a state write whose version kept changing; `doing` names the write.
fn state_kept_changing(stream: &str, doing: &str) -> AppendError {
    StoreError::backend(format!(
        "the state of `{stream}` kept changing during {CONDITIONAL_ATTEMPTS} attempts to {doing} it"
    ))
    .into()
}

/// Saves a stream's state if the stored one is at `expected`.
async fn save_state(
    database: &Database,
    stream: &str,
    state: StoredState,
    expected: ExpectedVersion,
) -> Result<(), AppendError> {
    let (kind, version) = expected::params(expected);
    let schema_version = i64::from(state.schema_version);
    let data: &[u8] = &state.data;
    let sql = include_str!("sql/save_state.sql");
    let params: &Params<'_> = &[
        &stream,
        &state.version,
        &schema_version,
        &data,
        &kind,
        &version,
    ];
    if write_while_expected(
        database,
        stream,
        expected,
        HeldTo::State,
        sql,
        params,
        false,
    )
    .await?
    {
        return Ok(());
    }
    Err(state_kept_changing(stream, "save"))
}

/// The version of the stored state, `None` when there is none.
async fn state_version(database: &Database, stream: &str) -> Result<Option<i64>, StoreError> {
    database
        .read_opt(include_str!("sql/state_version.sql"), &[&stream])
        .await?
        .map(|row| row.try_get::<_, i64>(0))
        .transpose()
        .map_err(StoreError::backend)
}

/// Removes a stream's state if the stored one is at `expected`.
async fn delete_state(
    database: &Database,
    stream: &str,
    expected: ExpectedVersion,
) -> Result<(), AppendError> {
    let sql = include_str!("sql/delete_state.sql");
    remove_while_expected(database, stream, expected, HeldTo::State, sql).await
}

impl EventReader for PostgresStore {
    fn has_stream<'a>(&'a self, stream: &'a str) -> BoxFuture<'a, Result<bool, StoreError>> {
        async move {
            self.database()
                .read_opt(include_str!("sql/has_stream.sql"), &[&stream])
                .await?
                .map(|row| row.try_get::<_, bool>(0))
                .transpose()
                .map(|visible| visible.unwrap_or(false))
                .map_err(StoreError::backend)
        }
        .boxed()
    }

    fn read_stream<'a>(
        &'a self,
        stream: &'a str,
        from_version: i64,
        page_size: usize,
    ) -> BoxStream<'a, Result<Vec<RecordedEvent>, StoreError>> {
        pages::read_stream(self.database(), stream, from_version, page_size)
    }

    fn find_message<'a>(
        &'a self,
        stream: &'a str,
        message_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<i64>, StoreError>> {
        async move {
            if message_id.is_empty() {
                return Ok(None);
            }
            Ok(self
                .database()
                .read_opt(
                    include_str!("sql/find_message.sql"),
                    &[&stream, &message_id],
                )
                .await?
                .map(|row| row.try_get::<_, Option<i64>>(0))
                .transpose()
                .map_err(StoreError::backend)?
                .flatten())
        }
        .boxed()
    }
}

impl EventAppender for PostgresStore {
    fn append<'a>(
        &'a self,
        stream: &'a str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
        metadata: EventMetadata,
    ) -> BoxFuture<'a, Result<i64, AppendError>> {
        self.appending(stream, expected, events, metadata)
            .map_ok(|appended| appended.version)
            .boxed()
    }

    fn append_at<'a>(
        &'a self,
        stream: &'a str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
        metadata: EventMetadata,
    ) -> BoxFuture<'a, Result<Appended, AppendError>> {
        self.appending(stream, expected, events, metadata).boxed()
    }
}

impl PostgresStore {
    /// The append of both [`EventAppender`] methods, waking subscribers after it wrote.
    fn appending<'a>(
        &'a self,
        stream: &'a str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
        metadata: EventMetadata,
    ) -> impl Future<Output = Result<Appended, AppendError>> + Send + 'a {
        #[cfg(feature = "projections")]
        let writes = !events.is_empty();
        let appended = self.appender().append(stream, expected, events, metadata);
        #[cfg(feature = "projections")]
        let appended = self.notifier().after(appended, writes);
        appended
    }
}

impl EventDeleter for PostgresStore {
    fn delete_stream<'a>(
        &'a self,
        stream: &'a str,
        mode: DeleteMode,
        expected: ExpectedVersion,
    ) -> BoxFuture<'a, Result<(), AppendError>> {
        match mode {
            DeleteMode::Soft => soft_delete(self.database(), stream, expected).boxed(),
            DeleteMode::Hard => hard_delete(self.database(), stream, expected).boxed(),
        }
    }
}

impl GlobalReader for PostgresStore {
    fn read_all(
        &self,
        from_position: u64,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<RecordedEvent>, StoreError>> {
        async move {
            // Positions are non-negative `bigint`s: nothing lies beyond them. A limit beyond
            // them means "everything".
            let Ok(from) = i64::try_from(from_position) else {
                return Ok(Vec::new());
            };
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            if limit == 0 {
                return Ok(Vec::new());
            }
            read_all(self.database(), self.read_all_wait(), from, limit).await
        }
        .boxed()
    }

    /// The greatest position below the oldest transaction still running: read from the
    /// primary key's index, one row.
    fn head(&self) -> BoxFuture<'_, Result<u64, StoreError>> {
        async move {
            let rows = self
                .database()
                .read(include_str!("sql/readable_head.sql"), &[])
                .await?;
            let head: i64 = rows
                .first()
                .map_or(Ok(0), |row| row.try_get(0))
                .map_err(StoreError::backend)?;
            Ok(u64::try_from(head).unwrap_or(0))
        }
        .boxed()
    }

    /// With the `projections` feature: the listener's head, woken by `LISTEN/NOTIFY` (see the
    /// crate docs). Without it, `None`: subscriptions poll.
    #[cfg(feature = "projections")]
    fn watch_head(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        self.listener().watch()
    }
}

/// `read_all`, waiting (up to the configured time) for the transactions that hold back
/// events committed before the call, so a caller reads its own appends.
async fn read_all(
    database: &Database,
    wait: Duration,
    from: i64,
    limit: i64,
) -> Result<Vec<RecordedEvent>, StoreError> {
    let started = Instant::now();
    let mut pause = Duration::from_millis(1);
    // The newest event committed before the call but held back, once known.
    let mut awaited: Option<Option<i64>> = None;
    loop {
        let rows = database
            .read(include_str!("sql/read_all.sql"), &[&from, &limit])
            .await?;
        let Some(head) = rows.first() else {
            return Ok(Vec::new());
        };
        let below: i64 = head.try_get(0).map_err(StoreError::backend)?;
        let newest: Option<i64> = head.try_get(1).map_err(StoreError::backend)?;
        let mut decoder = Decoder::at(2);
        let mut events = Vec::with_capacity(rows.len());
        for row in &rows {
            // The one row of a page with no event has no stream.
            if row
                .try_get::<_, Option<&str>>(2)
                .map_err(StoreError::backend)?
                .is_some()
            {
                events.push(decoder.event(row)?);
            }
        }
        let full = i64::try_from(events.len()).is_ok_and(|len| len >= limit);
        let awaited =
            *awaited.get_or_insert_with(|| newest.filter(|newest| *newest >= below.max(from)));
        let caught_up = awaited.is_none_or(|newest| below > newest);
        if full || caught_up || started.elapsed() >= wait {
            return Ok(events);
        }
        tokio::time::sleep(pause.min(wait)).await;
        pause = (pause * 2).min(Duration::from_millis(16));
    }
}

impl SnapshotStore for PostgresStore {
    fn save_snapshot<'a>(
        &'a self,
        stream: &'a str,
        snapshot: StoredState,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        async move {
            let schema_version = i64::from(snapshot.schema_version);
            let data: &[u8] = &snapshot.data;
            let params: [&(dyn ToSql + Sync); 4] =
                [&stream, &snapshot.version, &schema_version, &data];
            // Saving the same snapshot twice leaves one copy: a lost connection is retried.
            self.database()
                .retrying(|| async {
                    let conn = self.database().conn().await?;
                    conn.execute(include_str!("sql/save_snapshot.sql"), &params)
                        .await
                        .map_err(Failure::for_read)
                })
                .await
                .map(drop)
                .map_err(|failure| StoreError::backend(failure.into_source()))
        }
        .boxed()
    }

    fn load_snapshot<'a>(
        &'a self,
        stream: &'a str,
    ) -> BoxFuture<'a, Result<Option<StoredState>, StoreError>> {
        async move {
            self.database()
                .read_opt(include_str!("sql/load_snapshot.sql"), &[&stream])
                .await?
                .map(|row| rows::state(stream, &row))
                .transpose()
        }
        .boxed()
    }

    fn delete_snapshot<'a>(&'a self, stream: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
        async move {
            // Removing it twice removes it once: a lost connection is retried.
            self.database()
                .retrying(|| async {
                    let conn = self.database().conn().await?;
                    conn.execute(include_str!("sql/delete_snapshot.sql"), &[&stream])
                        .await
                        .map_err(Failure::for_read)
                })
                .await
                .map(drop)
                .map_err(|failure| StoreError::backend(failure.into_source()))
        }
        .boxed()
    }
}

impl StateStore for PostgresStore {
    fn save_state<'a>(
        &'a self,
        stream: &'a str,
        state: StoredState,
        expected: ExpectedVersion,
    ) -> BoxFuture<'a, Result<(), AppendError>> {
        save_state(self.database(), stream, state, expected).boxed()
    }

    fn delete_state<'a>(
        &'a self,
        stream: &'a str,
        expected: ExpectedVersion,
    ) -> BoxFuture<'a, Result<(), AppendError>> {
        delete_state(self.database(), stream, expected).boxed()
    }

    fn load_state<'a>(
        &'a self,
        stream: &'a str,
    ) -> BoxFuture<'a, Result<Option<StoredState>, StoreError>> {
        async move {
            self.database()
                .read_opt(include_str!("sql/load_state.sql"), &[&stream])
                .await?
                .map(|row| rows::state(stream, &row))
                .transpose()
        }
        .boxed()
    }
}
