//! The aggregate trait and the shape of its commands.

use serde::Serialize;
use serde::de::DeserializeOwned;
use smallvec::{SmallVec, smallvec};
use switchyard_messaging::{Message, Payload, Response};

/// A consistency boundary whose state is folded from its events.
///
/// The state starts as `Default` (version -1) and changes only through [`apply`](Aggregate::apply)
/// of recorded events. Commands are plain functions of the current state and the message (see
/// [`Command`]) that either produce events or reject the call.
///
/// # Examples
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use switchyard_aggregates::Aggregate;
///
/// #[derive(Default)]
/// struct Counter { total: u64 }
///
/// #[derive(Clone, Serialize, Deserialize)]
/// enum CounterEvent { Added(u64) }
///
/// impl Aggregate for Counter {
///     type Event = CounterEvent;
///     const NAME: &'static str = "counter";
///     fn apply(&mut self, event: &CounterEvent) {
///         match event { CounterEvent::Added(n) => self.total += n }
///     }
/// }
/// ```
pub trait Aggregate: Default + Send + Sync + 'static {
    /// What happened to the aggregate. Stored through the codec (bincode), so it must not
    /// contain self-describing types such as `serde_json::Value`.
    type Event: Serialize + DeserializeOwned + Clone + Send + Sync + 'static;

    /// The stream prefix: the events of aggregate `id` live in stream `"{NAME}-{id}"`.
    const NAME: &'static str;

    /// The schema version written beside each event, for upcasting later.
    const EVENT_SCHEMA_VERSION: u32 = 1;

    /// The schema version of snapshots and stored states. Bump it when the state's layout
    /// changes: snapshots of another version are ignored and the stream replayed.
    const STATE_SCHEMA_VERSION: u32 = 1;

    /// Folds one event into the state.
    fn apply(&mut self, event: &Self::Event);

    /// The event's type name, recorded with it in the store's `event_type` column.
    ///
    /// The default is the event's serde name: the variant name for an enum (`Deposited` for
    /// `AccountEvent::Deposited { .. }`, or its `#[serde(rename = "..")]`), the type name for a
    /// named struct. An event serde does not name (a number, a string, a tuple) is recorded under
    /// the aggregate's [`NAME`](Aggregate::NAME). The default reads no field and allocates
    /// nothing: serde's names are `&'static str`.
    ///
    /// Internally or adjacently tagged and untagged enums (`#[serde(tag = "..")]`, with or
    /// without `content`; `#[serde(untagged)]`) would get one name for every variant, but they
    /// cannot be events: the stores' binary codec cannot read them back. The
    /// [`test_support`](crate::test_support) scenarios fail on an event that does not survive
    /// the codec, and on two variants recorded under one name (as an override of this method
    /// may do).
    ///
    /// The name is part of the stored format: readers of the global order (projections, other
    /// services) select events by it, so renaming a variant renames the events recorded from
    /// then on, while the rows already stored keep the old name. To keep a name across a rename,
    /// put `#[serde(rename = "OldName")]` on the variant (the binary format stores variants by
    /// index, so only the name changes), or override this method. Module paths play no part:
    /// moving the type to another module changes nothing.
    ///
    /// # Examples
    ///
    /// ```
    /// use serde::{Deserialize, Serialize};
    /// use switchyard_aggregates::Aggregate;
    ///
    /// #[derive(Default)]
    /// struct Account { balance: u64 }
    ///
    /// #[derive(Clone, Serialize, Deserialize)]
    /// enum AccountEvent { Opened, Credited { amount: u64 } }
    ///
    /// impl Aggregate for Account {
    ///     type Event = AccountEvent;
    ///     const NAME: &'static str = "account";
    ///     fn apply(&mut self, event: &AccountEvent) {
    ///         if let AccountEvent::Credited { amount } = event {
    ///             self.balance += amount;
    ///         }
    ///     }
    ///     // `Credited` was called `Deposited` when the first rows were stored.
    ///     fn event_type(event: &AccountEvent) -> &'static str {
    ///         match event {
    ///             AccountEvent::Opened => "Opened",
    ///             AccountEvent::Credited { .. } => "Deposited",
    ///         }
    ///     }
    /// }
    ///
    /// assert_eq!(Account::event_type(&AccountEvent::Credited { amount: 1 }), "Deposited");
    /// ```
    fn event_type(event: &Self::Event) -> &'static str {
        crate::event_name::serde_name(event).unwrap_or(Self::NAME)
    }

    /// Runs after the command's events were appended and applied.
    fn commit(&self, message: &Message) {
        let _ = message;
    }

    /// Runs after a command was rejected, or ran as a dry run: nothing was persisted.
    fn rollback(&self, message: &Message) {
        let _ = message;
    }
}

/// What a command decided: the events to record (possibly none) and an optional result for the
/// caller.
#[derive(Clone, Debug)]
#[must_use]
pub struct Events<E> {
    /// One event, the usual decision, is kept inline: deciding it allocates nothing.
    pub(crate) events: SmallVec<[E; 1]>,
    pub(crate) reply: Option<Payload>,
}

impl<E> Events<E> {
    /// Nothing to record; the caller gets `OkAt` with the current version.
    pub fn none() -> Self {
        Self {
            events: SmallVec::new(),
            reply: None,
        }
    }

    /// One event.
    pub fn one(event: E) -> Self {
        Self {
            events: smallvec![event],
            reply: None,
        }
    }

    /// Several events, recorded in order, atomically.
    pub fn many(events: impl IntoIterator<Item = E>) -> Self {
        Self {
            events: events.into_iter().collect(),
            reply: None,
        }
    }

    /// Adds a result for the caller, encoded in the binary format. A value that cannot be
    /// encoded is replaced by its encoding error as text.
    pub fn reply_with<T: Serialize + ?Sized>(mut self, result: &T) -> Self {
        self.reply =
            Some(Payload::encode(result).unwrap_or_else(|error| Payload::text(error.to_string())));
        self
    }

    /// The events decided.
    pub fn events(&self) -> &[E] {
        &self.events
    }

    /// The result for the caller, if any.
    pub fn reply(&self) -> Option<&Payload> {
        self.reply.as_ref()
    }
}

/// What a command returns: events to record, or a rejection answered to the caller as is.
///
/// A rejection follows the one rule of service handlers ([`IntoResponse`]): `?` turns any
/// `IntoResponse` error into the [`Response`] it answers, so `msg.request()?` rejects an
/// unreadable request with `ValidationError`, as it does in a handler, and an error type of
/// your own chooses its response. A `Response` is returned as it is.
///
/// # Examples
///
/// ```
/// use switchyard_aggregates::{CommandResult, Events};
/// use switchyard_messaging::{IntoResponse, Message, Response};
///
/// struct Frozen;
///
/// impl IntoResponse for Frozen {
///     fn into_response(self) -> Response {
///         Response::forbidden("the account is frozen")
///     }
/// }
///
/// fn withdraw(frozen: bool, msg: &Message) -> CommandResult<u64> {
///     let amount: u64 = msg.request()?; // unreadable: `ValidationError`
///     if frozen {
///         return Err(Frozen.into()); // the type's own choice: `Forbidden`
///     }
///     if amount == 0 {
///         return Err(Response::error("nothing to withdraw")); // a response, as it is
///     }
///     Ok(Events::one(amount))
/// }
///
/// let msg = Message::new("withdraw").with_request(&5_u64);
/// assert!(withdraw(false, &msg).is_ok());
/// assert_eq!(withdraw(true, &msg).unwrap_err(), Response::forbidden("the account is frozen"));
/// assert!(matches!(
///     withdraw(false, &Message::new("withdraw")),
///     Err(Response::ValidationError(_))
/// ));
/// ```
///
/// [`IntoResponse`]: switchyard_messaging::IntoResponse
pub type CommandResult<E> = Result<Events<E>, Response>;

/// A command of aggregate `A`: a function of the current state and the message.
///
/// Implemented for every `Fn(&A, &Message) -> CommandResult<A::Event>`; commands are pure, so
/// the runtime can run them again on fresh state after a version conflict.
pub trait Command<A: Aggregate>: Send + Sync + 'static {
    /// Decides on the command.
    fn decide(&self, state: &A, message: &Message) -> CommandResult<A::Event>;
}

impl<A, F> Command<A> for F
where
    A: Aggregate,
    F: Fn(&A, &Message) -> CommandResult<A::Event> + Send + Sync + 'static,
{
    fn decide(&self, state: &A, message: &Message) -> CommandResult<A::Event> {
        self(state, message)
    }
}

/// A request type that names the aggregate it addresses.
///
/// A binary request ([`Message::with_request`]) cannot be searched by field name, so a handler
/// with default settings does not find an id inside it. Either build the message with
/// [`to_message`](HasAggregateId::to_message), which puts the id on the message itself (where
/// every handler, and the cluster's placement, looks first), or have the handler decode the
/// request with [`MessageHandler::id_from_request`](crate::MessageHandler::id_from_request).
///
/// # Examples
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use switchyard_aggregates::HasAggregateId;
///
/// #[derive(Serialize, Deserialize)]
/// struct Deposit { account: String, amount: u64 }
///
/// impl HasAggregateId for Deposit {
///     fn aggregate_id(&self) -> Option<String> {
///         Some(self.account.clone())
///     }
/// }
///
/// let message = Deposit { account: "acc-1".into(), amount: 5 }.to_message("deposit");
/// assert_eq!(message.aggregate_meta().id.as_deref(), Some("acc-1"));
/// assert_eq!(message.request::<Deposit>().unwrap().amount, 5);
/// ```
pub trait HasAggregateId {
    /// The aggregate id, if the request carries one.
    fn aggregate_id(&self) -> Option<String>;

    /// A new message to `service` carrying this request in the binary format
    /// ([`Message::with_request`]) and, when [`aggregate_id`](HasAggregateId::aggregate_id)
    /// gives one, its aggregate id ([`Message::with_aggregate_id`]).
    fn to_message(&self, service: &str) -> Message
    where
        Self: Serialize,
    {
        let message = Message::new(service).with_request(self);
        match self.aggregate_id() {
            Some(id) => message.with_aggregate_id(id),
            None => message,
        }
    }
}
