//! The writer's queue: jobs in arrival order, and a writer woken only when what it waits for is
//! there.
//!
//! A channel that wakes its receiver at every message (as `flume` does) costs the group commit
//! a thread wake-up per write while a batch gathers: with 50 writers, 50 wake-ups and context
//! switches of the writer per commit, more than the commit's own work. Here the writer says how
//! many items it waits for, and only the sender that brings the queue to that count wakes it;
//! if fewer come, the writer wakes when its wait times out and takes those.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// What the senders and the receiver share.
struct Shared<T> {
    state: Mutex<State<T>>,
    /// Signalled when the queue holds what the receiver waits for, or when it closes.
    ready: Condvar,
}

struct State<T> {
    items: VecDeque<T>,
    /// The count of queued items that wakes the receiver; 0 while it is not waiting.
    wanted: usize,
    /// Live senders; none left closes the queue once it is drained.
    senders: usize,
    /// The receiver is gone: sends fail.
    receiver_gone: bool,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // Nothing panics while the lock is held but an allocation; the state stays whole.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A new queue's two ends.
pub(crate) fn channel<T>() -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            items: VecDeque::new(),
            wanted: 0,
            senders: 1,
            receiver_gone: false,
        }),
        ready: Condvar::new(),
    });
    (
        Sender {
            shared: shared.clone(),
        },
        Receiver { shared },
    )
}

/// Queues items. Clones share the queue; it closes when the last is dropped.
pub(crate) struct Sender<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Sender<T> {
    /// Queues `item`, waking the receiver if that brings the queue to the count it waits for;
    /// gives it back if the receiver is gone.
    pub(crate) fn send(&self, item: T) -> Result<(), T> {
        let mut state = self.shared.lock();
        if state.receiver_gone {
            return Err(item);
        }
        state.items.push_back(item);
        let wake = state.wanted > 0 && state.items.len() >= state.wanted;
        if wake {
            // Woken once: later senders need not signal again.
            state.wanted = 0;
        }
        drop(state);
        if wake {
            self.shared.ready.notify_one();
        }
        Ok(())
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.shared.lock().senders += 1;
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.senders -= 1;
        let closed = state.senders == 0;
        drop(state);
        if closed {
            self.shared.ready.notify_one();
        }
    }
}

impl<T> std::fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("queue::Sender")
    }
}

/// Takes items, in the order they were sent.
pub(crate) struct Receiver<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Receiver<T> {
    /// The next item, waiting for it; `None` once the queue is drained and every sender gone.
    pub(crate) fn recv(&self) -> Option<T> {
        let mut state = self.shared.lock();
        loop {
            if let Some(item) = state.items.pop_front() {
                return Some(item);
            }
            if state.senders == 0 {
                return None;
            }
            state.wanted = 1;
            state = self
                .shared
                .ready
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
            state.wanted = 0;
        }
    }

    /// Moves every queued item to the back of `into`, in order, without waiting.
    pub(crate) fn take_queued(&self, into: &mut VecDeque<T>) {
        let mut state = self.shared.lock();
        if state.items.is_empty() {
            // Nothing to move; swapping would hand the queue a buffer without room, and the
            // next send would allocate.
            return;
        }
        if into.is_empty() {
            // The usual case: swap the buffers, no item is moved one by one.
            std::mem::swap(&mut state.items, into);
        } else {
            into.append(&mut state.items);
        }
    }

    /// Waits until `count` items are queued, or `gap` passed, or every sender is gone. Returns
    /// whether any item is queued: after a `gap` without one, none is.
    pub(crate) fn wait_for(&self, count: usize, gap: Duration) -> bool {
        let mut state = self.shared.lock();
        if state.items.len() < count.max(1) && state.senders > 0 {
            state.wanted = count.max(1);
            state = self
                .shared
                .ready
                .wait_timeout_while(state, gap, |state| {
                    state.items.len() < state.wanted && state.senders > 0
                })
                .unwrap_or_else(PoisonError::into_inner)
                .0;
            state.wanted = 0;
        }
        !state.items.is_empty()
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.receiver_gone = true;
        // Dropped outside the lock: an item's drop may send (a reply), or take time.
        let items = std::mem::take(&mut state.items);
        drop(state);
        drop(items);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::thread;
    use std::time::Duration;

    use super::*;

    const LONG: Duration = Duration::from_secs(3_600);

    fn queued(receiver: &Receiver<i32>) -> Vec<i32> {
        let mut taken = VecDeque::new();
        receiver.take_queued(&mut taken);
        taken.into()
    }

    #[test]
    fn items_come_out_in_the_order_they_went_in() {
        let (sender, receiver) = channel();
        for n in 0..5 {
            sender.send(n).unwrap();
        }
        assert_eq!(receiver.recv(), Some(0));
        assert_eq!(queued(&receiver), [1, 2, 3, 4]);
        sender.send(5).unwrap();
        let mut taken = VecDeque::from([9]);
        receiver.take_queued(&mut taken);
        assert_eq!(taken, [9, 5], "appended behind what the buffer held");
    }

    #[test]
    fn wait_for_returns_once_the_count_is_queued_while_items_keep_coming() {
        let (sender, receiver) = channel();
        let sending = thread::spawn(move || {
            for n in 0..3 {
                thread::sleep(Duration::from_millis(20));
                sender.send(n).unwrap();
            }
            // Kept open: the wait must end at the count, not at the close.
            thread::sleep(Duration::from_millis(200));
            drop(sender);
        });
        assert!(receiver.wait_for(3, LONG));
        assert_eq!(queued(&receiver), [0, 1, 2]);
        sending.join().unwrap();
    }

    #[test]
    fn wait_for_ends_after_a_gap_without_arrivals() {
        let (sender, receiver) = channel::<i32>();
        // Five wanted, none comes and the sender stays: the gap ends the wait.
        assert!(!receiver.wait_for(5, Duration::from_millis(10)));
        sender.send(1).unwrap();
        assert!(receiver.wait_for(5, Duration::from_millis(10)));
        assert_eq!(queued(&receiver), [1]);
    }

    #[test]
    fn the_queue_closes_when_every_sender_is_gone_and_it_is_drained() {
        let (sender, receiver) = channel();
        let other = sender.clone();
        sender.send(1).unwrap();
        drop(sender);
        other.send(2).unwrap();
        let waiting = thread::spawn(move || {
            let mut seen = Vec::new();
            while let Some(n) = receiver.recv() {
                seen.push(n);
            }
            seen
        });
        thread::sleep(Duration::from_millis(20));
        drop(other);
        assert_eq!(waiting.join().unwrap(), [1, 2]);
    }

    #[test]
    fn sends_fail_once_the_receiver_is_gone() {
        let (sender, receiver) = channel();
        sender.send(1).unwrap();
        drop(receiver);
        assert_eq!(sender.send(2), Err(2));
    }
}
