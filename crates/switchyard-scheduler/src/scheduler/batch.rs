//! Claims and deletes gathered into batches: one store call ([`AlarmStore::claim_many`],
//! [`AlarmStore::delete_many`]) for whatever is queued when the previous call of its kind has
//! answered. A burst's thousands of claims and deletes then cost the store a few writes each
//! instead of thousands, while a lone claim or delete goes out at once.
//!
//! Each kind runs in a task of its own, which stops once every sender is gone (the scheduler's
//! shared state dropped). A batch that fails whole answers every item with the error; a store
//! that panics answers every item with a backend error, and the task goes on.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt as _;
use futures::future::BoxFuture;
use tokio::sync::{mpsc, oneshot};

use crate::Clock;
use crate::store::{AlarmStore, AlarmStoreError, Batch, Claim, ForHolder};

/// An item's answer, sent back to whoever queued it.
type Reply<T> = oneshot::Sender<Result<T, AlarmStoreError>>;

/// The senders of the two batching tasks.
#[derive(Debug)]
pub(super) struct Batcher {
    claims: mpsc::UnboundedSender<(ForHolder, Reply<Claim>)>,
    deletes: mpsc::UnboundedSender<(ForHolder, Reply<bool>)>,
}

/// The batching task stopped (it never does while the scheduler runs).
#[derive(Debug, thiserror::Error)]
#[error("the scheduler's store batching stopped; the scheduler is shutting down")]
struct BatchingStopped;

/// The store panicked during a batch call.
#[derive(Debug, thiserror::Error)]
#[error("the alarm store panicked during a batch call; the item is tried again")]
struct StorePanicked;

/// A batch's error, shared by every item of the batch.
#[derive(Debug, thiserror::Error)]
#[error("the batch this item was in failed")]
struct BatchFailed(#[source] Arc<AlarmStoreError>);

impl Batcher {
    /// Starts the two tasks on `store`. Claims are made at the clock's time when their batch
    /// goes out, `claim_ahead` ahead, with leases of `lease` beyond that. A batch call that
    /// has not answered after `store_timeout` is given up: its items answer
    /// [`AlarmStoreError::Unknown`].
    pub(super) fn start(
        store: Arc<dyn AlarmStore>,
        clock: Arc<dyn Clock>,
        claim_ahead: Duration,
        lease: Duration,
        store_timeout: Duration,
    ) -> Self {
        let (claims, claim_inbox) = mpsc::unbounded_channel();
        let (deletes, delete_inbox) = mpsc::unbounded_channel();
        let claim_store = store.clone();
        tokio::spawn(run(
            claim_inbox,
            store_timeout,
            move |items: Vec<ForHolder>| {
                let store = claim_store.clone();
                // Taken when the batch goes out, after every item was queued: at or after the
                // time each item's caller counts its lease from, so the lease lasts at least as
                // long as the caller believes.
                let now = clock.now();
                let due_by = now + claim_ahead;
                async move { store.claim_many(&items, now, due_by, due_by + lease).await }.boxed()
            },
        ));
        tokio::spawn(run(
            delete_inbox,
            store_timeout,
            move |items: Vec<ForHolder>| {
                let store = store.clone();
                async move { store.delete_many(&items).await }.boxed()
            },
        ));
        Self { claims, deletes }
    }

    /// Claims alarm `id` for `holder` in the next claim batch. Queue it only after reading the
    /// clock the caller counts its lease from.
    pub(super) async fn claim(&self, id: &str, holder: &str) -> Result<Claim, AlarmStoreError> {
        queue(&self.claims, id, holder).await
    }

    /// Deletes alarm `id`, if `holder` holds it, in the next delete batch.
    pub(super) async fn delete(&self, id: &str, holder: &str) -> Result<bool, AlarmStoreError> {
        queue(&self.deletes, id, holder).await
    }
}

async fn queue<T>(
    jobs: &mpsc::UnboundedSender<(ForHolder, Reply<T>)>,
    id: &str,
    holder: &str,
) -> Result<T, AlarmStoreError> {
    let (reply, answer) = oneshot::channel();
    let item = ForHolder {
        id: id.to_owned(),
        holder: holder.to_owned(),
    };
    jobs.send((item, reply))
        .map_err(|_| AlarmStoreError::backend(BatchingStopped))?;
    answer
        .await
        .unwrap_or_else(|_| Err(AlarmStoreError::backend(BatchingStopped)))
}

/// Serves `jobs` a batch at a time: whatever queued while the previous call ran.
async fn run<T, F>(
    mut jobs: mpsc::UnboundedReceiver<(ForHolder, Reply<T>)>,
    timeout: Duration,
    mut call: F,
) where
    F: FnMut(Vec<ForHolder>) -> BoxFuture<'static, Batch<T>>,
{
    let mut queued = Vec::new();
    loop {
        // Waits for one, then takes every other already queued.
        if jobs.recv_many(&mut queued, usize::MAX).await == 0 {
            return;
        }
        let (items, replies): (Vec<_>, Vec<_>) = queued.drain(..).unzip();
        // Bounded as each single call is, so a stalled call holds up the batches after it for
        // no longer than a store timeout (its items' callers have given up by then).
        let call = AssertUnwindSafe(call(items)).catch_unwind();
        let answered = tokio::time::timeout(timeout, call).await;
        let answers = match answered {
            Err(_elapsed) => {
                let failed = Arc::new(AlarmStoreError::unknown(BatchTimedOut { after: timeout }));
                replies.iter().map(|_| Err(shared(&failed))).collect()
            }
            Ok(Ok(Ok(answers))) if answers.len() == replies.len() => answers,
            Ok(Ok(Ok(answers))) => {
                tracing::error!(
                    asked = replies.len(),
                    answered = answers.len(),
                    "an alarm store answered a batch with the wrong number of answers"
                );
                let failed = Arc::new(AlarmStoreError::unknown(StoreMiscounted));
                replies.iter().map(|_| Err(shared(&failed))).collect()
            }
            Ok(Ok(Err(error))) => {
                let failed = Arc::new(error);
                replies.iter().map(|_| Err(shared(&failed))).collect()
            }
            Ok(Err(_panic)) => replies
                .iter()
                .map(|_| Err(AlarmStoreError::backend(StorePanicked)))
                .collect(),
        };
        for (reply, answer) in replies.into_iter().zip(answers) {
            let _ = reply.send(answer);
        }
    }
}

/// A batch call did not answer within the store timeout.
#[derive(Debug, thiserror::Error)]
#[error("the alarm store did not answer a batch within {after:?}; it may have taken effect")]
struct BatchTimedOut {
    after: Duration,
}

/// The store answered a batch with more or fewer answers than items.
#[derive(Debug, thiserror::Error)]
#[error("the alarm store answered a batch with the wrong number of answers; fix the store")]
struct StoreMiscounted;

/// One item's copy of a batch's error, of the same kind: what nothing wrote stays a backend
/// error, what may have taken effect stays of unknown outcome.
fn shared(failed: &Arc<AlarmStoreError>) -> AlarmStoreError {
    match &**failed {
        AlarmStoreError::Corrupt { id, reason } => AlarmStoreError::Corrupt {
            id: id.clone(),
            reason: reason.clone(),
        },
        AlarmStoreError::Unknown { .. } => AlarmStoreError::unknown(BatchFailed(failed.clone())),
        _ => AlarmStoreError::backend(BatchFailed(failed.clone())),
    }
}
