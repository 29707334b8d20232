//! The PostgreSQL alarm store against the public alarm-store conformance suite, each check in a
//! fresh schema, and what it does with an alarm whose message cannot be read back.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use switchyard_messaging::Message;
use switchyard_scheduler::store::{Alarm, AlarmStore, AlarmStoreError};

use crate::support;

switchyard_scheduler::alarm_store_conformance!(async { support::store().await });

/// A poison row (its message no longer decodes) is skipped by loads, refused by claims without
/// taking the lease or counting an attempt, and left in the table for an operator, who can
/// cancel it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_alarm_is_skipped_refused_unleased_and_left_for_an_operator() {
    let store = support::store().await;
    let due = SystemTime::now() - Duration::from_secs(1);
    for id in ["before", "broken", "after"] {
        store
            .save(Alarm {
                message: Message::new("remind").with_id(id),
                aggregate_id: "agg".into(),
                due,
                attempts: 0,
            })
            .await
            .unwrap();
    }
    let raw = support::raw_client(&support::url(), store.schema()).await;
    raw.execute(
        "UPDATE alarms SET message = '\\xff00ff'::bytea WHERE id = 'broken'",
        &[],
    )
    .await
    .unwrap();

    let loaded: BTreeSet<String> = store
        .load(None, due + Duration::from_secs(1))
        .await
        .unwrap()
        .into_iter()
        .map(|alarm| alarm.id().to_owned())
        .collect();
    assert_eq!(
        loaded,
        BTreeSet::from(["after".to_owned(), "before".to_owned()])
    );

    let now = SystemTime::now();
    let lease = now + Duration::from_secs(30);
    for holder in ["node-a", "node-b"] {
        let claim = store.claim("broken", holder, now, now, lease).await;
        assert!(
            matches!(&claim, Err(AlarmStoreError::Corrupt { id, .. }) if id == "broken"),
            "{holder}: {claim:?}"
        );
    }
    let row = raw
        .query_one(
            "SELECT holder, lease_until, attempts FROM alarms WHERE id = 'broken'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        row.get::<_, Option<String>>(0),
        None,
        "no lease is left taken"
    );
    assert_eq!(row.get::<_, Option<i64>>(1), None);
    assert_eq!(row.get::<_, i64>(2), 0, "no attempt is counted");

    assert!(
        store.cancel("broken").await.unwrap(),
        "an operator cancels it"
    );
    assert_eq!(
        store
            .load(None, now + Duration::from_secs(1))
            .await
            .unwrap()
            .len(),
        2
    );
}

/// A claim of a poison row runs in one transaction rolled back on the decode failure: nobody
/// ever sees the row leased, not even between the claim and its undoing. Two holders claiming it
/// over and over both always get `Corrupt` (never `Held` by the other), and a reader polling the
/// row meanwhile never sees a holder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_of_an_unreadable_alarm_never_shows_a_lease() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    let store = support::store().await;
    let due = SystemTime::now() - Duration::from_secs(1);
    store
        .save(Alarm {
            message: Message::new("remind").with_id("broken"),
            aggregate_id: "agg".into(),
            due,
            attempts: 0,
        })
        .await
        .unwrap();
    let raw = support::raw_client(&support::url(), store.schema()).await;
    raw.execute("UPDATE alarms SET message = '\\xff00ff'::bytea", &[])
        .await
        .unwrap();

    let done = Arc::new(AtomicBool::new(false));
    let (polls, leased) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let poller = tokio::spawn({
        let (done, polls, leased) = (done.clone(), polls.clone(), leased.clone());
        async move {
            while !done.load(Ordering::SeqCst) {
                let row = raw
                    .query_one("SELECT holder FROM alarms WHERE id = 'broken'", &[])
                    .await
                    .unwrap();
                polls.fetch_add(1, Ordering::SeqCst);
                if row.get::<_, Option<String>>(0).is_some() {
                    leased.fetch_add(1, Ordering::SeqCst);
                }
            }
            raw
        }
    });
    let claims = |holder: &'static str| {
        let store = store.clone();
        async move {
            for _ in 0..100 {
                let now = SystemTime::now();
                let claim = store
                    .claim("broken", holder, now, now, now + Duration::from_secs(30))
                    .await;
                assert!(
                    matches!(&claim, Err(AlarmStoreError::Corrupt { .. })),
                    "{holder}: {claim:?}"
                );
            }
        }
    };
    tokio::join!(claims("node-a"), claims("node-b"));
    done.store(true, Ordering::SeqCst);
    let raw = poller.await.unwrap();
    assert!(polls.load(Ordering::SeqCst) > 0);
    assert_eq!(leased.load(Ordering::SeqCst), 0, "a lease was visible");
    let attempts: i64 = raw
        .query_one("SELECT attempts FROM alarms WHERE id = 'broken'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(attempts, 0, "no attempt is counted");
}

/// Migration 0003 onto a schema holding alarms (a pending retry from before attempts were
/// counted): the rows survive, count 0 attempts, and are claimed as before. The scheduler then
/// counts on from the message's `dispatch_attempts` (tested on SQLite).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migration_0003_keeps_the_alarms_of_an_older_schema() {
    use switchyard_scheduler::store::Claim;
    let store = support::store().await;
    let raw = support::raw_client(&support::url(), store.schema()).await;
    // Back to schema 0002: no attempts column, migration 3 not applied.
    raw.batch_execute(
        "ALTER TABLE alarms DROP COLUMN attempts;
         DELETE FROM switchyard_migrations WHERE version = 3;",
    )
    .await
    .unwrap();
    let due = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let message = Message::new("remind")
        .with_id("retried")
        .assign("dispatch_attempts", &2_u32);
    let micros = i64::try_from(
        due.duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_micros(),
    )
    .unwrap();
    raw.execute(
        "INSERT INTO alarms (id, aggregate_id, due, message, holder, lease_until)
         VALUES ('retried', 'user', $1, $2, NULL, NULL)",
        &[&micros, &message.to_bytes().unwrap()],
    )
    .await
    .unwrap();
    store.migrate().await.unwrap();
    let loaded = store
        .load(None, due + Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(loaded.len(), 1, "the row survives the migration");
    assert_eq!(loaded[0].attempts, 0, "migrated rows count from 0");
    assert_eq!(loaded[0].message, message);
    let lease = due + Duration::from_secs(30);
    match store
        .claim("retried", "node", due, due, lease)
        .await
        .unwrap()
    {
        Claim::Claimed(alarm) => assert_eq!(alarm.attempts, 1),
        other => panic!("expected a claim, got {other:?}"),
    }
}
