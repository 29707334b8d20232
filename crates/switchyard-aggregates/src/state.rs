//! An aggregate's state with its version and the messages it has processed.

use std::collections::VecDeque;
use std::sync::Arc;

use foldhash::HashMap;
use std::collections::hash_map::Entry;

use serde::{Deserialize, Serialize};
use switchyard_messaging::Response;

use crate::Aggregate;

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
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProcessedIds {
    capacity: usize,
    /// Each id is allocated once and shared by the order and the map.
    order: VecDeque<Arc<str>>,
    responses: HashMap<Arc<str>, Response>,
    /// Whether an id was ever dropped: only then can a repeated id be missing from the window.
    #[serde(default)]
    forgot: bool,
}

impl ProcessedIds {
    /// How many ids an aggregate remembers unless configured otherwise.
    pub const DEFAULT_CAPACITY: usize = 128;

    /// An empty window of `capacity` ids.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            capacity,
            order: VecDeque::new(),
            responses: HashMap::default(),
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
        // One probe: a new id (the usual case) is allocated once, for the map and the order.
        let id: Arc<str> = Arc::from(id);
        match self.responses.entry(id) {
            Entry::Occupied(mut known) => {
                known.insert(response);
            }
            Entry::Vacant(vacant) => {
                self.order.push_back(vacant.key().clone());
                vacant.insert(response);
                self.trim();
            }
        }
    }

    fn trim(&mut self) {
        while self.order.len() > self.capacity {
            if let Some(oldest) = self.order.pop_front() {
                self.responses.remove(&oldest);
                self.forgot = true;
            }
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
        self.responses.get(id)
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
        self.trim();
        if capacity == 0 {
            self.forgot = true;
        }
    }
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
}
