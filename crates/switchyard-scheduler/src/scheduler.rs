//! The scheduler: alarms saved through an [`AlarmStore`], held in memory for a window, and
//! delivered through a node's dispatcher at their time.
//!
//! One task (the actor) owns the in-memory state: the armed alarms by due time, the loaded
//! horizon, and the deliveries in flight. Loads, deliveries and their store writes run in tasks
//! of their own and report back, so a slow store or service never holds up the timers, and a
//! panic in any of them is reported as a failure instead of stopping the actor.

mod batch;
mod config;
mod deliver;
mod error;
mod held;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use backon::{ExponentialBuilder, Retryable as _};
use futures::FutureExt as _;
use futures::future::BoxFuture;
use switchyard_messaging::names::{self, NameKind};
use switchyard_messaging::{Message, Node};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::AbortHandle;

use self::batch::Batcher;
pub use self::config::{
    CLAIMED_PER_DISPATCH_SLOT, DEFAULT_CLAIM_AHEAD, DEFAULT_LEASE, DEFAULT_LOAD_TIMEOUT,
    DEFAULT_MAX_CONCURRENT_DELIVERIES, DEFAULT_STORE_TIMEOUT, DEFAULT_WINDOW, SchedulerConfig,
};
use self::deliver::After;
pub use self::deliver::DELIVERY_SPAN;
pub use self::error::{ConfigError, ScheduleError};
use self::error::{StoreCallError, bounded};
use self::held::{Entries, Published};
use crate::assigns;
use crate::store::{Alarm, AlarmStore, AlarmStoreError, Claim, ClaimRequest, DeleteRequest};

/// When an alarm is due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum When {
    /// At this time; a time in the past is delivered at once, marked late.
    At(SystemTime),
    /// This long from now (by the scheduler's clock).
    In(Duration),
}

/// Delivers messages at a later time, persisted so they survive restarts, safe on several
/// nodes sharing one store.
///
/// [`schedule`](Scheduler::schedule) saves an alarm and returns once it is durable. Alarms due
/// within two windows of now are held in memory and armed; the rest stay in the store until the
/// window reaches them. [`claim_ahead`](SchedulerConfig::claim_ahead) before its time an
/// alarm is claimed in the store with a lease (a durable write that also counts the attempt);
/// at its time, never before, it is delivered through [`Node::dispatch_with`] with the
/// configured timeout, and then, as the [`RetryPolicy`](crate::RetryPolicy) decides, deleted or
/// rescheduled. At most [`max_concurrent_deliveries`](SchedulerConfig::max_concurrent_deliveries)
/// dispatches run at once, and [`CLAIMED_PER_DISPATCH_SLOT`] times as many deliveries are under
/// way (claimed ahead and waiting); the others stay armed until a delivery ends.
///
/// Delivery is **at least once**: a node that dies after a delivery but before deleting the
/// alarm leaves it to be delivered again once its lease lapses. While a lease holds, no other
/// scheduler delivers the alarm, provided the nodes' clocks agree to well within the lease (see
/// the [crate docs](crate#clocks)): the lease covers a claim answering as late as the store
/// timeout, the wait for the due time and the dispatch (the configuration is refused
/// otherwise), and a delivery whose lease came too close to lapsing before its dispatch renews
/// it first, and is not dispatched if that fails. Attempts are counted when they start, so a retry policy
/// with `max_attempts` also bounds deliveries cut short by crashes.
///
/// The handle is cheap to clone; the scheduler stops when [`shutdown`](Scheduler::shutdown) is
/// called or every handle is dropped, after the deliveries under way have finished.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use switchyard_messaging::{Message, Node, Router};
/// use switchyard_scheduler::store::MemoryAlarmStore;
/// use switchyard_scheduler::{Scheduler, SchedulerConfig, When};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let (tx, mut delivered) = tokio::sync::mpsc::unbounded_channel();
/// let node = Node::new("reminders");
/// node.register(
///     Router::new("reminders")
///         .service("remind", move |msg: Message| {
///             let tx = tx.clone();
///             async move {
///                 let _ = tx.send(msg.request::<String>().unwrap_or_default());
///                 msg.ok()
///             }
///         })
///         .authorize(|_| Ok(())),
/// )?;
///
/// let scheduler = Scheduler::start(node, MemoryAlarmStore::new(), SchedulerConfig::default())?;
/// let reminder = Message::new("remind").with_request("stretch your legs");
/// scheduler.schedule(reminder, "user-1", When::In(Duration::from_millis(20))).await?;
/// assert_eq!(delivered.recv().await.as_deref(), Some("stretch your legs"));
/// scheduler.shutdown().await;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Scheduler {
    shared: Arc<Shared>,
    commands: mpsc::UnboundedSender<Command>,
}

/// What the scheduler's tasks share.
struct Shared {
    node: Node,
    store: Arc<dyn AlarmStore>,
    config: SchedulerConfig,
    /// This scheduler's name in leases: its node's id, which changes with each incarnation.
    holder: String,
    /// Set once a shutdown has begun: `schedule` refuses from then on.
    stopping: AtomicBool,
    /// One permit per dispatch that may run at once
    /// ([`SchedulerConfig::max_concurrent_deliveries`]); a claimed delivery waits here, in due
    /// order (the semaphore is fair), once its due time has come.
    dispatch_slots: Semaphore,
    /// The actor's horizon and held ids, so `schedule` wakes it only for alarms it acts on.
    published: Arc<Published>,
    /// The deliveries' claims and deletes, sent to the store in batches when it
    /// [prefers them](AlarmStore::prefers_batches), else one by one.
    batchers: Option<Batchers>,
}

struct Batchers {
    claims: Batcher<ClaimRequest, Claim>,
    deletes: Batcher<DeleteRequest, bool>,
}

impl Shared {
    /// Claims an alarm for a delivery, as [`AlarmStore::claim`]: in the next batch, or alone
    /// (copying nothing for a store that takes no batches).
    async fn claim(
        &self,
        id: &str,
        holder: &str,
        now: SystemTime,
        due_by: SystemTime,
        lease_until: SystemTime,
    ) -> Result<Claim, AlarmStoreError> {
        match &self.batchers {
            Some(batchers) => {
                let request = ClaimRequest {
                    id: id.to_owned(),
                    holder: holder.to_owned(),
                    now,
                    due_by,
                    lease_until,
                };
                batchers.claims.call(request).await
            }
            None => self.store.claim(id, holder, now, due_by, lease_until).await,
        }
    }

    /// Deletes a delivered alarm, as [`AlarmStore::delete`]: in the next batch, or alone.
    async fn delete(&self, id: &str, holder: &str) -> Result<bool, AlarmStoreError> {
        match &self.batchers {
            Some(batchers) => {
                let request = DeleteRequest {
                    id: id.to_owned(),
                    holder: holder.to_owned(),
                };
                batchers.deletes.call(request).await
            }
            None => self.store.delete(id, holder).await,
        }
    }

    /// When to claim an alarm due at `due`: [`SchedulerConfig::claim_ahead`] before it.
    fn claim_time(&self, due: SystemTime) -> SystemTime {
        due.checked_sub(self.config.claim_ahead).unwrap_or(due)
    }
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("holder", &self.holder)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

enum Command {
    Arm(Armed),
    Forget(Vec<String>),
    Held(oneshot::Sender<usize>),
    Shutdown(oneshot::Sender<()>),
}

/// What the actor's own tasks report.
enum Report {
    Loaded {
        until: SystemTime,
        alarms: Result<Vec<Alarm>, StoreCallError>,
    },
    Swept(Result<Vec<Alarm>, StoreCallError>),
    Delivered {
        id: String,
        /// The life of the entry the delivery was for: a report for an earlier life (the id
        /// was cancelled and scheduled again meanwhile) is ignored.
        generation: u64,
        after: After,
    },
}

impl Scheduler {
    /// Starts a scheduler delivering through `node`, keeping alarms in `store`. It loads the
    /// first window at once. Must be called within a tokio runtime.
    ///
    /// # Errors
    ///
    /// [`ConfigError::LeaseTooShort`] when the lease is not longer than the store timeout, the
    /// claim-ahead and the dispatch timeout together; [`ConfigError::EmptyWindow`] when the
    /// window is zero; [`ConfigError::Zero`] when the concurrency limit, the store timeout or
    /// the load timeout is zero; [`ConfigError::TooLong`] when a duration setting is beyond a
    /// hundred years.
    pub fn start(
        node: Node,
        store: impl AlarmStore + 'static,
        config: SchedulerConfig,
    ) -> Result<Self, ConfigError> {
        Self::start_shared(node, Arc::new(store), config)
    }

    fn start_shared(
        node: Node,
        store: Arc<dyn AlarmStore>,
        config: SchedulerConfig,
    ) -> Result<Self, ConfigError> {
        if config.window.is_zero() {
            return Err(ConfigError::EmptyWindow);
        }
        for (setting, zero) in [
            (
                "max concurrent deliveries",
                config.max_concurrent_deliveries == 0,
            ),
            ("store timeout", config.store_timeout.is_zero()),
            ("load timeout", config.load_timeout.is_zero()),
        ] {
            if zero {
                return Err(ConfigError::Zero { setting });
            }
        }
        // Clock readings plus these must never overflow, wherever they are added.
        for (setting, value) in [
            ("window", Some(config.window)),
            ("lease", Some(config.lease)),
            ("dispatch timeout", Some(config.dispatch_timeout)),
            ("failure delay", Some(config.failure_delay)),
            ("claim ahead", Some(config.claim_ahead)),
            ("store timeout", Some(config.store_timeout)),
            ("load timeout", Some(config.load_timeout)),
            ("sweep interval", config.sweep_interval),
        ] {
            if let Some(value) = value.filter(|value| *value > error::LONGEST) {
                return Err(ConfigError::TooLong { setting, value });
            }
        }
        // The lease must cover a whole delivery: a claim answering as late as the store
        // timeout, the wait for the due time (at most the claim-ahead) and the dispatch. This
        // also bounds the claim-ahead.
        if config.lease <= config.store_timeout + config.claim_ahead + config.dispatch_timeout {
            return Err(ConfigError::LeaseTooShort {
                lease: config.lease,
                store_timeout: config.store_timeout,
                claim_ahead: config.claim_ahead,
                dispatch_timeout: config.dispatch_timeout,
            });
        }
        // Unique per scheduler, not per node: two schedulers of one node sharing a store must
        // not take each other's leases for their own.
        static STARTED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let holder = format!(
            "{}/{}",
            node.id(),
            STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let max_concurrent_deliveries = config.max_concurrent_deliveries;
        let batchers = store.prefers_batches().then(|| Batchers {
            claims: Batcher::start(store.clone(), config.store_timeout, |store, requests| {
                async move { store.claim_many(requests).await }.boxed()
            }),
            deletes: Batcher::start(store.clone(), config.store_timeout, |store, requests| {
                async move { store.delete_many(requests).await }.boxed()
            }),
        });
        let shared = Arc::new(Shared {
            node,
            store,
            config,
            holder,
            stopping: AtomicBool::new(false),
            // A limit beyond the semaphore's greatest count is no limit on any real node.
            dispatch_slots: Semaphore::new(max_concurrent_deliveries.min(Semaphore::MAX_PERMITS)),
            published: Arc::default(),
            batchers,
        });
        let (commands, inbox) = mpsc::unbounded_channel();
        let (reports, report_inbox) = mpsc::unbounded_channel();
        let now = shared.config.clock.now();
        let actor = Actor {
            shared: shared.clone(),
            reports,
            entries: Entries::new(shared.published.clone()),
            queue: BTreeSet::new(),
            horizon: None,
            loaded_until: None,
            next_load: now,
            load_task: None,
            sweep_task: None,
            next_sweep: shared.config.sweep_interval.map(|every| now + every),
            in_flight: 0,
            generations: 0,
            stopping: None,
        };
        tokio::spawn(actor.run(inbox, report_inbox));
        Ok(Self { shared, commands })
    }

    /// Saves an alarm delivering `message` at `when`, for `aggregate_id`, and returns the
    /// message that will be delivered once the alarm is durable.
    ///
    /// The message gets [`dispatch_at`](assigns::DISPATCH_AT) (the due time) and
    /// [`dispatch_attempts`](assigns::DISPATCH_ATTEMPTS) = 0 in its assigns; the store may
    /// adjust it further. An alarm due within the loaded window is armed at once. Stores keep
    /// due times to the microsecond; the delivery still waits for the exact due time (the one
    /// in `dispatch_at`), so it never goes out early.
    ///
    /// Its id names the alarm: scheduling another message with the same id replaces the alarm.
    /// If the old one is claimed (waiting, at most [`claim_ahead`](SchedulerConfig::claim_ahead),
    /// for its due time) it is not dispatched; if its dispatch is under way, that delivery ends
    /// as it would (its final write cannot touch the new alarm), and the new alarm is armed
    /// after it.
    ///
    /// A call made while a shutdown begins may still save the alarm and answer `Ok` without
    /// this scheduler arming it: the alarm stays in the store for the next scheduler on it.
    ///
    /// # Errors
    ///
    /// [`ScheduleError::Store`] when the store failed (the alarm is not saved; with
    /// [`AlarmStoreError::Unknown`](crate::store::AlarmStoreError::Unknown) it may be, and is
    /// armed as after a timeout);
    /// [`ScheduleError::StoreTimedOut`] when it did not answer in time (the alarm may or may not
    /// be saved; it is armed all the same, so if it was saved it is delivered);
    /// [`ScheduleError::Stopped`] when the scheduler's shutdown has begun;
    /// [`ScheduleError::TooFar`] when `When::In` is beyond any clock;
    /// [`ScheduleError::InvalidName`] when the message id or `aggregate_id` breaks the
    /// [name rule](switchyard_messaging::names) (checked first, so every store accepts the same
    /// ids and nothing reaches the store).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use switchyard_messaging::{Message, Node};
    /// use switchyard_scheduler::store::MemoryAlarmStore;
    /// use switchyard_scheduler::{ScheduleError, Scheduler, SchedulerConfig, When};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = MemoryAlarmStore::new();
    /// let scheduler = Scheduler::start(Node::new("n"), store.clone(), SchedulerConfig::default())?;
    /// let later = When::In(Duration::from_secs(60));
    /// let refused = scheduler.schedule(Message::new("remind").with_id("a\0"), "acc-1", later).await;
    /// assert!(matches!(refused, Err(ScheduleError::InvalidName(_))));
    /// assert!(store.is_empty());
    /// scheduler.schedule(Message::new("remind").with_id("a-1"), "acc-1", later).await?;
    /// assert_eq!(store.len(), 1);
    /// scheduler.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn schedule(
        &self,
        message: Message,
        aggregate_id: impl Into<String>,
        when: When,
    ) -> Result<Message, ScheduleError> {
        let aggregate_id = aggregate_id.into();
        names::check(NameKind::MessageId, message.id())?;
        names::check(NameKind::AggregateId, &aggregate_id)?;
        if self.shared.stopping.load(Ordering::SeqCst) || self.commands.is_closed() {
            return Err(ScheduleError::Stopped);
        }
        let due = match when {
            When::At(time) => time,
            When::In(delay) => delay
                .le(&error::LONGEST)
                .then(|| self.shared.config.clock.now().checked_add(delay))
                .flatten()
                .ok_or(ScheduleError::TooFar { delay })?,
        };
        let message = message
            .assign(assigns::DISPATCH_AT, &due)
            .assign(assigns::DISPATCH_ATTEMPTS, &0_u32);
        // Kept to arm the alarm (the message itself goes to the store).
        let id = message.id().to_owned();
        let save = self.shared.store.save(Alarm {
            message,
            aggregate_id,
            due,
            attempts: 0,
        });
        let saved = match bounded(self.shared.config.store_timeout, save).await {
            Ok(saved) => saved,
            Err(error) if error.may_have_taken_effect() => {
                // The save may have taken effect (it timed out, or the store cannot tell): armed,
                // the alarm is delivered if it did, and its claim finds nothing (`Gone`) if it
                // did not.
                let _ = self.commands.send(Command::Arm(Armed { id, due }));
                return Err(error.into());
            }
            Err(error) => return Err(error.into()),
        };
        // Saved: a stopped scheduler's alarm is delivered by the next one on this store. Beyond
        // the horizon, under an id it does not hold, the actor would do nothing with it.
        if self.shared.published.actor_needs(&id, due) {
            let _ = self.commands.send(Command::Arm(Armed { id, due }));
        }
        Ok(saved)
    }

    /// Cancels the alarm of message `message_id`. `false` when there was none (already
    /// delivered, or never scheduled). An alarm this scheduler has claimed ahead of its due
    /// time (at most [`claim_ahead`](SchedulerConfig::claim_ahead) before it) is not
    /// dispatched; a dispatch already under way is not stopped. Another scheduler on the same
    /// store that has claimed it ahead may still dispatch it.
    ///
    /// # Errors
    ///
    /// [`ScheduleError::Store`] when the store failed, [`ScheduleError::StoreTimedOut`] when it
    /// did not answer in time, [`ScheduleError::InvalidName`] when `message_id` breaks the
    /// [name rule](switchyard_messaging::names) (no store is asked).
    pub async fn cancel(&self, message_id: &str) -> Result<bool, ScheduleError> {
        names::check(NameKind::MessageId, message_id)?;
        let cancel = self.shared.store.cancel(message_id);
        let cancelled = bounded(self.shared.config.store_timeout, cancel).await?;
        let _ = self
            .commands
            .send(Command::Forget(vec![message_id.to_owned()]));
        Ok(cancelled)
    }

    /// Cancels every alarm of `aggregate_id` and returns their message ids. Alarms this
    /// scheduler has claimed ahead of their due time are not dispatched, as with
    /// [`cancel`](Scheduler::cancel).
    ///
    /// # Errors
    ///
    /// [`ScheduleError::Store`] when the store failed, [`ScheduleError::StoreTimedOut`] when it
    /// did not answer in time, [`ScheduleError::InvalidName`] when `aggregate_id` breaks the
    /// [name rule](switchyard_messaging::names) (no store is asked).
    pub async fn cancel_for(&self, aggregate_id: &str) -> Result<Vec<String>, ScheduleError> {
        names::check(NameKind::AggregateId, aggregate_id)?;
        let cancel = self.shared.store.cancel_for(aggregate_id);
        let cancelled = bounded(self.shared.config.store_timeout, cancel).await?;
        let _ = self.commands.send(Command::Forget(cancelled.clone()));
        Ok(cancelled)
    }

    /// How many alarms this scheduler holds in memory (armed or being delivered): those of the
    /// window, not every pending alarm. 0 once it has stopped.
    pub async fn held(&self) -> usize {
        let (reply, answer) = oneshot::channel();
        if self.commands.send(Command::Held(reply)).is_err() {
            return 0;
        }
        answer.await.unwrap_or(0)
    }

    /// Stops the scheduler: from the call on, [`schedule`](Scheduler::schedule) answers
    /// [`ScheduleError::Stopped`]; no new delivery starts; loads and sweeps are stopped; the
    /// deliveries under way finish (one claimed ahead waits for its due time, at most
    /// [`claim_ahead`](SchedulerConfig::claim_ahead); each dispatch within the dispatch timeout,
    /// then its store writes, each bounded by the [store
    /// timeout](SchedulerConfig::store_timeout)); and pending alarms stay in the store for the
    /// next scheduler, including one whose `schedule` was still saving when the shutdown began
    /// (that call may answer `Ok`). Returns once it has stopped; calling it again returns at
    /// once.
    pub async fn shutdown(&self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        let (reply, stopped) = oneshot::channel();
        if self.commands.send(Command::Shutdown(reply)).is_ok() {
            let _ = stopped.await;
        }
    }

    /// The node deliveries go through.
    pub fn node(&self) -> &Node {
        &self.shared.node
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// In the queue, at this time.
    Armed(SystemTime),
    Delivering,
}

/// What the actor keeps of an alarm: its id and due time. A delivery claims the alarm by id and
/// sends the stored message the claim answers with, so the actor holds no message (nor the
/// cost of copying and dropping one per alarm).
struct Armed {
    id: String,
    due: SystemTime,
}

impl Armed {
    fn of(alarm: &Alarm) -> Self {
        Self {
            id: alarm.id().to_owned(),
            due: alarm.due,
        }
    }
}

struct Entry {
    state: State,
    /// Which life of this id the entry is: each arming starts a new one.
    generation: u64,
    /// Set to stop the delivery under way before its dispatch: the alarm was cancelled or
    /// replaced. Each delivery gets a fresh one.
    stop: Arc<AtomicBool>,
    /// Cancelled during its delivery: forgotten once the delivery ends.
    cancelled: bool,
    /// The same id scheduled again during a delivery (due then), to arm once it ends.
    replacement: Option<SystemTime>,
}

struct Actor {
    shared: Arc<Shared>,
    reports: mpsc::UnboundedSender<Report>,
    entries: Entries<Entry>,
    queue: BTreeSet<(SystemTime, String)>,
    /// Alarms due before this are loaded, or being loaded: a new one is armed at once.
    horizon: Option<SystemTime>,
    /// The end of the last successful load: where the next one starts.
    loaded_until: Option<SystemTime>,
    next_load: SystemTime,
    /// The load and sweep under way (none while idle), stopped with the scheduler.
    load_task: Option<AbortHandle>,
    sweep_task: Option<AbortHandle>,
    next_sweep: Option<SystemTime>,
    in_flight: usize,
    /// Entries armed so far, numbering each entry's life.
    generations: u64,
    /// Set once a shutdown was asked for: who waits for it.
    stopping: Option<Vec<oneshot::Sender<()>>>,
}

async fn wait(sleep: Option<BoxFuture<'static, ()>>) {
    match sleep {
        Some(sleep) => sleep.await,
        None => futures::future::pending().await,
    }
}

impl Actor {
    async fn run(
        mut self,
        mut inbox: mpsc::UnboundedReceiver<Command>,
        mut reports: mpsc::UnboundedReceiver<Report>,
    ) {
        let clock = self.shared.config.clock.clone();
        loop {
            if self.stopping.is_some() {
                // Neither a load nor a sweep outlives the scheduler, however stalled its store.
                for task in [self.load_task.take(), self.sweep_task.take()]
                    .into_iter()
                    .flatten()
                {
                    task.abort();
                }
            }
            if let Some(waiters) = &mut self.stopping
                && self.in_flight == 0
            {
                for waiter in waiters.drain(..) {
                    let _ = waiter.send(());
                }
                break;
            }
            let running = self.stopping.is_none();
            let has_room = self.in_flight < self.under_way_limit();
            let fire = self
                .queue
                .first()
                .filter(|_| running && has_room)
                .map(|(at, _)| clock.sleep_until(*at));
            let load =
                (running && self.load_task.is_none()).then(|| clock.sleep_until(self.next_load));
            let sweep = self
                .next_sweep
                .filter(|_| running && self.sweep_task.is_none())
                .map(|at| clock.sleep_until(at));
            tokio::select! {
                biased;
                Some(report) = reports.recv() => {
                    self.on_report(report);
                    // A burst's reports come in hundreds at once: take them all before the
                    // timers are set again.
                    while let Ok(report) = reports.try_recv() {
                        self.on_report(report);
                    }
                }
                command = inbox.recv(), if running => match command {
                    Some(command) => {
                        self.on_command(command);
                        while self.stopping.is_none()
                            && let Ok(command) = inbox.try_recv()
                        {
                            self.on_command(command);
                        }
                    }
                    // Every handle is gone: stop as if asked to.
                    None => {
                        self.shared.stopping.store(true, Ordering::SeqCst);
                        self.stopping = Some(Vec::new());
                    }
                },
                () = wait(fire) => self.fire_due(),
                () = wait(load) => self.start_load(),
                () = wait(sweep) => self.start_sweep(),
            }
        }
        tracing::debug!(holder = %self.shared.holder, "scheduler stopped");
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Arm(alarm) => {
                match self.entries.get_mut(&alarm.id) {
                    Some(entry) if entry.state == State::Delivering => {
                        // Scheduled again while the old one is being delivered: the old one is
                        // not dispatched if it has not been yet, and the new alarm is armed
                        // once that delivery ends (never two deliveries of one id at once).
                        entry.stop.store(true, Ordering::SeqCst);
                        entry.replacement = Some(alarm.due);
                        return;
                    }
                    Some(entry) => {
                        // Scheduled again under the same id: the new alarm replaces the old.
                        if let State::Armed(at) = entry.state {
                            self.queue.remove(&(at, alarm.id.clone()));
                        }
                        self.entries.remove(&alarm.id);
                    }
                    None => {}
                }
                if self.horizon.is_some_and(|horizon| alarm.due < horizon) {
                    self.arm(alarm);
                }
            }
            Command::Forget(ids) => {
                for id in ids {
                    self.forget(&id);
                }
            }
            Command::Held(reply) => {
                let _ = reply.send(self.entries.len());
            }
            Command::Shutdown(reply) => {
                self.stopping = Some(vec![reply]);
            }
        }
    }

    /// Arms `alarm` to be claimed [`claim_ahead`](SchedulerConfig::claim_ahead) of its due
    /// time, unless it is held already (armed or being delivered).
    fn arm(&mut self, alarm: Armed) {
        let Armed { id, due } = alarm;
        if self.entries.contains_key(&id) {
            return;
        }
        let at = self.shared.claim_time(due);
        self.queue.insert((at, id.clone()));
        self.generations += 1;
        self.entries.insert_new(
            id,
            Entry {
                state: State::Armed(at),
                generation: self.generations,
                stop: Arc::new(AtomicBool::new(false)),
                cancelled: false,
                replacement: None,
            },
        );
    }

    fn forget(&mut self, id: &str) {
        match self.entries.get_mut(id) {
            None => {}
            Some(entry) if entry.state == State::Delivering => {
                // Kept until its delivery ends, so that the id scheduled again meanwhile waits
                // for it (as a replacement) instead of starting a second delivery at once; the
                // delivery is not dispatched if it has not been yet.
                entry.stop.store(true, Ordering::SeqCst);
                entry.cancelled = true;
                entry.replacement = None;
            }
            Some(entry) => {
                if let State::Armed(at) = entry.state {
                    self.queue.remove(&(at, id.to_owned()));
                }
                self.entries.remove(id);
            }
        }
    }

    fn on_report(&mut self, report: Report) {
        match report {
            Report::Loaded { until, alarms } => {
                self.load_task = None;
                match alarms {
                    Ok(alarms) => {
                        self.loaded_until = Some(self.loaded_until.map_or(until, |u| u.max(until)));
                        tracing::debug!(count = alarms.len(), "loaded alarms");
                        for alarm in &alarms {
                            self.arm(Armed::of(alarm));
                        }
                    }
                    Err(error) => {
                        // The backoff gave up (it does not, but should it): try again at once.
                        tracing::warn!(error = ?error, "loading alarms failed");
                        self.next_load = self.shared.config.clock.now();
                    }
                }
            }
            Report::Swept(alarms) => {
                self.sweep_task = None;
                match alarms {
                    Ok(alarms) => {
                        for alarm in &alarms {
                            self.arm(Armed::of(alarm));
                        }
                    }
                    Err(error) => {
                        tracing::warn!(error = ?error, "sweeping overdue alarms failed");
                    }
                }
            }
            Report::Delivered {
                id,
                generation,
                after,
            } => {
                self.in_flight -= 1;
                if self
                    .entries
                    .get(&id)
                    .is_some_and(|entry| entry.generation == generation)
                {
                    self.after_delivery(id, after);
                }
            }
        }
    }

    fn after_delivery(&mut self, id: String, after: After) {
        let Some(entry) = self.entries.get_mut(&id) else {
            // Cancelled while it was being delivered.
            return;
        };
        if let Some(due) = entry.replacement.take() {
            // Whatever became of the old alarm, the store now holds the new one.
            self.entries.remove(&id);
            if self.stopping.is_none() && self.horizon.is_some_and(|horizon| due < horizon) {
                self.arm(Armed { id, due });
            }
            return;
        }
        if entry.cancelled {
            self.entries.remove(&id);
            return;
        }
        match after {
            After::Gone => {
                self.entries.remove(&id);
            }
            After::Rearm { at } => {
                let within = self.horizon.is_some_and(|horizon| at < horizon);
                if within && self.stopping.is_none() {
                    entry.state = State::Armed(at);
                    self.queue.insert((at, id));
                } else {
                    // Beyond the window: a later load finds it in the store.
                    self.entries.remove(&id);
                }
            }
        }
    }

    /// How many deliveries may be under way at once: claimed and waiting for their due time or
    /// a dispatch slot, or dispatching.
    fn under_way_limit(&self) -> usize {
        self.shared
            .config
            .max_concurrent_deliveries
            .saturating_mul(CLAIMED_PER_DISPATCH_SLOT)
    }

    /// Starts the deliveries whose claim time has come, in order, while there is room.
    fn fire_due(&mut self) {
        let now = self.shared.config.clock.now();
        while let Some((due, _)) = self.queue.first() {
            if *due > now || self.in_flight >= self.under_way_limit() {
                break;
            }
            let Some((due, id)) = self.queue.pop_first() else {
                break;
            };
            // Only the entry's own queue item starts a delivery: a stale one (its entry was
            // forgotten and armed again since, or is being delivered) does nothing.
            let Some(entry) = self
                .entries
                .get_mut(&id)
                .filter(|entry| entry.state == State::Armed(due))
            else {
                continue;
            };
            entry.state = State::Delivering;
            entry.stop = Arc::new(AtomicBool::new(false));
            self.in_flight += 1;
            deliver::spawn(
                self.shared.clone(),
                id,
                entry.generation,
                entry.stop.clone(),
                self.reports.clone(),
            );
        }
    }

    /// Loads `[previous horizon, now + 2 × window)`, retrying with backoff until it succeeds.
    /// The horizon moves at once, so an alarm scheduled while the load runs is armed by
    /// `schedule` even if the load does not see it: no gap, and no duplicate either (an alarm
    /// held already is not armed twice).
    fn start_load(&mut self) {
        let config = &self.shared.config;
        let now = config.clock.now();
        let until = now + config.window * 2;
        let from = self.loaded_until;
        let horizon = self.horizon.map_or(until, |h| h.max(until));
        self.horizon = Some(horizon);
        // Published before the load starts: see `held`.
        self.shared.published.set_horizon(horizon);
        self.next_load = now + config.window;
        let (min, max) = config.load_backoff;
        let store = self.shared.store.clone();
        // Not the store timeout: a load may read many alarms, and one cut off starts over.
        let timeout = config.load_timeout;
        let reports = self.reports.clone();
        tracing::debug!(?from, ?until, "loading alarms");
        let task = tokio::spawn(async move {
            let alarms = (|| bounded(timeout, store.load(from, until)))
                .retry(
                    ExponentialBuilder::default()
                        .with_min_delay(min)
                        .with_max_delay(max)
                        .with_jitter()
                        .without_max_times(),
                )
                .notify(|error: &StoreCallError, delay| {
                    tracing::warn!(
                        error = ?error,
                        retry_in = ?delay,
                        "loading alarms failed"
                    );
                })
                .await;
            let _ = reports.send(Report::Loaded { until, alarms });
        });
        self.load_task = Some(task.abort_handle());
    }

    /// Looks for overdue alarms this scheduler does not hold: saved or retried by another node
    /// inside this node's window, then left behind.
    fn start_sweep(&mut self) {
        let config = &self.shared.config;
        let now = config.clock.now();
        self.next_sweep = config.sweep_interval.map(|every| now + every);
        let store = self.shared.store.clone();
        let timeout = config.load_timeout;
        let reports = self.reports.clone();
        let task = tokio::spawn(async move {
            let alarms = bounded(timeout, store.load(None, now)).await;
            let _ = reports.send(Report::Swept(alarms));
        });
        self.sweep_task = Some(task.abort_handle());
    }
}
