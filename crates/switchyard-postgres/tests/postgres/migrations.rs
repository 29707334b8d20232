//! Migrations: run twice, run at once by several processes, refuse a newer schema; and the
//! errors of connecting.

use std::time::{Duration, Instant};

use switchyard_aggregates::store::{EventAppender, EventReader, ExpectedVersion};
use switchyard_postgres::{PostgresError, PostgresOptions, PostgresStore};

use crate::support::{event, fresh_schema, meta, raw_client, store, url};

async fn applied(schema: &str) -> Vec<i32> {
    let client = raw_client(&url(), schema).await;
    client
        .query(
            "SELECT version FROM switchyard_migrations ORDER BY version",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrating_again_changes_nothing() {
    let store = store().await;
    store
        .append("s", ExpectedVersion::NoStream, vec![event("a")], meta("m"))
        .await
        .unwrap();
    store.migrate().await.unwrap();
    store.migrate().await.unwrap();
    assert_eq!(applied(store.schema()).await, every_migration());
    assert!(
        store.has_stream("s").await.unwrap(),
        "the data is still there"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_migrating_a_fresh_schema_at_once_take_turns() {
    let schema = fresh_schema();
    let connects = (0..6).map(|_| {
        let schema = schema.clone();
        tokio::spawn(async move {
            PostgresStore::connect_with(
                &url(),
                PostgresOptions::default().schema(schema).pool_size(1),
            )
            .await
        })
    });
    for connected in futures::future::join_all(connects).await {
        connected.unwrap().unwrap();
    }
    assert_eq!(applied(&schema).await, every_migration());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_migrated_by_a_newer_library_is_refused_untouched() {
    let store = store().await;
    let client = raw_client(&url(), store.schema()).await;
    client
        .execute(
            "INSERT INTO switchyard_migrations (version, name) VALUES (999, 'future')",
            &[],
        )
        .await
        .unwrap();
    match store.migrate().await {
        Err(PostgresError::NewerSchema { found, known, .. }) => {
            assert_eq!((found, known), (999, PostgresStore::schema_version()));
        }
        other => panic!("expected a newer-schema error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_without_migrating_finds_a_migrated_schema() {
    let store = store().await;
    let again = PostgresStore::connect_with(
        &url(),
        PostgresOptions::default()
            .schema(store.schema())
            .migrate(false),
    )
    .await
    .unwrap();
    again
        .append("s", ExpectedVersion::NoStream, vec![event("a")], meta("m"))
        .await
        .unwrap();
    assert!(store.has_stream("s").await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_settings_are_refused_before_connecting() {
    match PostgresStore::connect_with(&url(), PostgresOptions::default().schema("Bad-Name")).await {
        Err(PostgresError::Schema { schema }) => assert_eq!(schema, "Bad-Name"),
        other => panic!("expected a schema error, got {other:?}"),
    }
    match PostgresStore::connect("postgres://host:notaport/db").await {
        Err(PostgresError::Url { .. }) => {}
        other => panic!("expected a URL error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_fails_after_the_retries_not_before_and_not_never() {
    // A port nothing listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let started = Instant::now();
    let options =
        PostgresOptions::default().retries(3, Duration::from_millis(50), Duration::from_millis(50));
    match PostgresStore::connect_with(
        &format!("postgres://postgres@127.0.0.1:{port}/postgres"),
        options,
    )
    .await
    {
        Err(PostgresError::Connect { .. }) => {}
        other => panic!("expected a connect error, got {other:?}"),
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(100),
        "it retried: {elapsed:?}"
    );
    assert!(elapsed < Duration::from_secs(5), "it gave up: {elapsed:?}");
}

/// The numbers of every migration this library knows, in order.
fn every_migration() -> Vec<i32> {
    (1..=PostgresStore::schema_version()).collect()
}
