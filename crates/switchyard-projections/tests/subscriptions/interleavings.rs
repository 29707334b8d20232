//! Property: writers on several tasks append in random interleavings while a subscription
//! follows from a random start; it sees every event after its start exactly once, in strictly
//! increasing position, whatever the page size.

use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use switchyard_aggregates::store::{
    EventMetadata, EventStore, ExpectedVersion, MemoryStore, NewEvent,
};
use switchyard_projections::Subscription;

/// One writer's appends: for each, its stream (of three), its number of events, and how many
/// times the writer yields before it (which shuffles the writers' interleaving).
type Script = Vec<(u8, u8, u8)>;

fn scripts() -> impl Strategy<Value = Vec<Script>> {
    prop::collection::vec(
        prop::collection::vec((0..3_u8, 1..4_u8, 0..3_u8), 1..12),
        1..5,
    )
}

async fn run(scripts: Vec<Script>, page_size: usize, before: usize, start_at: usize) {
    let store: Arc<dyn EventStore> = Arc::new(MemoryStore::new());
    for tag in 0..before {
        store
            .append(
                "account-before",
                ExpectedVersion::Any,
                vec![event(tag)],
                EventMetadata::default(),
            )
            .await
            .unwrap();
    }
    let existing = store.read_all(0, usize::MAX).await.unwrap();
    let start = existing
        .get(start_at.min(existing.len()).wrapping_sub(1))
        .map_or(0, |e| e.position);
    let mut subscription = Subscription::builder(store.clone())
        .after(start)
        .page_size(page_size)
        .build()
        .await
        .unwrap();
    let writers: Vec<_> = scripts
        .into_iter()
        .enumerate()
        .map(|(writer, script)| {
            let store = store.clone();
            tokio::spawn(async move {
                for (stream, count, yields) in script {
                    for _ in 0..yields {
                        tokio::task::yield_now().await;
                    }
                    let events = (0..usize::from(count)).map(event).collect();
                    store
                        .append(
                            &format!("account-{writer}-{stream}"),
                            ExpectedVersion::Any,
                            events,
                            EventMetadata::default(),
                        )
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    // Follow while they write...
    let mut seen = Vec::new();
    let mut writers = futures::future::join_all(writers);
    loop {
        tokio::select! {
            done = &mut writers => {
                done.into_iter().for_each(|w| w.unwrap());
                break;
            }
            event = subscription.next() => seen.push(event.unwrap()),
        }
    }
    // ...then take the rest, now that everything is committed.
    let expected = store.read_all(start + 1, usize::MAX).await.unwrap();
    while seen.len() < expected.len() {
        let event = tokio::time::timeout(Duration::from_secs(30), subscription.next())
            .await
            .expect("the rest is handed out at once");
        seen.push(event.unwrap());
    }
    assert!(seen.windows(2).all(|w| w[0].position < w[1].position));
    assert_eq!(seen, expected);
}

fn event(tag: usize) -> NewEvent {
    NewEvent {
        event_type: "deposited".into(),
        schema_version: 1,
        data: tag.to_be_bytes().to_vec().into(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn every_event_once_in_order(
        scripts in scripts(),
        page_size in 1..8_usize,
        before in 0..10_usize,
        start_at in 0..12_usize,
    ) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(run(scripts, page_size, before, start_at));
    }
}
