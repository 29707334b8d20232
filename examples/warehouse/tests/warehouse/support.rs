//! Starting a warehouse for a test, and the client calls every test makes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::TryStreamExt;
use reqwest::{Client, Method, RequestBuilder, StatusCode};
use serde_json::Value;
use switchyard::aggregates::DecodedEvent;
use tempfile::TempDir;
use warehouse::product::ProductEvent;
use warehouse::{Config, Database, Mode, Projector, Server};

/// A mode on a store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    MemorySync,
    SqliteSync,
    SqliteAsync,
    PostgresSync,
    PostgresAsync,
}

impl Target {
    pub(crate) fn mode(self) -> Mode {
        match self {
            Self::MemorySync => Mode::MemorySync,
            Self::SqliteSync | Self::PostgresSync => Mode::PersistedSync,
            Self::SqliteAsync | Self::PostgresAsync => Mode::PersistedAsync,
        }
    }
}

/// A fresh database for `target`: a SQLite file in a temporary directory (kept as long as the
/// returned directory), or a schema of its own on the shared PostgreSQL server.
pub(crate) fn database(target: Target) -> (Database, Option<TempDir>) {
    match target {
        Target::MemorySync => (Database::Memory, None),
        Target::SqliteSync | Target::SqliteAsync => {
            let dir = tempfile::tempdir().unwrap();
            (Database::Sqlite(dir.path().join("warehouse.db")), Some(dir))
        }
        Target::PostgresSync | Target::PostgresAsync => (postgres(), None),
    }
}

/// A schema of its own on the shared PostgreSQL server.
pub(crate) fn postgres() -> Database {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let url = switchyard_postgres::test_server::shared_url().unwrap();
    let schema = format!(
        "warehouse_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    Database::Postgres { url, schema }
}

/// A running warehouse and a client for it.
pub(crate) struct Running {
    pub(crate) base: String,
    pub(crate) server: Server,
    pub(crate) client: Client,
    /// Whether reads ask for strong consistency (mode `persisted-async`).
    pub(crate) strong_reads: bool,
    _dir: Option<TempDir>,
}

/// How long a test waits for anything before it fails: far above what any step takes, so
/// only a fault reaches it.
pub(crate) const PATIENCE: Duration = Duration::from_secs(30);

pub(crate) fn config(target: Target, database: Database) -> Config {
    let mut config = Config::new(target.mode(), database);
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.timeout = PATIENCE;
    config.lease_ttl = Duration::from_millis(500);
    config
}

/// Starts `target` on a fresh database.
pub(crate) async fn start(target: Target) -> Running {
    let (database, dir) = database(target);
    start_with(config(target, database), dir).await
}

/// Starts a warehouse with `config`, keeping `dir` as long as it runs.
pub(crate) async fn start_with(config: Config, dir: Option<TempDir>) -> Running {
    let strong_reads = config.mode == Mode::PersistedAsync;
    let (address, server) = warehouse::serve(config).await.unwrap();
    Running {
        base: format!("http://{address}"),
        server,
        client: Client::builder()
            .timeout(PATIENCE)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        strong_reads,
        _dir: dir,
    }
}

/// A separate projector is asked for in `config`.
pub(crate) fn separate(mut config: Config) -> Config {
    config.projector = Projector::Separate;
    config
}

impl Running {
    pub(crate) fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, format!("{}{path}", self.base))
    }

    /// A GET of JSON, with strong consistency in mode `persisted-async`.
    pub(crate) async fn get(&self, path: &str) -> (StatusCode, Value) {
        let mut request = self.request(Method::GET, path);
        if self.strong_reads {
            request = request.header("Consistency", "strong");
        }
        answer(request).await
    }

    /// A POST of `body` as JSON.
    pub(crate) async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        answer(self.request(Method::POST, path).json(&body)).await
    }

    /// Product `sku`'s events as the store holds them, decoded.
    pub(crate) async fn events(&self, sku: &str) -> Vec<DecodedEvent<ProductEvent>> {
        let stream = format!("product-{sku}");
        let pages: Vec<_> = self
            .server
            .events()
            .read_stream(&stream, 0, 1024)
            .try_collect()
            .await
            .unwrap();
        pages
            .into_iter()
            .flatten()
            .map(|recorded| DecodedEvent::decode(recorded).unwrap())
            .collect()
    }

    pub(crate) async fn shutdown(self) {
        self.server.shutdown().await.unwrap();
    }
}

/// The status and JSON body `request` answers.
pub(crate) async fn answer(request: RequestBuilder) -> (StatusCode, Value) {
    let response = request.send().await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body)
}

/// Checks that `events` have versions 0, 1, 2, … and that each carries the quantity the one
/// before left, changed by its own amount; returns the last quantity.
#[track_caller]
pub(crate) fn check_gapless(events: &[DecodedEvent<ProductEvent>]) -> u64 {
    let mut quantity = 0;
    for (expected, event) in (0_i64..).zip(events) {
        assert_eq!(event.version, expected, "the versions have a gap");
        match &event.event {
            ProductEvent::Created(_) => assert_eq!(expected, 0, "created twice"),
            ProductEvent::QuantityIncreased(increased) => {
                assert_eq!(increased.quantity, quantity + increased.by);
                quantity = increased.quantity;
            }
            ProductEvent::QuantityDecreased(decreased) => {
                assert_eq!(decreased.quantity + decreased.by, quantity);
                quantity = decreased.quantity;
            }
        }
    }
    quantity
}

/// Whether `actual` holds everything `expected` says: every field of an object (recursively),
/// the same number of array elements each holding the expected one, and equal scalars.
pub(crate) fn holds(actual: &Value, expected: &Value) -> bool {
    match (actual, expected) {
        (Value::Object(actual), Value::Object(expected)) => expected
            .iter()
            .all(|(key, value)| actual.get(key).is_some_and(|found| holds(found, value))),
        (Value::Array(actual), Value::Array(expected)) => {
            actual.len() == expected.len() && actual.iter().zip(expected).all(|(a, e)| holds(a, e))
        }
        _ => actual == expected,
    }
}
