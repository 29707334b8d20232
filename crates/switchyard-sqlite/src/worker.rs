//! The threads that own the connections: one writer that commits concurrent writes together
//! (group commit), and readers that, in WAL mode, never wait for it.
//!
//! A write is a closure run inside the batch's transaction. A write that refuses (a version
//! conflict) does so before writing anything, so the others in the batch commit without it; an
//! SQLite failure in the middle of a write rolls the whole batch back, and every member hears
//! that nothing was written. Each caller hears its own result once the batch's commit is known.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::thread;

use rusqlite::Connection;
use tokio::sync::oneshot;

use crate::SqliteError;
use crate::error::WorkersStopped;
use crate::head::Head;

/// Why a write did not reach its own verdict.
#[derive(Debug)]
pub(crate) enum WriteFailed {
    /// Nothing was written: the batch could not start, or a member failed and the batch was
    /// rolled back.
    NotWritten(Arc<rusqlite::Error>),
    /// The commit failed: SQLite may or may not have made it durable.
    CommitUnknown(Arc<rusqlite::Error>),
    /// The write panicked; the batch was rolled back.
    Panicked,
    /// The worker threads are gone.
    Stopped,
}

impl WriteFailed {
    fn clone_for_member(&self) -> Self {
        match self {
            Self::NotWritten(error) => Self::NotWritten(error.clone()),
            Self::CommitUnknown(error) => Self::CommitUnknown(error.clone()),
            Self::Panicked => Self::Panicked,
            Self::Stopped => Self::Stopped,
        }
    }
}

/// How running one member went.
enum Ran {
    /// It wrote, or refused before writing anything: the batch goes on.
    Fine,
    /// SQLite failed, or the write panicked, maybe half-way: the whole batch must be rolled back.
    Broke(WriteFailed),
}

/// A write waiting in the writer's queue.
trait WriteJob: Send {
    fn run(&mut self, conn: &Connection) -> Ran;
    /// Tells the caller the outcome, once the batch's fate is known.
    fn settle(self: Box<Self>, batch: &Result<(), WriteFailed>);
}

type ReadJob = Box<dyn FnOnce(&Connection) + Send>;

enum Job {
    Write(Box<dyn WriteJob>),
    Read(ReadJob),
}

/// A write and its caller. Its work answers `Ok(Err(refusal))` when it refuses without having
/// written anything (a version conflict): the batch goes on without it, no savepoint needed.
struct Write<F, T, E> {
    work: Option<F>,
    verdict: Option<Result<T, E>>,
    reply: Option<oneshot::Sender<Result<Result<T, E>, WriteFailed>>>,
}

impl<F, T, E> WriteJob for Write<F, T, E>
where
    F: FnOnce(&Connection) -> rusqlite::Result<Result<T, E>> + Send,
    T: Send,
    E: Send,
{
    fn run(&mut self, conn: &Connection) -> Ran {
        let Some(work) = self.work.take() else {
            return Ran::Fine;
        };
        match catch_unwind(AssertUnwindSafe(|| work(conn))) {
            Ok(Ok(verdict)) => {
                self.verdict = Some(verdict);
                Ran::Fine
            }
            Ok(Err(error)) => Ran::Broke(WriteFailed::NotWritten(Arc::new(error))),
            Err(_) => Ran::Broke(WriteFailed::Panicked),
        }
    }

    fn settle(mut self: Box<Self>, batch: &Result<(), WriteFailed>) {
        let outcome = match (self.verdict.take(), batch) {
            (Some(verdict), Ok(())) => Ok(verdict),
            (_, Err(failed)) => Err(failed.clone_for_member()),
            (None, Ok(())) => Err(WriteFailed::Panicked),
        };
        if let Some(reply) = self.reply.take() {
            // The caller may have stopped waiting; the outcome is durable either way.
            let _ = reply.send(outcome);
        }
    }
}

/// Handles to the worker threads. The threads end when the last handle is dropped, after
/// finishing the jobs already queued.
#[derive(Clone, Debug)]
pub(crate) struct Workers {
    writer: flume::Sender<Job>,
    readers: flume::Sender<Job>,
    head: Arc<Head>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Write(_) => "Job::Write",
            Self::Read(_) => "Job::Read",
        })
    }
}

impl Workers {
    /// Starts the writer on `writer` and one reader thread per connection in `readers`. With
    /// no reader connections (an in-memory database), reads run on the writer's thread,
    /// between batches. The writer publishes `head` (read on `writer`) after its commits.
    pub(crate) fn start(
        writer: Connection,
        readers: Vec<Connection>,
        max_batch: usize,
        head: Head,
    ) -> Result<Self, SqliteError> {
        let head = Arc::new(head);
        let (write_tx, write_rx) = flume::unbounded();
        let read_tx = if readers.is_empty() {
            write_tx.clone()
        } else {
            let (read_tx, read_rx) = flume::unbounded::<Job>();
            for (index, conn) in readers.into_iter().enumerate() {
                let jobs = read_rx.clone();
                thread::Builder::new()
                    .name(format!("switchyard-sqlite-reader-{index}"))
                    .spawn(move || read_loop(&conn, &jobs))
                    .map_err(SqliteError::Thread)?;
            }
            read_tx
        };
        let published = head.clone();
        thread::Builder::new()
            .name("switchyard-sqlite-writer".into())
            .spawn(move || write_loop(&writer, &write_rx, max_batch, &published))
            .map_err(SqliteError::Thread)?;
        Ok(Self {
            writer: write_tx,
            readers: read_tx,
            head,
        })
    }

    /// The head of the global order, published after each commit.
    pub(crate) fn head(&self) -> &Head {
        &self.head
    }

    /// Runs `work` in the next batch and returns its verdict once the batch is committed.
    /// `work` must refuse (`Ok(Err(_))`) before writing anything; an SQLite error (`Err`) rolls
    /// the whole batch back.
    pub(crate) async fn write<F, T, E>(&self, work: F) -> Result<Result<T, E>, WriteFailed>
    where
        F: FnOnce(&Connection) -> rusqlite::Result<Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: Send + 'static,
    {
        let (reply, outcome) = oneshot::channel();
        let job = Write {
            work: Some(work),
            verdict: None,
            reply: Some(reply),
        };
        self.writer
            .send(Job::Write(Box::new(job)))
            .map_err(|_| WriteFailed::Stopped)?;
        outcome.await.unwrap_or(Err(WriteFailed::Stopped))
    }

    /// Runs `work` on a reader's connection.
    pub(crate) async fn read<F, T>(&self, work: F) -> Result<T, WorkersStopped>
    where
        F: FnOnce(&Connection) -> T + Send + 'static,
        T: Send + 'static,
    {
        self.submit_read(work)?.await.map_err(|_| WorkersStopped)
    }

    /// Queues `work` for a reader now, so it runs while the caller does something else.
    pub(crate) fn submit_read<F, T>(&self, work: F) -> Result<oneshot::Receiver<T>, WorkersStopped>
    where
        F: FnOnce(&Connection) -> T + Send + 'static,
        T: Send + 'static,
    {
        let (reply, outcome) = oneshot::channel();
        let job: ReadJob = Box::new(move |conn| {
            let _ = reply.send(work(conn));
        });
        self.readers
            .send(Job::Read(job))
            .map_err(|_| WorkersStopped)?;
        Ok(outcome)
    }
}

fn read_loop(conn: &Connection, jobs: &flume::Receiver<Job>) {
    while let Ok(job) = jobs.recv() {
        run_read(conn, job);
    }
}

fn run_read(conn: &Connection, job: Job) {
    if let Job::Read(work) = job {
        // A panicking read drops its reply: its caller hears that the workers stopped; the
        // thread goes on serving others.
        let _ = catch_unwind(AssertUnwindSafe(|| work(conn)));
    }
}

fn write_loop(conn: &Connection, jobs: &flume::Receiver<Job>, max_batch: usize, head: &Head) {
    let mut batch: Vec<Box<dyn WriteJob>> = Vec::with_capacity(max_batch);
    while let Ok(job) = jobs.recv() {
        let first = match job {
            Job::Write(write) => write,
            read @ Job::Read(_) => {
                run_read(conn, read);
                continue;
            }
        };
        batch.push(first);
        // Whatever queued up while the previous batch was committing joins this one.
        let mut read_after = None;
        while batch.len() < max_batch {
            match jobs.try_recv() {
                Ok(Job::Write(write)) => batch.push(write),
                Ok(read @ Job::Read(_)) => {
                    read_after = Some(read);
                    break;
                }
                Err(_) => break,
            }
        }
        commit(conn, &mut batch, head);
        if let Some(read) = read_after {
            run_read(conn, read);
        }
    }
}

/// Runs and commits one batch, publishes the head if it changed anything, then settles every
/// member.
fn commit(conn: &Connection, batch: &mut Vec<Box<dyn WriteJob>>, head: &Head) {
    let changes = conn.total_changes();
    let outcome = run_batch(conn, batch);
    if outcome.is_ok() && conn.total_changes() != changes {
        head.publish(conn);
    }
    tracing::trace!(writes = batch.len(), ok = outcome.is_ok(), "group commit");
    for job in batch.drain(..) {
        job.settle(&outcome);
    }
}

fn run_batch(conn: &Connection, batch: &mut [Box<dyn WriteJob>]) -> Result<(), WriteFailed> {
    conn.execute_batch(include_str!("sql/begin.sql"))
        .map_err(|error| WriteFailed::NotWritten(Arc::new(error)))?;
    for job in batch.iter_mut() {
        if let Ran::Broke(failed) = job.run(conn) {
            // One failure may have left half a write: nobody in this batch is written.
            let _ = conn.execute_batch(include_str!("sql/rollback.sql"));
            return Err(failed);
        }
    }
    if let Err(error) = conn.execute_batch(include_str!("sql/commit.sql")) {
        // Make sure no transaction stays open either way.
        if !conn.is_autocommit() {
            let _ = conn.execute_batch(include_str!("sql/rollback.sql"));
        }
        if is_disk_full(&error) {
            // SQLITE_FULL: a write of the log or the database found no space, before the
            // commit record was complete; the transaction was rolled back (by SQLite, or
            // just above). Nothing was written.
            return Err(WriteFailed::NotWritten(Arc::new(error)));
        }
        // Any other failure may come after the commit reached the disk (an I/O error while
        // syncing): its outcome is unknown.
        return Err(WriteFailed::CommitUnknown(Arc::new(error)));
    }
    Ok(())
}

/// Whether SQLite failed for want of space (`SQLITE_FULL`: the disk or a quota is full).
pub(crate) fn is_disk_full(error: &rusqlite::Error) -> bool {
    error.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull)
}
