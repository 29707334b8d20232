//! Appending: one statement per append, retried only while nothing can have been written, and
//! an unknown outcome settled by message id.

use switchyard_aggregates::store::{
    AppendError, EventMetadata, ExpectedVersion, NewEvent, StoreError,
};

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use tokio::sync::{Mutex, mpsc, oneshot};

use crate::error::{BoxError, Failure, is_unique_violation};
use crate::pool::{Pool, Session};
use crate::store::Inner;

/// The most events one append may hold: the events of one transaction take positions
/// `id << 20 .. (id + 1) << 20` (see the crate docs).
pub const MAX_EVENTS_PER_APPEND: usize = (1 << 20) - 1;

/// How many times an append with [`ExpectedVersion::Any`] is run again after losing a race on
/// the stream's creation or hard delete (it can always succeed; the races are rare).
const ANY_ATTEMPTS: usize = 8;

/// An append held more than [`MAX_EVENTS_PER_APPEND`] events.
#[derive(Debug, thiserror::Error)]
#[error("an append holds at most {max} events, this one held {count}", max = MAX_EVENTS_PER_APPEND)]
struct TooManyEvents {
    count: usize,
}

/// The connection was found closed before the statement was sent.
#[derive(Debug, thiserror::Error)]
#[error("connection closed before the statement was sent")]
struct ClosedBeforeSend;

/// The session of a lost append could not be ended, so it may still commit.
#[derive(Debug, thiserror::Error)]
#[error("the session of the lost append (pid {pid}) is still running")]
struct SessionStillRunning {
    pid: i32,
}

/// `expected` as the statements take it: a kind (0 any, 1 no stream, 2 exactly) and a version.
pub(crate) fn expected_params(expected: ExpectedVersion) -> (i32, i64) {
    match expected {
        ExpectedVersion::Any => (0, -1),
        ExpectedVersion::NoStream | ExpectedVersion::Exactly(-1) => (1, -1),
        ExpectedVersion::Exactly(version) => (2, version),
    }
}

/// Whether a stream at `actual` (`None`: no stream) is at `expected`; the memory store's rule.
pub(crate) fn satisfies(expected: ExpectedVersion, actual: Option<i64>) -> bool {
    match expected {
        ExpectedVersion::Any => true,
        ExpectedVersion::NoStream | ExpectedVersion::Exactly(-1) => actual.is_none(),
        ExpectedVersion::Exactly(version) => actual == Some(version),
    }
}

pub(crate) fn conflict(
    stream: &str,
    expected: ExpectedVersion,
    actual: Option<i64>,
) -> AppendError {
    AppendError::Conflict {
        stream: stream.to_owned(),
        expected,
        actual,
    }
}

/// What running an append did.
pub(crate) enum Ran {
    /// Appended after the given version.
    Appended(i64),
    /// The stream was not at the expected version; nothing was written.
    NotAtExpected,
    /// The connection broke after the statement was sent.
    Lost { session: Session, source: BoxError },
    /// The committer running it stopped: it may have been sent or not.
    Abandoned(BoxError),
}

/// One append, as the committers take it.
pub(crate) struct Request {
    stream: String,
    kind: i32,
    version: i64,
    events: Vec<NewEvent>,
    message_id: String,
    correlation_id: String,
    causation_id: String,
    user: String,
}

/// An append waiting for a committer, and where its outcome goes.
pub(crate) struct Job {
    request: Arc<Request>,
    reply: oneshot::Sender<Result<Ran, Failure>>,
}

/// The most appends one statement carries.
const MAX_BATCH: usize = 128;

/// The most events one statement carries, unless a single append holds more.
const MAX_BATCH_EVENTS: usize = 1 << 16;

/// Starts `count` committers on the current runtime, and returns where to send them appends.
///
/// A committer takes the first waiting append, then every other one already waiting (up to
/// [`MAX_BATCH`], one per stream), and runs them as one statement: one round trip and one
/// commit to disk for all. A lone append goes at once; under load, appends share commits.
/// Committers end when the returned sender is dropped (with the last store handle).
pub(crate) fn spawn_committers(pool: &Pool, count: usize) -> mpsc::UnboundedSender<Job> {
    let (sender, receiver) = mpsc::unbounded_channel();
    let receiver = Arc::new(Mutex::new(receiver));
    for _ in 0..count.max(1) {
        tokio::spawn(committer(pool.clone(), receiver.clone()));
    }
    sender
}

/// The appends one statement will carry.
#[derive(Default)]
struct Batch {
    jobs: Vec<Job>,
    streams: HashSet<String>,
    events: usize,
}

impl Batch {
    /// Whether `job` may join: room left, and its stream not in yet.
    fn fits(&self, job: &Job) -> bool {
        self.jobs.is_empty()
            || (self.jobs.len() < MAX_BATCH
                && self.events + job.request.events.len() <= MAX_BATCH_EVENTS
                && !self.streams.contains(&job.request.stream))
    }

    fn push(&mut self, job: Job) {
        self.events += job.request.events.len();
        self.streams.insert(job.request.stream.clone());
        self.jobs.push(job);
    }

    fn full(&self) -> bool {
        self.jobs.len() >= MAX_BATCH || self.events >= MAX_BATCH_EVENTS
    }
}

async fn committer(pool: Pool, jobs: Arc<Mutex<mpsc::UnboundedReceiver<Job>>>) {
    // Appends to a stream already in the batch wait for the next one: one statement moves each
    // stream once.
    let mut deferred: VecDeque<Job> = VecDeque::new();
    loop {
        let mut batch = Batch::default();
        for job in std::mem::take(&mut deferred) {
            if batch.fits(&job) {
                batch.push(job);
            } else {
                deferred.push_back(job);
            }
        }
        // With deferred appends in hand, never wait for the queue: another committer may be
        // waiting on it for appends that only ours will release.
        let receiver = if batch.jobs.is_empty() {
            Some(jobs.lock().await)
        } else {
            jobs.try_lock().ok()
        };
        if let Some(mut receiver) = receiver {
            if batch.jobs.is_empty() {
                match receiver.recv().await {
                    Some(job) => batch.push(job),
                    None => return,
                }
            }
            while !batch.full() {
                let Ok(job) = receiver.try_recv() else {
                    break;
                };
                if batch.fits(&job) {
                    batch.push(job);
                } else {
                    deferred.push_back(job);
                }
            }
        }
        run(&pool, batch.jobs).await;
    }
}

/// Runs a batch and tells each caller its outcome.
async fn run(pool: &Pool, batch: Vec<Job>) {
    // A caller that went away before its append was sent gave it up: nothing of it is sent.
    let mut batch: Vec<Job> = batch
        .into_iter()
        .filter(|job| !job.reply.is_closed())
        .collect();
    if batch.is_empty() {
        return;
    }
    batch.sort_by(|a, b| a.request.stream.cmp(&b.request.stream));
    let requests: Vec<&Request> = batch.iter().map(|job| &*job.request).collect();
    match execute(pool, &requests).await {
        Ok(befores) => {
            for (job, before) in batch.into_iter().zip(befores) {
                let _ = job
                    .reply
                    .send(Ok(before.map_or(Ran::NotAtExpected, Ran::Appended)));
            }
        }
        Err(Executed::Lost { session, source }) => {
            let source = Shared::new(source);
            for job in batch {
                let _ = job.reply.send(Ok(Ran::Lost {
                    session,
                    source: source.boxed(),
                }));
            }
        }
        // One refused append must not fail the others: each runs again alone.
        Err(Executed::Failed(Failure::Refused(_))) if batch.len() > 1 => {
            for job in batch {
                Box::pin(run(pool, vec![job])).await;
            }
        }
        Err(Executed::Failed(failure)) => {
            let retry = failure.is_retry();
            let source = Shared::new(failure.into_source());
            for job in batch {
                let failure = if retry {
                    Failure::Retry(source.boxed())
                } else {
                    Failure::Refused(source.boxed())
                };
                let _ = job.reply.send(Err(failure));
            }
        }
    }
}

enum Executed {
    Lost { session: Session, source: BoxError },
    Failed(Failure),
}

/// Runs the append statement for `requests` (streams distinct, in order); returns each one's
/// stream version before it, `None` where the stream was not at the expected version.
async fn execute(pool: &Pool, requests: &[&Request]) -> Result<Vec<Option<i64>>, Executed> {
    let conn = pool
        .get()
        .await
        .map_err(|error| Executed::Failed(Failure::pool(error)))?;
    let statement = conn
        .prepare(include_str!("sql/append.sql"))
        .await
        .map_err(Executed::Failed)?;
    if conn.client.is_closed() {
        return Err(Executed::Failed(Failure::Retry(Box::new(ClosedBeforeSend))));
    }
    let streams: Vec<&str> = requests.iter().map(|r| r.stream.as_str()).collect();
    let kinds: Vec<i32> = requests.iter().map(|r| r.kind).collect();
    let versions: Vec<i64> = requests.iter().map(|r| r.version).collect();
    let counts: Vec<i64> = requests
        .iter()
        .map(|r| i64::try_from(r.events.len()).unwrap_or(i64::MAX))
        .collect();
    let message_ids: Vec<&str> = requests.iter().map(|r| r.message_id.as_str()).collect();
    let correlation_ids: Vec<&str> = requests.iter().map(|r| r.correlation_id.as_str()).collect();
    let causation_ids: Vec<&str> = requests.iter().map(|r| r.causation_id.as_str()).collect();
    let users: Vec<&str> = requests.iter().map(|r| r.user.as_str()).collect();
    let total: usize = requests.iter().map(|r| r.events.len()).sum();
    let mut owners: Vec<i64> = Vec::with_capacity(total);
    let mut indexes: Vec<i64> = Vec::with_capacity(total);
    let mut types: Vec<&str> = Vec::with_capacity(total);
    let mut schema_versions: Vec<i64> = Vec::with_capacity(total);
    let mut data: Vec<&[u8]> = Vec::with_capacity(total);
    for (owner, request) in (1_i64..).zip(requests) {
        for (index, event) in (1_i64..).zip(&request.events) {
            owners.push(owner);
            indexes.push(index);
            types.push(&event.event_type);
            schema_versions.push(i64::from(event.schema_version));
            data.push(&event.data);
        }
    }
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 13] = [
        &streams,
        &kinds,
        &versions,
        &counts,
        &message_ids,
        &correlation_ids,
        &causation_ids,
        &users,
        &owners,
        &indexes,
        &types,
        &schema_versions,
        &data,
    ];
    let rows = match conn.client.query(&statement, &params).await {
        Ok(rows) => rows,
        Err(error) => {
            return Err(match Failure::statement(error) {
                Failure::Lost(source) => Executed::Lost {
                    session: conn.session,
                    source,
                },
                Failure::Refused(source) if is_unique_violation(&source) => {
                    // Another writer took a version first: none of the batch was written, and
                    // each append finds out again on its own.
                    Executed::Failed(Failure::Retry(source))
                }
                other => Executed::Failed(other),
            });
        }
    };
    let mut befores = vec![None; requests.len()];
    for row in rows {
        // Written, but unreadable: as good as lost.
        let decoded = row
            .try_get::<_, i64>(0)
            .and_then(|owner| Ok((owner, row.try_get::<_, i64>(1)?)));
        match decoded {
            Ok((owner, before)) => {
                if let Some(slot) = usize::try_from(owner - 1)
                    .ok()
                    .and_then(|index| befores.get_mut(index))
                {
                    *slot = Some(before);
                }
            }
            Err(error) => {
                return Err(Executed::Lost {
                    session: conn.session,
                    source: error.into(),
                });
            }
        }
    }
    Ok(befores)
}

/// One error told to every caller of a batch.
#[derive(Debug, Clone)]
struct Shared(Arc<BoxError>);

impl Shared {
    fn new(source: BoxError) -> Self {
        Self(Arc::new(source))
    }

    fn boxed(&self) -> BoxError {
        Box::new(self.clone())
    }
}

impl std::fmt::Display for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Shared {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

pub(crate) async fn append(
    inner: &Inner,
    stream: &str,
    expected: ExpectedVersion,
    events: Vec<NewEvent>,
    metadata: EventMetadata,
) -> Result<i64, AppendError> {
    if events.is_empty() {
        let actual = inner.stream_version(stream).await?;
        return if satisfies(expected, actual) {
            Ok(actual.unwrap_or(-1))
        } else {
            Err(conflict(stream, expected, actual))
        };
    }
    if events.len() > MAX_EVENTS_PER_APPEND {
        return Err(StoreError::backend(TooManyEvents {
            count: events.len(),
        })
        .into());
    }
    let count = i64::try_from(events.len()).unwrap_or(i64::MAX);
    let (kind, version) = expected_params(expected);
    let request = Arc::new(Request {
        stream: stream.to_owned(),
        kind,
        version,
        events,
        user: serde_json::to_string(&metadata.user).map_err(StoreError::backend)?,
        message_id: metadata.message_id,
        correlation_id: metadata.correlation_id,
        causation_id: metadata.causation_id,
    });
    for _ in 0..ANY_ATTEMPTS {
        let ran = inner
            .retrying(|| inner.submit(request.clone()))
            .await
            .map_err(|failure| StoreError::backend(failure.into_source()))?;
        match ran {
            Ran::Appended(before) => return Ok(before + count),
            Ran::Lost { session, source } => {
                return settle(
                    inner,
                    stream,
                    expected,
                    count,
                    &request.message_id,
                    session,
                    source,
                )
                .await;
            }
            Ran::Abandoned(source) => {
                return Err(AppendError::Unknown {
                    stream: stream.to_owned(),
                    source,
                });
            }
            Ran::NotAtExpected => {
                let actual = inner.stream_version(stream).await?;
                if !satisfies(expected, actual) {
                    return Err(conflict(stream, expected, actual));
                }
                // Lost a race that a new run wins: another writer created or hard-deleted the
                // stream between this statement's snapshot and its locks.
            }
        }
    }
    let actual = inner.stream_version(stream).await?;
    Err(conflict(stream, expected, actual))
}

impl Inner {
    /// Hands an append to the committers and waits for its outcome.
    async fn submit(&self, request: Arc<Request>) -> Result<Ran, Failure> {
        let (reply, outcome) = oneshot::channel();
        let job = Job { request, reply };
        if let Err(mpsc::error::SendError(job)) = self.committers.send(job) {
            // The committers are gone with the runtime that started them: run it here.
            run(&self.pool, vec![job]).await;
        }
        outcome
            .await
            .unwrap_or_else(|_| Ok(Ran::Abandoned(Box::new(CommitterStopped))))
    }
}

/// A committer stopped (its runtime shut down) with an append it had not reported: it may or
/// may not have been sent.
#[derive(Debug, thiserror::Error)]
#[error("the store's committer stopped before reporting the append")]
struct CommitterStopped;

/// The connection broke after the append was sent: end its session so its transaction is
/// final, then look for the append by message id.
async fn settle(
    inner: &Inner,
    stream: &str,
    expected: ExpectedVersion,
    count: i64,
    message_id: &str,
    session: Session,
    source: BoxError,
) -> Result<i64, AppendError> {
    if message_id.is_empty() {
        return Err(AppendError::Unknown {
            stream: stream.to_owned(),
            source,
        });
    }
    let looked = inner
        .retrying(|| async {
            let conn = inner.conn().await?;
            let gone = conn
                .query_opt(
                    include_str!("sql/settle.sql"),
                    &[&session.pid, &session.started],
                )
                .await
                .map_err(Failure::for_read)?
                .map(|row| row.try_get::<_, bool>(0))
                .transpose()
                .map_err(|error| Failure::Refused(error.into()))?
                .unwrap_or(true);
            if !gone {
                return Err(Failure::Refused(Box::new(SessionStillRunning {
                    pid: session.pid,
                })));
            }
            let found = conn
                .query_opt(
                    include_str!("sql/find_message.sql"),
                    &[&stream, &message_id],
                )
                .await
                .map_err(Failure::for_read)?
                .map(|row| row.try_get::<_, Option<i64>>(0))
                .transpose()
                .map_err(|error| Failure::Refused(error.into()))?
                .flatten();
            let actual = conn
                .query_opt(include_str!("sql/stream_version.sql"), &[&stream])
                .await
                .map_err(Failure::for_read)?
                .map(|row| row.try_get::<_, i64>(0))
                .transpose()
                .map_err(|error| Failure::Refused(error.into()))?;
            Ok((found, actual))
        })
        .await;
    match looked {
        Ok((found, actual)) => {
            let decided = decide(stream, expected, count, found, actual, source);
            tracing::warn!(
                target: "switchyard_postgres",
                stream,
                message.id = message_id,
                outcome = ?decided,
                "an append's connection broke after it was sent; settled by message id"
            );
            decided
        }
        Err(failure) => {
            tracing::warn!(
                target: "switchyard_postgres",
                stream,
                message.id = message_id,
                ?failure,
                "an append's connection broke after it was sent and its outcome could not be checked"
            );
            Err(AppendError::Unknown {
                stream: stream.to_owned(),
                source,
            })
        }
    }
}

/// The outcome of an append whose connection broke, once its session is gone: `found` is the
/// last version its message id recorded in the stream, `actual` the stream's version now.
///
/// Applied when the message's last event sits where this append's would have: `count` events
/// after the expected version (with `Any`, wherever it is). Otherwise nothing was written: a
/// conflict if the stream is no longer at the expected version (trying again would conflict
/// too), else a store failure to try again.
fn decide(
    stream: &str,
    expected: ExpectedVersion,
    count: i64,
    found: Option<i64>,
    actual: Option<i64>,
    source: BoxError,
) -> Result<i64, AppendError> {
    let applied = match (expected, found) {
        (ExpectedVersion::Any, Some(last)) => Some(last),
        (ExpectedVersion::NoStream | ExpectedVersion::Exactly(-1), Some(last))
            if last == count - 1 =>
        {
            Some(last)
        }
        (ExpectedVersion::Exactly(version), Some(last))
            if version >= 0 && Some(last) == version.checked_add(count) =>
        {
            Some(last)
        }
        _ => None,
    };
    match applied {
        Some(last) => Ok(last),
        None if satisfies(expected, actual) => {
            Err(AppendError::Store(StoreError::Backend { source }))
        }
        None => Err(conflict(stream, expected, actual)),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn lost() -> BoxError {
        "connection reset".into()
    }

    fn check(
        expected: ExpectedVersion,
        count: i64,
        found: Option<i64>,
        actual: Option<i64>,
    ) -> Result<i64, AppendError> {
        decide("s", expected, count, found, actual, lost())
    }

    #[test]
    fn it_reports_success_when_the_message_recorded_the_events_where_this_append_would_have() {
        assert_eq!(
            check(ExpectedVersion::Exactly(4), 3, Some(7), Some(7)).unwrap(),
            7
        );
        assert_eq!(
            check(ExpectedVersion::NoStream, 2, Some(1), Some(1)).unwrap(),
            1
        );
        assert_eq!(
            check(ExpectedVersion::Exactly(-1), 1, Some(0), Some(5)).unwrap(),
            0
        );
        assert_eq!(
            check(ExpectedVersion::Any, 1, Some(12), Some(20)).unwrap(),
            12
        );
    }

    #[test]
    fn it_reports_a_conflict_when_nothing_was_written_and_the_stream_moved_on() {
        for (expected, found, actual) in [
            (ExpectedVersion::Exactly(4), None, Some(6)),
            (ExpectedVersion::NoStream, None, Some(0)),
            (ExpectedVersion::Exactly(4), None, None),
            // The message id was recorded, but by an earlier append, not this one.
            (ExpectedVersion::Exactly(4), Some(2), Some(9)),
        ] {
            match check(expected, 3, found, actual) {
                Err(AppendError::Conflict {
                    actual: reported, ..
                }) => assert_eq!(reported, actual),
                other => panic!("{expected:?} {found:?} {actual:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn it_reports_a_failure_to_retry_when_nothing_was_written_and_the_stream_waits() {
        for (expected, actual) in [
            (ExpectedVersion::Exactly(4), Some(4)),
            (ExpectedVersion::NoStream, None),
            (ExpectedVersion::Any, Some(3)),
            (ExpectedVersion::Any, None),
        ] {
            match check(expected, 1, None, actual) {
                Err(AppendError::Store(StoreError::Backend { source })) => {
                    assert_eq!(source.to_string(), "connection reset");
                }
                other => panic!("{expected:?} {actual:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn expected_versions_follow_the_memory_store() {
        assert!(satisfies(ExpectedVersion::Any, None));
        assert!(satisfies(ExpectedVersion::Exactly(-1), None));
        assert!(!satisfies(ExpectedVersion::Exactly(-1), Some(0)));
        assert!(!satisfies(ExpectedVersion::NoStream, Some(3)));
        assert!(satisfies(ExpectedVersion::Exactly(3), Some(3)));
        assert!(!satisfies(ExpectedVersion::Exactly(3), None));
        assert_eq!(expected_params(ExpectedVersion::Exactly(-1)), (1, -1));
        assert_eq!(expected_params(ExpectedVersion::Exactly(9)), (2, 9));
    }
}
