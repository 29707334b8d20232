//! Following the stores' global order: catch up in pages, then follow live commits.
//!
//! A [`Subscription`] reads the global order of any
//! [`GlobalReader`](switchyard_aggregates::store::GlobalReader) from where it
//! [starts](Start), a page at a time, and hands the events out one by one, in strictly
//! increasing position. Once a read comes back short it is caught up, and waits: on a store
//! that wakes it ([`GlobalReader::watch_head`]: the memory store after each append, SQLite's
//! writer after each commit, PostgreSQL through `LISTEN/NOTIFY`) it reads again as soon as a
//! commit lands; on others it polls. Either way it reads through the store's own order, so an
//! event is never skipped nor handed out twice, and positions may have gaps.
//!
//! The consumer pulls: a subscription reads a page only when the last one is handed out, so
//! a slow consumer slows its own reading, holds at most one page, and never holds up writers.

mod builder;
#[cfg(feature = "conformance")]
pub mod conformance;
mod error;
mod filter;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use switchyard_aggregates::store::{GlobalReader, IntoShared, RecordedEvent, StoreError};
use tokio::sync::watch;

pub use self::builder::{DEFAULT_PAGE_SIZE, DEFAULT_POLL_INTERVAL, Start, SubscriptionBuilder};
pub use self::error::SubscriptionError;
use self::filter::Filter;

/// A consumer's place in the global order: hands out the events after it, in order, catching
/// up in pages and then following live commits. Made by [`Subscription::builder`].
///
/// Guarantees, on any store that keeps the
/// [`GlobalReader`](switchyard_aggregates::store::GlobalReader) contract:
///
/// - **In order, exactly once**: each event [`next`](Self::next) hands out has a greater
///   position than the one before; no event of the order between them that the filter lets
///   through is left out (on PostgreSQL too, where an older transaction may commit last: the
///   store's reads wait for it).
/// - **Bounded**: it holds at most one page ([`buffered`](Self::buffered) ≤ the page size).
///   It reads only when asked for an event, so it never reads ahead of a slow consumer and
///   never holds up a writer.
/// - **Live without a polling delay** on stores that wake it: a commit wakes a waiting
///   [`next`](Self::next), which reads the new events at once.
///
/// The subscription stops when dropped; it starts no task of its own.
///
/// # Examples
///
/// ```
/// use switchyard_aggregates::store::{EventAppender, EventMetadata, ExpectedVersion, MemoryStore, NewEvent};
/// use switchyard_projections::Subscription;
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let store = MemoryStore::new();
/// let event = |t: &str| NewEvent { event_type: t.to_owned().into(), schema_version: 1, data: vec![].into() };
/// store.append("account-1", ExpectedVersion::Any, vec![event("opened")], EventMetadata::default()).await?;
/// store.append("order-1", ExpectedVersion::Any, vec![event("placed")], EventMetadata::default()).await?;
///
/// let mut accounts = Subscription::builder(store.clone()).aggregate_type("account").build().await?;
/// // Catches up...
/// assert_eq!(&*accounts.next().await?.event_type, "opened");
/// // ...then follows what is committed next.
/// store.append("account-1", ExpectedVersion::Any, vec![event("deposited")], EventMetadata::default()).await?;
/// let live = accounts.next().await?;
/// assert_eq!((&*live.stream, &*live.event_type), ("account-1", "deposited"));
/// // Save `accounts.position()` to resume later with `.after(position)`.
/// assert_eq!(accounts.position(), live.position);
/// # Ok::<_, Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
pub struct Subscription {
    reader: Arc<dyn GlobalReader>,
    filter: Filter,
    page_size: usize,
    /// Every event up to here was handed out or filtered out.
    position: u64,
    /// The events read and not yet handed out, in order, all above `position`.
    page: VecDeque<RecordedEvent>,
    /// The last read came back short: the next one waits for a commit first.
    caught_up: bool,
    wake: Wake,
    poll_interval: Duration,
}

/// How a caught-up subscription learns that there may be more.
enum Wake {
    /// The store's head, published after each commit.
    Watch(watch::Receiver<u64>),
    /// No wake-up: read again after the poll interval.
    Poll,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("position", &self.position)
            .field("filter", &self.filter)
            .field("buffered", &self.page.len())
            .field("caught_up", &self.caught_up)
            .field("woken", &matches!(self.wake, Wake::Watch(_)))
            .finish_non_exhaustive()
    }
}

impl Subscription {
    /// Sets up a subscription to `reader`'s global order: a store by value, an `Arc` of one,
    /// an `Arc<dyn GlobalReader>` or an `Arc<dyn EventStore>`.
    pub fn builder(reader: impl IntoShared<dyn GlobalReader>) -> SubscriptionBuilder {
        SubscriptionBuilder::new(reader)
    }

    /// A subscription standing at `position`.
    fn new(
        reader: Arc<dyn GlobalReader>,
        wake: Option<watch::Receiver<u64>>,
        position: u64,
        filter: Filter,
        page_size: usize,
        poll_interval: Duration,
    ) -> Self {
        let wake = match wake {
            Some(head) => Wake::Watch(head),
            None => Wake::Poll,
        };
        Self {
            reader,
            filter,
            page_size,
            position,
            page: VecDeque::new(),
            caught_up: false,
            wake,
            poll_interval,
        }
    }

    /// The next event the filter lets through, after [`position`](Self::position): at once
    /// when one is buffered or committed, else once one is committed. It never ends by
    /// itself.
    ///
    /// Cancel-safe: dropping the future (a `select!` that took another branch, a timeout)
    /// loses nothing; the next call goes on from the same place.
    ///
    /// # Errors
    ///
    /// [`SubscriptionError::Read`] when the store fails. The subscription stays where it was,
    /// so calling again retries.
    pub async fn next(&mut self) -> Result<RecordedEvent, SubscriptionError> {
        loop {
            if let Some(event) = self.take_buffered() {
                return Ok(event);
            }
            if self.caught_up {
                self.wait().await;
                // Woken: read now, and again at once should this read fail.
                self.caught_up = false;
            }
            self.read_page().await?;
        }
    }

    /// Up to `max` events (at least 1) the filter lets through, after
    /// [`position`](Self::position), in order: those already read, without waiting for more
    /// once there is one. Waits as [`next`](Self::next) does while there is nothing new.
    ///
    /// The batch may be **empty** when a read found only events the filter leaves out: the
    /// position moved past them all the same, so a consumer keeping a checkpoint can record it
    /// (and a caller waiting for one of those positions learns it was passed).
    ///
    /// Cancel-safe, as [`next`](Self::next) is.
    ///
    /// # Errors
    ///
    /// As [`next`](Self::next).
    pub async fn next_batch(
        &mut self,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, SubscriptionError> {
        let max = max.max(1);
        loop {
            let start = self.position;
            let batch = match self.take_whole_page(max) {
                Some(page) => page,
                None => std::iter::from_fn(|| self.take_buffered())
                    .take(max)
                    .collect(),
            };
            if !batch.is_empty() || self.position != start {
                return Ok(batch);
            }
            if self.caught_up {
                self.wait().await;
                self.caught_up = false;
            }
            self.read_page().await?;
        }
    }

    /// The position the subscription stands at: every event up to it was handed out or
    /// filtered out, none after it was. Saved as a checkpoint, it resumes a new subscription
    /// ([`SubscriptionBuilder::after`]) with nothing skipped or repeated.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// How many events are read and not yet handed out (or filtered out): at most the page
    /// size, the subscription's whole buffer.
    pub fn buffered(&self) -> usize {
        self.page.len()
    }

    /// Whether the subscription has handed out everything its last read found, and that read
    /// reached the end of the order: what was committed before that read is behind it.
    pub fn is_caught_up(&self) -> bool {
        self.caught_up && self.page.is_empty()
    }

    /// Whether the store wakes this subscription after each commit; `false`: it polls.
    pub fn is_woken_by_store(&self) -> bool {
        matches!(self.wake, Wake::Watch(_))
    }

    /// The subscription as a never-ending [`Stream`] of what [`next`](Self::next) returns.
    pub fn into_stream(
        self,
    ) -> impl Stream<Item = Result<RecordedEvent, SubscriptionError>> + Send {
        futures::stream::unfold(self, |mut subscription| async move {
            let item = subscription.next().await;
            Some((item, subscription))
        })
    }

    /// The next buffered event the filter lets through, moving past those it does not.
    fn take_buffered(&mut self) -> Option<RecordedEvent> {
        while let Some(event) = self.page.pop_front() {
            if event.position <= self.position {
                // A store breaking its order: handing it out would break ours.
                tracing::warn!(
                    event.position,
                    subscription.position = self.position,
                    "the store returned an event at or below the subscription's position; skipped"
                );
                continue;
            }
            self.position = event.position;
            if self.filter.matches(&event) {
                return Some(event);
            }
        }
        None
    }

    /// The whole buffered page, when it fits in `max` and every event in it would be handed
    /// out (in increasing positions above ours, all let through by the filter): handed over
    /// as it is, where taking the events one by one would move each again (a catch-up's
    /// profile on the memory store showed those moves at a fifth of a runner's own time).
    fn take_whole_page(&mut self, max: usize) -> Option<Vec<RecordedEvent>> {
        if self.page.is_empty() || self.page.len() > max {
            return None;
        }
        let mut last = self.position;
        for event in &self.page {
            if event.position <= last || !self.filter.matches(event) {
                return None;
            }
            last = event.position;
        }
        self.position = last;
        Some(Vec::from(std::mem::take(&mut self.page)))
    }

    /// Waits until the store may hold more: a commit's wake-up, or the poll interval.
    async fn wait(&mut self) {
        match &mut self.wake {
            Wake::Watch(head) => {
                if head.changed().await.is_err() {
                    // No more wake-ups from this store: poll from now on.
                    tracing::debug!("the store's wake-up ended; polling");
                    self.wake = Wake::Poll;
                }
            }
            Wake::Poll => tokio::time::sleep(self.poll_interval).await,
        }
    }

    /// Reads the page after `position`.
    async fn read_page(&mut self) -> Result<(), SubscriptionError> {
        let Some(from) = self.position.checked_add(1) else {
            self.caught_up = true;
            return Ok(());
        };
        if let Wake::Watch(head) = &mut self.wake {
            // Seen before the read: a commit during it changes the head again and wakes the
            // next wait, so it is never missed.
            head.borrow_and_update();
        }
        let page = self
            .reader
            .read_all(from, self.page_size)
            .await
            .map_err(|source| self.failed(source))?;
        self.caught_up = page.len() < self.page_size;
        if self.page.is_empty() {
            // Taken over as it is, without moving its events.
            self.page = VecDeque::from(page);
        } else {
            self.page.extend(page);
        }
        Ok(())
    }

    fn failed(&self, source: StoreError) -> SubscriptionError {
        SubscriptionError::Read {
            after: self.position,
            source,
        }
    }
}

// Handed across tasks.
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Subscription>();
    assert_send_sync::<SubscriptionBuilder>();
};
