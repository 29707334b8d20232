//! Binding router services to an aggregate type (x3m's `MessageHandler`).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use switchyard_messaging::{Format, Message, Payload, Response};

use crate::runtime::{AggregateRuntime, CommandOptions, Kind};
use crate::store::{DeleteMode, EventStore, ExpectedVersion, IntoShared, StateStore};
use crate::{Aggregate, Command, HasAggregateId, Repo, RepoError};

type Extractor = Arc<dyn Fn(&Message) -> Option<String> + Send + Sync>;

/// The future of a command service: the message, answered.
pub type CommandFuture = std::pin::Pin<Box<dyn Future<Output = Message> + Send>>;

/// One command service: the handler's settings, the command and how it addresses its aggregate.
struct Service<A: Aggregate> {
    handler: MessageHandler<A>,
    kind: Kind,
    command: Box<dyn Command<A>>,
}

/// Where a command's aggregate id comes from. `aggregate_meta.id` set by the caller always wins.
#[derive(Clone)]
enum IdSource {
    /// A field of a JSON request (bincode requests cannot be searched by name).
    Field(String),
    /// A function of the message.
    Extractor(Extractor),
}

/// Whether `on_new` names an aggregate the message names none of (see
/// [`MessageHandler::generate_missing_id`]).
#[derive(Clone, Copy, PartialEq, Eq)]
enum IdGeneration {
    /// Unless the message carries a request that is not JSON and the handler has no id rule of
    /// its own: such a request most likely names its aggregate where the handler cannot look.
    Default,
    Always,
    Never,
}

/// Turns commands of aggregate `A` into router services.
///
/// Each method returns a handler for [`Router::service`](switchyard_messaging::Router::service):
/// it finds the aggregate id, runs the command on the aggregate (on the caller's task, under
/// the aggregate's lock) and answers
/// `Created { id, version }` for a new aggregate, `OkAt { payload, version }` for an existing one,
/// or the typed `NotFound`, `AlreadyExists`, `Conflict`, `MissingId`, and `ValidationError` for
/// an id that breaks the rule every store shares (see [`names`](crate::names)), before any store
/// is asked. Builder methods return a
/// changed copy, so settings can differ per service.
///
/// Three layers serve an aggregate: a [`Repo`] persists it, an [`AggregateRuntime`] keeps the
/// live aggregates and runs their commands, and the handler makes services of commands.
/// [`MessageHandler::event_sourced`] and [`MessageHandler::state_based`] build all three with
/// default settings in one call; [`MessageHandler::new`] takes a repo (snapshots, page size), a
/// [`RuntimeBuilder`](crate::RuntimeBuilder) (idle timeout, unload rules, retries) or a runtime
/// when the defaults do not fit.
///
/// # Examples
///
/// ```
/// # use serde::{Deserialize, Serialize};
/// use switchyard_aggregates::{Aggregate, CommandResult, Events, MessageHandler};
/// use switchyard_aggregates::store::MemoryStore;
/// use switchyard_messaging::{Message, Node, Response, Router};
///
/// #[derive(Default)]
/// struct Counter { total: u64 }
/// #[derive(Clone, Serialize, Deserialize)]
/// enum CounterEvent { Added(u64) }
/// impl Aggregate for Counter {
///     type Event = CounterEvent;
///     const NAME: &'static str = "counter";
///     fn apply(&mut self, e: &CounterEvent) { let CounterEvent::Added(n) = e; self.total += n; }
/// }
///
/// fn add(_counter: &Counter, msg: &Message) -> CommandResult<CounterEvent> {
///     let amount: u64 = msg.request()?;
///     Ok(Events::one(CounterEvent::Added(amount)))
/// }
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let counters = MessageHandler::<Counter>::event_sourced(MemoryStore::new());
/// let node = Node::new("app");
/// node.register(
///     Router::new("counters")
///         .service("start", counters.on_new(add))
///         .service("add", counters.on_existing(add))
///         .authorize(|_| Ok(())),
/// )
/// .unwrap();
///
/// let created = node.dispatch(Message::new("start").with_aggregate_id("c1").with_request(&1_u64)).await;
/// assert_eq!(created.response(), Some(&Response::Created { id: "c1".into(), version: Some(0) }));
/// let added = node.dispatch(Message::new("add").with_aggregate_id("c1").with_request(&2_u64)).await;
/// assert_eq!(added.response(), Some(&Response::OkAt { payload: None, version: 1 }));
/// # });
/// ```
///
/// With snapshots and runtime settings, one layer at a time:
///
/// ```
/// # use serde::{Deserialize, Serialize};
/// # use switchyard_aggregates::Aggregate;
/// # #[derive(Default, Serialize, Deserialize)] struct Counter { total: u64 }
/// # #[derive(Clone, Serialize, Deserialize)] enum CounterEvent { Added(u64) }
/// # impl Aggregate for Counter {
/// #     type Event = CounterEvent;
/// #     const NAME: &'static str = "counter";
/// #     fn apply(&mut self, e: &CounterEvent) { let CounterEvent::Added(n) = e; self.total += n; }
/// # }
/// use std::sync::Arc;
/// use std::time::Duration;
/// use switchyard_aggregates::{AggregateRuntime, MessageHandler, Repo};
/// use switchyard_aggregates::store::MemoryStore;
///
/// let store = Arc::new(MemoryStore::new());
/// // A repo: snapshots every 100 events, in the same store.
/// let repo = Repo::<Counter>::event_sourced(store.clone()).with_snapshots(store, 100);
/// let counters = MessageHandler::new(repo.clone());
/// // A runtime builder: passivate aggregates idle for ten minutes.
/// let idle = MessageHandler::new(AggregateRuntime::builder(repo).idle_timeout(Duration::from_secs(600)));
/// # let _ = (counters, idle);
/// ```
pub struct MessageHandler<A: Aggregate> {
    runtime: AggregateRuntime<A>,
    id: IdSource,
    generate_missing_id: IdGeneration,
    options: CommandOptions,
}

impl<A: Aggregate> Clone for MessageHandler<A> {
    fn clone(&self) -> Self {
        Self {
            runtime: self.runtime.clone(),
            id: self.id.clone(),
            generate_missing_id: self.generate_missing_id,
            options: self.options.clone(),
        }
    }
}

impl<A: Aggregate> MessageHandler<A> {
    /// A handler over `runtime`: an [`AggregateRuntime`], or a [`Repo`] or
    /// [`RuntimeBuilder`](crate::RuntimeBuilder) it is built from. Ids come from the caller's
    /// `aggregate_meta.id`, else the JSON field `"id"` (see [`aggregate_id`](Self::aggregate_id)),
    /// and are derived from the message for new aggregates when missing (see
    /// [`generate_missing_id`](Self::generate_missing_id)); a 5 s commit timeout; no extra event
    /// metadata.
    pub fn new(runtime: impl Into<AggregateRuntime<A>>) -> Self {
        Self {
            runtime: runtime.into(),
            id: IdSource::Field("id".to_owned()),
            generate_missing_id: IdGeneration::Default,
            options: CommandOptions {
                commit_timeout: Duration::from_secs(5),
                metadata: Arc::new(BTreeMap::new()),
                refresh_before_read: false,
            },
        }
    }

    /// Serves an event-sourced aggregate kept in `events` (a store, or an `Arc` of one), with
    /// default settings: [`Repo::event_sourced`], then [`AggregateRuntime::new`], then
    /// [`MessageHandler::new`]. [`runtime`](Self::runtime) reaches the runtime built.
    pub fn event_sourced(events: impl IntoShared<dyn EventStore>) -> Self {
        Self::new(Repo::event_sourced(events))
    }

    /// Serves a state-based aggregate kept in `states` (a store, or an `Arc` of one), with
    /// default settings: [`Repo::state_based`], then [`AggregateRuntime::new`], then
    /// [`MessageHandler::new`].
    pub fn state_based(states: impl IntoShared<dyn StateStore>) -> Self
    where
        A: Serialize + DeserializeOwned,
    {
        Self::new(Repo::state_based(states))
    }

    /// Takes the id from this field of JSON requests.
    #[must_use]
    pub fn id_field(mut self, field: impl Into<String>) -> Self {
        self.id = IdSource::Field(field.into());
        self
    }

    /// Takes the id from the request, decoded as `T`.
    #[must_use]
    pub fn id_from_request<T: HasAggregateId + DeserializeOwned + 'static>(mut self) -> Self {
        self.id = IdSource::Extractor(Arc::new(|msg: &Message| {
            msg.request::<T>()
                .ok()
                .and_then(|request| request.aggregate_id())
        }));
        self
    }

    /// Takes the id from any function of the message.
    #[must_use]
    pub fn id_with(
        mut self,
        extractor: impl Fn(&Message) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.id = IdSource::Extractor(Arc::new(extractor));
        self
    }

    /// Whether `on_new` names the aggregate itself when the message carries no id; otherwise
    /// the caller gets `MissingId`.
    ///
    /// By default it does, except for a message whose request is binary
    /// ([`Message::with_request`]) or text while the handler has no id rule of its own
    /// ([`id_from_request`](Self::id_from_request) or [`id_with`](Self::id_with)): such a request
    /// most likely names its aggregate where the handler cannot look (a typed `Deposit { account }`
    /// sent without [`Message::with_aggregate_id`]), and a generated id would silently create an
    /// aggregate nobody addresses. That message gets `MissingId` naming the remedies. `true`
    /// generates ids for every message without one, `false` for none.
    ///
    /// The id is the message's own id (a UUIDv7 for messages made with
    /// [`Message::new`](switchyard_messaging::Message::new)), so a retried message, which keeps
    /// its id, addresses the aggregate its first attempt created and is answered as that attempt
    /// was, instead of creating a second one. A message with an empty id gets a fresh UUIDv7,
    /// and its retries are not recognised.
    #[must_use]
    pub fn generate_missing_id(mut self, generate: bool) -> Self {
        self.generate_missing_id = if generate {
            IdGeneration::Always
        } else {
            IdGeneration::Never
        };
        self
    }

    /// How long a command's append may take before the caller gets an error and the aggregate
    /// is reloaded (default 5 s). A snapshot due after the append is saved once the caller is
    /// answered, with a timeout of the same length of its own: a slow snapshot store never
    /// fails a command.
    #[must_use]
    pub fn commit_timeout(mut self, timeout: Duration) -> Self {
        self.options.commit_timeout = timeout;
        self
    }

    /// Whether a command whose decision appends nothing is checked against the store before it
    /// is answered (default: no).
    ///
    /// A decision that appends events is checked by the append itself: at a stale version it
    /// conflicts, and the runtime reloads and decides again. A decision that appends nothing (a
    /// read such as a balance query, a rejection, a dry run) is not, so a runtime whose copy of
    /// the aggregate is out of date answers it from that copy. This happens only when another
    /// process writes the same aggregate (two processes sharing one database without a cluster).
    /// The rule is one owner per aggregate: route its commands to one node with the cluster's
    /// placement, and this check is not needed.
    ///
    /// With the check on, such a decision is followed by one read of the store: the events
    /// after the cached version (event-sourced), or the stored state if newer (state-based).
    /// If the store has moved on, the aggregate catches up and the command is decided again on
    /// the fresh state, whose answer the caller gets. It costs one read per such command, and
    /// nothing for commands that append.
    #[must_use]
    pub fn refresh_before_read(mut self, refresh: bool) -> Self {
        self.options.refresh_before_read = refresh;
        self
    }

    /// User metadata recorded with every event.
    #[must_use]
    pub fn event_metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        Arc::make_mut(&mut self.options.metadata).insert(key.into(), value.into());
        self
    }

    /// The runtime commands go to.
    pub fn runtime(&self) -> &AggregateRuntime<A> {
        &self.runtime
    }

    /// The aggregate id `message` addresses, as this handler finds it (the placement helper
    /// uses the same rule). In order of precedence:
    ///
    /// 1. the message's own `aggregate_meta.id`, set by the caller with
    ///    [`Message::with_aggregate_id`] (or [`HasAggregateId::to_message`], which sets it from a
    ///    typed request): the way that works for every request format, and the one to use with
    ///    typed (binary) requests under the default settings;
    /// 2. the handler's rule: the request decoded as `T` ([`id_from_request`](Self::id_from_request)),
    ///    any function of the message ([`id_with`](Self::id_with)), or else a field of a JSON
    ///    request ([`id_field`](Self::id_field), `"id"` by default; a string or a number). A
    ///    binary request ([`Message::with_request`]) cannot be searched by field name.
    ///
    /// Without an id, `on_new` names the aggregate after the message, unless its request is
    /// binary (see [`generate_missing_id`](Self::generate_missing_id)); the other services answer
    /// `MissingId`, whose text says which sources were tried and how to provide one.
    pub fn aggregate_id(&self, message: &Message) -> Option<String> {
        if let Some(id) = &message.aggregate_meta().id {
            return Some(id.clone());
        }
        self.id_by_rule(message)
    }

    /// The aggregate id the handler's own rule finds in `message` (second in
    /// [`aggregate_id`](Self::aggregate_id)'s order).
    fn id_by_rule(&self, message: &Message) -> Option<String> {
        match &self.id {
            IdSource::Extractor(extract) => extract(message),
            IdSource::Field(field) => {
                let payload = message.payload()?;
                if payload.format() != Format::Json {
                    return None;
                }
                let json: serde_json::Value = serde_json::from_slice(payload.as_bytes()).ok()?;
                match json.get(field)? {
                    serde_json::Value::String(id) => Some(id.clone()),
                    serde_json::Value::Number(id) => Some(id.to_string()),
                    _ => None,
                }
            }
        }
    }

    /// Whether `on_new` names the aggregate `message` names none of.
    fn generates_id_for(&self, message: &Message) -> bool {
        match self.generate_missing_id {
            IdGeneration::Always => true,
            IdGeneration::Never => false,
            IdGeneration::Default => {
                let unsearchable_request = message
                    .payload()
                    .is_some_and(|payload| payload.format() != Format::Json);
                !(unsearchable_request && matches!(self.id, IdSource::Field(_)))
            }
        }
    }

    /// `MissingId` for `message`: what was tried, and how to give an id.
    fn missing_id(&self, kind: Kind, message: &Message) -> Response {
        let not_generated =
            if kind == Kind::New && self.generate_missing_id == IdGeneration::Default {
                " (a new aggregate is not named after a message with such a request unless the \
             handler is built with `generate_missing_id(true)`)"
            } else {
                ""
            };
        let tried = match (&self.id, message.payload()) {
            (IdSource::Extractor(_), _) => {
                "the handler's id rule (`id_from_request` or `id_with`) found none in the request"
                    .to_owned()
            }
            (IdSource::Field(_), None) => "the message has no request to read it from".to_owned(),
            (IdSource::Field(field), Some(payload)) if payload.format() == Format::Json => {
                format!("its JSON request has no string or number field `{field}`")
            }
            (IdSource::Field(field), Some(_)) => format!(
                "its request is binary (`Message::with_request`), whose fields cannot be searched \
                 by name, so the JSON field `{field}` was not looked for"
            ),
        };
        Response::MissingId(format!(
            "the message names no aggregate (`Message::with_aggregate_id`) and {tried}{not_generated}; set the \
             id on the message with `Message::with_aggregate_id` (or `HasAggregateId::to_message` \
             for a request type that names its aggregate), or have the handler read it from the \
             request with `MessageHandler::id_from_request::<T>()`, `id_field` or `id_with`"
        ))
    }

    /// A service that creates the aggregate: `AlreadyExists` if its stream exists or it is
    /// loaded; a command that records nothing creates nothing (`OkAt { version: -1 }`). A
    /// message without an aggregate id creates one named after the message's id, unless its
    /// request is binary and the handler has no id rule (see
    /// [`generate_missing_id`](Self::generate_missing_id)).
    pub fn on_new<C: Command<A>>(
        &self,
        command: C,
    ) -> impl Fn(Message) -> CommandFuture + Clone + Send + Sync + 'static {
        self.service(Kind::New, Box::new(command))
    }

    /// A service for an existing aggregate: `NotFound` when its stream does not exist.
    pub fn on_existing<C: Command<A>>(
        &self,
        command: C,
    ) -> impl Fn(Message) -> CommandFuture + Clone + Send + Sync + 'static {
        self.service(Kind::Existing, Box::new(command))
    }

    /// A service that creates the aggregate when its stream does not exist, and otherwise runs
    /// on it. (Only a missing stream counts: a command answering `NotFound` itself is answered
    /// as is.)
    pub fn on_maybe_new<C: Command<A>>(
        &self,
        command: C,
    ) -> impl Fn(Message) -> CommandFuture + Clone + Send + Sync + 'static {
        self.service(Kind::MaybeNew, Box::new(command))
    }

    fn service(
        &self,
        kind: Kind,
        command: Box<dyn Command<A>>,
    ) -> impl Fn(Message) -> CommandFuture + Clone + Send + Sync + 'static {
        // One shared service, so each call takes one reference rather than a copy of the
        // settings (the id field's name among them) and of the command.
        let service = Arc::new(Service {
            handler: self.clone(),
            kind,
            command,
        });
        move |message: Message| {
            let service = service.clone();
            Box::pin(async move {
                let command = (service.kind, &*service.command);
                service.handler.run(command, message).await
            }) as CommandFuture
        }
    }

    async fn run(&self, (kind, command): (Kind, &dyn Command<A>), mut message: Message) -> Message {
        // The id goes into the message, where the runtime reads it (an id the caller set is
        // there already, and is not copied).
        if message.aggregate_meta().id.is_none() {
            let id = match self.id_by_rule(&message) {
                Some(id) => id,
                None if kind == Kind::New && self.generates_id_for(&message) => {
                    if message.id().is_empty() {
                        uuid::Uuid::now_v7().to_string()
                    } else {
                        message.id().to_owned()
                    }
                }
                None => {
                    let response = self.missing_id(kind, &message);
                    return message.return_with(response);
                }
            };
            message.aggregate_meta_mut().id = Some(id);
        }
        let id = message.aggregate_meta().id.as_deref().unwrap_or_default();
        if let Err(error) = self.runtime.repo().check_id(id) {
            let response = Response::ValidationError(Payload::text(error.to_string()));
            return message.return_with(response);
        }
        self.runtime
            .execute((kind, command), message, &self.options)
            .await
    }

    /// Deletes aggregate `id`'s stream (soft or hard, if it is at `expected`) and unloads it.
    ///
    /// # Errors
    ///
    /// [`RepoError::Conflict`] when the stream is not at `expected`; the store's error.
    pub async fn delete_stream(
        &self,
        id: &str,
        mode: DeleteMode,
        expected: ExpectedVersion,
    ) -> Result<(), RepoError> {
        self.runtime.delete(id, mode, expected).await
    }
}
