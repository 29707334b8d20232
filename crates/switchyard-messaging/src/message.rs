//! The envelope every service call travels in.

mod id;
mod log_fields;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use self::id::new_message_id;
pub use self::log_fields::{LogFields, TRACE_CONTEXT_FIELD};
use crate::codec::{self, DecodeError, EncodeError};
use crate::shared_str;
use crate::{NodeId, Payload, PayloadError, Response};

/// A request to a named service, and, once answered, its response.
///
/// A message carries three ids. `id` names this message; `correlation_id` names the conversation
/// it belongs to (the id of the message that started it); `causation_id` names the message that
/// directly caused this one. Any string the caller chooses will do; by default `id` is a fresh
/// UUIDv7 (ids made on one thread strictly increase; ids of different threads are ordered by
/// their millisecond), `correlation_id` is the id and `causation_id` is the correlation id.
/// [`Message::caused_by`] builds the next message of a conversation.
///
/// Setting a response ([`ok`](Message::ok), [`error`](Message::error),
/// [`return_with`](Message::return_with), ...) halts the message: the dispatcher returns a halted
/// message untouched, so validation can answer before any service runs.
///
/// # Examples
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use switchyard_messaging::{Message, Response};
///
/// #[derive(Serialize, Deserialize)]
/// struct Deposit { account: String, amount: u64 }
///
/// let msg = Message::new("deposit")
///     .with_request(&Deposit { account: "acc-1".into(), amount: 10 })
///     .with_log_field("tenant", "acme");
/// assert_eq!(msg.correlation_id(), msg.id());
/// assert_eq!(msg.request::<Deposit>()?.amount, 10);
///
/// let next = Message::caused_by(&msg, "notify");
/// assert_eq!(next.correlation_id(), msg.correlation_id());
/// assert_eq!(next.causation_id(), msg.id());
/// assert_eq!(next.log_fields().get("tenant"), Some("acme"));
///
/// let answered = msg.ok();
/// assert!(answered.is_halted());
/// assert_eq!(answered.response(), Some(&Response::Ok));
/// # Ok::<(), switchyard_messaging::PayloadError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Message {
    /// Boxed, so a message moves as one pointer: dispatch futures hold and move messages at
    /// every step, and a 360-byte value made those moves the main cost of a local call.
    f: Box<Fields>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Fields {
    #[serde(deserialize_with = "shared_str::deserialize_recurring")]
    service: Arc<str>,
    #[serde(deserialize_with = "shared_str::deserialize_id")]
    id: Arc<str>,
    /// Decoded as the id's `Arc` when equal to it, as it was when defaulted.
    #[serde(deserialize_with = "shared_str::deserialize_related_id")]
    correlation_id: Arc<str>,
    #[serde(deserialize_with = "shared_str::deserialize_related_id")]
    causation_id: Arc<str>,
    invoked_at: SystemTime,
    dry_run: DryRun,
    request: Option<Payload>,
    assigns: BTreeMap<String, Payload>,
    response: Option<Response>,
    events: Vec<Payload>,
    aggregate_meta: AggregateMeta,
    origin_node: Option<NodeId>,
    reply_to: Option<ReplyTo>,
    log_fields: LogFields,
    halted: bool,
}

/// A message's reply without the message: everything but its request, events and response,
/// kept beside a running call to answer with when the service cannot (a timeout, a panic).
/// What every message has sits inline, a few words; what only some carry (assigns, aggregate
/// metadata, a reply address, log fields) is boxed, and only when present: keeping one beside
/// every call allocates nothing for a plain message and moves little. It becomes a [`Message`]
/// only when it answers.
pub(crate) struct ReplySkeleton {
    service: Arc<str>,
    id: Arc<str>,
    /// `None` when it is the id itself (one reference count touched, not three).
    correlation_id: Option<Arc<str>>,
    /// `None` when it is the correlation id itself.
    causation_id: Option<Arc<str>>,
    invoked_at: SystemTime,
    dry_run: DryRun,
    origin: Origin,
    extras: Option<Box<SkeletonExtras>>,
}

/// A [`ReplySkeleton`]'s origin node.
enum Origin {
    /// The node keeping the skeleton.
    Here,
    /// Another node, or none.
    Elsewhere(Option<NodeId>),
}

/// The fields of a [`ReplySkeleton`] that most messages leave empty.
struct SkeletonExtras {
    assigns: BTreeMap<String, Payload>,
    aggregate_meta: AggregateMeta,
    reply_to: Option<ReplyTo>,
    log_fields: LogFields,
}

impl ReplySkeleton {
    /// The service the call was for.
    pub(crate) fn service(&self) -> &str {
        &self.service
    }

    /// The skeleton as a message, to answer with; `here` is the node that made it.
    pub(crate) fn into_message(self, here: &NodeId) -> Message {
        let SkeletonExtras {
            assigns,
            aggregate_meta,
            reply_to,
            log_fields,
        } = self.extras.map_or_else(
            || SkeletonExtras {
                assigns: BTreeMap::new(),
                aggregate_meta: AggregateMeta::default(),
                reply_to: None,
                log_fields: LogFields::default(),
            },
            |extras| *extras,
        );
        // Shared again as they were: the ids' "defaulted" state is their sharing (see `with_id`).
        let correlation_id = self.correlation_id.unwrap_or_else(|| self.id.clone());
        let causation_id = self.causation_id.unwrap_or_else(|| correlation_id.clone());
        Message::from_fields(Fields {
            service: self.service,
            id: self.id,
            correlation_id,
            causation_id,
            invoked_at: self.invoked_at,
            dry_run: self.dry_run,
            request: None,
            assigns,
            response: None,
            events: Vec::new(),
            aggregate_meta,
            origin_node: match self.origin {
                Origin::Here => Some(here.clone()),
                Origin::Elsewhere(node) => node,
            },
            reply_to,
            log_fields,
            halted: false,
        })
    }
}

/// Whether a call should take effect, or only say whether it would succeed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DryRun {
    /// Run for real.
    #[default]
    No,
    /// Validate only: nothing is persisted and the reply says whether the call would succeed.
    Yes,
    /// As `Yes`, and the reply also carries the events the call would have produced.
    Verbose,
}

/// Where the aggregate a message addresses stands, filled in by the aggregate layer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AggregateMeta {
    /// The aggregate's id. Set by the caller, it wins over any id found in the request.
    pub id: Option<String>,
    /// The aggregate's version once a command ran.
    pub version: Option<i64>,
}

/// Where a reply to a remote call must go: the caller's node and its request id there.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ReplyTo {
    /// The node waiting for the reply.
    pub node: NodeId,
    /// The request id the waiting node matches the reply with.
    pub request_id: u64,
}

impl Message {
    /// A message for `service`, with a fresh UUIDv7 id that also serves as correlation and
    /// causation id.
    pub fn new(service: impl Into<Arc<str>>) -> Self {
        let now = SystemTime::now();
        let id = new_message_id(now);
        Self::from_fields(Fields {
            service: service.into(),
            correlation_id: id.clone(),
            causation_id: id.clone(),
            id,
            invoked_at: now,
            dry_run: DryRun::No,
            request: None,
            assigns: BTreeMap::new(),
            response: None,
            events: Vec::new(),
            aggregate_meta: AggregateMeta::default(),
            origin_node: None,
            reply_to: None,
            log_fields: LogFields::default(),
            halted: false,
        })
    }

    fn from_fields(fields: Fields) -> Self {
        Self {
            f: Box::new(fields),
        }
    }

    /// The next message of `parent`'s conversation, for `service`: a fresh id, the parent's
    /// correlation id, the parent's id as causation id, and the parent's dry-run mode, log fields
    /// and trace context.
    pub fn caused_by(parent: &Message, service: impl Into<Arc<str>>) -> Self {
        let mut message = Self::new(service);
        message.f.correlation_id = parent.f.correlation_id.clone();
        message.f.causation_id = parent.f.id.clone();
        message.f.dry_run = parent.f.dry_run;
        message.f.log_fields = parent.f.log_fields.clone();
        message
    }

    /// Replaces the id. A correlation or causation id that was only defaulted to the id follows
    /// it; one set explicitly stays.
    #[must_use]
    pub fn with_id(mut self, id: impl Into<Arc<str>>) -> Self {
        let id = id.into();
        if Arc::ptr_eq(&self.f.correlation_id, &self.f.id) {
            if Arc::ptr_eq(&self.f.causation_id, &self.f.correlation_id) {
                self.f.causation_id = id.clone();
            }
            self.f.correlation_id = id.clone();
        }
        self.f.id = id;
        self
    }

    /// Sets the correlation id; a causation id that was only defaulted follows it.
    #[must_use]
    pub fn with_correlation_id(mut self, correlation_id: impl Into<Arc<str>>) -> Self {
        let correlation_id = correlation_id.into();
        if Arc::ptr_eq(&self.f.causation_id, &self.f.correlation_id) {
            self.f.causation_id = correlation_id.clone();
        }
        self.f.correlation_id = correlation_id;
        self
    }

    /// Sets the causation id.
    #[must_use]
    pub fn with_causation_id(mut self, causation_id: impl Into<Arc<str>>) -> Self {
        self.f.causation_id = causation_id.into();
        self
    }

    /// Addresses the message to another service, keeping everything else.
    #[must_use]
    pub fn to_service(mut self, service: impl Into<Arc<str>>) -> Self {
        self.f.service = service.into();
        self
    }

    /// Sets the dry-run mode.
    #[must_use]
    pub fn with_dry_run(mut self, dry_run: DryRun) -> Self {
        self.f.dry_run = dry_run;
        self
    }

    /// Sets the request, encoded in the binary format.
    ///
    /// A value that cannot be encoded halts the message with [`Response::Error`] saying so, so
    /// the mistake surfaces as the dispatch result instead of a panic. Use
    /// [`Payload::encode`] with [`with_payload`](Message::with_payload) to handle the error
    /// yourself.
    #[must_use]
    pub fn with_request<T: Serialize + ?Sized>(self, request: &T) -> Self {
        match Payload::encode(request) {
            Ok(payload) => self.with_payload(payload),
            Err(error) => self.return_with(Response::error(format!("request: {error}"))),
        }
    }

    /// Sets an already encoded request (JSON from an HTTP body, say).
    #[must_use]
    pub fn with_payload(mut self, request: Payload) -> Self {
        self.f.request = Some(request);
        self
    }

    /// Sets the request from a validation result: `Ok` becomes the request, `Err` halts the
    /// message with [`Response::ValidationError`] holding the error.
    #[must_use]
    pub fn validated<T: Serialize, E: Serialize>(self, validation: Result<T, E>) -> Self {
        match validation {
            Ok(request) => self.with_request(&request),
            Err(error) => match Payload::encode(&error) {
                Ok(payload) => self.return_with(Response::ValidationError(payload)),
                Err(encode_error) => {
                    self.return_with(Response::error(format!("validation error: {encode_error}")))
                }
            },
        }
    }

    /// Reads the request as `T`.
    ///
    /// # Errors
    ///
    /// [`PayloadError::Missing`] when there is no request; a decode error when it is not a `T`.
    pub fn request<T: DeserializeOwned>(&self) -> Result<T, PayloadError> {
        self.f
            .request
            .as_ref()
            .ok_or_else(|| PayloadError::Missing {
                what: "the request".to_owned(),
            })?
            .decode()
    }

    /// The request as it is encoded, if there is one.
    pub fn payload(&self) -> Option<&Payload> {
        self.f.request.as_ref()
    }

    /// Stores `value` under `key` for later steps of the pipeline (encoded, so it travels to
    /// other nodes). A value that cannot be encoded halts the message with [`Response::Error`].
    #[must_use]
    pub fn assign<T: Serialize + ?Sized>(mut self, key: impl Into<String>, value: &T) -> Self {
        let key = key.into();
        match Payload::encode(value) {
            Ok(payload) => {
                self.f.assigns.insert(key, payload);
                self
            }
            Err(error) => self.return_with(Response::error(format!("assign `{key}`: {error}"))),
        }
    }

    /// Reads the value assigned under `key`, `None` when nothing is.
    ///
    /// # Errors
    ///
    /// A decode error when the value is not a `T`.
    pub fn assigned<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, PayloadError> {
        self.f.assigns.get(key).map(Payload::decode).transpose()
    }

    /// Every assigned value, by key.
    pub fn assigns(&self) -> &BTreeMap<String, Payload> {
        &self.f.assigns
    }

    /// The assigned values, to change them in place.
    pub fn assigns_mut(&mut self) -> &mut BTreeMap<String, Payload> {
        &mut self.f.assigns
    }

    /// Adds a log field that every span handling this message records.
    #[must_use]
    pub fn with_log_field(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.f.log_fields.insert(key, value);
        self
    }

    /// Sets the caller's trace context (a W3C `traceparent`), carried to every node the message
    /// visits and to the messages it causes.
    #[must_use]
    pub fn with_trace_context(self, traceparent: impl Into<String>) -> Self {
        self.with_log_field(TRACE_CONTEXT_FIELD, traceparent)
    }

    /// The log fields.
    pub fn log_fields(&self) -> &LogFields {
        &self.f.log_fields
    }

    /// Appends an event, encoded in the binary format; events keep the order they were added in.
    /// A value that cannot be encoded halts the message with [`Response::Error`].
    #[must_use]
    pub fn add_event<T: Serialize + ?Sized>(mut self, event: &T) -> Self {
        match Payload::encode(event) {
            Ok(payload) => {
                self.f.events.push(payload);
                self
            }
            Err(error) => self.return_with(Response::error(format!("event: {error}"))),
        }
    }

    /// The events added so far, in order.
    pub fn events(&self) -> &[Payload] {
        &self.f.events
    }

    /// Takes the events out of the message.
    pub fn take_events(&mut self) -> Vec<Payload> {
        std::mem::take(&mut self.f.events)
    }

    /// Answers [`Response::Ok`] and halts.
    #[must_use]
    pub fn ok(self) -> Self {
        self.return_with(Response::Ok)
    }

    /// Answers [`Response::OkWith`] the binary encoding of `result` and halts. A value that
    /// cannot be encoded answers [`Response::Error`] instead.
    #[must_use]
    pub fn ok_with<T: Serialize + ?Sized>(self, result: &T) -> Self {
        match Payload::encode(result) {
            Ok(payload) => self.return_with(Response::OkWith(payload)),
            Err(error) => self.return_with(Response::error(format!("result: {error}"))),
        }
    }

    /// Answers [`Response::Created`] with `id` and halts.
    #[must_use]
    pub fn created(self, id: impl Into<String>) -> Self {
        self.return_with(Response::Created {
            id: id.into(),
            version: None,
        })
    }

    /// Answers [`Response::Error`] and halts. Text (`&str`, `String`) becomes a text payload.
    #[must_use]
    pub fn error(self, reason: impl Into<Payload>) -> Self {
        self.return_with(Response::Error(reason.into()))
    }

    /// Sets `response` and halts.
    #[must_use]
    pub fn return_with(mut self, response: Response) -> Self {
        self.f.response = Some(response);
        self.f.halted = true;
        self
    }

    /// The service the message is for.
    pub fn service(&self) -> &str {
        &self.f.service
    }

    /// This message's id.
    pub fn id(&self) -> &str {
        &self.f.id
    }

    /// The id of the conversation.
    pub fn correlation_id(&self) -> &str {
        &self.f.correlation_id
    }

    /// The id of the message that caused this one.
    pub fn causation_id(&self) -> &str {
        &self.f.causation_id
    }

    /// When the message was created, or last dispatched.
    pub fn invoked_at(&self) -> SystemTime {
        self.f.invoked_at
    }

    /// The dry-run mode.
    pub fn dry_run(&self) -> DryRun {
        self.f.dry_run
    }

    /// The response, once there is one.
    pub fn response(&self) -> Option<&Response> {
        self.f.response.as_ref()
    }

    /// Whether processing stops here: a response was set.
    pub fn is_halted(&self) -> bool {
        self.f.halted
    }

    /// The aggregate the message addresses.
    pub fn aggregate_meta(&self) -> &AggregateMeta {
        &self.f.aggregate_meta
    }

    /// The aggregate metadata, to set the id or version.
    pub fn aggregate_meta_mut(&mut self) -> &mut AggregateMeta {
        &mut self.f.aggregate_meta
    }

    /// Sets the id of the aggregate the message addresses.
    #[must_use]
    pub fn with_aggregate_id(mut self, id: impl Into<String>) -> Self {
        self.f.aggregate_meta.id = Some(id.into());
        self
    }

    /// The node the call was first dispatched from.
    pub fn origin_node(&self) -> Option<&NodeId> {
        self.f.origin_node.as_ref()
    }

    /// Where the reply to a remote call goes.
    pub fn reply_to(&self) -> Option<&ReplyTo> {
        self.f.reply_to.as_ref()
    }

    /// Sets where the reply goes. Transports set this when they send a call to another node.
    pub fn set_reply_to(&mut self, reply_to: Option<ReplyTo>) {
        self.f.reply_to = reply_to;
    }

    /// Encodes the whole message with [`codec`].
    ///
    /// # Errors
    ///
    /// Only if a payload's serialization fails, which payloads built by this crate never do.
    pub fn to_bytes(&self) -> Result<Vec<u8>, EncodeError> {
        codec::encode(self)
    }

    /// Decodes a message written by [`to_bytes`](Message::to_bytes).
    ///
    /// # Errors
    ///
    /// A [`DecodeError`] for truncated, corrupted or foreign bytes; never a panic.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        codec::decode(bytes)
    }

    /// Stamps the message as the dispatcher sends it off: the time `at`, and the caller's node
    /// unless an earlier hop already set it.
    pub(crate) fn stamp_dispatch(&mut self, node: &NodeId, at: SystemTime) {
        self.f.invoked_at = at;
        if self.f.origin_node.is_none() {
            self.f.origin_node = Some(node.clone());
        }
    }

    /// A copy of everything but the request and the events, to answer with when the service
    /// cannot (a timeout, a panic, a denial).
    ///
    /// `here` is the node keeping it: an origin equal to it is recorded, not cloned, so a local
    /// call does not touch the node id's shared reference count (a cache line every core's calls
    /// would contend for).
    pub(crate) fn reply_skeleton(&self, here: &NodeId) -> ReplySkeleton {
        let f = &*self.f;
        let has_extras = !f.assigns.is_empty()
            || f.aggregate_meta != AggregateMeta::default()
            || f.reply_to.is_some()
            || !f.log_fields.is_empty();
        ReplySkeleton {
            service: f.service.clone(),
            id: f.id.clone(),
            correlation_id: (!Arc::ptr_eq(&f.correlation_id, &f.id))
                .then(|| f.correlation_id.clone()),
            causation_id: (!Arc::ptr_eq(&f.causation_id, &f.correlation_id))
                .then(|| f.causation_id.clone()),
            invoked_at: f.invoked_at,
            dry_run: f.dry_run,
            origin: match &f.origin_node {
                Some(node) if node == here => Origin::Here,
                other => Origin::Elsewhere(other.clone()),
            },
            extras: has_extras.then(|| {
                Box::new(SkeletonExtras {
                    assigns: f.assigns.clone(),
                    aggregate_meta: f.aggregate_meta.clone(),
                    reply_to: f.reply_to.clone(),
                    log_fields: f.log_fields.clone(),
                })
            }),
        }
    }

    /// Drops what a reply does not carry: the request always, the events unless the caller asked
    /// for a verbose dry run.
    pub(crate) fn strip_for_reply(&mut self) {
        self.f.request = None;
        if self.f.dry_run != DryRun::Verbose {
            self.f.events.clear();
        }
    }

    pub(crate) fn set_dry_run(&mut self, dry_run: DryRun) {
        self.f.dry_run = dry_run;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_defaults_correlation_and_causation_to_the_id() {
        let msg = Message::new("svc");
        assert_eq!(msg.correlation_id(), msg.id());
        assert_eq!(msg.causation_id(), msg.id());
        assert_eq!(
            uuid::Uuid::parse_str(msg.id()).unwrap().get_version_num(),
            7
        );
    }

    #[test]
    fn it_lets_defaulted_ids_follow_a_new_id() {
        let msg = Message::new("svc").with_id("m-1");
        assert_eq!(
            (msg.id(), msg.correlation_id(), msg.causation_id()),
            ("m-1", "m-1", "m-1")
        );
    }

    #[test]
    fn it_defaults_causation_to_an_explicit_correlation() {
        let msg = Message::new("svc")
            .with_correlation_id("c-1")
            .with_id("m-1");
        assert_eq!(
            (msg.id(), msg.correlation_id(), msg.causation_id()),
            ("m-1", "c-1", "c-1")
        );
    }

    #[test]
    fn it_keeps_explicit_ids_when_the_id_changes() {
        let msg = Message::new("svc")
            .with_correlation_id("c-1")
            .with_causation_id("k-1")
            .with_id("m-1");
        assert_eq!(
            (msg.id(), msg.correlation_id(), msg.causation_id()),
            ("m-1", "c-1", "k-1")
        );
    }

    #[test]
    fn it_carries_the_conversation_into_a_caused_message() {
        let parent = Message::new("first")
            .with_correlation_id("conversation")
            .with_dry_run(DryRun::Verbose)
            .with_trace_context("00-abc-def-01")
            .assign("ignored", &1_u8);
        let child = Message::caused_by(&parent, "second");
        assert_eq!(child.service(), "second");
        assert_ne!(child.id(), parent.id());
        assert_eq!(child.correlation_id(), "conversation");
        assert_eq!(child.causation_id(), parent.id());
        assert_eq!(child.dry_run(), DryRun::Verbose);
        assert_eq!(child.log_fields().trace_context(), Some("00-abc-def-01"));
        assert!(child.assigns().is_empty());
    }

    #[test]
    fn it_keeps_events_in_insertion_order() {
        let msg = Message::new("svc")
            .add_event(&1_u32)
            .add_event(&2_u32)
            .add_event(&3_u32)
            .ok();
        let events: Vec<u32> = msg.events().iter().map(|e| e.decode().unwrap()).collect();
        assert_eq!(events, vec![1, 2, 3]);
    }

    #[test]
    fn it_halts_on_every_response_helper() {
        let responses = [
            Message::new("s").ok(),
            Message::new("s").ok_with(&5_u8),
            Message::new("s").created("id-1"),
            Message::new("s").error("boom"),
            Message::new("s").return_with(Response::MissingId("id".into())),
        ];
        for msg in responses {
            assert!(msg.is_halted());
            assert!(msg.response().is_some());
        }
    }

    #[test]
    fn it_halts_with_a_validation_error() {
        let msg = Message::new("s").validated::<u32, _>(Err("name is required"));
        assert!(msg.is_halted());
        match msg.response() {
            Some(Response::ValidationError(payload)) => {
                assert_eq!(payload.decode::<String>().unwrap(), "name is required");
            }
            other => panic!("expected a validation error, got {other:?}"),
        }
        let valid = Message::new("s").validated::<_, String>(Ok(7_u32));
        assert!(!valid.is_halted());
        assert_eq!(valid.request::<u32>().unwrap(), 7);
    }

    #[test]
    fn it_reads_assigns_back() {
        let msg = Message::new("s").assign("attempts", &2_u32);
        assert_eq!(msg.assigned::<u32>("attempts").unwrap(), Some(2));
        assert_eq!(msg.assigned::<u32>("other").unwrap(), None);
    }

    #[test]
    fn it_reports_a_missing_request() {
        let error = Message::new("s").request::<u32>().unwrap_err();
        assert!(matches!(error, PayloadError::Missing { .. }));
    }

    #[test]
    fn a_reply_skeleton_keeps_everything_but_the_request_events_and_response() {
        let plain = Message::new("s").with_request(&1_u8).add_event(&2_u8);
        let mut expected = plain.clone();
        expected.f.request = None;
        expected.f.events.clear();
        let here = NodeId::new("here", 1);
        assert_eq!(plain.reply_skeleton(&here).into_message(&here), expected);

        let mut full = Message::new("s")
            .with_request(&1_u8)
            .with_aggregate_id("a-1")
            .with_log_field("tenant", "acme")
            .assign("attempts", &2_u32);
        full.set_reply_to(Some(ReplyTo {
            node: NodeId::new("caller", 1),
            request_id: 7,
        }));
        let mut expected = full.clone();
        expected.f.request = None;
        assert_eq!(full.reply_skeleton(&here).into_message(&here), expected);

        // Ids defaulted to the id stay defaulted: a new id still carries them along.
        let answered = Message::new("s")
            .reply_skeleton(&here)
            .into_message(&here)
            .with_id("m-2");
        assert_eq!(
            (
                answered.id(),
                answered.correlation_id(),
                answered.causation_id()
            ),
            ("m-2", "m-2", "m-2")
        );
        let set = Message::new("s")
            .with_correlation_id("c-1")
            .reply_skeleton(&here)
            .into_message(&here)
            .with_correlation_id("c-2");
        assert_eq!(set.causation_id(), "c-2");

        for origin in [here.clone(), NodeId::new("elsewhere", 2)] {
            let mut stamped = Message::new("s");
            stamped.stamp_dispatch(&origin, SystemTime::now());
            let skeleton = stamped.reply_skeleton(&here).into_message(&here);
            assert_eq!(skeleton.origin_node(), Some(&origin));
        }
    }

    #[test]
    fn it_strips_the_request_and_events_from_a_reply() {
        let mut msg = Message::new("s").with_request(&1_u8).add_event(&2_u8).ok();
        msg.strip_for_reply();
        assert!(msg.payload().is_none());
        assert!(msg.events().is_empty());

        let mut verbose = Message::new("s")
            .with_dry_run(DryRun::Verbose)
            .with_request(&1_u8)
            .add_event(&2_u8);
        verbose.strip_for_reply();
        assert!(verbose.payload().is_none());
        assert_eq!(verbose.events().len(), 1);
    }

    #[test]
    fn decoded_ids_that_were_defaulted_still_follow_the_id() {
        let defaulted = Message::new("greet").with_id("m-1");
        let decoded = Message::from_bytes(&defaulted.to_bytes().unwrap()).unwrap();
        assert!(Arc::ptr_eq(&decoded.f.id, &decoded.f.correlation_id));
        assert!(Arc::ptr_eq(
            &decoded.f.correlation_id,
            &decoded.f.causation_id
        ));
        let renamed = decoded.with_id("m-2");
        assert_eq!(renamed.correlation_id(), "m-2");
        assert_eq!(renamed.causation_id(), "m-2");
        let set = Message::new("greet")
            .with_id("m-1")
            .with_correlation_id("c-1");
        let decoded = Message::from_bytes(&set.to_bytes().unwrap()).unwrap();
        let renamed = decoded.with_id("m-2");
        assert_eq!(renamed.correlation_id(), "c-1");
        assert_eq!(renamed.causation_id(), "c-1");
        let chained = Message::from_bytes(&Message::caused_by(&set, "next").to_bytes().unwrap())
            .unwrap()
            .with_id("m-3");
        assert_eq!(chained.correlation_id(), "c-1");
        assert_eq!(chained.causation_id(), set.id());
    }

    #[test]
    fn it_pins_the_encoded_size_of_a_small_message() {
        // Guards the wire size against accidental growth: a change here changes every frame.
        let mut msg = Message::new("greet").with_id("m-1").with_request(&"Ada");
        msg.f.invoked_at = std::time::UNIX_EPOCH + std::time::Duration::new(1_700_000_000, 5);
        let bytes = msg.to_bytes().unwrap();
        assert_eq!(Message::from_bytes(&bytes).unwrap(), msg);
        assert_eq!(bytes.len(), 43);
    }
}
