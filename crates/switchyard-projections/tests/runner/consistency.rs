//! Read your writes: wait until the projection has processed a position.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use switchyard_aggregates::store::MemoryStore;
use switchyard_aggregates::{CommandResult, DecodedEvent, Events, MessageHandler};
use switchyard_messaging::{Message, Node, Router};
use switchyard_projections::{
    BoxError, MemoryCheckpointStore, Projection, ProjectionRunner, WaitError,
};

use crate::support::*;

/// The read model: each account's balance.
#[derive(Clone, Default)]
struct Balances(Arc<Mutex<u64>>);

impl Projection for Balances {
    type Event = AccountEvent;

    async fn apply(&mut self, batch: &[DecodedEvent<AccountEvent>]) -> Result<(), BoxError> {
        for event in batch {
            let AccountEvent::Deposited(amount) = event.event;
            *self.0.lock().unwrap() += amount;
        }
        Ok(())
    }
}

fn deposit(_: &Account, message: &Message) -> CommandResult<AccountEvent> {
    Ok(Events::one(AccountEvent::Deposited(message.request()?)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_waiting_for_a_replys_position_the_read_model_shows_it() {
    let store = MemoryStore::new();
    let balances = Balances::default();
    let runner = ProjectionRunner::builder(
        "balances",
        balances.clone(),
        store.clone(),
        MemoryCheckpointStore::new(),
    )
    .aggregate::<Account>()
    .start()
    .unwrap();
    let accounts = MessageHandler::<Account>::event_sourced(store.clone());
    let node = Node::new("bank");
    node.register(
        Router::new("bank")
            .service("deposit", accounts.on_maybe_new(deposit))
            .authorize(|_| Ok(())),
    )
    .unwrap();
    for n in 1..=20 {
        let command = Message::new("deposit")
            .with_aggregate_id("1")
            .with_request(&n);
        let reply = node.dispatch(command).await;
        // The position of the command's last event, carried by its reply.
        let position = reply.position().expect("the reply carries its position");
        let deadline = tokio::time::Instant::now() + PATIENCE;
        runner.wait_for(position, deadline).await.unwrap();
        assert!(runner.caught_up_to(position));
        assert_eq!(
            *balances.0.lock().unwrap(),
            n * (n + 1) / 2,
            "the read model shows deposit {n}"
        );
    }
    runner.stop().await.unwrap();
}

#[tokio::test]
async fn waiting_past_the_deadline_is_a_typed_timeout() {
    let store = MemoryStore::new();
    let runner = ProjectionRunner::builder(
        "balances",
        Balances::default(),
        store,
        MemoryCheckpointStore::new(),
    )
    .aggregate::<Account>()
    .start()
    .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_millis(10);
    let waited = runner.wait_for(1, deadline).await;
    assert!(
        matches!(
            waited,
            Err(WaitError::Timeout {
                position: 1,
                reached: 0,
                ..
            })
        ),
        "{waited:?}"
    );
    assert!(!runner.caught_up_to(1));
    runner.stop().await.unwrap();
}

#[tokio::test]
async fn waiting_on_a_stopped_runner_says_so() {
    let store = MemoryStore::new();
    let runner = ProjectionRunner::builder(
        "balances",
        Balances::default(),
        store,
        MemoryCheckpointStore::new(),
    )
    .aggregate::<Account>()
    .retry(fast_retry())
    .holder("") // refused by the name rule: the runner stops at once
    .start()
    .unwrap();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let waited = runner.wait_for(1, deadline).await;
    assert!(
        matches!(waited, Err(WaitError::Stopped { position: 1, .. })),
        "{waited:?}"
    );
}
