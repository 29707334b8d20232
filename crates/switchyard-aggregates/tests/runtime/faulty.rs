//! A store whose appends can be made slow or failing, and whose loads and deletes can be held.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use switchyard_aggregates::store::{
    AppendError, DeleteMode, EventAppender, EventDeleter, EventMetadata, EventReader,
    ExpectedVersion, GlobalReader, MemoryStore, NewEvent, RecordedEvent, StoreError,
};

/// Holds the operations that pass it while it is held.
#[derive(Clone, Default)]
pub(crate) struct Gate {
    held: Arc<Mutex<Option<Arc<tokio::sync::Semaphore>>>>,
    waiting: Arc<AtomicUsize>,
}

impl Gate {
    /// Operations from now on wait for `release`.
    pub(crate) fn hold(&self) {
        *self.held.lock().unwrap() = Some(Arc::new(tokio::sync::Semaphore::new(0)));
    }

    /// Lets every waiting and later operation through.
    pub(crate) fn release(&self) {
        if let Some(held) = self.held.lock().unwrap().take() {
            held.close();
        }
    }

    /// Returns once `count` operations wait at the gate.
    pub(crate) async fn until_waiting(&self, count: usize) {
        while self.waiting.load(Ordering::SeqCst) < count {
            tokio::task::yield_now().await;
        }
    }

    async fn pass(&self) {
        let held = self.held.lock().unwrap().clone();
        if let Some(held) = held {
            self.waiting.fetch_add(1, Ordering::SeqCst);
            // A closed semaphore refuses every acquire: that is the release.
            let _ = held.acquire().await;
            self.waiting.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// Delegates to a memory store; appends wait `delay` and fail while `fail` is set, then wait at
/// `appends` before the memory store is asked and at `appended` once it stored the events; loads
/// (`has_stream`, where every load starts) wait at `loads` and, once they learnt whether the
/// stream exists, at `loaded`; deletes wait at `deletes`; message-id look-ups are counted;
/// with `page_cap` set, stream reads come in pages of at most that many events (shorter than
/// asked for, as a store may send them).
#[derive(Clone, Default)]
pub(crate) struct Faulty {
    pub(crate) inner: MemoryStore,
    pub(crate) delay: Arc<Mutex<Option<Duration>>>,
    pub(crate) fail: Arc<Mutex<bool>>,
    pub(crate) appends: Gate,
    pub(crate) appended: Gate,
    pub(crate) loads: Gate,
    pub(crate) loaded: Gate,
    pub(crate) deletes: Gate,
    /// How many message-id look-ups were made.
    pub(crate) lookups: Arc<AtomicUsize>,
    pub(crate) page_cap: Arc<Mutex<Option<usize>>>,
}

impl EventReader for Faulty {
    fn has_stream<'a>(&'a self, stream: &'a str) -> BoxFuture<'a, Result<bool, StoreError>> {
        async move {
            self.loads.pass().await;
            let exists = self.inner.has_stream(stream).await;
            self.loaded.pass().await;
            exists
        }
        .boxed()
    }
    fn read_stream<'a>(
        &'a self,
        stream: &'a str,
        from: i64,
        page: usize,
    ) -> BoxStream<'a, Result<Vec<RecordedEvent>, StoreError>> {
        let Some(cap) = *self.page_cap.lock().unwrap() else {
            return self.inner.read_stream(stream, from, page);
        };
        self.inner
            .read_stream(stream, from, page)
            .flat_map(move |page| {
                let pages: Vec<_> = match page {
                    Ok(events) => events.chunks(cap).map(|chunk| Ok(chunk.to_vec())).collect(),
                    Err(error) => vec![Err(error)],
                };
                futures::stream::iter(pages)
            })
            .boxed()
    }
    fn find_message<'a>(
        &'a self,
        stream: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<i64>, StoreError>> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
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
            self.appends.pass().await;
            let appended = self.inner.append(stream, expected, events, metadata).await;
            self.appended.pass().await;
            appended
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
        async move {
            self.deletes.pass().await;
            self.inner.delete_stream(stream, mode, expected).await
        }
        .boxed()
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

/// A bank over a [`Faulty`] store, with a default runtime.
pub(crate) fn faulty_bank() -> (Faulty, crate::fixture::Bank) {
    let faulty = Faulty::default();
    let runtime = switchyard_aggregates::AggregateRuntime::new(
        switchyard_aggregates::repo::Repo::event_sourced(Arc::new(faulty.clone())),
    );
    let bank = crate::fixture::bank_with(faulty.inner.clone(), runtime);
    (faulty, bank)
}

/// Polls `future` once, with this task's waker.
pub(crate) async fn poll_once<F: Future + Unpin>(future: &mut F) -> std::task::Poll<F::Output> {
    std::future::poll_fn(|cx| std::task::Poll::Ready(std::pin::Pin::new(&mut *future).poll(cx)))
        .await
}
