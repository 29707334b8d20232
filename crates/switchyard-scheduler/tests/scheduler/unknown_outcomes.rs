//! Store calls whose outcome the scheduler cannot know: a write that took effect but answered
//! too late (cut off by the store timeout, or its commit's answer lost), and a claim whose
//! answer came after its lease had lapsed. None may lose an alarm, count an attempt twice, or
//! dispatch while another node holds the lease.

use std::time::Duration;

use switchyard_messaging::Message;
use switchyard_scheduler::store::{AlarmStore, AlarmStoreError, Claim};
use switchyard_scheduler::{
    ManualClock, RetryPolicy, ScheduleError, Scheduler, SchedulerConfig, When, assigns,
};

use crate::support::{StallingStore, eventually, init_tracing, next, nothing, recording_node, t0};

fn config(clock: &ManualClock) -> SchedulerConfig {
    SchedulerConfig::default()
        .clock(clock.clone())
        .sweep_interval(None)
        .store_timeout(Duration::from_millis(50))
}

/// A claim that took the lease and counted the attempt but answered after the store timeout
/// is tried again at once (not after the failure delay: the lease is most likely its own) by
/// the same delivery, which finds its own live lease: the attempt is counted once, so with
/// `max_attempts: 1` the alarm is still delivered (not dropped as a second attempt).
#[tokio::test]
async fn a_claim_that_took_effect_but_answered_late_counts_one_attempt() {
    init_tracing();
    let clock = ManualClock::new(t0());
    let (node, mut received) = recording_node("late-claim");
    let store = StallingStore::default();
    store.answer_late("claim", 1);
    let policy = RetryPolicy::Fixed {
        delay: Duration::from_secs(1),
        max_attempts: 1,
    };
    let scheduler = Scheduler::start(
        node,
        store.clone(),
        config(&clock)
            .failure_delay(Duration::from_secs(10))
            .retry_policy(policy),
    )
    .unwrap();
    scheduler
        .schedule(Message::new("record").with_id("m"), "a", When::At(t0()))
        .await
        .unwrap();
    // The clock stays put: no failure delay is waited out.
    let got = next(&mut received).await;
    assert_eq!(
        store.answered_late(),
        1,
        "the first claim took effect, answered late"
    );
    assert_eq!(got.message.id(), "m");
    assert_eq!(assigns::dispatch_attempts(&got.message), 1, "counted once");
    eventually("done", || async { store.inner.is_empty() }).await;
    scheduler.shutdown().await;
}

/// A retry that was saved but answered after the store timeout: the next try finds the lease
/// released (by the save itself) and answers `false`. The scheduler must not forget the alarm:
/// it is delivered again at the retry's time, as the second attempt.
#[tokio::test]
async fn a_retry_saved_but_answered_late_is_still_delivered() {
    init_tracing();
    let clock = ManualClock::new(t0());
    let (node, mut received) = recording_node("late-retry");
    let store = StallingStore::default();
    store.answer_late("reschedule", 1);
    let policy = RetryPolicy::Fixed {
        delay: Duration::from_secs(10),
        max_attempts: 3,
    };
    let scheduler =
        Scheduler::start(node, store.clone(), config(&clock).retry_policy(policy)).unwrap();
    scheduler
        .schedule(Message::new("fail").with_id("m"), "a", When::At(t0()))
        .await
        .unwrap();
    assert_eq!(
        assigns::dispatch_attempts(&next(&mut received).await.message),
        1
    );
    eventually("the retry was saved and its answer cut off", || async {
        store.answered_late() == 1 && store.stalled_calls() == 0
    })
    .await;
    clock.advance(Duration::from_secs(10));
    let got = next(&mut received).await;
    assert_eq!(got.message.id(), "m");
    assert_eq!(assigns::dispatch_attempts(&got.message), 2);
    scheduler.shutdown().await;
}

/// Schedules an alarm 10 s ahead on a store whose save takes effect but whose answer `lose`
/// cuts off, checks that it is delivered at its time all the same (with the sweep off and the
/// next load hours away, only `schedule` arming it can), and returns what `schedule` answered.
async fn schedule_losing_the_answer(
    name: &str,
    lose: impl FnOnce(&StallingStore),
) -> ScheduleError {
    init_tracing();
    let clock = ManualClock::new(t0());
    let (node, mut received) = recording_node(name);
    let store = StallingStore::default();
    let scheduler = Scheduler::start(node, store.clone(), config(&clock)).unwrap();
    // The first load has read the (empty) store: it cannot see the alarm.
    eventually("the first load", || async {
        store.loads.load(std::sync::atomic::Ordering::SeqCst) == 1
    })
    .await;
    lose(&store);
    let answer = scheduler
        .schedule(
            Message::new("record").with_id("m"),
            "a",
            When::At(t0() + Duration::from_secs(10)),
        )
        .await;
    assert_eq!(store.inner.len(), 1, "the save took effect");
    clock.advance(Duration::from_secs(10));
    let got = next(&mut received).await;
    assert_eq!(got.message.id(), "m");
    eventually("done", || async { store.inner.is_empty() }).await;
    scheduler.shutdown().await;
    answer.expect_err("the answer was lost")
}

/// A save that took effect but answered after the store timeout: `schedule` answers
/// `StoreTimedOut`, and the alarm is armed all the same, so it is delivered at its time.
#[tokio::test]
async fn a_save_that_took_effect_but_answered_late_is_delivered() {
    let error = schedule_losing_the_answer("late-save", |store| store.answer_late("save", 1)).await;
    assert!(
        matches!(error, ScheduleError::StoreTimedOut { .. }),
        "{error:?}"
    );
}

/// A save that took effect but whose outcome the store could not tell (a commit whose answer
/// was lost): `schedule` answers the store's `Unknown`, and the alarm is armed as after a
/// timeout, so it is delivered at its time.
#[tokio::test]
async fn a_save_of_unknown_outcome_is_armed_and_delivered() {
    let error =
        schedule_losing_the_answer("unknown-save", |store| store.answer_unknown("save", 1)).await;
    assert!(
        matches!(error, ScheduleError::Store(AlarmStoreError::Unknown { .. })),
        "{error:?}"
    );
}

/// A save that never took effect but timed out is armed too: its claim finds nothing, and the
/// scheduler forgets it.
#[tokio::test]
async fn a_save_that_timed_out_without_effect_is_forgotten_at_its_claim() {
    init_tracing();
    let clock = ManualClock::new(t0());
    let (node, mut received) = recording_node("stalled-save");
    let store = StallingStore::default();
    store.stall("save");
    let scheduler = Scheduler::start(node, store.clone(), config(&clock)).unwrap();
    let answer = scheduler
        .schedule(Message::new("record").with_id("m"), "a", When::At(t0()))
        .await;
    assert!(
        matches!(answer, Err(ScheduleError::StoreTimedOut { .. })),
        "{answer:?}"
    );
    eventually("forgotten", || async { scheduler.held().await == 0 }).await;
    nothing(&mut received).await;
    scheduler.shutdown().await;
}

/// A claim whose answer arrives after its lease lapsed (the store was slow, the clock moved on)
/// while another node claimed the alarm: the delivery renews before dispatching, finds the
/// lease gone, and does not dispatch.
#[tokio::test]
async fn a_claim_answered_after_its_lease_lapsed_is_not_dispatched() {
    init_tracing();
    let clock = ManualClock::new(t0());
    let (node, mut received) = recording_node("lapsed-claim");
    let store = StallingStore::default();
    let answers = store.hold_answers("claim");
    let scheduler = Scheduler::start(
        node,
        store.clone(),
        SchedulerConfig::default()
            .clock(clock.clone())
            .sweep_interval(None),
    )
    .unwrap();
    scheduler
        .schedule(Message::new("record").with_id("m"), "a", When::At(t0()))
        .await
        .unwrap();
    eventually("the claim took effect", || async {
        store.answered_late() == 1
    })
    .await;
    // The lease (30 s from the claim) lapses, and another node takes the alarm.
    clock.advance(Duration::from_secs(31));
    let now = t0() + Duration::from_secs(31);
    let other = store
        .inner
        .claim("m", "other-node", now, now, now + Duration::from_secs(30))
        .await
        .unwrap();
    assert!(matches!(other, Claim::Claimed(_)), "{other:?}");
    answers.add_permits(1_000);
    nothing(&mut received).await;
    assert_eq!(store.inner.len(), 1, "left to the node holding it");
    scheduler.shutdown().await;
}
