//! A read that fails is reported once; the subscription stays where it stood.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

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
