//! `read_all` never returns a position while a lower one may still commit: transactions are
//! driven by hand on raw connections, through the store's own append statement.

use std::time::Duration;

use switchyard_aggregates::store::{EventAppender, ExpectedVersion, GlobalReader, RecordedEvent};
use switchyard_postgres::{PostgresOptions, PostgresStore};
use tokio_postgres::Client;

use crate::support::{event, meta, raw_client, store, store_in, url};

/// The statement the store appends with.
const APPEND: &str = include_str!("../../src/sql/append.sql");

/// Appends one event to `stream` on `client`, inside whatever transaction it has open, exactly
/// as the store does (a batch of one append); returns the stream's version before.
pub(crate) async fn append_raw(client: &Client, stream: &str, tag: &str) -> i64 {
    append_raw_data(client, stream, tag, format!("data-{tag}").into_bytes()).await
}

/// [`append_raw`], with `data` as the event's data.
pub(crate) async fn append_raw_data(
    client: &Client,
    stream: &str,
    tag: &str,
    data: Vec<u8>,
) -> i64 {
    let text = |value: &str| vec![value.to_owned()];
    let row = client
        .query_one(
            APPEND,
            &[
                &text(stream),
                &vec![0_i32],
                &vec![-1_i64],
                &vec![1_i64],
                &text(&format!("raw-{tag}")),
                &text(""),
                &text(""),
                &text("{}"),
                &vec![1_i64],
                &vec![1_i64],
                &text(&format!("type-{tag}")),
                &vec![1_i64],
                &vec![data],
            ],
        )
        .await
        .unwrap();
    row.get(1)
}

fn streams(events: &[RecordedEvent]) -> Vec<&str> {
    events.iter().map(|e| &*e.stream).collect()
}

/// Polls `read_all` from `from` a few times over a while, without waiting for held back
/// events; each poll must return `expected`.
async fn keeps_returning(store: &PostgresStore, from: u64, expected: &[&str]) {
    let store = store_in(
        store,
        PostgresOptions::default().read_all_wait(Duration::ZERO),
    )
    .await;
    for _ in 0..5 {
        let events = store.read_all(from, 100).await.unwrap();
        assert_eq!(streams(&events), expected);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_commit_waits_for_an_earlier_open_transaction() {
    let store = store().await;
    let a = raw_client(&url(), store.schema()).await;
    a.batch_execute("BEGIN").await.unwrap();
    // A takes its position first...
    append_raw(&a, "a", "a").await;
    // ...B takes a later one and commits.
    store
        .append("b", ExpectedVersion::NoStream, vec![event("b")], meta("b"))
        .await
        .unwrap();
    // While A is open, B's event is held back: a reader that saw it could later miss A's.
    keeps_returning(&store, 0, &[]).await;
    a.batch_execute("COMMIT").await.unwrap();
    let events = store.read_all(0, 100).await.unwrap();
    assert_eq!(streams(&events), ["a", "b"], "both, in position order");
    assert!(events[0].position < events[1].position);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolled_back_transaction_releases_the_events_after_it() {
    let store = store().await;
    let a = raw_client(&url(), store.schema()).await;
    a.batch_execute("BEGIN").await.unwrap();
    append_raw(&a, "a", "a").await;
    store
        .append("b", ExpectedVersion::NoStream, vec![event("b")], meta("b"))
        .await
        .unwrap();
    keeps_returning(&store, 0, &[]).await;
    a.batch_execute("ROLLBACK").await.unwrap();
    let events = store.read_all(0, 100).await.unwrap();
    assert_eq!(streams(&events), ["b"]);
}

/// The case a sequence gets wrong: the transaction that started first (older id) writes its
/// event after a younger one wrote, and commits first. With positions from a sequence its
/// event would take the higher position, be returned, and a reader moving past it would never
/// see the younger transaction's lower position once that commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_transaction_writing_last_cannot_make_a_reader_skip_a_younger_one() {
    let store = store().await;
    let old = raw_client(&url(), store.schema()).await;
    let young = raw_client(&url(), store.schema()).await;
    old.batch_execute("BEGIN").await.unwrap();
    let old_id: String = old
        .query_one("SELECT pg_current_xact_id()::text", &[])
        .await
        .unwrap()
        .get(0);
    young.batch_execute("BEGIN").await.unwrap();
    append_raw(&young, "young", "young").await;
    let young_id: String = young
        .query_one("SELECT pg_current_xact_id()::text", &[])
        .await
        .unwrap()
        .get(0);
    assert!(
        old_id.parse::<u64>().unwrap() < young_id.parse::<u64>().unwrap(),
        "the set-up gives the old transaction the older id"
    );
    append_raw(&old, "old", "old").await;
    old.batch_execute("COMMIT").await.unwrap();

    // A reader following the global order: it sees the old transaction's event...
    let first = store.read_all(0, 100).await.unwrap();
    assert_eq!(streams(&first), ["old"]);
    let next = first[0].position + 1;
    keeps_returning(&store, next, &[]).await;
    // ...and, once the young one commits, its event after it: nothing was skipped.
    young.batch_execute("COMMIT").await.unwrap();
    let then = store.read_all(next, 100).await.unwrap();
    assert_eq!(streams(&then), ["young"]);
    assert_eq!(
        streams(&store.read_all(0, 100).await.unwrap()),
        ["old", "young"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_appends_in_one_transaction_take_consecutive_positions() {
    let store = store().await;
    let client = raw_client(&url(), store.schema()).await;
    client.batch_execute("BEGIN").await.unwrap();
    append_raw(&client, "x", "1").await;
    append_raw(&client, "y", "2").await;
    assert_eq!(append_raw(&client, "x", "3").await, 0);
    client.batch_execute("COMMIT").await.unwrap();
    let events = store.read_all(0, 100).await.unwrap();
    assert_eq!(streams(&events), ["x", "y", "x"]);
    assert_eq!(events[1].position, events[0].position + 1);
    assert_eq!(events[2].position, events[0].position + 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_all_waits_for_an_older_transaction_to_return_what_was_committed_before_it() {
    let store = store().await;
    let a = raw_client(&url(), store.schema()).await;
    a.batch_execute("BEGIN").await.unwrap();
    append_raw(&a, "a", "a").await;
    store
        .append("b", ExpectedVersion::NoStream, vec![event("b")], meta("b"))
        .await
        .unwrap();
    let committer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        a.batch_execute("COMMIT").await.unwrap();
    });
    // Called while A is open, it returns once A committed, with both.
    let events = store.read_all(0, 100).await.unwrap();
    assert_eq!(streams(&events), ["a", "b"]);
    committer.await.unwrap();
}
