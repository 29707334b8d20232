//! Alarm ids follow the one name rule every store accepts: `schedule`, `cancel` and
//! `cancel_for` refuse a bad message or aggregate id before any store call, with the rule's text.

use std::time::Duration;

use switchyard_messaging::Message;
use switchyard_messaging::names::{MAX_ID_BYTES, NameError, NameKind};
use switchyard_scheduler::store::MemoryAlarmStore;
use switchyard_scheduler::{ScheduleError, Scheduler, SchedulerConfig, When};

use crate::support::{init_tracing, recording_node};

const LATER: When = When::In(Duration::from_secs(3_600));

/// The name error inside `error`, or a failure naming what came instead.
fn name_error(error: ScheduleError) -> NameError {
    match error {
        ScheduleError::InvalidName(error) => error,
        other => panic!("expected an invalid name, got {other:?}"),
    }
}

#[tokio::test]
async fn bad_alarm_ids_are_refused_with_the_rule_and_nothing_is_saved() {
    init_tracing();
    let (node, _received) = recording_node("names");
    let store = MemoryAlarmStore::new();
    let scheduler = Scheduler::start(node, store.clone(), SchedulerConfig::default()).unwrap();

    let nul_id = Message::new("record").with_id("alarm\0");
    let error = name_error(
        scheduler
            .schedule(nul_id, "acc-1", LATER)
            .await
            .unwrap_err(),
    );
    assert_eq!(
        error.to_string(),
        "message id contains the control character '\\0' at byte 5: a message id is 0 to 256 \
         bytes of UTF-8 without control characters"
    );

    let huge_aggregate = "a".repeat(1 << 20);
    let error = name_error(
        scheduler
            .schedule(Message::new("record"), huge_aggregate.clone(), LATER)
            .await
            .unwrap_err(),
    );
    assert_eq!(
        error,
        NameError::TooLong {
            kind: NameKind::AggregateId,
            len: 1 << 20,
        }
    );
    assert_eq!(
        error.to_string(),
        "aggregate id is 1048576 bytes long, over the limit of 256: an aggregate id is 1 to 256 \
         bytes of UTF-8 without control characters"
    );
    assert!(store.is_empty(), "a refused alarm reached the store");

    let error = name_error(scheduler.cancel("alarm\0").await.unwrap_err());
    assert!(matches!(
        error,
        NameError::ControlCharacter {
            kind: NameKind::MessageId,
            ..
        }
    ));
    let error = name_error(scheduler.cancel_for(&huge_aggregate).await.unwrap_err());
    assert!(matches!(
        error,
        NameError::TooLong {
            kind: NameKind::AggregateId,
            ..
        }
    ));

    // The longest ids the rule allows are scheduled, so the refusals above are the rule's.
    let longest = "é".repeat(MAX_ID_BYTES / 2);
    let message = Message::new("record").with_id(longest.clone());
    scheduler
        .schedule(message, longest.clone(), LATER)
        .await
        .unwrap();
    assert_eq!(store.len(), 1);
    assert_eq!(scheduler.cancel_for(&longest).await.unwrap(), vec![longest]);
    scheduler.shutdown().await;
}
