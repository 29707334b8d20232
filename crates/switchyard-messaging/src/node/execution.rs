//! Where a handler's future runs for the call that started it, and how its end is seen.
//!
//! A local dispatch polls the handler's future on the caller's own task ([`Execution::Inline`]):
//! no task is spawned, no other thread is woken, and a handler that finishes at once answers
//! within the caller's first poll. The guarantees of a task of its own are kept:
//!
//! - a panic while the handler is polled, or while its future is dropped, is caught and becomes
//!   the caller's answer ([`Outcome::Panicked`]); it never unwinds into the caller;
//! - a caller that stops waiting (its dispatch future dropped, or its deadline passed) drops the
//!   handler's future, so the handler stops at the await it is suspended on, as an aborted task
//!   would; it never runs on unseen.
//!
//! Calls from other nodes run the same way, on the task awaiting [`Node::serve_remote`]: a
//! cluster drives them on a task serving one connection's calls, beside the reader of its
//! frames, so a handler awaiting something (a call back over the same connection, say) never
//! holds up reading (a task per call cost a spawn and two wake-ups for every remote call).
//!
//! A handler gets a task of its own ([`Execution::Spawned`]) where the caller's task must not
//! run it: calls nested more than [`MAX_INLINE_DEPTH`] deep (a handler dispatching to a handler
//! that dispatches ...), whose polls would otherwise stack up on one thread. Dropping the
//! caller's future aborts that task, so both ways stop a handler whose caller went away.
//!
//! [`Node::serve_remote`]: crate::Node::serve_remote

use std::cell::Cell;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::task::{AbortHandle, JoinError, JoinHandle};

use crate::handler::HandlerFuture;
use crate::panic_text;
use crate::{Reply, Response};

/// How deep local calls may nest on one task before a handler gets a task of its own. Each
/// inline level adds the caller's and the handler's poll frames to the thread's stack (a few
/// hundred bytes each in release builds, several KiB in debug builds); 16 levels stay far below
/// a tokio worker's 2 MiB stack while covering any reasonable chain of services calling services.
pub(super) const MAX_INLINE_DEPTH: u32 = 16;

thread_local! {
    /// How many inline handlers are being polled on this thread, one inside the other.
    static INLINE_DEPTH: Cell<u32> = const { Cell::new(0) };
}

/// How a handler ended.
pub(super) enum Outcome {
    /// It returned.
    Finished(Result<Reply, Response>),
    /// It panicked; the text says why.
    Panicked(String),
    /// Its task was cancelled by someone other than its caller (the runtime shutting down).
    Cancelled,
}

/// A handler running for one call: a future resolving to its [`Outcome`]. Dropping it stops the
/// handler.
pub(super) enum Execution {
    Inline(Inline),
    Spawned(Spawned),
}

impl Execution {
    /// Starts `future` on the task of the caller awaiting it, unless calls nest too deep: then
    /// in a task of its own. A handler in its own task starts running at once; one on the
    /// caller's task runs when this is polled.
    pub(super) fn start(future: HandlerFuture) -> Self {
        if INLINE_DEPTH.with(Cell::get) >= MAX_INLINE_DEPTH {
            let handle = tokio::spawn(future);
            let abort = AbortOnDrop(handle.abort_handle());
            return Self::Spawned(Spawned {
                handle,
                _abort: abort,
            });
        }
        Self::Inline(Inline {
            future: Some(future),
        })
    }
}

impl Future for Execution {
    type Output = Outcome;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome> {
        match self.get_mut() {
            Self::Inline(inline) => {
                // A handler on the caller's task spends a unit of the task's cooperative budget,
                // as awaiting a task of its own did: a caller dispatching in a loop to handlers
                // that answer at once still yields to the other tasks of its worker.
                let coop = ready!(tokio::task::coop::poll_proceed(cx));
                let outcome = ready!(inline.poll(cx));
                coop.made_progress();
                Poll::Ready(outcome)
            }
            Self::Spawned(spawned) => Pin::new(&mut spawned.handle)
                .poll(cx)
                .map(|joined| joined.map_or_else(outcome_of_join_error, Outcome::Finished)),
        }
    }
}

/// A handler polled on its caller's task, its panics caught.
pub(super) struct Inline {
    /// `None` once it has finished or panicked.
    future: Option<HandlerFuture>,
}

impl Inline {
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Outcome> {
        let Some(future) = self.future.as_mut() else {
            // Polled again after it ended: nothing is left to run.
            return Poll::Ready(Outcome::Cancelled);
        };
        let depth = INLINE_DEPTH.with(Cell::get);
        INLINE_DEPTH.with(|cell| cell.set(depth + 1));
        let polled = catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(cx)));
        INLINE_DEPTH.with(|cell| cell.set(depth));
        let outcome = match polled {
            Ok(Poll::Pending) => return Poll::Pending,
            Ok(Poll::Ready(result)) => Outcome::Finished(result),
            Err(panic) => Outcome::Panicked(panic_text(&*panic).to_owned()),
        };
        self.end();
        Poll::Ready(outcome)
    }

    /// Drops the handler's future, catching a panic of its destructor (the handler's own drop
    /// code runs here, on the caller's task).
    fn end(&mut self) {
        if let Some(future) = self.future.take() {
            let _ignored = catch_unwind(AssertUnwindSafe(move || drop(future)));
        }
    }
}

impl Drop for Inline {
    fn drop(&mut self) {
        self.end();
    }
}

/// A handler in a task of its own, aborted when this is dropped.
pub(super) struct Spawned {
    handle: JoinHandle<Result<Reply, Response>>,
    _abort: AbortOnDrop,
}

/// Aborts a handler's task when whoever awaited it goes away; a no-op once it has finished.
struct AbortOnDrop(AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn outcome_of_join_error(error: JoinError) -> Outcome {
    match error.try_into_panic() {
        Ok(panic) => Outcome::Panicked(panic_text(&*panic).to_owned()),
        Err(_cancelled) => Outcome::Cancelled,
    }
}

/// The handler's outcome if it finishes within one scheduling turn of the caller, else `None`.
///
/// Most handlers finish that fast, and arming the deadline's timer first would cost more than
/// they do: on a runtime with an idle worker, registering a timer wakes that worker with a system
/// call. So the caller polls the execution (a handler on the caller's task runs right there; one
/// in its own task wakes the caller when it completes), and if it is not done, asks the runtime
/// for a deferred wake-up (`yield_now`, which wakes no other thread); if that wake-up finds the
/// handler still running, the caller arms the timer. The deadline does not move.
pub(super) async fn finished_within_a_turn(execution: &mut Execution) -> Option<Outcome> {
    let turn = tokio::task::yield_now();
    tokio::pin!(turn);
    let mut deferred = false;
    std::future::poll_fn(|cx| {
        if let Poll::Ready(outcome) = Pin::new(&mut *execution).poll(cx) {
            return Poll::Ready(Some(outcome));
        }
        if deferred {
            return Poll::Ready(None);
        }
        deferred = true;
        match turn.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}
