//! A store whose appends can be made slow or failing.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use switchyard_aggregates::store::{
    AppendError, DeleteMode, EventAppender, EventDeleter, EventMetadata, EventReader,
    ExpectedVersion, GlobalReader, MemoryStore, NewEvent, RecordedEvent, StoreError,
};

/// Delegates to a memory store; appends wait `delay` and fail while `fail` is set.
#[derive(Clone, Default)]
pub(crate) struct Faulty {
    pub(crate) inner: MemoryStore,
    pub(crate) delay: Arc<Mutex<Option<Duration>>>,
    pub(crate) fail: Arc<Mutex<bool>>,
}

impl EventReader for Faulty {
    fn has_stream<'a>(&'a self, stream: &'a str) -> BoxFuture<'a, Result<bool, StoreError>> {
        self.inner.has_stream(stream)
    }
    fn read_stream<'a>(
        &'a self,
        stream: &'a str,
        from: i64,
        page: usize,
    ) -> BoxStream<'a, Result<Vec<RecordedEvent>, StoreError>> {
        self.inner.read_stream(stream, from, page)
    }
    fn find_message<'a>(
        &'a self,
        stream: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<i64>, StoreError>> {
        self.inner.find_message(stream, id)
    }
}

impl EventAppender for Faulty {
    fn append<'a>(
        &'a self,
        stream: &'a str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
        metadata: EventMetadata,
    ) -> BoxFuture<'a, Result<i64, AppendError>> {
        let delay = *self.delay.lock().unwrap();
        let fail = *self.fail.lock().unwrap();
        async move {
            if let Some(delay) = delay {
                tokio::time::sleep(delay).await;
            }
            if fail {
                return Err(AppendError::Store(StoreError::backend("disk on fire")));
            }
            self.inner.append(stream, expected, events, metadata).await
        }
        .boxed()
    }
}

impl EventDeleter for Faulty {
    fn delete_stream<'a>(
        &'a self,
        stream: &'a str,
        mode: DeleteMode,
        expected: ExpectedVersion,
    ) -> BoxFuture<'a, Result<(), AppendError>> {
        self.inner.delete_stream(stream, mode, expected)
    }
}

impl GlobalReader for Faulty {
    fn read_all(
        &self,
        from: u64,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<RecordedEvent>, StoreError>> {
        self.inner.read_all(from, limit)
    }
}
