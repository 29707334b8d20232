//! Subscriptions woken by `LISTEN/NOTIFY` (feature `projections`): the public suite, and the
//! global order kept when an older transaction commits last, with events or without.

use std::time::Duration;

use switchyard_aggregates::store::{EventAppender, ExpectedVersion, GlobalReader, RecordedEvent};
use switchyard_projections::Subscription;

use crate::global_order::append_raw;
use crate::support::{self, event, meta, raw_client, store, url};

switchyard_projections::subscription_conformance!(async { support::store().await }, wakes);

/// The longest a test waits for what should come at once.
const PATIENCE: Duration = Duration::from_secs(30);

async fn next(subscription: &mut Subscription) -> RecordedEvent {
    tokio::time::timeout(PATIENCE, subscription.next())
        .await
        .expect("the subscription hands out the next event")
        .unwrap()
}

/// Nothing is handed out for a while.
async fn holds_back(subscription: &mut Subscription) {
    let next = tokio::time::timeout(Duration::from_millis(300), subscription.next()).await;
    assert!(next.is_err(), "nothing may be handed out yet, got {next:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_transaction_that_commits_last_is_not_skipped() {
    let store = store().await;
    let mut subscription = Subscription::builder(store.clone()).build().await.unwrap();
    assert!(subscription.is_woken_by_store());
    let older = raw_client(&url(), store.schema()).await;
    older.batch_execute("BEGIN").await.unwrap();
    // The older transaction takes its position first...
    append_raw(&older, "account-a", "a").await;
    // ...a newer one takes a later position and commits, notifying.
    store
        .append(
            "account-b",
            ExpectedVersion::NoStream,
            vec![event("b")],
            meta("b"),
        )
        .await
        .unwrap();
    // Handing out B now would skip A: held back.
    holds_back(&mut subscription).await;
    older.batch_execute("COMMIT").await.unwrap();
    let a = next(&mut subscription).await;
    let b = next(&mut subscription).await;
    assert_eq!((&*a.stream, &*b.stream), ("account-a", "account-b"));
    assert!(a.position < b.position);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_without_events_delays_the_wake_up_and_never_loses_it() {
    let store = store().await;
    let mut subscription = Subscription::builder(store.clone()).build().await.unwrap();
    let older = raw_client(&url(), store.schema()).await;
    older.batch_execute("BEGIN").await.unwrap();
    // A transaction id, older than the append's, and no event: its end sends no notification.
    older
        .batch_execute("SELECT pg_current_xact_id()")
        .await
        .unwrap();
    store
        .append(
            "account-b",
            ExpectedVersion::NoStream,
            vec![event("b")],
            meta("b"),
        )
        .await
        .unwrap();
    holds_back(&mut subscription).await;
    older.batch_execute("COMMIT").await.unwrap();
    assert_eq!(&*next(&mut subscription).await.stream, "account-b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_head_is_the_readable_end_of_the_order() {
    let store = store().await;
    assert_eq!(store.head().await.unwrap(), 0);
    store
        .append(
            "account-a",
            ExpectedVersion::NoStream,
            vec![event("a")],
            meta("a"),
        )
        .await
        .unwrap();
    let a = store.read_all(0, 10).await.unwrap().pop().unwrap();
    assert_eq!(store.head().await.unwrap(), a.position);
    let older = raw_client(&url(), store.schema()).await;
    older.batch_execute("BEGIN").await.unwrap();
    append_raw(&older, "account-b", "b").await;
    store
        .append(
            "account-c",
            ExpectedVersion::NoStream,
            vec![event("c")],
            meta("c"),
        )
        .await
        .unwrap();
    // C is committed but behind B, still running: not readable, not in the head.
    assert_eq!(store.head().await.unwrap(), a.position);
    older.batch_execute("COMMIT").await.unwrap();
    let c = store.read_all(0, 10).await.unwrap().pop().unwrap();
    assert_eq!(store.head().await.unwrap(), c.position);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_notifies_the_listeners_of_every_process() {
    use futures::StreamExt;

    let store = store().await;
    // A listener of another process, on a plain connection.
    let (client, mut connection) = tokio_postgres::connect(&url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    let (notified, mut notifications) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(message)) = messages.next().await {
            if let tokio_postgres::AsyncMessage::Notification(n) = message {
                let _ = notified.send((n.channel().to_owned(), n.payload().to_owned()));
            }
        }
    });
    client
        .batch_execute("LISTEN switchyard_events")
        .await
        .unwrap();
    store
        .append(
            "account-a",
            ExpectedVersion::NoStream,
            vec![event("a")],
            meta("a"),
        )
        .await
        .unwrap();
    let (channel, payload) = tokio::time::timeout(PATIENCE, notifications.recv())
        .await
        .expect("the append is notified")
        .unwrap();
    assert_eq!(
        (channel.as_str(), payload.as_str()),
        ("switchyard_events", store.schema())
    );
}
