//! Setting a connection up: an address that accepts TCP and never answers is reported once the
//! connect timeout runs out, naming the setting and the address, and is not retried.

use std::time::Duration;

use switchyard_postgres::{PostgresError, PostgresOptions, PostgresStore};
use tokio::net::TcpListener;

/// A listener on 127.0.0.1 that accepts every connection and never says a word.
async fn silent_server() -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let accepting = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    (address, accepting)
}

#[tokio::test]
async fn a_server_that_accepts_and_never_answers_is_a_connect_timeout_naming_the_setting() {
    let (address, accepting) = silent_server().await;
    let url = format!("postgres://app@{address}/app");
    for migrate in [true, false] {
        let options = PostgresOptions::default()
            .connect_timeout(Duration::from_millis(200))
            .retries(5, Duration::from_millis(10), Duration::from_millis(20))
            .migrate(migrate);
        let error = PostgresStore::connect_with(&url, options)
            .await
            .unwrap_err();
        let PostgresError::ConnectTimeout(timed_out) = &error else {
            panic!("expected a connect timeout (migrate: {migrate}), got {error:?}");
        };
        assert_eq!(timed_out.address(), address.to_string());
        assert_eq!(timed_out.timeout(), Duration::from_millis(200));
        assert_eq!(
            error.to_string(),
            format!(
                "PostgreSQL at {address} did not set up a connection within 200ms \
                 (`PostgresOptions::connect_timeout`): check that the address is a PostgreSQL \
                 server that is up and not overloaded, or raise the timeout"
            )
        );
    }
    accepting.abort();
}

#[test]
fn the_default_connect_timeout_is_short() {
    assert_eq!(
        PostgresOptions::default().connect_timeout_duration(),
        Duration::from_secs(5)
    );
}
