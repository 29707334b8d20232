//! Commands to one aggregate run in order; different aggregates run side by side.

use std::collections::HashSet;
use std::sync::Arc;

use switchyard_aggregates::repo::Repo;
use switchyard_aggregates::store::MemoryStore;
use switchyard_aggregates::{AggregateRuntime, MessageHandler};
use switchyard_messaging::Response;

use crate::fixture::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_commands_to_one_aggregate_get_versions_without_gaps() {
    let bank = bank();
    bank.node.dispatch(opening("hot")).await;
    let calls: Vec<_> = (0..1_000).map(|_| bank.spawn_deposit("hot", 1)).collect();
    let mut versions = HashSet::new();
    for call in calls {
        match call.await.unwrap().response() {
            Some(Response::OkAt { version, .. }) => assert!(versions.insert(*version)),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(versions, (1..=1_000).collect::<HashSet<i64>>());
    assert_eq!(stream_len(&bank.store, "hot").await, 1_001);
    assert_eq!(balance_of(&bank, "hot").await, 1_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_aggregates_in_parallel() {
    let bank = bank();
    let calls: Vec<_> = (0..10_000)
        .map(|n| {
            let node = bank.node.clone();
            tokio::spawn(async move { node.dispatch(opening(&format!("p-{n}"))).await })
        })
        .collect();
    for (n, call) in calls.into_iter().enumerate() {
        let reply = call.await.unwrap();
        assert_eq!(reply.response(), Some(&created(&format!("p-{n}"), 0)));
    }
    assert_eq!(bank.accounts.runtime().live_count(), 10_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runtimes_sharing_a_store_retry_on_conflict() {
    let store = MemoryStore::new();
    let first = bank_with(
        store.clone(),
        AggregateRuntime::new(Repo::event_sourced(Arc::new(store.clone()))),
    );
    let second = bank_with(
        store.clone(),
        AggregateRuntime::new(Repo::event_sourced(Arc::new(store.clone()))),
    );
    first.node.dispatch(opening("shared")).await;
    // Both load the aggregate at version 0.
    assert_eq!(balance_of(&first, "shared").await, 0);
    assert_eq!(balance_of(&second, "shared").await, 0);
    assert_eq!(
        first
            .node
            .dispatch(command("deposit", "shared", 5))
            .await
            .response(),
        Some(&ok_at(1))
    );
    // The second runtime's state is stale: its append conflicts, it reloads and decides again.
    assert_eq!(
        second
            .node
            .dispatch(command("deposit", "shared", 1))
            .await
            .response(),
        Some(&ok_at(2))
    );
    assert_eq!(balance_of(&second, "shared").await, 6);
    assert_eq!(
        balance_of(&first, "shared").await,
        5,
        "first is stale until it reloads"
    );
    first.accounts.runtime().unload("shared").await;
    assert_eq!(balance_of(&first, "shared").await, 6);

    let strict = bank_with(
        store.clone(),
        AggregateRuntime::builder(Repo::event_sourced(Arc::new(store.clone())))
            .conflict_retries(0)
            .build(),
    );
    assert_eq!(balance_of(&strict, "shared").await, 6);
    second.node.dispatch(command("deposit", "shared", 1)).await;
    let reply = strict.node.dispatch(command("deposit", "shared", 1)).await;
    assert_eq!(
        reply.response(),
        Some(&Response::Conflict {
            expected: 2,
            actual: Some(3)
        })
    );
}

#[tokio::test]
async fn a_command_queued_behind_not_found_sees_an_aggregate_another_runtime_created() {
    let faulty = crate::faulty::Faulty::default();
    let this = bank_with(
        faulty.inner.clone(),
        AggregateRuntime::new(Repo::event_sourced(Arc::new(faulty.clone()))),
    );
    let other = bank_with(
        faulty.inner.clone(),
        AggregateRuntime::new(Repo::event_sourced(Arc::new(faulty.inner.clone()))),
    );
    // This runtime learns that `n-1` does not exist, and holds there while a second command
    // queues behind the first.
    faulty.loaded.hold();
    let first = tokio::spawn({
        let node = this.node.clone();
        async move { node.dispatch(command("deposit", "n-1", 1)).await }
    });
    faulty.loaded.until_waiting(1).await;
    let second = tokio::spawn({
        let node = this.node.clone();
        async move { node.dispatch(command("deposit", "n-1", 2)).await }
    });
    // On this one-thread runtime, the second dispatch starts waiting for the aggregate while
    // this test yields (the first holds it, so it cannot answer before the release).
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    assert!(!second.is_finished());
    // Meanwhile the other runtime creates it.
    other.node.dispatch(opening("n-1")).await;
    faulty.loaded.release();

    let first = first.await.unwrap();
    assert_eq!(
        first.response(),
        Some(&Response::NotFound { id: "n-1".into() })
    );
    let second = second.await.unwrap();
    assert_eq!(
        second.response(),
        Some(&ok_at(1)),
        "the store is asked again"
    );
}

#[tokio::test]
async fn a_message_recorded_by_another_runtime_is_not_recorded_again() {
    let store = MemoryStore::new();
    let runtime = || AggregateRuntime::new(Repo::event_sourced(Arc::new(store.clone())));
    let first = bank_with(store.clone(), runtime());
    let second = bank_with(store.clone(), runtime());
    first.node.dispatch(opening("twice")).await;
    assert_eq!(balance_of(&second, "twice").await, 0, "loaded on both");
    let deposit = command("deposit", "twice", 5).with_id("dep-twice");
    assert_eq!(
        first.node.dispatch(deposit.clone()).await.response(),
        Some(&ok_at(1))
    );
    // The second runtime's window does not know the id; its stale append conflicts, and the
    // reload finds the id.
    assert_eq!(
        second.node.dispatch(deposit).await.response(),
        Some(&ok_at(1))
    );
    assert_eq!(stream_len(&store, "twice").await, 2);
    assert_eq!(balance_of(&second, "twice").await, 5);
}

/// Two runtimes over one store, as two processes sharing a database without a cluster: `stale`
/// and `fresh` have the aggregate loaded when `writer` changes it; only `fresh` refreshes before
/// answering a decision that appends nothing.
struct SharedStore {
    writer: Bank,
    stale: Bank,
    fresh: Bank,
}

fn shared_store(handler: impl Fn(&MemoryStore) -> MessageHandler<Account>) -> SharedStore {
    let store = MemoryStore::new();
    SharedStore {
        writer: bank_served_by(store.clone(), handler(&store)),
        stale: bank_served_by(store.clone(), handler(&store)),
        fresh: bank_served_by(store.clone(), handler(&store).refresh_before_read(true)),
    }
}

async fn a_read_only_command_answers_fresh_state_only_with_the_refresh(shared: SharedStore) {
    let SharedStore {
        writer,
        stale,
        fresh,
    } = shared;
    writer.node.dispatch(opening("shared")).await;
    assert_eq!(balance_of(&stale, "shared").await, 0);
    assert_eq!(balance_of(&fresh, "shared").await, 0);
    writer.node.dispatch(command("deposit", "shared", 5)).await;

    // Without the option the loaded copy answers; with it, the store's state does.
    assert_eq!(balance_of(&stale, "shared").await, 0);
    assert_eq!(balance_of(&fresh, "shared").await, 5);
    // A rejection appends nothing either: decided again on the fresh state, it goes through.
    let stale_withdraw = stale.node.dispatch(command("withdraw", "shared", 4)).await;
    assert_eq!(
        stale_withdraw.response(),
        Some(&Response::error("insufficient funds"))
    );
    let fresh_withdraw = fresh.node.dispatch(command("withdraw", "shared", 4)).await;
    assert_eq!(fresh_withdraw.response(), Some(&ok_at(2)));
    assert_eq!(balance_of(&fresh, "shared").await, 1);
    // The writer, not refreshing, still answers from its own copy.
    assert_eq!(balance_of(&writer, "shared").await, 5);
}

#[tokio::test]
async fn refresh_before_read_answers_from_the_store_event_sourced() {
    let shared = shared_store(|store| MessageHandler::event_sourced(store.clone()));
    a_read_only_command_answers_fresh_state_only_with_the_refresh(shared).await;
}

#[tokio::test]
async fn refresh_before_read_answers_from_the_store_state_based() {
    let shared = shared_store(|store| MessageHandler::state_based(store.clone()));
    a_read_only_command_answers_fresh_state_only_with_the_refresh(shared).await;
}

#[tokio::test]
async fn commands_waiting_for_an_aggregate_unloaded_before_them_run_in_the_order_they_came() {
    let (faulty, bank) = crate::faulty::faulty_bank();
    let runtime = bank.accounts.runtime().clone();
    bank.node.dispatch(opening("queue")).await;
    assert!(runtime.unload("queue").await);
    // The first deposit loads the aggregate and holds it there; an unload and then forty
    // deposits wait behind it, each in turn (this one-thread runtime runs each spawned call
    // until it waits).
    faulty.loads.hold();
    let first = bank.spawn_deposit("queue", 1);
    faulty.loads.until_waiting(1).await;
    let unload = tokio::spawn({
        let runtime = runtime.clone();
        async move { runtime.unload("queue").await }
    });
    tokio::task::yield_now().await;
    let mut behind = Vec::new();
    for amount in 2..42 {
        behind.push(bank.spawn_deposit("queue", amount));
        tokio::task::yield_now().await;
    }
    faulty.loads.release();
    assert_eq!(first.await.unwrap().response(), Some(&ok_at(1)));
    assert!(
        unload.await.unwrap(),
        "it was unloaded between the first deposit and the rest"
    );
    for call in behind {
        let reply = call.await.unwrap();
        assert!(
            matches!(reply.response(), Some(Response::OkAt { .. })),
            "{reply:?}"
        );
    }
    let amounts: Vec<u64> = runtime
        .repo()
        .events("queue")
        .await
        .unwrap()
        .into_iter()
        .filter_map(|recorded| match recorded.event {
            AccountEvent::Deposited(amount) => Some(amount),
            _ => None,
        })
        .collect();
    assert_eq!(amounts, (1..42).collect::<Vec<u64>>(), "in the order sent");
}
