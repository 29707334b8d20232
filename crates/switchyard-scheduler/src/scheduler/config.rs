//! The settings of a scheduler.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::{Clock, RetryPolicy, SystemClock};

/// How a [`Scheduler`](crate::Scheduler) loads, delivers and retries alarms.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use switchyard_scheduler::{RetryPolicy, SchedulerConfig};
///
/// let config = SchedulerConfig::default()
///     .window(Duration::from_secs(60 * 60))
///     .dispatch_timeout(Duration::from_secs(2))
///     .retry_policy(RetryPolicy::Fixed { delay: Duration::from_secs(30), max_attempts: 3 });
/// assert_eq!(config.get_window(), Duration::from_secs(3_600));
/// ```
#[derive(Clone)]
#[must_use]
pub struct SchedulerConfig {
    pub(crate) window: Duration,
    pub(crate) dispatch_timeout: Duration,
    pub(crate) lease: Duration,
    pub(crate) late_tolerance: Duration,
    pub(crate) failure_delay: Duration,
    pub(crate) sweep_interval: Option<Duration>,
    pub(crate) load_backoff: (Duration, Duration),
    pub(crate) claim_ahead: Duration,
    pub(crate) store_timeout: Duration,
    pub(crate) load_timeout: Duration,
    pub(crate) max_concurrent_deliveries: usize,
    pub(crate) retry_policy: RetryPolicy,
    pub(crate) clock: Arc<dyn Clock>,
}

/// Six hours, as in x3m: alarms due within two windows are held in memory, and the store is read
/// once a window, so a day of pending alarms costs four reads.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(6 * 60 * 60);

/// Thirty seconds: it must cover a whole delivery, a claim answering as late as the store
/// timeout (10 s) plus the wait of up to the claim-ahead (250 ms) plus the dispatch (5 s), with
/// room to spare; renewed every third of it while the dispatch runs, it survives one failed
/// renewal. A dead node's alarms wait at most this long for another node.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);

/// A quarter of a second: a claim is one durable write (a synced commit on SQLite, a round trip
/// on PostgreSQL), a few milliseconds even under load, but a burst of alarms due at once is
/// thousands of claims, and their batches still write every row: on SQLite 10,000 claims took
/// the writer 100 to 180 ms on a busy 2-core machine (the `scheduler` bench of
/// `switchyard-sqlite`; with 50 ms the burst's last claims came well after its due time).
/// Claiming this far ahead has the leases in hand at the due time, and the messages go out at
/// once instead of after those writes. Short enough that a node holds few alarms it is only
/// waiting on, and far within the lease.
pub const DEFAULT_CLAIM_AHEAD: Duration = Duration::from_millis(250);

/// Ten seconds: far beyond a healthy store's answer, so it only cuts off a stalled one, which
/// would otherwise hold a delivery (and [`Scheduler::shutdown`](crate::Scheduler::shutdown))
/// forever.
pub const DEFAULT_STORE_TIMEOUT: Duration = Duration::from_secs(10);

/// Ten minutes: a load reads up to two windows of alarms, which may be many, so it gets far
/// longer than one store call ([`DEFAULT_STORE_TIMEOUT`]); it only cuts off a load that hangs
/// (a connection gone silent), which is then tried again. A shutdown stops a load at once
/// whatever this is.
pub const DEFAULT_LOAD_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// 1,024 dispatches at a time: enough to keep a node's services busy, while a burst of a
/// hundred thousand due at once (a restart after a long stop) does not flood them. Claims may
/// run [`CLAIMED_PER_DISPATCH_SLOT`] times further ahead, so a burst is claimed before its due
/// time and then dispatched as fast as the slots free.
pub const DEFAULT_MAX_CONCURRENT_DELIVERIES: usize = 1_024;

/// How many deliveries may be under way (claimed, waiting for their due time or for a dispatch
/// slot, or dispatching) per dispatch slot: 16, so a burst of 16,384 alarms due at once (with
/// the default limit) is claimed within the claim-ahead, in a few group commits, instead of a
/// thousand at a time after its due time; while a restart's burst of a million still neither
/// holds a task per alarm nor floods the store with claims whose leases would lapse before
/// their dispatch.
pub const CLAIMED_PER_DISPATCH_SLOT: usize = 16;

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            window: DEFAULT_WINDOW,
            dispatch_timeout: switchyard_messaging::DEFAULT_TIMEOUT,
            lease: DEFAULT_LEASE,
            late_tolerance: Duration::from_secs(1),
            failure_delay: Duration::from_secs(10),
            sweep_interval: Some(Duration::from_secs(60)),
            load_backoff: (Duration::from_millis(100), Duration::from_secs(60)),
            claim_ahead: DEFAULT_CLAIM_AHEAD,
            store_timeout: DEFAULT_STORE_TIMEOUT,
            load_timeout: DEFAULT_LOAD_TIMEOUT,
            max_concurrent_deliveries: DEFAULT_MAX_CONCURRENT_DELIVERIES,
            retry_policy: RetryPolicy::Never,
            clock: Arc::new(SystemClock),
        }
    }
}

impl SchedulerConfig {
    /// The in-memory window (default [`DEFAULT_WINDOW`]): alarms due before `now + 2 × window`
    /// are held in memory, and the next stretch is loaded every `window`.
    pub fn window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// How long one delivery may take (default 5 s); a service slower than this answers
    /// [`Response::ServiceTimeout`](switchyard_messaging::Response::ServiceTimeout).
    pub fn dispatch_timeout(mut self, timeout: Duration) -> Self {
        self.dispatch_timeout = timeout;
        self
    }

    /// How long a claim on an alarm lasts (default [`DEFAULT_LEASE`]). It must cover a whole
    /// delivery: longer than the [store timeout](SchedulerConfig::store_timeout), the
    /// [claim-ahead](SchedulerConfig::claim_ahead) and the dispatch timeout together, or
    /// [`Scheduler::start`](crate::Scheduler::start) refuses it. It is renewed every third of it
    /// while a delivery runs.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// How late a delivery may be before it is marked `late` (default 1 s).
    pub fn late_tolerance(mut self, tolerance: Duration) -> Self {
        self.late_tolerance = tolerance;
        self
    }

    /// How long to wait before trying an alarm again after the store failed while claiming it
    /// (a claim that timed out is tried again at once) or renewing its lease before the
    /// dispatch, or after the retry hook panicked (default 10 s). A delivery whose final write
    /// failed is tried again once its lease lapses instead.
    pub fn failure_delay(mut self, delay: Duration) -> Self {
        self.failure_delay = delay;
        self
    }

    /// How often to look in the store for overdue alarms this scheduler does not hold (default
    /// every minute; `None` never): alarms another node saved or retried inside this node's
    /// window, and then left behind when it died.
    pub fn sweep_interval(mut self, interval: Option<Duration>) -> Self {
        self.sweep_interval = interval;
        self
    }

    /// The backoff between attempts of a failing load, from `min` doubling up to `max` (default
    /// 100 ms to 60 s). A load is retried until it succeeds.
    pub fn load_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.load_backoff = (min, max);
        self
    }

    /// How long before its due time an alarm is claimed (default [`DEFAULT_CLAIM_AHEAD`]): the
    /// lease is taken (a durable write) this far ahead, so at the due time the message is
    /// dispatched at once. The message never goes out before its due time; the lease covers the
    /// wait as well as the delivery. Zero claims at the due time. It must leave room in the
    /// [lease](SchedulerConfig::lease) for the store timeout and the dispatch.
    ///
    /// An alarm cancelled or replaced (scheduled again under its id) while it waits, claimed,
    /// for its due time is not dispatched.
    pub fn claim_ahead(mut self, lead: Duration) -> Self {
        self.claim_ahead = lead;
        self
    }

    /// How long the scheduler waits for any one store call but loads (default
    /// [`DEFAULT_STORE_TIMEOUT`]), so a stalled store never holds a delivery, or
    /// [`shutdown`](crate::Scheduler::shutdown), forever. A call cut off may still have taken
    /// effect, and the scheduler allows for it:
    ///
    /// - [`schedule`](crate::Scheduler::schedule) answers
    ///   [`ScheduleError::StoreTimedOut`](crate::ScheduleError::StoreTimedOut) and arms the
    ///   alarm all the same: if it was saved it is delivered, and if not its claim finds nothing;
    /// - the cancels answer `StoreTimedOut` (cancelling again is harmless);
    /// - a claim is tried again at once (after a store error, after the
    ///   [failure delay](SchedulerConfig::failure_delay)); if the first one took effect the
    ///   delivery still holds the lease, and the second counts no new attempt;
    /// - a delivery's final write (delete or retry) is tried again a few times; if an earlier
    ///   try took effect the later ones find the lease released, and the alarm is looked at
    ///   again at its retry time (a claim there finds the retry, or nothing);
    /// - a renewal that fails leaves the lease to lapse; another node may then deliver again.
    ///
    /// Loads and sweeps have their own bound, [`load_timeout`](SchedulerConfig::load_timeout).
    pub fn store_timeout(mut self, timeout: Duration) -> Self {
        self.store_timeout = timeout;
        self
    }

    /// How long one load of the window (or sweep for overdue alarms) may take (default
    /// [`DEFAULT_LOAD_TIMEOUT`]): one that takes longer is cut off and tried again with the
    /// [load backoff](SchedulerConfig::load_backoff). Keep it far above the time to read two
    /// windows of alarms: a load cut off starts over from scratch. A shutdown stops a load under
    /// way at once.
    pub fn load_timeout(mut self, timeout: Duration) -> Self {
        self.load_timeout = timeout;
        self
    }

    /// The most dispatches under way at once (default [`DEFAULT_MAX_CONCURRENT_DELIVERIES`]; at
    /// least 1). Deliveries start (claim their alarm) [`CLAIMED_PER_DISPATCH_SLOT`] times as
    /// many: those beyond the limit wait, claimed, for a slot, and dispatch in due order as
    /// slots free (renewing their lease first if it came close to lapsing meanwhile). Alarms
    /// beyond those stay armed and start, in due order, as deliveries end.
    pub fn max_concurrent_deliveries(mut self, limit: usize) -> Self {
        self.max_concurrent_deliveries = limit;
        self
    }

    /// What to do after a delivery (default [`RetryPolicy::Never`]).
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry_policy = policy;
        self
    }

    /// The clock (default [`SystemClock`]); tests use a [`ManualClock`](crate::ManualClock).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The in-memory window.
    pub fn get_window(&self) -> Duration {
        self.window
    }
}

impl fmt::Debug for SchedulerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SchedulerConfig")
            .field("window", &self.window)
            .field("dispatch_timeout", &self.dispatch_timeout)
            .field("lease", &self.lease)
            .field("late_tolerance", &self.late_tolerance)
            .field("failure_delay", &self.failure_delay)
            .field("sweep_interval", &self.sweep_interval)
            .field("load_backoff", &self.load_backoff)
            .field("claim_ahead", &self.claim_ahead)
            .field("store_timeout", &self.store_timeout)
            .field("load_timeout", &self.load_timeout)
            .field("max_concurrent_deliveries", &self.max_concurrent_deliveries)
            .field("retry_policy", &self.retry_policy)
            .finish_non_exhaustive()
    }
}
