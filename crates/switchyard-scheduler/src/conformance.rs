//! The conformance suite every alarm store must pass.
//!
//! Each check is a public async function taking a fresh, empty store. A store crate runs them
//! all with one macro call in its tests, one test per check:
//!
//! ```
//! use switchyard_scheduler::store::MemoryAlarmStore;
//!
//! switchyard_scheduler::alarm_store_conformance!(async { MemoryAlarmStore::new() });
//! ```
//!
//! The checks pin what the scheduler relies on: windows are half-open `[from, until)` and in due
//! order, a save is read back whole, a claim may come ahead of the due time by the caller's
//! lead but gives exactly one live lease and counts one attempt durably (none when the holder
//! claims again what it still holds), only the holder renews, reschedules or deletes, and
//! cancelling works by message and by aggregate.

// The suite reports a broken rule by panicking, as `assert!` does.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use switchyard_messaging::Message;

use crate::store::{Alarm, AlarmStore, Claim};

/// A fixed, whole-second starting time, so every store can keep it exactly.
fn t(seconds: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000 + seconds)
}

fn alarm(id: &str, aggregate: &str, due: SystemTime) -> Alarm {
    Alarm {
        message: Message::new("remind")
            .with_id(id)
            .with_request(&format!("request of {id}"))
            .assign("dispatch_attempts", &0_u32),
        aggregate_id: aggregate.to_owned(),
        due,
        attempts: 0,
    }
}

async fn ids<S: AlarmStore + ?Sized>(
    store: &S,
    from: Option<SystemTime>,
    until: SystemTime,
) -> Vec<String> {
    store
        .load(from, until)
        .await
        .expect("load failed")
        .iter()
        .map(|a| a.id().to_owned())
        .collect()
}

async fn save<S: AlarmStore + ?Sized>(store: &S, alarm: Alarm) {
    store.save(alarm).await.expect("save failed");
}

/// The attempts of the only stored alarm.
async fn stored_attempts<S: AlarmStore + ?Sized>(store: &S) -> u32 {
    let loaded = store.load(None, t(1_000)).await.expect("load failed");
    assert_eq!(loaded.len(), 1, "one alarm stored");
    loaded[0].attempts
}

/// Windows are `[from, until)`, in due order; `None` loads from the beginning.
pub async fn load_by_window<S: AlarmStore + ?Sized>(store: &S) {
    save(store, alarm("c", "agg", t(30))).await;
    save(store, alarm("a", "agg", t(10))).await;
    save(store, alarm("b", "agg", t(20))).await;
    assert_eq!(
        ids(store, None, t(30)).await,
        ["a", "b"],
        "until is excluded"
    );
    assert_eq!(
        ids(store, Some(t(20)), t(31)).await,
        ["b", "c"],
        "from is included"
    );
    assert_eq!(ids(store, Some(t(31)), t(100)).await, Vec::<String>::new());
    assert_eq!(ids(store, None, t(100)).await, ["a", "b", "c"]);
}

/// A saved alarm reads back whole: message (request, assigns, ids), aggregate and due time.
pub async fn save_and_read_back<S: AlarmStore + ?Sized>(store: &S) {
    let original = Alarm {
        message: alarm("m-1", "agg-1", t(5))
            .message
            .with_correlation_id("conversation")
            .with_log_field("tenant", "acme")
            .assign("dispatch_at", &t(5)),
        aggregate_id: "agg-1".into(),
        due: t(5) + Duration::from_micros(123_456),
        attempts: 3,
    };
    let returned = store.save(original.clone()).await.unwrap();
    assert_eq!(returned.id(), "m-1", "save returns the message to deliver");
    let loaded = store.load(None, t(6)).await.unwrap();
    assert_eq!(loaded.len(), 1);
    assert_eq!(
        loaded[0].message, returned,
        "the stored message is the returned one"
    );
    assert_eq!(loaded[0].aggregate_id, "agg-1");
    assert_eq!(loaded[0].due, original.due, "due times keep microseconds");
    assert_eq!(loaded[0].attempts, 3, "the attempts saved");
    assert_eq!(
        loaded[0].message.request::<String>().unwrap(),
        "request of m-1"
    );
}

/// Saving an alarm with the id of another replaces it, due time and lease included.
pub async fn save_replaces_the_same_id<S: AlarmStore + ?Sized>(store: &S) {
    save(store, alarm("m", "agg", t(10))).await;
    assert!(matches!(
        store
            .claim("m", "node-a", t(10), t(10), t(40))
            .await
            .unwrap(),
        Claim::Claimed(_)
    ));
    save(store, alarm("m", "agg", t(50))).await;
    assert_eq!(ids(store, None, t(20)).await, Vec::<String>::new());
    assert_eq!(ids(store, None, t(60)).await, ["m"]);
    assert!(
        matches!(
            store
                .claim("m", "node-b", t(50), t(50), t(80))
                .await
                .unwrap(),
            Claim::Claimed(_)
        ),
        "the replaced alarm's lease is gone"
    );
}

/// A claim succeeds only when the alarm is due and no other live lease holds it; a lapsed lease
/// lets another holder in; the holder may claim again.
pub async fn claim_rules<S: AlarmStore + ?Sized>(store: &S) {
    assert_eq!(
        store
            .claim("missing", "a", t(0), t(0), t(30))
            .await
            .unwrap(),
        Claim::Gone
    );
    save(store, alarm("m", "agg", t(10))).await;
    assert_eq!(
        store.claim("m", "a", t(9), t(9), t(39)).await.unwrap(),
        Claim::NotDue(t(10))
    );
    match store.claim("m", "a", t(10), t(10), t(40)).await.unwrap() {
        Claim::Claimed(claimed) => assert_eq!(claimed.id(), "m"),
        other => panic!("expected a claim, got {other:?}"),
    }
    match store.claim("m", "b", t(20), t(20), t(50)).await.unwrap() {
        Claim::Held(lease) => {
            assert_eq!(lease.holder, "a");
            assert_eq!(lease.until, t(40));
        }
        other => panic!("a live lease must hold off another claim, got {other:?}"),
    }
    assert!(
        matches!(
            store.claim("m", "a", t(20), t(20), t(50)).await.unwrap(),
            Claim::Claimed(_)
        ),
        "the holder claims again"
    );
    assert!(
        matches!(
            store.claim("m", "b", t(50), t(50), t(80)).await.unwrap(),
            Claim::Claimed(_)
        ),
        "a lapsed lease lets another holder in"
    );
    assert!(matches!(
        store.claim("m", "a", t(60), t(60), t(90)).await.unwrap(),
        Claim::Held(_)
    ));
}

/// A claim may come ahead of the due time, by the caller's lead: due by `due_by` is enough,
/// while the lease check still looks at `now`. An early claim beyond the lead answers `NotDue`,
/// and another holder's live lease is respected whatever the lead.
pub async fn claim_ahead_of_the_due_time<S: AlarmStore + ?Sized>(store: &S) {
    save(store, alarm("m", "agg", t(10))).await;
    assert_eq!(
        store.claim("m", "a", t(8), t(9), t(40)).await.unwrap(),
        Claim::NotDue(t(10)),
        "an early claim beyond its lead"
    );
    match store.claim("m", "a", t(9), t(10), t(40)).await.unwrap() {
        Claim::Claimed(claimed) => {
            assert_eq!(claimed.id(), "m");
            assert_eq!(claimed.due, t(10), "the claimed alarm keeps its due time");
        }
        other => panic!("an early claim within the lead must succeed, got {other:?}"),
    }
    match store.claim("m", "b", t(9), t(10), t(40)).await.unwrap() {
        Claim::Held(lease) => {
            assert_eq!(lease.holder, "a");
            assert_eq!(lease.until, t(40));
        }
        other => panic!("another holder's early lease must hold, got {other:?}"),
    }
    assert!(
        matches!(
            store.claim("m", "b", t(39), t(45), t(70)).await.unwrap(),
            Claim::Held(_)
        ),
        "a live lease holds whatever the lead"
    );
    assert!(
        matches!(
            store.claim("m", "b", t(40), t(40), t(70)).await.unwrap(),
            Claim::Claimed(_)
        ),
        "the lease lapses at its time"
    );
}

/// Every claim counts one attempt, durably and before the delivery starts: the claimed alarm
/// and later loads carry the count, a lapsed claim that never finished still counts, a
/// reschedule keeps it, and a save sets it.
pub async fn claims_count_attempts<S: AlarmStore + ?Sized>(store: &S) {
    save(store, alarm("m", "agg", t(0))).await;
    let attempts = |claim: Claim| match claim {
        Claim::Claimed(alarm) => alarm.attempts,
        other => panic!("expected a claim, got {other:?}"),
    };
    assert_eq!(stored_attempts(store).await, 0);
    // Node a claims and dies mid-delivery: the attempt is counted all the same.
    assert_eq!(
        attempts(store.claim("m", "a", t(0), t(0), t(30)).await.unwrap()),
        1
    );
    assert_eq!(
        stored_attempts(store).await,
        1,
        "counted durably by the claim"
    );
    assert_eq!(
        attempts(store.claim("m", "b", t(30), t(30), t(60)).await.unwrap()),
        2,
        "the next holder sees the true count"
    );
    let retry = alarm("m", "agg", t(0))
        .message
        .assign("dispatch_attempts", &2_u32);
    assert!(store.reschedule("m", "b", t(100), retry).await.unwrap());
    assert_eq!(
        stored_attempts(store).await,
        2,
        "a reschedule keeps the count"
    );
    assert_eq!(
        attempts(store.claim("m", "c", t(100), t(100), t(130)).await.unwrap()),
        3
    );
    assert!(matches!(
        store.claim("m", "b", t(110), t(110), t(140)).await.unwrap(),
        Claim::Held(_)
    ));
    assert_eq!(
        stored_attempts(store).await,
        3,
        "a refused claim counts nothing"
    );
    save(store, alarm("m", "agg", t(200))).await;
    assert_eq!(stored_attempts(store).await, 0, "a save sets the count");
    assert_eq!(
        store.claim("m", "d", t(100), t(150), t(180)).await.unwrap(),
        Claim::NotDue(t(200))
    );
    assert_eq!(
        stored_attempts(store).await,
        0,
        "a claim answered NotDue counts nothing"
    );
    assert_eq!(
        store
            .claim("missing", "d", t(200), t(200), t(230))
            .await
            .unwrap(),
        Claim::Gone
    );
    assert_eq!(
        stored_attempts(store).await,
        0,
        "a claim answered Gone writes nothing"
    );
}

/// A holder claiming again what it still holds (its first claim took effect but answered too
/// late, say) starts no new delivery: it counts nothing, and extends the lease. Once its lease
/// has lapsed, claiming again counts again.
pub async fn reclaiming_a_live_lease_counts_nothing<S: AlarmStore + ?Sized>(store: &S) {
    save(store, alarm("m", "agg", t(0))).await;
    let attempts = |claim: Claim| match claim {
        Claim::Claimed(alarm) => alarm.attempts,
        other => panic!("expected a claim, got {other:?}"),
    };
    assert_eq!(
        attempts(store.claim("m", "a", t(0), t(0), t(30)).await.unwrap()),
        1
    );
    assert_eq!(
        attempts(store.claim("m", "a", t(10), t(10), t(40)).await.unwrap()),
        1,
        "the same holder's live lease: the same delivery"
    );
    assert_eq!(stored_attempts(store).await, 1, "counted once, durably");
    match store.claim("m", "b", t(35), t(35), t(65)).await.unwrap() {
        Claim::Held(lease) => assert_eq!(lease.until, t(40), "the re-claim extended the lease"),
        other => panic!("the extended lease must hold, got {other:?}"),
    }
    assert_eq!(
        attempts(store.claim("m", "a", t(40), t(40), t(70)).await.unwrap()),
        2,
        "a lapsed lease of the same holder: a new delivery"
    );
}

/// Many holders racing for one alarm: exactly one gets it.
pub async fn one_winner_among_racing_claims<S: AlarmStore + ?Sized>(store: &S) {
    save(store, alarm("race", "agg", t(0))).await;
    let holders: Vec<String> = (0..20).map(|n| format!("node-{n}")).collect();
    let claims = holders
        .iter()
        .map(|holder| store.claim("race", holder, t(1), t(1), t(31)));
    let outcomes = futures::future::join_all(claims).await;
    let won = outcomes
        .iter()
        .filter(|o| matches!(o, Ok(Claim::Claimed(_))))
        .count();
    assert_eq!(won, 1, "{outcomes:?}");
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, Ok(Claim::Claimed(_) | Claim::Held(_))))
    );
}

/// Only the holder renews, and a renewal keeps others out until the new expiry.
pub async fn renew_extends_the_holders_lease<S: AlarmStore + ?Sized>(store: &S) {
    save(store, alarm("m", "agg", t(0))).await;
    assert!(!store.renew("m", "a", t(30)).await.unwrap(), "not held yet");
    store.claim("m", "a", t(0), t(0), t(30)).await.unwrap();
    assert!(!store.renew("m", "b", t(60)).await.unwrap());
    assert!(store.renew("m", "a", t(60)).await.unwrap());
    assert!(matches!(
        store.claim("m", "b", t(45), t(45), t(75)).await.unwrap(),
        Claim::Held(_)
    ));
    assert!(!store.renew("missing", "a", t(60)).await.unwrap());
}

/// A reschedule by the holder moves the alarm, replaces its message and releases the lease;
/// anyone else's changes nothing.
pub async fn reschedule_moves_the_alarm<S: AlarmStore + ?Sized>(store: &S) {
    save(store, alarm("m", "agg", t(0))).await;
    store.claim("m", "a", t(0), t(0), t(30)).await.unwrap();
    let retry = alarm("m", "agg", t(0))
        .message
        .assign("dispatch_attempts", &1_u32);
    assert!(
        !store
            .reschedule("m", "b", t(100), retry.clone())
            .await
            .unwrap()
    );
    assert!(
        store
            .reschedule("m", "a", t(100), retry.clone())
            .await
            .unwrap()
    );
    assert_eq!(ids(store, None, t(100)).await, Vec::<String>::new());
    let loaded = store.load(Some(t(100)), t(101)).await.unwrap();
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0].due, t(100));
    assert_eq!(loaded[0].message, retry);
    assert_eq!(loaded[0].aggregate_id, "agg");
    assert_eq!(
        store.claim("m", "b", t(50), t(50), t(80)).await.unwrap(),
        Claim::NotDue(t(100)),
        "released, and due later"
    );
    assert!(matches!(
        store.claim("m", "b", t(100), t(100), t(130)).await.unwrap(),
        Claim::Claimed(_)
    ));
}

/// Only the holder deletes; a deleted alarm is gone.
pub async fn delete_by_the_holder<S: AlarmStore + ?Sized>(store: &S) {
    save(store, alarm("m", "agg", t(0))).await;
    assert!(!store.delete("m", "a").await.unwrap(), "not held");
    store.claim("m", "a", t(0), t(0), t(30)).await.unwrap();
    assert!(!store.delete("m", "b").await.unwrap());
    assert!(store.delete("m", "a").await.unwrap());
    assert!(!store.delete("m", "a").await.unwrap());
    assert_eq!(
        store.claim("m", "a", t(1), t(1), t(31)).await.unwrap(),
        Claim::Gone
    );
    assert!(store.load(None, t(1_000)).await.unwrap().is_empty());
}

/// Claims and deletes in batches answer each request in order, by the rules of single calls:
/// a batch's claims count their attempts, and a batch's deletes remove only what the holder
/// holds.
pub async fn claims_and_deletes_in_batches<S: AlarmStore + ?Sized>(store: &S) {
    use crate::store::{ClaimRequest, DeleteRequest};
    let claim = |id: &str, holder: &str, now: u64| ClaimRequest {
        id: id.to_owned(),
        holder: holder.to_owned(),
        now: t(now),
        due_by: t(now),
        lease_until: t(now + 30),
    };
    let delete = |id: &str, holder: &str| DeleteRequest {
        id: id.to_owned(),
        holder: holder.to_owned(),
    };
    for (id, due) in [("m1", 10), ("m2", 10), ("m3", 100)] {
        save(store, alarm(id, "agg", t(due))).await;
    }
    assert!(store.claim_many(Vec::new()).await.is_empty());
    let first = store
        .claim_many(vec![
            claim("m1", "a", 10),
            claim("m3", "a", 10),
            claim("missing", "a", 10),
            claim("m2", "a", 10),
        ])
        .await;
    let first: Vec<_> = first.into_iter().map(Result::unwrap).collect();
    assert!(
        matches!(&first[0], Claim::Claimed(m1) if m1.id() == "m1" && m1.attempts == 1),
        "{first:?}"
    );
    assert_eq!(first[1], Claim::NotDue(t(100)));
    assert_eq!(first[2], Claim::Gone);
    assert!(
        matches!(&first[3], Claim::Claimed(m2) if m2.id() == "m2" && m2.attempts == 1),
        "{first:?}"
    );
    let second: Vec<_> = store
        .claim_many(vec![claim("m1", "b", 20), claim("m2", "a", 20)])
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert!(
        matches!(&second[0], Claim::Held(lease) if lease.holder == "a"),
        "{second:?}"
    );
    assert!(
        matches!(&second[1], Claim::Claimed(m2) if m2.attempts == 1),
        "claiming again what one holds counts nothing: {second:?}"
    );
    assert!(store.delete_many(Vec::new()).await.is_empty());
    let deleted: Vec<bool> = store
        .delete_many(vec![
            delete("m1", "b"),
            delete("m1", "a"),
            delete("m3", "a"),
            delete("m2", "a"),
        ])
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(deleted, [false, true, false, true]);
    assert_eq!(ids(store, None, t(1_000)).await, ["m3"]);
}

/// Cancelling by message id and by aggregate id, held or not.
pub async fn cancel_by_id_and_by_aggregate<S: AlarmStore + ?Sized>(store: &S) {
    for (id, aggregate) in [("a1", "A"), ("a2", "A"), ("b1", "B"), ("a3", "A")] {
        save(store, alarm(id, aggregate, t(10))).await;
    }
    store
        .claim("a2", "node", t(10), t(10), t(40))
        .await
        .unwrap();
    assert!(store.cancel("b1").await.unwrap());
    assert!(!store.cancel("b1").await.unwrap());
    let mut cancelled = store.cancel_for("A").await.unwrap();
    cancelled.sort();
    assert_eq!(cancelled, ["a1", "a2", "a3"]);
    assert!(store.cancel_for("A").await.unwrap().is_empty());
    assert!(store.load(None, t(1_000)).await.unwrap().is_empty());
    assert!(!store.delete("a2", "node").await.unwrap());
}

/// A thousand alarms saved concurrently in any order load back once each, in due order.
pub async fn many_alarms_in_due_order<S: AlarmStore + ?Sized>(store: &S) {
    let saves = (0..1_000_u64).map(|n| {
        // A permutation of 0..1000, so due times arrive out of order.
        let slot = (n * 7_919) % 1_000;
        store.save(alarm(&format!("m-{n}"), "agg", t(slot)))
    });
    for saved in futures::future::join_all(saves).await {
        saved.unwrap();
    }
    let loaded = store.load(None, t(1_000)).await.unwrap();
    assert_eq!(loaded.len(), 1_000);
    assert!(loaded.windows(2).all(|w| w[0].due <= w[1].due));
    let distinct: HashSet<_> = loaded.iter().map(|a| a.id().to_owned()).collect();
    assert_eq!(distinct.len(), 1_000);
    let half = store.load(Some(t(500)), t(1_000)).await.unwrap();
    assert_eq!(half.len(), 500);
}

/// Runs every check of the alarm-store suite as a test, each on the store `$make` (an async
/// block or future giving a fresh, empty store) builds.
#[macro_export]
macro_rules! alarm_store_conformance {
    ($make:expr) => {
        #[cfg(test)]
        mod alarm_store_conformance {
            #[allow(unused_imports)]
            use super::*;

            macro_rules! check {
                ($name:ident) => {
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $name() {
                        let store = $make.await;
                        $crate::conformance::$name(&store).await;
                    }
                };
            }

            check!(load_by_window);
            check!(save_and_read_back);
            check!(save_replaces_the_same_id);
            check!(claim_rules);
            check!(claim_ahead_of_the_due_time);
            check!(claims_count_attempts);
            check!(reclaiming_a_live_lease_counts_nothing);
            check!(one_winner_among_racing_claims);
            check!(renew_extends_the_holders_lease);
            check!(reschedule_moves_the_alarm);
            check!(delete_by_the_holder);
            check!(cancel_by_id_and_by_aggregate);
            check!(claims_and_deletes_in_batches);
            check!(many_alarms_in_due_order);
        }
    };
}
