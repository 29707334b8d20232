//! The memory store against the public conformance suite, and property tests of its semantics
//! against a model.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Tests fail loudly.

use std::collections::HashMap;

use proptest::prelude::*;
use switchyard_aggregates::store::{
    AppendError, DeleteMode, EventAppender, EventDeleter, EventMetadata, EventReader,
    ExpectedVersion, MemoryStore, NewEvent, SnapshotStore, StateStore, StoredState,
};

switchyard_aggregates::event_store_conformance!(async { MemoryStore::new() });

fn events(count: u8) -> Vec<NewEvent> {
    (0..count)
        .map(|i| NewEvent {
            event_type: "e".into(),
            schema_version: 1,
            data: vec![i].into(),
        })
        .collect()
}

#[tokio::test]
async fn a_head_watcher_subscribed_after_unwatched_appends_sees_their_head_and_wakes_on_the_next() {
    use switchyard_aggregates::store::GlobalReader;
    let store = MemoryStore::new();
    // Appends nobody watches publish their head without waking anyone.
    for _ in 0..3 {
        store
            .append(
                "s",
                ExpectedVersion::Any,
                events(2),
                EventMetadata::default(),
            )
            .await
            .unwrap();
    }
    let mut head = store.watch_head().unwrap();
    assert_eq!(*head.borrow_and_update(), 6);
    assert!(!head.has_changed().unwrap());
    store
        .append(
            "t",
            ExpectedVersion::Any,
            events(1),
            EventMetadata::default(),
        )
        .await
        .unwrap();
    assert!(
        head.has_changed().unwrap(),
        "a watched append wakes the watcher"
    );
    assert_eq!(*head.borrow_and_update(), 7);
    assert_eq!(store.head().await.unwrap(), 7);
}

#[tokio::test]
async fn a_write_whose_future_is_dropped_unpolled_does_nothing() {
    let store = MemoryStore::new();
    let state = StoredState {
        version: 0,
        schema_version: 1,
        data: vec![1].into(),
    };
    drop(store.append(
        "s",
        ExpectedVersion::Any,
        events(1),
        EventMetadata::default(),
    ));
    drop(store.save_snapshot("s", state.clone()));
    drop(store.save_state("s", state.clone(), ExpectedVersion::Any));
    assert!(!store.has_stream("s").await.unwrap());
    assert_eq!(store.load_snapshot("s").await.unwrap(), None);
    assert_eq!(store.load_state("s").await.unwrap(), None);

    store
        .append(
            "s",
            ExpectedVersion::Any,
            events(1),
            EventMetadata::default(),
        )
        .await
        .unwrap();
    store
        .save_state("s", state, ExpectedVersion::Any)
        .await
        .unwrap();
    drop(store.delete_stream("s", DeleteMode::Hard, ExpectedVersion::Any));
    drop(store.delete_state("s", ExpectedVersion::Any));
    assert!(store.has_stream("s").await.unwrap());
    assert!(store.load_state("s").await.unwrap().is_some());
}

#[tokio::test]
async fn pages_are_read_when_asked_for() {
    let store = MemoryStore::new();
    store
        .append(
            "p",
            ExpectedVersion::NoStream,
            events(3),
            EventMetadata::default(),
        )
        .await
        .unwrap();
    let mut pages = store.read_stream("p", 0, 2);
    let first = futures::StreamExt::next(&mut pages).await.unwrap().unwrap();
    assert_eq!(first.iter().map(|e| e.version).collect::<Vec<_>>(), [0, 1]);
    // Appended while the reader is between pages: the next pages go on from where it is.
    store
        .append(
            "p",
            ExpectedVersion::Exactly(2),
            events(2),
            EventMetadata::default(),
        )
        .await
        .unwrap();
    let mut rest = Vec::new();
    while let Some(page) = futures::StreamExt::next(&mut pages).await {
        let page = page.unwrap();
        assert!(page.len() <= 2);
        rest.extend(page.into_iter().map(|e| e.version));
    }
    assert_eq!(rest, [2, 3, 4]);
}

#[derive(Clone, Debug)]
enum Op {
    Append {
        stream: u8,
        expected: ExpectedVersion,
        count: u8,
    },
}

fn op() -> impl Strategy<Value = Op> {
    (
        0..3_u8,
        prop_oneof![
            Just(ExpectedVersion::Any),
            Just(ExpectedVersion::NoStream),
            (-1..6_i64).prop_map(ExpectedVersion::Exactly),
        ],
        0..4_u8,
    )
        .prop_map(|(stream, expected, count)| Op::Append {
            stream,
            expected,
            count,
        })
}

proptest! {
    /// Any sequence of appends gives the outcomes of a simple model: accepted exactly when the
    /// expected version matches, versions contiguous from 0.
    #[test]
    fn appends_follow_the_model(ops in proptest::collection::vec(op(), 1..40)) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            let store = MemoryStore::new();
            let mut model: HashMap<u8, i64> = HashMap::new();
            for op in ops {
                let Op::Append { stream, expected, count } = op;
                let name = format!("p-{stream}");
                let current = model.get(&stream).copied();
                let accepted = match expected {
                    ExpectedVersion::Any => true,
                    ExpectedVersion::NoStream | ExpectedVersion::Exactly(-1) => current.is_none(),
                    ExpectedVersion::Exactly(v) => current == Some(v),
                };
                let events: Vec<NewEvent> = (0..count)
                    .map(|i| NewEvent { event_type: "e".into(), schema_version: 1, data: vec![i].into() })
                    .collect();
                let result = store.append(&name, expected, events, EventMetadata::default()).await;
                if accepted {
                    let after = current.unwrap_or(-1) + i64::from(count);
                    prop_assert_eq!(result.unwrap(), after);
                    if count > 0 {
                        model.insert(stream, after);
                    }
                } else {
                    let is_conflict = matches!(result, Err(AppendError::Conflict { .. }));
                    prop_assert!(is_conflict);
                }
            }
            for (stream, last) in model {
                let name = format!("p-{stream}");
                prop_assert!(store.has_stream(&name).await.unwrap());
                let mut pages = store.read_stream(&name, 0, 7);
                let mut versions = Vec::new();
                while let Some(page) = futures::StreamExt::next(&mut pages).await {
                    versions.extend(page.unwrap().into_iter().map(|e| e.version));
                }
                prop_assert_eq!(versions, (0..=last).collect::<Vec<_>>());
            }
            Ok(())
        })?;
    }
}
