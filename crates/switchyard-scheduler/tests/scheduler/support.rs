//! Fixtures: a node whose services record what they receive, a store that counts loads and can
//! fail or hold them, and a wait that polls.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::future::{BoxFuture, FutureExt};
use switchyard_messaging::{Message, Node, Router};
use switchyard_scheduler::store::{Alarm, AlarmStore, AlarmStoreError, Claim, MemoryAlarmStore};
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

/// A message as a service received it, and the node it ran on.
#[derive(Clone, Debug)]
pub(crate) struct Received {
    pub(crate) message: Message,
    pub(crate) node: String,
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
    let id = node.id().to_string();
    let report = move |tx: &mpsc::UnboundedSender<Received>, msg: &Message| {
        let _ = tx.send(Received {
            message: msg.clone(),
            node: id.clone(),
        });
    };
    let (record_tx, fail_tx, boom_tx) = (tx.clone(), tx.clone(), tx);
    let (r1, r2, r3) = (report.clone(), report.clone(), report);
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

/// A memory store that injects an assign on save (as x3m's test scheduler does), records every
/// load, fails the next `fail_loads` loads, and can hold loads until released.
#[derive(Clone, Default)]
pub(crate) struct TestStore {
    pub(crate) inner: MemoryAlarmStore,
    pub(crate) loads: Arc<Mutex<Vec<Window>>>,
    pub(crate) fail_loads: Arc<AtomicUsize>,
    pub(crate) gate: Option<Arc<Semaphore>>,
    pub(crate) saves: Arc<Mutex<HashMap<String, Alarm>>>,
}

impl TestStore {
    pub(crate) fn loads(&self) -> Vec<Window> {
        self.loads.lock().unwrap().clone()
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
        lease_until: SystemTime,
    ) -> BoxFuture<'a, Result<Claim, AlarmStoreError>> {
        self.inner.claim(id, holder, now, lease_until)
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
}
