//! What `schedule` may know of the actor's state without asking it: the horizon it arms alarms
//! before, and which ids it may hold. With both, `schedule` sends the actor only the alarms it
//! would act on: an alarm saved beyond the horizon under an id the actor does not hold costs
//! the actor nothing (no message clone, no wake-up).
//!
//! The actor owns the state and publishes it here; `schedule` reads it once its save is
//! durable. That order makes skipping safe: a horizon moved past the alarm after the read
//! starts a load after the save, which finds the alarm; an id armed after the read was read
//! from the store, and its claim answers with the stored alarm, whatever the load saw.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::SystemTime;

/// Counters per hash bucket of the ids the actor holds: 4,096 of them, so a window of a few
/// thousand held ids leaves most buckets empty, in 16 KiB per scheduler.
const BUCKETS: usize = 4_096;

/// The actor's horizon and a counting filter of its held ids, shared with `schedule`.
#[derive(Debug)]
pub(super) struct Published {
    horizon: RwLock<Option<SystemTime>>,
    held: Box<[AtomicU32]>,
    hasher: BuildHasherDefault<DefaultHasher>,
}

impl Default for Published {
    fn default() -> Self {
        Self {
            horizon: RwLock::new(None),
            held: (0..BUCKETS).map(|_| AtomicU32::new(0)).collect(),
            hasher: BuildHasherDefault::default(),
        }
    }
}

impl Published {
    fn bucket(&self, id: &str) -> &AtomicU32 {
        // The modulo keeps the index within the slice.
        let index = self.hasher.hash_one(id) as usize % BUCKETS;
        &self.held[index]
    }

    /// Whether the actor must hear of alarm `id` saved due at `due`: it would arm it (due
    /// before the horizon), or it may hold the id already (armed or under delivery: the new
    /// alarm replaces it). Call once the save is durable. A `false` is exact; a `true` may be a
    /// false alarm (another id in the same bucket), which only costs the message.
    pub(super) fn actor_needs(&self, id: &str, due: SystemTime) -> bool {
        let within = self
            .horizon
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some_and(|horizon| due < horizon);
        within || self.bucket(id).load(Ordering::SeqCst) > 0
    }

    /// Publishes a new horizon: call before starting the load that reaches it.
    pub(super) fn set_horizon(&self, horizon: SystemTime) {
        *self.horizon.write().unwrap_or_else(PoisonError::into_inner) = Some(horizon);
    }
}

/// The actor's entries by id, keeping [`Published`]'s filter in step with them.
#[derive(Debug)]
pub(super) struct Entries<E> {
    map: HashMap<String, E>,
    published: Arc<Published>,
}

impl<E> Entries<E> {
    pub(super) fn new(published: Arc<Published>) -> Self {
        Self {
            map: HashMap::new(),
            published,
        }
    }

    pub(super) fn get(&self, id: &str) -> Option<&E> {
        self.map.get(id)
    }

    pub(super) fn get_mut(&mut self, id: &str) -> Option<&mut E> {
        self.map.get_mut(id)
    }

    pub(super) fn contains_key(&self, id: &str) -> bool {
        self.map.contains_key(id)
    }

    pub(super) fn len(&self) -> usize {
        self.map.len()
    }

    /// Inserts an entry for an id not held yet.
    pub(super) fn insert_new(&mut self, id: String, entry: E) {
        let bucket = self.published.bucket(&id);
        if self.map.insert(id, entry).is_none() {
            bucket.fetch_add(1, Ordering::SeqCst);
        }
    }

    pub(super) fn remove(&mut self, id: &str) -> Option<E> {
        let removed = self.map.remove(id);
        if removed.is_some() {
            self.published.bucket(id).fetch_sub(1, Ordering::SeqCst);
        }
        removed
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn at(seconds: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(seconds)
    }

    #[test]
    fn before_any_horizon_only_held_ids_need_the_actor() {
        let published = Arc::new(Published::default());
        let mut entries = Entries::new(published.clone());
        assert!(!published.actor_needs("a", at(10)));
        entries.insert_new("a".to_owned(), ());
        assert!(published.actor_needs("a", at(10)));
        entries.remove("a");
        assert!(!published.actor_needs("a", at(10)));
    }

    #[test]
    fn an_alarm_due_before_the_horizon_needs_the_actor_and_one_at_it_does_not() {
        let published = Published::default();
        published.set_horizon(at(100));
        assert!(published.actor_needs("a", at(99)));
        assert!(!published.actor_needs("a", at(100)));
    }

    #[test]
    fn an_id_held_twice_over_is_counted_once_and_removed_once() {
        let published = Arc::new(Published::default());
        let mut entries = Entries::new(published.clone());
        entries.insert_new("a".to_owned(), 1);
        entries.insert_new("a".to_owned(), 2);
        assert_eq!(entries.remove("a"), Some(2));
        assert_eq!(entries.remove("a"), None);
        assert!(!published.actor_needs("a", at(10)));
        assert_eq!(entries.len(), 0);
    }
}
