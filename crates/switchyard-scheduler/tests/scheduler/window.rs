//! The in-memory window on a manual clock: what is loaded when, what is held, and that loads
//! neither drift, leave gaps nor arm an alarm twice; failing loads are retried.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use switchyard_messaging::Message;
use switchyard_scheduler::store::AlarmStore as _;
use switchyard_scheduler::{ManualClock, Scheduler, SchedulerConfig, When};
use tokio::sync::Semaphore;

use crate::support::{TestStore, eventually, init_tracing, next, nothing, recording_node, t0};

const HOUR: Duration = Duration::from_secs(3_600);

fn config(clock: &ManualClock) -> SchedulerConfig {
    SchedulerConfig::default()
        .window(HOUR)
        .clock(clock.clone())
        .sweep_interval(None)
        .load_backoff(Duration::from_millis(5), Duration::from_millis(20))
}

fn record(id: &str) -> Message {
    Message::new("record").with_id(id)
}

#[tokio::test]
async fn every_window_loads_from_the_previous_horizon_to_two_windows_ahead() {
    init_tracing();
    let clock = ManualClock::new(t0());
    let (node, mut received) = recording_node("window");
    let store = TestStore::default();
    let scheduler = store.start_loaded(node, config(&clock)).await;

    // Far ahead: saved, not held.
    scheduler
        .schedule(record("far"), "agg", When::At(t0() + HOUR * 3))
        .await
        .unwrap();
    // Inside the horizon: armed at once.
    scheduler
        .schedule(record("near"), "agg", When::In(HOUR))
        .await
        .unwrap();
    assert_eq!(scheduler.held().await, 1, "only the window is held");

    // Loads come every window, each from where the last ended to now + 2 windows. The clock
    // runs a little late at each tick: the horizon follows the clock, so it does not drift.
    for (tick, late) in [(1_u32, 0_u64), (2, 7), (3, 7)] {
        clock.set(t0() + HOUR * tick + Duration::from_secs(late));
        eventually("a load per window", || async {
            store.loads().len() == tick as usize + 1
        })
        .await;
        if tick == 1 {
            assert_eq!(next(&mut received).await.message.id(), "near");
        }
    }
    let loads = store.loads();
    assert_eq!(loads[0], (None, t0() + HOUR * 2));
    assert_eq!(loads[1], (Some(t0() + HOUR * 2), t0() + HOUR * 3));
    assert_eq!(
        loads[2],
        (
            Some(t0() + HOUR * 3),
            t0() + HOUR * 4 + Duration::from_secs(7)
        )
    );
    assert_eq!(
        loads[3].0,
        Some(t0() + HOUR * 4 + Duration::from_secs(7)),
        "no gap"
    );
    // `far` (due at 3 h) came with the third load, was armed and is due now.
    let far = next(&mut received).await;
    assert_eq!(far.message.id(), "far");
    nothing(&mut received).await;
    scheduler.shutdown().await;
}

#[tokio::test]
async fn an_alarm_scheduled_while_a_load_runs_is_armed_once() {
    init_tracing();
    let clock = ManualClock::new(t0());
    let (node, mut received) = recording_node("dedup");
    let gate = Arc::new(Semaphore::new(0));
    let store = TestStore {
        gate: Some(gate.clone()),
        ..TestStore::default()
    };
    let scheduler = Scheduler::start(node, store.clone(), config(&clock)).unwrap();
    eventually("the load started", || async { store.loads().len() == 1 }).await;
    // The load is held: the alarm is armed by `schedule`, and the load finds it too.
    scheduler
        .schedule(record("both"), "agg", When::In(Duration::from_secs(60)))
        .await
        .unwrap();
    assert_eq!(scheduler.held().await, 1);
    gate.add_permits(1);
    eventually("the load found it", || async {
        store.loads().len() == 1 && scheduler.held().await == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(scheduler.held().await, 1, "armed once");
    clock.advance(Duration::from_secs(60));
    assert_eq!(next(&mut received).await.message.id(), "both");
    nothing(&mut received).await;
    scheduler.shutdown().await;
}

#[tokio::test]
async fn a_failing_load_is_retried_until_it_succeeds() {
    init_tracing();
    let clock = ManualClock::new(t0());
    let (node, mut received) = recording_node("retry-load");
    let store = TestStore::default();
    // Saved before the scheduler starts, so only a load can find it.
    use switchyard_scheduler::store::{Alarm, AlarmStore};
    store
        .inner
        .save(Alarm {
            message: record("pending"),
            aggregate_id: "agg".into(),
            due: t0() + Duration::from_secs(1),
            attempts: 0,
        })
        .await
        .unwrap();
    store.fail_loads.store(3, Ordering::SeqCst);
    let scheduler = Scheduler::start(node, store.clone(), config(&clock)).unwrap();
    eventually("three failures, then a success", || async {
        scheduler.held().await == 1
    })
    .await;
    let loads = store.loads();
    assert_eq!(loads.len(), 4);
    assert!(
        loads.iter().all(|l| *l == loads[0]),
        "retries load the same range"
    );
    clock.advance(Duration::from_secs(1));
    assert_eq!(next(&mut received).await.message.id(), "pending");
    scheduler.shutdown().await;
}

#[tokio::test]
async fn a_sweep_finds_overdue_alarms_another_node_left_behind() {
    init_tracing();
    let clock = ManualClock::new(t0());
    let (node, mut received) = recording_node("sweeper");
    let store = TestStore::default();
    let scheduler = store
        .start_loaded(
            node,
            config(&clock).sweep_interval(Some(Duration::from_secs(60))),
        )
        .await;
    // Saved behind the scheduler's back, inside the window it already loaded.
    use switchyard_scheduler::store::{Alarm, AlarmStore};
    store
        .inner
        .save(Alarm {
            message: record("orphan"),
            aggregate_id: "agg".into(),
            due: t0() + Duration::from_secs(10),
            attempts: 0,
        })
        .await
        .unwrap();
    clock.advance(Duration::from_secs(60));
    let orphan = next(&mut received).await;
    assert_eq!(orphan.message.id(), "orphan");
    assert!(switchyard_scheduler::assigns::is_late(&orphan.message));
    scheduler.shutdown().await;
}

/// A load slower than the store timeout is not cut off by it (it would start over from scratch
/// each time, forever): it has its own, far longer bound.
#[tokio::test]
async fn a_slow_load_is_not_cut_off_by_the_store_timeout() {
    init_tracing();
    let clock = ManualClock::new(t0());
    let (node, mut received) = recording_node("slow-load");
    let gate = Arc::new(Semaphore::new(0));
    let store = TestStore {
        gate: Some(gate.clone()),
        ..TestStore::default()
    };
    store
        .inner
        .save(switchyard_scheduler::store::Alarm {
            message: record("m"),
            aggregate_id: "a".into(),
            due: t0(),
            attempts: 0,
        })
        .await
        .unwrap();
    let scheduler = Scheduler::start(
        node,
        store.clone(),
        config(&clock)
            .store_timeout(Duration::from_millis(20))
            .load_backoff(Duration::from_millis(1), Duration::from_millis(1)),
    )
    .unwrap();
    eventually("the load started", || async { store.loads().len() == 1 }).await;
    // Many store timeouts pass: a load cut off by them would have been tried again by now.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        store.loads().len(),
        1,
        "the load was cut off and started over"
    );
    gate.add_permits(1);
    assert_eq!(next(&mut received).await.message.id(), "m");
    scheduler.shutdown().await;
}
