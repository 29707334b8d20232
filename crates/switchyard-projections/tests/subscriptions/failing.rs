//! A read that fails is reported once; the subscription stays where it stood.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::future::{BoxFuture, FutureExt};
use switchyard_aggregates::store::{
    EventAppender, EventMetadata, ExpectedVersion, GlobalReader, MemoryStore, NewEvent,
    RecordedEvent, StoreError,
};
use switchyard_projections::{Subscription, SubscriptionError};

/// The memory store's global order, failing while `broken` is set.
struct Flaky {
    store: MemoryStore,
    broken: AtomicBool,
}

impl GlobalReader for Flaky {
    fn read_all(
        &self,
        from_position: u64,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<RecordedEvent>, StoreError>> {
        if self.broken.load(Ordering::SeqCst) {
            return async { Err(StoreError::backend("the disk is on fire")) }.boxed();
        }
        self.store.read_all(from_position, limit)
    }

    fn watch_head(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        self.store.watch_head()
    }
}

#[tokio::test]
async fn a_failed_read_is_retried_from_the_same_position() {
    let flaky = Arc::new(Flaky {
        store: MemoryStore::new(),
        broken: AtomicBool::new(false),
    });
    for tag in 0..4_u8 {
        let event = NewEvent {
            event_type: "deposited".into(),
            schema_version: 1,
            data: vec![tag].into(),
        };
        flaky
            .store
            .append(
                "account-1",
                ExpectedVersion::Any,
                vec![event],
                EventMetadata::default(),
            )
            .await
            .unwrap();
    }
    let reader: Arc<dyn GlobalReader> = flaky.clone();
    let mut subscription = Subscription::builder(reader)
        .page_size(2)
        .build()
        .await
        .unwrap();
    assert_eq!(subscription.next().await.unwrap().position, 1);
    assert_eq!(subscription.next().await.unwrap().position, 2);
    flaky.broken.store(true, Ordering::SeqCst);
    let failed = subscription.next().await.unwrap_err();
    assert!(
        matches!(failed, SubscriptionError::Read { after: 2, .. }),
        "{failed:?}"
    );
    assert_eq!(subscription.position(), 2);
    flaky.broken.store(false, Ordering::SeqCst);
    assert_eq!(subscription.next().await.unwrap().position, 3);
    assert_eq!(subscription.next().await.unwrap().position, 4);
}

#[tokio::test]
async fn a_failed_read_after_a_wake_up_is_retried_without_another_commit() {
    let flaky = Arc::new(Flaky {
        store: MemoryStore::new(),
        broken: AtomicBool::new(false),
    });
    let reader: Arc<dyn GlobalReader> = flaky.clone();
    let mut subscription = Subscription::builder(reader).build().await.unwrap();
    // Caught up on the empty store, then waiting (the wait is dropped, losing nothing).
    let waited = tokio::time::timeout(Duration::from_millis(50), subscription.next()).await;
    assert!(waited.is_err());
    assert!(subscription.is_caught_up());
    flaky.broken.store(true, Ordering::SeqCst);
    let event = NewEvent {
        event_type: "deposited".into(),
        schema_version: 1,
        data: vec![1].into(),
    };
    flaky
        .store
        .append(
            "account-1",
            ExpectedVersion::Any,
            vec![event],
            EventMetadata::default(),
        )
        .await
        .unwrap();
    assert!(subscription.next().await.is_err());
    flaky.broken.store(false, Ordering::SeqCst);
    let next = tokio::time::timeout(Duration::from_secs(30), subscription.next())
        .await
        .expect("the event the wake-up announced is read again at once");
    assert_eq!(next.unwrap().position, 1);
}
