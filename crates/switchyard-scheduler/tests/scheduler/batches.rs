//! A store that prefers batches gets the claims and deletes of a burst in a few calls of
//! `claim_many` and `delete_many`, and every alarm is still delivered once.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;
use switchyard_messaging::Message;
use switchyard_scheduler::store::{
    Alarm, AlarmStore, AlarmStoreError, Claim, ClaimRequest, DeleteRequest, MemoryAlarmStore,
};
use switchyard_scheduler::{Scheduler, SchedulerConfig};

use crate::support::{eventually, init_tracing, next, recording_node};

/// The memory store, preferring batches and recording the size of each.
#[derive(Clone, Default)]
struct BatchingStore {
    inner: MemoryAlarmStore,
    claims: Arc<Mutex<Vec<usize>>>,
    deletes: Arc<Mutex<Vec<usize>>>,
}

impl AlarmStore for BatchingStore {
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
        self.inner.claim(id, holder, now, due_by, lease_until)
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
        true
    }

    fn claim_many(
        &self,
        requests: Vec<ClaimRequest>,
    ) -> BoxFuture<'_, Vec<Result<Claim, AlarmStoreError>>> {
        self.claims.lock().unwrap().push(requests.len());
        self.inner.claim_many(requests)
    }

    fn delete_many(
        &self,
        requests: Vec<DeleteRequest>,
    ) -> BoxFuture<'_, Vec<Result<bool, AlarmStoreError>>> {
        self.deletes.lock().unwrap().push(requests.len());
        self.inner.delete_many(requests)
    }
}

#[tokio::test]
async fn a_burst_is_claimed_and_deleted_in_batches_and_delivered_once_each() {
    init_tracing();
    const BURST: usize = 100;
    let store = BatchingStore::default();
    // Saved before the scheduler starts: its first load arms the whole burst at once.
    for n in 0..BURST {
        let alarm = Alarm {
            message: Message::new("record").with_id(format!("m-{n}")),
            aggregate_id: "agg".into(),
            // Long past: due at once.
            due: SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000),
            attempts: 0,
        };
        store.save(alarm).await.unwrap();
    }
    let (node, mut rx) = recording_node("batches");
    let scheduler = Scheduler::start(node, store.clone(), SchedulerConfig::default()).unwrap();
    let mut delivered = BTreeSet::new();
    for _ in 0..BURST {
        let received = next(&mut rx).await;
        assert!(
            delivered.insert(received.message.id().to_owned()),
            "{} delivered twice",
            received.message.id()
        );
    }
    eventually("every alarm deleted", || async { store.inner.is_empty() }).await;
    scheduler.shutdown().await;
    for (what, batches) in [("claims", &store.claims), ("deletes", &store.deletes)] {
        let batches = batches.lock().unwrap().clone();
        assert_eq!(batches.iter().sum::<usize>(), BURST, "{what}: {batches:?}");
        assert!(
            batches.len() < BURST,
            "{what} must share batches: {batches:?}"
        );
    }
}
