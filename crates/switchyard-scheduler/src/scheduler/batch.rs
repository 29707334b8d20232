//! Store calls gathered into batches: the claims and deletes of the deliveries under way go to
//! the store a batch at a time ([`AlarmStore::claim_many`], [`AlarmStore::delete_many`]), so a
//! burst of thousands of alarms due at once costs a few store round trips (on SQLite, a few
//! commits) instead of one each.
//!
//! A batch is whatever queued while the previous one was under way, at most [`MOST`] calls: a
//! lone call goes out at once, alone. One batch is under way at a time, bounded by the store
//! timeout, so a stalled store holds up later calls for at most that long, and each caller
//! still bounds its own wait as before (its call cut off may take effect all the same, which
//! the scheduler allows for). A store that panics or answers too few results fails the calls
//! it left unanswered; the batcher goes on.
//!
//! [`AlarmStore::claim_many`]: crate::store::AlarmStore::claim_many
//! [`AlarmStore::delete_many`]: crate::store::AlarmStore::delete_many

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt as _;
use futures::future::BoxFuture;
use tokio::sync::{mpsc, oneshot};

use crate::store::{AlarmStore, AlarmStoreError};

/// The most calls in one batch: enough that a burst of 10,000 alarms takes a handful of
/// batches, few enough that one batch holds the SQLite writer for milliseconds, not longer.
pub(super) const MOST: usize = 1_024;

/// What a batch's call to the store answers: one result per request, in order.
type Answers<T> = Vec<Result<T, AlarmStoreError>>;

/// Makes one batch's store call.
type Call<R, T> = fn(Arc<dyn AlarmStore>, Vec<R>) -> BoxFuture<'static, Answers<T>>;

/// A queue of store calls of one kind, sent to the store in batches by a task of its own,
/// which ends once the last handle is dropped.
pub(super) struct Batcher<R, T> {
    queue: mpsc::UnboundedSender<(R, oneshot::Sender<Result<T, AlarmStoreError>>)>,
}

impl<R: Send + 'static, T: Send + 'static> Batcher<R, T> {
    /// Starts the batcher's task, making each batch's call with `call`, bounded by `timeout`.
    /// Must be called within a tokio runtime.
    pub(super) fn start(store: Arc<dyn AlarmStore>, timeout: Duration, call: Call<R, T>) -> Self {
        let (queue, requests) = mpsc::unbounded_channel();
        tokio::spawn(run(store, timeout, call, requests));
        Self { queue }
    }

    /// Queues `request` for the next batch and returns its answer. If the answer is lost (the
    /// batch was cut off at the store timeout, or the scheduler is stopping), it may have been
    /// written: [`AlarmStoreError::Unknown`].
    pub(super) async fn call(&self, request: R) -> Result<T, AlarmStoreError> {
        let (reply, answer) = oneshot::channel();
        if self.queue.send((request, reply)).is_err() {
            return Err(AlarmStoreError::backend(Unanswered));
        }
        answer
            .await
            .unwrap_or_else(|_| Err(AlarmStoreError::unknown(Unanswered)))
    }
}

/// A batched store call got no answer of its own.
#[derive(Debug, thiserror::Error)]
#[error("the alarm store's batch gave no answer for this call")]
struct Unanswered;

async fn run<R, T>(
    store: Arc<dyn AlarmStore>,
    timeout: Duration,
    call: Call<R, T>,
    mut queue: mpsc::UnboundedReceiver<(R, oneshot::Sender<Result<T, AlarmStoreError>>)>,
) {
    let mut requests = Vec::new();
    let mut replies = Vec::new();
    while let Some((request, reply)) = queue.recv().await {
        requests.push(request);
        replies.push(reply);
        while requests.len() < MOST
            && let Ok((request, reply)) = queue.try_recv()
        {
            requests.push(request);
            replies.push(reply);
        }
        let batch = AssertUnwindSafe(call(store.clone(), std::mem::take(&mut requests)));
        let answers = match tokio::time::timeout(timeout, batch.catch_unwind()).await {
            Ok(Ok(answers)) => answers,
            Ok(Err(_panic)) => {
                tracing::error!("a batch of alarm store calls panicked; its calls failed");
                Vec::new()
            }
            // Every caller has given up by now (each waits at most as long): their calls may or
            // may not have been written, which each allows for.
            Err(_elapsed) => Vec::new(),
        };
        let mut answers = answers.into_iter();
        for reply in replies.drain(..) {
            // Dropped unanswered: the caller hears that the outcome is unknown.
            if let Some(answer) = answers.next() {
                let _ = reply.send(answer);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::store::{Alarm, DeleteRequest, MemoryAlarmStore};

    fn deletes(
        store: Arc<dyn AlarmStore>,
        requests: Vec<DeleteRequest>,
    ) -> BoxFuture<'static, Answers<bool>> {
        async move { store.delete_many(requests).await }.boxed()
    }

    fn short(
        store: Arc<dyn AlarmStore>,
        requests: Vec<DeleteRequest>,
    ) -> BoxFuture<'static, Answers<bool>> {
        async move {
            let mut answers = store.delete_many(requests).await;
            answers.pop();
            answers
        }
        .boxed()
    }

    fn panics(_: Arc<dyn AlarmStore>, _: Vec<DeleteRequest>) -> BoxFuture<'static, Answers<bool>> {
        async move { panic!("a store that panics") }.boxed()
    }

    fn request(id: &str) -> DeleteRequest {
        DeleteRequest {
            id: id.to_owned(),
            holder: "h".to_owned(),
        }
    }

    #[tokio::test]
    async fn calls_queued_together_are_answered_each_in_turn() {
        let store = MemoryAlarmStore::new();
        let due = SystemTime::UNIX_EPOCH;
        for id in ["a", "b"] {
            let message = switchyard_messaging::Message::new("s").with_id(id);
            let alarm = Alarm {
                message,
                aggregate_id: "g".into(),
                due,
                attempts: 0,
            };
            store.save(alarm).await.unwrap();
            store
                .claim(id, "h", due, due, due + Duration::from_secs(1))
                .await
                .unwrap();
        }
        let batcher = Batcher::start(Arc::new(store.clone()), Duration::from_secs(5), deletes);
        let (a, missing, b) = tokio::join!(
            batcher.call(request("a")),
            batcher.call(request("missing")),
            batcher.call(request("b")),
        );
        assert_eq!(
            (a.unwrap(), missing.unwrap(), b.unwrap()),
            (true, false, true)
        );
        assert!(store.is_empty());
    }

    #[tokio::test]
    async fn a_call_left_unanswered_has_an_unknown_outcome_and_the_batcher_goes_on() {
        let store: Arc<dyn AlarmStore> = Arc::new(MemoryAlarmStore::new());
        let batcher = Batcher::start(store.clone(), Duration::from_secs(5), short);
        let (first, second) = tokio::join!(batcher.call(request("a")), batcher.call(request("b")));
        assert!(matches!(first, Ok(false)), "{first:?}");
        assert!(
            matches!(second, Err(AlarmStoreError::Unknown { .. })),
            "{second:?}"
        );
        assert!(matches!(
            batcher.call(request("c")).await,
            Err(AlarmStoreError::Unknown { .. })
        ));

        let panicking = Batcher::start(store, Duration::from_secs(5), panics);
        for _ in 0..2 {
            let answer = panicking.call(request("a")).await;
            assert!(
                matches!(answer, Err(AlarmStoreError::Unknown { .. })),
                "{answer:?}"
            );
        }
    }
}
