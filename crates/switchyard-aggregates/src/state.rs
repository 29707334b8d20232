//! An aggregate's state with its version and the messages it has processed.

use std::collections::VecDeque;
use std::hash::BuildHasher;
use std::sync::Arc;

use foldhash::HashMap;
use hashbrown::Equivalent;

use serde::{Deserialize, Serialize};
use switchyard_messaging::Response;

use crate::Aggregate;
use message_key::{KeyView, MessageKey};

mod message_key;

/// The user's state of an aggregate, its version, and the last processed message ids.
///
/// `version` is the version of the last applied event: -1 for an aggregate with no events.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AggregateState<A> {
    /// The user's state.
    pub state: A,
    /// The version of the last applied event (-1 when new).
    pub version: i64,
    /// The last processed message ids and the responses they got.
    pub processed: ProcessedIds,
}

impl<A: Aggregate> AggregateState<A> {
    /// A new aggregate: default state, version -1, remembering up to `capacity` message ids.
    pub fn new(capacity: usize) -> Self {
        Self {
            state: A::default(),
            version: -1,
            processed: ProcessedIds::with_capacity(capacity),
        }
    }

    /// Applies `events` and stamps `version` (by default, the current version plus the number of
    /// events).
    pub fn apply_events<'a>(
        &mut self,
        events: impl IntoIterator<Item = &'a A::Event>,
        version: Option<i64>,
    ) {
        let mut count = 0_i64;
        for event in events {
            self.state.apply(event);
            count += 1;
        }
        self.version = version.unwrap_or(self.version + count);
    }
}

impl<A: Aggregate> Default for AggregateState<A> {
    fn default() -> Self {
        Self::new(ProcessedIds::DEFAULT_CAPACITY)
    }
}

/// The last N message ids an aggregate processed, each with the response it gave, oldest
/// dropped first. Bounded, unlike x3m's ever-growing set.
///
/// An empty id names no message in particular, so it is never remembered nor found: messages
/// without an id are not deduplicated.
///
/// A UUID id in its canonical spelling (what `Message` generates) is kept in 16 bytes rather
/// than as text: every command looks its id up and remembers it, most often in a window that
/// is not in the cache, so a key that needs no allocation, no pointer to follow and no string
/// to hash or compare is what keeps that cheap.
///
/// The remembered messages sit in insertion order in one ring, each key beside its response;
/// the hash index holds only each one's insertion number (8 bytes a bucket), so a look-up
/// touches a compact table and one slot of the ring. Forgetting the oldest touches no bucket:
/// its number goes stale (it is below the ring's front) and stale numbers are swept out of the
/// index in one pass once they are as many as the window holds. In a full ring the newest
/// takes the oldest's slot. Before, keys and responses sat in the hash table itself
/// (about 100 bytes a bucket) beside a queue of keys, and every command's look-up, insertion and
/// eviction each missed the cache in a table of some 25 KB per aggregate (about a sixth of the
/// time of commands spread over 1,000 aggregates).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(from = "Wire", into = "Wire")]
pub struct ProcessedIds {
    capacity: usize,
    /// The remembered messages, oldest first.
    order: VecDeque<(MessageKey, Response)>,
    /// The insertion number of each remembered message, found by the hash of its key; the
    /// message numbered `n` sits at `order[n - first]`. Numbers below `first` are stale:
    /// forgotten messages' numbers waiting to be swept.
    index: hashbrown::HashTable<u64>,
    hasher: foldhash::fast::RandomState,
    /// The insertion number of `order`'s front.
    first: u64,
    forgot: bool,
}

/// Two windows are equal when they remember the same messages with the same responses in the
/// same order, with the same capacity and the same knowledge of having forgotten some.
impl PartialEq for ProcessedIds {
    fn eq(&self, other: &Self) -> bool {
        self.capacity == other.capacity && self.forgot == other.forgot && self.order == other.order
    }
}

/// How a window is serialized (in snapshots and stored states): its ids as text, so the form
/// does not depend on how the window keeps them.
#[derive(Serialize, Deserialize)]
struct Wire {
    capacity: usize,
    order: VecDeque<Arc<str>>,
    responses: HashMap<Arc<str>, Response>,
    #[serde(default)]
    forgot: bool,
}

impl From<ProcessedIds> for Wire {
    fn from(ids: ProcessedIds) -> Self {
        let mut responses = HashMap::default();
        let order = ids
            .order
            .into_iter()
            .map(|(key, response)| {
                let id = key.to_text();
                responses.insert(id.clone(), response);
                id
            })
            .collect();
        Self {
            capacity: ids.capacity,
            order,
            responses,
            forgot: ids.forgot,
        }
    }
}

impl From<Wire> for ProcessedIds {
    fn from(mut wire: Wire) -> Self {
        let mut ids = Self::with_capacity(wire.capacity);
        // An id in the order without a response was never remembered; one with a response but
        // out of the order could never be dropped: both are left out.
        for id in wire.order {
            if let Some(response) = wire.responses.remove(&id) {
                ids.insert(&*id, response);
            }
        }
        ids.forgot |= wire.forgot;
        ids
    }
}

impl ProcessedIds {
    /// How many ids an aggregate remembers unless configured otherwise.
    pub const DEFAULT_CAPACITY: usize = 128;

    /// An empty window of `capacity` ids.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            capacity,
            order: VecDeque::new(),
            index: hashbrown::HashTable::new(),
            hasher: foldhash::fast::RandomState::default(),
            first: 0,
            forgot: false,
        }
    }

    /// Remembers `id` with its response, forgetting the oldest id when full; an id already
    /// remembered keeps its place and takes the new response. An empty id is ignored.
    pub fn insert(&mut self, id: impl AsRef<str>, response: Response) {
        let id = id.as_ref();
        if id.is_empty() {
            return;
        }
        if self.capacity == 0 {
            self.forgot = true;
            return;
        }
        let key = KeyView::of(id);
        let hash = self.hasher.hash_one(key);
        if let Some(at) = self.position(hash, key) {
            if let Some((_, known)) = self.order.get_mut(at) {
                *known = response;
            }
            return;
        }
        // The oldest goes first, so in a full ring the newest takes its slot, in the same line
        // of the cache.
        self.forget_down_to(self.capacity - 1);
        let number = self.first + self.order.len() as u64;
        self.order.push_back((key.to_key(), response));
        self.drop_stale_numbers();
        let Self {
            order,
            index,
            hasher,
            first,
            ..
        } = self;
        index.insert_unique(hash, number, |number| {
            // A stale number names no message any more: wherever it lands, every look-up
            // passes over it.
            live_slot(*first, *number)
                .and_then(|at| order.get(at))
                .map_or(0, |(key, _)| hasher.hash_one(key.view()))
        });
    }

    /// Where in `order` the message of `key` (whose hash is `hash`) sits, if remembered.
    fn position(&self, hash: u64, key: KeyView<'_>) -> Option<usize> {
        let at = |number: &u64| live_slot(self.first, *number);
        self.index
            .find(hash, |number| {
                at(number)
                    .and_then(|at| self.order.get(at))
                    .is_some_and(|(known, _)| key.equivalent(known))
            })
            .and_then(at)
    }

    /// Forgets the oldest messages until at most `len` are remembered. Their numbers stay in
    /// the index, stale, until [`drop_stale_numbers`](Self::drop_stale_numbers) sweeps them:
    /// finding each one's bucket would cost a look-up in a table most often out of the cache,
    /// for every command.
    fn forget_down_to(&mut self, len: usize) {
        while self.order.len() > len {
            if self.order.pop_front().is_none() {
                break;
            }
            self.first += 1;
            self.forgot = true;
        }
    }

    /// Sweeps the stale numbers out of the index once they are as many as the window holds (at
    /// least 16): one pass over a small table every so many commands.
    fn drop_stale_numbers(&mut self) {
        let stale = self.index.len().saturating_sub(self.order.len());
        if stale >= self.capacity.max(16) {
            let first = self.first;
            self.index.retain(|number| *number >= first);
        }
    }

    /// Whether some processed id may have been dropped from the window, so an id not found here
    /// must be looked up in the store.
    pub fn may_have_forgotten(&self) -> bool {
        self.forgot
    }

    /// Records that ids older than the window's were left out (a window rebuilt from the tail
    /// of a longer history).
    pub(crate) fn mark_forgotten(&mut self) {
        self.forgot = true;
    }

    /// The response given to `id`, if it is remembered (never for an empty id).
    pub fn get(&self, id: &str) -> Option<&Response> {
        if id.is_empty() {
            return None;
        }
        let key = KeyView::of(id);
        let at = self.position(self.hasher.hash_one(key), key)?;
        self.order.get(at).map(|(_, response)| response)
    }

    /// How many ids are remembered.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether no id is remembered.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Changes the capacity, forgetting the oldest ids if needed.
    pub fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity;
        self.forget_down_to(capacity);
        if capacity == 0 {
            self.forgot = true;
        }
    }
}

/// The place in the ring of the message numbered `number` when the front is numbered `first`;
/// `None` for a number the window has forgotten.
fn live_slot(first: u64, number: u64) -> Option<usize> {
    number
        .checked_sub(first)
        .and_then(|at| usize::try_from(at).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_id_is_never_remembered_nor_found() {
        let mut ids = ProcessedIds::with_capacity(2);
        ids.insert("", Response::Ok);
        assert_eq!(ids.get(""), None);
        assert!(ids.is_empty());
        ids.insert("a", Response::Ok);
        ids.insert("b", Response::Ok);
        ids.insert("", Response::Ok);
        assert_eq!(
            ids.get("a"),
            Some(&Response::Ok),
            "an empty id takes no room"
        );
        assert!(!ids.may_have_forgotten());
    }

    fn version(at: i64) -> Response {
        Response::OkAt {
            payload: None,
            version: at,
        }
    }

    /// A UUID-spelled id, so the window keeps it in 16 bytes, as it does `Message`'s ids.
    fn uuid(n: u128) -> String {
        uuid::Uuid::from_u128(n).hyphenated().to_string()
    }

    #[test]
    fn it_forgets_the_oldest_ids_first_and_finds_the_rest_over_many_turns_of_the_ring() {
        let mut ids = ProcessedIds::with_capacity(3);
        for n in 0..1_000_i64 {
            ids.insert(uuid(n as u128), version(n));
            ids.insert(format!("text-{n}"), version(n));
            assert_eq!(ids.len(), 3.min(2 * (n as usize + 1)));
            // Forgotten ids' numbers are swept, so the index stays as small as the window.
            assert!(
                ids.index.len() <= ids.len() + 16,
                "{} numbers",
                ids.index.len()
            );
        }
        assert_eq!(ids.get(&uuid(999)), Some(&version(999)));
        assert_eq!(ids.get("text-999"), Some(&version(999)));
        assert_eq!(ids.get("text-998"), Some(&version(998)));
        assert_eq!(ids.get(&uuid(998)), None, "fourth newest: forgotten");
        assert_eq!(ids.get(&uuid(0)), None);
        assert!(ids.may_have_forgotten());
        ids.insert(uuid(0), version(0));
        assert_eq!(
            ids.get(&uuid(0)),
            Some(&version(0)),
            "forgotten long ago, back now"
        );
    }

    #[test]
    fn an_id_remembered_again_keeps_its_place_and_takes_the_new_response() {
        let mut ids = ProcessedIds::with_capacity(2);
        ids.insert(uuid(1), version(1));
        ids.insert(uuid(2), version(2));
        ids.insert(uuid(1), version(10));
        assert_eq!(ids.get(&uuid(1)), Some(&version(10)));
        ids.insert(uuid(3), version(3));
        assert_eq!(
            ids.get(&uuid(1)),
            None,
            "still the oldest, so forgotten first"
        );
        assert_eq!(ids.get(&uuid(2)), Some(&version(2)));
        assert_eq!(ids.get(&uuid(3)), Some(&version(3)));
    }

    #[test]
    fn a_forgotten_id_stays_forgotten_when_the_capacity_grows_and_comes_back_when_inserted() {
        let mut ids = ProcessedIds::with_capacity(2);
        for n in 1..=3 {
            ids.insert(uuid(n), version(n as i64));
        }
        ids.set_capacity(10);
        assert_eq!(ids.get(&uuid(1)), None);
        ids.insert(uuid(1), version(11));
        assert_eq!(ids.get(&uuid(1)), Some(&version(11)));
        assert_eq!(ids.len(), 3);
        ids.set_capacity(1);
        assert_eq!(ids.get(&uuid(1)), Some(&version(11)), "the newest stays");
        assert_eq!(ids.get(&uuid(3)), None);
        assert_eq!(ids.len(), 1);
    }

    #[test]
    fn windows_holding_the_same_messages_in_the_same_order_are_equal_whatever_they_forgot_on_the_way()
     {
        let mut turned = ProcessedIds::with_capacity(2);
        let mut fresh = ProcessedIds::with_capacity(2);
        for n in 0..7 {
            turned.insert(uuid(n), version(n as i64));
        }
        fresh.insert(uuid(5), version(5));
        fresh.insert(uuid(6), version(6));
        assert_ne!(turned, fresh, "one of them forgot ids");
        fresh.mark_forgotten();
        assert_eq!(turned, fresh);
        fresh.insert(uuid(5), version(50));
        assert_ne!(turned, fresh, "another response");
    }

    #[test]
    fn a_window_serializes_its_ids_as_text_and_reads_back_the_same() {
        let uuid = "0190a5b2-7c3d-7e4f-8a9b-0c1d2e3f4a5b";
        let mut ids = ProcessedIds::with_capacity(2);
        ids.insert("dropped", Response::Ok);
        ids.insert(uuid, Response::Ok);
        ids.insert(
            "order-1",
            Response::Conflict {
                expected: 1,
                actual: Some(2),
            },
        );
        let json = serde_json::to_value(&ids).unwrap();
        assert_eq!(json["order"], serde_json::json!([uuid, "order-1"]));
        assert_eq!(json["forgot"], serde_json::json!(true));
        let read: ProcessedIds = serde_json::from_value(json).unwrap();
        assert_eq!(read, ids);
        assert_eq!(read.get(uuid), Some(&Response::Ok));
        assert_eq!(
            read.get(&uuid.to_uppercase()),
            None,
            "another spelling is another id"
        );
    }
}
