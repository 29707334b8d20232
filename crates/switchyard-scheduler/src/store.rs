//! Where alarms are kept: the [`AlarmStore`] trait every store implements, and the in-memory one.
//!
//! Every method returns a boxed future, so a store is used as `Arc<dyn AlarmStore>`. Times are
//! passed in by the caller (the scheduler's [`Clock`](crate::Clock)), never read by the store, so
//! leases follow the same clock as the scheduler and tests can drive them. The price: schedulers
//! sharing a store must keep their clocks in step to well within the lease (see the
//! [crate docs](crate#clocks)).

mod error;
mod memory;

use std::time::SystemTime;

use futures::future::{BoxFuture, FutureExt as _};
use switchyard_messaging::Message;

pub use self::error::AlarmStoreError;
pub use self::memory::MemoryAlarmStore;

/// A message to deliver at a time.
#[derive(Clone, Debug, PartialEq)]
pub struct Alarm {
    /// The message to dispatch; its id is the alarm's id.
    pub message: Message,
    /// The aggregate the alarm belongs to, for [`AlarmStore::cancel_for`].
    pub aggregate_id: String,
    /// When it is due. Stores keep at least microsecond precision.
    pub due: SystemTime,
    /// How many deliveries were started: 0 when scheduled, and 1 more with each successful
    /// [`claim`](AlarmStore::claim) that takes the lease anew, counted durably by the store
    /// before the delivery starts, so a delivery cut short by a crash still counts.
    /// [`save`](AlarmStore::save) stores the value given; [`reschedule`](AlarmStore::reschedule)
    /// keeps it.
    pub attempts: u32,
}

impl Alarm {
    /// The alarm's id: its message's id.
    pub fn id(&self) -> &str {
        self.message.id()
    }
}

/// A stored alarm's message read back from its encoded bytes, or
/// [`AlarmStoreError::Corrupt`] naming the alarm: for stores that keep messages encoded.
pub fn decode_message(id: &str, bytes: &[u8]) -> Result<Message, AlarmStoreError> {
    Message::from_bytes(bytes).map_err(|error| AlarmStoreError::Corrupt {
        id: id.to_owned(),
        reason: error.to_string(),
    })
}

/// The attempts counted so far, from an integer column (a negative or oversized value is
/// clamped): for stores that keep the count in SQL.
pub fn attempts_from_column(stored: i64) -> u32 {
    u32::try_from(stored.max(0)).unwrap_or(u32::MAX)
}

/// Who may deliver an alarm, and until when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The holder: whoever claimed the alarm. A [`Scheduler`](crate::Scheduler) claims each
    /// alarm under a name of its own for that alarm (its node id, the scheduler's number and
    /// which life of the alarm it is delivering), so its writes finishing one delivery never
    /// touch an alarm saved again under the same id since.
    pub holder: String,
    /// When the lease lapses; from then on another holder may claim the alarm.
    pub until: SystemTime,
}

/// The answer of [`AlarmStore::claim`].
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Claim {
    /// The caller holds the lease now; deliver this alarm (the stored one, which may have been
    /// rescheduled by another node since the caller loaded it).
    Claimed(Alarm),
    /// Another holder's lease is still live; try again once it lapses.
    Held(Lease),
    /// The alarm is not due yet (it was rescheduled); it is due at this time.
    NotDue(SystemTime),
    /// There is no such alarm: delivered, or cancelled.
    Gone,
}

/// One claim of a batch: the arguments of [`AlarmStore::claim`], owned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimRequest {
    /// The alarm to claim.
    pub id: String,
    /// Who claims it.
    pub holder: String,
    /// The time of the claim: a lease lapsed by then is no longer live.
    pub now: SystemTime,
    /// The claim succeeds only for an alarm due by then.
    pub due_by: SystemTime,
    /// Until when the lease holds.
    pub lease_until: SystemTime,
}

/// One delete of a batch: the arguments of [`AlarmStore::delete`], owned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeleteRequest {
    /// The alarm to delete.
    pub id: String,
    /// Who must hold it.
    pub holder: String,
}

/// A durable set of alarms, shared by any number of schedulers.
///
/// Every write is durable when its future resolves `Ok`. Alarms are keyed by their message's
/// id. Claims, renewals, reschedules and deletes are atomic with respect to each other: of two
/// holders racing for one alarm, exactly one gets the lease.
pub trait AlarmStore: Send + Sync {
    /// Saves `alarm` (replacing an alarm with the same id, lease included) and returns the message
    /// to deliver: the store may adjust it (assign values, say). Returns once the alarm is
    /// durable.
    fn save(&self, alarm: Alarm) -> BoxFuture<'_, Result<Message, AlarmStoreError>>;

    /// The alarms due in `[from, until)` (from the beginning when `from` is `None`), by due time,
    /// leased or not. An alarm that cannot be read back is left out (and reported through
    /// `tracing` with its id), so one unreadable row never stops the others from loading.
    fn load(
        &self,
        from: Option<SystemTime>,
        until: SystemTime,
    ) -> BoxFuture<'_, Result<Vec<Alarm>, AlarmStoreError>>;

    /// Claims alarm `id` for `holder` until `lease_until`, if it is due by `due_by` and no other
    /// holder's lease is live at `now`, and counts one more attempt
    /// ([`Alarm::attempts`]) in the same durable write. A holder may claim again what it holds:
    /// while its own lease is still live at `now` that counts nothing (it is the same delivery,
    /// its earlier claim having answered too late, say); once its lease has lapsed it counts
    /// again. A refused claim (`Held`, `NotDue`, `Gone`) writes nothing.
    ///
    /// `due_by` is at or after `now`: the scheduler claims a little ahead of the due time, so
    /// that at the due time the message goes out at once. The claimed alarm carries the new
    /// count.
    ///
    /// # Errors
    ///
    /// [`AlarmStoreError::Corrupt`] when the stored alarm cannot be read back: then nothing is
    /// written (no lease, no attempt counted), and the row stays for an operator to look at.
    fn claim<'a>(
        &'a self,
        id: &'a str,
        holder: &'a str,
        now: SystemTime,
        due_by: SystemTime,
        lease_until: SystemTime,
    ) -> BoxFuture<'a, Result<Claim, AlarmStoreError>>;

    /// Extends `holder`'s lease on alarm `id` to `lease_until`. `false` when `holder` no longer
    /// holds it (the alarm is gone, or its lease lapsed and another holder claimed it).
    fn renew<'a>(
        &'a self,
        id: &'a str,
        holder: &'a str,
        lease_until: SystemTime,
    ) -> BoxFuture<'a, Result<bool, AlarmStoreError>>;

    /// Moves alarm `id` to `due` with `message` (a retry), and releases the lease; its attempts
    /// stay counted. `false`, with nothing changed, when `holder` does not hold the alarm.
    fn reschedule<'a>(
        &'a self,
        id: &'a str,
        holder: &'a str,
        due: SystemTime,
        message: Message,
    ) -> BoxFuture<'a, Result<bool, AlarmStoreError>>;

    /// Deletes alarm `id`, delivered for good. `false`, with nothing changed, when `holder` does
    /// not hold the alarm.
    fn delete<'a>(
        &'a self,
        id: &'a str,
        holder: &'a str,
    ) -> BoxFuture<'a, Result<bool, AlarmStoreError>>;

    /// Deletes alarm `id` whoever holds it. `false` when there was none.
    fn cancel<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<bool, AlarmStoreError>>;

    /// Whether the scheduler should gather its claims and deletes into batches
    /// ([`claim_many`](AlarmStore::claim_many), [`delete_many`](AlarmStore::delete_many)) rather
    /// than make them one by one: `true` for a store whose every write costs a commit or a
    /// round trip, which a batch shares; `false` (the default) for one that answers at once,
    /// where gathering would only add a hop per call.
    fn prefers_batches(&self) -> bool {
        false
    }

    /// Claims every alarm of `requests` as [`claim`](AlarmStore::claim) would, and answers in
    /// the same order, one result per request. Each claim is atomic on its own, with the same
    /// rules and errors; a store may write them all in one transaction (the scheduler batches
    /// the claims of a burst through here, so that thousands of alarms due at once cost a
    /// few commits rather than one each). The requests are independent, as concurrent calls
    /// would be: of two for the same id, either may come first.
    ///
    /// The default makes the calls one by one, concurrently.
    fn claim_many(
        &self,
        requests: Vec<ClaimRequest>,
    ) -> BoxFuture<'_, Vec<Result<Claim, AlarmStoreError>>> {
        async move {
            let claims = requests.iter().map(|request| {
                self.claim(
                    &request.id,
                    &request.holder,
                    request.now,
                    request.due_by,
                    request.lease_until,
                )
            });
            futures::future::join_all(claims).await
        }
        .boxed()
    }

    /// Deletes every alarm of `requests` as [`delete`](AlarmStore::delete) would, and answers
    /// in the same order, one result per request; a store may write them all in one
    /// transaction.
    ///
    /// The default makes the calls one by one, concurrently.
    fn delete_many(
        &self,
        requests: Vec<DeleteRequest>,
    ) -> BoxFuture<'_, Vec<Result<bool, AlarmStoreError>>> {
        async move {
            let deletes = requests
                .iter()
                .map(|request| self.delete(&request.id, &request.holder));
            futures::future::join_all(deletes).await
        }
        .boxed()
    }

    /// Deletes every alarm of `aggregate_id` and returns their ids.
    fn cancel_for<'a>(
        &'a self,
        aggregate_id: &'a str,
    ) -> BoxFuture<'a, Result<Vec<String>, AlarmStoreError>>;
}

impl<S: AlarmStore + ?Sized> AlarmStore for std::sync::Arc<S> {
    fn save(&self, alarm: Alarm) -> BoxFuture<'_, Result<Message, AlarmStoreError>> {
        (**self).save(alarm)
    }

    fn load(
        &self,
        from: Option<SystemTime>,
        until: SystemTime,
    ) -> BoxFuture<'_, Result<Vec<Alarm>, AlarmStoreError>> {
        (**self).load(from, until)
    }

    fn claim<'a>(
        &'a self,
        id: &'a str,
        holder: &'a str,
        now: SystemTime,
        due_by: SystemTime,
        lease_until: SystemTime,
    ) -> BoxFuture<'a, Result<Claim, AlarmStoreError>> {
        (**self).claim(id, holder, now, due_by, lease_until)
    }

    fn renew<'a>(
        &'a self,
        id: &'a str,
        holder: &'a str,
        lease_until: SystemTime,
    ) -> BoxFuture<'a, Result<bool, AlarmStoreError>> {
        (**self).renew(id, holder, lease_until)
    }

    fn reschedule<'a>(
        &'a self,
        id: &'a str,
        holder: &'a str,
        due: SystemTime,
        message: Message,
    ) -> BoxFuture<'a, Result<bool, AlarmStoreError>> {
        (**self).reschedule(id, holder, due, message)
    }

    fn delete<'a>(
        &'a self,
        id: &'a str,
        holder: &'a str,
    ) -> BoxFuture<'a, Result<bool, AlarmStoreError>> {
        (**self).delete(id, holder)
    }

    fn cancel<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<bool, AlarmStoreError>> {
        (**self).cancel(id)
    }

    fn prefers_batches(&self) -> bool {
        (**self).prefers_batches()
    }

    fn claim_many(
        &self,
        requests: Vec<ClaimRequest>,
    ) -> BoxFuture<'_, Vec<Result<Claim, AlarmStoreError>>> {
        (**self).claim_many(requests)
    }

    fn delete_many(
        &self,
        requests: Vec<DeleteRequest>,
    ) -> BoxFuture<'_, Vec<Result<bool, AlarmStoreError>>> {
        (**self).delete_many(requests)
    }

    fn cancel_for<'a>(
        &'a self,
        aggregate_id: &'a str,
    ) -> BoxFuture<'a, Result<Vec<String>, AlarmStoreError>> {
        (**self).cancel_for(aggregate_id)
    }
}
