//! The check every pair of event store and checkpoint store runs to show that a projection run
//! by a [`ProjectionRunner`] sees every event once, in global order, while writers append
//! concurrently: the property tests of the stores' crates drive it with random interleavings.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // A failed check fails loudly.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use switchyard_aggregates::store::{EventMetadata, EventStore, ExpectedVersion, NewEvent};
use switchyard_aggregates::{Aggregate, DecodedEvent};

use super::{BoxError, Projection, ProjectionRunner};
use crate::checkpoint::CheckpointStore;

/// The longest the check waits for the runner to catch up: generous for a loaded machine,
/// never reached when the stores keep their contracts.
const PATIENCE: Duration = Duration::from_secs(30);

/// The aggregate type the check's runner reads: streams `interleaved-…`, events `u64` tags.
#[derive(Debug, Default)]
pub struct Interleaved;

impl Aggregate for Interleaved {
    type Event = u64;
    const NAME: &'static str = "interleaved";
    fn apply(&mut self, _: &u64) {}
}

/// An event of [`Interleaved`] with `tag`, for the writers to append.
pub fn event(tag: u64) -> NewEvent {
    NewEvent {
        event_type: "tagged".into(),
        schema_version: 1,
        data: switchyard_messaging::codec::encode(&tag).unwrap().into(),
    }
}

/// One writer's appends, for [`writers`]: for each, its stream (of three; stream `2` belongs
/// to another aggregate type, which the runner passes over), its number of events, and how
/// many times the writer yields before it (which shuffles the writers' interleaving).
pub type Script = Vec<(u8, u8, u8)>;

/// A writer per script, appending to `store` as the script says.
pub fn writers(store: &Arc<dyn EventStore>, scripts: Vec<Script>) -> Vec<BoxFuture<'static, ()>> {
    scripts
        .into_iter()
        .enumerate()
        .map(|(writer, script)| {
            let store = store.clone();
            async move {
                for (stream, count, yields) in script {
                    for _ in 0..yields {
                        tokio::task::yield_now().await;
                    }
                    let stream = match stream {
                        2 => format!("other-{writer}"),
                        n => format!("{}-{writer}-{n}", Interleaved::NAME),
                    };
                    let events = (0..u64::from(count)).map(event).collect();
                    store
                        .append(
                            &stream,
                            ExpectedVersion::Any,
                            events,
                            EventMetadata::default(),
                        )
                        .await
                        .unwrap();
                }
            }
            .boxed()
        })
        .collect()
}

/// Records the position of every event it is handed.
struct Positions(Arc<Mutex<Vec<u64>>>);

impl Projection for Positions {
    type Event = u64;

    async fn apply(&mut self, batch: &[DecodedEvent<u64>]) -> Result<(), BoxError> {
        self.0
            .lock()
            .unwrap()
            .extend(batch.iter().map(|event| event.position));
        Ok(())
    }
}

/// Runs `writers` (futures appending events of [`Interleaved`] streams, and maybe others, to
/// `store`) concurrently with a runner of a projection reading [`Interleaved`] in batches of
/// `batch_size`, its checkpoint in `checkpoints`; once they are done and the runner caught
/// up, checks the projection was handed every [`Interleaved`] event of the store exactly once,
/// in global order.
///
/// # Panics
///
/// When the check fails, a writer panicked, or the runner did not catch up within 30 s.
pub async fn a_runner_sees_every_event_once_in_order(
    store: Arc<dyn EventStore>,
    checkpoints: impl CheckpointStore + 'static,
    batch_size: usize,
    writers: Vec<BoxFuture<'static, ()>>,
) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let runner = ProjectionRunner::builder(
        "interleavings",
        Positions(seen.clone()),
        store.clone(),
        checkpoints,
    )
    .aggregate::<Interleaved>()
    .batch_size(batch_size)
    .start()
    .unwrap();
    let writers: Vec<_> = writers.into_iter().map(tokio::spawn).collect();
    for writer in writers {
        writer.await.unwrap();
    }
    let prefix = format!("{}-", Interleaved::NAME);
    let expected: Vec<u64> = store
        .read_all(1, usize::MAX)
        .await
        .unwrap()
        .into_iter()
        .filter(|event| event.stream.starts_with(&prefix))
        .map(|event| event.position)
        .collect();
    let last = expected.last().copied().unwrap_or(0);
    runner
        .wait_for(last, tokio::time::Instant::now() + PATIENCE)
        .await
        .unwrap();
    runner.stop().await.unwrap();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen, expected, "every event once, in global order");
}
