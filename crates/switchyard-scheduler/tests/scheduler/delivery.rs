//! Delivery rules: attempts, lateness, retries (persisted, with the message cleared but its
//! assigns kept), failures that must not stop the scheduler, cancelling, shutting down and
//! restarting.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use switchyard_messaging::{Message, Response};
use switchyard_scheduler::store::{AlarmStore, MemoryAlarmStore};
use switchyard_scheduler::{
    ConfigError, Decision, ManualClock, RetryPolicy, ScheduleError, Scheduler, SchedulerConfig,
    When, assigns,
};

use crate::support::{TestStore, eventually, init_tracing, next, nothing, recording_node, t0};

fn config(clock: &ManualClock) -> SchedulerConfig {
    SchedulerConfig::default()
        .clock(clock.clone())
        .sweep_interval(None)
}

#[tokio::test]
async fn an_alarm_in_the_past_is_delivered_at_once_and_marked_late() {
    init_tracing();
    let clock = ManualClock::new(t0());
    let (node, mut received) = recording_node("late");
    let scheduler = Scheduler::start(node, MemoryAlarmStore::new(), config(&clock)).unwrap();
    scheduler
        .schedule(
            Message::new("record").with_id("past"),
            "a",
            When::At(t0() - Duration::from_secs(3_600)),
        )
        .await
        .unwrap();
    scheduler
        .schedule(
            Message::new("record").with_id("now"),
            "a",
            When::In(Duration::ZERO),
        )
        .await
        .unwrap();
    let mut got = [next(&mut received).await, next(&mut received).await];
    got.sort_by(|a, b| a.message.id().cmp(b.message.id()));
    assert_eq!(got[0].message.id(), "now");
    assert!(!assigns::is_late(&got[0].message), "within the tolerance");
    assert_eq!(got[1].message.id(), "past");
    assert!(assigns::is_late(&got[1].message));
    assert_eq!(assigns::dispatch_attempts(&got[1].message), 1);
    scheduler.shutdown().await;
}

#[tokio::test]
async fn retries_are_persisted_counted_and_cleared_until_the_policy_says_done() {
    init_tracing();
    let clock = ManualClock::new(t0());
    let (node, mut received) = recording_node("retries");
    let store = MemoryAlarmStore::new();
    let policy = RetryPolicy::Fixed {
        delay: Duration::from_secs(10),
        max_attempts: 3,
    };
    let scheduler =
        Scheduler::start(node, store.clone(), config(&clock).retry_policy(policy)).unwrap();
    scheduler
        .schedule(
            Message::new("fail").with_id("f").with_request("payload"),
            "a",
            When::In(Duration::from_secs(5)),
        )
        .await
        .unwrap();
    clock.advance(Duration::from_secs(5));
    for attempt in 1..=3_u32 {
        let got = next(&mut received).await;
        // The handler ran, so the message was not halted; its request came back.
        assert_eq!(assigns::dispatch_attempts(&got.message), attempt);
        assert_eq!(got.message.request::<String>().unwrap(), "payload");
        assert!(got.message.response().is_none());
        assert!(got.message.events().is_empty());
        if attempt < 3 {
            let expected_due = clock_now_plus(&clock, 10);
            eventually("the retry is persisted", || {
                let store = store.clone();
                async move {
                    let alarms = store
                        .load(None, t0() + Duration::from_secs(3_600))
                        .await
                        .unwrap();
                    alarms.len() == 1
                        && assigns::dispatch_attempts(&alarms[0].message) == attempt
                        && alarms[0].due == expected_due
                }
            })
            .await;
            let stored = store
                .load(None, t0() + Duration::from_secs(3_600))
                .await
                .unwrap();
            assert_eq!(
                assigns::dispatch_at(&stored[0].message),
                Some(stored[0].due)
            );
            nothing(&mut received).await;
            clock.advance(Duration::from_secs(10));
        }
    }
    eventually("done after the last attempt", || {
        let store = store.clone();
        async move { store.is_empty() }
    })
    .await;
    scheduler.shutdown().await;
}

fn clock_now_plus(clock: &ManualClock, seconds: u64) -> SystemTime {
    use switchyard_scheduler::Clock;
    clock.now() + Duration::from_secs(seconds)
}

#[tokio::test]
async fn a_custom_hook_keeps_assigns_and_a_panicking_hook_stops_nothing() {
    init_tracing();
    let clock = ManualClock::new(t0());
    let (node, mut received) = recording_node("hooks");
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let policy =
        RetryPolicy::custom(
            move |reply: &Message| match seen.fetch_add(1, Ordering::SeqCst) {
                0 => {
                    Decision::RetryIn(Duration::from_secs(1), reply.clone().assign("note", "kept"))
                }
                1 => panic!("the hook fails"),
                _ => Decision::Done,
            },
        );
    let store = MemoryAlarmStore::new();
    let scheduler = Scheduler::start(
        node,
        store.clone(),
        config(&clock)
            .retry_policy(policy)
            .failure_delay(Duration::from_secs(30)),
    )
    .unwrap();
    scheduler
        .schedule(
            Message::new("record").with_id("h"),
            "a",
            When::In(Duration::ZERO),
        )
        .await
        .unwrap();
    let first = next(&mut received).await;
    assert_eq!(first.message.assigned::<String>("note").unwrap(), None);
    eventually("the retry is saved with the hook's assigns", || {
        let store = store.clone();
        async move {
            let alarms = store
                .load(None, t0() + Duration::from_secs(60))
                .await
                .unwrap();
            alarms.len() == 1
                && alarms[0]
                    .message
                    .assigned::<String>("note")
                    .unwrap()
                    .is_some()
        }
    })
    .await;
    clock.advance(Duration::from_secs(1));
    let second = next(&mut received).await;
    assert_eq!(
        second
            .message
            .assigned::<String>("note")
            .unwrap()
            .as_deref(),
        Some("kept")
    );
    assert_eq!(assigns::dispatch_attempts(&second.message), 2);
    // The hook panicked on the second answer: the alarm is retried after the failure delay.
    eventually("retried after the panic", || async {
        calls.load(Ordering::SeqCst) == 2
    })
    .await;
    nothing(&mut received).await;
    clock.advance(Duration::from_secs(30));
    let third = next(&mut received).await;
    assert_eq!(assigns::dispatch_attempts(&third.message), 3);
    eventually("done", || {
        let store = store.clone();
        async move { store.is_empty() }
    })
    .await;
    // Still running.
    scheduler
        .schedule(
            Message::new("record").with_id("after"),
            "a",
            When::In(Duration::ZERO),
        )
        .await
        .unwrap();
    assert_eq!(next(&mut received).await.message.id(), "after");
    scheduler.shutdown().await;
}

#[tokio::test]
async fn a_panicking_service_answers_an_error_and_the_scheduler_goes_on() {
    init_tracing();
    let clock = ManualClock::new(t0());
    let (node, mut received) = recording_node("boom");
    let (answers_tx, mut answers) = tokio::sync::mpsc::unbounded_channel();
    let policy = RetryPolicy::custom(move |reply: &Message| {
        let _ = answers_tx.send(reply.response().cloned());
        Decision::Done
    });
    let scheduler = Scheduler::start(
        node,
        MemoryAlarmStore::new(),
        config(&clock).retry_policy(policy),
    )
    .unwrap();
    scheduler
        .schedule(Message::new("boom"), "a", When::In(Duration::ZERO))
        .await
        .unwrap();
    next(&mut received).await;
    let answer = answers.recv().await.unwrap();
    assert!(matches!(answer, Some(Response::Error(_))), "{answer:?}");
    scheduler
        .schedule(
            Message::new("record").with_id("next"),
            "a",
            When::In(Duration::ZERO),
        )
        .await
        .unwrap();
    assert_eq!(next(&mut received).await.message.id(), "next");
    scheduler.shutdown().await;
}

#[tokio::test]
async fn a_slow_service_times_out_at_the_dispatch_timeout() {
    init_tracing();
    let node = switchyard_messaging::Node::new("slow");
    node.register(
        switchyard_messaging::Router::new("slow")
            .service("slow", |msg: Message| async move {
                tokio::time::sleep(Duration::from_secs(60)).await;
                msg.ok()
            })
            .authorize(|_| Ok(())),
    )
    .unwrap();
    let (tx, mut answers) = tokio::sync::mpsc::unbounded_channel();
    let policy = RetryPolicy::custom(move |reply: &Message| {
        let _ = tx.send(reply.response().cloned());
        Decision::Done
    });
    let scheduler = Scheduler::start(
        node,
        MemoryAlarmStore::new(),
        SchedulerConfig::default()
            .dispatch_timeout(Duration::from_millis(50))
            .store_timeout(Duration::from_millis(100))
            .claim_ahead(Duration::from_millis(50))
            .lease(Duration::from_millis(300))
            .retry_policy(policy),
    )
    .unwrap();
    let started = Instant::now();
    scheduler
        .schedule(Message::new("slow"), "a", When::In(Duration::ZERO))
        .await
        .unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(5), answers.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(answer, Some(Response::ServiceTimeout { .. })),
        "{answer:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    scheduler.shutdown().await;
}

#[tokio::test]
async fn cancelled_alarms_are_not_delivered() {
    init_tracing();
    let clock = ManualClock::new(t0());
    let (node, mut received) = recording_node("cancel");
    let store = TestStore::default();
    let scheduler = store.start_loaded(node, config(&clock)).await;
    for (id, aggregate) in [("x", "A"), ("y", "A"), ("z", "B"), ("keep", "C")] {
        scheduler
            .schedule(
                Message::new("record").with_id(id),
                aggregate,
                When::In(Duration::from_secs(10)),
            )
            .await
            .unwrap();
    }
    assert!(scheduler.cancel("z").await.unwrap());
    assert!(!scheduler.cancel("z").await.unwrap());
    assert_eq!(scheduler.cancel_for("A").await.unwrap(), ["x", "y"]);
    eventually("only `keep` is held", || async {
        scheduler.held().await == 1
    })
    .await;
    clock.advance(Duration::from_secs(10));
    assert_eq!(next(&mut received).await.message.id(), "keep");
    nothing(&mut received).await;
    scheduler.shutdown().await;
}

#[tokio::test]
async fn a_stopped_scheduler_refuses_new_alarms_and_a_new_one_delivers_the_pending() {
    init_tracing();
    let clock = ManualClock::new(t0());
    let store = MemoryAlarmStore::new();
    let (node, mut received) = recording_node("first");
    let first = Scheduler::start(node, store.clone(), config(&clock)).unwrap();
    for n in 0..10_u64 {
        first
            .schedule(
                Message::new("record").with_id(format!("r-{n}")),
                "a",
                When::In(Duration::from_secs(n * 60)),
            )
            .await
            .unwrap();
    }
    // Due now: r-0 is delivered before the shutdown completes or left pending, never lost.
    first.shutdown().await;
    first.shutdown().await;
    assert!(matches!(
        first
            .schedule(Message::new("record"), "a", When::In(Duration::ZERO))
            .await,
        Err(ScheduleError::Stopped)
    ));
    assert_eq!(first.held().await, 0);
    let mut delivered: Vec<String> = Vec::new();
    while let Ok(got) = received.try_recv() {
        delivered.push(got.message.id().to_owned());
    }

    let (node, mut received) = recording_node("second");
    let second = Scheduler::start(node, store.clone(), config(&clock)).unwrap();
    clock.advance(Duration::from_secs(3_600));
    while delivered.len() < 10 {
        delivered.push(next(&mut received).await.message.id().to_owned());
    }
    delivered.sort();
    let expected: Vec<String> = (0..10).map(|n| format!("r-{n}")).collect();
    let mut expected_sorted = expected.clone();
    expected_sorted.sort();
    assert_eq!(delivered, expected_sorted, "every alarm once");
    nothing(&mut received).await;
    eventually("all deleted", || {
        let store = store.clone();
        async move { store.is_empty() }
    })
    .await;
    second.shutdown().await;
}

#[tokio::test]
async fn no_room_for_a_delivery_or_no_time_for_the_store_is_refused() {
    for (config, setting) in [
        (
            SchedulerConfig::default().max_concurrent_deliveries(0),
            "max concurrent deliveries",
        ),
        (
            SchedulerConfig::default().store_timeout(Duration::ZERO),
            "store timeout",
        ),
    ] {
        let (node, _received) = recording_node("zero");
        let error = Scheduler::start(node, MemoryAlarmStore::new(), config).unwrap_err();
        assert!(
            matches!(error, ConfigError::Zero { setting: s } if s == setting),
            "{error}"
        );
    }
}

#[tokio::test]
async fn a_lease_shorter_than_the_dispatch_timeout_is_refused() {
    let (node, _received) = recording_node("config");
    let error = Scheduler::start(
        node,
        MemoryAlarmStore::new(),
        SchedulerConfig::default().lease(Duration::from_secs(5)),
    )
    .unwrap_err();
    assert!(
        matches!(error, ConfigError::LeaseTooShort { .. }),
        "{error}"
    );
}

/// Real time: alarms a few tens of milliseconds ahead arrive on time, unmarked; one in the past
/// arrives at once, marked late.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_time_deliveries_are_punctual_and_late_ones_are_marked() {
    init_tracing();
    let (node, mut received) = recording_node("real-time");
    let scheduler =
        Scheduler::start(node, MemoryAlarmStore::new(), SchedulerConfig::default()).unwrap();
    for n in 0..20_u64 {
        scheduler
            .schedule(
                Message::new("record").with_id(format!("on-time-{n}")),
                "a",
                When::In(Duration::from_millis(20 + n * 5)),
            )
            .await
            .unwrap();
    }
    scheduler
        .schedule(
            Message::new("record").with_id("late"),
            "a",
            When::At(SystemTime::now() - Duration::from_secs(5)),
        )
        .await
        .unwrap();
    let mut worst = Duration::ZERO;
    for _ in 0..21 {
        let got = next(&mut received).await;
        let arrived = SystemTime::now();
        let due = assigns::dispatch_at(&got.message).unwrap();
        if got.message.id() == "late" {
            assert!(assigns::is_late(&got.message));
            continue;
        }
        assert!(!assigns::is_late(&got.message), "{}", got.message.id());
        let lateness = arrived
            .duration_since(due)
            .expect("delivered before its time");
        worst = worst.max(lateness);
    }
    assert!(
        worst < Duration::from_millis(200),
        "worst lateness {worst:?}"
    );
    scheduler.shutdown().await;
}

/// The message of the alarms scheduled again under one id.
fn same() -> Message {
    Message::new("gated").with_id("same")
}

/// A scheduler on the test store whose gated service holds the delivery of `same()`, due at
/// once, open: started, not yet released.
struct HeldDelivery {
    clock: ManualClock,
    store: TestStore,
    scheduler: Scheduler,
    started: tokio::sync::mpsc::UnboundedReceiver<Option<SystemTime>>,
    release: Arc<tokio::sync::Semaphore>,
}

async fn first_delivery_held(name: &str) -> HeldDelivery {
    init_tracing();
    let clock = ManualClock::new(t0());
    let Gated {
        node,
        mut started,
        release,
    } = gated(name);
    let store = TestStore::default();
    let scheduler = store.start_loaded(node, config(&clock)).await;
    scheduler
        .schedule(same(), "a", When::In(Duration::ZERO))
        .await
        .unwrap();
    assert_eq!(started.recv().await.unwrap(), Some(t0()));
    HeldDelivery {
        clock,
        store,
        scheduler,
        started,
        release,
    }
}

#[tokio::test]
async fn an_alarm_scheduled_again_while_it_is_delivered_is_armed_afterwards() {
    let HeldDelivery {
        clock,
        store,
        scheduler,
        mut started,
        release,
    } = first_delivery_held("again").await;
    // While the first is being delivered, the same id is scheduled again, later.
    scheduler
        .schedule(same(), "a", When::In(Duration::from_secs(10)))
        .await
        .unwrap();
    release.add_permits(1);
    eventually("the first delivery ended", || async {
        scheduler.held().await == 1
    })
    .await;
    assert_eq!(store.inner.len(), 1, "the new alarm stays in the store");
    clock.advance(Duration::from_secs(10));
    let second = tokio::time::timeout(Duration::from_secs(5), started.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(second, Some(t0() + Duration::from_secs(10)));
    release.add_permits(1);
    eventually("done", || async { store.inner.is_empty() }).await;
    scheduler.shutdown().await;
}

/// Cancelled while being delivered, then scheduled again under the same id: the new alarm is
/// delivered once, at its own time, and the old delivery's end does not touch it.
#[tokio::test]
async fn an_alarm_cancelled_and_scheduled_again_during_its_delivery_is_delivered_once() {
    let HeldDelivery {
        clock,
        store,
        scheduler,
        mut started,
        release,
    } = first_delivery_held("cancel-again").await;
    scheduler.cancel("same").await.unwrap();
    scheduler
        .schedule(same(), "a", When::In(Duration::from_secs(10)))
        .await
        .unwrap();
    release.add_permits(1);
    eventually("the first delivery ended", || async {
        store.inner.len() == 1
    })
    .await;
    assert!(
        tokio::time::timeout(Duration::from_millis(300), started.recv())
            .await
            .is_err(),
        "nothing else is delivered before the new alarm's time"
    );
    clock.advance(Duration::from_secs(10));
    let second = tokio::time::timeout(Duration::from_secs(5), started.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(second, Some(t0() + Duration::from_secs(10)));
    release.add_permits(1);
    eventually("done", || async { store.inner.is_empty() }).await;
    assert!(
        tokio::time::timeout(Duration::from_millis(300), started.recv())
            .await
            .is_err(),
        "delivered once"
    );
    scheduler.shutdown().await;
}

/// Durations no clock can add are refused up front, and a hook's own is bounded: nothing
/// overflows, nothing stops the scheduler.
#[tokio::test]
async fn durations_beyond_any_clock_are_refused_or_bounded() {
    init_tracing();
    let (node, _received) = recording_node("too-long");
    let error = Scheduler::start(
        node,
        MemoryAlarmStore::new(),
        SchedulerConfig::default().window(Duration::MAX),
    )
    .unwrap_err();
    assert!(
        matches!(
            error,
            ConfigError::TooLong {
                setting: "window",
                ..
            }
        ),
        "{error}"
    );

    let clock = ManualClock::new(t0());
    let (node, mut received) = recording_node("far");
    let policy =
        RetryPolicy::custom(|reply: &Message| Decision::RetryIn(Duration::MAX, reply.clone()));
    let store = MemoryAlarmStore::new();
    let scheduler =
        Scheduler::start(node, store.clone(), config(&clock).retry_policy(policy)).unwrap();
    let refused = scheduler
        .schedule(Message::new("record"), "a", When::In(Duration::MAX))
        .await;
    assert!(
        matches!(refused, Err(ScheduleError::TooFar { .. })),
        "{refused:?}"
    );
    scheduler
        .schedule(
            Message::new("record").with_id("far"),
            "a",
            When::In(Duration::ZERO),
        )
        .await
        .unwrap();
    next(&mut received).await;
    eventually("the retry is saved a hundred years on", || {
        let store = store.clone();
        async move {
            store
                .load(None, t0() + Duration::from_secs(101 * 365 * 24 * 3_600))
                .await
                .unwrap()
                .iter()
                .any(|alarm| alarm.due > t0() + Duration::from_secs(99 * 365 * 24 * 3_600))
        }
    })
    .await;
    scheduler
        .schedule(
            Message::new("record").with_id("after"),
            "a",
            When::In(Duration::ZERO),
        )
        .await
        .unwrap();
    assert_eq!(
        next(&mut received).await.message.id(),
        "after",
        "still delivering"
    );
    scheduler.shutdown().await;
}

/// A node whose `gated` service reports each delivery's `dispatch_at` as it starts, then waits
/// for a permit on `release` before answering: a delivery held open for as long as a test needs.
pub(crate) struct Gated {
    pub(crate) node: switchyard_messaging::Node,
    pub(crate) started: tokio::sync::mpsc::UnboundedReceiver<Option<SystemTime>>,
    pub(crate) release: Arc<tokio::sync::Semaphore>,
}

pub(crate) fn gated(name: &str) -> Gated {
    let node = switchyard_messaging::Node::new(name);
    let (started_tx, started) = tokio::sync::mpsc::unbounded_channel();
    let release = Arc::new(tokio::sync::Semaphore::new(0));
    let gate = release.clone();
    node.register(
        switchyard_messaging::Router::new("gated")
            .service("gated", move |msg: Message| {
                let started_tx = started_tx.clone();
                let gate = gate.clone();
                async move {
                    let _ = started_tx.send(assigns::dispatch_at(&msg));
                    gate.acquire().await.unwrap().forget();
                    msg.ok()
                }
            })
            .authorize(|_| Ok(())),
    )
    .unwrap();
    Gated {
        node,
        started,
        release,
    }
}

/// Saves alarm `id` due at `t0()` straight into `store`, and has `dead` (a node that then dies
/// mid-delivery) claim it at `at`, for 30 s.
async fn claimed_by_a_dead_node(store: &MemoryAlarmStore, id: &str, dead: &str, at: SystemTime) {
    use switchyard_scheduler::store::{Alarm, Claim};
    if store.is_empty() {
        store
            .save(Alarm {
                message: Message::new("record")
                    .with_id(id)
                    .assign(assigns::DISPATCH_ATTEMPTS, &0_u32),
                aggregate_id: "a".into(),
                due: t0(),
                attempts: 0,
            })
            .await
            .unwrap();
    }
    let lease = at + Duration::from_secs(30);
    let claim = store.claim(id, dead, at, at, lease).await.unwrap();
    assert!(matches!(claim, Claim::Claimed(_)), "{claim:?}");
}

/// A node that dies mid-delivery has started an attempt all the same: the next delivery, once
/// its lease lapsed, is the second.
#[tokio::test]
async fn an_attempt_cut_short_by_a_crash_counts() {
    init_tracing();
    let clock = ManualClock::new(t0());
    let store = MemoryAlarmStore::new();
    claimed_by_a_dead_node(&store, "m", "dead-node", t0()).await;
    let (node, mut received) = recording_node("survivor");
    let scheduler = Scheduler::start(node, store.clone(), config(&clock)).unwrap();
    nothing(&mut received).await;
    clock.advance(Duration::from_secs(30));
    let got = next(&mut received).await;
    assert_eq!(got.message.id(), "m");
    assert_eq!(assigns::dispatch_attempts(&got.message), 2);
    eventually("done", || {
        let store = store.clone();
        async move { store.is_empty() }
    })
    .await;
    scheduler.shutdown().await;
}

/// A message whose deliveries never finish (it kills its node, say) is not tried beyond the
/// policy's `max_attempts`: it is dropped instead of retried forever.
#[tokio::test]
async fn an_alarm_whose_deliveries_never_finish_is_dropped_at_max_attempts() {
    init_tracing();
    let clock = ManualClock::new(t0() + Duration::from_secs(60));
    let store = MemoryAlarmStore::new();
    claimed_by_a_dead_node(&store, "m", "dead-a", t0()).await;
    claimed_by_a_dead_node(&store, "m", "dead-b", t0() + Duration::from_secs(30)).await;
    let (node, mut received) = recording_node("third");
    let policy = RetryPolicy::Fixed {
        delay: Duration::from_secs(1),
        max_attempts: 2,
    };
    let scheduler =
        Scheduler::start(node, store.clone(), config(&clock).retry_policy(policy)).unwrap();
    eventually("dropped", || {
        let store = store.clone();
        async move { store.is_empty() }
    })
    .await;
    nothing(&mut received).await;
    scheduler.shutdown().await;
}

/// The lease is taken `claim_ahead` before the due time, so at the due time the message goes
/// out without waiting for a store write; it still never goes out before its time.
#[tokio::test]
async fn an_alarm_is_claimed_ahead_of_its_time_and_dispatched_at_it() {
    init_tracing();
    let clock = ManualClock::new(t0());
    let (node, mut received) = recording_node("ahead");
    let store = TestStore::default();
    let scheduler = store
        .start_loaded(node, config(&clock).claim_ahead(Duration::from_secs(1)))
        .await;
    let due = t0() + Duration::from_secs(10);
    scheduler
        .schedule(Message::new("record").with_id("m"), "a", When::At(due))
        .await
        .unwrap();
    clock.set(due - Duration::from_millis(500));
    eventually("claimed ahead", || async { store.granted().len() == 1 }).await;
    let granted = &store.granted()[0];
    assert!(granted.now < due, "claimed at {:?}", granted.now);
    assert!(
        granted.lease_until >= due + switchyard_messaging::DEFAULT_TIMEOUT,
        "the lease covers the wait and the dispatch: {:?}",
        granted.lease_until
    );
    nothing(&mut received).await;
    clock.set(due);
    let got = next(&mut received).await;
    assert_eq!(assigns::dispatch_at(&got.message), Some(due));
    assert_eq!(assigns::dispatch_attempts(&got.message), 1);
    assert!(!assigns::is_late(&got.message));
    assert_eq!(store.granted().len(), 1, "no second claim at the due time");
    scheduler.shutdown().await;
}

/// A burst of due alarms starts at most `max_concurrent_deliveries` at once; the rest start as
/// deliveries end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_due_alarms_runs_at_most_the_limit_at_once() {
    init_tracing();
    const LIMIT: usize = 4;
    const BURST: usize = 20;
    let clock = ManualClock::new(t0());
    let Gated {
        node,
        mut started,
        release,
    } = gated("burst");
    let store = MemoryAlarmStore::new();
    let scheduler = Scheduler::start(
        node,
        store.clone(),
        config(&clock).max_concurrent_deliveries(LIMIT),
    )
    .unwrap();
    for n in 0..BURST {
        scheduler
            .schedule(
                Message::new("gated").with_id(format!("burst-{n:02}")),
                "a",
                When::At(t0()),
            )
            .await
            .unwrap();
    }
    let mut running = 0;
    let mut done = 0;
    while done < BURST {
        // Whatever can start does; then nothing more until a delivery ends.
        while running < LIMIT.min(BURST - done) {
            tokio::time::timeout(Duration::from_secs(10), started.recv())
                .await
                .expect("a free slot starts the next delivery")
                .unwrap();
            running += 1;
        }
        assert!(
            tokio::time::timeout(Duration::from_millis(100), started.recv())
                .await
                .is_err(),
            "more than {LIMIT} deliveries at once"
        );
        release.add_permits(1);
        running -= 1;
        done += 1;
    }
    eventually("all delivered", || {
        let store = store.clone();
        async move { store.is_empty() }
    })
    .await;
    scheduler.shutdown().await;
}

/// A scheduler with a claim-ahead of a second, and the store recording its claims.
async fn claiming_ahead(
    name: &str,
) -> (
    ManualClock,
    Scheduler,
    TestStore,
    tokio::sync::mpsc::UnboundedReceiver<crate::support::Received>,
) {
    init_tracing();
    let clock = ManualClock::new(t0());
    let (node, received) = recording_node(name);
    let store = TestStore::default();
    let scheduler = store
        .start_loaded(node, config(&clock).claim_ahead(Duration::from_secs(1)))
        .await;
    (clock, scheduler, store, received)
}

/// Cancelled while claimed ahead, waiting for its due time: not dispatched.
#[tokio::test]
async fn an_alarm_cancelled_while_claimed_ahead_is_not_dispatched() {
    let (clock, scheduler, store, mut received) = claiming_ahead("cancel-ahead").await;
    let due = t0() + Duration::from_secs(10);
    scheduler
        .schedule(Message::new("record").with_id("m"), "a", When::At(due))
        .await
        .unwrap();
    clock.set(due - Duration::from_millis(500));
    eventually("claimed ahead", || async { store.granted().len() == 1 }).await;
    assert!(scheduler.cancel("m").await.unwrap());
    clock.set(due);
    nothing(&mut received).await;
    eventually("forgotten", || async { scheduler.held().await == 0 }).await;
    scheduler.shutdown().await;
}

/// Cancelled while claimed ahead and scheduled again under the same id, later: the old alarm
/// is not dispatched, and the new one is delivered once, at its own time.
#[tokio::test]
async fn an_alarm_cancelled_and_scheduled_again_while_claimed_ahead_delivers_only_the_new() {
    let (clock, scheduler, store, mut received) = claiming_ahead("again-ahead").await;
    let message = |request: &str| Message::new("record").with_id("m").with_request(request);
    let due = t0() + Duration::from_secs(10);
    scheduler
        .schedule(message("old"), "a", When::At(due))
        .await
        .unwrap();
    clock.set(due - Duration::from_millis(500));
    eventually("claimed ahead", || async { store.granted().len() == 1 }).await;
    assert!(scheduler.cancel("m").await.unwrap());
    let later = t0() + Duration::from_secs(20);
    scheduler
        .schedule(message("new"), "a", When::At(later))
        .await
        .unwrap();
    clock.set(due);
    nothing(&mut received).await;
    clock.set(later);
    let got = next(&mut received).await;
    assert_eq!(got.message.request::<String>().unwrap(), "new");
    assert_eq!(assigns::dispatch_attempts(&got.message), 1);
    eventually("done", || async { store.inner.is_empty() }).await;
    nothing(&mut received).await;
    scheduler.shutdown().await;
}

/// Scheduled again under the same id while claimed ahead, due beyond the loaded window (where
/// a new alarm alone is not armed): the old alarm is not dispatched, and the new one stays in
/// the store for the window to reach.
#[tokio::test]
async fn an_alarm_scheduled_again_beyond_the_window_while_claimed_ahead_is_not_dispatched() {
    let (clock, scheduler, store, mut received) = claiming_ahead("again-beyond").await;
    let message = |request: &str| Message::new("record").with_id("m").with_request(request);
    let due = t0() + Duration::from_secs(10);
    scheduler
        .schedule(message("old"), "a", When::At(due))
        .await
        .unwrap();
    clock.set(due - Duration::from_millis(500));
    eventually("claimed ahead", || async { store.granted().len() == 1 }).await;
    let beyond = t0() + Duration::from_secs(30 * 24 * 3_600);
    scheduler
        .schedule(message("new"), "a", When::At(beyond))
        .await
        .unwrap();
    clock.set(due);
    nothing(&mut received).await;
    eventually("forgotten", || async { scheduler.held().await == 0 }).await;
    assert_eq!(store.inner.len(), 1, "the new alarm stays in the store");
    scheduler.shutdown().await;
}

/// Cancelled during its dispatch and scheduled again under the same id, due at once: the new
/// alarm waits for the old delivery to end (never two deliveries of one id at once), whose
/// final delete does not touch it, and is then delivered.
#[tokio::test]
async fn an_alarm_cancelled_and_scheduled_again_due_at_once_waits_for_the_old_delivery() {
    let HeldDelivery {
        clock: _,
        store,
        scheduler,
        mut started,
        release,
    } = first_delivery_held("again-at-once").await;
    assert!(scheduler.cancel("same").await.unwrap());
    scheduler
        .schedule(same(), "a", When::In(Duration::ZERO))
        .await
        .unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(200), started.recv())
            .await
            .is_err(),
        "a second delivery of the same id started while the first runs"
    );
    release.add_permits(1);
    let second = tokio::time::timeout(Duration::from_secs(5), started.recv())
        .await
        .expect("the new alarm is delivered after the old delivery")
        .unwrap();
    assert_eq!(second, Some(t0()));
    release.add_permits(1);
    eventually("done", || async { store.inner.is_empty() }).await;
    scheduler.shutdown().await;
}

/// The lease must cover a whole delivery: a claim answering as late as the store timeout, the
/// claim-ahead wait and the dispatch. Otherwise the configuration is refused; this also bounds
/// the claim-ahead.
#[tokio::test]
async fn a_lease_not_covering_a_whole_delivery_is_refused() {
    // Defaults: store timeout 10 s, claim-ahead 250 ms, dispatch timeout 5 s.
    for config in [
        SchedulerConfig::default().lease(Duration::from_secs(15)),
        SchedulerConfig::default().claim_ahead(Duration::from_secs(30)),
        SchedulerConfig::default().store_timeout(Duration::from_secs(26)),
        SchedulerConfig::default().dispatch_timeout(Duration::from_secs(20)),
    ] {
        let (node, _received) = recording_node("too-short");
        let error = Scheduler::start(node, MemoryAlarmStore::new(), config).unwrap_err();
        assert!(
            matches!(error, ConfigError::LeaseTooShort { .. }),
            "{error}"
        );
    }
    let (node, _received) = recording_node("just-enough");
    let scheduler = Scheduler::start(
        node,
        MemoryAlarmStore::new(),
        SchedulerConfig::default().lease(Duration::from_millis(15_300)),
    )
    .unwrap();
    scheduler.shutdown().await;
}

/// Stores keep due times to the microsecond: an alarm due a fraction of a microsecond after a
/// whole one is still not dispatched before its exact time (its `dispatch_at`).
#[tokio::test]
async fn an_alarm_is_not_dispatched_before_its_time_below_the_microsecond() {
    init_tracing();
    let clock = ManualClock::new(t0());
    let (node, mut received) = recording_node("sub-micro");
    let store = crate::support::StallingStore {
        micros_only: true,
        ..Default::default()
    };
    let scheduler = Scheduler::start(node, store.clone(), config(&clock)).unwrap();
    let whole = t0() + Duration::from_secs(10);
    let due = whole + Duration::from_nanos(500);
    scheduler
        .schedule(Message::new("record"), "a", When::At(due))
        .await
        .unwrap();
    let stored = store
        .inner
        .load(None, due + Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(stored[0].due, whole, "the store dropped the nanoseconds");
    clock.set(whole);
    nothing(&mut received).await;
    clock.set(due);
    let got = next(&mut received).await;
    assert_eq!(assigns::dispatch_at(&got.message), Some(due));
    scheduler.shutdown().await;
}
