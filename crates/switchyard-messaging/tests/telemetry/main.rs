//! The spans and events a dispatch emits, in order (x3m's telemetry tests, ported).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Tests fail loudly.

use std::sync::{Arc, Mutex};

use switchyard_messaging::telemetry::*;
use switchyard_messaging::{Message, Node, Response, Router};
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

/// A span's or event's name and its fields, as text.
type Entry = (String, Vec<(String, String)>);

/// What the recorder saw: events and spans in order, with their fields.
#[derive(Clone, Default)]
struct Recorded {
    events: Arc<Mutex<Vec<Entry>>>,
    spans: Arc<Mutex<Vec<Entry>>>,
}

#[derive(Default)]
struct Fields(Vec<(String, String)>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push((field.name().to_owned(), format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push((field.name().to_owned(), value.to_owned()));
    }
}

impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> tracing_subscriber::Layer<S> for Recorded {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let name = event.metadata().name().to_owned();
        self.events.lock().unwrap().push((name, fields.0));
    }

    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        _id: &tracing::span::Id,
        _ctx: Context<'_, S>,
    ) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        let name = attrs.metadata().name().to_owned();
        self.spans.lock().unwrap().push((name, fields.0));
    }
}

impl Recorded {
    fn event_names(&self) -> Vec<String> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .map(|(n, _)| n.clone())
            .collect()
    }

    fn event_field(&self, event: &str, field: &str) -> Option<String> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .find(|(name, _)| name == event)
            .and_then(|(_, fields)| fields.iter().find(|(f, _)| f == field))
            .map(|(_, value)| value.clone())
    }

    fn span_fields(&self, span: &str) -> Vec<(String, String)> {
        self.spans
            .lock()
            .unwrap()
            .iter()
            .find(|(name, _)| name == span)
            .map(|(_, fields)| fields.clone())
            .unwrap_or_default()
    }
}

async fn first(msg: Message) -> Message {
    msg.ok_with("from_first")
}

async fn panics(_msg: Message) -> Message {
    panic!("boom")
}

fn node() -> Node {
    let node = Node::builder("telemetry").incarnation(1).build();
    node.register(
        Router::new("test")
            .service("first", first)
            .private("panics", panics)
            .authorize(|_| Ok(())),
    )
    .unwrap();
    node
}

/// Runs `work` with the recorder as this thread's subscriber. The runtime is current-thread, so
/// the handler tasks run on this thread and are recorded too.
fn record<F: std::future::Future>(work: impl FnOnce(Node) -> F) -> Recorded {
    let recorded = Recorded::default();
    let subscriber = tracing_subscriber::registry().with(recorded.clone());
    let _guard = tracing::subscriber::set_default(subscriber);
    let node = node();
    recorded.events.lock().unwrap().clear();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(work(node));
    recorded
}

#[test]
fn a_dispatch_to_a_known_service_emits_each_step() {
    let recorded = record(|node| async move {
        node.dispatch(
            Message::new("first")
                .with_id("m-1")
                .with_correlation_id("c-1")
                .with_log_field("tenant", "acme"),
        )
        .await;
    });
    assert_eq!(
        recorded.event_names(),
        [
            DISCOVERING_SERVICE,
            SERVICE_FOUND,
            INVOKING_SERVICE,
            SERVICE_REQUEST_RECEIVED,
            EXECUTING_SERVICE,
            EXECUTION_FINISHED,
            SERVICE_RESPONDED,
        ]
    );
    let dispatch = recorded.span_fields(DISPATCH_SPAN);
    for expected in [
        ("message.id", "m-1"),
        ("message.correlation_id", "c-1"),
        ("service", "first"),
        ("caller_node", "telemetry#1"),
        ("log_fields", "tenant=acme"),
    ] {
        assert!(
            dispatch.contains(&(expected.0.to_owned(), expected.1.to_owned())),
            "{expected:?} not in {dispatch:?}"
        );
    }
    let service = recorded.span_fields(SERVICE_SPAN);
    for expected in [
        ("message.id", "m-1"),
        ("visibility", "public"),
        ("service_node", "telemetry#1"),
        ("caller_node", "telemetry#1"),
    ] {
        assert!(
            service.contains(&(expected.0.to_owned(), expected.1.to_owned())),
            "{expected:?} not in {service:?}"
        );
    }
    assert_eq!(
        recorded
            .event_field(SERVICE_REQUEST_RECEIVED, "origin_node")
            .as_deref(),
        Some("telemetry#1")
    );
    for timed in [SERVICE_FOUND, EXECUTION_FINISHED, SERVICE_RESPONDED] {
        let duration = recorded.event_field(timed, "duration_ns");
        assert!(
            duration.is_some_and(|d| d.parse::<u64>().is_ok()),
            "{timed} has no duration"
        );
    }
}

#[test]
fn a_dispatch_to_an_unknown_service_stops_at_not_found() {
    let recorded = record(|node| async move {
        let reply = node.dispatch(Message::new("wrong_service")).await;
        assert!(matches!(
            reply.response(),
            Some(Response::ServiceUnavailable(_))
        ));
    });
    assert_eq!(
        recorded.event_names(),
        [DISCOVERING_SERVICE, SERVICE_NOT_FOUND]
    );
}

#[test]
fn validate_emits_the_dispatch_steps_and_a_validation_answer() {
    let recorded = record(|node| async move {
        node.validate(Message::new("first")).await;
    });
    assert_eq!(
        recorded.event_names(),
        [
            DISCOVERING_SERVICE,
            SERVICE_FOUND,
            INVOKING_SERVICE,
            SERVICE_REQUEST_RECEIVED,
            EXECUTING_SERVICE,
            EXECUTION_FINISHED,
            SERVICE_VALIDATION_RESPONDED,
        ]
    );
}

#[test]
fn validate_of_an_unknown_service_stops_at_not_found() {
    let recorded = record(|node| async move {
        node.validate(Message::new("wrong_service")).await;
    });
    assert_eq!(
        recorded.event_names(),
        [DISCOVERING_SERVICE, SERVICE_NOT_FOUND]
    );
}

#[test]
fn authorized_emits_only_its_check() {
    for service in ["first", "wrong_service"] {
        let recorded = record(|node| async move {
            node.authorized(&Message::new(service)).await;
        });
        assert_eq!(
            recorded.event_names(),
            [CHECKING_IF_SERVICE_CALL_IS_AUTHORIZED],
            "{service}"
        );
    }
}

#[test]
fn a_panic_is_reported_as_a_failed_execution() {
    let recorded = record(|node| async move {
        node.dispatch(Message::new("panics")).await;
    });
    let names = recorded.event_names();
    assert!(names.contains(&EXECUTION_FAILED.to_owned()), "{names:?}");
    assert!(!names.contains(&EXECUTION_FINISHED.to_owned()), "{names:?}");
    let reason = recorded.event_field(EXECUTION_FAILED, "reason").unwrap();
    assert!(reason.contains("boom"), "{reason}");
}

#[test]
fn registering_a_router_is_reported() {
    let recorded = Recorded::default();
    let subscriber = tracing_subscriber::registry().with(recorded.clone());
    let _guard = tracing::subscriber::set_default(subscriber);
    let _node = node();
    assert_eq!(recorded.event_names(), [REGISTER_LOCAL_SERVICES]);
    assert_eq!(
        recorded
            .event_field(REGISTER_LOCAL_SERVICES, "public")
            .as_deref(),
        Some("first")
    );
    assert_eq!(
        recorded
            .event_field(REGISTER_LOCAL_SERVICES, "private")
            .as_deref(),
        Some("panics")
    );
}
