//! Shutting down: `schedule` refuses as soon as a shutdown begins, loads and sweeps do not
//! outlive the scheduler, and a stalled store cannot hold a shutdown up.

use std::time::Duration;

use futures::FutureExt as _;

use switchyard_messaging::Message;
use switchyard_scheduler::{ManualClock, ScheduleError, Scheduler, SchedulerConfig, When};

use crate::delivery::{Gated, gated};
use crate::support::{StallingStore, eventually, init_tracing, recording_node, t0};

fn config(clock: &ManualClock) -> SchedulerConfig {
    SchedulerConfig::default()
        .clock(clock.clone())
        .sweep_interval(None)
}

/// Shut down within 5 s, or fail: a liveness bound, not a timing.
async fn shut_down(scheduler: &Scheduler) {
    tokio::time::timeout(Duration::from_secs(5), scheduler.shutdown())
        .await
        .expect("the shutdown hangs");
}

#[tokio::test]
async fn schedule_is_refused_once_a_shutdown_has_begun() {
    init_tracing();
    let clock = ManualClock::new(t0());
    let Gated {
        node,
        mut started,
        release,
    } = gated("stopping");
    let store = StallingStore::default();
    let scheduler = Scheduler::start(node, store.clone(), config(&clock)).unwrap();
    scheduler
        .schedule(Message::new("gated"), "a", When::At(t0()))
        .await
        .unwrap();
    started.recv().await.unwrap();
    // The delivery under way keeps the shutdown waiting.
    let mut shutdown = std::pin::pin!(scheduler.shutdown());
    assert!(shutdown.as_mut().now_or_never().is_none());
    let refused = scheduler
        .schedule(
            Message::new("gated").with_id("late-comer"),
            "a",
            When::In(Duration::from_secs(60)),
        )
        .await;
    assert!(
        matches!(refused, Err(ScheduleError::Stopped)),
        "{refused:?}"
    );
    assert_eq!(
        store.inner.len(),
        1,
        "nothing saved after the shutdown began"
    );
    release.add_permits(1);
    tokio::time::timeout(Duration::from_secs(5), shutdown)
        .await
        .expect("the shutdown hangs");
    assert!(store.inner.is_empty());
}

#[tokio::test]
async fn a_stalled_claim_cannot_hold_up_shutdown() {
    init_tracing();
    let clock = ManualClock::new(t0());
    let (node, _received) = recording_node("stalled-claim");
    let store = StallingStore::default();
    store.stall("claim");
    let scheduler = Scheduler::start(
        node,
        store.clone(),
        config(&clock).store_timeout(Duration::from_millis(100)),
    )
    .unwrap();
    scheduler
        .schedule(Message::new("record"), "a", When::At(t0()))
        .await
        .unwrap();
    eventually("the claim stalls", || async { store.stalled_calls() == 1 }).await;
    shut_down(&scheduler).await;
    assert_eq!(
        store.inner.len(),
        1,
        "the alarm waits for the next scheduler"
    );
}

#[tokio::test]
async fn a_stalled_delete_cannot_hold_up_shutdown() {
    init_tracing();
    let clock = ManualClock::new(t0());
    let (node, mut received) = recording_node("stalled-delete");
    let store = StallingStore::default();
    store.stall("delete");
    let scheduler = Scheduler::start(
        node,
        store.clone(),
        config(&clock).store_timeout(Duration::from_millis(50)),
    )
    .unwrap();
    scheduler
        .schedule(Message::new("record"), "a", When::At(t0()))
        .await
        .unwrap();
    crate::support::next(&mut received).await;
    eventually("the delete stalls", || async { store.stalled_calls() >= 1 }).await;
    shut_down(&scheduler).await;
}

#[tokio::test]
async fn a_stalled_save_answers_a_timeout() {
    init_tracing();
    let clock = ManualClock::new(t0());
    let (node, _received) = recording_node("stalled-save");
    let store = StallingStore::default();
    store.stall("save");
    let scheduler = Scheduler::start(
        node,
        store.clone(),
        config(&clock).store_timeout(Duration::from_millis(50)),
    )
    .unwrap();
    let answer = tokio::time::timeout(
        Duration::from_secs(5),
        scheduler.schedule(Message::new("record"), "a", When::At(t0())),
    )
    .await
    .expect("schedule hangs");
    assert!(
        matches!(answer, Err(ScheduleError::StoreTimedOut { after }) if after == Duration::from_millis(50)),
        "{answer:?}"
    );
    shut_down(&scheduler).await;
}

#[tokio::test]
async fn loads_and_sweeps_do_not_outlive_shutdown() {
    init_tracing();
    let clock = ManualClock::new(t0());
    let (node, _received) = recording_node("stalled-load");
    let store = StallingStore::default();
    store.stall("load");
    let scheduler = Scheduler::start(
        node,
        store.clone(),
        config(&clock)
            .sweep_interval(Some(Duration::from_secs(1)))
            // Long enough that the stalled calls are still waiting when the shutdown comes.
            .load_timeout(Duration::from_secs(3_600)),
    )
    .unwrap();
    eventually("the load stalls", || async { store.stalled_calls() == 1 }).await;
    clock.advance(Duration::from_secs(1));
    eventually("the sweep stalls", || async { store.stalled_calls() == 2 }).await;
    shut_down(&scheduler).await;
    eventually("the stalled load and sweep are dropped", || async {
        store.stalled_calls() == 0
    })
    .await;
}
