//! Telemetry: a span per batch, with the runner's lag, and a span per policy dispatch. A binary
//! of its own, with one test: the subscriber it installs for its thread is the only one, so no
//! other test's spans or interest caching mix in.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Tests fail loudly.

use std::fmt::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use switchyard_aggregates::store::{
    EventAppender, EventMetadata, ExpectedVersion, GlobalReader, MemoryStore, NewEvent,
};
use switchyard_aggregates::{Aggregate, DecodedEvent};
use switchyard_messaging::{Message, Node, Router};
use switchyard_projections::{
    BoxError, MemoryCheckpointStore, Policy, ProjectionRunner, command_id,
};
use tracing_subscriber::layer::SubscriberExt;

#[derive(Default)]
struct Account;

#[derive(Clone, Serialize, Deserialize)]
struct Withdrawn(u64);

impl Aggregate for Account {
    type Event = Withdrawn;
    const NAME: &'static str = "account";
    fn apply(&mut self, _: &Withdrawn) {}
}

/// Each withdrawal of 100 or more asks for a review.
struct Reviews;

impl Policy for Reviews {
    type Event = Withdrawn;

    async fn react(&mut self, event: &DecodedEvent<Withdrawn>) -> Result<Vec<Message>, BoxError> {
        Ok(if event.event.0 >= 100 {
            vec![Message::new("review")]
        } else {
            Vec::new()
        })
    }
}

/// Records each new span: its name and fields.
#[derive(Clone, Default)]
struct Spans(Arc<Mutex<Vec<String>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Spans {
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        _: &tracing::span::Id,
        _: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let mut fields = Fields(attrs.metadata().name().to_owned());
        attrs.record(&mut fields);
        self.0.lock().unwrap().push(fields.0);
    }
}

impl Spans {
    /// The spans recorded named `name`, each with its fields.
    fn named(&self, name: &str) -> Vec<String> {
        let prefix = format!("{name} ");
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|span| span.starts_with(&prefix))
            .cloned()
            .collect()
    }
}

struct Fields(String);

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, " {}={value:?}", field.name());
    }
}

async fn withdraw(store: &MemoryStore, account: u32, amount: u64) {
    let event = NewEvent {
        event_type: "Withdrawn".into(),
        schema_version: 1,
        data: switchyard_messaging::codec::encode(&Withdrawn(amount))
            .unwrap()
            .into(),
    };
    store
        .append(
            &format!("account-{account}"),
            ExpectedVersion::Any,
            vec![event],
            EventMetadata::default(),
        )
        .await
        .unwrap();
}

/// The runner's task runs on this test's only thread, so the subscriber set here sees it.
#[tokio::test]
async fn each_batch_and_each_command_is_in_a_span_of_its_own() {
    let spans = Spans::default();
    let _traced =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(spans.clone()));
    let node = Node::new("bank");
    node.register(
        Router::new("reviews")
            .service("review", |message: Message| async move { message.ok() })
            .authorize(|_| Ok(())),
    )
    .unwrap();
    let store = MemoryStore::new();
    withdraw(&store, 1, 500).await;
    withdraw(&store, 2, 1).await;
    let runner = ProjectionRunner::policy(
        "reviews",
        Reviews,
        node,
        store.clone(),
        MemoryCheckpointStore::new(),
    )
    .aggregate::<Account>()
    .start()
    .unwrap();
    let head = store.head().await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    runner.wait_for(head, deadline).await.unwrap();
    runner.stop().await.unwrap();

    let dispatches = spans.named("policy.dispatch");
    assert_eq!(dispatches.len(), 1, "one command, one span: {dispatches:?}");
    let id = command_id("reviews", "account-1", 0, 0);
    for field in [
        "policy=reviews".to_owned(),
        "event.position=1".to_owned(),
        "event.stream=account-1".to_owned(),
        "event.version=0".to_owned(),
        format!("message.id={id}"),
        "service=review".to_owned(),
    ] {
        assert!(
            dispatches[0].contains(&field),
            "{field} in {}",
            dispatches[0]
        );
    }

    // The batch: both withdrawals, read through position 2 with the head at 2, so no lag.
    let batches = spans.named("projection.batch");
    assert_eq!(batches.len(), 1, "one batch, one span: {batches:?}");
    for field in [
        "projection=reviews",
        "events=2",
        "first=1",
        "position=2",
        "lag=0",
    ] {
        assert!(batches[0].contains(field), "{field} in {}", batches[0]);
    }
}
