//! One delivery: claim the alarm (a little ahead of its due time), wait for the due time,
//! dispatch its message while renewing the lease, ask the retry policy, and delete or
//! reschedule the alarm. Every store call is bounded by the store timeout.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use backon::{ConstantBuilder, Retryable as _};
use switchyard_messaging::{DispatchOptions, Message};
use tokio::sync::mpsc;
use tracing::Instrument as _;

use super::error::{StoreCallError, bounded};
use super::{Report, Shared};
use crate::assigns;
use crate::retry::Decision;
use crate::store::{Alarm, AlarmStoreError, Claim};

/// The name of the span around each delivery. It records `message.id`,
/// `message.correlation_id`, `service`, `node`, `attempt` and `late`.
pub const DELIVERY_SPAN: &str = "switchyard.scheduler.deliver";

/// What the actor should do with an alarm after a delivery task.
#[derive(Debug)]
pub(super) enum After {
    /// Delivered for good, cancelled, or taken over by another node: forget it.
    Gone,
    /// Claim it again at `at` (with the stored alarm, when it changed).
    Rearm {
        at: SystemTime,
        alarm: Option<Alarm>,
    },
}

/// Runs the delivery of `alarm` in a task of its own, and reports to the actor however it ends:
/// a panic anywhere in it is reported as a failure, tried again once the lease has lapsed.
pub(super) fn spawn(
    shared: Arc<Shared>,
    alarm: Alarm,
    generation: u64,
    reports: mpsc::UnboundedSender<Report>,
) {
    let id = alarm.id().to_owned();
    let clock = shared.config.clock.clone();
    let lease = shared.config.lease;
    let task = tokio::spawn(deliver(shared, alarm));
    tokio::spawn(async move {
        let after = task.await.unwrap_or_else(|error| {
            tracing::error!(alarm = %id, %error, "an alarm's delivery panicked; it is tried again once its lease lapses");
            After::Rearm {
                at: clock.now() + lease,
                alarm: None,
            }
        });
        let _ = reports.send(Report::Delivered {
            id,
            generation,
            after,
        });
    });
}

/// A few quick attempts for the writes that finish a delivery: the lease still holds, so the
/// alarm is safe meanwhile, and should they all fail it is delivered again once the lease
/// lapses (at least once).
fn finish_backoff() -> ConstantBuilder {
    ConstantBuilder::default()
        .with_delay(Duration::from_millis(200))
        .with_max_times(5)
}

async fn deliver(shared: Arc<Shared>, armed: Alarm) -> After {
    let config = &shared.config;
    let clock = &config.clock;
    let id = armed.id().to_owned();
    let now = clock.now();
    // Claimed ahead, the lease must cover the wait for the due time (at most until `due_by`) as
    // well as the delivery.
    let due_by = now + config.claim_ahead;
    let claim = shared
        .store
        .claim(&id, &shared.holder, now, due_by, due_by + config.lease);
    let alarm = match bounded(config.store_timeout, claim).await {
        Ok(Claim::Claimed(alarm)) => alarm,
        Ok(Claim::Held(lease)) => {
            return After::Rearm {
                at: lease.until,
                alarm: None,
            };
        }
        Ok(Claim::NotDue(due)) => {
            return After::Rearm {
                at: shared.claim_time(due),
                alarm: None,
            };
        }
        Ok(Claim::Gone) => return After::Gone,
        Err(StoreCallError::Store(error @ AlarmStoreError::Corrupt { .. })) => {
            // A poison row: trying again would fail again. It stays in the store for an
            // operator (cancel it by id), and this scheduler forgets it.
            tracing::error!(alarm = %id, %error, "an alarm cannot be read back; it is left in the store and not delivered");
            return After::Gone;
        }
        Err(error) => {
            tracing::warn!(alarm = %id, error = ?error, "claiming an alarm failed");
            return After::Rearm {
                at: now + config.failure_delay,
                alarm: None,
            };
        }
    };

    // Counted by the claim, durably: a delivery cut short by a crash counts too.
    let attempt = alarm.attempts;
    if let Some(most) = config.retry_policy.max_attempts()
        && attempt > most
    {
        // Earlier attempts never finished (their node died during each, say): the policy's
        // limit applies to them as to answered ones, or such a message is retried forever.
        tracing::error!(
            alarm = %id,
            attempts = attempt - 1,
            max_attempts = most,
            "an alarm used up its attempts without an answer (a delivery cut short each time); it is dropped"
        );
        return finish(&shared, &id).await;
    }
    // Claimed ahead: never deliver before the due time.
    clock.sleep_until(alarm.due).await;
    let now = clock.now();
    let late = now
        .duration_since(alarm.due)
        .is_ok_and(|by| by > config.late_tolerance);
    let mut message = alarm
        .message
        .clone()
        .assign(assigns::DISPATCH_ATTEMPTS, &attempt);
    if late {
        message = message.assign(assigns::LATE, &true);
    } else {
        message.assigns_mut().remove(assigns::LATE);
    }
    let span = tracing::info_span!(
        "switchyard.scheduler.deliver",
        message.id = %message.id(),
        message.correlation_id = %message.correlation_id(),
        service = %message.service(),
        node = %shared.holder,
        attempt,
        late,
    );
    async {
        let sent = message.clone();
        let dispatch = shared.node.dispatch_with(
            message,
            DispatchOptions::with_timeout(config.dispatch_timeout),
        );
        let reply = renewing(&shared, &id, dispatch).await;
        tracing::debug!(response = ?reply.response(), "alarm delivered");
        let decision = std::panic::catch_unwind(AssertUnwindSafe(|| {
            config.retry_policy.decide(&reply)
        }))
        .unwrap_or_else(|_| {
            tracing::error!(retry_in = ?config.failure_delay, "the retry policy panicked; the alarm is retried");
            Decision::RetryIn(config.failure_delay, reply.clone())
        });
        match decision {
            Decision::Done => finish(&shared, &id).await,
            Decision::RetryIn(delay, returned) => {
                // A hook's delay is the user's number: bounded so the clock cannot overflow.
                let due = clock.now() + delay.min(super::error::LONGEST);
                let next = redelivery(&sent, &returned).assign(assigns::DISPATCH_AT, &due);
                retry_later(&shared, alarm, next, due).await
            }
        }
    }
    .instrument(span)
    .await
}

/// Awaits `dispatch`, renewing the lease every third of it meanwhile.
async fn renewing(shared: &Shared, id: &str, dispatch: impl Future<Output = Message>) -> Message {
    let clock = &shared.config.clock;
    let lease = shared.config.lease;
    let mut dispatch = std::pin::pin!(dispatch);
    loop {
        let renew_at = clock.now() + lease / 3;
        tokio::select! {
            reply = &mut dispatch => return reply,
            () = clock.sleep_until(renew_at) => {
                let renew = shared.store.renew(id, &shared.holder, clock.now() + lease);
                match bounded(shared.config.store_timeout, renew).await {
                    Ok(true) => {}
                    Ok(false) => tracing::warn!("the lease of an alarm under delivery was lost"),
                    Err(error) => tracing::warn!(error = ?error, "renewing a lease failed"),
                }
            }
        }
    }
}

/// The message of the next attempt: the one delivered (with its request, which replies do not
/// carry), with the assigns, service, request and aggregate metadata of the message the policy
/// returned, and no response, events or halted flag.
fn redelivery(sent: &Message, returned: &Message) -> Message {
    let mut next = sent.clone();
    next.take_events();
    *next.assigns_mut() = returned.assigns().clone();
    *next.aggregate_meta_mut() = returned.aggregate_meta().clone();
    if let Some(request) = returned.payload() {
        next = next.with_payload(request.clone());
    }
    if returned.service() != next.service() {
        next = next.to_service(returned.service().to_owned());
    }
    next
}

async fn finish(shared: &Shared, id: &str) -> After {
    let timeout = shared.config.store_timeout;
    let deleted = (|| bounded(timeout, shared.store.delete(id, &shared.holder)))
        .retry(finish_backoff())
        .await;
    match deleted {
        Ok(true) => After::Gone,
        Ok(false) => {
            tracing::warn!(
                "a delivered alarm was no longer held by this node: another may deliver it again"
            );
            After::Gone
        }
        Err(error) => {
            tracing::error!(error = ?error, "deleting a delivered alarm failed: it is delivered again once its lease lapses");
            lapsed(shared)
        }
    }
}

async fn retry_later(shared: &Shared, alarm: Alarm, next: Message, due: SystemTime) -> After {
    let id = alarm.id().to_owned();
    let timeout = shared.config.store_timeout;
    let rescheduled: Result<bool, StoreCallError> = (|| {
        let reschedule = shared
            .store
            .reschedule(&id, &shared.holder, due, next.clone());
        bounded(timeout, reschedule)
    })
    .retry(finish_backoff())
    .await;
    match rescheduled {
        Ok(true) => After::Rearm {
            at: shared.claim_time(due),
            alarm: Some(Alarm {
                message: next,
                aggregate_id: alarm.aggregate_id,
                due,
                attempts: alarm.attempts,
            }),
        },
        Ok(false) => {
            tracing::warn!("an alarm to retry was no longer held by this node");
            After::Gone
        }
        Err(error) => {
            tracing::error!(error = ?error, "saving a retry failed: the alarm is delivered again once its lease lapses");
            lapsed(shared)
        }
    }
}

fn lapsed(shared: &Shared) -> After {
    After::Rearm {
        at: shared.config.clock.now() + shared.config.lease,
        alarm: None,
    }
}
