//! An alarm store in memory: for tests, examples and single-process apps that can lose their
//! alarms.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use futures::future::{BoxFuture, FutureExt};
use switchyard_messaging::Message;

use super::{Alarm, AlarmStore, AlarmStoreError, Claim, Lease};

/// An [`AlarmStore`] in memory. Cheap to clone: clones share the alarms.
///
/// One mutex guards the data and is never held across an await, so every operation is atomic.
/// An operation takes effect when its future is first polled.
///
/// # Examples
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use switchyard_messaging::Message;
/// use switchyard_scheduler::store::{Alarm, AlarmStore, MemoryAlarmStore};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let store = MemoryAlarmStore::new();
/// let due = SystemTime::now() + Duration::from_secs(60);
/// let message = Message::new("remind");
/// store.save(Alarm { message, aggregate_id: "a-1".into(), due, attempts: 0 }).await?;
/// assert_eq!(store.load(None, due + Duration::from_secs(1)).await?.len(), 1);
/// # Ok::<_, switchyard_scheduler::store::AlarmStoreError>(())
/// # }).unwrap();
/// ```
#[derive(Clone, Debug, Default)]
pub struct MemoryAlarmStore {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug, Default)]
struct Inner {
    /// A B-tree, not a hash map: a store that grows to millions of alarms never stops to
    /// rehash them all under the lock, which stalled every caller in turn.
    alarms: BTreeMap<String, Entry>,
    by_due: BTreeSet<(SystemTime, String)>,
}

#[derive(Debug)]
struct Entry {
    alarm: Alarm,
    lease: Option<Lease>,
}

impl Inner {
    fn remove(&mut self, id: &str) -> Option<Entry> {
        let entry = self.alarms.remove(id)?;
        self.by_due.remove(&(entry.alarm.due, id.to_owned()));
        Some(entry)
    }

    fn held_by(&self, id: &str, holder: &str) -> bool {
        self.alarms
            .get(id)
            .and_then(|entry| entry.lease.as_ref())
            .is_some_and(|lease| lease.holder == holder)
    }
}

impl MemoryAlarmStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many alarms it holds.
    pub fn len(&self) -> usize {
        self.lock().alarms.len()
    }

    /// Whether it holds no alarm.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every change below is made whole before anything can panic, so a poisoned lock still
        // guards consistent data.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl AlarmStore for MemoryAlarmStore {
    fn save(&self, alarm: Alarm) -> BoxFuture<'_, Result<Message, AlarmStoreError>> {
        async move {
            // Everything that allocates happens before the lock is taken: concurrent callers
            // wait only for the two tree updates.
            let id = alarm.id().to_owned();
            let due = (alarm.due, id.clone());
            let message = alarm.message.clone();
            let mut inner = self.lock();
            if let Some(replaced) = inner.alarms.insert(id, Entry { alarm, lease: None }) {
                inner.by_due.remove(&(replaced.alarm.due, due.1.clone()));
            }
            inner.by_due.insert(due);
            Ok(message)
        }
        .boxed()
    }

    fn load(
        &self,
        from: Option<SystemTime>,
        until: SystemTime,
    ) -> BoxFuture<'_, Result<Vec<Alarm>, AlarmStoreError>> {
        async move {
            let inner = self.lock();
            let due = |(time, _): &&(SystemTime, String)| {
                from.is_none_or(|from| *time >= from) && *time < until
            };
            Ok(inner
                .by_due
                .iter()
                .filter(due)
                .filter_map(|(_, id)| inner.alarms.get(id).map(|e| e.alarm.clone()))
                .collect())
        }
        .boxed()
    }

    fn claim<'a>(
        &'a self,
        id: &'a str,
        holder: &'a str,
        now: SystemTime,
        due_by: SystemTime,
        lease_until: SystemTime,
    ) -> BoxFuture<'a, Result<Claim, AlarmStoreError>> {
        async move {
            let mut inner = self.lock();
            let Some(entry) = inner.alarms.get_mut(id) else {
                return Ok(Claim::Gone);
            };
            if entry.alarm.due > due_by {
                return Ok(Claim::NotDue(entry.alarm.due));
            }
            if let Some(lease) = &entry.lease
                && lease.holder != holder
                && lease.until > now
            {
                return Ok(Claim::Held(lease.clone()));
            }
            // Claiming again what the holder still holds (its earlier claim answered too late,
            // say) starts no new delivery, so it counts nothing.
            let holds_it = entry
                .lease
                .as_ref()
                .is_some_and(|lease| lease.holder == holder && lease.until > now);
            entry.lease = Some(Lease {
                holder: holder.to_owned(),
                until: lease_until,
            });
            if !holds_it {
                entry.alarm.attempts = entry.alarm.attempts.saturating_add(1);
            }
            Ok(Claim::Claimed(entry.alarm.clone()))
        }
        .boxed()
    }

    fn renew<'a>(
        &'a self,
        id: &'a str,
        holder: &'a str,
        lease_until: SystemTime,
    ) -> BoxFuture<'a, Result<bool, AlarmStoreError>> {
        async move {
            let mut inner = self.lock();
            if !inner.held_by(id, holder) {
                return Ok(false);
            }
            if let Some(entry) = inner.alarms.get_mut(id) {
                entry.lease = Some(Lease {
                    holder: holder.to_owned(),
                    until: lease_until,
                });
            }
            Ok(true)
        }
        .boxed()
    }

    fn reschedule<'a>(
        &'a self,
        id: &'a str,
        holder: &'a str,
        due: SystemTime,
        message: Message,
    ) -> BoxFuture<'a, Result<bool, AlarmStoreError>> {
        async move {
            let mut inner = self.lock();
            if !inner.held_by(id, holder) {
                return Ok(false);
            }
            let Some(mut entry) = inner.remove(id) else {
                return Ok(false);
            };
            entry.alarm.due = due;
            entry.alarm.message = message;
            entry.lease = None;
            inner.by_due.insert((due, id.to_owned()));
            inner.alarms.insert(id.to_owned(), entry);
            Ok(true)
        }
        .boxed()
    }

    fn delete<'a>(
        &'a self,
        id: &'a str,
        holder: &'a str,
    ) -> BoxFuture<'a, Result<bool, AlarmStoreError>> {
        async move {
            let mut inner = self.lock();
            if !inner.held_by(id, holder) {
                return Ok(false);
            }
            Ok(inner.remove(id).is_some())
        }
        .boxed()
    }

    fn cancel<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<bool, AlarmStoreError>> {
        async move { Ok(self.lock().remove(id).is_some()) }.boxed()
    }

    fn cancel_for<'a>(
        &'a self,
        aggregate_id: &'a str,
    ) -> BoxFuture<'a, Result<Vec<String>, AlarmStoreError>> {
        async move {
            let mut inner = self.lock();
            let mut ids: Vec<String> = inner
                .alarms
                .iter()
                .filter(|(_, entry)| entry.alarm.aggregate_id == aggregate_id)
                .map(|(id, _)| id.clone())
                .collect();
            ids.sort();
            for id in &ids {
                inner.remove(id);
            }
            Ok(ids)
        }
        .boxed()
    }
}
