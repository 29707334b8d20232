//! The suite every event store runs to show that subscriptions follow its global order: catch
//! up then live, the head, the wake-up after each commit, filters, a slow consumer, concurrent
//! writers. [`subscription_conformance!`](crate::subscription_conformance!) generates one test
//! per check.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // A failed check fails loudly.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use switchyard_aggregates::store::{
    DeleteMode, EventMetadata, EventStore, ExpectedVersion, NewEvent, RecordedEvent,
};

use crate::Subscription;

/// The longest any check waits for something that should come at once: generous for a loaded
/// machine, never reached when the store keeps its contract.
const PATIENCE: Duration = Duration::from_secs(30);

fn event(event_type: &str, tag: u64) -> NewEvent {
    NewEvent {
        event_type: event_type.to_owned().into(),
        schema_version: 1,
        data: tag.to_be_bytes().to_vec().into(),
    }
}

fn meta(message_id: String) -> EventMetadata {
    EventMetadata {
        message_id,
        ..EventMetadata::default()
    }
}

/// Appends `count` events of type `event_type` to `stream`, one append each.
async fn append(store: &dyn EventStore, stream: &str, event_type: &str, count: u64) {
    for tag in 0..count {
        store
            .append(
                stream,
                ExpectedVersion::Any,
                vec![event(event_type, tag)],
                meta(String::new()),
            )
            .await
            .unwrap();
    }
}

/// The next event, within [`PATIENCE`].
async fn next(subscription: &mut Subscription) -> RecordedEvent {
    tokio::time::timeout(PATIENCE, subscription.next())
        .await
        .expect("the subscription hands out the next event at once")
        .unwrap()
}

/// Takes `count` events and checks their positions strictly increase.
async fn take(subscription: &mut Subscription, count: usize) -> Vec<RecordedEvent> {
    let mut events: Vec<RecordedEvent> = Vec::with_capacity(count);
    for _ in 0..count {
        let event = next(subscription).await;
        if let Some(last) = events.last() {
            assert!(
                last.position < event.position,
                "positions strictly increase"
            );
        }
        events.push(event);
    }
    events
}

/// The whole global order, read directly.
async fn everything(store: &dyn EventStore) -> Vec<RecordedEvent> {
    store.read_all(0, usize::MAX).await.unwrap()
}

/// Checks that no event comes within a short while: the subscription is caught up.
async fn nothing_more(subscription: &mut Subscription) {
    let more = tokio::time::timeout(Duration::from_millis(50), subscription.next()).await;
    assert!(more.is_err(), "nothing more to hand out, got {more:?}");
}

/// A subscription from the origin hands out the order as `read_all` gives it, in pages, then
/// events committed after it caught up.
pub async fn catches_up_then_follows_live_commits(store: Arc<dyn EventStore>) {
    append(&*store, "account-1", "opened", 7).await;
    append(&*store, "order-1", "placed", 6).await;
    let mut subscription = Subscription::builder(store.clone())
        .page_size(4)
        .build()
        .await
        .unwrap();
    let caught_up = take(&mut subscription, 13).await;
    assert_eq!(
        caught_up,
        everything(&*store).await,
        "the order as read_all gives it"
    );
    nothing_more(&mut subscription).await;
    assert!(subscription.is_caught_up());

    let writer = {
        let store = store.clone();
        tokio::spawn(async move { append(&*store, "account-2", "opened", 9).await })
    };
    let live = take(&mut subscription, 9).await;
    writer.await.unwrap();
    assert!(live.iter().all(|e| &*e.stream == "account-2"));
    assert_eq!(
        live.iter().map(|e| e.version).collect::<Vec<_>>(),
        (0..9).collect::<Vec<_>>()
    );
    assert_eq!(subscription.position(), live[8].position);
}

/// From the head: only what is committed after `build`; after a position: what follows it.
pub async fn starts_at_the_head_or_after_a_position(store: Arc<dyn EventStore>) {
    assert_eq!(store.head().await.unwrap(), 0, "an empty store's head");
    append(&*store, "account-1", "opened", 5).await;
    let before = everything(&*store).await;
    assert_eq!(store.head().await.unwrap(), before[4].position);

    let mut from_head = Subscription::builder(store.clone())
        .from_head()
        .build()
        .await
        .unwrap();
    assert_eq!(from_head.position(), before[4].position);
    let mut after = Subscription::builder(store.clone())
        .after(before[1].position)
        .build()
        .await
        .unwrap();
    append(&*store, "account-1", "deposited", 1).await;
    let newest = everything(&*store).await.pop().unwrap();

    assert_eq!(next(&mut from_head).await, newest);
    let rest = take(&mut after, 4).await;
    assert_eq!(rest[..3], before[2..]);
    assert_eq!(rest[3], newest);
}

/// The store wakes subscriptions: its head moves after each commit, readable by then.
pub async fn wakes_subscriptions_after_each_commit(store: Arc<dyn EventStore>) {
    let mut head = store
        .watch_head()
        .expect("the store wakes subscriptions after each commit");
    for round in 0..3 {
        head.borrow_and_update();
        append(&*store, "account-1", "deposited", 1).await;
        tokio::time::timeout(PATIENCE, head.changed())
            .await
            .expect("a commit wakes the watcher")
            .unwrap();
        let last = everything(&*store).await.pop().unwrap();
        assert!(
            *head.borrow() >= last.position,
            "round {round}: the head covers the commit"
        );
    }
    let subscription = Subscription::builder(store).build().await.unwrap();
    assert!(subscription.is_woken_by_store());
}

/// Aggregate types and streams add up; event types narrow them.
pub async fn filters_by_aggregate_type_stream_and_event_type(store: Arc<dyn EventStore>) {
    append(&*store, "account-1", "opened", 2).await;
    append(&*store, "accounting-1", "opened", 2).await;
    append(&*store, "ledger", "posted", 2).await;
    append(&*store, "account-2", "closed", 2).await;
    append(&*store, "order-1", "opened", 2).await;

    let mut accounts = Subscription::builder(store.clone())
        .aggregate_type("account")
        .page_size(3)
        .build()
        .await
        .unwrap();
    let streams: Vec<String> = take(&mut accounts, 4)
        .await
        .iter()
        .map(|e| e.stream.to_string())
        .collect();
    assert_eq!(
        streams,
        ["account-1", "account-1", "account-2", "account-2"]
    );
    nothing_more(&mut accounts).await;
    let last = everything(&*store).await.pop().unwrap();
    assert_eq!(
        accounts.position(),
        last.position,
        "filtered events are passed"
    );

    let mut opened = Subscription::builder(store.clone())
        .aggregate_type("account")
        .stream("ledger")
        .stream("order-1")
        .event_type("opened")
        .event_type("posted")
        .build()
        .await
        .unwrap();
    let seen: Vec<(String, String)> = take(&mut opened, 6)
        .await
        .iter()
        .map(|e| (e.stream.to_string(), e.event_type.to_string()))
        .collect();
    let pair = |s: &str, t: &str| (s.to_owned(), t.to_owned());
    assert_eq!(
        seen,
        [
            pair("account-1", "opened"),
            pair("account-1", "opened"),
            pair("ledger", "posted"),
            pair("ledger", "posted"),
            pair("order-1", "opened"),
            pair("order-1", "opened"),
        ]
    );
    nothing_more(&mut opened).await;
}

/// Positions left free by a hard delete are passed over, while catching up and live.
pub async fn passes_over_the_gaps_of_hard_deletes(store: Arc<dyn EventStore>) {
    append(&*store, "account-1", "opened", 2).await;
    append(&*store, "account-gone", "opened", 3).await;
    append(&*store, "account-2", "opened", 2).await;
    let mut subscription = Subscription::builder(store.clone())
        .page_size(2)
        .build()
        .await
        .unwrap();
    store
        .delete_stream("account-gone", DeleteMode::Hard, ExpectedVersion::Any)
        .await
        .unwrap();
    let kept = take(&mut subscription, 4).await;
    assert!(kept.iter().all(|e| &*e.stream != "account-gone"));
    append(&*store, "account-gone", "opened", 1).await;
    append(&*store, "account-3", "opened", 1).await;
    store
        .delete_stream("account-gone", DeleteMode::Hard, ExpectedVersion::Any)
        .await
        .unwrap();
    let live = next(&mut subscription).await;
    assert_eq!(&*live.stream, "account-3");
    nothing_more(&mut subscription).await;
}

/// A consumer that stops holds at most one page, and writers finish without waiting for it.
pub async fn a_slow_consumer_holds_one_page_and_never_holds_up_writers(store: Arc<dyn EventStore>) {
    const PAGE: usize = 8;
    let mut subscription = Subscription::builder(store.clone())
        .page_size(PAGE)
        .build()
        .await
        .unwrap();
    append(&*store, "account-1", "deposited", 3).await;
    next(&mut subscription).await;
    // The consumer stops here; the writers go on, and finish.
    append(&*store, "account-1", "deposited", 200).await;
    assert!(subscription.buffered() <= PAGE);
    let mut seen = 1;
    while seen < 203 {
        next(&mut subscription).await;
        seen += 1;
        assert!(subscription.buffered() <= PAGE, "one page at most");
    }
    nothing_more(&mut subscription).await;
}

/// Writers on several tasks append concurrently, in batches, to shared and own streams, while a
/// subscription follows: it sees each event exactly once, in strictly increasing position, and
/// the order it saw is the store's.
pub async fn concurrent_writers_are_seen_once_in_order(store: Arc<dyn EventStore>) {
    const WRITERS: u64 = 4;
    const APPENDS: u64 = 25;
    let mut subscription = Subscription::builder(store.clone())
        .page_size(16)
        .build()
        .await
        .unwrap();
    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut written = 0;
                for append in 0..APPENDS {
                    // Batches of 1 to 3 events, half to a shared stream.
                    let size = 1 + (writer + append) % 3;
                    let stream = if append % 2 == 0 {
                        "account-shared".to_owned()
                    } else {
                        format!("account-{writer}")
                    };
                    let events = (0..size).map(|i| event("deposited", i)).collect();
                    store
                        .append(
                            &stream,
                            ExpectedVersion::Any,
                            events,
                            meta(format!("{writer}-{append}")),
                        )
                        .await
                        .unwrap();
                    written += size;
                    tokio::task::yield_now().await;
                }
                written
            })
        })
        .collect();
    let mut expected = 0;
    for writer in writers {
        expected += writer.await.unwrap();
    }
    let seen = take(&mut subscription, usize::try_from(expected).unwrap()).await;
    nothing_more(&mut subscription).await;
    let positions: BTreeSet<u64> = seen.iter().map(|e| e.position).collect();
    assert_eq!(positions.len(), seen.len(), "each event once");
    assert_eq!(seen, everything(&*store).await, "the store's order");
}

/// Generates one test per check of the subscription suite, in a module
/// `subscription_conformance`. `$make` is an expression evaluating to a future of a new, empty
/// event store (any `EventStore`), awaited once per test.
///
/// `wakes_subscriptions_after_each_commit` is generated only when `wakes` is given: a store
/// that cannot wake subscriptions (they poll it) leaves it out.
///
/// ```
/// use switchyard_aggregates::store::MemoryStore;
///
/// switchyard_projections::subscription_conformance!(async { MemoryStore::new() }, wakes);
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! subscription_conformance {
    ($make:expr) => {
        $crate::subscription_conformance!(@checks $make);
    };
    ($make:expr, wakes) => {
        $crate::subscription_conformance!(@checks $make, wakes_subscriptions_after_each_commit);
    };
    (@checks $make:expr $(, $extra:ident)*) => {
        #[cfg(test)]
        mod subscription_conformance {
            #[allow(unused_imports)]
            use super::*;

            macro_rules! check {
                ($name:ident) => {
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $name() {
                        let store: ::std::sync::Arc<
                            dyn ::switchyard_aggregates::store::EventStore,
                        > = ::std::sync::Arc::new($make.await);
                        $crate::subscription_conformance::$name(store).await;
                    }
                };
            }

            check!(catches_up_then_follows_live_commits);
            check!(starts_at_the_head_or_after_a_position);
            check!(filters_by_aggregate_type_stream_and_event_type);
            check!(passes_over_the_gaps_of_hard_deletes);
            check!(a_slow_consumer_holds_one_page_and_never_holds_up_writers);
            check!(concurrent_writers_are_seen_once_in_order);
            $(check!($extra);)*
        }
    };
}
