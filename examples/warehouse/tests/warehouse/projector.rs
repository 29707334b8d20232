//! Mode `persisted-async`: the product list converges after a burst of commands, and a
//! projector process (`warehouse project`) killed with SIGKILL and started again catches up
//! with nothing lost or doubled.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures::future::join_all;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::time::Instant;
use warehouse::Database;

use crate::support::{
    PATIENCE, Running, Target, check_gapless, config, database, separate, start, start_with,
};

const SKUS: [&str; 3] = ["bolt", "nut", "washer"];

/// Creates the products, then sends `per_product` receipts of 1 to each, 3 clients per
/// product at once, none asking for consistency.
async fn burst(running: &Running, per_product: usize) {
    let calls = SKUS.iter().flat_map(|sku| {
        (0..3).map(move |client| async move {
            for _ in (client..per_product).step_by(3) {
                let (status, body) = running
                    .post(
                        &format!("/warehouse/products/{sku}/increase"),
                        json!({"quantity": 1}),
                    )
                    .await;
                assert_eq!(status, StatusCode::OK, "{body}");
            }
        })
    });
    join_all(calls).await;
}

async fn create_products(running: &Running) {
    for sku in SKUS {
        let (status, body) = running
            .post("/warehouse/products", json!({"sku": sku, "name": sku}))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
}

/// The list as a plain read sees it (no waiting).
async fn plain_list(running: &Running) -> Value {
    running
        .request(Method::GET, "/warehouse/products")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Polls the list until it has seen the store's head, within [`PATIENCE`]: the bound this
/// suite states for convergence. Returns the list.
async fn converged(running: &Running) -> Value {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let list = plain_list(running).await;
        if list["position"] == list["head"] {
            return list;
        }
        assert!(
            Instant::now() < deadline,
            "the list did not converge within {PATIENCE:?}: {list}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Checks that every product's row is its store's truth: the quantity and the version of its
/// last event, the quantities following one another without a gap.
async fn agrees_with_the_store(running: &Running, list: &Value) {
    let rows = list["products"].as_array().unwrap();
    assert_eq!(rows.len(), SKUS.len(), "{list}");
    for row in rows {
        let sku = row["sku"].as_str().unwrap();
        let events = running.events(sku).await;
        let quantity = check_gapless(&events);
        assert_eq!(row["quantity"], quantity, "{sku}: {list}");
        assert_eq!(row["version"], events.len() - 1, "{sku}: {list}");
    }
}

async fn converges(target: Target) {
    let running = start(target).await;
    create_products(&running).await;
    burst(&running, 200).await;
    let list = converged(&running).await;
    agrees_with_the_store(&running, &list).await;
    for row in list["products"].as_array().unwrap() {
        assert_eq!(row["quantity"], 200);
    }
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_list_converges_after_a_burst_on_sqlite() {
    converges(Target::SqliteAsync).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_list_converges_after_a_burst_on_postgres() {
    converges(Target::PostgresAsync).await;
}

/// A `warehouse project` process, killed (SIGKILL) and reaped on drop.
struct Projector(Child);

impl Projector {
    fn start(database: &Database) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_warehouse"));
        command.args([
            "project",
            "--mode",
            "persisted-async",
            "--lease-ttl-ms",
            "500",
        ]);
        match database {
            Database::Sqlite(path) => command.arg("--sqlite").arg(path),
            Database::Postgres { url, schema } => {
                command.args(["--database-url", url, "--schema", schema])
            }
            Database::Memory => panic!("a projector needs a database"),
        };
        Self(
            command
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .spawn()
                .unwrap(),
        )
    }

    /// SIGKILL: no lease released, no batch finished.
    fn kill(mut self) {
        self.0.kill().unwrap();
        self.0.wait().unwrap();
    }
}

impl Drop for Projector {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn position(running: &Running) -> u64 {
    plain_list(running).await["position"].as_u64().unwrap()
}

async fn survives_a_killed_projector(target: Target) {
    let (database, dir) = database(target);
    let running = start_with(separate(config(target, database.clone())), dir).await;
    let projector = Projector::start(&database);
    create_products(&running).await;

    // Kill the projector while a burst is being projected.
    let killed = async {
        let deadline = Instant::now() + PATIENCE;
        while position(&running).await == 0 {
            assert!(Instant::now() < deadline, "the projector never started");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        projector.kill();
    };
    tokio::join!(burst(&running, 150), killed);

    // Without a projector the list stands still, however much is written.
    let before = position(&running).await;
    burst(&running, 60).await;
    assert_eq!(
        position(&running).await,
        before,
        "nothing projects while the projector is dead"
    );
    let head = plain_list(&running).await["head"].as_u64().unwrap();
    assert!(before < head);

    // Started again, it takes the lapsed lease and catches up from its checkpoint.
    let _restarted = Projector::start(&database);
    let list = converged(&running).await;
    agrees_with_the_store(&running, &list).await;
    for row in list["products"].as_array().unwrap() {
        assert_eq!(row["quantity"], 150 + 60, "{list}");
    }
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_projector_catches_up_with_nothing_lost_or_doubled_on_sqlite() {
    survives_a_killed_projector(Target::SqliteAsync).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_projector_catches_up_with_nothing_lost_or_doubled_on_postgres() {
    survives_a_killed_projector(Target::PostgresAsync).await;
}

/// A command asking for strong consistency waits for the list: with no projector running it
/// answers 503 once the timeout passes (the command is applied all the same, and its retry with
/// the same key is not applied again), and answers at once when a projector runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_strong_command_waits_for_the_list_and_times_out_without_a_projector() {
    let (database, dir) = database(Target::SqliteAsync);
    let mut config = separate(config(Target::SqliteAsync, database.clone()));
    config.timeout = Duration::from_millis(300);
    let running = start_with(config, dir).await;
    let strong_receipt = || {
        running
            .request(
                Method::POST,
                "/warehouse/products/bolt/increase?consistency=strong",
            )
            .header("Idempotency-Key", "receive-once")
            .json(&json!({"quantity": 5}))
    };
    let (status, _) = running
        .post(
            "/warehouse/products",
            json!({"sku": "bolt", "name": "Bolt"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);

    let (status, body) = crate::support::answer(strong_receipt()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"], "timeout");
    // It was applied all the same; another receipt, not waiting, answers at once.
    let (status, body) = running
        .post("/warehouse/products/bolt/increase", json!({"quantity": 5}))
        .await;
    assert_eq!((status, &body["quantity"]), (StatusCode::OK, &json!(10)));

    let _projector = Projector::start(&database);
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (status, body) = crate::support::answer(strong_receipt()).await;
        if status == StatusCode::OK {
            assert_eq!(body["version"], 1, "the retry is not applied again: {body}");
            break;
        }
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert!(Instant::now() < deadline, "the projector never caught up");
    }
    let list = converged(&running).await;
    assert_eq!(list["products"][0]["quantity"], 10, "{list}");
    running.shutdown().await;
}
