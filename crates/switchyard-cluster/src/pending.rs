//! Requests sent to other nodes that wait for their answers: calls waiting for a reply,
//! authorization questions waiting for a verdict.
//!
//! Each request gets an id unique in its table, and a [`Waiter`] that receives its answer. The
//! reader of a connection hands an answer to its waiter by id ([`Pending::complete`]); a
//! waiter that stops waiting (its caller gave up, its deadline passed, its connection was
//! lost) forgets its request when dropped, so an answer that comes later finds nobody and is
//! dropped, and the table never holds a request nobody waits for.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::sync::lock;

/// The requests of one kind that wait for an answer, by id.
pub(crate) struct Pending<T> {
    waiting: Mutex<HashMap<u64, oneshot::Sender<T>>>,
    next: AtomicU64,
}

impl<T> Default for Pending<T> {
    fn default() -> Self {
        Self {
            waiting: Mutex::new(HashMap::new()),
            next: AtomicU64::new(1),
        }
    }
}

impl<T> Pending<T> {
    /// A new request: its id, and the waiter its answer goes to.
    pub(crate) fn register(&self) -> Waiter<'_, T> {
        let request = self.next.fetch_add(1, Ordering::Relaxed);
        let (answer, receiver) = oneshot::channel();
        lock(&self.waiting).insert(request, answer);
        Waiter {
            pending: self,
            request,
            answer: receiver,
        }
    }

    /// Hands `answer` to the waiter of `request`. Gives it back when nobody waits for it (the
    /// waiter gave up, or the id was never handed out).
    pub(crate) fn complete(&self, request: u64, answer: T) -> Result<(), T> {
        let waiting = lock(&self.waiting).remove(&request);
        match waiting {
            Some(waiting) => waiting.send(answer),
            None => Err(answer),
        }
    }

    /// How many requests wait.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        lock(&self.waiting).len()
    }
}

/// One request waiting for its answer; dropping it forgets the request.
pub(crate) struct Waiter<'a, T> {
    pending: &'a Pending<T>,
    request: u64,
    answer: oneshot::Receiver<T>,
}

/// What came of waiting for an answer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Waited<T, L> {
    /// The answer came.
    Answer(T),
    /// What the request travelled on was lost first (with what `lost` said of it).
    Lost(L),
    /// The deadline passed first.
    TimedOut,
}

impl<T> Waiter<'_, T> {
    /// The request's id, for the frame that carries it.
    pub(crate) fn request(&self) -> u64 {
        self.request
    }

    /// Waits for the answer until `deadline`, or until `lost` resolves (the connection that
    /// carried the request ended, say): an answer that came before still counts.
    pub(crate) async fn wait<L: Future>(
        &mut self,
        lost: L,
        deadline: Instant,
    ) -> Waited<T, L::Output> {
        tokio::pin!(lost);
        tokio::select! {
            biased;
            answer = &mut self.answer => match answer {
                Ok(answer) => Waited::Answer(answer),
                // Only `complete` takes the sender, and it sends: this cannot come, but a
                // request without an answer is best said lost rather than left waiting.
                Err(_) => Waited::Lost(lost.await),
            },
            lost = &mut lost => match self.answer.try_recv() {
                Ok(answer) => Waited::Answer(answer),
                Err(_) => Waited::Lost(lost),
            },
            () = tokio::time::sleep_until(deadline) => Waited::TimedOut,
        }
    }
}

impl<T> Drop for Waiter<'_, T> {
    fn drop(&mut self) {
        lock(&self.pending.waiting).remove(&self.request);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::Duration;

    use super::*;

    fn later(ms: u64) -> Instant {
        Instant::now() + Duration::from_millis(ms)
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_reaches_its_waiter_by_id_once() {
        let pending = Pending::<&str>::default();
        let mut first = pending.register();
        let mut second = pending.register();
        assert_ne!(first.request(), second.request());
        assert_eq!(pending.complete(second.request(), "two"), Ok(()));
        assert_eq!(
            pending.complete(second.request(), "again"),
            Err("again"),
            "answered once"
        );
        assert_eq!(pending.complete(first.request(), "one"), Ok(()));
        let never = std::future::pending::<()>();
        assert_eq!(first.wait(never, later(10)).await, Waited::Answer("one"));
        let never = std::future::pending::<()>();
        assert_eq!(second.wait(never, later(10)).await, Waited::Answer("two"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_that_gives_up_forgets_its_request() {
        let pending = Pending::<u8>::default();
        let waiter = pending.register();
        let request = waiter.request();
        assert_eq!(pending.len(), 1);
        drop(waiter);
        assert_eq!(pending.len(), 0);
        assert_eq!(
            pending.complete(request, 1),
            Err(1),
            "a late answer finds nobody"
        );
        assert_eq!(pending.complete(999, 2), Err(2), "an id never handed out");
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_ends_at_the_deadline_or_the_loss_of_the_connection() {
        let pending = Pending::<u8>::default();
        let mut waiter = pending.register();
        let never = std::future::pending::<()>();
        assert_eq!(waiter.wait(never, later(50)).await, Waited::TimedOut);
        let lost = tokio::time::sleep(Duration::from_millis(5));
        assert_eq!(waiter.wait(lost, later(50)).await, Waited::Lost(()));
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_read_before_the_connection_was_lost_still_counts() {
        let pending = Pending::<u8>::default();
        let mut waiter = pending.register();
        assert_eq!(pending.complete(waiter.request(), 7), Ok(()));
        let lost = std::future::ready("lost");
        assert_eq!(waiter.wait(lost, later(50)).await, Waited::Answer(7));
    }
}
