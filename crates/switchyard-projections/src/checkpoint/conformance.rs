//! The conformance suite every checkpoint store must pass.
//!
//! Each check is a public async function taking a fresh, empty store. A store crate runs them
//! all with one macro call in its tests, one test per check:
//!
//! ```
//! use switchyard_projections::checkpoint::MemoryCheckpointStore;
//!
//! switchyard_projections::checkpoint_store_conformance!(async { MemoryCheckpointStore::new() });
//! ```
//!
//! The checks pin the semantics runners rely on: a new projection starts at the origin; saves
//! only move forward; one live lease at a time, taken over once it lapses or is released;
//! fencing (a replaced holder can neither save, reset, renew nor release); generations; resets;
//! the operator's listing; the name rule; exactly one winner among racing acquirers; and parked
//! events (recorded with the checkpoint's move past them, fenced, listed, unparked, forgotten
//! by a reset).

// The suite reports a broken rule by panicking, as `assert!` does.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use switchyard_messaging::names::MAX_ID_BYTES;

use super::{
    Acquire, CheckpointError, CheckpointStore, Lease, LeaseHolder, LeaseToken, MAX_POSITION,
    ParkedEvent,
};

/// A fixed start, in whole seconds, so every store keeps the times exactly.
fn start() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

fn secs(seconds: u64) -> Duration {
    Duration::from_secs(seconds)
}

async fn acquired<S: CheckpointStore + ?Sized>(
    store: &S,
    projection: &str,
    holder: &str,
    now: SystemTime,
    until: SystemTime,
) -> Lease {
    match store.acquire(projection, holder, now, until).await {
        Ok(Acquire::Acquired(lease)) => {
            assert_eq!(lease.token.projection, projection);
            assert_eq!(lease.token.holder, holder);
            assert_eq!(lease.until, until);
            lease
        }
        other => panic!("{holder} should acquire `{projection}`: {other:?}"),
    }
}

fn assert_lease_lost(result: Result<(), CheckpointError>, what: &str) {
    assert!(
        matches!(result, Err(CheckpointError::LeaseLost { .. })),
        "{what}: expected LeaseLost, got {result:?}"
    );
}

/// A projection never seen is at position 0, unlisted; acquiring its lease lists it at 0,
/// never saved, with its holder.
pub async fn a_new_projection_starts_at_the_origin<S: CheckpointStore + ?Sized>(store: &S) {
    assert_eq!(store.load("balances").await.unwrap(), 0);
    assert!(store.list().await.unwrap().is_empty());
    let lease = acquired(store, "balances", "runner-a", start(), start() + secs(30)).await;
    assert!(lease.token.generation >= 1);
    assert_eq!(store.load("balances").await.unwrap(), 0);
    let listed = store.list().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].projection, "balances");
    assert_eq!(listed[0].position, 0);
    assert_eq!(listed[0].updated_at, None);
    assert_eq!(
        listed[0].lease,
        Some(LeaseHolder {
            holder: "runner-a".into(),
            until: start() + secs(30)
        })
    );
}

/// Saves move the checkpoint strictly forward: the same or an earlier position is refused with
/// the stored one, unchanged; a position beyond [`MAX_POSITION`] is refused.
pub async fn saves_only_move_forward<S: CheckpointStore + ?Sized>(store: &S) {
    let lease = acquired(store, "p", "a", start(), start() + secs(30)).await;
    store.save(&lease.token, 5).await.unwrap();
    assert_eq!(store.load("p").await.unwrap(), 5);
    for position in [5, 3, 0] {
        match store.save(&lease.token, position).await {
            Err(CheckpointError::NotForward {
                projection,
                position: refused,
                current,
            }) => {
                assert_eq!(projection, "p");
                assert_eq!(refused, position);
                assert_eq!(current, 5);
            }
            other => panic!("saving {position} after 5 must be refused: {other:?}"),
        }
    }
    assert_eq!(store.load("p").await.unwrap(), 5);
    store.save(&lease.token, 6).await.unwrap();
    store.save(&lease.token, MAX_POSITION).await.unwrap();
    assert_eq!(store.load("p").await.unwrap(), MAX_POSITION);
    let too_far = store.save(&lease.token, MAX_POSITION + 1).await;
    assert!(
        matches!(too_far, Err(CheckpointError::PositionTooLarge { position }) if position == MAX_POSITION + 1),
        "{too_far:?}"
    );
    let listed = store.list().await.unwrap();
    assert_eq!(listed[0].position, MAX_POSITION);
    assert!(listed[0].updated_at.is_some(), "a save records its time");
}

/// While a lease is live, another holder is told who holds it until when; its holder asking
/// again keeps its generation; once it lapses, another takes it in a later generation.
pub async fn a_live_lease_keeps_others_out<S: CheckpointStore + ?Sized>(store: &S) {
    let a = acquired(store, "p", "a", start(), start() + secs(30)).await;
    let held = store
        .acquire("p", "b", start() + secs(29), start() + secs(60))
        .await
        .unwrap();
    assert_eq!(
        held,
        Acquire::Held(LeaseHolder {
            holder: "a".into(),
            until: start() + secs(30)
        })
    );
    let again = acquired(store, "p", "a", start() + secs(10), start() + secs(40)).await;
    assert_eq!(
        again.token.generation, a.token.generation,
        "a live lease taken again by its holder is the same run"
    );
    store.save(&a.token, 1).await.unwrap();
    // Lapsed exactly at its time.
    let b = acquired(store, "p", "b", start() + secs(40), start() + secs(70)).await;
    assert!(b.token.generation > a.token.generation);
    assert_eq!(store.load("p").await.unwrap(), 1, "takes over where a left");
}

/// A holder replaced by another can neither save, reset, renew nor release: the checkpoint
/// stays as the new holder leaves it.
pub async fn a_replaced_holder_cannot_write<S: CheckpointStore + ?Sized>(store: &S) {
    let a = acquired(store, "p", "a", start(), start() + secs(30)).await;
    store.save(&a.token, 10).await.unwrap();
    let b = acquired(store, "p", "b", start() + secs(31), start() + secs(61)).await;
    assert_lease_lost(
        store.save(&a.token, 20).await,
        "save by the replaced holder",
    );
    assert_lease_lost(store.reset(&a.token).await, "reset by the replaced holder");
    assert!(!store.renew(&a.token, start() + secs(100)).await.unwrap());
    assert!(!store.release(&a.token).await.unwrap());
    assert_eq!(store.load("p").await.unwrap(), 10);
    let listed = store.list().await.unwrap();
    assert_eq!(
        listed[0].lease,
        Some(LeaseHolder {
            holder: "b".into(),
            until: start() + secs(61)
        }),
        "the refused renewal changed nothing"
    );
    store.save(&b.token, 11).await.unwrap();
    assert_eq!(store.load("p").await.unwrap(), 11);
}

/// A holder taking its own lapsed lease again starts a new generation: a write still carrying
/// the old token (from a run that paused past its lease) is refused.
pub async fn a_lapsed_lease_taken_again_is_a_new_generation<S: CheckpointStore + ?Sized>(
    store: &S,
) {
    let first = acquired(store, "p", "a", start(), start() + secs(30)).await;
    let second = acquired(store, "p", "a", start() + secs(30), start() + secs(60)).await;
    assert!(second.token.generation > first.token.generation);
    assert_lease_lost(store.save(&first.token, 1).await, "save by the old run");
    store.save(&second.token, 1).await.unwrap();
}

/// A holder whose lease lapsed but that nobody replaced may still save and renew: nobody else
/// moved the checkpoint.
pub async fn a_lapsed_lease_nobody_took_still_writes<S: CheckpointStore + ?Sized>(store: &S) {
    let a = acquired(store, "p", "a", start(), start() + secs(30)).await;
    store.save(&a.token, 3).await.unwrap();
    assert!(store.renew(&a.token, start() + secs(120)).await.unwrap());
    let held = store
        .acquire("p", "b", start() + secs(60), start() + secs(90))
        .await
        .unwrap();
    assert!(
        matches!(&held, Acquire::Held(LeaseHolder { holder, until }) if holder == "a" && *until == start() + secs(120)),
        "the renewal extended the lease: {held:?}"
    );
}

/// A released lease is free at once, its checkpoint kept; the releaser's token no longer
/// writes; the listing shows no holder.
pub async fn release_frees_the_lease_at_once<S: CheckpointStore + ?Sized>(store: &S) {
    let a = acquired(store, "p", "a", start(), start() + secs(30)).await;
    store.save(&a.token, 7).await.unwrap();
    assert!(store.release(&a.token).await.unwrap());
    assert!(!store.release(&a.token).await.unwrap(), "released once");
    assert_eq!(store.list().await.unwrap()[0].lease, None);
    assert_lease_lost(store.save(&a.token, 8).await, "save after release");
    let b = acquired(store, "p", "b", start() + secs(1), start() + secs(31)).await;
    assert!(b.token.generation > a.token.generation);
    assert_eq!(store.load("p").await.unwrap(), 7);
    assert_eq!(
        store.list().await.unwrap()[0].lease,
        Some(LeaseHolder {
            holder: "b".into(),
            until: start() + secs(31)
        })
    );
}

/// A reset brings the checkpoint back to 0, so saving starts over from the origin.
pub async fn reset_returns_to_the_origin<S: CheckpointStore + ?Sized>(store: &S) {
    let a = acquired(store, "p", "a", start(), start() + secs(30)).await;
    store.save(&a.token, 10).await.unwrap();
    store.reset(&a.token).await.unwrap();
    assert_eq!(store.load("p").await.unwrap(), 0);
    store.save(&a.token, 1).await.unwrap();
    assert_eq!(store.load("p").await.unwrap(), 1);
    assert!(store.list().await.unwrap()[0].updated_at.is_some());
}

/// Projections are independent, and listed by name.
pub async fn projections_are_listed_by_name<S: CheckpointStore + ?Sized>(store: &S) {
    let names = ["orders", "Balances", "audit", "zebra-é"];
    for (index, name) in names.iter().enumerate() {
        let lease = acquired(
            store,
            name,
            &format!("runner-{index}"),
            start(),
            start() + secs(30),
        )
        .await;
        if index > 0 {
            store.save(&lease.token, index as u64 * 100).await.unwrap();
        }
    }
    let listed = store.list().await.unwrap();
    let mut expected: Vec<&str> = names.to_vec();
    expected.sort_unstable();
    assert_eq!(
        listed
            .iter()
            .map(|info| info.projection.as_str())
            .collect::<Vec<_>>(),
        expected,
        "by name, bytewise"
    );
    for (index, name) in names.iter().enumerate() {
        let info = listed.iter().find(|info| info.projection == *name).unwrap();
        assert_eq!(info.position, index as u64 * 100);
        assert_eq!(info.updated_at.is_some(), index > 0);
        assert_eq!(
            info.lease.as_ref().unwrap().holder,
            format!("runner-{index}")
        );
        assert_eq!(store.load(name).await.unwrap(), index as u64 * 100);
    }
}

/// Names breaking the rule are refused before the store; the longest allowed are kept.
pub async fn names_follow_the_rule<S: CheckpointStore + ?Sized>(store: &S) {
    for (projection, holder) in [("", "a"), ("p\0", "a"), ("p", ""), ("p", "a\nb")] {
        let refused = store
            .acquire(projection, holder, start(), start() + secs(30))
            .await;
        assert!(
            matches!(refused, Err(CheckpointError::Name(_))),
            "{projection:?} / {holder:?}: {refused:?}"
        );
    }
    assert!(matches!(
        store.load("").await,
        Err(CheckpointError::Name(_))
    ));
    let projection = "p".repeat(MAX_ID_BYTES);
    let holder = "h".repeat(MAX_ID_BYTES);
    let lease = acquired(store, &projection, &holder, start(), start() + secs(30)).await;
    store.save(&lease.token, 1).await.unwrap();
    assert_eq!(store.load(&projection).await.unwrap(), 1);
    assert!(matches!(
        store.load(&"p".repeat(MAX_ID_BYTES + 1)).await,
        Err(CheckpointError::Name(_))
    ));
}

/// Of many holders racing for one free lease, exactly one gets it.
pub async fn racing_acquirers_get_one_lease<S: CheckpointStore + ?Sized + 'static>(store: Arc<S>) {
    let racers = (0..8).map(|index| {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            store
                .acquire("p", &format!("runner-{index}"), start(), start() + secs(30))
                .await
                .unwrap()
        })
    });
    let answers = futures::future::join_all(racers).await;
    let winners: Vec<Lease> = answers
        .into_iter()
        .filter_map(|answer| match answer.unwrap() {
            Acquire::Acquired(lease) => Some(lease),
            Acquire::Held(_) => None,
        })
        .collect();
    assert_eq!(winners.len(), 1, "exactly one winner: {winners:?}");
    store.save(&winners[0].token, 1).await.unwrap();
}

/// An event of `lease`'s projection at `position`, failed `attempts` times, parked at `at`.
fn poison(lease: &LeaseToken, position: u64, attempts: u32, at: SystemTime) -> ParkedEvent {
    ParkedEvent {
        projection: lease.projection.clone(),
        position,
        stream: format!("account-{position}"),
        version: i64::try_from(position).unwrap_or(i64::MAX) - 1,
        event_type: "Deposited".into(),
        error: format!("the read model refused event {position}: disk full"),
        attempts,
        parked_at: at,
    }
}

/// A park records the event, listed by position, and moves the checkpoint to it when it is
/// after the stored one (never back); parking the same position again replaces its record;
/// projections' parked events are apart.
pub async fn a_parked_event_is_recorded_and_the_checkpoint_moves_past_it<
    S: CheckpointStore + ?Sized,
>(
    store: &S,
) {
    let lease = acquired(store, "p", "a", start(), start() + secs(30)).await;
    store.save(&lease.token, 3).await.unwrap();
    assert!(store.parked("p").await.unwrap().is_empty());

    let five = poison(&lease.token, 5, 4, start() + secs(1));
    store.park(&lease.token, &five).await.unwrap();
    assert_eq!(
        store.load("p").await.unwrap(),
        5,
        "the checkpoint passed it"
    );
    assert_eq!(
        store.parked("p").await.unwrap(),
        std::slice::from_ref(&five)
    );

    let two = poison(&lease.token, 2, 1, start() + secs(2));
    store.park(&lease.token, &two).await.unwrap();
    assert_eq!(store.load("p").await.unwrap(), 5, "never moved back");
    assert_eq!(store.parked("p").await.unwrap(), [two.clone(), five]);

    let five_again = ParkedEvent {
        error: "still failing".into(),
        attempts: 9,
        ..poison(&lease.token, 5, 9, start() + secs(3))
    };
    store.park(&lease.token, &five_again).await.unwrap();
    assert_eq!(store.parked("p").await.unwrap(), [two, five_again]);
    store.save(&lease.token, 6).await.unwrap();

    let other = acquired(store, "p2", "a", start(), start() + secs(30)).await;
    store
        .park(&other.token, &poison(&other.token, 1, 1, start()))
        .await
        .unwrap();
    assert_eq!(store.parked("p").await.unwrap().len(), 2);
    assert_eq!(store.parked("p2").await.unwrap().len(), 1);
    assert_eq!(store.load("p2").await.unwrap(), 1);
}

/// A park is fenced as a save is, and refused for an event of another projection or beyond
/// [`MAX_POSITION`]: a refused park records nothing and leaves the checkpoint.
pub async fn a_park_is_fenced_and_checked<S: CheckpointStore + ?Sized>(store: &S) {
    let a = acquired(store, "p", "a", start(), start() + secs(30)).await;
    store.save(&a.token, 2).await.unwrap();
    let b = acquired(store, "p", "b", start() + secs(31), start() + secs(61)).await;
    assert_lease_lost(
        store.park(&a.token, &poison(&a.token, 4, 1, start())).await,
        "park by the replaced holder",
    );
    let elsewhere = ParkedEvent {
        projection: "q".into(),
        ..poison(&b.token, 4, 1, start())
    };
    let mismatch = store.park(&b.token, &elsewhere).await;
    assert!(
        matches!(&mismatch, Err(CheckpointError::ProjectionMismatch { lease, parked }) if lease == "p" && parked == "q"),
        "{mismatch:?}"
    );
    let too_far = store
        .park(&b.token, &poison(&b.token, MAX_POSITION + 1, 1, start()))
        .await;
    assert!(
        matches!(too_far, Err(CheckpointError::PositionTooLarge { .. })),
        "{too_far:?}"
    );
    assert!(store.parked("p").await.unwrap().is_empty());
    assert!(store.parked("q").await.unwrap().is_empty());
    assert_eq!(store.load("p").await.unwrap(), 2);
}

/// Unparking forgets one parked event, needs no lease (the checkpoint is past it already), and
/// says whether there was one.
pub async fn unparking_forgets_one_parked_event<S: CheckpointStore + ?Sized>(store: &S) {
    let lease = acquired(store, "p", "a", start(), start() + secs(30)).await;
    for position in [3, 7] {
        store
            .park(&lease.token, &poison(&lease.token, position, 2, start()))
            .await
            .unwrap();
    }
    assert!(store.release(&lease.token).await.unwrap());
    assert!(store.unpark("p", 3).await.unwrap());
    assert!(!store.unpark("p", 3).await.unwrap(), "forgotten once");
    assert!(!store.unpark("p", 5).await.unwrap(), "never parked");
    assert!(!store.unpark("q", 7).await.unwrap(), "another projection's");
    let left: Vec<u64> = store
        .parked("p")
        .await
        .unwrap()
        .iter()
        .map(|event| event.position)
        .collect();
    assert_eq!(left, [7]);
    assert_eq!(store.load("p").await.unwrap(), 7, "the checkpoint stays");
    assert!(matches!(
        store.parked("").await,
        Err(CheckpointError::Name(_))
    ));
    assert!(matches!(
        store.unpark("", 7).await,
        Err(CheckpointError::Name(_))
    ));
}

/// A reset, for a rebuild, forgets the projection's parked events (the rebuild applies them
/// again) and no other's.
pub async fn a_reset_forgets_the_parked_events<S: CheckpointStore + ?Sized>(store: &S) {
    let p = acquired(store, "p", "a", start(), start() + secs(30)).await;
    let q = acquired(store, "q", "a", start(), start() + secs(30)).await;
    store
        .park(&p.token, &poison(&p.token, 4, 1, start()))
        .await
        .unwrap();
    store
        .park(&q.token, &poison(&q.token, 4, 1, start()))
        .await
        .unwrap();
    store.reset(&p.token).await.unwrap();
    assert!(store.parked("p").await.unwrap().is_empty());
    assert_eq!(store.parked("q").await.unwrap().len(), 1);
    assert_eq!(store.load("p").await.unwrap(), 0);
}

/// Runs every check against a fresh store from `$make` (an expression evaluating to a future
/// of a store), one `#[tokio::test]` per check. Needs `tokio` with the `macros` and
/// `rt-multi-thread` features in the caller's dev-dependencies.
#[macro_export]
macro_rules! checkpoint_store_conformance {
    ($make:expr) => {
        #[cfg(test)]
        mod checkpoint_store_conformance {
            #[allow(unused_imports)]
            use super::*;

            macro_rules! check {
                ($name:ident) => {
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $name() {
                        let store = $make.await;
                        $crate::checkpoint::conformance::$name(&store).await;
                    }
                };
            }

            check!(a_new_projection_starts_at_the_origin);
            check!(saves_only_move_forward);
            check!(a_live_lease_keeps_others_out);
            check!(a_replaced_holder_cannot_write);
            check!(a_lapsed_lease_taken_again_is_a_new_generation);
            check!(a_lapsed_lease_nobody_took_still_writes);
            check!(release_frees_the_lease_at_once);
            check!(reset_returns_to_the_origin);
            check!(projections_are_listed_by_name);
            check!(names_follow_the_rule);
            check!(a_parked_event_is_recorded_and_the_checkpoint_moves_past_it);
            check!(a_park_is_fenced_and_checked);
            check!(unparking_forgets_one_parked_event);
            check!(a_reset_forgets_the_parked_events);

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn racing_acquirers_get_one_lease() {
                let store = ::std::sync::Arc::new($make.await);
                $crate::checkpoint::conformance::racing_acquirers_get_one_lease(store).await;
            }
        }
    };
}
