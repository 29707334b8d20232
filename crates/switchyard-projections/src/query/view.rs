//! A read model kept in memory ([`View`], [`InMemory`]) and read by query handlers
//! ([`ReadModel`]).

use std::ops::Deref;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard};

use switchyard_aggregates::DecodedEvent;
use switchyard_messaging::Message;
use tokio::time::Instant;

use super::{QueryError, QueryMessage};
use crate::{BoxError, Projection, ProjectionRunner, Watermark};

/// A read model held in memory: plain state folded from events, one at a time. Kept up to
/// date by an [`InMemory`] projection and read by query handlers through a [`ReadModel`].
///
/// `Default` is the empty read model: what a process starts from, and what a rebuild resets
/// to.
pub trait View: Default + Send + Sync + 'static {
    /// The events it reads: one aggregate's `Event` type, or an enum of several (see
    /// [`Projection::Event`]).
    type Event: Send + Sync + 'static;

    /// Folds one event in. Each event is applied once per process, in global order:
    /// [`InMemory`] skips the events of a retried batch it applied already. An error leaves the
    /// events before it applied, and the runner retries the batch from the failing event.
    ///
    /// # Errors
    ///
    /// Whatever the view cannot apply; the runner retries and reports it
    /// ([`RunnerError::Projection`](crate::RunnerError::Projection)).
    fn apply(&mut self, event: &DecodedEvent<Self::Event>) -> Result<(), BoxError>;
}

/// The projection keeping a [`View`] in memory: run it with a
/// [`ProjectionRunner`], then [`serve`](Self::serve) its view to query handlers. Its clones
/// share one view.
///
/// It is an [in-memory projection](Projection::IN_MEMORY): its runner replays the order from
/// the origin when it starts, whatever checkpoint an earlier process saved. Each batch is
/// applied under one write lock, so a query sees whole batches, never half of one. The view
/// records the position of the last event it applied, so a batch delivered again (at least once)
/// applies each event once.
///
/// An in-memory view belongs to its process. To keep one on each node of a cluster, give each
/// node's runner a name of its own (`"balances@node-a"`) or a
/// [`MemoryCheckpointStore`](crate::MemoryCheckpointStore): runners sharing a name in one
/// checkpoint store take turns (one lease), and only the active one's view moves.
pub struct InMemory<V>(Arc<RwLock<Kept<V>>>);

/// The view and the position of the last event folded into it.
#[derive(Default)]
struct Kept<V> {
    view: V,
    through: u64,
}

impl<V> Clone for InMemory<V> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<V: View> Default for InMemory<V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<V> std::fmt::Debug for InMemory<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InMemory")
            .field("view", &std::any::type_name::<V>())
            .field("through", &self.kept().through)
            .finish()
    }
}

impl<V: View> InMemory<V> {
    /// An empty view.
    pub fn new() -> Self {
        Self(Arc::new(RwLock::new(Kept::default())))
    }
}

impl<V> InMemory<V> {
    /// The handle query handlers read the view through, waiting on `runner`'s progress: put it
    /// in a router's state ([`Router::with_state`](switchyard_messaging::Router::with_state)).
    /// `runner` runs this projection (or a clone of it).
    pub fn serve(&self, runner: &ProjectionRunner<Self>) -> ReadModel<V>
    where
        V: View,
    {
        ReadModel {
            view: self.clone(),
            watermark: runner.watermark(),
        }
    }

    /// The view as it is now. A panic in [`View::apply`] stops the runner but leaves the view
    /// readable: every event before the panicking one is in it.
    fn kept(&self) -> RwLockReadGuard<'_, Kept<V>> {
        self.0.read().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<V: View> Projection for InMemory<V> {
    type Event = V::Event;

    const IN_MEMORY: bool = true;

    async fn apply(&mut self, batch: &[DecodedEvent<V::Event>]) -> Result<(), BoxError> {
        let mut kept = self.0.write().unwrap_or_else(PoisonError::into_inner);
        let through = kept.through;
        for event in batch.iter().filter(|e| e.position > through) {
            kept.view.apply(event)?;
            kept.through = event.position;
        }
        Ok(())
    }

    async fn reset(&mut self) -> Result<(), BoxError> {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = Kept::default();
        Ok(())
    }
}

/// What query handlers read an in-memory [`View`] through: the view, and how far its runner
/// got, so a query can wait to see a command's effects. Cloned into each call as a router's
/// state; made by [`InMemory::serve`].
///
/// # Examples
///
/// ```
/// # use std::collections::BTreeMap;
/// # use switchyard_aggregates::DecodedEvent;
/// # use switchyard_projections::{BoxError, View};
/// # #[derive(Default)]
/// # struct Balances(BTreeMap<String, u64>);
/// # impl View for Balances {
/// #     type Event = u64;
/// #     fn apply(&mut self, _: &DecodedEvent<u64>) -> Result<(), BoxError> { Ok(()) }
/// # }
/// use switchyard_messaging::{Message, Router, State};
/// use switchyard_projections::{QueryError, ReadModel};
///
/// /// Answers an account's balance, once the read model has seen what the query asks for.
/// async fn balance(msg: Message, State(balances): State<ReadModel<Balances>>) -> Result<Message, QueryError> {
///     let account: String = msg.request()?;
///     let view = balances.read(&msg).await?;
///     Ok(msg.ok_with(&view.0.get(&account)))
/// }
///
/// fn queries(balances: ReadModel<Balances>) -> Router<ReadModel<Balances>> {
///     Router::new("balances").with_state(balances).service("balance", balance).authorize(|_| Ok(()))
/// }
/// ```
pub struct ReadModel<V> {
    view: InMemory<V>,
    watermark: Watermark,
}

impl<V> Clone for ReadModel<V> {
    fn clone(&self) -> Self {
        Self {
            view: self.view.clone(),
            watermark: self.watermark.clone(),
        }
    }
}

impl<V> std::fmt::Debug for ReadModel<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadModel")
            .field("view", &self.view)
            .field("watermark", &self.watermark)
            .finish()
    }
}

impl<V: View> ReadModel<V> {
    /// The view as `query` asks to see it: at once (eventual consistency) when it carries no
    /// [`ReadAt`](crate::ReadAt), otherwise once the runner has processed the position it
    /// names, waiting up to its `within`.
    ///
    /// Do not hold the guard across an `.await`: it holds the view's read lock, which the
    /// runner's next batch waits for (and it is not `Send`, so a handler doing so does not
    /// compile).
    ///
    /// # Errors
    ///
    /// [`QueryError::Unreadable`] when the query's `ReadAt` cannot be read;
    /// [`QueryError::NotCaughtUp`] when the read model did not reach its position in time, or
    /// its runner stopped first.
    pub async fn read(&self, query: &Message) -> Result<ViewGuard<'_, V>, QueryError> {
        if let Some(read_at) = query.read_at()? {
            let deadline = Instant::now() + read_at.within;
            self.watermark
                .wait_for(read_at.position, deadline)
                .await
                .map_err(|source| QueryError::NotCaughtUp {
                    service: query.service().to_owned(),
                    message_id: query.id().to_owned(),
                    within: read_at.within,
                    source,
                })?;
        }
        Ok(self.read_now())
    }

    /// The view as it is now, whatever the runner's progress (eventual consistency).
    pub fn read_now(&self) -> ViewGuard<'_, V> {
        ViewGuard(self.view.kept())
    }

    /// How far the view's runner got.
    pub fn watermark(&self) -> &Watermark {
        &self.watermark
    }
}

/// A [`View`] being read: derefs to it, holding its read lock until dropped. Returned by
/// [`ReadModel::read`].
pub struct ViewGuard<'a, V>(RwLockReadGuard<'a, Kept<V>>);

impl<V> Deref for ViewGuard<'_, V> {
    type Target = V;

    fn deref(&self) -> &V {
        &self.0.view
    }
}

impl<V> std::fmt::Debug for ViewGuard<'_, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ViewGuard")
            .field("through", &self.0.through)
            .finish_non_exhaustive()
    }
}
