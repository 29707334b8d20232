//! The server the tests use, fresh stores, raw connections and small builders.

use std::collections::BTreeMap;

use switchyard_aggregates::store::{EventMetadata, NewEvent};
use switchyard_postgres::test_server::{self, TestServer};
use switchyard_postgres::{PostgresOptions, PostgresStore};

/// The environment variable naming a server to test against.
pub(crate) const URL_VARIABLE: &str = test_server::URL_VARIABLE;

/// The URL of the server for this test binary: the one in `SWITCHYARD_TEST_DATABASE_URL`, or a
/// throwaway one started once (and stopped when the binary exits). Never skips: without
/// either, the test fails and says what to do.
pub(crate) fn url() -> String {
    test_server::shared_url().unwrap_or_else(|error| panic!("{error}"))
}

/// A throwaway server of this test's own (for tests that stop or restart it).
pub(crate) fn throwaway() -> TestServer {
    if test_server::binaries().is_none() {
        panic!(
            "no PostgreSQL server for the tests: set {URL_VARIABLE} to a database URL, install \
             the PostgreSQL server binaries, or run `cargo xtask test`, which installs them and \
             starts a throwaway server"
        );
    }
    TestServer::start().unwrap_or_else(|error| panic!("could not start a test server: {error}"))
}

/// A schema name no other test uses.
pub(crate) fn fresh_schema() -> String {
    format!("t_{:016x}", fastrand::u64(..))
}

/// A store in a fresh schema.
pub(crate) async fn store() -> PostgresStore {
    store_with(PostgresOptions::default()).await
}

/// A store in a fresh schema, with `options` otherwise.
pub(crate) async fn store_with(options: PostgresOptions) -> PostgresStore {
    PostgresStore::connect_with(&url(), options.schema(fresh_schema()))
        .await
        .unwrap_or_else(|error| panic!("could not connect a store: {error:?}"))
}

/// Another handle on the schema of `store`, with `options` otherwise.
pub(crate) async fn store_in(store: &PostgresStore, options: PostgresOptions) -> PostgresStore {
    PostgresStore::connect_with(&url(), options.schema(store.schema()))
        .await
        .unwrap_or_else(|error| panic!("could not connect a store: {error:?}"))
}

/// A plain connection with `schema` on its search path.
pub(crate) async fn raw_client(url: &str, schema: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .execute("SELECT set_config('search_path', $1, false)", &[&schema])
        .await
        .unwrap();
    client
}

pub(crate) fn event(tag: &str) -> NewEvent {
    NewEvent {
        event_type: format!("type-{tag}").into(),
        schema_version: 1,
        data: format!("data-{tag}").into_bytes().into(),
    }
}

pub(crate) fn meta(message_id: &str) -> EventMetadata {
    EventMetadata {
        message_id: message_id.to_owned(),
        correlation_id: format!("corr-{message_id}"),
        causation_id: format!("cause-{message_id}"),
        user: BTreeMap::from([("k".to_owned(), message_id.to_owned())]),
    }
}
