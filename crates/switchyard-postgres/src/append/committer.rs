//! The committers: tasks that take the appends waiting at one moment and write them in one
//! statement (`sql/append.sql`), so that appends share round trips and commits.
//!
//! Each append of a batch still succeeds or misses its expected version on its own; a batch
//! the server refuses runs again one append at a time, so one bad append fails only itself.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use switchyard_aggregates::store::NewEvent;
use tokio::sync::{Mutex, mpsc, oneshot};

use crate::db::Database;
use crate::error::{BoxError, Failure, is_unique_violation};
use crate::pool::Session;

/// What running an append did.
pub(super) enum Ran {
    /// Appended after version `before`; its last event took `position`.
    Appended { before: i64, position: Option<u64> },
    /// The stream was at the expected version, but the append's message had already recorded
    /// events in it, the last at the given version; nothing was written.
    Recorded(i64),
    /// The stream was not at the expected version; nothing was written.
    NotAtExpected,
    /// The connection broke after the statement was sent.
    Lost { session: Session, source: BoxError },
    /// The committer running it stopped: it may have been sent or not.
    Abandoned(BoxError),
}

/// One append, as the committers take it.
pub(super) struct Request {
    pub(super) stream: String,
    /// The expected version, as `expected::params` gives it.
    pub(super) kind: i32,
    pub(super) version: i64,
    pub(super) events: Vec<NewEvent>,
    pub(super) message_id: String,
    pub(super) correlation_id: String,
    pub(super) causation_id: String,
    /// The user metadata, as JSON.
    pub(super) user: String,
}

/// An append waiting for a committer, and where its outcome goes.
struct Job {
    request: Arc<Request>,
    reply: oneshot::Sender<Result<Ran, Failure>>,
}

/// The most appends one statement carries.
const MAX_BATCH: usize = 128;

/// The most events one statement carries, unless a single append holds more.
const MAX_BATCH_EVENTS: usize = 1 << 16;

/// The committer tasks, and the queue of appends waiting for them.
pub(super) struct Committers {
    queue: mpsc::UnboundedSender<Job>,
    database: Database,
}

impl Committers {
    /// Starts `count` committers on the current runtime.
    ///
    /// A committer takes the first waiting append, then every other one already waiting (up to
    /// [`MAX_BATCH`], one per stream), and runs them as one statement: one round trip and one
    /// commit to disk for all. A lone append goes at once; under load, appends share commits.
    /// Committers end when this is dropped (with the last store handle).
    pub(super) fn spawn(database: &Database, count: usize) -> Self {
        let (queue, receiver) = mpsc::unbounded_channel();
        let receiver = Arc::new(Mutex::new(receiver));
        for _ in 0..count.max(1) {
            tokio::spawn(committer(database.clone(), receiver.clone()));
        }
        Self {
            queue,
            database: database.clone(),
        }
    }

    /// Hands an append to the committers and waits for its outcome.
    pub(super) async fn run(&self, request: Arc<Request>) -> Result<Ran, Failure> {
        let (reply, outcome) = oneshot::channel();
        let job = Job { request, reply };
        if let Err(mpsc::error::SendError(job)) = self.queue.send(job) {
            // The committers are gone with the runtime that started them: run it here.
            run(&self.database, vec![job]).await;
        }
        outcome
            .await
            .unwrap_or_else(|_| Ok(Ran::Abandoned(Box::new(CommitterStopped))))
    }
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

async fn committer(database: Database, jobs: Arc<Mutex<mpsc::UnboundedReceiver<Job>>>) {
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
        run(&database, batch.jobs).await;
    }
}

/// Runs a batch and tells each caller its outcome.
async fn run(database: &Database, batch: Vec<Job>) {
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
    match execute(database, &requests).await {
        Ok(outcomes) => {
            for (job, ran) in batch.into_iter().zip(outcomes) {
                let _ = job.reply.send(Ok(ran));
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
                Box::pin(run(database, vec![job])).await;
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

/// Runs the append statement for `requests` (streams distinct, in order); returns what each one
/// did: [`Ran::Appended`], [`Ran::Recorded`] or [`Ran::NotAtExpected`].
async fn execute(database: &Database, requests: &[&Request]) -> Result<Vec<Ran>, Executed> {
    let conn = database.conn().await.map_err(Executed::Failed)?;
    let statement = conn
        .prepare(include_str!("../sql/append.sql"))
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
    let mut outcomes: Vec<Ran> = requests.iter().map(|_| Ran::NotAtExpected).collect();
    for row in rows {
        // Written, but unreadable: as good as lost.
        let decoded = row.try_get::<_, i64>(0).and_then(|owner| {
            let before = row.try_get::<_, Option<i64>>(1)?;
            let recorded = row.try_get::<_, Option<i64>>(2)?;
            let position = row.try_get::<_, Option<i64>>(3)?;
            let appended = before.map(|before| Ran::Appended {
                before,
                position: position.and_then(|position| u64::try_from(position).ok()),
            });
            Ok((owner, appended.or(recorded.map(Ran::Recorded))))
        });
        match decoded {
            Ok((owner, Some(ran))) => {
                if let Some(slot) = usize::try_from(owner - 1)
                    .ok()
                    .and_then(|index| outcomes.get_mut(index))
                {
                    *slot = ran;
                }
            }
            Ok((_, None)) => {}
            Err(error) => {
                return Err(Executed::Lost {
                    session: conn.session,
                    source: error.into(),
                });
            }
        }
    }
    Ok(outcomes)
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

/// The connection was found closed before the statement was sent.
#[derive(Debug, thiserror::Error)]
#[error("connection closed before the statement was sent")]
struct ClosedBeforeSend;

/// A committer stopped (its runtime shut down) with an append it had not reported: it may or
/// may not have been sent.
#[derive(Debug, thiserror::Error)]
#[error("the store's committer stopped before reporting the append")]
struct CommitterStopped;
