//! Upcasting: events recorded with an older schema version, brought up to date as they are read.
//!
//! Every event is stored with the [`EVENT_SCHEMA_VERSION`](Aggregate::EVENT_SCHEMA_VERSION) of
//! the code that recorded it, and stored events are never rewritten. When an event's layout
//! changes, the aggregate's version goes up by one and a step from the old version is
//! registered: a function from the old event (decoded as a type kept for that purpose, often in
//! a `mod v1`) to the next version's. Reading an event recorded at version 1 by code at version
//! 3 runs the steps from 1 and from 2, in turn; an event at the current version runs none (one
//! comparison). The [`Repo`](super::Repo) runs them on each of its reads (loading, catching up,
//! [`events`](super::Repo::events) and the like), and a reader of the global order runs the same
//! [`Upcasters`] on the [`RecordedEvent`]s it gets ([`Upcasters::decode`], [`Upcasters::upcast`]).
//!
//! Snapshots are not upcast: a snapshot of another
//! [`STATE_SCHEMA_VERSION`](Aggregate::STATE_SCHEMA_VERSION) is ignored and the stream replayed,
//! its events upcast.

mod chain;
mod error;

use std::marker::PhantomData;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use switchyard_messaging::codec;

use self::chain::{Chain, Step, Takes};
pub use self::error::{EventLocation, StepError, UpcastError};
use super::{DecodedEvent, RepoError};
use crate::Aggregate;
use crate::store::RecordedEvent;

/// The chain of upcasters of aggregate `A`: the steps that bring an event recorded with an older
/// schema version to [`A::EVENT_SCHEMA_VERSION`](Aggregate::EVENT_SCHEMA_VERSION), one version
/// at a time.
///
/// A step is registered for the version it starts from, for every event type
/// ([`step`](Self::step)) or for the events recorded under one name
/// ([`step_for`](Self::step_for), which wins over a step for every type). It decodes the event
/// as its old type, and encodes what it returns as the next version's. Keys are the names the
/// events were recorded under, at every step: a step that renames a variant does not change the
/// name later steps are looked up by.
///
/// Reading an event never skips it: a hole in the chain, a step that fails, or an event newer
/// than the code is an [`UpcastError`] naming the event and the versions.
///
/// Register the chain on the repo ([`Repo::with_upcasters`](super::Repo::with_upcasters)), and
/// hand a clone (cheap: the steps are shared) to the readers of the global order.
///
/// # Examples
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use switchyard_aggregates::store::{EventAppender, EventMetadata, ExpectedVersion, GlobalReader, MemoryStore, NewEvent};
/// use switchyard_aggregates::{Aggregate, Upcasters};
/// use switchyard_messaging::codec;
///
/// /// The events as version 1 recorded them: a deposit was a bare amount.
/// mod v1 {
///     #[derive(serde::Serialize, serde::Deserialize)]
///     pub enum AccountEvent { Opened, Deposited(u64) }
/// }
///
/// /// Version 2 (today's): deposits carry a currency.
/// #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
/// enum AccountEvent { Opened, Deposited { amount: u64, currency: String } }
///
/// #[derive(Default)]
/// struct Account { balance: u64 }
///
/// impl Aggregate for Account {
///     type Event = AccountEvent;
///     const NAME: &'static str = "account";
///     const EVENT_SCHEMA_VERSION: u32 = 2;
///     fn apply(&mut self, event: &AccountEvent) {
///         if let AccountEvent::Deposited { amount, .. } = event {
///             self.balance += amount;
///         }
///     }
/// }
///
/// let upcasters = Upcasters::<Account>::new().step(1, |old: v1::AccountEvent| match old {
///     v1::AccountEvent::Opened => AccountEvent::Opened,
///     v1::AccountEvent::Deposited(amount) => AccountEvent::Deposited { amount, currency: "EUR".into() },
/// });
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// // A deposit recorded by version 1 of the code...
/// let store = MemoryStore::new();
/// let old = NewEvent {
///     event_type: "Deposited".into(),
///     schema_version: 1,
///     data: codec::encode(&v1::AccountEvent::Deposited(5))?.into(),
/// };
/// store.append("account-1", ExpectedVersion::Any, vec![old], EventMetadata::default()).await?;
///
/// // ...read from the global order by today's.
/// let recorded = store.read_all(1, 10).await?.remove(0);
/// let decoded = upcasters.decode(recorded)?;
/// assert_eq!(decoded.event, AccountEvent::Deposited { amount: 5, currency: "EUR".into() });
/// assert_eq!(decoded.schema_version, 1); // as it was recorded
/// # Ok::<_, Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
pub struct Upcasters<A> {
    chain: Arc<Chain>,
    aggregate: PhantomData<fn() -> A>,
}

impl<A> Clone for Upcasters<A> {
    fn clone(&self) -> Self {
        Self {
            chain: self.chain.clone(),
            aggregate: PhantomData,
        }
    }
}

impl<A: Aggregate> Default for Upcasters<A> {
    fn default() -> Self {
        Self::new()
    }
}

impl<A> std::fmt::Debug for Upcasters<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upcasters")
            .field("steps", &self.chain)
            .finish()
    }
}

impl<A: Aggregate> Upcasters<A> {
    /// No steps: events recorded at the current version read as they are, any other is an
    /// [`UpcastError`].
    pub fn new() -> Self {
        Self {
            chain: Arc::default(),
            aggregate: PhantomData,
        }
    }

    /// Adds the step from schema version `from` to `from + 1` for events of every type that
    /// has no step of its own from `from` ([`step_for`](Self::step_for)): the event is decoded
    /// as `Old`, and what `upcast` returns is encoded as the event at `from + 1`.
    ///
    /// # Panics
    ///
    /// When a step from `from` for every type is registered already, or when `from` is not
    /// below [`A::EVENT_SCHEMA_VERSION`](Aggregate::EVENT_SCHEMA_VERSION) (the step could
    /// never run): both are mistakes in the program, found as it sets up.
    #[must_use]
    pub fn step<Old, New>(
        self,
        from: u32,
        upcast: impl Fn(Old) -> New + Send + Sync + 'static,
    ) -> Self
    where
        Old: DeserializeOwned,
        New: Serialize,
    {
        self.add(Takes::Every, from, infallible(upcast))
    }

    /// Adds the step from schema version `from` to `from + 1` for the events recorded under
    /// the name `event_type` (see [`Aggregate::event_type`]); it wins over a step for every
    /// type from the same version. As [`step`](Self::step) otherwise.
    ///
    /// # Panics
    ///
    /// As [`step`](Self::step), for a second step for `event_type` from `from`.
    #[must_use]
    pub fn step_for<Old, New>(
        self,
        event_type: &str,
        from: u32,
        upcast: impl Fn(Old) -> New + Send + Sync + 'static,
    ) -> Self
    where
        Old: DeserializeOwned,
        New: Serialize,
    {
        self.add(Takes::Type(event_type), from, infallible(upcast))
    }

    /// [`step`](Self::step) with a step that may refuse an event: its error is the source of
    /// the [`UpcastError::Failed`] the read fails with ([`StepError::Refused`]).
    ///
    /// # Panics
    ///
    /// As [`step`](Self::step).
    #[must_use]
    pub fn try_step<Old, New, E>(
        self,
        from: u32,
        upcast: impl Fn(Old) -> Result<New, E> + Send + Sync + 'static,
    ) -> Self
    where
        Old: DeserializeOwned,
        New: Serialize,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        self.add(Takes::Every, from, fallible(upcast))
    }

    /// [`step_for`](Self::step_for) with a step that may refuse an event, as in
    /// [`try_step`](Self::try_step).
    ///
    /// # Panics
    ///
    /// As [`step_for`](Self::step_for).
    #[must_use]
    pub fn try_step_for<Old, New, E>(
        self,
        event_type: &str,
        from: u32,
        upcast: impl Fn(Old) -> Result<New, E> + Send + Sync + 'static,
    ) -> Self
    where
        Old: DeserializeOwned,
        New: Serialize,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        self.add(Takes::Type(event_type), from, fallible(upcast))
    }

    fn add(mut self, takes: Takes<'_>, from: u32, step: Step) -> Self {
        add_step(
            Arc::make_mut(&mut self.chain),
            A::NAME,
            A::EVENT_SCHEMA_VERSION,
            takes,
            from,
            step,
        );
        self
    }

    /// `recorded` brought to [`A::EVENT_SCHEMA_VERSION`](Aggregate::EVENT_SCHEMA_VERSION):
    /// its data is the current version's encoding and its `schema_version` the current
    /// version. An event at the current version is returned as it is. `recorded` must be an
    /// event of `A` (of a stream `"{NAME}-{id}"`, such as a subscription filtered by `A`'s
    /// aggregate type hands out).
    ///
    /// # Errors
    ///
    /// [`UpcastError::MissingStep`] when no step takes the event on from some version,
    /// [`UpcastError::Failed`] when a step fails, [`UpcastError::Newer`] when it was recorded
    /// at a version above the current one.
    pub fn upcast(&self, recorded: RecordedEvent) -> Result<RecordedEvent, UpcastError> {
        if recorded.schema_version == A::EVENT_SCHEMA_VERSION {
            return Ok(recorded);
        }
        let data = self.chain.upcast_data(&recorded, A::EVENT_SCHEMA_VERSION)?;
        Ok(RecordedEvent {
            data,
            schema_version: A::EVENT_SCHEMA_VERSION,
            ..recorded
        })
    }

    /// `recorded` brought to the current version ([`upcast`](Self::upcast)) and decoded as
    /// `A::Event`, as the repo reads it. Its `schema_version` stays the one it was recorded
    /// with.
    ///
    /// # Errors
    ///
    /// [`RepoError::Upcast`] when it cannot be upcast (see [`upcast`](Self::upcast));
    /// [`RepoError::EventDecode`] when the result does not decode as `A::Event`.
    pub fn decode(&self, recorded: RecordedEvent) -> Result<DecodedEvent<A::Event>, RepoError> {
        if recorded.schema_version == A::EVENT_SCHEMA_VERSION {
            return DecodedEvent::decode(recorded);
        }
        let data = self.chain.upcast_data(&recorded, A::EVENT_SCHEMA_VERSION)?;
        DecodedEvent::decode(RecordedEvent { data, ..recorded })
    }
}

/// Registers `step`, or panics naming the mistake (see [`Upcasters::step`]).
fn add_step(
    chain: &mut Chain,
    aggregate: &str,
    current: u32,
    takes: Takes<'_>,
    from: u32,
    step: Step,
) {
    assert!(
        from < current,
        "upcaster of `{aggregate}` from schema version {from}: the aggregate's \
         EVENT_SCHEMA_VERSION is {current}, so a step must start below it"
    );
    assert!(
        chain.add(takes, from, step),
        "upcaster of `{aggregate}` from schema version {from} for {takes} registered twice"
    );
}

/// A step of an `upcast` that cannot fail.
fn infallible<Old, New>(upcast: impl Fn(Old) -> New + Send + Sync + 'static) -> Step
where
    Old: DeserializeOwned,
    New: Serialize,
{
    fallible(move |old| Ok::<_, std::convert::Infallible>(upcast(old)))
}

/// A step: decode as `Old`, upcast, encode `New`.
fn fallible<Old, New, E>(upcast: impl Fn(Old) -> Result<New, E> + Send + Sync + 'static) -> Step
where
    Old: DeserializeOwned,
    New: Serialize,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    Arc::new(move |data: &[u8]| {
        let old = codec::decode(data).map_err(StepError::Decode)?;
        let new = upcast(old).map_err(|error| StepError::Refused(error.into()))?;
        codec::encode(&new).map_err(StepError::Encode)
    })
}
