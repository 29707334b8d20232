//! The memory store against the public conformance suite, and property tests of its semantics
//! against a model.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Tests fail loudly.

use std::collections::HashMap;

use proptest::prelude::*;
use switchyard_aggregates::store::{
    AppendError, EventAppender, EventMetadata, EventReader, ExpectedVersion, MemoryStore, NewEvent,
};

switchyard_aggregates::event_store_conformance!(async { MemoryStore::new() });

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
