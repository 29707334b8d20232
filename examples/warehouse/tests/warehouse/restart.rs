//! A persisted warehouse stopped and started again on the same database: its products are
//! still there, and the new server's projection takes over at once (the stopped one released
//! its lease).

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::support::{Target, config, database, start_with};

async fn check(target: Target) {
    let (database, dir) = database(target);
    let mut config = config(target, database);
    // Far longer than a request may wait: a lease left behind would make the next server's
    // commands time out.
    config.lease_ttl = Duration::from_secs(60);
    config.timeout = Duration::from_secs(10);

    let first = start_with(config.clone(), None).await;
    let (status, _) = first
        .post(
            "/warehouse/products",
            json!({"sku": "bolt", "name": "Bolt"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = first
        .post("/warehouse/products/bolt/increase", json!({"quantity": 7}))
        .await;
    assert_eq!(status, StatusCode::OK);
    first.shutdown().await;

    let second = start_with(config, dir).await;
    let (status, body) = second
        .post("/warehouse/products/bolt/decrease", json!({"quantity": 2}))
        .await;
    assert_eq!(
        (status, &body["quantity"]),
        (StatusCode::OK, &json!(5)),
        "{body}"
    );
    let (_, row) = second.get("/warehouse/products/bolt").await;
    assert_eq!(
        (&row["quantity"], &row["version"]),
        (&json!(5), &json!(2)),
        "{row}"
    );
    second.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_server_keeps_its_products_and_projects_at_once_on_sqlite() {
    check(Target::SqliteSync).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_server_keeps_its_products_and_projects_at_once_on_postgres() {
    check(Target::PostgresSync).await;
}
