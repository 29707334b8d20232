//! A burst's claims and deletes reach the store as batches (`claim_many`, `delete_many`), never
//! one call per alarm.

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use futures::future::BoxFuture;
use switchyard_messaging::Message;
use switchyard_scheduler::store::{
    Alarm, AlarmStore, AlarmStoreError, Batch, Claim, ForHolder, MemoryAlarmStore,
};
use switchyard_scheduler::{ManualClock, Scheduler, SchedulerConfig, When};

use crate::support::{eventually, init_tracing, next, recording_node, t0};

/// A memory store that records which calls claim and delete: single ones by name, batches by
/// their sizes.
#[derive(Clone, Default)]
struct CountingStore {
    inner: MemoryAlarmStore,
    calls: Arc<Mutex<Vec<(&'static str, usize)>>>,
}

impl CountingStore {
    fn record(&self, call: &'static str, items: usize) {
        self.calls.lock().unwrap().push((call, items));
    }

    fn items_of(&self, call: &str) -> usize {
        let calls = self.calls.lock().unwrap();
        calls
            .iter()
            .filter(|(c, _)| *c == call)
            .map(|(_, n)| n)
            .sum()
    }
}

impl AlarmStore for CountingStore {
    fn save(&self, alarm: Alarm) -> BoxFuture<'_, Result<Message, AlarmStoreError>> {
        self.inner.save(alarm)
    }

    fn load(
        &self,
        from: Option<SystemTime>,
        until: SystemTime,
    ) -> BoxFuture<'_, Result<Vec<Alarm>, AlarmStoreError>> {
        self.inner.load(from, until)
    }

    fn claim<'a>(
        &'a self,
        id: &'a str,
        holder: &'a str,
        now: SystemTime,
        due_by: SystemTime,
        lease_until: SystemTime,
    ) -> BoxFuture<'a, Result<Claim, AlarmStoreError>> {
        self.record("claim", 1);
        self.inner.claim(id, holder, now, due_by, lease_until)
    }

    fn claim_many<'a>(
        &'a self,
        claims: &'a [ForHolder],
        now: SystemTime,
        due_by: SystemTime,
        lease_until: SystemTime,
    ) -> BoxFuture<'a, Batch<Claim>> {
        self.record("claim_many", claims.len());
        self.inner.claim_many(claims, now, due_by, lease_until)
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
        self.record("delete", 1);
        self.inner.delete(id, holder)
    }

    fn delete_many<'a>(&'a self, deletes: &'a [ForHolder]) -> BoxFuture<'a, Batch<bool>> {
        self.record("delete_many", deletes.len());
        self.inner.delete_many(deletes)
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bursts_claims_and_deletes_go_to_the_store_in_batches() {
    init_tracing();
    let clock = ManualClock::new(t0());
    let (node, mut received) = recording_node("batches");
    let store = CountingStore::default();
    let config = SchedulerConfig::default()
        .clock(clock.clone())
        .sweep_interval(None);
    let scheduler = Scheduler::start(node, store.clone(), config).unwrap();
    const BURST: usize = 50;
    for n in 0..BURST {
        let message = Message::new("record").with_id(format!("m-{n}"));
        scheduler
            .schedule(message, "a", When::At(t0()))
            .await
            .unwrap();
    }
    let mut delivered: Vec<String> = Vec::new();
    for _ in 0..BURST {
        delivered.push(next(&mut received).await.message.id().to_owned());
    }
    delivered.sort();
    delivered.dedup();
    assert_eq!(delivered.len(), BURST, "each alarm delivered once");
    eventually("every alarm deleted", || async { store.inner.is_empty() }).await;
    assert_eq!(store.items_of("claim"), 0, "no claim one by one");
    assert_eq!(store.items_of("delete"), 0, "no delete one by one");
    assert_eq!(store.items_of("claim_many"), BURST);
    assert_eq!(store.items_of("delete_many"), BURST);
    scheduler.shutdown().await;
}
