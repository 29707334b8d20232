//! A store without a wake-up: subscriptions poll it, and keep every guarantee.

use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use switchyard_aggregates::store::{
    AppendError, DeleteMode, EventAppender, EventDeleter, EventMetadata, EventReader,
    ExpectedVersion, GlobalReader, MemoryStore, NewEvent, RecordedEvent, StoreError,
};
use switchyard_projections::Subscription;

/// The memory store with the provided `head` and `watch_head`: a scan, and no wake-up.
#[derive(Default)]
pub(crate) struct Unwoken(pub(crate) MemoryStore);

impl EventReader for Unwoken {
    fn has_stream<'a>(&'a self, stream: &'a str) -> BoxFuture<'a, Result<bool, StoreError>> {
        self.0.has_stream(stream)
    }

    fn read_stream<'a>(
        &'a self,
        stream: &'a str,
        from_version: i64,
        page_size: usize,
    ) -> BoxStream<'a, Result<Vec<RecordedEvent>, StoreError>> {
        self.0.read_stream(stream, from_version, page_size)
    }

    fn find_message<'a>(
        &'a self,
        stream: &'a str,
        message_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<i64>, StoreError>> {
        self.0.find_message(stream, message_id)
    }
}

impl EventAppender for Unwoken {
    fn append<'a>(
        &'a self,
        stream: &'a str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
        metadata: EventMetadata,
    ) -> BoxFuture<'a, Result<i64, AppendError>> {
        self.0.append(stream, expected, events, metadata)
    }
}

impl EventDeleter for Unwoken {
    fn delete_stream<'a>(
        &'a self,
        stream: &'a str,
        mode: DeleteMode,
        expected: ExpectedVersion,
    ) -> BoxFuture<'a, Result<(), AppendError>> {
        self.0.delete_stream(stream, mode, expected)
    }
}

impl GlobalReader for Unwoken {
    fn read_all(
        &self,
        from_position: u64,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<RecordedEvent>, StoreError>> {
        self.0.read_all(from_position, limit)
    }
}

switchyard_projections::subscription_conformance!(async { Unwoken::default() });

#[tokio::test]
async fn a_store_without_a_wake_up_is_polled_at_the_interval() {
    tokio::time::pause();
    let store = std::sync::Arc::new(Unwoken::default());
    let mut subscription = Subscription::builder(store.clone())
        .poll_interval(Duration::from_secs(5))
        .build()
        .await
        .unwrap();
    assert!(!subscription.is_woken_by_store());
    let next = tokio::spawn(async move { subscription.next().await.map(|e| e.position) });
    // Let it find the store empty and start waiting.
    tokio::time::sleep(Duration::from_secs(1)).await;
    store
        .append(
            "account-1",
            ExpectedVersion::Any,
            vec![NewEvent {
                event_type: "opened".into(),
                schema_version: 1,
                data: vec![].into(),
            }],
            EventMetadata::default(),
        )
        .await
        .unwrap();
    // Paused time moves on to the next poll by itself, once every task waits.
    assert_eq!(next.await.unwrap().unwrap(), 1);
}
