//! Reading an aggregate's events back, decoded, with what the store recorded about them.

use std::sync::Arc;
use std::time::SystemTime;

use futures::stream::{self, BoxStream};
use futures::{StreamExt, TryStreamExt};
use switchyard_messaging::codec;

use super::{Backend, Repo, RepoError};
use crate::Aggregate;
use crate::store::{EventMetadata, EventStore, RecordedEvent};

/// An event of an aggregate, decoded as its `Event` type, with what the store recorded about it.
///
/// Made by [`Repo::events`], [`Repo::events_page`] and [`Repo::event_stream`]. Cheap to clone
/// apart from the event: its text and metadata are shared.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct DecodedEvent<E> {
    /// The event.
    pub event: E,
    /// The stream it belongs to: `"{NAME}-{id}"`.
    pub stream: Arc<str>,
    /// Its version in the stream, from 0.
    pub version: i64,
    /// Its position in the global order.
    pub position: u64,
    /// The name it was recorded under ([`Aggregate::event_type`] when it was appended).
    pub event_type: Arc<str>,
    /// The schema version it was recorded with ([`Aggregate::EVENT_SCHEMA_VERSION`]); an older
    /// one was upcast to the current version ([`Upcasters`](super::Upcasters)) before decoding.
    pub schema_version: u32,
    /// The message, correlation and causation ids of the command that recorded it, and the
    /// user metadata.
    pub metadata: Arc<EventMetadata>,
    /// When the store recorded it.
    pub recorded_at: SystemTime,
}

impl<E: serde::de::DeserializeOwned> DecodedEvent<E> {
    /// Decodes `recorded`, or says which event of which stream does not decode.
    ///
    /// # Errors
    ///
    /// [`RepoError::EventDecode`], naming the event's stream, version and type.
    pub fn decode(recorded: RecordedEvent) -> Result<Self, RepoError> {
        let event = codec::decode(&recorded.data).map_err(|source| RepoError::EventDecode {
            stream: recorded.stream.to_string(),
            version: recorded.version,
            event_type: recorded.event_type.to_string(),
            source,
        })?;
        Ok(Self {
            event,
            stream: recorded.stream,
            version: recorded.version,
            position: recorded.position,
            event_type: recorded.event_type,
            schema_version: recorded.schema_version,
            metadata: recorded.metadata,
            recorded_at: recorded.recorded_at,
        })
    }
}

impl<E> DecodedEvent<E> {
    /// The same event with its decoded value turned by `f` (into a projection's own event
    /// type, say); what the store recorded about it is kept.
    pub fn map<F>(self, f: impl FnOnce(E) -> F) -> DecodedEvent<F> {
        DecodedEvent {
            event: f(self.event),
            stream: self.stream,
            version: self.version,
            position: self.position,
            event_type: self.event_type,
            schema_version: self.schema_version,
            metadata: self.metadata,
            recorded_at: self.recorded_at,
        }
    }
}

type Decoded<A> = DecodedEvent<<A as Aggregate>::Event>;

impl<A: Aggregate> Repo<A> {
    /// Every event of aggregate `id`, in version order, decoded. Empty for an aggregate that
    /// does not exist or was deleted. Reads the whole stream into memory: use
    /// [`events_page`](Self::events_page) or [`event_stream`](Self::event_stream) for long ones.
    ///
    /// # Examples
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # use switchyard_aggregates::Aggregate;
    /// # #[derive(Default)] struct Counter { total: u64 }
    /// # #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)] enum CounterEvent { Added(u64) }
    /// # impl Aggregate for Counter {
    /// #     type Event = CounterEvent;
    /// #     const NAME: &'static str = "counter";
    /// #     fn apply(&mut self, e: &CounterEvent) { let CounterEvent::Added(n) = e; self.total += n; }
    /// # }
    /// use switchyard_aggregates::repo::Repo;
    /// use switchyard_aggregates::store::MemoryStore;
    /// use switchyard_aggregates::AggregateState;
    /// use switchyard_messaging::Message;
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let repo = Repo::<Counter>::event_sourced(MemoryStore::new());
    /// let mut state = AggregateState::default();
    /// let cause = Message::new("add").with_id("m-1");
    /// repo.commit("c1", &mut state, vec![CounterEvent::Added(2), CounterEvent::Added(3)], &cause, Default::default()).await.unwrap();
    ///
    /// let events = repo.events("c1").await.unwrap();
    /// assert_eq!(events[1].event, CounterEvent::Added(3));
    /// assert_eq!((events[1].version, &*events[1].event_type), (1, "Added"));
    /// assert_eq!(events[1].metadata.message_id, "m-1");
    /// # });
    /// ```
    ///
    /// # Errors
    ///
    /// [`RepoError::EventDecode`] for an event that does not decode as `A::Event`, naming its
    /// stream and version; [`RepoError::Upcast`] for one of another schema version that the
    /// repo's [`Upcasters`](super::Upcasters) cannot upcast; [`RepoError::NoEvents`] for a
    /// state-based repo; the store's error.
    pub async fn events(&self, id: &str) -> Result<Vec<Decoded<A>>, RepoError> {
        self.event_stream(id, 0).try_collect().await
    }

    /// Up to `limit` events of aggregate `id` from version `from_version` on, in version order,
    /// decoded: `limit` of them unless the stream ends first. The next page starts at the last
    /// event's version plus one; a page shorter than `limit` (or empty) is the end of the
    /// stream. `limit` 0 reads nothing.
    ///
    /// # Errors
    ///
    /// As [`events`](Self::events).
    pub async fn events_page(
        &self,
        id: &str,
        from_version: i64,
        limit: usize,
    ) -> Result<Vec<Decoded<A>>, RepoError> {
        let events = self.event_store()?;
        let stream = self.checked_stream(id)?;
        let decode = |recorded| self.upcasters.decode(recorded);
        let (page, _) = read_up_to(events, decode, &stream, from_version, limit).await?;
        Ok(page)
    }

    /// The events of aggregate `id` from version `from_version` on, decoded, read lazily in
    /// pages of the repo's page size ([`with_page_size`](Self::with_page_size)). The stream
    /// owns what it needs, so it may outlive the repo.
    ///
    /// # Errors
    ///
    /// Each item as in [`events`](Self::events); the stream ends after the first error.
    pub fn event_stream(
        &self,
        id: &str,
        from_version: i64,
    ) -> BoxStream<'static, Result<Decoded<A>, RepoError>> {
        let checked = self
            .event_store()
            .and_then(|events| Ok((events.clone(), self.checked_stream(id)?)));
        let (events, stream_name) = match checked {
            Ok(checked) => checked,
            Err(error) => return stream::once(async { Err(error) }).boxed(),
        };
        let stream_name: Arc<str> = stream_name.into();
        let upcasters = self.upcasters.clone();
        let page_size = self.page_size.max(1);
        // Each step reads one page's worth from the store; the store's own pages may be shorter.
        // (A read borrows the stream's name, so one read cannot span steps of a stream that
        // owns its name: a step that filled its page starts a new read after it.)
        stream::try_unfold(Some(from_version), move |next| {
            let events = events.clone();
            let stream_name = stream_name.clone();
            let upcasters = upcasters.clone();
            let decode = move |recorded| upcasters.decode(recorded);
            async move {
                let Some(from) = next else {
                    return Ok::<_, RepoError>(None);
                };
                let (page, more) =
                    read_up_to(&events, decode, &stream_name, from, page_size).await?;
                let Some(last) = page.last() else {
                    return Ok(None);
                };
                let next = more.then_some(last.version + 1);
                Ok(Some((
                    stream::iter(page.into_iter().map(Ok::<_, RepoError>)),
                    next,
                )))
            }
        })
        .try_flatten()
        .boxed()
    }

    fn event_store(&self) -> Result<&Arc<dyn EventStore>, RepoError> {
        match &self.backend {
            Backend::EventSourced { events, .. } => Ok(events),
            Backend::StateBased { .. } => Err(RepoError::NoEvents { aggregate: A::NAME }),
        }
    }
}

/// Up to `limit` events of `stream` from `from` on, each decoded by `decode` (through the repo's
/// upcasters), in as many of the store's pages as it takes; and whether the stream may go on
/// after them (`false` once the store's read ended).
async fn read_up_to<E>(
    events: &Arc<dyn EventStore>,
    decode: impl Fn(RecordedEvent) -> Result<DecodedEvent<E>, RepoError>,
    stream: &str,
    from: i64,
    limit: usize,
) -> Result<(Vec<DecodedEvent<E>>, bool), RepoError> {
    let mut decoded = Vec::new();
    if limit == 0 {
        return Ok((decoded, true));
    }
    let mut pages = events.read_stream(stream, from, limit);
    while decoded.len() < limit {
        let Some(page) = pages.next().await else {
            return Ok((decoded, false));
        };
        let wanted = limit - decoded.len();
        for recorded in page?.into_iter().take(wanted) {
            decoded.push(decode(recorded)?);
        }
    }
    Ok((decoded, true))
}
