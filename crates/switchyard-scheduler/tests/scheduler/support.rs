//! Fixtures: a node whose services record what they receive, a store that counts loads and can
//! fail or hold them, and a wait that polls.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::future::{BoxFuture, FutureExt};
use switchyard_messaging::{Message, Node, Router};
use switchyard_scheduler::store::{
    Alarm, AlarmStore, AlarmStoreError, Claim, ClaimRequest, DeleteRequest, MemoryAlarmStore,
};
use switchyard_scheduler::{Scheduler, SchedulerConfig};
use tokio::sync::{Semaphore, mpsc};

/// A fixed, whole-second start for manual clocks.
pub(crate) fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

pub(crate) fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

/// A message as a service received it.
#[derive(Clone, Debug)]
pub(crate) struct Received {
    pub(crate) message: Message,
}

/// A node with services `record` (answers ok), `fail` (answers an error) and `boom` (panics),
/// each reporting what it received on the returned channel.
pub(crate) fn recording_node(name: &str) -> (Node, mpsc::UnboundedReceiver<Received>) {
    let (tx, rx) = mpsc::unbounded_channel();
    (recording_node_to(name, tx), rx)
}

/// As [`recording_node`], reporting to `tx`.
pub(crate) fn recording_node_to(name: &str, tx: mpsc::UnboundedSender<Received>) -> Node {
    let node = Node::new(name);
    let report = move |tx: &mpsc::UnboundedSender<Received>, msg: &Message| {
        let _ = tx.send(Received {
            message: msg.clone(),
        });
    };
    let (record_tx, fail_tx, boom_tx) = (tx.clone(), tx.clone(), tx);
    let (r1, r2, r3) = (report, report, report);
    node.register(
        Router::new("test")
            .service("record", move |msg: Message| {
                r1(&record_tx, &msg);
                async move { msg.ok() }
            })
            .service("fail", move |msg: Message| {
                r2(&fail_tx, &msg);
                async move { msg.error("failed on purpose") }
            })
            .service("boom", move |msg: Message| {
                r3(&boom_tx, &msg);
                async move {
                    if msg.service() == "boom" {
                        panic!("boom");
                    }
                    msg.ok()
                }
            })
            .authorize(|_| Ok(())),
    )
    .unwrap();
    node
}

/// Waits (in real time, at most 10 s) for the next received message.
pub(crate) async fn next(rx: &mut mpsc::UnboundedReceiver<Received>) -> Received {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("no delivery within 10 s")
        .expect("the node is gone")
}

/// Asserts nothing is received within 100 ms.
pub(crate) async fn nothing(rx: &mut mpsc::UnboundedReceiver<Received>) {
    if let Ok(Some(received)) = tokio::time::timeout(Duration::from_millis(100), rx.recv()).await {
        panic!("unexpected delivery of {}", received.message.id());
    }
}

/// Polls `check` every 5 ms until it holds, for at most 10 s.
pub(crate) async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A window asked of the store: `[from, until)`.
pub(crate) type Window = (Option<SystemTime>, SystemTime);

/// A claim the store granted.
#[derive(Clone, Debug)]
pub(crate) struct Granted {
    pub(crate) id: String,
    pub(crate) holder: String,
    /// The clock when the claim was made.
    pub(crate) now: SystemTime,
    pub(crate) lease_until: SystemTime,
}

/// A memory store that injects an assign on save (as x3m's test scheduler does), records every
/// load and granted claim, fails the next `fail_loads` loads, and can hold loads until released.
/// With `batching`, it prefers batches and records the size of each.
#[derive(Clone, Default)]
pub(crate) struct TestStore {
    pub(crate) inner: MemoryAlarmStore,
    pub(crate) loads: Arc<Mutex<Vec<Window>>>,
    pub(crate) fail_loads: Arc<AtomicUsize>,
    pub(crate) gate: Option<Arc<Semaphore>>,
    pub(crate) saves: Arc<Mutex<HashMap<String, Alarm>>>,
    pub(crate) granted: Arc<Mutex<Vec<Granted>>>,
    pub(crate) batching: bool,
    /// The size of each `claim_many` call.
    pub(crate) claim_batches: Arc<Mutex<Vec<usize>>>,
    /// The size of each `delete_many` call.
    pub(crate) delete_batches: Arc<Mutex<Vec<usize>>>,
}

impl TestStore {
    /// Starts a scheduler on this store and waits for its first load: from then on, new alarms
    /// are armed by `schedule` alone.
    pub(crate) async fn start_loaded(&self, node: Node, config: SchedulerConfig) -> Scheduler {
        let scheduler = Scheduler::start(node, self.clone(), config).unwrap();
        eventually("first load", || async { self.loads().len() == 1 }).await;
        scheduler
    }

    pub(crate) fn loads(&self) -> Vec<Window> {
        self.loads.lock().unwrap().clone()
    }

    pub(crate) fn granted(&self) -> Vec<Granted> {
        self.granted.lock().unwrap().clone()
    }
}

impl AlarmStore for TestStore {
    fn save(&self, alarm: Alarm) -> BoxFuture<'_, Result<Message, AlarmStoreError>> {
        let mut alarm = alarm;
        alarm.message = alarm.message.assign("injected_value", "TestStore");
        self.saves
            .lock()
            .unwrap()
            .insert(alarm.id().to_owned(), alarm.clone());
        self.inner.save(alarm)
    }

    fn load(
        &self,
        from: Option<SystemTime>,
        until: SystemTime,
    ) -> BoxFuture<'_, Result<Vec<Alarm>, AlarmStoreError>> {
        async move {
            self.loads.lock().unwrap().push((from, until));
            if let Some(gate) = &self.gate {
                gate.acquire().await.unwrap().forget();
            }
            if self
                .fail_loads
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                return Err(AlarmStoreError::backend("load failed on purpose"));
            }
            self.inner.load(from, until).await
        }
        .boxed()
    }

    fn claim<'a>(
        &'a self,
        id: &'a str,
        holder: &'a str,
        now: SystemTime,
        due_by: SystemTime,
        lease_until: SystemTime,
    ) -> BoxFuture<'a, Result<Claim, AlarmStoreError>> {
        async move {
            let claim = self
                .inner
                .claim(id, holder, now, due_by, lease_until)
                .await?;
            if matches!(claim, Claim::Claimed(_)) {
                self.granted.lock().unwrap().push(Granted {
                    id: id.to_owned(),
                    holder: holder.to_owned(),
                    now,
                    lease_until,
                });
            }
            Ok(claim)
        }
        .boxed()
    }

    fn renew<'a>(
        &'a self,
        id: &'a str,
        holder: &'a str,
        lease_until: SystemTime,
    ) -> BoxFuture<'a, Result<bool, AlarmStoreError>> {
        self.inner.renew(id, holder, lease_until)
    }

    fn reschedule<'a>(
        &'a self,
        id: &'a str,
        holder: &'a str,
        due: SystemTime,
        message: Message,
    ) -> BoxFuture<'a, Result<bool, AlarmStoreError>> {
        self.inner.reschedule(id, holder, due, message)
    }

    fn delete<'a>(
        &'a self,
        id: &'a str,
        holder: &'a str,
    ) -> BoxFuture<'a, Result<bool, AlarmStoreError>> {
        self.inner.delete(id, holder)
    }

    fn cancel<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<bool, AlarmStoreError>> {
        self.inner.cancel(id)
    }

    fn cancel_for<'a>(
        &'a self,
        aggregate_id: &'a str,
    ) -> BoxFuture<'a, Result<Vec<String>, AlarmStoreError>> {
        self.inner.cancel_for(aggregate_id)
    }

    fn prefers_batches(&self) -> bool {
        self.batching
    }

    fn claim_many(
        &self,
        requests: Vec<ClaimRequest>,
    ) -> BoxFuture<'_, Vec<Result<Claim, AlarmStoreError>>> {
        self.claim_batches.lock().unwrap().push(requests.len());
        // Each through `claim`, which records the claims granted.
        async move {
            let claims = requests
                .iter()
                .map(|r| self.claim(&r.id, &r.holder, r.now, r.due_by, r.lease_until));
            futures::future::join_all(claims).await
        }
        .boxed()
    }

    fn delete_many(
        &self,
        requests: Vec<DeleteRequest>,
    ) -> BoxFuture<'_, Vec<Result<bool, AlarmStoreError>>> {
        self.delete_batches.lock().unwrap().push(requests.len());
        self.inner.delete_many(requests)
    }
}

/// A memory store whose calls of the named operations (`"load"`, `"claim"`, `"delete"`, ...)
/// never answer while they are in `stalled` (and never take effect); whose next calls of those
/// in `late` take effect and then never answer (a commit whose answer is lost); and whose calls
/// of those in `held` take effect and then wait for a permit before answering. `alive` counts
/// the calls stalled or answering late that are not yet dropped.
#[derive(Clone, Default)]
pub(crate) struct StallingStore {
    pub(crate) inner: MemoryAlarmStore,
    pub(crate) stalled: Arc<Mutex<std::collections::HashSet<&'static str>>>,
    pub(crate) late: Arc<Mutex<HashMap<&'static str, usize>>>,
    /// Operations whose next calls take effect, then answer `AlarmStoreError::Unknown`.
    pub(crate) unknown: Arc<Mutex<HashMap<&'static str, usize>>>,
    pub(crate) held: Arc<Mutex<HashMap<&'static str, Arc<Semaphore>>>>,
    pub(crate) alive: Arc<AtomicUsize>,
    /// Calls that took effect and then answered late (or never).
    pub(crate) answered_late: Arc<AtomicUsize>,
    /// Loads that read the store.
    pub(crate) loads: Arc<AtomicUsize>,
    /// Keep due times to the microsecond only, as SQLite and PostgreSQL do.
    pub(crate) micros_only: bool,
}

/// `time` without its part below the microsecond, as stores keep it.
fn to_micros(time: SystemTime) -> SystemTime {
    let since = time.duration_since(UNIX_EPOCH).unwrap();
    UNIX_EPOCH + Duration::from_micros(u64::try_from(since.as_micros()).unwrap())
}

/// Whether `operation` has calls left in `counts`, taking one.
fn take_one(counts: &Mutex<HashMap<&'static str, usize>>, operation: &'static str) -> bool {
    counts
        .lock()
        .unwrap()
        .get_mut(operation)
        .filter(|calls| **calls > 0)
        .map(|calls| *calls -= 1)
        .is_some()
}

/// Counts one stalled call while it lives.
struct Alive(Arc<AtomicUsize>);

impl Drop for Alive {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl StallingStore {
    pub(crate) fn stall(&self, operation: &'static str) {
        self.stalled.lock().unwrap().insert(operation);
    }

    /// The next `calls` calls of `operation` take effect, then never answer.
    pub(crate) fn answer_late(&self, operation: &'static str, calls: usize) {
        self.late.lock().unwrap().insert(operation, calls);
    }

    /// The next `calls` calls of `operation` take effect, then answer that their outcome is
    /// unknown (a commit whose answer the store lost).
    pub(crate) fn answer_unknown(&self, operation: &'static str, calls: usize) {
        self.unknown.lock().unwrap().insert(operation, calls);
    }

    /// Every call of `operation` takes effect, then waits for a permit of the returned
    /// semaphore before answering.
    pub(crate) fn hold_answers(&self, operation: &'static str) -> Arc<Semaphore> {
        let permits = Arc::new(Semaphore::new(0));
        self.held.lock().unwrap().insert(operation, permits.clone());
        permits
    }

    /// Stalled calls still alive.
    pub(crate) fn stalled_calls(&self) -> usize {
        self.alive.load(Ordering::SeqCst)
    }

    /// Calls that took effect and answered late (or never).
    pub(crate) fn answered_late(&self) -> usize {
        self.answered_late.load(Ordering::SeqCst)
    }

    fn gate<'a, T: Send + 'a>(
        &'a self,
        operation: &'static str,
        call: BoxFuture<'a, Result<T, AlarmStoreError>>,
    ) -> BoxFuture<'a, Result<T, AlarmStoreError>> {
        if self.stalled.lock().unwrap().contains(operation) {
            self.alive.fetch_add(1, Ordering::SeqCst);
            let alive = Alive(self.alive.clone());
            return async move {
                let _alive = alive;
                futures::future::pending().await
            }
            .boxed();
        }
        let late = take_one(&self.late, operation);
        let held = self.held.lock().unwrap().get(operation).cloned();
        if take_one(&self.unknown, operation) {
            return async move {
                call.await?;
                Err(AlarmStoreError::unknown("the store lost the answer"))
            }
            .boxed();
        }
        if !late && held.is_none() {
            return call;
        }
        async move {
            let answer = call.await;
            self.answered_late.fetch_add(1, Ordering::SeqCst);
            if late {
                self.alive.fetch_add(1, Ordering::SeqCst);
                let _alive = Alive(self.alive.clone());
                futures::future::pending::<()>().await;
            }
            if let Some(held) = held {
                held.acquire().await.unwrap().forget();
            }
            answer
        }
        .boxed()
    }
}

impl AlarmStore for StallingStore {
    fn save(&self, mut alarm: Alarm) -> BoxFuture<'_, Result<Message, AlarmStoreError>> {
        if self.micros_only {
            alarm.due = to_micros(alarm.due);
        }
        self.gate("save", self.inner.save(alarm))
    }

    fn load(
        &self,
        from: Option<SystemTime>,
        until: SystemTime,
    ) -> BoxFuture<'_, Result<Vec<Alarm>, AlarmStoreError>> {
        let load = async move {
            let loaded = self.inner.load(from, until).await;
            self.loads.fetch_add(1, Ordering::SeqCst);
            loaded
        };
        self.gate("load", load.boxed())
    }

    fn claim<'a>(
        &'a self,
        id: &'a str,
        holder: &'a str,
        now: SystemTime,
        due_by: SystemTime,
        lease_until: SystemTime,
    ) -> BoxFuture<'a, Result<Claim, AlarmStoreError>> {
        self.gate(
            "claim",
            self.inner.claim(id, holder, now, due_by, lease_until),
        )
    }

    fn renew<'a>(
        &'a self,
        id: &'a str,
        holder: &'a str,
        lease_until: SystemTime,
    ) -> BoxFuture<'a, Result<bool, AlarmStoreError>> {
        self.gate("renew", self.inner.renew(id, holder, lease_until))
    }

    fn reschedule<'a>(
        &'a self,
        id: &'a str,
        holder: &'a str,
        due: SystemTime,
        message: Message,
    ) -> BoxFuture<'a, Result<bool, AlarmStoreError>> {
        let due = if self.micros_only {
            to_micros(due)
        } else {
            due
        };
        self.gate(
            "reschedule",
            self.inner.reschedule(id, holder, due, message),
        )
    }

    fn delete<'a>(
        &'a self,
        id: &'a str,
        holder: &'a str,
    ) -> BoxFuture<'a, Result<bool, AlarmStoreError>> {
        self.gate("delete", self.inner.delete(id, holder))
    }

    fn cancel<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<bool, AlarmStoreError>> {
        self.gate("cancel", self.inner.cancel(id))
    }

    fn cancel_for<'a>(
        &'a self,
        aggregate_id: &'a str,
    ) -> BoxFuture<'a, Result<Vec<String>, AlarmStoreError>> {
        self.gate("cancel_for", self.inner.cancel_for(aggregate_id))
    }
}
