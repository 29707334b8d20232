//! The runner's task: wait for the lease, then apply batches and save the checkpoint.

mod parking;
mod retries;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use backon::ExponentialBuilder;
use switchyard_aggregates::DecodedEvent;
use switchyard_aggregates::store::{GlobalReader, RecordedEvent};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::Instrument;

use self::parking::Delivery;
use self::retries::may_pass;
use super::RunnerError;
use super::commit::{CheckpointLease, CommitError};
use super::poison::{OnPoison, Request, RetryError};
use super::projection::{Decoder, Projection, decode};
use super::rebuild::{OnProgress, Rebuild};
use crate::Subscription;
use crate::checkpoint::{Acquire, CheckpointError, CheckpointStore, Lease, LeaseToken};

/// What the runner publishes to its handle.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Status {
    /// Processed through here.
    pub(super) position: u64,
    /// Holds the lease.
    pub(super) active: bool,
}

/// Everything the runner's task needs but the projection, which it holds apart (mutably, while
/// the rest is shared by its concurrent steps).
pub(super) struct Worker<P: Projection> {
    pub(super) name: String,
    pub(super) holder: String,
    pub(super) decoders: Vec<Decoder<P::Event>>,
    pub(super) events: Arc<dyn GlobalReader>,
    pub(super) checkpoints: Arc<dyn CheckpointStore>,
    pub(super) batch_size: usize,
    pub(super) lease_ttl: Duration,
    pub(super) retry: ExponentialBuilder,
    pub(super) on_poison: OnPoison,
    pub(super) status: watch::Sender<Status>,
    pub(super) stop: watch::Receiver<bool>,
    /// The store's head as it publishes it, for the lag in the batches' spans.
    pub(super) head: Option<watch::Receiver<u64>>,
}

/// How a time as leader ended.
enum Led {
    Stopped,
    LeaseLost,
}

impl<P: Projection> Worker<P> {
    /// Runs `projection` until stopped, first rebuilding it with `rebuild` (once the lease is
    /// taken) when given.
    pub(super) async fn run(
        self,
        mut projection: P,
        mut rebuild: Option<OnProgress>,
        mut requests: mpsc::Receiver<Request>,
    ) -> Result<P, RunnerError> {
        loop {
            let Some(lease) = self.acquire(&mut requests).await? else {
                return Ok(projection);
            };
            tracing::info!(projection = %self.name, holder = %self.holder, generation = lease.token.generation, "projection lease taken");
            let led = self
                .lead(&mut projection, &mut rebuild, &mut requests, &lease)
                .await;
            self.status.send_modify(|status| status.active = false);
            match led {
                Ok(Led::LeaseLost)
                | Err(RunnerError::Checkpoint {
                    source: CheckpointError::LeaseLost { .. },
                    ..
                }) => {
                    tracing::warn!(projection = %self.name, holder = %self.holder, "projection lease lost; standing by");
                }
                Ok(Led::Stopped) => {
                    self.release(&lease.token).await;
                    return Ok(projection);
                }
                Err(error) => {
                    tracing::error!(projection = %self.name, error = %error, "projection runner stopped");
                    self.release(&lease.token).await;
                    return Err(error);
                }
            }
        }
    }

    /// Takes the lease, waiting while another runner holds it; `None` when stopped first.
    /// Requests meanwhile are answered that this runner is not the active one.
    async fn acquire(
        &self,
        requests: &mut mpsc::Receiver<Request>,
    ) -> Result<Option<Lease>, RunnerError> {
        let mut stop = self.stop.clone();
        loop {
            let now = SystemTime::now();
            match self
                .checkpoints
                .acquire(&self.name, &self.holder, now, now + self.lease_ttl)
                .await
            {
                Ok(Acquire::Acquired(lease)) => return Ok(Some(lease)),
                Ok(_) => {}
                Err(source @ CheckpointError::Name(_)) => {
                    return Err(self.checkpoint_failed(source));
                }
                Err(error) => {
                    tracing::warn!(projection = %self.name, error = %error, "projection lease could not be asked for; trying again");
                }
            }
            let standby = tokio::time::sleep(standby_poll(self.lease_ttl));
            tokio::pin!(standby);
            loop {
                tokio::select! {
                    _ = stop.wait_for(|stopped| *stopped) => return Ok(None),
                    () = &mut standby => break,
                    Some(request) = requests.recv() => self.refuse(request),
                }
            }
        }
    }

    /// Applies batches while holding `lease`.
    async fn lead(
        &self,
        projection: &mut P,
        rebuild_first: &mut Option<OnProgress>,
        requests: &mut mpsc::Receiver<Request>,
        lease: &Lease,
    ) -> Result<Led, RunnerError> {
        let (_renewal, mut lost) = Renewal::start(
            self.checkpoints.clone(),
            lease.token.clone(),
            self.lease_ttl,
        );
        let mut stop = self.stop.clone();
        let work = async {
            // An in-memory read model holds what this runner applied, whatever the store says.
            let mut checkpoint = if P::IN_MEMORY {
                self.status.borrow().position
            } else {
                self.retrying(|| self.checkpoints.load(&self.name)).await?
            };
            let mut rebuild = None;
            if let Some(on_progress) = rebuild_first.take() {
                rebuild = self
                    .start_rebuild(projection, &lease.token, on_progress)
                    .await?;
                checkpoint = 0;
            }
            self.status.send_replace(Status {
                position: checkpoint,
                active: true,
            });
            let mut subscription = self.subscribe(checkpoint).await?;
            loop {
                // Requests are served between batches, while the projection is free; the
                // read is cancel-safe, so one arriving while it waits for events loses nothing.
                let recorded = tokio::select! {
                    biased;
                    Some(request) = requests.recv() => {
                        self.serve(projection, request, &lease.token).await;
                        continue;
                    }
                    recorded = self.read(&mut subscription) => recorded?,
                };
                let Some(applied) = self
                    .step(projection, recorded, subscription.position(), &lease.token)
                    .await?
                else {
                    return Ok(Led::LeaseLost);
                };
                if let Some(under_way) = &mut rebuild
                    && under_way.advance(&self.name, subscription.position(), applied)
                {
                    rebuild = None;
                }
            }
        };
        tokio::select! {
            biased;
            _ = stop.wait_for(|stopped| *stopped) => Ok(Led::Stopped),
            _ = &mut lost => Ok(Led::LeaseLost),
            led = work => led,
        }
    }

    /// Empties the read model and sets the checkpoint back to the origin; the rebuild under
    /// way, or `None` when the store holds nothing to replay.
    async fn start_rebuild(
        &self,
        projection: &mut P,
        lease: &LeaseToken,
        on_progress: OnProgress,
    ) -> Result<Option<Rebuild>, RunnerError> {
        let total = self
            .events
            .head()
            .await
            .map_err(|source| RunnerError::Head {
                projection: self.name.clone(),
                source,
            })?;
        tracing::info!(projection = %self.name, total, "projection rebuild starting");
        self.commit_reset(projection, lease).await?;
        let mut rebuild = Rebuild::new(on_progress, total);
        Ok((!rebuild.advance(&self.name, 0, 0)).then_some(rebuild))
    }

    async fn subscribe(&self, checkpoint: u64) -> Result<Subscription, RunnerError> {
        let mut builder = Subscription::builder(self.events.clone())
            .after(checkpoint)
            .page_size(self.batch_size);
        for decoder in &self.decoders {
            builder = builder.aggregate_type(decoder.aggregate);
        }
        builder.build().await.map_err(|source| RunnerError::Read {
            projection: self.name.clone(),
            source,
        })
    }

    /// Applies and checkpoints one batch, read through `position`: how many events it applied,
    /// or `None` when the lease was lost.
    async fn step(
        &self,
        projection: &mut P,
        recorded: Vec<RecordedEvent>,
        position: u64,
        lease: &LeaseToken,
    ) -> Result<Option<usize>, RunnerError> {
        let lag = self
            .head
            .as_ref()
            .map(|head| head.borrow().saturating_sub(position));
        let span = tracing::info_span!(
            "projection.batch",
            projection = %self.name,
            events = recorded.len(),
            first = recorded.first().map(|e| e.position),
            position,
            lag,
        );
        async {
            let applied = match self.decode(recorded)? {
                // Nothing of the projection's: only the checkpoint moves, when it must.
                Delivery::Decoded(batch) if batch.is_empty() => 0,
                Delivery::Decoded(batch) => {
                    match self.commit(projection, &batch, position, lease).await {
                        Ok(true) => {
                            self.reached(position);
                            return Ok(Some(batch.len()));
                        }
                        Ok(false) => return Ok(None),
                        Err(failed @ RunnerError::Projection { .. })
                            if self.on_poison == OnPoison::Park =>
                        {
                            let events = batch.into_iter().map(Ok).collect();
                            let Some(applied) = self
                                .isolate(projection, events, Some(failed), lease)
                                .await?
                            else {
                                return Ok(None);
                            };
                            applied
                        }
                        Err(failed) => return Err(failed),
                    }
                }
                Delivery::Undecodable(events) => {
                    let Some(applied) = self.isolate(projection, events, None, lease).await? else {
                        return Ok(None);
                    };
                    applied
                }
            };
            // Isolated events moved the checkpoint to the last of them; events of other types
            // after it (or the whole batch, when nothing was the projection's) were passed over.
            Ok(self
                .advance(projection, lease, position)
                .await?
                .then_some(applied))
        }
        .instrument(span)
        .await
    }

    /// Moves the checkpoint to `position` unless it is there already, committing an empty
    /// batch (a SQL projection's transaction holds only the checkpoint): `false` when the
    /// lease was lost.
    pub(super) async fn advance(
        &self,
        projection: &mut P,
        lease: &LeaseToken,
        position: u64,
    ) -> Result<bool, RunnerError> {
        if position <= self.status.borrow().position {
            return Ok(true);
        }
        if !self.commit(projection, &[], position, lease).await? {
            return Ok(false);
        }
        self.reached(position);
        Ok(true)
    }

    /// Records that the checkpoint reached `position`.
    pub(super) fn reached(&self, position: u64) {
        self.status.send_modify(|status| {
            status.position = status.position.max(position);
        });
    }

    /// Serves an operator's request.
    async fn serve(&self, projection: &mut P, request: Request, lease: &LeaseToken) {
        match request {
            Request::Retry { position, reply } => {
                let retried = self.retry_parked(projection, position, lease).await;
                // The caller may have stopped waiting; the outcome is recorded either way.
                let _ = reply.send(retried);
            }
        }
    }

    /// Answers a request this runner cannot serve: it does not hold the lease.
    fn refuse(&self, request: Request) {
        match request {
            Request::Retry { reply, .. } => {
                let _ = reply.send(Err(RetryError::NotActive {
                    projection: self.name.clone(),
                }));
            }
        }
    }

    /// The next batch, the read retried with backoff.
    async fn read(
        &self,
        subscription: &mut Subscription,
    ) -> Result<Vec<RecordedEvent>, RunnerError> {
        let mut retries = self.retries("read the event store");
        loop {
            let error = match subscription.next_batch(self.batch_size).await {
                Ok(batch) => return Ok(batch),
                Err(error) => error,
            };
            if let Err(source) = retries.pause(error).await {
                return Err(RunnerError::Read {
                    projection: self.name.clone(),
                    source,
                });
            }
        }
    }

    /// Decodes a batch. An event that does not decode stops the runner, unless it parks
    /// poison events: then the batch is handed on event by event, to park that one.
    fn decode(&self, recorded: Vec<RecordedEvent>) -> Result<Delivery<P::Event>, RunnerError> {
        if self.on_poison == OnPoison::Park {
            return Ok(Delivery::of(&self.decoders, recorded));
        }
        // The subscription's filter lets through the registered aggregate types only, so
        // every event has a decoder.
        recorded
            .into_iter()
            .filter_map(|event| decode(&self.decoders, event))
            .collect::<Result<_, _>>()
            .map(Delivery::Decoded)
            .map_err(|source| RunnerError::Decode {
                projection: self.name.clone(),
                source: Box::new(source),
            })
    }

    /// Applies `batch` and saves `position` ([`Projection::commit`]), retried whole with
    /// backoff: `false` when the lease was lost. A save refused because the checkpoint is there
    /// already (an earlier attempt of unknown outcome that landed) succeeded.
    async fn commit(
        &self,
        projection: &mut P,
        batch: &[DecodedEvent<P::Event>],
        position: u64,
        lease: &LeaseToken,
    ) -> Result<bool, RunnerError> {
        let first = batch.first().map_or(position, |event| event.position);
        let last = batch.last().map_or(position, |event| event.position);
        let mut retries = self.retries("commit a batch").of_batch(first, last);
        loop {
            let committed = projection
                .commit(
                    batch,
                    position,
                    CheckpointLease::new(&*self.checkpoints, lease),
                )
                .await;
            let error = match committed {
                Ok(()) => return Ok(true),
                Err(CommitError::Checkpoint(CheckpointError::NotForward { current, .. }))
                    if current >= position =>
                {
                    return Ok(true);
                }
                Err(CommitError::Checkpoint(CheckpointError::LeaseLost { .. })) => {
                    return Ok(false);
                }
                Err(CommitError::Checkpoint(error)) if !may_pass(&error) => {
                    return Err(self.checkpoint_failed(error));
                }
                Err(error) => error,
            };
            match retries.pause(error).await {
                Ok(()) => {}
                Err(CommitError::Checkpoint(error)) => return Err(self.checkpoint_failed(error)),
                Err(CommitError::Projection(source)) => {
                    return Err(RunnerError::Projection {
                        projection: self.name.clone(),
                        first,
                        last,
                        attempts: retries.attempts,
                        source,
                    });
                }
            }
        }
    }

    /// Empties the read model and resets the checkpoint ([`Projection::commit_reset`]),
    /// retried whole while the checkpoint store fails.
    async fn commit_reset(
        &self,
        projection: &mut P,
        lease: &LeaseToken,
    ) -> Result<(), RunnerError> {
        let mut retries = self.retries("reset its read model");
        loop {
            let reset = projection
                .commit_reset(CheckpointLease::new(&*self.checkpoints, lease))
                .await;
            let error = match reset {
                Ok(()) => return Ok(()),
                Err(CommitError::Projection(source)) => {
                    return Err(RunnerError::Reset {
                        projection: self.name.clone(),
                        source,
                    });
                }
                Err(CommitError::Checkpoint(error)) if may_pass(&error) => error,
                Err(CommitError::Checkpoint(error)) => return Err(self.checkpoint_failed(error)),
            };
            retries
                .pause(error)
                .await
                .map_err(|error| self.checkpoint_failed(error))?;
        }
    }

    /// Runs a checkpoint store operation, retrying what may succeed later.
    async fn retrying<T, F, Fut>(&self, mut operation: F) -> Result<T, RunnerError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, CheckpointError>>,
    {
        let mut retries = self.retries("use its checkpoint store");
        loop {
            match operation().await {
                Ok(value) => return Ok(value),
                Err(error) if may_pass(&error) => retries
                    .pause(error)
                    .await
                    .map_err(|error| self.checkpoint_failed(error))?,
                Err(error) => return Err(self.checkpoint_failed(error)),
            }
        }
    }

    async fn release(&self, lease: &LeaseToken) {
        if let Err(error) = self.checkpoints.release(lease).await {
            tracing::warn!(projection = %self.name, error = %error, "projection lease not released; it lapses by itself");
        }
    }

    fn checkpoint_failed(&self, source: CheckpointError) -> RunnerError {
        RunnerError::Checkpoint {
            projection: self.name.clone(),
            source,
        }
    }
}

/// How often a runner standing by asks for the lease: every third of its time to live, and at
/// least every second, so a released lease is taken over soon even when leases are long.
fn standby_poll(ttl: Duration) -> Duration {
    (ttl / 3).min(Duration::from_secs(1))
}

/// Renews a lease in the background, every third of its time to live, until dropped.
struct Renewal(JoinHandle<()>);

impl Renewal {
    /// Starts renewing; the receiver resolves once a renewal says the lease was lost.
    fn start(
        checkpoints: Arc<dyn CheckpointStore>,
        lease: LeaseToken,
        ttl: Duration,
    ) -> (Self, oneshot::Receiver<()>) {
        let (lost, on_lost) = oneshot::channel();
        let task = tokio::spawn(async move {
            loop {
                tokio::time::sleep(ttl / 3).await;
                match checkpoints.renew(&lease, SystemTime::now() + ttl).await {
                    Ok(true) => {}
                    Ok(false) => {
                        let _ = lost.send(());
                        return;
                    }
                    Err(error) => {
                        tracing::warn!(projection = %lease.projection, error = %error, "projection lease not renewed; trying again");
                    }
                }
            }
        });
        (Self(task), on_lost)
    }
}

impl Drop for Renewal {
    fn drop(&mut self) {
        self.0.abort();
    }
}
