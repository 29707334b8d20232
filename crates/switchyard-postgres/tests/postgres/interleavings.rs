//! Property: writers append in random interleavings while a projection runner follows the
//! store, and a transaction of a writer of its own commits out of start order (it takes its
//! position first and commits last, or starts first and writes last); the projection sees
//! every event exactly once, in global order.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use proptest::prelude::*;
use switchyard_aggregates::store::EventStore;
use switchyard_projections::runner_conformance::{
    Script, a_runner_sees_every_event_once_in_order, event, writers,
};

use crate::global_order::append_raw_data;
use crate::support::{raw_client, store, url};

fn scripts() -> impl Strategy<Value = Vec<Script>> {
    prop::collection::vec(
        prop::collection::vec((0..3_u8, 1..4_u8, 0..3_u8), 1..6),
        1..4,
    )
}

/// Calls `writers` done as each ends, so the slow transaction knows when to commit.
fn counted(
    writers: Vec<BoxFuture<'static, ()>>,
    running: &Arc<AtomicUsize>,
) -> Vec<BoxFuture<'static, ()>> {
    running.store(writers.len(), Ordering::SeqCst);
    writers
        .into_iter()
        .map(|writer| {
            let running = running.clone();
            async move {
                writer.await;
                running.fetch_sub(1, Ordering::SeqCst);
            }
            .boxed()
        })
        .collect()
}

/// A transaction that begins at once and commits once the other writers are done: writing its
/// event first (it holds the earliest position back) or last (an older transaction writing
/// after younger ones committed).
fn slow_transaction(
    schema: String,
    running: Arc<AtomicUsize>,
    writes_first: bool,
) -> BoxFuture<'static, ()> {
    async move {
        let client = raw_client(&url(), &schema).await;
        client.batch_execute("BEGIN").await.unwrap();
        client
            .query_one("SELECT pg_current_xact_id()::text", &[])
            .await
            .unwrap();
        let data = event(7).data.to_vec();
        if writes_first {
            append_raw_data(&client, "interleaved-slow", "slow", data.clone()).await;
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while running.load(Ordering::SeqCst) > 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the writers did not finish"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        if !writes_first {
            append_raw_data(&client, "interleaved-slow", "slow", data).await;
        }
        client.batch_execute("COMMIT").await.unwrap();
    }
    .boxed()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(6))]

    #[test]
    fn a_runner_sees_every_event_once_in_order_as_transactions_commit_out_of_start_order(
        scripts in scripts(),
        batch_size in 1..5_usize,
        writes_first: bool,
    ) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let store = store().await;
            let events: Arc<dyn EventStore> = Arc::new(store.clone());
            let running = Arc::new(AtomicUsize::new(0));
            let mut all = counted(writers(&events, scripts), &running);
            all.push(slow_transaction(store.schema().to_owned(), running, writes_first));
            a_runner_sees_every_event_once_in_order(events, store, batch_size, all).await;
        });
    }
}
