//! Where the scheduler reads the time and waits for it: the system clock, or a manual one that
//! tests move by hand.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::future::{BoxFuture, FutureExt};
use tokio::sync::watch;

/// The time source of a [`Scheduler`](crate::Scheduler): due times, windows and leases are read
/// from it.
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> SystemTime;

    /// Resolves once [`now`](Clock::now) has reached `deadline`.
    fn sleep_until(&self, deadline: SystemTime) -> BoxFuture<'static, ()>;
}

/// The system's wall clock, waited on with tokio's timers.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }

    fn sleep_until(&self, deadline: SystemTime) -> BoxFuture<'static, ()> {
        let wait = deadline
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO);
        // The wall clock may be set back while we wait: check again after the timer fires, so
        // an alarm never fires before its time.
        async move {
            tokio::time::sleep(wait).await;
            loop {
                let Ok(left) = deadline.duration_since(SystemTime::now()) else {
                    return;
                };
                if left.is_zero() {
                    return;
                }
                tokio::time::sleep(left).await;
            }
        }
        .boxed()
    }
}

/// A clock that moves only when told to: for tests of windows, leases and due times without
/// waiting. Clones share one time.
///
/// # Examples
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use switchyard_scheduler::{Clock, ManualClock};
///
/// let clock = ManualClock::new(UNIX_EPOCH + Duration::from_secs(1_000));
/// clock.advance(Duration::from_secs(5));
/// assert_eq!(clock.now(), UNIX_EPOCH + Duration::from_secs(1_005));
/// ```
#[derive(Clone, Debug)]
pub struct ManualClock {
    time: Arc<watch::Sender<SystemTime>>,
}

impl ManualClock {
    /// A clock showing `start`.
    pub fn new(start: SystemTime) -> Self {
        Self {
            time: Arc::new(watch::Sender::new(start)),
        }
    }

    /// Moves the clock forward by `by`, waking whoever waits for a time now reached.
    pub fn advance(&self, by: Duration) {
        self.time.send_modify(|time| *time += by);
    }

    /// Sets the clock to `time` (backwards too).
    pub fn set(&self, time: SystemTime) {
        self.time.send_replace(time);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        *self.time.borrow()
    }

    fn sleep_until(&self, deadline: SystemTime) -> BoxFuture<'static, ()> {
        let mut changes = self.time.subscribe();
        async move {
            // `wait_for` checks the current value first; the sender lives as long as the clock,
            // and a dropped clock never reaches the deadline.
            if changes.wait_for(|now| *now >= deadline).await.is_err() {
                futures::future::pending::<()>().await;
            }
        }
        .boxed()
    }
}
