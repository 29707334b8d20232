//! x3m's `scheduler_test.exs`: save, load the window, deliver, retry once, done.

use std::time::{Duration, SystemTime};

use switchyard_messaging::{Message, Response};
use switchyard_scheduler::{Decision, RetryPolicy, Scheduler, SchedulerConfig, When, assigns};
use tokio::sync::mpsc;

use crate::support::{TestStore, eventually, init_tracing, recording_node};

/// x3m's test scheduler answers a retry the first time and done once `redelivered` is set; the
/// hook reports every answered message.
fn x3m_policy(responded: mpsc::UnboundedSender<Message>) -> RetryPolicy {
    RetryPolicy::custom(move |reply: &Message| {
        let _ = responded.send(reply.clone());
        if reply.assigned::<bool>("redelivered").unwrap() == Some(true) {
            Decision::Done
        } else {
            Decision::RetryIn(
                Duration::from_millis(50),
                reply.clone().assign("redelivered", &true),
            )
        }
    })
}

async fn check(when: impl FnOnce(SystemTime) -> When) {
    init_tracing();
    let (node, _received) = recording_node("x3m");
    let store = TestStore::default();
    let (responded_tx, mut responded) = mpsc::unbounded_channel();
    let scheduler = Scheduler::start(
        node,
        store.clone(),
        SchedulerConfig::default()
            .window(Duration::from_secs(120))
            .retry_policy(x3m_policy(responded_tx)),
    )
    .unwrap();
    eventually("the first load", || async { !store.loads().is_empty() }).await;
    assert_eq!(
        store.loads()[0].0,
        None,
        "the first load starts from nothing"
    );

    let now = SystemTime::now();
    let when = when(now);
    let expected_at = match when {
        When::At(at) => at,
        When::In(delay) => now + delay,
    };
    let saved = scheduler
        .schedule(Message::new("wrong_service"), "aggregate_id", when)
        .await
        .unwrap();
    assert_eq!(assigns::dispatch_attempts(&saved), 0);
    assert_eq!(
        saved
            .assigned::<String>("injected_value")
            .unwrap()
            .as_deref(),
        Some("TestStore")
    );
    let dispatch_at = assigns::dispatch_at(&saved).unwrap();
    let stored = store.saves.lock().unwrap()[saved.id()].clone();
    assert_eq!(stored.aggregate_id, "aggregate_id");
    assert_eq!(stored.due, dispatch_at);
    if matches!(when, When::At(_)) {
        assert_eq!(dispatch_at, expected_at);
    } else {
        let off = dispatch_at
            .duration_since(expected_at)
            .unwrap_or_else(|e| e.duration());
        assert!(
            off < Duration::from_millis(20),
            "dispatch_at off by {off:?}"
        );
    }

    let first = tokio::time::timeout(Duration::from_secs(5), responded.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.id(), saved.id());
    assert_eq!(assigns::dispatch_attempts(&first), 1);
    assert_eq!(
        first
            .assigned::<String>("injected_value")
            .unwrap()
            .as_deref(),
        Some("TestStore")
    );
    assert_eq!(
        first.response(),
        Some(&Response::ServiceUnavailable("wrong_service".into()))
    );
    assert!(SystemTime::now() >= dispatch_at, "not delivered early");

    let second = tokio::time::timeout(Duration::from_millis(1_000), responded.recv())
        .await
        .expect("the retry came within a second")
        .unwrap();
    assert_eq!(second.assigned::<bool>("redelivered").unwrap(), Some(true));
    assert_eq!(assigns::dispatch_attempts(&second), 2);
    assert_eq!(
        second
            .assigned::<String>("injected_value")
            .unwrap()
            .as_deref(),
        Some("TestStore")
    );
    eventually("the alarm is deleted once done", || async {
        store.inner.is_empty()
    })
    .await;
    scheduler.shutdown().await;
}

#[tokio::test]
async fn x3m_dispatch_in_delivers_retries_once_and_finishes() {
    check(|_| When::In(Duration::from_millis(50))).await;
}

#[tokio::test]
async fn x3m_dispatch_at_delivers_retries_once_and_finishes() {
    check(|now| When::At(now + Duration::from_millis(50))).await;
}
