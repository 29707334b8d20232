//! One delivery: claim the alarm (a little ahead of its due time), wait for the due time,
//! dispatch its message while renewing the lease, ask the retry policy, and delete or
//! reschedule the alarm. Every store call is bounded by the store timeout.
//!
//! Each delivery claims under a name of its own: the scheduler's holder name and the entry's
//! generation (the alarm's life in this scheduler). A claim retried within one life finds its
//! own live lease and counts nothing, while the final delete or reschedule of an old life can
//! never touch an alarm saved again under the same id since (the save cleared the lease, and
//! the new life claims under another name).

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use backon::{ConstantBuilder, Retryable as _};
use futures::FutureExt as _;
use switchyard_messaging::{DispatchOptions, Message, panic_text};
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
    /// Claim it again at `at`.
    Rearm { at: SystemTime },
}

/// Runs the delivery of `alarm` in a task of its own, and reports to the actor however it ends:
/// a panic anywhere in it is reported as a failure, tried again once the lease has lapsed.
///
/// `stop` is set by the actor when the alarm is cancelled or replaced: the delivery is then not
/// dispatched, if it has not been yet.
pub(super) fn spawn(
    shared: Arc<Shared>,
    id: String,
    generation: u64,
    stop: Arc<AtomicBool>,
    reports: mpsc::UnboundedSender<Report>,
) {
    let clock = shared.config.clock.clone();
    let lease = shared.config.lease;
    let holder = format!("{}#{generation}", shared.holder);
    // One task per delivery: the panic is caught around the delivery's future (any poll of it,
    // the service's own code included when it runs inline), not by a second task watching it.
    let task = async move {
        let delivery = AssertUnwindSafe(deliver(shared, id.clone(), holder, stop)).catch_unwind();
        let after = delivery.await.unwrap_or_else(|panic| {
            let panic = panic_text(&*panic);
            tracing::error!(alarm = %id, %panic, "an alarm's delivery panicked; it is tried again once its lease lapses");
            After::Rearm {
                at: clock.now() + lease,
            }
        });
        let _ = reports.send(Report::Delivered {
            id,
            generation,
            after,
        });
    };
    tokio::spawn(task);
}

/// A few quick attempts for the writes that finish a delivery: the lease still holds, so the
/// alarm is safe meanwhile, and should they all fail it is delivered again once the lease
/// lapses (at least once).
fn finish_backoff() -> ConstantBuilder {
    ConstantBuilder::default()
        .with_delay(Duration::from_millis(200))
        .with_max_times(5)
}

/// Delivers alarm `id` as armed: only its id is needed, as the claim answers with the stored
/// alarm.
async fn deliver(shared: Arc<Shared>, id: String, holder: String, stop: Arc<AtomicBool>) -> After {
    let config = &shared.config;
    let clock = &config.clock;
    if stop.load(Ordering::SeqCst) {
        // Cancelled or replaced before it started: nothing to claim, nor to give back.
        return After::Gone;
    }
    let now = clock.now();
    // Claimed ahead, the lease must cover the wait for the due time (at most until `due_by`) as
    // well as the delivery.
    let due_by = now + config.claim_ahead;
    let lease_until = due_by + config.lease;
    let claim = shared.claim(&id, &holder, now, due_by, lease_until);
    let alarm = match bounded(config.store_timeout, claim).await {
        Ok(Claim::Claimed(alarm)) => alarm,
        Ok(Claim::Held(lease)) => {
            return After::Rearm { at: lease.until };
        }
        Ok(Claim::NotDue(due)) => {
            return After::Rearm {
                at: shared.claim_time(due),
            };
        }
        Ok(Claim::Gone) => return After::Gone,
        Err(StoreCallError::Store(error @ AlarmStoreError::Corrupt { .. })) => {
            // A poison row: trying again would fail again. It stays in the store for an
            // operator (cancel it by id), and this scheduler forgets it.
            tracing::error!(alarm = %id, %error, "an alarm cannot be read back; it is left in the store and not delivered");
            return After::Gone;
        }
        Err(error @ StoreCallError::TimedOut { .. }) => {
            // It most likely took effect all the same, and then no other node delivers the
            // alarm until this delivery's lease lapses: claim again at once (the timeout itself
            // spaced the tries), which finds the delivery's own lease and counts nothing.
            tracing::warn!(alarm = %id, error = ?error, "claiming an alarm timed out; claiming it again");
            return After::Rearm { at: clock.now() };
        }
        Err(error) => {
            // It may have taken effect all the same (a commit of unknown outcome): then the
            // claim tried again finds this delivery's own lease, and counts nothing.
            tracing::warn!(alarm = %id, error = ?error, "claiming an alarm failed");
            return After::Rearm {
                at: now + config.failure_delay,
            };
        }
    };
    if stop.load(Ordering::SeqCst) {
        return Box::pin(stopped(&shared, &holder, alarm)).await;
    }

    // Counted by the claim, durably: a delivery cut short by a crash counts too. An alarm saved
    // before the store counted attempts (a pending retry, say) counts from its message's.
    let attempt = alarm
        .attempts
        .max(assigns::dispatch_attempts(&alarm.message).saturating_add(1));
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
        return Box::pin(finish(&shared, &holder, &id)).await;
    }
    // Claimed ahead: never deliver before the due time.
    clock.sleep_until(exact_due(&alarm)).await;
    // Then wait for a dispatch slot (at once unless a burst holds them all); the lease check
    // below renews a lease that came close to lapsing meanwhile. The semaphore is never closed.
    let slot = shared.dispatch_slots.acquire().await.ok();
    if stop.load(Ordering::SeqCst) {
        return Box::pin(stopped(&shared, &holder, alarm)).await;
    }
    let now = clock.now();
    if now + config.dispatch_timeout >= lease_until {
        // The claim answered late (or the wait overran): the lease may lapse before the
        // dispatch ends, or has lapsed already and another node holds the alarm. Renew it
        // first, and dispatch only if this delivery still holds it.
        let renew = shared.store.renew(&id, &holder, now + config.lease);
        match bounded(config.store_timeout, renew).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(alarm = %id, "an alarm's lease lapsed before its dispatch; it is not dispatched, and looked at again");
                return After::Rearm { at: clock.now() };
            }
            Err(error) => {
                tracing::warn!(alarm = %id, error = ?error, "renewing a lease about to lapse before the dispatch failed; the alarm is not dispatched, and tried again");
                return After::Rearm {
                    at: clock.now() + config.failure_delay,
                };
            }
        }
    }
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
    // Boxed: a burst holds thousands of deliveries waiting for their due time or a slot, and
    // each task is as large as its largest step, which is this one. Only the deliveries under
    // way hold it, at most one per slot.
    let dispatched = async {
        let dispatch = shared.node.dispatch_with(
            message,
            DispatchOptions::with_timeout(config.dispatch_timeout),
        );
        let reply = renewing(&shared, &holder, &id, dispatch).await;
        // The dispatch is over: the next one may start while this one's store write runs.
        drop(slot);
        tracing::debug!(response = ?reply.response(), "alarm delivered");
        let decision = std::panic::catch_unwind(AssertUnwindSafe(|| {
            config.retry_policy.decide(&reply)
        }))
        .unwrap_or_else(|_| {
            tracing::error!(retry_in = ?config.failure_delay, "the retry policy panicked; the alarm is retried");
            Decision::RetryIn(config.failure_delay, reply.clone())
        });
        match decision {
            Decision::Done => finish(&shared, &holder, &id).await,
            Decision::RetryIn(delay, returned) => {
                // A hook's delay is the user's number: bounded so the clock cannot overflow.
                let due = clock.now() + delay.min(super::error::LONGEST);
                // Built from the stored message: what was sent differs from it only in the
                // assigns, which the next attempt takes from the returned message.
                let next = redelivery(&alarm.message, &returned).assign(assigns::DISPATCH_AT, &due);
                retry_later(&shared, &holder, alarm, next, due).await
            }
        }
    }
    .instrument(span);
    Box::pin(dispatched).await
}

/// The alarm's due time to the nanosecond: stores keep it to the microsecond, dropping what is
/// below, while `dispatch_at` in its message keeps it whole. Only that lost part is taken from
/// `dispatch_at`; a `dispatch_at` further off (set by hand) is not waited for.
fn exact_due(alarm: &Alarm) -> SystemTime {
    assigns::dispatch_at(&alarm.message)
        .filter(|exact| {
            exact
                .duration_since(alarm.due)
                .is_ok_and(|lost| lost < Duration::from_micros(1))
        })
        .unwrap_or(alarm.due)
}

/// Awaits `dispatch`, renewing the lease every third of it meanwhile.
async fn renewing(
    shared: &Shared,
    holder: &str,
    id: &str,
    dispatch: impl Future<Output = Message>,
) -> Message {
    let clock = &shared.config.clock;
    let lease = shared.config.lease;
    let mut dispatch = std::pin::pin!(dispatch);
    loop {
        let renew_at = clock.now() + lease / 3;
        tokio::select! {
            // The dispatch first: one that answers at once never sets the renewal's timer.
            biased;
            reply = &mut dispatch => return reply,
            () = clock.sleep_until(renew_at) => {
                let renew = shared.store.renew(id, holder, clock.now() + lease);
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
/// carry; `sent` may be the stored message it was made from, as only assigns tell them apart),
/// with the assigns, service, request and aggregate metadata of the message the policy
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

/// Cancelled or replaced before its dispatch: not dispatched. A replacement saved just before
/// the claim may be what the claim took; its lease is given back (rewriting what was read, which
/// changes nothing else) so that the replacement's own delivery need not wait for it to lapse.
async fn stopped(shared: &Shared, holder: &str, claimed: Alarm) -> After {
    let id = claimed.id().to_owned();
    tracing::debug!(alarm = %id, "an alarm cancelled or replaced before its dispatch is not dispatched");
    let release = shared
        .store
        .reschedule(&id, holder, claimed.due, claimed.message);
    if let Err(error) = bounded(shared.config.store_timeout, release).await {
        tracing::warn!(alarm = %id, error = ?error, "giving back the lease of a cancelled alarm failed; it lapses");
    }
    After::Gone
}

/// How the final write of a delivery (its delete, or its retry) went.
enum Written {
    Done,
    /// It answered that this delivery no longer holds the alarm after an earlier try that may
    /// have taken effect (a timeout, or an outcome the store could not tell): most likely that
    /// try did, and released the lease.
    DoneEarlier,
    /// This delivery no longer holds the alarm: cancelled, replaced, or its lease lapsed and
    /// another node took it.
    NotHeld,
    Failed(StoreCallError),
}

/// Makes the final write, a few quick times over: the lease still holds meanwhile.
async fn final_write<Fut>(shared: &Shared, write: impl Fn() -> Fut) -> Written
where
    Fut: std::future::Future<Output = Result<bool, AlarmStoreError>>,
{
    let maybe_done = AtomicBool::new(false);
    let written = (|| bounded(shared.config.store_timeout, write()))
        .retry(finish_backoff())
        .notify(|error: &StoreCallError, _| {
            if error.may_have_taken_effect() {
                maybe_done.store(true, Ordering::Relaxed);
            }
        })
        .await;
    match written {
        Ok(true) => Written::Done,
        Ok(false) if maybe_done.load(Ordering::Relaxed) => Written::DoneEarlier,
        Ok(false) => Written::NotHeld,
        Err(error) => Written::Failed(error),
    }
}

async fn finish(shared: &Shared, holder: &str, id: &str) -> After {
    match final_write(shared, || shared.delete(id, holder)).await {
        Written::Done => After::Gone,
        Written::DoneEarlier => {
            tracing::debug!("a delivered alarm was deleted by an earlier try that answered late");
            After::Gone
        }
        Written::NotHeld => {
            tracing::warn!(
                "a delivered alarm was no longer held by this delivery (cancelled, replaced, or its lease lapsed and another node took it): it may be delivered again"
            );
            After::Gone
        }
        Written::Failed(error) => {
            tracing::error!(error = ?error, "deleting a delivered alarm failed: it is delivered again once its lease lapses");
            lapsed(shared)
        }
    }
}

async fn retry_later(
    shared: &Shared,
    holder: &str,
    alarm: Alarm,
    next: Message,
    due: SystemTime,
) -> After {
    let id = alarm.id().to_owned();
    let write = || shared.store.reschedule(&id, holder, due, next.clone());
    match final_write(shared, write).await {
        Written::Done => After::Rearm {
            at: shared.claim_time(due),
        },
        Written::DoneEarlier => {
            // Look again at the retry's time: the claim then finds the retry, or nothing if it
            // was not saved after all (`NotDue`, `Held` or `Gone`).
            tracing::debug!("a retry was saved by an earlier try that answered late");
            After::Rearm {
                at: shared.claim_time(due),
            }
        }
        Written::NotHeld => {
            tracing::warn!(
                "an alarm to retry was no longer held by this delivery (cancelled, replaced, or its lease lapsed and another node took it)"
            );
            After::Gone
        }
        Written::Failed(error) => {
            tracing::error!(error = ?error, "saving a retry failed: the alarm is delivered again once its lease lapses");
            lapsed(shared)
        }
    }
}

fn lapsed(shared: &Shared) -> After {
    After::Rearm {
        at: shared.config.clock.now() + shared.config.lease,
    }
}
