//! The typed persistence of one aggregate type, usable with or without the runtime.
//!
//! x3m's `Aggregate.Repo` callbacks map onto it as follows: `has?/1` is [`Repo::exists`],
//! `stream_events/3` is [`Repo::load`] (which also folds the events), `save_events/3` is
//! [`Repo::commit`] in event-sourced mode, `delete_stream/3` is [`Repo::delete`], and the
//! `save_state/3` hook with `set_state` is the state-based mode ([`Repo::state_based`]).

mod events;
mod upcast;
mod window;

use std::sync::Arc;

use futures::StreamExt;
use serde::Serialize;
use serde::de::DeserializeOwned;
use switchyard_messaging::codec;
use switchyard_messaging::{ErrorChain, IntoResponse, Message, Payload, Response};
use tracing::Instrument;

use crate::names::{self, NameError, NameKind};
use crate::store::{
    AppendError, Appended, DeleteMode, EventMetadata, EventStore, ExpectedVersion, IntoShared,
    NewEvent, SnapshotStore, StateStore, StoreError, StoredState,
};
use crate::{Aggregate, AggregateState};

pub use self::events::DecodedEvent;
pub use self::upcast::{EventLocation, StepError, UpcastError, Upcasters};

type EncodeState<A> = fn(&AggregateState<A>) -> Result<Vec<u8>, codec::EncodeError>;
type DecodeState<A> = fn(&[u8]) -> Result<AggregateState<A>, codec::DecodeError>;

/// How an aggregate's state is encoded, captured where `A: Serialize` is known.
struct StateCodec<A> {
    encode: EncodeState<A>,
    decode: DecodeState<A>,
}

impl<A> Clone for StateCodec<A> {
    fn clone(&self) -> Self {
        Self {
            encode: self.encode,
            decode: self.decode,
        }
    }
}

impl<A: Aggregate + Serialize + DeserializeOwned> StateCodec<A> {
    fn new() -> Self {
        Self {
            encode: |state| codec::encode(state),
            decode: |bytes| codec::decode(bytes),
        }
    }
}

enum Backend<A> {
    EventSourced {
        events: Arc<dyn EventStore>,
        snapshots: Option<(Arc<dyn SnapshotStore>, u64, StateCodec<A>)>,
    },
    StateBased {
        states: Arc<dyn StateStore>,
        codec: StateCodec<A>,
    },
}

impl<A> Clone for Backend<A> {
    fn clone(&self) -> Self {
        match self {
            Self::EventSourced { events, snapshots } => Self::EventSourced {
                events: events.clone(),
                snapshots: snapshots.clone(),
            },
            Self::StateBased { states, codec } => Self::StateBased {
                states: states.clone(),
                codec: codec.clone(),
            },
        }
    }
}

/// Loads and saves aggregates of type `A`.
///
/// Event-sourced ([`Repo::event_sourced`]): events are appended and the state is folded from
/// them, starting from the latest snapshot if snapshots are on. State-based
/// ([`Repo::state_based`]): the whole state, with its version and recent message ids, is stored
/// after each command.
///
/// Every method taking an aggregate id first checks it, the stream name, and (when committing)
/// the event types and message ids against the rule every store shares (see
/// [`names`]): a name that breaks it is refused with [`RepoError::InvalidName`]
/// before any store is asked, so every store accepts the same names.
///
/// # Examples
///
/// ```
/// # use serde::{Deserialize, Serialize};
/// # use switchyard_aggregates::Aggregate;
/// # #[derive(Default)] struct Counter { total: u64 }
/// # #[derive(Clone, Serialize, Deserialize)] enum CounterEvent { Added(u64) }
/// # impl Aggregate for Counter {
/// #     type Event = CounterEvent;
/// #     const NAME: &'static str = "counter";
/// #     fn apply(&mut self, e: &CounterEvent) { let CounterEvent::Added(n) = e; self.total += n; }
/// # }
/// use std::sync::Arc;
/// use switchyard_aggregates::repo::Repo;
/// use switchyard_aggregates::store::MemoryStore;
/// use switchyard_aggregates::AggregateState;
/// use switchyard_messaging::Message;
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let repo = Repo::<Counter>::event_sourced(Arc::new(MemoryStore::new()));
/// let mut state = AggregateState::<Counter>::default();
/// let cause = Message::new("add");
/// let version = repo.commit("c1", &mut state, vec![CounterEvent::Added(2)], &cause, Default::default()).await.unwrap();
/// assert_eq!(version, 0);
/// let loaded = repo.load("c1").await.unwrap().unwrap();
/// assert_eq!((loaded.state.total, loaded.version), (2, 0));
/// # });
/// ```
pub struct Repo<A: Aggregate> {
    backend: Backend<A>,
    upcasters: Upcasters<A>,
    page_size: usize,
    processed_capacity: usize,
}

impl<A: Aggregate> Clone for Repo<A> {
    fn clone(&self) -> Self {
        Self {
            backend: self.backend.clone(),
            upcasters: self.upcasters.clone(),
            page_size: self.page_size,
            processed_capacity: self.processed_capacity,
        }
    }
}

/// Loading or saving failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RepoError {
    /// Another writer changed the aggregate first.
    #[error("version conflict: expected {expected}, found {actual:?}")]
    Conflict {
        /// The version the writer expected.
        expected: i64,
        /// The version found.
        actual: Option<i64>,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The message already recorded events in the aggregate's stream, which the store refuses
    /// to record twice ([`AppendError::Duplicate`]): nothing was appended. The command was a
    /// redelivery: answer it as the first delivery was answered (the runtime does so, looking
    /// the first answer up; [`into_response`](IntoResponse::into_response) answers `OkAt` at
    /// `version`).
    #[error(
        "message `{message_id}` already recorded events in `{stream}` (up to version {version}); \
         nothing was appended"
    )]
    Duplicate {
        /// The stream.
        stream: String,
        /// The message's id.
        message_id: String,
        /// The version of the last event the message recorded.
        version: i64,
    },
    /// The store cannot tell whether the save happened; reload before deciding again.
    #[error("outcome of the save is unknown")]
    Unknown {
        /// The store's error.
        #[source]
        source: AppendError,
    },
    /// A recorded event does not decode as the aggregate's `Event` type: its layout changed
    /// without a new variant or an upcast, or another type wrote to the stream.
    #[error("event {version} of stream `{stream}` (`{event_type}`) does not decode")]
    EventDecode {
        /// The stream.
        stream: String,
        /// The event's version in the stream.
        version: i64,
        /// The name it was recorded under.
        event_type: String,
        /// The codec's error.
        #[source]
        source: codec::DecodeError,
    },
    /// A recorded event could not be brought up to the aggregate's
    /// [`EVENT_SCHEMA_VERSION`](Aggregate::EVENT_SCHEMA_VERSION) by the repo's
    /// [`Upcasters`]: a step is missing or failed, or the event is newer than the code.
    #[error(transparent)]
    Upcast(#[from] UpcastError),
    /// The aggregate asked for does not exist (or was deleted): returned by
    /// [`Repo::load_existing`].
    #[error("aggregate `{stream}` does not exist")]
    NotFound {
        /// The aggregate's id.
        id: String,
        /// Its stream.
        stream: String,
    },
    /// Events were asked of a state-based aggregate, which keeps none.
    #[error("aggregate `{aggregate}` is state-based and keeps no events")]
    NoEvents {
        /// The aggregate type's [`NAME`](Aggregate::NAME).
        aggregate: &'static str,
    },
    /// An aggregate id, event type or message id breaks the rule every store shares (see
    /// [`names`]); nothing was read or written. Choose another name.
    #[error(transparent)]
    InvalidName(#[from] NameError),
    /// An event or state could not be encoded or decoded.
    #[error("aggregate `{stream}`: {reason}")]
    Codec {
        /// The stream.
        stream: String,
        /// What failed.
        reason: String,
    },
}

impl RepoError {
    fn from_append(error: AppendError, expected: i64) -> Self {
        match error {
            AppendError::Conflict { actual, .. } => Self::Conflict { expected, actual },
            AppendError::Store(source) => Self::Store(source),
            AppendError::Duplicate {
                stream,
                message_id,
                version,
            } => Self::Duplicate {
                stream,
                message_id,
                version,
            },
            other => Self::Unknown { source: other },
        }
    }
}

impl IntoResponse for RepoError {
    /// A conflict answers [`Response::Conflict`] (retrying on fresh state may succeed); a
    /// duplicate `OkAt` at the version of the message's last event, without a payload (its
    /// effect is recorded; the runtime answers a duplicate exactly as the first time, `Created`
    /// included); a missing aggregate [`Response::NotFound`]; an invalid name
    /// [`Response::ValidationError`] with the rule (the caller's mistake); every other kind is
    /// the service's failure, answered [`Response::Error`] with the error and its causes.
    fn into_response(self) -> Response {
        match self {
            Self::Conflict { expected, actual } => Response::Conflict { expected, actual },
            Self::Duplicate { version, .. } => Response::OkAt {
                payload: None,
                version,
            },
            Self::NotFound { id, .. } => Response::NotFound { id },
            Self::InvalidName(error) => Response::ValidationError(Payload::text(error.to_string())),
            other => Response::error(ErrorChain(&other).to_string()),
        }
    }
}

fn expected(version: i64) -> ExpectedVersion {
    if version < 0 {
        ExpectedVersion::NoStream
    } else {
        ExpectedVersion::Exactly(version)
    }
}

impl<A: Aggregate> Repo<A> {
    /// Event-sourced persistence in `events`: a store, or an `Arc` of one (see
    /// [`IntoShared`]).
    pub fn event_sourced(events: impl IntoShared<dyn EventStore>) -> Self {
        Self {
            backend: Backend::EventSourced {
                events: events.into_shared(),
                snapshots: None,
            },
            upcasters: Upcasters::new(),
            page_size: 512,
            processed_capacity: crate::state::ProcessedIds::DEFAULT_CAPACITY,
        }
    }

    /// State-based persistence in `states` (x3m 0.9.1's `save_state`): no events are kept, the
    /// state is saved after each command with optimistic concurrency on its version.
    pub fn state_based(states: impl IntoShared<dyn StateStore>) -> Self
    where
        A: Serialize + DeserializeOwned,
    {
        Self {
            backend: Backend::StateBased {
                states: states.into_shared(),
                codec: StateCodec::new(),
            },
            upcasters: Upcasters::new(),
            page_size: 512,
            processed_capacity: crate::state::ProcessedIds::DEFAULT_CAPACITY,
        }
    }

    /// Saves a snapshot every `every` events (event-sourced mode; ignored otherwise). Snapshots
    /// carry [`Aggregate::STATE_SCHEMA_VERSION`]; one of another version, or one that does not
    /// decode, is ignored and the stream replayed.
    #[must_use]
    pub fn with_snapshots(
        mut self,
        snapshots: impl IntoShared<dyn SnapshotStore>,
        every: u64,
    ) -> Self
    where
        A: Serialize + DeserializeOwned,
    {
        if let Backend::EventSourced { events, .. } = self.backend {
            self.backend = Backend::EventSourced {
                events,
                snapshots: Some((snapshots.into_shared(), every.max(1), StateCodec::new())),
            };
        }
        self
    }

    /// Reads events recorded with an older schema version through `upcasters` (see
    /// [`Upcasters`]): loading, catching up and [`events`](Self::events) and the like bring
    /// each such event to [`A::EVENT_SCHEMA_VERSION`](Aggregate::EVENT_SCHEMA_VERSION) before
    /// decoding it. Without them (the default), an event of another version fails the read
    /// with [`RepoError::Upcast`]. Snapshots are not upcast: one of another state schema
    /// version is ignored and the stream replayed (see [`with_snapshots`](Self::with_snapshots)).
    #[must_use]
    pub fn with_upcasters(mut self, upcasters: Upcasters<A>) -> Self {
        self.upcasters = upcasters;
        self
    }

    /// The repo's upcasters, to decode the events of a subscription the way the repo does
    /// ([`Upcasters::decode`]).
    pub fn upcasters(&self) -> &Upcasters<A> {
        &self.upcasters
    }

    /// How many events a read fetches at once (default 512).
    #[must_use]
    pub fn with_page_size(mut self, page_size: usize) -> Self {
        self.page_size = page_size.max(1);
        self
    }

    /// How many processed message ids each aggregate remembers (default 128).
    #[must_use]
    pub fn with_processed_capacity(mut self, capacity: usize) -> Self {
        self.processed_capacity = capacity;
        self
    }

    /// The number of processed message ids each aggregate remembers.
    pub fn processed_capacity(&self) -> usize {
        self.processed_capacity
    }

    /// The stream of aggregate `id`: `"{NAME}-{id}"`. It does not check `id`; every other
    /// method refuses an id that breaks the [`names`] rule with
    /// [`RepoError::InvalidName`].
    pub fn stream_name(&self, id: &str) -> String {
        // Built at its length: `format!` grows its buffer as it goes.
        let mut stream = String::with_capacity(A::NAME.len() + 1 + id.len());
        stream.push_str(A::NAME);
        stream.push('-');
        stream.push_str(id);
        stream
    }

    /// The stream of aggregate `id`, once `id` and the stream name are checked against the
    /// rule every store shares.
    pub(crate) fn checked_stream(&self, id: &str) -> Result<String, NameError> {
        self.check_id(id)?;
        Ok(self.stream_name(id))
    }

    /// Checks `id`, and the stream name it makes, against the rule every store shares, without
    /// building that name: the errors are those of checking `"{NAME}-{id}"` itself.
    pub(crate) fn check_id(&self, id: &str) -> Result<(), NameError> {
        names::check(NameKind::AggregateId, id)?;
        // `id` holds no control character now, so the stream can only break the rule by its
        // length or by a control character in `NAME`.
        let len = A::NAME.len() + 1 + id.len();
        if len > NameKind::Stream.max_bytes() {
            return Err(NameError::TooLong {
                kind: NameKind::Stream,
                len,
            });
        }
        match A::NAME.char_indices().find(|(_, c)| c.is_control()) {
            Some((at, character)) => Err(NameError::ControlCharacter {
                kind: NameKind::Stream,
                character,
                at,
            }),
            None => Ok(()),
        }
    }

    /// Whether aggregate `id` exists.
    ///
    /// # Errors
    ///
    /// The store's error.
    pub async fn exists(&self, id: &str) -> Result<bool, RepoError> {
        let stream = self.checked_stream(id)?;
        match &self.backend {
            Backend::EventSourced { events, .. } => Ok(events.has_stream(&stream).await?),
            Backend::StateBased { states, .. } => Ok(states.load_state(&stream).await?.is_some()),
        }
    }

    /// Loads aggregate `id`, which must exist: for a service that reads an aggregate outside
    /// its runtime, where `?` answers a missing one [`Response::NotFound`].
    ///
    /// # Errors
    ///
    /// [`RepoError::NotFound`] when it does not exist; otherwise as [`load`](Self::load).
    ///
    /// # Examples
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # use switchyard_aggregates::Aggregate;
    /// # #[derive(Default)] struct Counter { total: u64 }
    /// # #[derive(Clone, Serialize, Deserialize)] enum CounterEvent { Added(u64) }
    /// # impl Aggregate for Counter {
    /// #     type Event = CounterEvent;
    /// #     const NAME: &'static str = "counter";
    /// #     fn apply(&mut self, e: &CounterEvent) { let CounterEvent::Added(n) = e; self.total += n; }
    /// # }
    /// use switchyard_aggregates::repo::Repo;
    /// use switchyard_aggregates::store::MemoryStore;
    /// use switchyard_aggregates::RepoError;
    /// use switchyard_messaging::{IntoResponse, Message, Response};
    ///
    /// async fn total(msg: Message, repo: &Repo<Counter>) -> Result<Message, RepoError> {
    ///     let counter = repo.load_existing(msg.aggregate_meta().id.as_deref().unwrap_or("")).await?;
    ///     Ok(msg.ok_with(&counter.state.total))
    /// }
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let repo = Repo::<Counter>::event_sourced(MemoryStore::new());
    /// let missing = total(Message::new("total").with_aggregate_id("c9"), &repo).await;
    /// assert_eq!(missing.unwrap_err().into_response(), Response::NotFound { id: "c9".into() });
    /// # });
    /// ```
    pub async fn load_existing(&self, id: &str) -> Result<AggregateState<A>, RepoError> {
        self.load(id).await?.ok_or_else(|| RepoError::NotFound {
            id: id.to_owned(),
            stream: self.stream_name(id),
        })
    }

    /// Loads aggregate `id`: `None` when it does not exist.
    ///
    /// # Errors
    ///
    /// The store's error; [`RepoError::EventDecode`] for an event that does not decode, and
    /// [`RepoError::Upcast`] for one of another schema version that cannot be upcast.
    pub async fn load(&self, id: &str) -> Result<Option<AggregateState<A>>, RepoError> {
        let span = tracing::debug_span!("switchyard.aggregate.load", aggregate = A::NAME, id);
        self.load_in_span(id).instrument(span).await
    }

    async fn load_in_span(&self, id: &str) -> Result<Option<AggregateState<A>>, RepoError> {
        let stream = self.checked_stream(id)?;
        match &self.backend {
            Backend::StateBased { states, codec } => {
                let Some(stored) = states.load_state(&stream).await? else {
                    return Ok(None);
                };
                self.decode_stored(&stream, codec, &stored.data).map(Some)
            }
            Backend::EventSourced { events, snapshots } => {
                if !events.has_stream(&stream).await? {
                    return Ok(None);
                }
                let from_snapshot = match snapshots {
                    Some((store, _, codec)) => self.snapshot_state(&stream, store, codec).await?,
                    None => None,
                };
                if let Some(state) = from_snapshot {
                    if let Some(state) = self.replay(id, &stream, state, true).await? {
                        return Ok(Some(state));
                    }
                    tracing::info!(stream, "snapshot predates a deletion; replaying the stream");
                }
                let fresh = AggregateState::new(self.processed_capacity);
                self.replay(id, &stream, fresh, false).await
            }
        }
    }

    /// A stored state decoded, holding this repo's window of processed ids.
    fn decode_stored(
        &self,
        stream: &str,
        codec: &StateCodec<A>,
        data: &[u8],
    ) -> Result<AggregateState<A>, RepoError> {
        let mut state = (codec.decode)(data).map_err(|e| RepoError::Codec {
            stream: stream.to_owned(),
            reason: ErrorChain(&e).to_string(),
        })?;
        state.processed.set_capacity(self.processed_capacity);
        Ok(state)
    }

    /// Brings `state` of aggregate `id` up to the store: folds the events recorded after its
    /// version (event-sourced), or takes the stored state if it is at another version
    /// (state-based). Returns the state and whether the store had moved on.
    pub(crate) async fn catch_up(
        &self,
        id: &str,
        state: AggregateState<A>,
    ) -> Result<(AggregateState<A>, bool), RepoError> {
        let stream = self.checked_stream(id)?;
        let before = state.version;
        match &self.backend {
            Backend::EventSourced { .. } => {
                match self.replay(id, &stream, state, false).await? {
                    Some(state) => {
                        let moved = state.version != before;
                        Ok((state, moved))
                    }
                    // Only a replay from a snapshot answers `None`; should one ever come here,
                    // a full load is the safe answer.
                    None => {
                        let loaded = self.load_in_span(id).await?;
                        let fresh = AggregateState::new(self.processed_capacity);
                        Ok((loaded.unwrap_or(fresh), true))
                    }
                }
            }
            Backend::StateBased { states, codec } => match states.load_state(&stream).await? {
                Some(stored) if stored.version != before => {
                    Ok((self.decode_stored(&stream, codec, &stored.data)?, true))
                }
                _ => Ok((state, false)),
            },
        }
    }

    /// Folds the stream's events after `state` into it. With `from_snapshot`, the event at the
    /// snapshot's own version must still be visible, or `None` is answered: a soft delete since
    /// the snapshot hid it, so the snapshot describes a deleted life of the stream.
    async fn replay(
        &self,
        id: &str,
        stream: &str,
        mut state: AggregateState<A>,
        from_snapshot: bool,
    ) -> Result<Option<AggregateState<A>>, RepoError> {
        let Backend::EventSourced { events, .. } = &self.backend else {
            return Ok(Some(state));
        };
        let from = if from_snapshot {
            state.version
        } else {
            state.version + 1
        };
        let mut pages = events.read_stream(stream, from, self.page_size);
        let mut first = from_snapshot;
        // The window keeps the last ids only: the replay follows the last messages, and the
        // window is built from them once, at the end.
        let mut tail = window::Tail::new(self.processed_capacity);
        while let Some(page) = pages.next().await {
            for recorded in page? {
                if first {
                    first = false;
                    if recorded.version != state.version {
                        return Ok(None);
                    }
                    continue;
                }
                let recorded = self.upcasters.decode(recorded)?;
                state.apply_events([&recorded.event], Some(recorded.version));
                tail.push(&recorded.metadata, recorded.version);
            }
        }
        if first {
            // Nothing visible at or after the snapshot's version.
            return Ok(None);
        }
        tail.remember(id, &mut state.processed);
        Ok(Some(state))
    }

    async fn snapshot_state(
        &self,
        stream: &str,
        store: &Arc<dyn SnapshotStore>,
        codec: &StateCodec<A>,
    ) -> Result<Option<AggregateState<A>>, RepoError> {
        let Some(snapshot) = store.load_snapshot(stream).await? else {
            return Ok(None);
        };
        if snapshot.schema_version != A::STATE_SCHEMA_VERSION {
            tracing::info!(
                stream,
                found = snapshot.schema_version,
                expected = A::STATE_SCHEMA_VERSION,
                "snapshot of another schema version ignored; replaying the stream"
            );
            return Ok(None);
        }
        match (codec.decode)(&snapshot.data) {
            Ok(mut state) => {
                state.processed.set_capacity(self.processed_capacity);
                Ok(Some(state))
            }
            Err(error) => {
                tracing::warn!(stream, error = %error, "snapshot does not decode; replaying the stream");
                Ok(None)
            }
        }
    }

    /// Records `events` decided on `state` for the message `cause`, and applies them to
    /// `state`. Event-sourced: appends with the version `state` is at, then applies, then saves a
    /// snapshot if one is due (its failure is logged, not returned). State-based: applies, then
    /// saves the state expecting the previous version. Returns the new version.
    ///
    /// # Errors
    ///
    /// [`RepoError::Conflict`] when another writer was first. On any error `state` must be
    /// reloaded: in state-based mode the events were already applied to it.
    pub async fn commit(
        &self,
        id: &str,
        state: &mut AggregateState<A>,
        events: Vec<A::Event>,
        cause: &Message,
        user_metadata: std::collections::BTreeMap<String, String>,
    ) -> Result<i64, RepoError> {
        let before = state.version;
        let stream = self.checked_stream(id)?;
        let appended = self
            .record(id, &stream, state, &events, cause, user_metadata)
            .await?;
        self.snapshot_if_due(id, before, state).await;
        Ok(appended.version)
    }

    /// [`commit`](Self::commit) without the snapshot: the runtime takes that apart, outside the
    /// commit's timeout. `stream` is aggregate `id`'s, checked (the runtime builds it once per
    /// loaded aggregate). Also returns the global position of the last event appended, when
    /// the event store reports it (never in state-based mode).
    pub(crate) async fn record(
        &self,
        id: &str,
        stream: &str,
        state: &mut AggregateState<A>,
        events: &[A::Event],
        cause: &Message,
        user_metadata: std::collections::BTreeMap<String, String>,
    ) -> Result<Appended, RepoError> {
        let before = state.version;
        match &self.backend {
            Backend::EventSourced { events: store, .. } => {
                let mut encoded = Vec::with_capacity(events.len());
                for event in events {
                    let data = codec::encode_to_bytes(event).map_err(|e| RepoError::Codec {
                        stream: stream.to_owned(),
                        reason: format!("event does not encode: {}", ErrorChain(&e)),
                    })?;
                    let event_type = A::event_type(event);
                    names::check(NameKind::EventType, event_type)?;
                    encoded.push(NewEvent {
                        event_type: event_type.into(),
                        schema_version: A::EVENT_SCHEMA_VERSION,
                        data,
                    });
                }
                let metadata = EventMetadata {
                    message_id: cause.id().to_owned(),
                    correlation_id: cause.correlation_id().to_owned(),
                    causation_id: cause.causation_id().to_owned(),
                    user: user_metadata,
                };
                check_message_ids(&metadata)?;
                let span = tracing::debug_span!(
                    "switchyard.aggregate.append",
                    aggregate = A::NAME,
                    id,
                    events = encoded.len()
                );
                let appended = store
                    .append_at(stream, expected(before), encoded, metadata)
                    .instrument(span)
                    .await
                    .map_err(|e| RepoError::from_append(e, before))?;
                state.apply_events(events, Some(appended.version));
                Ok(appended)
            }
            Backend::StateBased { states, codec } => {
                state.apply_events(events, None);
                let data = (codec.encode)(state).map_err(|e| RepoError::Codec {
                    stream: stream.to_owned(),
                    reason: format!("state does not encode: {}", ErrorChain(&e)),
                })?;
                let stored = StoredState {
                    version: state.version,
                    schema_version: A::STATE_SCHEMA_VERSION,
                    data: data.into(),
                };
                states
                    .save_state(stream, stored, expected(before))
                    .await
                    .map_err(|e| RepoError::from_append(e, before))?;
                Ok(Appended {
                    version: state.version,
                    position: None,
                })
            }
        }
    }

    /// Saves a snapshot of `state` if the events since version `before` reached a multiple of
    /// the snapshot interval (event-sourced mode with snapshots on; nothing otherwise). A
    /// snapshot only speeds loading up: failing to take one is logged, never an error.
    pub(crate) async fn snapshot_if_due(&self, id: &str, before: i64, state: &AggregateState<A>) {
        let Backend::EventSourced {
            snapshots: Some((store, _, codec)),
            ..
        } = &self.backend
        else {
            return;
        };
        if self.snapshot_due(before, state.version) {
            let span = tracing::debug_span!(
                "switchyard.aggregate.snapshot",
                aggregate = A::NAME,
                id,
                version = state.version
            );
            self.save_snapshot(&self.stream_name(id), state, store, codec)
                .instrument(span)
                .await;
        }
    }

    /// Whether moving from version `before` to `after` reaches a multiple of the snapshot
    /// interval (never without snapshots).
    pub(crate) fn snapshot_due(&self, before: i64, after: i64) -> bool {
        let Backend::EventSourced {
            snapshots: Some((_, every, _)),
            ..
        } = &self.backend
        else {
            return false;
        };
        let every = i64::try_from(*every).unwrap_or(i64::MAX);
        (before + 1) / every != (after + 1) / every
    }

    async fn save_snapshot(
        &self,
        stream: &str,
        state: &AggregateState<A>,
        store: &Arc<dyn SnapshotStore>,
        codec: &StateCodec<A>,
    ) {
        let data = match (codec.encode)(state) {
            Ok(data) => data,
            Err(error) => {
                tracing::warn!(stream, error = %error, "snapshot does not encode");
                return;
            }
        };
        let snapshot = StoredState {
            version: state.version,
            schema_version: A::STATE_SCHEMA_VERSION,
            data: data.into(),
        };
        if let Err(error) = store.save_snapshot(stream, snapshot).await {
            tracing::warn!(stream, error = %error, "snapshot not saved");
        }
    }

    /// The version at which message `message_id` recorded events on aggregate `id`, looked up
    /// in the store (event-sourced mode; state-based aggregates keep their ids in the state).
    /// An empty message id names no message in particular and is never found.
    ///
    /// # Errors
    ///
    /// The store's error.
    pub async fn find_message(&self, id: &str, message_id: &str) -> Result<Option<i64>, RepoError> {
        if message_id.is_empty() {
            return Ok(None);
        }
        match &self.backend {
            Backend::EventSourced { events, .. } => Ok(events
                .find_message(&self.checked_stream(id)?, message_id)
                .await?),
            Backend::StateBased { .. } => Ok(None),
        }
    }

    /// The answer message `message_id` got when it recorded events on aggregate `id`, as far
    /// as the store tells: `Created` if its events started the stream, whichever service it
    /// went to, else `OkAt`, at the version of its last event. `None` when it recorded nothing.
    pub(crate) async fn first_answer(
        &self,
        id: &str,
        message_id: &str,
    ) -> Result<Option<Response>, RepoError> {
        let Some(version) = self.find_message(id, message_id).await? else {
            return Ok(None);
        };
        self.duplicate_answer(id, message_id, version)
            .await
            .map(Some)
    }

    /// The answer message `message_id` got when its events, the last at `version`, were
    /// recorded on aggregate `id`: `Created` if they started the stream, else `OkAt`.
    pub(crate) async fn duplicate_answer(
        &self,
        id: &str,
        message_id: &str,
        version: i64,
    ) -> Result<Response, RepoError> {
        // Its last event is the first of the stream, or else the stream's first event tells
        // (one more read, only for a message recorded before the in-memory window).
        let started = version == 0 || self.first_event_is_from(id, message_id).await?;
        Ok(replayed_response(id, version, started))
    }

    /// Whether the first visible event of aggregate `id` is its version 0, recorded by
    /// `message_id`.
    async fn first_event_is_from(&self, id: &str, message_id: &str) -> Result<bool, RepoError> {
        let Backend::EventSourced { events, .. } = &self.backend else {
            return Ok(false);
        };
        let stream = self.checked_stream(id)?;
        let mut pages = events.read_stream(&stream, 0, 1);
        let Some(page) = pages.next().await else {
            return Ok(false);
        };
        Ok(page?
            .first()
            .is_some_and(|first| first.version == 0 && first.metadata.message_id == message_id))
    }

    /// Deletes aggregate `id` if it is at `expected`.
    ///
    /// Event-sourced: deletes its stream (see [`DeleteMode`]); a hard delete first removes its
    /// snapshot from the snapshot store, so a stream created again never starts from its former
    /// life's state (a soft-deleted stream's snapshot is recognised as stale when loading). If
    /// the stream delete then fails, the snapshot is gone all the same, which only makes the
    /// next load replay the whole stream. State-based: removes the stored state in either mode
    /// (there is no history to hide), and the aggregate can be created again.
    ///
    /// # Errors
    ///
    /// [`RepoError::Conflict`] when the aggregate is not at `expected`; the store's error.
    pub async fn delete(
        &self,
        id: &str,
        mode: DeleteMode,
        expected: ExpectedVersion,
    ) -> Result<(), RepoError> {
        let stream = self.checked_stream(id)?;
        let expected_version = match expected {
            ExpectedVersion::Exactly(v) => v,
            ExpectedVersion::NoStream | ExpectedVersion::Any => -1,
        };
        match &self.backend {
            Backend::EventSourced { events, snapshots } => {
                if mode == DeleteMode::Hard
                    && let Some((snapshots, _, _)) = snapshots
                {
                    snapshots.delete_snapshot(&stream).await?;
                }
                events
                    .delete_stream(&stream, mode, expected)
                    .await
                    .map_err(|e| RepoError::from_append(e, expected_version))
            }
            Backend::StateBased { states, .. } => states
                .delete_state(&stream, expected)
                .await
                .map_err(|e| RepoError::from_append(e, expected_version)),
        }
    }
}

/// Checks the ids an append records against the rule every store shares.
///
/// The three kinds share one rule (any id up to the same length, empty allowed, no control
/// character), so an id equal to one already checked is not scanned again: a conversation's
/// first message is its own correlation and cause, and each scan decodes the id character by
/// character (about 2 % of a sequential command's time when all three were scanned).
fn check_message_ids(metadata: &EventMetadata) -> Result<(), NameError> {
    let EventMetadata {
        message_id,
        correlation_id,
        causation_id,
        ..
    } = metadata;
    names::check(NameKind::MessageId, message_id)?;
    if correlation_id != message_id {
        names::check(NameKind::CorrelationId, correlation_id)?;
    }
    if causation_id != message_id && causation_id != correlation_id {
        names::check(NameKind::CausationId, causation_id)?;
    }
    Ok(())
}

/// The response a message got the first time, as far as its recorded events tell: `Created` if
/// they started the stream, else `OkAt` (a result payload is not stored, so it is not repeated).
pub(crate) fn replayed_response(id: &str, version: i64, started_stream: bool) -> Response {
    if started_stream {
        Response::Created {
            id: id.to_owned(),
            version: Some(version),
        }
    } else {
        Response::OkAt {
            payload: None,
            version,
        }
    }
}

#[cfg(test)]
mod message_id_tests {
    use super::*;

    fn metadata(message: &str, correlation: &str, causation: &str) -> EventMetadata {
        EventMetadata {
            message_id: message.to_owned(),
            correlation_id: correlation.to_owned(),
            causation_id: causation.to_owned(),
            user: Default::default(),
        }
    }

    fn refused_kind(metadata: &EventMetadata) -> Option<NameKind> {
        match check_message_ids(metadata) {
            Ok(()) => None,
            Err(NameError::ControlCharacter { kind, .. }) => Some(kind),
            Err(other) => panic!("unexpected refusal: {other}"),
        }
    }

    #[test]
    fn each_id_that_breaks_the_rule_is_refused_under_its_own_kind_also_when_others_repeat() {
        let (good, bad, worse) = ("m-1", "m\u{1}", "m\u{2}");
        assert_eq!(refused_kind(&metadata(good, good, good)), None);
        assert_eq!(
            refused_kind(&metadata(bad, bad, bad)),
            Some(NameKind::MessageId)
        );
        assert_eq!(
            refused_kind(&metadata(good, bad, bad)),
            Some(NameKind::CorrelationId)
        );
        assert_eq!(
            refused_kind(&metadata(good, good, bad)),
            Some(NameKind::CausationId)
        );
        assert_eq!(
            refused_kind(&metadata(good, bad, worse)),
            Some(NameKind::CorrelationId)
        );
        assert_eq!(
            refused_kind(&metadata(good, "c-1", worse)),
            Some(NameKind::CausationId)
        );
    }
}
