//! Reading an aggregate's events back, decoded, with their metadata.

use futures::TryStreamExt;
use switchyard_aggregates::repo::Repo;
use switchyard_aggregates::store::{MemoryStore, NewEvent};
use switchyard_aggregates::{AggregateRuntime, MessageHandler, RepoError};
use switchyard_messaging::Message;

use crate::fixture::*;

/// An account opened with 10 (two events), then deposits of 1, 2, 3 and 4: six events.
async fn six_events() -> (Bank, Repo<Account>) {
    let bank = bank();
    let open = Message::new("open_funded")
        .with_aggregate_id("r-1")
        .with_id("m-open")
        .with_correlation_id("c-1")
        .with_request(&10_u64);
    assert_eq!(
        bank.node.dispatch(open).await.response(),
        Some(&created("r-1", 1))
    );
    for amount in 1..=4 {
        let deposit = command("deposit", "r-1", amount).with_id(format!("m-{amount}"));
        bank.node.dispatch(deposit).await;
    }
    let repo = bank.accounts.runtime().repo().clone().with_page_size(4);
    (bank, repo)
}

fn expected_events() -> Vec<AccountEvent> {
    vec![
        AccountEvent::Opened {
            owner: "ada".into(),
        },
        AccountEvent::Deposited(10),
        AccountEvent::Deposited(1),
        AccountEvent::Deposited(2),
        AccountEvent::Deposited(3),
        AccountEvent::Deposited(4),
    ]
}

#[tokio::test]
async fn events_come_back_decoded_with_their_metadata() {
    let (_bank, repo) = six_events().await;
    let events = repo.events("r-1").await.unwrap();
    let decoded: Vec<AccountEvent> = events.iter().map(|e| e.event.clone()).collect();
    assert_eq!(decoded, expected_events());
    let versions: Vec<i64> = events.iter().map(|e| e.version).collect();
    assert_eq!(versions, [0, 1, 2, 3, 4, 5]);
    assert!(events.windows(2).all(|w| w[0].position < w[1].position));
    let first = &events[0];
    assert_eq!(&*first.stream, "account-r-1");
    assert_eq!(&*first.event_type, "Opened");
    assert_eq!(first.schema_version, 1);
    assert_eq!(first.metadata.message_id, "m-open");
    assert_eq!(first.metadata.correlation_id, "c-1");
    assert_eq!(first.metadata.causation_id, "c-1");
    assert_eq!(events[5].metadata.message_id, "m-4");
    assert!(repo.events("nobody").await.unwrap().is_empty());
}

#[tokio::test]
async fn events_are_read_in_pages_and_as_a_stream() {
    let (_bank, repo) = six_events().await;
    let first = repo.events_page("r-1", 0, 4).await.unwrap();
    assert_eq!(first.len(), 4);
    let next = first.last().unwrap().version + 1;
    let rest = repo.events_page("r-1", next, 4).await.unwrap();
    let paged: Vec<AccountEvent> = first.into_iter().chain(rest).map(|e| e.event).collect();
    assert_eq!(paged, expected_events());

    // The repo reads four at a time; the stream goes on past the first page.
    let streamed: Vec<AccountEvent> = repo
        .event_stream("r-1", 1)
        .map_ok(|e| e.event)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(streamed, expected_events()[1..]);
}

#[tokio::test]
async fn pages_shorter_than_asked_for_do_not_end_the_stream() {
    let faulty = crate::faulty::Faulty::default();
    let repo =
        Repo::<Account>::event_sourced(std::sync::Arc::new(faulty.clone())).with_page_size(4);
    let bank = bank_with(faulty.inner.clone(), AggregateRuntime::new(repo.clone()));
    bank.node
        .dispatch(
            Message::new("open_funded")
                .with_aggregate_id("r-1")
                .with_request(&10_u64),
        )
        .await;
    for amount in 1..=4 {
        bank.node.dispatch(command("deposit", "r-1", amount)).await;
    }
    // The store answers in pages of at most three events, though the repo asks for four.
    *faulty.page_cap.lock().unwrap() = Some(3);

    let streamed: Vec<AccountEvent> = repo
        .event_stream("r-1", 0)
        .map_ok(|e| e.event)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(streamed, expected_events());
    let page: Vec<AccountEvent> = repo
        .events_page("r-1", 0, 5)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event)
        .collect();
    assert_eq!(page, expected_events()[..5]);
    assert!(repo.events_page("r-1", 0, 0).await.unwrap().is_empty());
}

#[tokio::test]
async fn an_event_that_does_not_decode_names_its_stream_and_version() {
    let store = MemoryStore::new();
    let repo = Repo::<Account>::event_sourced(store.clone());
    let opened = NewEvent {
        event_type: "Opened".into(),
        schema_version: 1,
        data: switchyard_messaging::codec::encode(&AccountEvent::Closed)
            .unwrap()
            .into(),
    };
    start_stream(&store, "bad", vec![opened, undecodable_event()]).await;
    match repo.events("bad").await {
        Err(RepoError::EventDecode {
            stream,
            version,
            event_type,
            ..
        }) => assert_eq!(
            (stream.as_str(), version, event_type.as_str()),
            ("account-bad", 1, "junk")
        ),
        other => panic!("expected EventDecode, got {other:?}"),
    }
}

#[tokio::test]
async fn a_state_based_aggregate_has_no_events_to_read() {
    let accounts = MessageHandler::<Account>::state_based(MemoryStore::new());
    match accounts.runtime().repo().events("any").await {
        Err(RepoError::NoEvents { aggregate }) => assert_eq!(aggregate, "account"),
        other => panic!("expected NoEvents, got {other:?}"),
    }
}
