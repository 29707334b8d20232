//! Appends whose connection breaks after they were sent: provoked for real by ending the
//! append's server session while it waits, before its commit (on a row lock) or after it (on a
//! synchronous standby that never answers), and settled by message id.

use std::time::Duration;

use futures::StreamExt;
use switchyard_aggregates::store::{
    AppendError, EventAppender, EventMetadata, EventReader, ExpectedVersion, StoreError,
};
use switchyard_postgres::{PostgresOptions, PostgresStore};
use tokio_postgres::Client;

use crate::support::{event, meta, raw_client, store, throwaway, url};

/// Ends the append's session once it waits on `waiting_for` (a wait event or its type: a lock,
/// or the synchronous standby).
async fn terminate_the_waiting_append(observer: &Client, waiting_for: &str) {
    for _ in 0..500 {
        let ended = observer
            .query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE (wait_event_type = $1 OR wait_event = $1) AND query LIKE '-- Appends a batch%'",
                &[&waiting_for],
            )
            .await
            .unwrap();
        if !ended.is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no append waited on {waiting_for}");
}

async fn versions(store: &PostgresStore, stream: &str) -> Vec<(i64, String)> {
    let mut pages = store.read_stream(stream, 0, 100);
    let mut all = Vec::new();
    while let Some(page) = pages.next().await {
        all.extend(
            page.unwrap()
                .into_iter()
                .map(|e| (e.version, e.metadata.message_id.clone())),
        );
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_cut_off_before_its_commit_is_reported_as_not_written() {
    let store = store().await;
    store
        .append(
            "s",
            ExpectedVersion::NoStream,
            vec![event("a")],
            meta("first"),
        )
        .await
        .unwrap();
    let blocker = raw_client(&url(), store.schema()).await;
    blocker.batch_execute("BEGIN").await.unwrap();
    blocker
        .execute("SELECT 1 FROM streams WHERE stream = 's' FOR UPDATE", &[])
        .await
        .unwrap();
    let appending = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .append(
                    "s",
                    ExpectedVersion::Exactly(0),
                    vec![event("b")],
                    meta("second"),
                )
                .await
        })
    };
    let observer = raw_client(&url(), store.schema()).await;
    terminate_the_waiting_append(&observer, "Lock").await;
    match appending.await.unwrap() {
        // Not written, and the stream still waits at 0: a failure to try again.
        Err(AppendError::Store(StoreError::Backend { .. })) => {}
        other => panic!("expected a store failure, got {other:?}"),
    }
    blocker.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(versions(&store, "s").await, [(0, "first".to_owned())]);
    assert_eq!(
        store
            .append(
                "s",
                ExpectedVersion::Exactly(0),
                vec![event("b")],
                meta("second")
            )
            .await
            .unwrap(),
        1,
        "trying again succeeds"
    );
}

/// With a synchronous standby that never answers, a commit is written locally and then waits;
/// ending its session then leaves it committed while its caller hears only that the
/// connection broke. This needs a server of its own: the setting is server-wide.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_cut_off_after_its_commit_is_found_by_message_id() {
    let server = tokio::task::spawn_blocking(throwaway).await.unwrap();
    let store =
        PostgresStore::connect_with(&server.url(), PostgresOptions::default().schema("outcome"))
            .await
            .unwrap();
    let admin = raw_client(&server.url(), "outcome").await;
    for statement in [
        "ALTER SYSTEM SET synchronous_standby_names = 'nobody'",
        "SELECT pg_reload_conf()",
    ] {
        admin.batch_execute(statement).await.unwrap();
    }
    // Let the setting reach every backend.
    tokio::time::sleep(Duration::from_millis(300)).await;

    for (message, expected) in [("with-id", Ok(0)), ("", Err(()))] {
        let stream = format!("s-{message}");
        let appending = {
            let store = store.clone();
            let stream = stream.clone();
            tokio::spawn(async move {
                let metadata = EventMetadata {
                    message_id: message.to_owned(),
                    ..EventMetadata::default()
                };
                store
                    .append(
                        &stream,
                        ExpectedVersion::NoStream,
                        vec![event("a")],
                        metadata,
                    )
                    .await
            })
        };
        terminate_the_waiting_append(&admin, "SyncRep").await;
        match (appending.await.unwrap(), expected) {
            (Ok(version), Ok(want)) => assert_eq!(version, want),
            // Without a message id nothing can be checked: the caller is told so.
            (
                Err(AppendError::Unknown {
                    stream: reported, ..
                }),
                Err(()),
            ) => {
                assert_eq!(reported, stream);
            }
            (other, _) => panic!("message {message:?}: unexpected {other:?}"),
        }
        assert_eq!(
            versions(&store, &stream).await,
            [(0, message.to_owned())],
            "the commit stood"
        );
    }
    for statement in [
        "ALTER SYSTEM RESET synchronous_standby_names",
        "SELECT pg_reload_conf()",
    ] {
        admin.batch_execute(statement).await.unwrap();
    }
    store.close();
    tokio::task::spawn_blocking(move || drop(server))
        .await
        .unwrap();
}
