//! Eventual reads and reads at a command's position, on one node.

use std::time::Duration;

use switchyard_aggregates::store::{GlobalReader, MemoryStore};
use switchyard_messaging::{Message, Node, ReplyError, Response};
use switchyard_projections::{MemoryCheckpointStore, QueryMessage};
use tokio::time::Instant;

use crate::support::*;

fn bank(
    store: &MemoryStore,
) -> (
    Node,
    switchyard_projections::ProjectionRunner<switchyard_projections::InMemory<Balances>>,
) {
    let (runner, balances) = start_balances(store.clone(), MemoryCheckpointStore::new());
    let node = Node::new("bank");
    node.register(commands(store.clone())).unwrap();
    node.register(queries(balances)).unwrap();
    (node, runner)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_is_answered_from_the_read_model() {
    let store = MemoryStore::new();
    let (node, runner) = bank(&store);
    for (account, amount) in [(1, 5), (2, 7), (1, 10)] {
        node.dispatch(deposit_of(account, amount))
            .await
            .success()
            .unwrap();
    }
    runner
        .wait_for(store.head().await.unwrap(), Instant::now() + PATIENCE)
        .await
        .unwrap();

    // Read at once: the read model has seen every deposit.
    for (account, expected) in [(1, 15_u64), (2, 7), (3, 0)] {
        let reply = node.dispatch(balance_of(account)).await;
        assert_eq!(
            reply.answer::<u64>().unwrap(),
            expected,
            "account {account}"
        );
    }
    runner.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_at_a_commands_position_sees_its_effect_under_concurrent_commands() {
    const ACCOUNTS: u32 = 4;
    const DEPOSITS: u64 = 25;
    let store = MemoryStore::new();
    let (node, runner) = bank(&store);

    // Each task deposits into an account of its own and, after each deposit, asks for the
    // balance at the deposit's position: it must see every deposit of its own so far, while
    // the other tasks' commands keep the read model busy.
    let tasks: Vec<_> = (1..=ACCOUNTS)
        .map(|account| {
            let node = node.clone();
            tokio::spawn(async move {
                let mut expected = 0;
                for amount in 1..=DEPOSITS {
                    let reply = node.dispatch(deposit_of(account, amount)).await;
                    reply.success().unwrap();
                    expected += amount;
                    let query = balance_of(account).with_read_after(&reply, PATIENCE);
                    assert!(
                        query.read_at().unwrap().is_some(),
                        "the deposit has a position"
                    );
                    let seen = node.dispatch(query).await.answer::<u64>().unwrap();
                    assert_eq!(
                        seen, expected,
                        "account {account} after depositing {amount}"
                    );
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    runner.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_at_a_position_not_reached_in_time_answers_a_service_timeout() {
    let store = MemoryStore::new();
    let (node, runner) = bank(&store);
    let reply = node.dispatch(deposit_of(1, 5)).await;
    let written = reply.position().unwrap();

    // A position no event has reached yet: the read model cannot get there.
    let within = Duration::from_millis(20);
    let query = balance_of(1).with_read_at(written + 1_000, within);
    let id = query.id().to_owned();
    let reply = node.dispatch(query).await;
    assert_eq!(
        reply.response(),
        Some(&Response::ServiceTimeout {
            service: "balance".into(),
            message_id: id,
            timeout: within,
        })
    );
    assert!(matches!(reply.answer::<u64>(), Err(ReplyError::Timeout(_))));

    // Once its runner stopped, a read model cannot catch up: another node may.
    runner.stop().await.unwrap();
    let reply = node
        .dispatch(balance_of(1).with_read_at(written + 1_000, PATIENCE))
        .await;
    assert!(
        matches!(reply.answer::<u64>(), Err(ReplyError::NoNodes(_))),
        "{:?}",
        reply.response()
    );
    // An eventual read still answers what the read model holds.
    assert_eq!(
        node.dispatch(balance_of(1)).await.answer::<u64>().unwrap(),
        5
    );
}

#[tokio::test]
async fn a_query_whose_read_at_is_unreadable_is_a_validation_error() {
    let store = MemoryStore::new();
    let (node, runner) = bank(&store);
    let query = balance_of(1).assign(switchyard_projections::READ_AT_ASSIGN, "soon");
    let reply = node.dispatch(query).await;
    assert!(
        matches!(reply.answer::<u64>(), Err(ReplyError::Validation(_))),
        "{:?}",
        reply.response()
    );
    let _: Message = reply;
    runner.stop().await.unwrap();
}
