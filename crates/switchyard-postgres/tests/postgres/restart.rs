//! The server restarts under appends: callers get errors, not hangs; service resumes; every
//! acknowledged append is there afterwards, once. This test starts a server of its own, so it
//! can stop it, whatever `SWITCHYARD_TEST_DATABASE_URL` says.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use switchyard_aggregates::store::{AppendError, EventAppender, EventReader, ExpectedVersion};
use switchyard_postgres::{PostgresOptions, PostgresStore};

use crate::support::{event, meta, throwaway};

const WRITERS: usize = 8;
const BEFORE: u8 = 0;
const AFTER: u8 = 2;

struct Written {
    /// Each acknowledged append: its version and message id.
    acknowledged: Vec<(i64, String)>,
    errors: usize,
    slowest: Duration,
}

/// Appends to its own stream until stopped, each append with its own message id, tried again
/// after an error until it is known to have happened.
async fn writer(
    store: PostgresStore,
    w: usize,
    phase: Arc<AtomicU8>,
    after_restart: Arc<Vec<AtomicUsize>>,
    stop: Arc<AtomicBool>,
) -> Written {
    let stream = format!("w-{w}");
    let mut written = Written {
        acknowledged: Vec::new(),
        errors: 0,
        slowest: Duration::ZERO,
    };
    let mut expected = ExpectedVersion::NoStream;
    let mut n = 0;
    'appends: while !stop.load(Ordering::Acquire) {
        let message = format!("w{w}-{n}");
        loop {
            let started = Instant::now();
            let result = store
                .append(&stream, expected, vec![event(&message)], meta(&message))
                .await;
            written.slowest = written.slowest.max(started.elapsed());
            let version = match result {
                Ok(version) => version,
                Err(AppendError::Conflict { actual, .. }) => {
                    // Only this writer writes this stream: an earlier try of this append
                    // landed after all.
                    match store.find_message(&stream, &message).await {
                        Ok(Some(version)) if Some(version) == actual => version,
                        other => {
                            panic!("conflict on {stream} at {actual:?}, {message} found: {other:?}")
                        }
                    }
                }
                Err(_) => {
                    written.errors += 1;
                    if stop.load(Ordering::Acquire) {
                        break 'appends;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            };
            written.acknowledged.push((version, message.clone()));
            expected = ExpectedVersion::Exactly(version);
            if phase.load(Ordering::Acquire) == AFTER {
                after_restart[w].fetch_add(1, Ordering::AcqRel);
            }
            break;
        }
        n += 1;
    }
    written
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_fail_while_the_server_is_down_and_every_acknowledged_one_survives() {
    let server = Arc::new(tokio::task::spawn_blocking(throwaway).await.unwrap());
    let options = PostgresOptions::default()
        .schema("restart")
        .pool_size(WRITERS)
        .retries(2, Duration::from_millis(10), Duration::from_millis(50));
    let store = PostgresStore::connect_with(&server.url(), options)
        .await
        .unwrap();
    let phase = Arc::new(AtomicU8::new(BEFORE));
    let after_restart: Arc<Vec<AtomicUsize>> =
        Arc::new((0..WRITERS).map(|_| AtomicUsize::new(0)).collect());
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            tokio::spawn(writer(
                store.clone(),
                w,
                phase.clone(),
                after_restart.clone(),
                stop.clone(),
            ))
        })
        .collect();

    tokio::time::sleep(Duration::from_millis(300)).await;
    let stopping = server.clone();
    tokio::task::spawn_blocking(move || stopping.stop())
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let resuming = server.clone();
    tokio::task::spawn_blocking(move || resuming.resume())
        .await
        .unwrap()
        .unwrap();
    phase.store(AFTER, Ordering::Release);
    let deadline = Instant::now() + Duration::from_secs(30);
    while after_restart.iter().any(|n| n.load(Ordering::Acquire) < 3) {
        assert!(
            Instant::now() < deadline,
            "service did not resume after the restart"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Release);

    let mut errors = 0;
    for (w, handle) in writers.into_iter().enumerate() {
        let written = handle.await.unwrap();
        errors += written.errors;
        assert!(
            written.slowest < Duration::from_secs(15),
            "writer {w} waited {:?} for one append",
            written.slowest
        );
        let stream = format!("w-{w}");
        let mut pages = store.read_stream(&stream, 0, 1_000);
        let mut events = Vec::new();
        while let Some(page) = pages.next().await {
            events.extend(page.unwrap());
        }
        for (index, recorded) in events.iter().enumerate() {
            assert_eq!(
                recorded.version, index as i64,
                "writer {w}: versions are contiguous"
            );
        }
        let mut by_message: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
        for recorded in &events {
            by_message
                .entry(&recorded.metadata.message_id)
                .or_default()
                .push(recorded.version);
        }
        assert!(
            by_message.values().all(|versions| versions.len() == 1),
            "writer {w}: an append was recorded twice"
        );
        for (version, message) in &written.acknowledged {
            assert_eq!(
                by_message.get(message.as_str()),
                Some(&vec![*version]),
                "writer {w}: acknowledged {message} at {version} is not there"
            );
        }
        // At most the append in flight when the writer stopped landed unacknowledged.
        assert!(events.len() <= written.acknowledged.len() + 1);
    }
    assert!(errors > 0, "no caller noticed the server was down");
    store.close();
    tokio::task::spawn_blocking(move || drop(server))
        .await
        .unwrap();
}
