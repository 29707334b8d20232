//! An event, snapshot and state store in memory: for tests, examples and single-process apps
//! that can lose their data.

use std::collections::BTreeMap;

use foldhash::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use futures::future::{BoxFuture, FutureExt};
use futures::stream::{BoxStream, StreamExt};

use super::{
    AppendError, DeleteMode, EventAppender, EventDeleter, EventMetadata, EventReader,
    ExpectedVersion, GlobalReader, NewEvent, RecordedEvent, SnapshotStore, StateStore, StoreError,
    StoredState,
};

/// Every store trait, in memory. Cheap to clone: clones share the data.
///
/// One mutex guards the data; no lock is held across an await, so the store is safe under any
/// number of concurrent callers and linearizable. Every operation takes effect when its future
/// is first polled (a future dropped unpolled does nothing), and `read_stream` copies each page
/// out only when it is asked for.
///
/// # Examples
///
/// ```
/// use switchyard_aggregates::store::{EventAppender, EventMetadata, EventReader, ExpectedVersion, MemoryStore, NewEvent};
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let store = MemoryStore::new();
/// let event = NewEvent { event_type: "opened".into(), schema_version: 1, data: vec![1].into() };
/// let version = store
///     .append("account-1", ExpectedVersion::NoStream, vec![event], EventMetadata::default())
///     .await
///     .unwrap();
/// assert_eq!(version, 0);
/// assert!(store.has_stream("account-1").await.unwrap());
/// # });
/// ```
#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    inner: Arc<Mutex<Inner>>,
    /// The last position given, published after each append (`GlobalReader::watch_head`).
    head: Arc<tokio::sync::watch::Sender<u64>>,
}

#[derive(Debug, Default)]
struct Inner {
    streams: HashMap<String, Stream>,
    /// The global order: each event is stored once, in its stream, and found here by position.
    global: BTreeMap<u64, (Arc<str>, i64)>,
    last_position: u64,
    snapshots: HashMap<String, StoredState>,
    states: HashMap<String, StoredState>,
}

#[derive(Debug)]
struct Stream {
    name: Arc<str>,
    events: Vec<RecordedEvent>,
    last_version: i64,
    /// Events up to this version were soft-deleted and stay hidden.
    hidden_through: i64,
    by_message: HashMap<String, i64>,
}

impl Stream {
    fn is_visible(&self) -> bool {
        self.last_version > self.hidden_through
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the data half-written: every change is
        // made after all checks passed.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn check(
    stream_name: &str,
    stream: Option<&Stream>,
    expected: ExpectedVersion,
) -> Result<(), AppendError> {
    let actual = stream.map(|s| s.last_version);
    let ok = match expected {
        ExpectedVersion::Any => true,
        ExpectedVersion::NoStream => stream.is_none(),
        ExpectedVersion::Exactly(-1) => stream.is_none(),
        ExpectedVersion::Exactly(version) => actual == Some(version),
    };
    if ok {
        Ok(())
    } else {
        Err(AppendError::Conflict {
            stream: stream_name.to_owned(),
            expected,
            actual,
        })
    }
}

/// Refuses a message that already recorded visible events in the stream.
fn check_unrecorded(
    stream_name: &str,
    stream: Option<&Stream>,
    message_id: &str,
) -> Result<(), AppendError> {
    let recorded = stream.and_then(|s| {
        s.by_message
            .get(message_id)
            .copied()
            .filter(|version| *version > s.hidden_through)
    });
    match recorded {
        Some(version) if !message_id.is_empty() => Err(AppendError::Duplicate {
            stream: stream_name.to_owned(),
            message_id: message_id.to_owned(),
            version,
        }),
        _ => Ok(()),
    }
}

impl EventReader for MemoryStore {
    fn has_stream<'a>(&'a self, stream: &'a str) -> BoxFuture<'a, Result<bool, StoreError>> {
        async move {
            Ok(self
                .lock()
                .streams
                .get(stream)
                .is_some_and(Stream::is_visible))
        }
        .boxed()
    }

    fn read_stream<'a>(
        &'a self,
        stream: &'a str,
        from_version: i64,
        page_size: usize,
    ) -> BoxStream<'a, Result<Vec<RecordedEvent>, StoreError>> {
        let page_size = page_size.max(1);
        // Each page is copied out when it is asked for, from where the last one ended; a short
        // page is the last.
        futures::stream::unfold(Some(from_version), move |next| async move {
            let next = next?;
            let page: Vec<RecordedEvent> = {
                let inner = self.lock();
                let found = inner.streams.get(stream)?;
                // Versions are the indexes of the stream's events.
                let first = usize::try_from(next.max(found.hidden_through + 1)).unwrap_or(0);
                let rest = found.events.get(first..).unwrap_or_default();
                rest[..rest.len().min(page_size)].to_vec()
            };
            let last = page.last()?.version;
            let more = (page.len() == page_size).then_some(last + 1);
            Some((Ok(page), more))
        })
        .boxed()
    }

    fn find_message<'a>(
        &'a self,
        stream: &'a str,
        message_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<i64>, StoreError>> {
        async move {
            Ok(self.lock().streams.get(stream).and_then(|s| {
                s.by_message
                    .get(message_id)
                    .copied()
                    .filter(|version| *version > s.hidden_through)
            }))
        }
        .boxed()
    }
}

impl EventAppender for MemoryStore {
    fn append<'a>(
        &'a self,
        stream: &'a str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
        metadata: EventMetadata,
    ) -> BoxFuture<'a, Result<i64, AppendError>> {
        // The work is done when the future is first polled: one dropped unpolled writes nothing.
        async move {
            let mut inner = self.lock();
            check(stream, inner.streams.get(stream), expected)?;
            if events.is_empty() {
                return Ok(inner.streams.get(stream).map_or(-1, |s| s.last_version));
            }
            check_unrecorded(stream, inner.streams.get(stream), &metadata.message_id)?;
            let recorded_at = SystemTime::now();
            let Inner {
                streams,
                global,
                last_position,
                ..
            } = &mut *inner;
            let target = streams.entry(stream.to_owned()).or_insert_with(|| Stream {
                name: Arc::from(stream),
                events: Vec::new(),
                last_version: -1,
                hidden_through: -1,
                by_message: HashMap::default(),
            });
            let message_id = metadata.message_id.clone();
            let metadata = Arc::new(metadata);
            for event in events {
                *last_position += 1;
                target.last_version += 1;
                global.insert(*last_position, (target.name.clone(), target.last_version));
                target.events.push(RecordedEvent {
                    stream: target.name.clone(),
                    version: target.last_version,
                    position: *last_position,
                    event_type: Arc::from(event.event_type),
                    schema_version: event.schema_version,
                    data: event.data,
                    metadata: metadata.clone(),
                    recorded_at,
                });
            }
            if !message_id.is_empty() {
                target.by_message.insert(message_id, target.last_version);
            }
            // Under the lock, so the published head only ever grows.
            self.head.send_replace(*last_position);
            Ok(target.last_version)
        }
        .boxed()
    }
}

impl EventDeleter for MemoryStore {
    fn delete_stream<'a>(
        &'a self,
        stream: &'a str,
        mode: DeleteMode,
        expected: ExpectedVersion,
    ) -> BoxFuture<'a, Result<(), AppendError>> {
        async move {
            let mut inner = self.lock();
            check(stream, inner.streams.get(stream), expected)?;
            match mode {
                DeleteMode::Soft => {
                    if let Some(found) = inner.streams.get_mut(stream) {
                        found.hidden_through = found.last_version;
                    }
                }
                DeleteMode::Hard => {
                    if let Some(removed) = inner.streams.remove(stream) {
                        for event in &removed.events {
                            inner.global.remove(&event.position);
                        }
                    }
                    inner.snapshots.remove(stream);
                }
            }
            Ok(())
        }
        .boxed()
    }
}

impl GlobalReader for MemoryStore {
    fn read_all(
        &self,
        from_position: u64,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<RecordedEvent>, StoreError>> {
        async move {
            let inner = self.lock();
            Ok(inner
                .global
                .range(from_position..)
                .filter_map(|(_, (stream, version))| {
                    let found = inner.streams.get(&**stream)?;
                    if *version <= found.hidden_through {
                        return None;
                    }
                    found.events.get(usize::try_from(*version).ok()?).cloned()
                })
                .take(limit)
                .collect())
        }
        .boxed()
    }

    fn head(&self) -> BoxFuture<'_, Result<u64, StoreError>> {
        async move { Ok(self.lock().last_position) }.boxed()
    }

    fn watch_head(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        Some(self.head.subscribe())
    }
}

impl SnapshotStore for MemoryStore {
    fn save_snapshot<'a>(
        &'a self,
        stream: &'a str,
        snapshot: StoredState,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        async move {
            self.lock().snapshots.insert(stream.to_owned(), snapshot);
            Ok(())
        }
        .boxed()
    }

    fn load_snapshot<'a>(
        &'a self,
        stream: &'a str,
    ) -> BoxFuture<'a, Result<Option<StoredState>, StoreError>> {
        async move { Ok(self.lock().snapshots.get(stream).cloned()) }.boxed()
    }

    fn delete_snapshot<'a>(&'a self, stream: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
        async move {
            self.lock().snapshots.remove(stream);
            Ok(())
        }
        .boxed()
    }
}

impl StateStore for MemoryStore {
    fn save_state<'a>(
        &'a self,
        stream: &'a str,
        state: StoredState,
        expected: ExpectedVersion,
    ) -> BoxFuture<'a, Result<(), AppendError>> {
        async move {
            let mut inner = self.lock();
            check_state(stream, inner.states.get(stream), expected)?;
            inner.states.insert(stream.to_owned(), state);
            Ok(())
        }
        .boxed()
    }

    fn load_state<'a>(
        &'a self,
        stream: &'a str,
    ) -> BoxFuture<'a, Result<Option<StoredState>, StoreError>> {
        async move { Ok(self.lock().states.get(stream).cloned()) }.boxed()
    }

    fn delete_state<'a>(
        &'a self,
        stream: &'a str,
        expected: ExpectedVersion,
    ) -> BoxFuture<'a, Result<(), AppendError>> {
        async move {
            let mut inner = self.lock();
            check_state(stream, inner.states.get(stream), expected)?;
            inner.states.remove(stream);
            Ok(())
        }
        .boxed()
    }
}

/// The expected-version rules of states: [`check`]'s, against the stored state's version.
fn check_state(
    stream: &str,
    stored: Option<&StoredState>,
    expected: ExpectedVersion,
) -> Result<(), AppendError> {
    let actual = stored.map(|s| s.version);
    let ok = match expected {
        ExpectedVersion::Any => true,
        ExpectedVersion::NoStream | ExpectedVersion::Exactly(-1) => actual.is_none(),
        ExpectedVersion::Exactly(version) => actual == Some(version),
    };
    if ok {
        Ok(())
    } else {
        Err(AppendError::Conflict {
            stream: stream.to_owned(),
            expected,
            actual,
        })
    }
}
