//! A message records events in a stream once, also when its appends race: the probe of the
//! message id must not trust a snapshot taken before another append of the same message
//! committed, and a duplicate in a batch refuses only itself. Appends with
//! `ExpectedVersion::Any` racing on one stream, or on its creation, each land or are refused as
//! duplicates, never end in a conflict.

use std::time::Duration;

use switchyard_aggregates::store::{AppendError, EventAppender, EventReader, ExpectedVersion};
use tokio_postgres::Client;

use switchyard_postgres::{PostgresOptions, PostgresStore};

use crate::support::{event, meta, raw_client, store, store_in, url};

/// Waits until `count` append statements wait on a lock.
async fn appends_waiting_on_a_lock(observer: &Client, count: i64) {
    for _ in 0..500 {
        let waiting: i64 = observer
            .query_one(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE wait_event_type = 'Lock' AND query LIKE '-- Appends a batch%'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if waiting >= count {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("fewer than {count} appends waited on a lock");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_of_one_message_waiting_on_one_stream_record_it_once() {
    let store = store().await;
    store
        .append("s", ExpectedVersion::NoStream, vec![event("a")], meta("a"))
        .await
        .unwrap();
    // Holding the stream's row lock lines both appends up behind it, each with a snapshot
    // taken before the other wrote anything.
    let blocker = raw_client(&url(), store.schema()).await;
    blocker.batch_execute("BEGIN").await.unwrap();
    blocker
        .execute("SELECT 1 FROM streams WHERE stream = 's' FOR UPDATE", &[])
        .await
        .unwrap();
    let appends: Vec<_> = (0..2)
        .map(|n| {
            let store = store.clone();
            tokio::spawn(async move {
                let events = vec![event(&format!("twice-{n}"))];
                store
                    .append("s", ExpectedVersion::Any, events, meta("twice"))
                    .await
            })
        })
        .collect();
    let observer = raw_client(&url(), store.schema()).await;
    appends_waiting_on_a_lock(&observer, 2).await;
    blocker.batch_execute("ROLLBACK").await.unwrap();
    let mut outcomes = Vec::new();
    for append in appends {
        outcomes.push(append.await.unwrap());
    }
    let appended = outcomes.iter().filter(|outcome| outcome.is_ok()).count();
    let refused: Vec<_> = outcomes
        .iter()
        .filter_map(|outcome| match outcome {
            Err(AppendError::Duplicate { version, .. }) => Some(*version),
            _ => None,
        })
        .collect();
    assert_eq!(
        (appended, refused),
        (1, vec![1]),
        "one append records the message, the other is its duplicate: {outcomes:?}"
    );
    assert_eq!(store.find_message("s", "twice").await.unwrap(), Some(1));
    assert_eq!(
        store
            .append("s", ExpectedVersion::Any, Vec::new(), meta(""))
            .await
            .unwrap(),
        1,
        "the message recorded one event"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_refuses_only_itself_among_concurrent_appends() {
    const STREAMS: usize = 40;
    let store = store().await;
    for s in 0..STREAMS {
        store
            .append(
                &format!("s-{s}"),
                ExpectedVersion::NoStream,
                vec![event("first")],
                meta(&format!("first-{s}")),
            )
            .await
            .unwrap();
    }
    // Half the streams get their first message again, the other half a new one, all at once:
    // the committers batch them together.
    let appends: Vec<_> = (0..STREAMS)
        .map(|s| {
            let store = store.clone();
            tokio::spawn(async move {
                let message = if s % 2 == 0 {
                    format!("first-{s}")
                } else {
                    format!("second-{s}")
                };
                store
                    .append(
                        &format!("s-{s}"),
                        ExpectedVersion::Exactly(0),
                        vec![event("second")],
                        meta(&message),
                    )
                    .await
            })
        })
        .collect();
    for (s, append) in appends.into_iter().enumerate() {
        match (s % 2, append.await.unwrap()) {
            (0, Err(AppendError::Duplicate { version: 0, .. })) | (1, Ok(1)) => {}
            (_, other) => panic!("stream s-{s}: {other:?}"),
        }
    }
}

/// Appends with [`ExpectedVersion::Any`] to stream `s`, through each handle of `stores` one per
/// message of its list, all at once, lined up behind a row lock of the stream until a statement
/// of every handle waits on it: each handle's statement then runs with a snapshot taken before
/// the others moved the stream (the handles are writers of their own, as processes are; one
/// handle's committers write a stream's appends one after the other).
async fn any_appends_behind_a_lock(
    stores: &[PostgresStore],
    messages: &[Vec<String>],
) -> Vec<(String, Result<i64, AppendError>)> {
    let schema = stores[0].schema();
    let blocker = raw_client(&url(), schema).await;
    blocker.batch_execute("BEGIN").await.unwrap();
    blocker
        .execute("SELECT 1 FROM streams WHERE stream = 's' FOR UPDATE", &[])
        .await
        .unwrap();
    let mut appends = Vec::new();
    for (store, messages) in stores.iter().zip(messages) {
        for message in messages {
            let store = store.clone();
            let message = message.clone();
            appends.push(tokio::spawn(async move {
                let outcome = store
                    .append(
                        "s",
                        ExpectedVersion::Any,
                        vec![event(&message)],
                        meta(&message),
                    )
                    .await;
                (message, outcome)
            }));
        }
    }
    let observer = raw_client(&url(), schema).await;
    appends_waiting_on_a_lock(&observer, stores.len() as i64).await;
    blocker.batch_execute("ROLLBACK").await.unwrap();
    let mut outcomes = Vec::new();
    for append in appends {
        outcomes.push(append.await.unwrap());
    }
    outcomes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_any_appends_with_message_ids_to_one_stream_never_conflict() {
    const WRITERS: usize = 12;
    const APPENDS: usize = 4;
    let first = store().await;
    first
        .append("s", ExpectedVersion::NoStream, vec![event("a")], meta("a"))
        .await
        .unwrap();
    let mut stores = vec![first.clone()];
    for _ in 1..WRITERS {
        stores.push(store_in(&first, PostgresOptions::default()).await);
    }
    let messages: Vec<Vec<String>> = (0..WRITERS)
        .map(|w| (0..APPENDS).map(|n| format!("w{w}-m{n}")).collect())
        .collect();
    let outcomes = any_appends_behind_a_lock(&stores, &messages).await;
    let failed: Vec<_> = outcomes
        .iter()
        .filter(|(_, outcome)| outcome.is_err())
        .collect();
    assert!(failed.is_empty(), "every append lands: {failed:?}");
    let total = (WRITERS * APPENDS) as i64;
    assert_eq!(
        first
            .append("s", ExpectedVersion::Any, Vec::new(), meta(""))
            .await
            .unwrap(),
        total,
        "one event per append after the first"
    );

    // The same messages again, each through another writer, racing as before: every one is
    // refused, with the version it recorded.
    let mut again = messages.clone();
    again.rotate_left(1);
    for (message, outcome) in any_appends_behind_a_lock(&stores, &again).await {
        let recorded = first.find_message("s", &message).await.unwrap();
        match outcome {
            Err(AppendError::Duplicate { version, .. }) if Some(version) == recorded => {}
            other => panic!("{message}: {other:?}"),
        }
    }
    assert_eq!(
        first
            .append("s", ExpectedVersion::Any, Vec::new(), meta(""))
            .await
            .unwrap(),
        total,
        "the repeats wrote nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_appends_racing_on_a_streams_creation_land_or_are_duplicates() {
    const WRITERS: usize = 6;
    let first = store().await;
    let mut stores = vec![first.clone()];
    for _ in 1..WRITERS {
        stores.push(store_in(&first, PostgresOptions::default()).await);
    }
    // Another writer creates the stream, with the event of message `taken`, and has not
    // committed: every append's statement takes its snapshot without the stream, then waits
    // for that writer at the stream's insert.
    let creator = raw_client(&url(), first.schema()).await;
    creator.batch_execute("BEGIN").await.unwrap();
    creator
        .batch_execute(
            "INSERT INTO streams (stream, last_version, hidden_through) VALUES ('s', 0, -1); \
             INSERT INTO events (position, stream, version, event_type, schema_version, data, \
                                 message_id, correlation_id, causation_id, user_metadata) \
             VALUES (pg_current_xact_id()::text::bigint << 20, 's', 0, 't', 1, '\\x00', \
                     'taken', '', '', '{}')",
        )
        .await
        .unwrap();
    let appends: Vec<_> = stores
        .iter()
        .enumerate()
        .map(|(w, store)| {
            let store = store.clone();
            // The first writer's message is the creator's.
            let message = if w == 0 {
                "taken".to_owned()
            } else {
                format!("w{w}")
            };
            tokio::spawn(async move {
                let outcome = store
                    .append(
                        "s",
                        ExpectedVersion::Any,
                        vec![event(&message)],
                        meta(&message),
                    )
                    .await;
                (message, outcome)
            })
        })
        .collect();
    let observer = raw_client(&url(), first.schema()).await;
    appends_waiting_on_a_lock(&observer, WRITERS as i64).await;
    creator.batch_execute("COMMIT").await.unwrap();
    for append in appends {
        match append.await.unwrap() {
            (message, Err(AppendError::Duplicate { version: 0, .. })) if message == "taken" => {}
            (message, Ok(_)) if message != "taken" => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        first
            .append("s", ExpectedVersion::Any, Vec::new(), meta(""))
            .await
            .unwrap(),
        (WRITERS - 1) as i64,
        "the creator's event, then one per append but the duplicate"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_of_several_events_is_found_by_its_last_one() {
    let store = store().await;
    let events = vec![event("a"), event("b"), event("c")];
    store
        .append("s", ExpectedVersion::NoStream, events, meta("three"))
        .await
        .unwrap();
    store
        .append(
            "s",
            ExpectedVersion::Exactly(2),
            vec![event("d")],
            meta("one"),
        )
        .await
        .unwrap();
    let observer = raw_client(&url(), store.schema()).await;
    let marked: Vec<i64> = observer
        .query(
            "SELECT version FROM events WHERE stream = 's' AND closes_append ORDER BY version",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(marked, [2, 3], "one indexed event per append, its last");
    let again = |version| {
        let store = store.clone();
        async move {
            store
                .append(
                    "s",
                    ExpectedVersion::Exactly(version),
                    vec![event("e")],
                    meta("three"),
                )
                .await
        }
    };
    assert!(
        matches!(
            again(3).await,
            Err(AppendError::Duplicate { version: 2, .. })
        ),
        "the message's last version is found"
    );
    assert_eq!(store.find_message("s", "three").await.unwrap(), Some(2));
    // Events written before the index took only an append's last event are all marked.
    observer
        .execute(
            "UPDATE events SET closes_append = true WHERE stream = 's'",
            &[],
        )
        .await
        .unwrap();
    assert!(
        matches!(
            again(3).await,
            Err(AppendError::Duplicate { version: 2, .. })
        ),
        "also with every event of the message marked"
    );
    assert_eq!(store.find_message("s", "three").await.unwrap(), Some(2));
}
