//! Locking the std mutexes of this crate, and polling a future once.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::Poll;

/// Locks a mutex that a panic elsewhere may have poisoned. Every mutex of this crate guards a
/// table that stays consistent between statements (nothing is left half done across a call
/// that can panic), so a poisoned one is as good as any.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Polls `future` once, in the task awaiting this, and says whether it ended: a future still
/// pending has registered that task's waker, as any poll does.
pub(crate) async fn poll_once<F: Future + Unpin>(future: &mut F) -> Poll<F::Output> {
    std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut *future).poll(cx))).await
}
