//! One live aggregate's place in the registry: the lock a command holds from load to apply, and
//! what that lock guards.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{Mutex, Notify, OwnedMutexGuard};
use tokio::task::AbortHandle;
use tokio::time::Instant;

use super::Registry;
use crate::{Aggregate, AggregateState};

/// A live aggregate in the registry. Cheap to clone: the registry and the commands under way
/// share one lock.
pub(crate) struct Slot<A: Aggregate> {
    /// Held by one command (or an unload, a delete, a snapshot) at a time, handed on in the
    /// order it was asked for (tokio's mutex is fair), so commands to one aggregate run one
    /// after the other, in the order they came.
    pub(crate) lock: Arc<Mutex<Held<A>>>,
    /// Commands waiting for the lock, bounded by the runtime's `mailbox`.
    waiting: Arc<AtomicUsize>,
}

impl<A: Aggregate> Clone for Slot<A> {
    fn clone(&self) -> Self {
        Self {
            lock: self.lock.clone(),
            waiting: self.waiting.clone(),
        }
    }
}

impl<A: Aggregate> Slot<A> {
    /// A slot for aggregate `id`, whose events live in `stream`, not loaded yet.
    pub(crate) fn new(id: String, stream: String) -> Self {
        Self {
            lock: Arc::new(Mutex::new(Held {
                id,
                stream,
                state: None,
                retired: false,
                schedule: Schedule::default(),
                watchdog: None,
            })),
            waiting: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// A place in the line for the lock, or `None` when `capacity` commands wait already.
    pub(crate) fn wait(&self, capacity: usize) -> Option<Waiting> {
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= capacity {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Waiting(self.waiting.clone()))
    }
}

/// A command's place in the line for an aggregate's lock; given up when dropped, also when the
/// command is cancelled while it waits.
pub(crate) struct Waiting(Arc<AtomicUsize>);

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What an aggregate's lock guards.
pub(crate) struct Held<A: Aggregate> {
    /// The aggregate's id.
    pub(crate) id: String,
    /// The aggregate's stream, named once for every command.
    pub(crate) stream: String,
    /// The aggregate as its last command left it; `None` when it must be loaded from the store
    /// before the next command runs: never loaded yet, or a command was cut short after it
    /// took the state out (its caller's future dropped, at a dispatch deadline say, perhaps
    /// after the store accepted its append), so what this node knew may be stale.
    pub(crate) state: Option<AggregateState<A>>,
    /// Set when the slot left the registry (unloaded, deleted, failed, shut down): a command
    /// that gets the lock afterwards looks the aggregate up again and finds a fresh slot.
    pub(crate) retired: bool,
    /// When an unload is due.
    pub(crate) schedule: Schedule,
    /// The task that unloads the aggregate when its schedule says so; aborted with the slot.
    pub(crate) watchdog: Option<Watchdog>,
}

/// An owned hold on an aggregate's lock: a command's, an unload's, a delete's or a snapshot's.
pub(crate) type Guard<A> = OwnedMutexGuard<Held<A>>;

/// When an aggregate is due to be unloaded.
#[derive(Default)]
pub(crate) struct Schedule {
    /// When an event matching an `unload_on_event` rule asked to unload: the earliest such
    /// request stands, since later commands do not undo the events.
    pub(crate) after_event: Option<Instant>,
    /// When the `unload_on_state` rule last asked to unload: each commit asks again and its
    /// answer replaces the previous one, so `Never` cancels an earlier `After`.
    pub(crate) by_state: Option<Instant>,
    /// When the last command ran; kept only with an idle timeout.
    pub(crate) last_command: Option<Instant>,
}

impl Schedule {
    /// The scheduled unloads (the idle timeout aside), to tell whether a command moved them.
    pub(crate) fn scheduled(&self) -> (Option<Instant>, Option<Instant>) {
        (self.after_event, self.by_state)
    }

    /// The next unload due and its reason: `scheduled` (an unload rule's delay) or `idle`.
    pub(crate) fn next(&self, idle: Option<Duration>) -> Option<(Instant, &'static str)> {
        let scheduled = [self.after_event, self.by_state]
            .into_iter()
            .flatten()
            .min()
            .map(|at| (at, "scheduled"));
        let idle = idle
            .zip(self.last_command)
            .map(|(idle, last)| (last + idle, "idle"));
        [scheduled, idle]
            .into_iter()
            .flatten()
            .min_by_key(|(at, _)| *at)
    }
}

/// The watchdog task of one aggregate, aborted when dropped.
pub(crate) struct Watchdog {
    pub(crate) task: AbortHandle,
    /// Wakes the task when a scheduled unload moved. Made with the task, so a runtime without
    /// an idle timeout or unload rules allocates none per aggregate.
    pub(crate) moved: Arc<Notify>,
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The span of an aggregate's unload. `reason`: `requested` (`unload`), `deleted`, `idle` (the
/// idle timeout), `scheduled` (an unload rule's delay), `unload_rule` (`Unload::Now`), `empty`
/// (no aggregate to hold), `closed` (shutdown), `failed` (a panic, a store failure or a commit
/// timeout: the state is not trusted), `conflict` (conflicts beyond the retries),
/// `load_failed`.
pub(crate) fn unload_span<A: Aggregate>(id: &str, reason: &'static str) -> tracing::Span {
    tracing::debug_span!(
        "switchyard.aggregate.unload",
        aggregate = A::NAME,
        id,
        reason
    )
}

/// Takes the aggregate `held` guards out of `registry` while holding its lock: drops its state and its
/// watchdog and marks the slot retired, so commands waiting for the lock look the aggregate up
/// again (and load it afresh). The registry forgets only this slot, never a newer one.
pub(crate) fn retire<A: Aggregate>(
    registry: &Registry<A>,
    held: &mut Guard<A>,
    reason: &'static str,
) {
    let _unload = unload_span::<A>(&held.id, reason).entered();
    held.retired = true;
    held.state = None;
    held.watchdog = None;
    let lock = OwnedMutexGuard::mutex(held);
    registry.remove_if(&held.id, |_, slot| Arc::ptr_eq(&slot.lock, lock));
}
