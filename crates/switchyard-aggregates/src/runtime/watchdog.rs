//! The task that unloads an aggregate when its idle timeout or an unload rule's delay is due.
//! Started only for a runtime with such settings, once per live aggregate; commands never wait
//! for it, and it holds the aggregate's lock only to check the schedule and unload.

use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::{Mutex, Notify};
use tokio::time::Instant;

use super::Registry;
use super::slot::{Held, Watchdog, retire};
use crate::Aggregate;

/// Starts the watchdog of the aggregate whose lock is `lock`, with the runtime's `idle`
/// timeout; the returned [`Watchdog`]'s `moved` wakes it when a scheduled unload moved. It holds
/// the registry and the lock only weakly, and the slot aborts it when it goes.
pub(crate) fn start<A: Aggregate>(
    registry: Weak<Registry<A>>,
    lock: &Arc<Mutex<Held<A>>>,
    idle: Option<Duration>,
) -> Watchdog {
    let moved = Arc::new(Notify::new());
    let task = tokio::spawn(watch(registry, Arc::downgrade(lock), moved.clone(), idle));
    Watchdog {
        task: task.abort_handle(),
        moved,
    }
}

async fn watch<A: Aggregate>(
    registry: Weak<Registry<A>>,
    lock: Weak<Mutex<Held<A>>>,
    moved: Arc<Notify>,
    idle: Option<Duration>,
) {
    loop {
        let next = {
            let Some(lock) = lock.upgrade() else { return };
            let held = lock.lock().await;
            if held.retired {
                return;
            }
            held.schedule.next(idle)
        };
        // `moved` keeps a wake-up sent while the schedule was read (`notify_one`).
        let Some((due, _)) = next else {
            moved.notified().await;
            continue;
        };
        tokio::select! {
            biased;
            () = moved.notified() => continue,
            () = tokio::time::sleep_until(due) => {}
        }
        let Some(lock) = lock.upgrade() else { return };
        let mut held = lock.lock_owned().await;
        if held.retired {
            return;
        }
        // A command may have run meanwhile and put the unload off.
        if let Some((due, reason)) = held.schedule.next(idle)
            && due <= Instant::now()
        {
            if let Some(registry) = registry.upgrade() {
                retire(&registry, &mut held, reason);
            }
            return;
        }
    }
}
