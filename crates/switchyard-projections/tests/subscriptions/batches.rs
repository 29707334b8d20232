//! `next_batch`: what is read, up to a bound, without waiting once there is one; an empty
//! batch when only filtered-out events were read.

use switchyard_aggregates::store::{
    EventAppender, EventMetadata, ExpectedVersion, MemoryStore, NewEvent,
};
use switchyard_projections::Subscription;

async fn append(store: &MemoryStore, stream: &str, count: usize) {
    let event = NewEvent {
        event_type: "happened".into(),
        schema_version: 1,
        data: vec![].into(),
    };
    let events = vec![event; count];
    store
        .append(
            stream,
            ExpectedVersion::Any,
            events,
            EventMetadata::default(),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn a_batch_holds_what_was_read_up_to_its_bound_in_order() {
    let store = MemoryStore::new();
    append(&store, "account-1", 5).await;
    let mut subscription = Subscription::builder(store.clone())
        .page_size(4)
        .build()
        .await
        .unwrap();
    let positions = |batch: Vec<_>| {
        batch
            .iter()
            .map(|e: &switchyard_aggregates::store::RecordedEvent| e.position)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        positions(subscription.next_batch(3).await.unwrap()),
        [1, 2, 3]
    );
    // The page's rest, without reading another.
    assert_eq!(positions(subscription.next_batch(3).await.unwrap()), [4]);
    assert_eq!(positions(subscription.next_batch(3).await.unwrap()), [5]);
    append(&store, "account-1", 2).await;
    assert_eq!(positions(subscription.next_batch(3).await.unwrap()), [6, 7]);
    assert_eq!(subscription.position(), 7);
}

#[tokio::test]
async fn a_read_of_filtered_out_events_only_is_an_empty_batch_past_them() {
    let store = MemoryStore::new();
    append(&store, "account-1", 1).await;
    append(&store, "order-1", 2).await;
    let mut subscription = Subscription::builder(store.clone())
        .aggregate_type("account")
        .page_size(1)
        .build()
        .await
        .unwrap();
    assert_eq!(subscription.next_batch(10).await.unwrap().len(), 1);
    assert!(subscription.next_batch(10).await.unwrap().is_empty());
    assert_eq!(subscription.position(), 2);
    assert!(subscription.next_batch(10).await.unwrap().is_empty());
    assert_eq!(subscription.position(), 3);
}
