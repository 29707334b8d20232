//! Setting a subscription up: where it starts, what it hands out, how it reads.

use std::sync::Arc;
use std::time::Duration;

use switchyard_aggregates::Aggregate;
use switchyard_aggregates::store::{GlobalReader, IntoShared};

use super::Subscription;
use super::error::SubscriptionError;
use super::filter::Filter;

/// The events read per page unless [`SubscriptionBuilder::page_size`] says otherwise: large
/// enough that a catch-up costs one store round trip per few hundred events, small enough that
/// a page of typical events (a few hundred bytes each) stays well under a megabyte.
pub const DEFAULT_PAGE_SIZE: usize = 512;

/// How often a subscription reads when its store cannot wake it, unless
/// [`SubscriptionBuilder::poll_interval`] says otherwise: the live latency on such a store is
/// at most this, for one read per interval while idle.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Where a subscription starts in the global order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Start {
    /// At the first event: everything the store holds, then what comes.
    #[default]
    Origin,
    /// After the store's head when the subscription is built: only what is committed from
    /// then on (on PostgreSQL an event committed just before may still be handed out, when an
    /// older transaction held it back; see [`GlobalReader::head`]).
    Head,
    /// After this position: the events with a greater one. Resume a consumer from the
    /// position it saved ([`Subscription::position`]).
    After(u64),
}

/// Sets a [`Subscription`] up; [`build`](Self::build) makes it. Made by
/// [`Subscription::builder`].
///
/// By default a subscription starts at the origin, hands out every event, reads pages of
/// [`DEFAULT_PAGE_SIZE`] and polls every [`DEFAULT_POLL_INTERVAL`] on stores that cannot
/// wake it.
#[must_use = "a builder does nothing until `build` is called"]
#[derive(Clone)]
pub struct SubscriptionBuilder {
    reader: Arc<dyn GlobalReader>,
    start: Start,
    filter: Filter,
    page_size: usize,
    poll_interval: Duration,
}

impl std::fmt::Debug for SubscriptionBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubscriptionBuilder")
            .field("start", &self.start)
            .field("filter", &self.filter)
            .field("page_size", &self.page_size)
            .field("poll_interval", &self.poll_interval)
            .finish_non_exhaustive()
    }
}

impl SubscriptionBuilder {
    pub(super) fn new(reader: impl IntoShared<dyn GlobalReader>) -> Self {
        Self {
            reader: reader.into_shared(),
            start: Start::Origin,
            filter: Filter::default(),
            page_size: DEFAULT_PAGE_SIZE,
            poll_interval: DEFAULT_POLL_INTERVAL,
        }
    }

    /// Starts at `start`.
    pub fn start(mut self, start: Start) -> Self {
        self.start = start;
        self
    }

    /// Starts at the first event (the default): [`Start::Origin`].
    pub fn from_origin(self) -> Self {
        self.start(Start::Origin)
    }

    /// Starts after the store's head: [`Start::Head`].
    pub fn from_head(self) -> Self {
        self.start(Start::Head)
    }

    /// Starts after `position`: [`Start::After`].
    pub fn after(self, position: u64) -> Self {
        self.start(Start::After(position))
    }

    /// Hands out the events of the aggregate type named `name`: the streams `"{name}-{id}"`,
    /// as [`Repo`](switchyard_aggregates::Repo) names them. Aggregate types and
    /// [streams](Self::stream) add up: an event of any of them is handed out.
    ///
    /// The rule is the stream's prefix: a type named `bank` also takes the streams of a type
    /// named `bank-account` (`bank-account-7` starts with `bank-`).
    pub fn aggregate_type(mut self, name: &str) -> Self {
        self.filter.add_aggregate_type(name);
        self
    }

    /// Hands out the events of aggregate type `A`: [`aggregate_type`](Self::aggregate_type)
    /// with its [`NAME`](Aggregate::NAME).
    pub fn aggregate<A: Aggregate>(self) -> Self {
        self.aggregate_type(A::NAME)
    }

    /// Hands out the events of the stream `stream`. Streams and
    /// [aggregate types](Self::aggregate_type) add up.
    pub fn stream(mut self, stream: &str) -> Self {
        self.filter.add_stream(stream);
        self
    }

    /// Hands out events of type `event_type` only. Several event types add up; with any, only
    /// those types are handed out, of the streams the other rules choose.
    pub fn event_type(mut self, event_type: &str) -> Self {
        self.filter.add_event_type(event_type);
        self
    }

    /// Reads up to `page_size` events at a time (at least 1). A subscription holds at most
    /// one page, so this bounds its memory.
    pub fn page_size(mut self, page_size: usize) -> Self {
        self.page_size = page_size.max(1);
        self
    }

    /// Reads every `interval` when caught up, on a store that cannot wake subscriptions
    /// ([`GlobalReader::watch_head`] is `None`). Stores that wake them are never polled.
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// The subscription. It reads no event yet: the first [`Subscription::next`] does.
    ///
    /// Asks the store for its wake-up ([`GlobalReader::watch_head`]) first, so every commit
    /// after `build` returns wakes the subscription (a store may start a listener task for it:
    /// PostgreSQL does), then, to start at the head, for the head
    /// ([`GlobalReader::head`]); other starts ask the store nothing more.
    ///
    /// # Errors
    ///
    /// [`SubscriptionError::Read`] when the head could not be read.
    pub async fn build(self) -> Result<Subscription, SubscriptionError> {
        let wake = self.reader.watch_head();
        let position = match self.start {
            Start::Origin => 0,
            Start::After(position) => position,
            Start::Head => self
                .reader
                .head()
                .await
                .map_err(|source| SubscriptionError::Read { after: 0, source })?,
        };
        Ok(Subscription::new(
            self.reader,
            wake,
            position,
            self.filter,
            self.page_size,
            self.poll_interval,
        ))
    }
}
