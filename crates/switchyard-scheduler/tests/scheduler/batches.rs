//! A store that prefers batches gets the claims and deletes of a burst in a few calls of
//! `claim_many` and `delete_many`, and every alarm is still delivered once.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use switchyard_messaging::Message;
use switchyard_scheduler::store::{Alarm, AlarmStore};
use switchyard_scheduler::{Scheduler, SchedulerConfig};

use crate::support::{TestStore, eventually, init_tracing, next, recording_node};

#[tokio::test]
async fn a_burst_is_claimed_and_deleted_in_batches_and_delivered_once_each() {
    init_tracing();
    const BURST: usize = 100;
    let store = TestStore {
        batching: true,
        ..TestStore::default()
    };
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
    for (what, batches) in [
        ("claims", &store.claim_batches),
        ("deletes", &store.delete_batches),
    ] {
        let batches = batches.lock().unwrap().clone();
        assert_eq!(batches.iter().sum::<usize>(), BURST, "{what}: {batches:?}");
        assert!(
            batches.len() < BURST,
            "{what} must share batches: {batches:?}"
        );
    }
}
