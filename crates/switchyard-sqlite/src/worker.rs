//! The threads that own the connections: one writer that commits concurrent writes together
//! (group commit), and readers that, in WAL mode, never wait for it.
//!
//! A batch is what queued while the previous one was committing, and then, when fewer writes
//! are waiting than the previous batch held, the writes still arriving: the writers just
//! answered tend to write again at once, and a batch cut off before they are back would cost
//! them a commit (a sync to disk) of their own. The writer waits for them only while they keep
//! coming, until [`Batching::gather_gap`] passed without one, and a lone writer never waits.
//! The writer's queue ([`crate::queue`]) wakes it only once the writes it waits for are there,
//! not at each one.
//!
//! A write is a closure run inside the batch's transaction. A write that refuses (a version
//! conflict) does so before writing anything, so the others in the batch commit without it; an
//! SQLite failure in the middle of a write rolls the whole batch back, and every member hears
//! that nothing was written. Each caller hears its own result once the batch's commit is known.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use rusqlite::Connection;
use tokio::runtime::{Handle, RuntimeFlavor};
use tokio::sync::oneshot;

use crate::SqliteError;
use crate::error::WorkersStopped;
use crate::head::Head;
use crate::queue;

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
    /// The same failure again, for another write that shared its batch (or its job).
    pub(crate) fn clone_for_member(&self) -> Self {
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
    /// The runtime the caller waits on, if it is a task of a multi-threaded tokio runtime
    /// (whose workers always run; a current-thread runtime runs tasks only while its thread is
    /// in `block_on`, which could hold back the other members' outcomes).
    fn runtime(&self) -> Option<&Handle>;
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
    runtime: Option<Handle>,
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

    fn runtime(&self) -> Option<&Handle> {
        self.runtime.as_ref()
    }
}

/// The members of a committed or failed batch and its outcome, settled when this is dropped:
/// on a task of a caller's runtime, or on the writer's thread.
///
/// Waking many tasks one by one from a thread outside their runtime makes its workers park and
/// be unparked again at nearly every wake-up (each costs a system call and a context switch), as
/// they run each woken task faster than the writer wakes the next. One task that settles the
/// whole batch from inside the runtime wakes them onto its worker's own queue instead.
struct Settlement {
    members: Vec<Box<dyn WriteJob>>,
    outcome: Result<(), WriteFailed>,
}

impl Settlement {
    /// Settles the members of `batch`, leaving it empty: on a task of the first member's runtime
    /// when there are several (then the writer goes on at once), else here. If that runtime is
    /// shutting down, the task is dropped unrun, which settles them just the same.
    fn deliver(batch: &mut Vec<Box<dyn WriteJob>>, outcome: Result<(), WriteFailed>) {
        let runtime = match batch.first().and_then(|first| first.runtime()) {
            Some(runtime) if batch.len() > 1 => runtime.clone(),
            _ => {
                for job in batch.drain(..) {
                    job.settle(&outcome);
                }
                return;
            }
        };
        let size = batch.len();
        let members = std::mem::replace(batch, Vec::with_capacity(size));
        let settlement = Self { members, outcome };
        drop(runtime.spawn(async move { drop(settlement) }));
    }
}

impl Drop for Settlement {
    fn drop(&mut self) {
        for job in self.members.drain(..) {
            job.settle(&self.outcome);
        }
    }
}

/// How the writer forms its batches.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Batching {
    /// The most writes one transaction holds.
    pub(crate) max: usize,
    /// How long the writer waits for a further write while a batch is smaller than the
    /// previous one: it stops once this passed without one arriving.
    pub(crate) gather_gap: Duration,
}

impl Batching {
    /// The gap allowed between two writes still arriving for a batch: long enough for a few
    /// tasks on a busy runtime to write again once answered (a few microseconds each), short
    /// against a commit (tens of microseconds without a sync, milliseconds with one), which is
    /// what a straggler cut off would cost.
    pub(crate) const GATHER_GAP: Duration = Duration::from_micros(200);

    /// Batches of at most `max` writes, gathered with [`Batching::GATHER_GAP`].
    pub(crate) fn up_to(max: usize) -> Self {
        Self {
            max: max.max(1),
            gather_gap: Self::GATHER_GAP,
        }
    }
}

/// Where reads go: to the reader threads, or, without readers, to the writer's queue.
#[derive(Clone, Debug)]
enum Readers {
    Threads(flume::Sender<Job>),
    Writer(queue::Sender<Job>),
}

/// Handles to the worker threads. The threads end when the last handle is dropped, after
/// finishing the jobs already queued.
#[derive(Clone, Debug)]
pub(crate) struct Workers {
    writer: queue::Sender<Job>,
    readers: Readers,
    // Read by the event store only; the writer thread holds its own handle.
    #[cfg_attr(not(feature = "events"), allow(dead_code))]
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
        batching: Batching,
        head: Head,
    ) -> Result<Self, SqliteError> {
        let head = Arc::new(head);
        let (write_tx, write_rx) = queue::channel();
        let read_tx = if readers.is_empty() {
            Readers::Writer(write_tx.clone())
        } else {
            let (read_tx, read_rx) = flume::unbounded::<Job>();
            for (index, conn) in readers.into_iter().enumerate() {
                let jobs = read_rx.clone();
                thread::Builder::new()
                    .name(format!("switchyard-sqlite-reader-{index}"))
                    .spawn(move || read_loop(&conn, &jobs))
                    .map_err(SqliteError::Thread)?;
            }
            Readers::Threads(read_tx)
        };
        let published = head.clone();
        thread::Builder::new()
            .name("switchyard-sqlite-writer".into())
            .spawn(move || write_loop(&writer, &write_rx, batching, &published))
            .map_err(SqliteError::Thread)?;
        Ok(Self {
            writer: write_tx,
            readers: read_tx,
            head,
        })
    }

    /// The head of the global order, published after each commit.
    #[cfg(feature = "events")]
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
            runtime: Handle::try_current()
                .ok()
                .filter(|runtime| runtime.runtime_flavor() == RuntimeFlavor::MultiThread),
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
        match &self.readers {
            Readers::Threads(readers) => readers.send(Job::Read(job)).map_err(drop),
            Readers::Writer(writer) => writer.send(Job::Read(job)).map_err(drop),
        }
        .map_err(|()| WorkersStopped)?;
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

/// How many queued writes wake a writer waiting for more of its batch: it runs each write as
/// it is taken, so a few are enough to get on with, and it is not woken at every one.
const WAKE_AFTER: usize = 8;

/// The writer thread: its connection, its queue, the jobs it took from the queue but has not
/// run yet, and the size of its last batch.
struct Writer<'c> {
    conn: &'c Connection,
    jobs: &'c queue::Receiver<Job>,
    taken: VecDeque<Job>,
    batching: Batching,
    head: &'c Head,
    previous: usize,
}

fn write_loop(conn: &Connection, jobs: &queue::Receiver<Job>, batching: Batching, head: &Head) {
    let mut writer = Writer {
        conn,
        jobs,
        taken: VecDeque::new(),
        batching,
        head,
        previous: 1,
    };
    let mut batch: Vec<Box<dyn WriteJob>> = Vec::with_capacity(batching.max);
    while let Some(job) = writer.next() {
        let first = match job {
            Job::Write(write) => write,
            read @ Job::Read(_) => {
                run_read(conn, read);
                continue;
            }
        };
        batch.push(first);
        let read_after = writer.commit(&mut batch);
        if let Some(read) = read_after {
            run_read(conn, read);
        }
    }
}

impl Writer<'_> {
    /// The next job, waiting for one; `None` once the queue is closed and drained.
    fn next(&mut self) -> Option<Job> {
        self.taken.pop_front().or_else(|| self.jobs.recv())
    }

    /// The next job already queued, without waiting.
    fn next_queued(&mut self) -> Option<Job> {
        if self.taken.is_empty() {
            self.jobs.take_queued(&mut self.taken);
        }
        self.taken.pop_front()
    }

    /// Runs and commits one batch, expecting as many writes as the previous one held, publishes
    /// the head if it changed anything, then settles every member. Returns the read that ended
    /// the batch, to run after it.
    fn commit(&mut self, batch: &mut Vec<Box<dyn WriteJob>>) -> Option<Job> {
        let changes = self.conn.total_changes();
        let expected = self.previous.min(self.batching.max);
        let (outcome, read_after) = self.run_batch(batch, expected);
        self.previous = batch.len();
        if outcome.is_ok() && self.conn.total_changes() != changes {
            self.head.publish(self.conn);
        }
        tracing::trace!(writes = batch.len(), ok = outcome.is_ok(), "group commit");
        Settlement::deliver(batch, outcome);
        read_after
    }

    /// Runs `batch` (its first write) in a new transaction, then, in the same transaction, each
    /// write that queued up while the previous batch committed and, while the batch holds
    /// fewer than `expected`, those still arriving (until [`Batching::gather_gap`] passed
    /// without one), then commits. Running each write as it is taken overlaps the writer's work
    /// with its callers' next writes. A read (in-memory databases queue reads here too) ends
    /// the batch and is returned.
    fn run_batch(
        &mut self,
        batch: &mut Vec<Box<dyn WriteJob>>,
        expected: usize,
    ) -> (Result<(), WriteFailed>, Option<Job>) {
        let conn = self.conn;
        if let Err(error) = execute(conn, include_str!("sql/begin.sql")) {
            return (Err(WriteFailed::NotWritten(Arc::new(error))), None);
        }
        let mut read_after = None;
        let mut ran = 0;
        loop {
            for job in &mut batch[ran..] {
                if let Ran::Broke(failed) = job.run(conn) {
                    // One failure may have left half a write: nobody in this batch is written.
                    let _ = execute(conn, include_str!("sql/rollback.sql"));
                    return (Err(failed), read_after);
                }
            }
            ran = batch.len();
            if ran >= self.batching.max || read_after.is_some() {
                break;
            }
            match self.next_queued() {
                Some(Job::Write(write)) => batch.push(write),
                Some(read) => read_after = Some(read),
                None if ran < expected => {
                    let wanted = (expected - ran).min(WAKE_AFTER);
                    if !self.jobs.wait_for(wanted, self.batching.gather_gap) {
                        break;
                    }
                }
                None => break,
            }
        }
        (commit(conn), read_after)
    }
}

/// Runs one of the writer's transaction statements, compiled once per connection.
fn execute(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}

/// Commits the open batch transaction.
fn commit(conn: &Connection) -> Result<(), WriteFailed> {
    if let Err(error) = execute(conn, include_str!("sql/commit.sql")) {
        // Make sure no transaction stays open either way.
        if !conn.is_autocommit() {
            let _ = execute(conn, include_str!("sql/rollback.sql"));
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::sync::mpsc;

    use super::*;

    /// A writer on a fresh in-memory database with table `t`, gathering with `gap`.
    fn workers(gap: Duration) -> Workers {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (x INTEGER NOT NULL)")
            .unwrap();
        let batching = Batching {
            max: 512,
            gather_gap: gap,
        };
        Workers::start(conn, Vec::new(), batching, crate::head::Head::at(0)).unwrap()
    }

    /// Inserts `x`; an SQLite error (rolling its whole batch back) when `x` is negative.
    async fn insert(workers: &Workers, x: i64) -> Result<Result<(), ()>, WriteFailed> {
        workers
            .write(move |conn| {
                let sql = if x < 0 {
                    "INSERT INTO missing_table VALUES (?1)"
                } else {
                    "INSERT INTO t VALUES (?1)"
                };
                conn.execute(sql, [x]).map(|_| Ok(()))
            })
            .await
    }

    /// A write that says on `started` when the writer runs it, then holds the writer (and the
    /// batch it leads) until `held` hears.
    async fn hold_writer(
        workers: &Workers,
        started: mpsc::Sender<()>,
        held: mpsc::Receiver<()>,
    ) -> Result<Result<(), ()>, WriteFailed> {
        workers
            .write(move |_| {
                let _ = started.send(());
                held.recv().unwrap();
                Ok(Ok(()))
            })
            .await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_still_arriving_join_a_batch_smaller_than_the_last() {
        let workers = workers(Duration::from_secs(30));
        // A batch of three: the write that holds the writer, and the two that queue up behind
        // it, taken into its transaction once it returns.
        let (release, held) = mpsc::channel::<()>();
        let (started, _running) = mpsc::channel::<()>();
        let holding = {
            let workers = workers.clone();
            tokio::spawn(async move { hold_writer(&workers, started, held).await.map(drop) })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        let queued: Vec<_> = (1..=2)
            .map(|x| {
                let workers = workers.clone();
                tokio::spawn(async move { insert(&workers, x).await.map(drop) })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(20)).await;
        release.send(()).unwrap();
        holding.await.unwrap().unwrap();
        for write in queued {
            write.await.unwrap().unwrap();
        }
        // Three writes arriving one after another now form one batch, as the last held
        // three: the third fails, so the whole batch, the first two included, is not written.
        let first = {
            let workers = workers.clone();
            tokio::spawn(async move { insert(&workers, 10).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        let second = {
            let workers = workers.clone();
            tokio::spawn(async move { insert(&workers, 11).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        let failing = insert(&workers, -1).await;
        assert!(matches!(failing, Err(WriteFailed::NotWritten(_))));
        for write in [first, second] {
            let outcome = write.await.unwrap();
            assert!(
                matches!(outcome, Err(WriteFailed::NotWritten(_))),
                "a write that arrived while its batch gathered shares its fate: {outcome:?}"
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lone_writer_waits_for_nobody() {
        // With a gap far beyond the test's run time, a lone writer's writes must not wait for
        // writers that do not exist.
        let workers = workers(Duration::from_secs(3_600));
        for x in 0..20 {
            insert(&workers, x).await.unwrap().unwrap();
        }
    }

    #[test]
    fn a_batch_is_settled_even_when_its_first_callers_runtime_is_gone() {
        let workers = workers(Duration::from_millis(1));
        let waiting = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        // The batch's first write comes from a runtime that shuts down while the writer runs
        // it; the second, from another runtime, joins its batch.
        let (release, held) = mpsc::channel::<()>();
        let (started, running) = mpsc::channel::<()>();
        let first = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        first.spawn({
            let workers = workers.clone();
            async move {
                let _ = hold_writer(&workers, started, held).await;
            }
        });
        running.recv().unwrap();
        first.shutdown_background();
        let second = waiting.spawn({
            let workers = workers.clone();
            async move { insert(&workers, 1).await }
        });
        std::thread::sleep(Duration::from_millis(20));
        release.send(()).unwrap();
        let outcome = waiting.block_on(second).unwrap();
        assert!(
            matches!(outcome, Ok(Ok(()))),
            "the second write committed and hears it: {outcome:?}"
        );
    }

    #[test]
    fn a_batch_led_by_a_current_thread_runtime_is_settled_without_it() {
        let workers = workers(Duration::from_millis(1));
        let waiting = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        // The batch's first write comes from a current-thread runtime that nobody drives once
        // the write is queued; the second, from another runtime, joins its batch.
        let (release, held) = mpsc::channel::<()>();
        let (started, running) = mpsc::channel::<()>();
        let idle = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        idle.block_on(async {
            tokio::spawn({
                let workers = workers.clone();
                async move {
                    let _ = hold_writer(&workers, started, held).await;
                }
            });
            while running.try_recv().is_err() {
                tokio::task::yield_now().await;
            }
        });
        let second = waiting.spawn({
            let workers = workers.clone();
            async move { insert(&workers, 1).await }
        });
        std::thread::sleep(Duration::from_millis(20));
        release.send(()).unwrap();
        // A bound on a hang, not on speed: settled on the idle runtime, it would never come.
        let outcome = waiting
            .block_on(async { tokio::time::timeout(Duration::from_secs(30), second).await })
            .expect("the second write's outcome arrives")
            .unwrap();
        assert!(matches!(outcome, Ok(Ok(()))), "{outcome:?}");
        drop(idle);
    }
}
