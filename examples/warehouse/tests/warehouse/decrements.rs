//! 1,000 decrements of one product from 3 concurrent clients, starting at 600: exactly 600
//! accepted and 400 refused, a final quantity of 0, gapless versions in the store, and the
//! product list agreeing with the store. In each mode on each store.

use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::json;

use crate::support::{Target, check_gapless, start};

const STOCK: u64 = 600;
const DECREMENTS: usize = 1_000;
const CLIENTS: usize = 3;

async fn check(target: Target) {
    let running = start(target).await;
    let (status, _) = running
        .post(
            "/warehouse/products",
            json!({"sku": "gear", "name": "Gear"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = running
        .post(
            "/warehouse/products/gear/increase",
            json!({"quantity": STOCK}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    let clients = (0..CLIENTS).map(|client| {
        let running = &running;
        async move {
            let mut answers = Vec::new();
            // Client 0 sends 334, the others 333: 1,000 in all.
            for _ in (client..DECREMENTS).step_by(CLIENTS) {
                let (status, body) = running
                    .post("/warehouse/products/gear/decrease", json!({"quantity": 1}))
                    .await;
                answers.push((status, body));
            }
            answers
        }
    });
    let answers: Vec<_> = join_all(clients).await.into_iter().flatten().collect();
    assert_eq!(answers.len(), DECREMENTS);
    let accepted = answers
        .iter()
        .filter(|(status, _)| *status == StatusCode::OK)
        .count();
    let refused = answers
        .iter()
        .filter(|(status, body)| {
            *status == StatusCode::CONFLICT && body["error"] == "insufficient_quantity"
        })
        .count();
    assert_eq!((accepted, refused), (600, 400), "{target:?}");

    // The store: created, received 600, shipped 600 one by one, versions without a gap.
    let events = running.events("gear").await;
    assert_eq!(events.len(), 2 + 600);
    assert_eq!(check_gapless(&events), 0);

    // The list agrees.
    let (status, row) = running.get("/warehouse/products/gear").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(row["quantity"], 0);
    assert_eq!(row["version"], 601);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_decrements_stop_at_zero_in_memory_sync() {
    check(Target::MemorySync).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_decrements_stop_at_zero_in_persisted_sync_on_sqlite() {
    check(Target::SqliteSync).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_decrements_stop_at_zero_in_persisted_async_on_sqlite() {
    check(Target::SqliteAsync).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_decrements_stop_at_zero_in_persisted_sync_on_postgres() {
    check(Target::PostgresSync).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_decrements_stop_at_zero_in_persisted_async_on_postgres() {
    check(Target::PostgresAsync).await;
}
