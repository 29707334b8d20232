//! Running a projection: deliver its events in batches, save its checkpoint, hold its lease.
//!
//! A [`ProjectionRunner`] runs one [`Projection`] in a task of its own. It takes the
//! projection's lease in a [`CheckpointStore`], reads the events of the projection's aggregate
//! types after the saved checkpoint through a [`Subscription`](crate::Subscription), hands
//! them to [`Projection::apply`] decoded, in batches, and saves the checkpoint after each
//! batch, fenced by its lease.

mod commit;
#[cfg(feature = "conformance")]
pub mod conformance;
mod error;
mod poison;
mod projection;
mod rebuild;
mod watermark;
mod worker;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use backon::ExponentialBuilder;
use switchyard_aggregates::store::{GlobalReader, IntoShared, StoreError};
use switchyard_aggregates::{Aggregate, Upcasters};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub use self::commit::{CheckpointLease, CommitError};
pub use self::error::{RunnerError, WaitError};
pub use self::poison::{OnPoison, RetryError};
use self::poison::{REQUESTS, Request};
use self::projection::Decoder;
pub use self::projection::{BoxError, Projection};
use self::rebuild::OnProgress;
pub use self::rebuild::RebuildProgress;
pub use self::watermark::Watermark;
use self::worker::{Status, Worker};
use crate::checkpoint::{CheckpointError, CheckpointStore, ParkedEvent};

/// The events a batch holds at most unless [`ProjectionRunnerBuilder::batch_size`] says
/// otherwise; also the subscription's page size, so a caught-up batch costs one read.
pub const DEFAULT_BATCH_SIZE: usize = 256;

/// How long a lease keeps other runners out unless [`ProjectionRunnerBuilder::lease_ttl`]
/// says otherwise: the longest a dead runner's projection stands still before another takes
/// over. The holder renews it every third of it.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(30);

/// Runs a [`Projection`] in a task of its own: takes the projection's lease in a
/// [`CheckpointStore`], reads the events of the projection's aggregate types after the saved
/// checkpoint through a [`Subscription`](crate::Subscription), hands them to
/// [`Projection::apply`] decoded, in batches, and saves the checkpoint after each batch,
/// fenced by its lease. Made by [`ProjectionRunner::builder`].
///
/// # Guarantees
///
/// - **In order, at least once**: every event of the registered aggregate types is applied,
///   in global order; a batch applied but not yet checkpointed when its runner died, lost
///   its lease or was stopped is applied again by whichever runner goes on.
/// - **Never skipped** (by default): a failing batch is retried with exponential backoff
///   ([`ProjectionRunnerBuilder::retry`]); once the retries are spent the runner stops with
///   [`RunnerError::Projection`], its checkpoint before the batch. With
///   [`OnPoison::Park`] it parks the one event that keeps failing instead, and goes on: see
///   [`parked`](Self::parked), [`retry_parked`](Self::retry_parked) and
///   [`skip_parked`](Self::skip_parked).
/// - **One active runner**: of several runners of one projection (in one process or many,
///   sharing the checkpoint store) only the lease holder applies events; it renews the lease
///   in the background and stops applying as soon as a renewal or a save says the lease was
///   lost. The others wait, and the first to take the lapsed lease goes on from the saved
///   checkpoint.
///
/// [`stop`](Self::stop) it to release its lease, so another runner takes over at once, and get
/// the projection back. Dropping it aborts the task without releasing the lease, as a crash
/// would: another runner takes over once the lease lapses.
pub struct ProjectionRunner<P: Projection> {
    name: String,
    /// How far the worker got, as it publishes it.
    watermark: Watermark,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<Result<P, RunnerError>>>,
    events: Arc<dyn GlobalReader>,
    checkpoints: Arc<dyn CheckpointStore>,
    requests: mpsc::Sender<Request>,
}

impl<P: Projection> std::fmt::Debug for ProjectionRunner<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProjectionRunner")
            .field("name", &self.name)
            .field("position", &self.position())
            .field("active", &self.is_active())
            .finish_non_exhaustive()
    }
}

impl<P: Projection> ProjectionRunner<P> {
    /// Sets up a runner of `projection`, named `name` in the checkpoint store, reading
    /// `events` (a store by value, an `Arc` of one, an `Arc<dyn GlobalReader>` or an
    /// `Arc<dyn EventStore>`) and keeping its checkpoint and lease in `checkpoints`.
    pub fn builder(
        name: impl Into<String>,
        projection: P,
        events: impl IntoShared<dyn GlobalReader>,
        checkpoints: impl CheckpointStore + 'static,
    ) -> ProjectionRunnerBuilder<P> {
        ProjectionRunnerBuilder {
            name: name.into(),
            projection,
            events: events.into_shared(),
            checkpoints: Arc::new(checkpoints),
            decoders: Vec::new(),
            holder: None,
            batch_size: DEFAULT_BATCH_SIZE,
            lease_ttl: DEFAULT_LEASE_TTL,
            retry: default_retry(),
            on_poison: OnPoison::default(),
            rebuild: None,
        }
    }

    /// The projection's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The position the projection has processed through, as this runner knows it: the saved
    /// checkpoint when it took the lease, then the position after each batch it applied.
    /// Every event of the projection's aggregate types up to it was applied (events of other
    /// types are passed over). `0` before anything.
    pub fn position(&self) -> u64 {
        self.watermark.position()
    }

    /// Whether this runner holds the lease and applies events; `false` while another runner
    /// does (or before its first acquisition, or after it stopped).
    pub fn is_active(&self) -> bool {
        self.watermark.is_active()
    }

    /// How far the projection is behind the store: the store's head
    /// ([`GlobalReader::head`]) minus [`position`](Self::position). Each batch's tracing span
    /// (`projection.batch`) carries it too, as the field `lag`, on stores that publish their
    /// head ([`GlobalReader::watch_head`]).
    ///
    /// # Errors
    ///
    /// The store's, when its head cannot be read.
    pub async fn lag(&self) -> Result<u64, StoreError> {
        let head = self.events.head().await?;
        Ok(head.saturating_sub(self.position()))
    }

    /// Whether the projection has processed every event up to `position` (a command's
    /// reply position): a read of the read model now
    /// sees their effects.
    pub fn caught_up_to(&self, position: u64) -> bool {
        self.watermark.caught_up_to(position)
    }

    /// Waits until the projection has processed every event up to `position`
    /// ([`caught_up_to`](Self::caught_up_to)), until `deadline` at the latest.
    ///
    /// # Errors
    ///
    /// [`WaitError::Timeout`] when the deadline passes first; [`WaitError::Stopped`] when the
    /// runner stops first.
    pub async fn wait_for(&self, position: u64, deadline: Instant) -> Result<(), WaitError> {
        self.watermark.wait_for(position, deadline).await
    }

    /// A cloneable handle on how far this runner got ([`position`](Self::position),
    /// [`wait_for`](Self::wait_for)), for code that does not own the runner: the query
    /// handlers of a [`ReadModel`](crate::ReadModel), say.
    pub fn watermark(&self) -> Watermark {
        self.watermark.clone()
    }

    /// The events the projection parked ([`OnPoison::Park`]), by position, as its checkpoint
    /// store keeps them: what any runner of the projection parked, active or not.
    ///
    /// # Errors
    ///
    /// The checkpoint store's.
    pub async fn parked(&self) -> Result<Vec<ParkedEvent>, CheckpointError> {
        self.checkpoints.parked(&self.name).await
    }

    /// Applies the event parked at `position` again, alone, through this runner's projection,
    /// between two batches (so after events later than it: the projection must accept it out of
    /// order, as the fix that made it pass allows). Once it applies, its record is removed;
    /// when it fails again it stays parked, its record telling one more attempt and the new
    /// error. One attempt, no backoff: the caller decides when to try again.
    ///
    /// # Errors
    ///
    /// [`RetryError::NotActive`] unless this runner holds the lease;
    /// [`RetryError::NotParked`], [`RetryError::Missing`], [`RetryError::Failed`], or a
    /// store's error.
    pub async fn retry_parked(&self, position: u64) -> Result<(), RetryError> {
        let not_active = || RetryError::NotActive {
            projection: self.name.clone(),
        };
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(Request::Retry { position, reply })
            .await
            .map_err(|_| not_active())?;
        answer.await.map_err(|_| not_active())?
    }

    /// Forgets the event parked at `position`: the projection never applies it. `false` when
    /// none was parked there. Any runner (or the checkpoint store itself,
    /// [`CheckpointStore::unpark`]) may skip: the checkpoint is past the event already.
    ///
    /// # Errors
    ///
    /// The checkpoint store's.
    pub async fn skip_parked(&self, position: u64) -> Result<bool, CheckpointError> {
        let skipped = self.checkpoints.unpark(&self.name, position).await?;
        if skipped {
            tracing::info!(projection = %self.name, position, "parked event skipped");
        }
        Ok(skipped)
    }

    /// Whether the runner's task has ended: stopped by an error ([`stop`](Self::stop) returns
    /// it).
    pub fn is_finished(&self) -> bool {
        self.task.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Stops the runner: the batch in hand is abandoned (the next holder applies it again),
    /// the lease released so another runner takes over at once. Returns the projection, or
    /// the error the runner stopped on by itself.
    ///
    /// # Errors
    ///
    /// The [`RunnerError`] the runner had stopped on.
    pub async fn stop(mut self) -> Result<P, RunnerError> {
        let _ = self.stop.send(true);
        let Some(task) = self.task.take() else {
            return Err(self.aborted("already stopped".into()));
        };
        match task.await {
            Ok(outcome) => outcome,
            Err(join) => Err(self.aborted(join.to_string())),
        }
    }

    fn aborted(&self, reason: String) -> RunnerError {
        RunnerError::Aborted {
            projection: self.name.clone(),
            reason,
        }
    }
}

impl<P: Projection> Drop for ProjectionRunner<P> {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// Sets a [`ProjectionRunner`] up; [`start`](Self::start) starts it. Made by
/// [`ProjectionRunner::builder`].
#[must_use = "a builder does nothing until `start` is called"]
pub struct ProjectionRunnerBuilder<P: Projection> {
    name: String,
    projection: P,
    events: Arc<dyn GlobalReader>,
    checkpoints: Arc<dyn CheckpointStore>,
    decoders: Vec<Decoder<P::Event>>,
    holder: Option<String>,
    batch_size: usize,
    lease_ttl: Duration,
    retry: ExponentialBuilder,
    on_poison: OnPoison,
    rebuild: Option<OnProgress>,
}

impl<P: Projection> std::fmt::Debug for ProjectionRunnerBuilder<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let aggregates: Vec<_> = self.decoders.iter().map(|d| d.aggregate).collect();
        f.debug_struct("ProjectionRunnerBuilder")
            .field("name", &self.name)
            .field("aggregates", &aggregates)
            .field("holder", &self.holder)
            .field("batch_size", &self.batch_size)
            .field("lease_ttl", &self.lease_ttl)
            .field("on_poison", &self.on_poison)
            .finish_non_exhaustive()
    }
}

impl<P: Projection> ProjectionRunnerBuilder<P> {
    /// Reads the events of aggregate type `A`, decoded as `A::Event` and converted into the
    /// projection's event type. Register each aggregate type the projection reads.
    ///
    /// An event recorded at another schema version than `A::EVENT_SCHEMA_VERSION` does not
    /// decode (it stops the runner, or is parked): register `A`'s upcasters with
    /// [`aggregate_with`](Self::aggregate_with) to read older events.
    pub fn aggregate<A: Aggregate>(self) -> Self
    where
        P::Event: From<A::Event>,
    {
        self.aggregate_with(Upcasters::<A>::new())
    }

    /// Reads the events of aggregate type `A` as [`aggregate`](Self::aggregate) does, those
    /// recorded at older schema versions upgraded by `upcasters` first: the chain the
    /// aggregate's repo reads them with ([`Repo::with_upcasters`](switchyard_aggregates::Repo::with_upcasters)).
    pub fn aggregate_with<A: Aggregate>(mut self, upcasters: Upcasters<A>) -> Self
    where
        P::Event: From<A::Event>,
    {
        self.decoders.push(Decoder::upcast(upcasters));
        self
    }

    /// Names this runner in the lease (shown by [`CheckpointStore::list`]); by default the
    /// process id and a number unique in the process.
    pub fn holder(mut self, holder: impl Into<String>) -> Self {
        self.holder = Some(holder.into());
        self
    }

    /// Applies at most `batch_size` events at a time (at least 1), and saves the checkpoint
    /// after each batch.
    pub fn batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size.max(1);
        self
    }

    /// Holds the lease for `ttl` at a time, renewed every third of it: see
    /// [`DEFAULT_LEASE_TTL`]. A runner standing by asks for the lease every third of it too,
    /// and at least every second.
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl;
        self
    }

    /// Retries a failing batch, a failing read and a failing checkpoint write after the delays
    /// of `backoff`; once they are spent the runner stops with the error. The default starts
    /// at 100 ms, doubles up to 30 s, and gives up after 10 retries.
    pub fn retry(mut self, backoff: ExponentialBuilder) -> Self {
        self.retry = backoff;
        self
    }

    /// What to do with a batch that still fails once its retries are spent: stop the runner
    /// ([`OnPoison::Stop`], the default for projections) or park the event that keeps failing
    /// and go on ([`OnPoison::Park`]). An event that cannot be decoded stops the runner with
    /// [`RunnerError::Decode`], or is parked at once.
    pub fn on_poison(mut self, on_poison: OnPoison) -> Self {
        self.on_poison = on_poison;
        self
    }

    /// Rebuilds the projection once this runner takes the lease: [`Projection::reset`] empties
    /// the read model, the checkpoint goes back to the origin, and every event is applied again,
    /// in batches as ever. After each batch, `on_progress` is told how far the rebuild got (and
    /// a `projection rebuild progress` event is logged), the last time with
    /// [`finished`](RebuildProgress::finished) once the replay passed the store's head as it was
    /// when the rebuild started. The runner then goes on with live events.
    ///
    /// Stop the projection's other runners first: a runner that held the lease before keeps its
    /// own read model as it was.
    pub fn rebuild(mut self, on_progress: impl FnMut(&RebuildProgress) + Send + 'static) -> Self {
        self.rebuild = Some(Box::new(on_progress));
        self
    }

    /// Starts the runner in a task of its own on the current Tokio runtime. It waits for the
    /// lease, then applies events until stopped.
    ///
    /// # Errors
    ///
    /// [`RunnerError::NoAggregates`] when no aggregate type was registered.
    pub fn start(self) -> Result<ProjectionRunner<P>, RunnerError> {
        if self.decoders.is_empty() {
            return Err(RunnerError::NoAggregates {
                projection: self.name,
            });
        }
        let (status_sender, status) = watch::channel(Status::default());
        let (stop, stopped) = watch::channel(false);
        let (requests, requested) = mpsc::channel(REQUESTS);
        let name = self.name.clone();
        let worker = Worker {
            holder: self.holder.unwrap_or_else(default_holder),
            name: self.name,
            decoders: self.decoders,
            events: self.events.clone(),
            checkpoints: self.checkpoints.clone(),
            batch_size: self.batch_size,
            lease_ttl: self.lease_ttl,
            retry: self.retry,
            on_poison: self.on_poison,
            status: status_sender,
            stop: stopped,
            head: self.events.watch_head(),
        };
        Ok(ProjectionRunner {
            watermark: Watermark::new(name.as_str().into(), status),
            name,
            stop,
            task: Some(tokio::spawn(worker.run(
                self.projection,
                self.rebuild.or_else(rebuild_in_memory::<P>),
                requested,
            ))),
            events: self.events,
            checkpoints: self.checkpoints,
            requests,
        })
    }
}

/// An in-memory projection starts empty in each process, so its runner replays the order from
/// the origin whatever the saved checkpoint says (see [`Projection::IN_MEMORY`]).
fn rebuild_in_memory<P: Projection>() -> Option<OnProgress> {
    P::IN_MEMORY.then(|| Box::new(|_: &RebuildProgress| {}) as OnProgress)
}

fn default_retry() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(30))
        .with_max_times(10)
}

/// `"{pid}-{start}-{n}"`: unique across the processes sharing a store, and across the runners
/// of one process.
fn default_holder() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let started = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| since.as_micros());
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{}-{started}-{n}", std::process::id())
}
