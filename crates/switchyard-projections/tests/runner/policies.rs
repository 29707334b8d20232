//! Policies: each event's commands dispatched through a node with derived ids, the event's
//! correlation id and its message as causation; a redelivered event's command recorded once;
//! a refused command parks its event.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use switchyard_aggregates::store::{
    EventAppender, EventMetadata, EventStore, ExpectedVersion, GlobalReader, MemoryStore, NewEvent,
    RecordedEvent,
};
use switchyard_aggregates::{Aggregate, CommandResult, DecodedEvent, Events, MessageHandler};
use switchyard_messaging::{IntoResponse, Message, Node, Response, Router};
use switchyard_projections::checkpoint::CheckpointStore;
use switchyard_projections::{
    BoxError, MemoryCheckpointStore, Policy, PolicyRunner, ProjectionRunner, command_id,
};
use switchyard_sqlite::SqliteStore;

use crate::support::*;

/// A review of an account, asked for by the policy.
#[derive(Default)]
struct Review;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Requested(u64);

impl Aggregate for Review {
    type Event = Requested;
    const NAME: &'static str = "review";
    fn apply(&mut self, _: &Requested) {}
}

/// Reviews refuse amounts of a million and more.
#[derive(Debug, thiserror::Error)]
#[error("amount {0} is beyond review")]
struct BeyondReview(u64);

impl IntoResponse for BeyondReview {
    fn into_response(self) -> Response {
        Response::ValidationError(self.to_string().into())
    }
}

fn request_review(_: &Review, message: &Message) -> CommandResult<Requested> {
    let amount: u64 = message.request()?;
    if amount >= 1_000_000 {
        return Err(BeyondReview(amount).into());
    }
    Ok(Events::one(Requested(amount)))
}

/// A node offering `review`, as a fresh process would: its own runtime of reviews.
fn bank(store: impl EventStore + Clone + 'static) -> Node {
    let reviews = MessageHandler::<Review>::event_sourced(store);
    let node = Node::new("bank");
    node.register(
        Router::new("reviews")
            .service("review", reviews.on_maybe_new(request_review))
            .authorize(|_| Ok(())),
    )
    .unwrap();
    node
}

/// Deposits of 100 and more ask for a review of their account; it hangs forever, after the
/// commands of the events before, on a deposit of `hang_on` (a runner dying mid-batch, after
/// dispatching but before its checkpoint).
struct LargeDeposits {
    hang_on: Option<u64>,
    hung: Arc<AtomicBool>,
}

impl LargeDeposits {
    fn new() -> Self {
        Self {
            hang_on: None,
            hung: Arc::default(),
        }
    }
}

impl Policy for LargeDeposits {
    type Event = AccountEvent;

    async fn react(
        &mut self,
        event: &DecodedEvent<AccountEvent>,
    ) -> Result<Vec<Message>, BoxError> {
        let AccountEvent::Deposited(amount) = event.event;
        if self.hang_on == Some(amount) {
            self.hung.store(true, Ordering::SeqCst);
            std::future::pending::<()>().await;
        }
        let account = event
            .stream
            .strip_prefix("account-")
            .ok_or("not an account")?;
        Ok(if amount >= 100 {
            vec![
                Message::new("review")
                    .with_id("replaced by the runner")
                    .with_aggregate_id(account)
                    .with_request(&amount),
            ]
        } else {
            Vec::new()
        })
    }
}

fn policy<E, C>(policy: LargeDeposits, store: E, checkpoints: C) -> PolicyRunner<LargeDeposits>
where
    E: EventStore + Clone + 'static,
    C: CheckpointStore + 'static,
{
    ProjectionRunner::policy(
        "large-deposits",
        policy,
        bank(store.clone()),
        store,
        checkpoints,
    )
    .aggregate::<Account>()
    .retry(fast_retry())
    // Short, so a crashed runner's lease lapses soon.
    .lease_ttl(Duration::from_secs(2))
    .start()
    .unwrap()
}

/// A deposit into `account` recorded by message `msg-{n}` of conversation `conversation-{n}`.
async fn deposit_by(store: &impl EventAppender, account: u32, amount: u64, n: u32) {
    let data = switchyard_messaging::codec::encode(&AccountEvent::Deposited(amount)).unwrap();
    let event = NewEvent {
        event_type: "Deposited".into(),
        schema_version: 1,
        data: data.into(),
    };
    let metadata = EventMetadata {
        message_id: format!("msg-{n}"),
        correlation_id: format!("conversation-{n}"),
        causation_id: format!("msg-{n}"),
        user: BTreeMap::new(),
    };
    store
        .append(
            &format!("account-{account}"),
            ExpectedVersion::Any,
            vec![event],
            metadata,
        )
        .await
        .unwrap();
}

async fn reviews(store: &impl GlobalReader) -> Vec<RecordedEvent> {
    store
        .read_all(1, 1_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|event| event.stream.starts_with("review-"))
        .collect()
}

/// How the first runner ends after dispatching.
#[derive(Clone, Copy, Debug)]
enum Ending {
    /// Stopped: the batch abandoned, the lease released.
    Stop,
    /// Dropped, as a crash would: the lease lapses by itself.
    Crash,
}

async fn a_redelivered_events_command_is_recorded_once<E, C>(
    store: E,
    checkpoints: C,
    ending: Ending,
) where
    E: EventStore + Clone + 'static,
    C: CheckpointStore + Clone + 'static,
{
    deposit_by(&store, 1, 500, 1).await;
    deposit_by(&store, 2, 5, 2).await;
    deposit_by(&store, 3, 42, 3).await;

    // The first runner dispatches the review for account 1, then dies in the same batch
    // before its checkpoint.
    let dying = LargeDeposits {
        hang_on: Some(42),
        ..LargeDeposits::new()
    };
    let hung = dying.hung.clone();
    let first = policy(dying, store.clone(), checkpoints.clone());
    eventually("the first runner to hang", || hung.load(Ordering::SeqCst)).await;
    assert_eq!(reviews(&store).await.len(), 1, "the review was dispatched");
    assert_eq!(checkpoints.load("large-deposits").await.unwrap(), 0);
    match ending {
        Ending::Stop => drop(first.stop().await),
        Ending::Crash => drop(first),
    }

    // A new process: the event is handed out again, its command sent again with the same id,
    // and the review aggregate records it once.
    let second = policy(LargeDeposits::new(), store.clone(), checkpoints.clone());
    let head = head(&store).await;
    eventually("the second runner to catch up", || {
        second.caught_up_to(head)
    })
    .await;
    deposit_by(&store, 4, 700, 4).await;
    let head = self::head(&store).await;
    eventually("the live event", || second.caught_up_to(head)).await;
    second.stop().await.unwrap();

    let reviews = reviews(&store).await;
    let streams: Vec<&str> = reviews.iter().map(|event| &*event.stream).collect();
    assert_eq!(streams, ["review-1", "review-4"], "each review once");
    let first_review = &reviews[0];
    assert_eq!(
        first_review.metadata.message_id,
        command_id("large-deposits", "account-1", 0, 0),
        "the id derived from the policy and the event"
    );
    assert_eq!(first_review.metadata.correlation_id, "conversation-1");
    assert_eq!(first_review.metadata.causation_id, "msg-1");
    assert_eq!(reviews[1].metadata.correlation_id, "conversation-4");
    assert_eq!(reviews[1].metadata.causation_id, "msg-4");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_memory_a_redelivered_events_command_is_recorded_once() {
    for ending in [Ending::Stop, Ending::Crash] {
        let (store, checkpoints) = (MemoryStore::new(), MemoryCheckpointStore::new());
        a_redelivered_events_command_is_recorded_once(store, checkpoints, ending).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sqlite_a_redelivered_events_command_is_recorded_once() {
    for ending in [Ending::Stop, Ending::Crash] {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("store.db")).unwrap();
        a_redelivered_events_command_is_recorded_once(store.clone(), store, ending).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_command_fails_its_event_which_is_parked_while_the_policy_goes_on() {
    let store = MemoryStore::new();
    let checkpoints = MemoryCheckpointStore::new();
    deposit_by(&store, 1, 2_000_000, 1).await;
    deposit_by(&store, 2, 300, 2).await;
    let runner = policy(LargeDeposits::new(), store.clone(), checkpoints.clone());
    let head = head(&store).await;
    eventually("the runner to pass both events", || {
        runner.caught_up_to(head)
    })
    .await;

    let parked = runner.parked().await.unwrap();
    assert_eq!(parked.len(), 1);
    assert_eq!((parked[0].position, &*parked[0].stream), (1, "account-1"));
    assert!(
        parked[0].error.contains("beyond review"),
        "the command's reply says why: {}",
        parked[0].error
    );
    assert!(
        parked[0]
            .error
            .contains(&command_id("large-deposits", "account-1", 0, 0)),
        "and which command: {}",
        parked[0].error
    );
    let streams: Vec<String> = reviews(&store)
        .await
        .iter()
        .map(|event| event.stream.to_string())
        .collect();
    assert_eq!(
        streams,
        ["review-2"],
        "the next event's command went through"
    );
    runner.stop().await.unwrap();
}
