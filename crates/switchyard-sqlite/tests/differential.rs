//! The SQLite store behaves exactly as the memory store under any sequence of appends and
//! deletes: same verdicts (duplicates of a message included), same versions, same streams, same global order.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Tests fail loudly.

use futures::StreamExt;
use proptest::prelude::*;
use switchyard_aggregates::store::{
    AppendError, DeleteMode, EventMetadata, EventStore, ExpectedVersion, MemoryStore, NewEvent,
};
use switchyard_sqlite::SqliteStore;

#[derive(Clone, Debug)]
enum Op {
    Append {
        stream: u8,
        expected: ExpectedVersion,
        count: u8,
        message: u8,
    },
    Delete {
        stream: u8,
        mode: DeleteMode,
        expected: ExpectedVersion,
    },
}

fn expected() -> impl Strategy<Value = ExpectedVersion> {
    prop_oneof![
        Just(ExpectedVersion::Any),
        Just(ExpectedVersion::NoStream),
        (-1..5_i64).prop_map(ExpectedVersion::Exactly),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..3_u8, expected(), 0..4_u8, 0..4_u8).prop_map(|(stream, expected, count, message)| {
            Op::Append { stream, expected, count, message }
        }),
        1 => (0..3_u8, prop_oneof![Just(DeleteMode::Soft), Just(DeleteMode::Hard)], expected())
            .prop_map(|(stream, mode, expected)| Op::Delete { stream, mode, expected }),
    ]
}

/// What a verdict looks like, the same for both stores.
fn verdict<T: std::fmt::Debug>(result: Result<T, AppendError>) -> String {
    match result {
        Ok(value) => format!("ok {value:?}"),
        Err(AppendError::Conflict { actual, .. }) => format!("conflict at {actual:?}"),
        Err(AppendError::Duplicate {
            message_id,
            version,
            ..
        }) => format!("duplicate of {message_id} at {version}"),
        Err(other) => panic!("unexpected failure: {other}"),
    }
}

async fn apply(store: &dyn EventStore, op: &Op, serial: usize) -> String {
    match *op {
        Op::Append {
            stream,
            expected,
            count,
            message,
        } => {
            let events = (0..count)
                .map(|i| NewEvent {
                    event_type: format!("t{i}").into(),
                    schema_version: 1,
                    data: format!("{serial}-{i}").into_bytes().into(),
                })
                .collect();
            let metadata = EventMetadata {
                message_id: format!("m{message}"),
                ..EventMetadata::default()
            };
            verdict(
                store
                    .append(&format!("s{stream}"), expected, events, metadata)
                    .await,
            )
        }
        Op::Delete {
            stream,
            mode,
            expected,
        } => verdict(
            store
                .delete_stream(&format!("s{stream}"), mode, expected)
                .await,
        ),
    }
}

/// Everything a reader can see, positions aside (the stores number them alike but gaps differ
/// after hard deletes only in value, never in order).
async fn visible(store: &dyn EventStore) -> Vec<String> {
    let mut seen = Vec::new();
    for stream in 0..3 {
        let name = format!("s{stream}");
        seen.push(format!(
            "{name} exists {}",
            store.has_stream(&name).await.unwrap()
        ));
        let mut pages = store.read_stream(&name, 0, 2);
        while let Some(page) = pages.next().await {
            for event in page.unwrap() {
                seen.push(format!(
                    "{name} v{} {} {}",
                    event.version,
                    event.event_type,
                    String::from_utf8_lossy(&event.data)
                ));
            }
        }
        for message in 0..4 {
            let found = store
                .find_message(&name, &format!("m{message}"))
                .await
                .unwrap();
            seen.push(format!("{name} m{message} at {found:?}"));
        }
    }
    let all = store.read_all(0, 10_000).await.unwrap();
    assert!(all.windows(2).all(|w| w[0].position < w[1].position));
    for event in all {
        seen.push(format!("all {} v{}", event.stream, event.version));
    }
    seen
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn sqlite_agrees_with_the_memory_store(ops in proptest::collection::vec(op(), 1..40)) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            let memory = MemoryStore::new();
            let sqlite = SqliteStore::in_memory().unwrap();
            for (serial, op) in ops.iter().enumerate() {
                let expected = apply(&memory, op, serial).await;
                let found = apply(&sqlite, op, serial).await;
                assert_eq!(found, expected, "verdict of {op:?}");
            }
            assert_eq!(visible(&sqlite).await, visible(&memory).await);
        });
    }
}
