//! The PostgreSQL store answers as the memory store does: random sequences of operations run
//! on both, every answer compared, then every stream and the global order.

use futures::StreamExt;
use switchyard_aggregates::store::{
    AppendError, DeleteMode, EventStore, ExpectedVersion, MemoryStore, RecordedEvent,
    SnapshotStore, StoredState,
};

use crate::support::{event, meta, store};

const STREAMS: [&str; 3] = ["a", "b", "c"];

/// One answer, in a form both stores give alike (positions and times differ by design).
#[derive(Debug, PartialEq)]
enum Answer {
    Version(i64),
    Done,
    Conflict(Option<i64>),
    Failed(String),
    Found(Option<i64>),
    Exists(bool),
    Events(Vec<(String, i64, String, Vec<u8>, String)>),
    Snapshot(Option<StoredState>),
}

fn events(events: &[RecordedEvent]) -> Answer {
    Answer::Events(
        events
            .iter()
            .map(|e| {
                (
                    e.stream.to_string(),
                    e.version,
                    e.event_type.to_string(),
                    e.data.to_vec(),
                    e.metadata.message_id.clone(),
                )
            })
            .collect(),
    )
}

fn appended(result: Result<i64, AppendError>) -> Answer {
    match result {
        Ok(version) => Answer::Version(version),
        Err(AppendError::Conflict { actual, .. }) => Answer::Conflict(actual),
        Err(other) => Answer::Failed(other.to_string()),
    }
}

fn deleted(result: Result<(), AppendError>) -> Answer {
    appended(result.map(|()| 0)).done()
}

impl Answer {
    fn done(self) -> Self {
        match self {
            Self::Version(_) => Self::Done,
            other => other,
        }
    }
}

async fn read<S: EventStore + ?Sized>(store: &S, stream: &str, from: i64, page: usize) -> Answer {
    let mut pages = store.read_stream(stream, from, page);
    let mut all = Vec::new();
    while let Some(page) = pages.next().await {
        all.extend(page.unwrap());
    }
    events(&all)
}

fn expected(rng: &mut fastrand::Rng) -> ExpectedVersion {
    match rng.u8(0..4) {
        0 => ExpectedVersion::Any,
        1 => ExpectedVersion::NoStream,
        _ => ExpectedVersion::Exactly(rng.i64(-1..6)),
    }
}

/// One random operation on `store`.
async fn step<S: EventStore + SnapshotStore + ?Sized>(
    store: &S,
    rng: &mut fastrand::Rng,
    n: usize,
) -> Answer {
    let stream = STREAMS[rng.usize(..STREAMS.len())];
    match rng.u8(0..20) {
        0..=8 => {
            let count = rng.usize(0..4);
            let batch = (0..count).map(|k| event(&format!("{n}-{k}"))).collect();
            appended(
                store
                    .append(stream, expected(rng), batch, meta(&format!("m-{n}")))
                    .await,
            )
        }
        9 => deleted(
            store
                .delete_stream(stream, DeleteMode::Soft, expected(rng))
                .await,
        ),
        10 => deleted(
            store
                .delete_stream(stream, DeleteMode::Hard, expected(rng))
                .await,
        ),
        11 => {
            let message = format!("m-{}", rng.usize(0..=n));
            Answer::Found(store.find_message(stream, &message).await.unwrap())
        }
        12 => Answer::Exists(store.has_stream(stream).await.unwrap()),
        13..=15 => read(store, stream, rng.i64(0..6), rng.usize(1..4)).await,
        16 => {
            let snapshot = StoredState {
                version: rng.i64(0..10),
                schema_version: 1,
                data: vec![rng.u8(..)].into(),
            };
            store.save_snapshot(stream, snapshot).await.unwrap();
            Answer::Done
        }
        17 => Answer::Snapshot(store.load_snapshot(stream).await.unwrap()),
        _ => events(&store.read_all(0, 10_000).await.unwrap()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_operations_answer_as_the_memory_store_does() {
    for seed in [1_u64, 2, 3, 4] {
        let postgres = store().await;
        let memory = MemoryStore::new();
        // The same random choices for both stores.
        let (mut on_postgres, mut on_memory) = (
            fastrand::Rng::with_seed(seed),
            fastrand::Rng::with_seed(seed),
        );
        for n in 0..80 {
            let got = step(&postgres, &mut on_postgres, n).await;
            let want = step(&memory, &mut on_memory, n).await;
            assert_eq!(got, want, "seed {seed}, operation {n}");
        }
        for stream in STREAMS {
            assert_eq!(
                read(&postgres, stream, 0, 1000).await,
                read(&memory, stream, 0, 1000).await,
                "seed {seed}, stream {stream}"
            );
        }
    }
}
