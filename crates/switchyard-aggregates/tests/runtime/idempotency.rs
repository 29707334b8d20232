//! A message processed once is answered as the first time, and never runs again.

use std::sync::Arc;

use switchyard_aggregates::AggregateRuntime;
use switchyard_aggregates::repo::Repo;
use switchyard_aggregates::store::{GlobalReader as _, MemoryStore};
use switchyard_messaging::{Message, Response};

use crate::fixture::*;

#[tokio::test]
async fn a_repeated_message_is_answered_as_the_first_time() {
    let bank = bank();
    bank.node.dispatch(opening("i-1")).await;
    let deposit = command("deposit", "i-1", 5).with_id("dep-1");
    let first = bank.node.dispatch(deposit.clone()).await;
    let second = bank.node.dispatch(deposit).await;
    assert_eq!(first.response(), Some(&ok_at(1)));
    assert_eq!(second.response(), first.response());
    assert_eq!(stream_len(&bank.store, "i-1").await, 2);
}

#[tokio::test]
async fn a_retried_creation_answers_created() {
    let bank = bank();
    let open = opening("i-2").with_id("open-1");
    let first = bank.node.dispatch(open.clone()).await;
    assert_eq!(first.response(), Some(&created("i-2", 0)));
    assert_eq!(
        bank.node.dispatch(open.clone()).await.response(),
        Some(&created("i-2", 0))
    );
    bank.accounts.runtime().unload("i-2").await;
    assert_eq!(
        bank.node.dispatch(open).await.response(),
        Some(&created("i-2", 0))
    );
}

#[tokio::test]
async fn ids_older_than_the_window_are_found_in_the_store_after_a_reload() {
    const WINDOW: usize = 4;
    let store = MemoryStore::new();
    let repo = Repo::event_sourced(Arc::new(store.clone())).with_processed_capacity(WINDOW);
    let bank = bank_with(store, AggregateRuntime::new(repo));
    bank.node.dispatch(opening("i-3")).await;
    // N + 1 commands: the oldest falls out of the in-memory window.
    let deposits: Vec<_> = (0..=WINDOW)
        .map(|n| command("deposit", "i-3", 1).with_id(format!("dep-{n}")))
        .collect();
    for deposit in &deposits {
        bank.node.dispatch(deposit.clone()).await;
    }
    assert_eq!(stream_len(&bank.store, "i-3").await, WINDOW + 2);

    bank.accounts.runtime().unload("i-3").await;
    let again = bank.node.dispatch(deposits[0].clone()).await;
    assert_eq!(
        again.response(),
        Some(&ok_at(1)),
        "answered with the first version"
    );
    assert_eq!(
        stream_len(&bank.store, "i-3").await,
        WINDOW + 2,
        "nothing ran again"
    );

    // Still in memory, without a reload, too.
    let again = bank.node.dispatch(deposits[0].clone()).await;
    assert_eq!(again.response(), Some(&ok_at(1)));
    assert_eq!(balance_of(&bank, "i-3").await, (WINDOW + 1) as u64);
}

#[tokio::test]
async fn messages_without_an_id_are_all_processed() {
    let bank = bank();
    bank.node.dispatch(opening("e-1")).await;
    for expected in 1..=3 {
        let reply = bank
            .node
            .dispatch(command("deposit", "e-1", 1).with_id(""))
            .await;
        assert_eq!(reply.response(), Some(&ok_at(expected)));
    }
    // Also after a reload, when the ids come from the recorded events.
    bank.accounts.runtime().unload("e-1").await;
    let reply = bank
        .node
        .dispatch(command("deposit", "e-1", 1).with_id(""))
        .await;
    assert_eq!(reply.response(), Some(&ok_at(4)));
    assert_eq!(balance_of(&bank, "e-1").await, 4);
}

#[tokio::test]
async fn a_retried_creation_without_an_id_creates_one_aggregate() {
    let bank = bank();
    let open = Message::new("open_generated").with_request(&Open {
        account: String::new(),
        owner: "ada".into(),
    });
    let first = bank.node.dispatch(open.clone()).await;
    let Some(Response::Created { id, version }) = first.response().cloned() else {
        panic!("expected a creation, got {:?}", first.response());
    };
    assert_eq!(id, open.id(), "named after the message");
    let retried = bank.node.dispatch(open).await;
    assert_eq!(
        retried.response(),
        Some(&Response::Created {
            id: id.clone(),
            version
        }),
        "answered as the first attempt"
    );
    assert_eq!(
        bank.store.read_all(0, 100).await.unwrap().len(),
        1,
        "one aggregate"
    );
}

#[tokio::test]
async fn an_id_found_in_the_store_is_answered_as_the_first_time_whatever_the_service() {
    let store = MemoryStore::new();
    // A window of one id: every repeat below is found in the store.
    let repo = Repo::event_sourced(Arc::new(store.clone())).with_processed_capacity(1);
    let bank = bank_with(store, AggregateRuntime::new(repo));
    let dispatch = |message: Message| bank.node.dispatch(message);

    dispatch(opening("k").with_id("open-k")).await;
    dispatch(command("deposit", "k", 1).with_id("dep-k")).await;
    dispatch(command("deposit", "k", 1).with_id("later-k")).await;
    // A creation service, but the message was a deposit: it did not create the aggregate.
    let again = dispatch(opening("k").with_id("dep-k")).await;
    assert_eq!(again.response(), Some(&ok_at(1)));
    // Not a creation service, but the message created the aggregate.
    let again = dispatch(command("deposit_or_open", "k", 1).with_id("open-k")).await;
    assert_eq!(again.response(), Some(&created("k", 0)));

    // A creation of two events, found by its last one.
    dispatch(command("open_funded", "f", 5).with_id("open-f")).await;
    dispatch(command("deposit", "f", 1).with_id("later-f")).await;
    let again = dispatch(command("deposit_or_open", "f", 1).with_id("open-f")).await;
    assert_eq!(again.response(), Some(&created("f", 1)));
    assert_eq!(balance_of(&bank, "f").await, 6, "nothing ran again");
    assert_eq!(balance_of(&bank, "k").await, 2, "nothing ran again");
}

#[tokio::test]
async fn a_command_that_appends_never_looks_its_id_up_in_the_store() {
    use std::sync::atomic::Ordering;
    const WINDOW: usize = 3;
    let faulty = crate::faulty::Faulty::default();
    let repo = Repo::event_sourced(Arc::new(faulty.clone())).with_processed_capacity(WINDOW);
    let bank = bank_with(faulty.inner.clone(), AggregateRuntime::new(repo));
    let lookups = || faulty.lookups.load(Ordering::SeqCst);
    bank.node.dispatch(opening("w-1")).await;
    // Twice the window: it drops ids, and new ones still cost no look-up.
    for n in 1..2 * WINDOW {
        bank.node
            .dispatch(command("deposit", "w-1", 1).with_id(format!("w-{n}")))
            .await;
    }
    assert_eq!(
        lookups(),
        0,
        "the window dropped ids, and appends were not looked up"
    );
    // Reloaded, the window is rebuilt from the tail of the stream: no look-up either.
    bank.accounts.runtime().unload("w-1").await;
    bank.node
        .dispatch(command("deposit", "w-1", 1).with_id("w-after-reload"))
        .await;
    assert_eq!(lookups(), 0);
    // A decision that appends nothing cannot be refused by the store: that one is looked up.
    bank.node
        .dispatch(command("balance", "w-1", 0).with_id("w-read"))
        .await;
    assert_eq!(
        lookups(),
        1,
        "a read of an aggregate whose window dropped ids"
    );
    assert_eq!(balance_of(&bank, "w-1").await, 2 * WINDOW as u64);
}

#[tokio::test]
async fn a_repeat_the_window_dropped_is_refused_by_the_store_and_answered_as_the_first_time() {
    use std::sync::atomic::Ordering;
    const WINDOW: usize = 2;
    let faulty = crate::faulty::Faulty::default();
    let repo = Repo::event_sourced(Arc::new(faulty.clone())).with_processed_capacity(WINDOW);
    let bank = bank_with(faulty.inner.clone(), AggregateRuntime::new(repo));
    let lookups = || faulty.lookups.load(Ordering::SeqCst);
    bank.node.dispatch(opening("r-1").with_id("open-r")).await;
    let first = command("deposit", "r-1", 5).with_id("dep-r");
    assert_eq!(
        bank.node.dispatch(first.clone()).await.response(),
        Some(&ok_at(1))
    );
    for n in 0..=WINDOW {
        bank.node
            .dispatch(command("deposit", "r-1", 1).with_id(format!("later-{n}")))
            .await;
    }
    let length = stream_len(&bank.store, "r-1").await;

    // Still loaded, its window no longer holds `dep-r`: the deposit runs, the store refuses it.
    let again = bank.node.dispatch(first.clone()).await;
    assert_eq!(
        again.response(),
        Some(&ok_at(1)),
        "answered as the first time"
    );
    assert_eq!(
        again.aggregate_meta().version,
        Some(length as i64 - 1),
        "at the aggregate's current version"
    );
    // A creation refused likewise is answered `Created`, through whichever service it came.
    let reopened = command("deposit_or_open", "r-1", 1).with_id("open-r");
    assert_eq!(
        bank.node.dispatch(reopened).await.response(),
        Some(&created("r-1", 0))
    );
    assert_eq!(
        stream_len(&bank.store, "r-1").await,
        length,
        "nothing ran again"
    );
    assert_eq!(
        lookups(),
        0,
        "found by the store's refusal, not by a look-up first"
    );
    // The aggregate went on with the state it had: the refused decisions were discarded.
    assert_eq!(balance_of(&bank, "r-1").await, 5 + WINDOW as u64 + 1);
    let next = bank
        .node
        .dispatch(command("deposit", "r-1", 1).with_id("after-r"))
        .await;
    assert_eq!(next.response(), Some(&ok_at(length as i64)));
}

#[tokio::test]
async fn a_repeat_is_answered_as_the_first_time_without_the_idempotency_lookup() {
    let store = MemoryStore::new();
    let repo = Repo::event_sourced(Arc::new(store.clone())).with_processed_capacity(1);
    let runtime = AggregateRuntime::builder(repo)
        .idempotency_lookup(false)
        .build();
    let bank = bank_with(store, runtime);
    bank.node.dispatch(opening("n-1")).await;
    let first = command("deposit", "n-1", 5).with_id("dep-n");
    bank.node.dispatch(first.clone()).await;
    bank.node
        .dispatch(command("deposit", "n-1", 1).with_id("later-n"))
        .await;
    let again = bank.node.dispatch(first).await;
    assert_eq!(again.response(), Some(&ok_at(1)));
    assert_eq!(balance_of(&bank, "n-1").await, 6, "nothing ran again");
}
