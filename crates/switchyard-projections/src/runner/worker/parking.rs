//! The runner's failure path when it parks poison events: a failing batch applied again one
//! event at a time, the event that keeps failing parked, and an operator's retry of a parked
//! event.

use std::sync::Arc;
use std::time::SystemTime;

use switchyard_aggregates::store::RecordedEvent;
use switchyard_aggregates::{DecodedEvent, RepoError};

use super::Worker;
use crate::checkpoint::{CheckpointError, LeaseToken, ParkedEvent};
use crate::runner::RunnerError;
use crate::runner::poison::{RetryError, error_text};
use crate::runner::projection::{BoxError, Decoder, Projection, decode};

/// A batch as the runner hands it on.
pub(super) enum Delivery<E> {
    /// Every event decoded.
    Decoded(Vec<DecodedEvent<E>>),
    /// Some did not: each event in order, decoded or not.
    Undecodable(Vec<Result<DecodedEvent<E>, Undecodable>>),
}

/// An event that does not decode, and why.
pub(super) struct Undecodable {
    event: EventKey,
    /// Boxed: a rare error keeps the batch's items small.
    error: Box<RepoError>,
}

/// Which event, as a parked event names it.
struct EventKey {
    position: u64,
    stream: Arc<str>,
    version: i64,
    event_type: Arc<str>,
}

impl EventKey {
    fn of(event: &RecordedEvent) -> Self {
        Self {
            position: event.position,
            stream: event.stream.clone(),
            version: event.version,
            event_type: event.event_type.clone(),
        }
    }

    fn of_decoded<E>(event: &DecodedEvent<E>) -> Self {
        Self {
            position: event.position,
            stream: event.stream.clone(),
            version: event.version,
            event_type: event.event_type.clone(),
        }
    }
}

impl<E> Delivery<E> {
    /// Decodes `recorded`, keeping each event that does not decode in its place.
    pub(super) fn of(decoders: &[Decoder<E>], recorded: Vec<RecordedEvent>) -> Self {
        let mut decoded = Vec::with_capacity(recorded.len());
        let mut recorded = recorded.into_iter();
        while let Some(event) = recorded.next() {
            let key = EventKey::of(&event);
            match decode(decoders, event) {
                None => {}
                Some(Ok(event)) => decoded.push(event),
                Some(Err(error)) => {
                    // The rare case: from here on, each event in its place, decoded or not.
                    let mut events: Vec<_> = decoded.into_iter().map(Ok).collect();
                    events.push(Err(Undecodable {
                        event: key,
                        error: Box::new(error),
                    }));
                    events.extend(recorded.filter_map(|event| {
                        let key = EventKey::of(&event);
                        decode(decoders, event).map(|decoded| {
                            decoded.map_err(|error| Undecodable {
                                event: key,
                                error: Box::new(error),
                            })
                        })
                    }));
                    return Self::Undecodable(events);
                }
            }
        }
        Self::Decoded(decoded)
    }
}

/// An event to park: which, why, after how many attempts.
struct Poison {
    event: EventKey,
    error: String,
    attempts: usize,
}

impl<P: Projection> Worker<P> {
    /// Commits `events` one at a time, each with its checkpoint, and parks those that
    /// keep failing (or do not decode): how many were applied, or `None` when the lease was
    /// lost. `failed` is the failure of the whole batch, when there was one: a batch of one
    /// event is parked with it at once, the batch having been that event's attempts.
    pub(super) async fn isolate(
        &self,
        projection: &mut P,
        events: Vec<Result<DecodedEvent<P::Event>, Undecodable>>,
        mut failed: Option<RunnerError>,
        lease: &LeaseToken,
    ) -> Result<Option<usize>, RunnerError> {
        let alone = events.len() == 1;
        let mut applied = 0;
        for event in events {
            let poison = match event {
                Err(Undecodable { event, error }) => Poison {
                    event,
                    error: error_text(&*error),
                    // Decoding again cannot help.
                    attempts: 1,
                },
                Ok(event) => {
                    let outcome = match failed.take() {
                        Some(batch_failure) if alone => Err(batch_failure),
                        _ => {
                            let one = std::slice::from_ref(&event);
                            self.commit(projection, one, event.position, lease).await
                        }
                    };
                    match outcome {
                        Ok(true) => {
                            applied += 1;
                            self.reached(event.position);
                            continue;
                        }
                        Ok(false) => return Ok(None),
                        Err(RunnerError::Projection {
                            attempts, source, ..
                        }) => Poison {
                            event: EventKey::of_decoded(&event),
                            error: error_text(&*source),
                            attempts,
                        },
                        Err(other) => return Err(other),
                    }
                }
            };
            if !self.park(lease, poison).await? {
                return Ok(None);
            }
        }
        Ok(Some(applied))
    }

    /// Parks `poison`, moving the checkpoint past it: `false` when the lease was lost.
    async fn park(&self, lease: &LeaseToken, poison: Poison) -> Result<bool, RunnerError> {
        let parked = ParkedEvent {
            projection: self.name.clone(),
            position: poison.event.position,
            stream: poison.event.stream.to_string(),
            version: poison.event.version,
            event_type: poison.event.event_type.to_string(),
            error: poison.error,
            attempts: u32::try_from(poison.attempts).unwrap_or(u32::MAX),
            parked_at: SystemTime::now(),
        };
        match self
            .retrying(|| self.checkpoints.park(lease, &parked))
            .await
        {
            Ok(()) => {}
            Err(RunnerError::Checkpoint {
                source: CheckpointError::LeaseLost { .. },
                ..
            }) => return Ok(false),
            Err(error) => return Err(error),
        }
        tracing::warn!(
            projection = %self.name,
            position = parked.position,
            stream = %parked.stream,
            version = parked.version,
            event_type = %parked.event_type,
            attempts = parked.attempts,
            error = %parked.error,
            "projection parked an event it kept failing on; going on past it"
        );
        self.reached(parked.position);
        Ok(true)
    }

    /// Applies the event parked at `position` once more, alone: forgotten once it applies,
    /// parked again (one more attempt, the new error) when it fails.
    pub(super) async fn retry_parked(
        &self,
        projection: &mut P,
        position: u64,
        lease: &LeaseToken,
    ) -> Result<(), RetryError> {
        let checkpoint_failed = |source| RetryError::Checkpoint {
            projection: self.name.clone(),
            source,
        };
        let parked = self
            .checkpoints
            .parked(&self.name)
            .await
            .map_err(checkpoint_failed)?
            .into_iter()
            .find(|parked| parked.position == position)
            .ok_or_else(|| RetryError::NotParked {
                projection: self.name.clone(),
                position,
            })?;
        let recorded = self
            .events
            .read_all(position, 1)
            .await
            .map_err(|source| RetryError::Read {
                projection: self.name.clone(),
                source,
            })?
            .into_iter()
            .find(|event| event.position == position);
        let missing = || RetryError::Missing {
            projection: self.name.clone(),
            position,
        };
        let decoded = decode(&self.decoders, recorded.ok_or_else(missing)?).ok_or_else(missing)?;
        let outcome: Result<(), BoxError> = match decoded {
            Ok(event) => projection.apply(std::slice::from_ref(&event)).await,
            Err(error) => Err(Box::new(error) as BoxError),
        };
        match outcome {
            Ok(()) => {
                tracing::info!(projection = %self.name, position, "parked event applied on retry");
                self.checkpoints
                    .unpark(&self.name, position)
                    .await
                    .map_err(checkpoint_failed)?;
                Ok(())
            }
            Err(source) => {
                let again = ParkedEvent {
                    error: error_text(&*source),
                    attempts: parked.attempts.saturating_add(1),
                    parked_at: SystemTime::now(),
                    ..parked
                };
                self.checkpoints
                    .park(lease, &again)
                    .await
                    .map_err(checkpoint_failed)?;
                Err(RetryError::Failed {
                    projection: self.name.clone(),
                    position,
                    source,
                })
            }
        }
    }
}
