//! Fifty concurrent writers, on fifty streams and on one: nothing lost, nothing doubled, and a
//! reader following `read_all` meanwhile misses nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt;
use switchyard_aggregates::store::{
    AppendError, EventAppender, EventReader, ExpectedVersion, GlobalReader, RecordedEvent,
};
use switchyard_postgres::{PostgresOptions, PostgresStore};

use crate::support::{event, meta, store_with};

const WRITERS: usize = 50;

async fn read(store: &PostgresStore, stream: &str) -> Vec<RecordedEvent> {
    let mut pages = store.read_stream(stream, 0, 100);
    let mut all = Vec::new();
    while let Some(page) = pages.next().await {
        all.extend(page.unwrap());
    }
    all
}

/// Follows `read_all` from where it left off until told to stop and caught up, checking that
/// positions only grow, and returns what it saw.
fn follow(
    store: PostgresStore,
    done: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Vec<RecordedEvent>> {
    tokio::spawn(async move {
        let mut seen: Vec<RecordedEvent> = Vec::new();
        loop {
            let finished = done.load(Ordering::Acquire);
            let from = seen.last().map_or(0, |e| e.position + 1);
            let batch = store.read_all(from, 500).await.unwrap();
            if let (Some(last), Some(first)) = (seen.last(), batch.first()) {
                assert!(first.position > last.position, "read_all went back");
            }
            assert!(batch.windows(2).all(|w| w[0].position < w[1].position));
            let empty = batch.is_empty();
            seen.extend(batch);
            if finished && empty {
                return seen;
            }
            if empty {
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            }
        }
    })
}

/// Every event of `all` exactly once in the follower's view, in the same order.
fn assert_followed_everything(followed: &[RecordedEvent], all: &[RecordedEvent]) {
    let key = |e: &RecordedEvent| (e.position, e.stream.to_string(), e.version);
    let followed: Vec<_> = followed.iter().map(key).collect();
    let all: Vec<_> = all.iter().map(key).collect();
    assert_eq!(
        followed.len(),
        all.len(),
        "the follower missed or doubled events"
    );
    assert_eq!(followed, all, "the follower saw another order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_writers_on_fifty_streams_lose_and_double_nothing() {
    const APPENDS: usize = 12;
    let store = store_with(PostgresOptions::default().pool_size(WRITERS)).await;
    let done = Arc::new(AtomicBool::new(false));
    let follower = follow(store.clone(), done.clone());
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                let stream = format!("s-{w}");
                let mut expected = ExpectedVersion::NoStream;
                for i in 0..APPENDS {
                    // Batches of 1, 2 and 3 events.
                    let events = (0..=i % 3)
                        .map(|k| event(&format!("{w}-{i}-{k}")))
                        .collect();
                    let version = store
                        .append(&stream, expected, events, meta(&format!("{w}-{i}")))
                        .await
                        .unwrap();
                    expected = ExpectedVersion::Exactly(version);
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    done.store(true, Ordering::Release);
    let followed = follower.await.unwrap();

    let per_stream: usize = (0..APPENDS).map(|i| i % 3 + 1).sum();
    for w in 0..WRITERS {
        let events = read(&store, &format!("s-{w}")).await;
        assert_eq!(events.len(), per_stream, "stream s-{w}");
        for (index, recorded) in events.iter().enumerate() {
            assert_eq!(recorded.version, index as i64, "versions are contiguous");
        }
        let tags: BTreeSet<_> = events.iter().map(|e| e.data.clone()).collect();
        assert_eq!(tags.len(), per_stream, "no event recorded twice");
    }
    let all = store.read_all(0, 100_000).await.unwrap();
    assert_eq!(all.len(), WRITERS * per_stream);
    assert!(all.windows(2).all(|w| w[0].position < w[1].position));
    assert_followed_everything(&followed, &all);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_writers_on_one_stream_each_win_their_versions_once() {
    const APPENDS: usize = 4;
    let store = store_with(PostgresOptions::default().pool_size(WRITERS)).await;
    let done = Arc::new(AtomicBool::new(false));
    let follower = follow(store.clone(), done.clone());
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut expected = ExpectedVersion::NoStream;
                let mut conflicts = 0_usize;
                for i in 0..APPENDS {
                    let tag = format!("{w}-{i}");
                    loop {
                        match store
                            .append("one", expected, vec![event(&tag)], meta(&tag))
                            .await
                        {
                            Ok(version) => {
                                expected = ExpectedVersion::Exactly(version);
                                break;
                            }
                            Err(AppendError::Conflict { actual, .. }) => {
                                conflicts += 1;
                                expected = actual
                                    .map_or(ExpectedVersion::NoStream, ExpectedVersion::Exactly);
                            }
                            Err(other) => panic!("append failed: {other:?}"),
                        }
                    }
                }
                conflicts
            })
        })
        .collect();
    let mut conflicts = 0;
    for writer in writers {
        conflicts += writer.await.unwrap();
    }
    done.store(true, Ordering::Release);
    let followed = follower.await.unwrap();
    assert!(conflicts > 0, "fifty writers on one stream never raced");

    let events = read(&store, "one").await;
    assert_eq!(events.len(), WRITERS * APPENDS);
    for (index, recorded) in events.iter().enumerate() {
        assert_eq!(recorded.version, index as i64, "versions are contiguous");
    }
    let mut by_tag: BTreeMap<String, usize> = BTreeMap::new();
    for recorded in &events {
        *by_tag
            .entry(recorded.metadata.message_id.clone())
            .or_default() += 1;
    }
    assert_eq!(by_tag.len(), WRITERS * APPENDS, "every append is there");
    assert!(by_tag.values().all(|n| *n == 1), "no append recorded twice");
    let all = store.read_all(0, 100_000).await.unwrap();
    assert_eq!(all.len(), WRITERS * APPENDS);
    assert!(all.windows(2).all(|w| w[0].position < w[1].position));
    assert_followed_everything(&followed, &all);
}
