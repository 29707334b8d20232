//! The conformance suite every event, snapshot and state store must pass.
//!
//! Each check is a public async function taking a fresh, empty store. A store crate runs them
//! all with one macro call in its tests, one test per check:
//!
//! ```
//! use switchyard_aggregates::store::MemoryStore;
//!
//! switchyard_aggregates::event_store_conformance!(async { MemoryStore::new() });
//! ```
//!
//! The checks pin the semantics users rely on: expected-version rules, exactly one winner per
//! version under concurrent appenders, paging, soft and hard delete, the global order and the
//! position an append reports, message-id
//! look-up, metadata and large payloads; snapshots and their removal; states, with optimistic
//! concurrency on saving and removing them; the longest names the [`names`](crate::names) rule
//! allows, and names that break it refused by the [`Repo`] before the store.

// The suite reports a broken rule by panicking, as `assert!` does.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use switchyard_messaging::Message;

use crate::names::{MAX_ID_BYTES, MAX_STREAM_BYTES, NameError};
use crate::store::{
    AppendError, DeleteMode, EventMetadata, EventStore, ExpectedVersion, NewEvent, RecordedEvent,
    SnapshotStore, StateStore, StoredState,
};
use crate::{Aggregate, AggregateState, Repo, RepoError};

fn event(tag: &str) -> NewEvent {
    NewEvent {
        event_type: format!("type-{tag}").into(),
        schema_version: 1,
        data: format!("data-{tag}").into_bytes().into(),
    }
}

fn meta(message_id: &str) -> EventMetadata {
    EventMetadata {
        message_id: message_id.to_owned(),
        correlation_id: format!("corr-{message_id}"),
        causation_id: format!("cause-{message_id}"),
        user: BTreeMap::from([("tenant".to_owned(), "acme".to_owned())]),
    }
}

async fn read<S: EventStore + ?Sized>(store: &S, stream: &str, from: i64) -> Vec<RecordedEvent> {
    let mut pages = store.read_stream(stream, from, 1_000);
    let mut all = Vec::new();
    while let Some(page) = pages.next().await {
        all.extend(page.expect("read_stream failed"));
    }
    all
}

fn assert_conflict(result: Result<i64, AppendError>, actual: Option<i64>, what: &str) {
    match result {
        Err(AppendError::Conflict { actual: found, .. }) => {
            assert_eq!(found, actual, "{what}: conflict reports the actual version");
        }
        other => panic!("{what}: expected a conflict, got {other:?}"),
    }
}

/// Appended events read back in order with their type, schema version, data and metadata.
pub async fn append_and_read_back<S: EventStore + ?Sized>(store: &S) {
    let version = store
        .append(
            "s-1",
            ExpectedVersion::NoStream,
            vec![event("a"), event("b"), event("c")],
            meta("m-1"),
        )
        .await
        .expect("append to a new stream");
    assert_eq!(version, 2);
    assert!(store.has_stream("s-1").await.unwrap());
    assert!(!store.has_stream("s-2").await.unwrap());
    let events = read(store, "s-1", 0).await;
    assert_eq!(events.len(), 3);
    for (index, (recorded, tag)) in events.iter().zip(["a", "b", "c"]).enumerate() {
        assert_eq!(&*recorded.stream, "s-1");
        assert_eq!(recorded.version, index as i64);
        assert_eq!(&*recorded.event_type, format!("type-{tag}"));
        assert_eq!(recorded.schema_version, 1);
        assert_eq!(&recorded.data[..], format!("data-{tag}").as_bytes());
        assert_eq!(*recorded.metadata, meta("m-1"));
    }
    assert!(events.windows(2).all(|w| w[0].position < w[1].position));
    assert!(read(store, "missing", 0).await.is_empty());
}

/// `NoStream`, `Exactly` and `Any` are enforced, and a refused append writes nothing.
pub async fn expected_version_rules<S: EventStore + ?Sized>(store: &S) {
    assert_conflict(
        store
            .append(
                "s",
                ExpectedVersion::Exactly(3),
                vec![event("x")],
                meta("m"),
            )
            .await,
        None,
        "Exactly on a missing stream",
    );
    store
        .append(
            "s",
            ExpectedVersion::Exactly(-1),
            vec![event("a")],
            meta("m-1"),
        )
        .await
        .expect("Exactly(-1) creates the stream");
    assert_conflict(
        store
            .append("s", ExpectedVersion::NoStream, vec![event("x")], meta("m"))
            .await,
        Some(0),
        "NoStream on an existing stream",
    );
    assert_conflict(
        store
            .append(
                "s",
                ExpectedVersion::Exactly(5),
                vec![event("x")],
                meta("m"),
            )
            .await,
        Some(0),
        "a stale Exactly",
    );
    assert_eq!(
        store
            .append(
                "s",
                ExpectedVersion::Exactly(0),
                vec![event("b")],
                meta("m-2")
            )
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store
            .append("s", ExpectedVersion::Any, vec![event("c")], meta("m-3"))
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        read(store, "s", 0).await.len(),
        3,
        "refused appends wrote nothing"
    );
    assert_eq!(
        store
            .append("s", ExpectedVersion::Exactly(2), Vec::new(), meta("m-4"))
            .await
            .unwrap(),
        2,
        "an empty append returns the current version"
    );
    assert_eq!(
        store
            .append("empty", ExpectedVersion::NoStream, Vec::new(), meta("m-5"))
            .await
            .unwrap(),
        -1,
        "an empty append to a missing stream creates nothing"
    );
    assert!(!store.has_stream("empty").await.unwrap());
}

/// Many writers racing on one stream: exactly one winner per version, nothing lost or doubled.
pub async fn concurrent_appenders_on_one_stream<S: EventStore + ?Sized>(store: &S) {
    const WRITERS: usize = 20;
    const APPENDS: usize = 10;
    let writer = |w: usize| async move {
        for i in 0..APPENDS {
            loop {
                let current = read(store, "race", 0)
                    .await
                    .last()
                    .map_or(-1, |e| e.version);
                let expected = if current < 0 {
                    ExpectedVersion::NoStream
                } else {
                    ExpectedVersion::Exactly(current)
                };
                let tag = format!("{w}-{i}");
                match store
                    .append("race", expected, vec![event(&tag)], meta(&tag))
                    .await
                {
                    Ok(_) => break,
                    Err(AppendError::Conflict { .. }) => continue,
                    Err(other) => panic!("append failed: {other}"),
                }
            }
        }
    };
    futures::future::join_all((0..WRITERS).map(writer)).await;
    let events = read(store, "race", 0).await;
    assert_eq!(events.len(), WRITERS * APPENDS);
    for (index, recorded) in events.iter().enumerate() {
        assert_eq!(recorded.version, index as i64, "versions have no gap");
    }
    let tags: HashSet<_> = events.iter().map(|e| e.data.clone()).collect();
    assert_eq!(tags.len(), WRITERS * APPENDS, "no event recorded twice");

    let winners = futures::future::join_all((0..50).map(|w| async move {
        store
            .append(
                "race",
                ExpectedVersion::Exactly((WRITERS * APPENDS) as i64 - 1),
                vec![event(&format!("winner-{w}"))],
                meta(&format!("winner-{w}")),
            )
            .await
            .is_ok()
    }))
    .await;
    assert_eq!(
        winners.iter().filter(|won| **won).count(),
        1,
        "one winner per version"
    );
}

/// Streams read in pages of the size asked, from any version.
pub async fn paging<S: EventStore + ?Sized>(store: &S) {
    let events: Vec<_> = (0..25).map(|i| event(&i.to_string())).collect();
    store
        .append("paged", ExpectedVersion::NoStream, events, meta("m"))
        .await
        .unwrap();
    let mut pages = store.read_stream("paged", 0, 10);
    let mut sizes = Vec::new();
    while let Some(page) = pages.next().await {
        sizes.push(page.unwrap().len());
    }
    assert_eq!(sizes, [10, 10, 5]);
    let tail = read(store, "paged", 7).await;
    assert_eq!(tail.len(), 18);
    assert_eq!(tail[0].version, 7);
}

/// After a soft delete the stream reads as not found, `NoStream` conflicts, and its versions
/// are never reused.
pub async fn soft_delete<S: EventStore + ?Sized>(store: &S) {
    store
        .append(
            "soft",
            ExpectedVersion::NoStream,
            vec![event("a"), event("b")],
            meta("m-1"),
        )
        .await
        .unwrap();
    store
        .delete_stream("soft", DeleteMode::Soft, ExpectedVersion::Exactly(1))
        .await
        .expect("soft delete");
    assert!(!store.has_stream("soft").await.unwrap());
    assert!(read(store, "soft", 0).await.is_empty());
    assert_eq!(store.find_message("soft", "m-1").await.unwrap(), None);
    assert_conflict(
        store
            .append(
                "soft",
                ExpectedVersion::NoStream,
                vec![event("x")],
                meta("m"),
            )
            .await,
        Some(1),
        "NoStream after a soft delete",
    );
    let version = store
        .append("soft", ExpectedVersion::Any, vec![event("c")], meta("m-2"))
        .await
        .unwrap();
    assert_eq!(version, 2, "versions are not reused");
    let visible = read(store, "soft", 0).await;
    assert_eq!(visible.len(), 1);
    assert_eq!(visible[0].version, 2);
    assert!(store.has_stream("soft").await.unwrap());
}

/// After a hard delete the stream is gone, from the global order too, and starts again at 0.
pub async fn hard_delete<S: EventStore + ?Sized>(store: &S) {
    store
        .append(
            "hard",
            ExpectedVersion::NoStream,
            vec![event("a"), event("b")],
            meta("m-1"),
        )
        .await
        .unwrap();
    store
        .append(
            "other",
            ExpectedVersion::NoStream,
            vec![event("o")],
            meta("m-2"),
        )
        .await
        .unwrap();
    assert_conflict(
        store
            .delete_stream("hard", DeleteMode::Hard, ExpectedVersion::Exactly(7))
            .await
            .map(|()| 0),
        Some(1),
        "a delete at the wrong version",
    );
    store
        .delete_stream("hard", DeleteMode::Hard, ExpectedVersion::Any)
        .await
        .unwrap();
    assert!(!store.has_stream("hard").await.unwrap());
    let all = store.read_all(0, 1_000).await.unwrap();
    assert!(
        all.iter().all(|e| &*e.stream != "hard"),
        "hard-deleted events left the global order"
    );
    assert_eq!(all.len(), 1);
    assert_eq!(
        store
            .append(
                "hard",
                ExpectedVersion::NoStream,
                vec![event("new")],
                meta("m-3")
            )
            .await
            .unwrap(),
        0
    );
}

/// `read_all` returns every stream's events in one strictly increasing order, from a position,
/// up to a limit.
pub async fn global_order<S: EventStore + ?Sized>(store: &S) {
    for round in 0..5 {
        for stream in ["g-a", "g-b", "g-c"] {
            store
                .append(
                    stream,
                    ExpectedVersion::Any,
                    vec![event(&format!("{stream}-{round}"))],
                    meta(&format!("m-{round}")),
                )
                .await
                .unwrap();
        }
    }
    let all = store.read_all(0, 1_000).await.unwrap();
    assert_eq!(all.len(), 15);
    assert_eq!(
        store.read_all(0, usize::MAX).await.unwrap().len(),
        15,
        "a limit beyond any count means everything"
    );
    assert!(all.windows(2).all(|w| w[0].position < w[1].position));
    let expected: Vec<String> = (0..5)
        .flat_map(|round| ["g-a", "g-b", "g-c"].map(|s| format!("data-{s}-{round}")))
        .collect();
    let found: Vec<String> = all
        .iter()
        .map(|e| String::from_utf8_lossy(&e.data).into_owned())
        .collect();
    assert_eq!(found, expected, "global order is append order");
    let from = all[6].position;
    let tail = store.read_all(from, 4).await.unwrap();
    assert_eq!(tail.len(), 4);
    assert_eq!(tail[0].position, from);
}

/// [`append_at`](crate::store::EventAppender::append_at) reports the stream's version and the
/// position [`read_all`](crate::store::GlobalReader::read_all) shows for the append's last event
/// (what a reply's position, and so read-your-writes, rests on); no position for an append of
/// no events.
pub async fn append_reports_the_position<S: EventStore + ?Sized>(store: &S) {
    for (round, (stream, count)) in [("p-a", 1), ("p-b", 3), ("p-a", 2)].into_iter().enumerate() {
        let events = (0..count)
            .map(|n| event(&format!("{stream}-{round}-{n}")))
            .collect();
        let appended = store
            .append_at(
                stream,
                ExpectedVersion::Any,
                events,
                meta(&format!("m-{round}")),
            )
            .await
            .unwrap();
        let all = store.read_all(0, 1_000).await.unwrap();
        let last = all.last().unwrap();
        assert_eq!(
            (appended.version, appended.position),
            (last.version, Some(last.position)),
            "append {round} reports its last event's version and position"
        );
        assert_eq!(last.stream.as_ref(), stream);
    }
    let empty = store
        .append_at(
            "p-b",
            ExpectedVersion::Exactly(2),
            Vec::new(),
            meta("m-empty"),
        )
        .await
        .unwrap();
    assert_eq!((empty.version, empty.position), (2, None));
}

/// A message id is found in the stream it recorded events in, at its last event's version.
pub async fn message_id_lookup<S: EventStore + ?Sized>(store: &S) {
    store
        .append(
            "l",
            ExpectedVersion::NoStream,
            vec![event("a"), event("b")],
            meta("first"),
        )
        .await
        .unwrap();
    store
        .append(
            "l",
            ExpectedVersion::Exactly(1),
            vec![event("c")],
            meta("second"),
        )
        .await
        .unwrap();
    assert_eq!(store.find_message("l", "first").await.unwrap(), Some(1));
    assert_eq!(store.find_message("l", "second").await.unwrap(), Some(2));
    assert_eq!(store.find_message("l", "never").await.unwrap(), None);
    assert_eq!(store.find_message("other", "first").await.unwrap(), None);
}

/// A 1 MiB event and unusual metadata survive as they were.
pub async fn large_payloads_and_metadata<S: EventStore + ?Sized>(store: &S) {
    let data: Vec<u8> = (0..1_048_576_u32).map(|i| (i % 251) as u8).collect();
    let metadata = EventMetadata {
        message_id: "m-ünïcode-✓".into(),
        correlation_id: String::new(),
        causation_id: "c".repeat(300),
        user: BTreeMap::from([
            ("k".into(), "v\nwith\"quotes'".into()),
            ("empty".into(), String::new()),
        ]),
    };
    store
        .append(
            "big",
            ExpectedVersion::NoStream,
            vec![NewEvent {
                event_type: "big".into(),
                schema_version: 7,
                data: data.clone().into(),
            }],
            metadata.clone(),
        )
        .await
        .unwrap();
    let events = read(store, "big", 0).await;
    assert_eq!(events.len(), 1);
    assert_eq!(&events[0].data[..], &data[..]);
    assert_eq!(events[0].schema_version, 7);
    assert_eq!(*events[0].metadata, metadata);
}

/// A hard delete removes the stream's snapshot too, so a stream created again does not start
/// from its former life's state.
pub async fn hard_delete_removes_the_snapshot<S: EventStore + SnapshotStore + ?Sized>(store: &S) {
    store
        .append(
            "gone",
            ExpectedVersion::NoStream,
            vec![event("a")],
            meta("m-1"),
        )
        .await
        .unwrap();
    let snapshot = StoredState {
        version: 0,
        schema_version: 1,
        data: vec![1].into(),
    };
    store.save_snapshot("gone", snapshot).await.unwrap();
    store
        .delete_stream("gone", DeleteMode::Hard, ExpectedVersion::Any)
        .await
        .unwrap();
    assert_eq!(store.load_snapshot("gone").await.unwrap(), None);
}

/// The latest snapshot is kept per stream.
pub async fn snapshots<S: SnapshotStore + ?Sized>(store: &S) {
    assert_eq!(store.load_snapshot("snap").await.unwrap(), None);
    let first = StoredState {
        version: 9,
        schema_version: 1,
        data: vec![1, 2, 3].into(),
    };
    store.save_snapshot("snap", first.clone()).await.unwrap();
    assert_eq!(store.load_snapshot("snap").await.unwrap(), Some(first));
    let second = StoredState {
        version: 19,
        schema_version: 2,
        data: vec![4].into(),
    };
    store.save_snapshot("snap", second.clone()).await.unwrap();
    assert_eq!(store.load_snapshot("snap").await.unwrap(), Some(second));
    assert_eq!(store.load_snapshot("other").await.unwrap(), None);
}

/// A snapshot can be removed, whether or not the store also keeps the stream's events; removing
/// a missing one is not an error.
pub async fn snapshot_delete<S: SnapshotStore + ?Sized>(store: &S) {
    let snapshot = StoredState {
        version: 4,
        schema_version: 1,
        data: vec![1].into(),
    };
    store
        .save_snapshot("snap-del", snapshot.clone())
        .await
        .unwrap();
    store
        .save_snapshot("snap-kept", snapshot.clone())
        .await
        .unwrap();
    store
        .delete_snapshot("snap-del")
        .await
        .expect("delete_snapshot");
    assert_eq!(store.load_snapshot("snap-del").await.unwrap(), None);
    assert_eq!(
        store.load_snapshot("snap-kept").await.unwrap(),
        Some(snapshot),
        "other streams' snapshots stay"
    );
    store
        .delete_snapshot("snap-del")
        .await
        .expect("removing a missing snapshot is not an error");
}

/// A state is removed only at the expected version, and can then be saved anew.
pub async fn state_delete<S: StateStore + ?Sized>(store: &S) {
    let at = |version: i64| StoredState {
        version,
        schema_version: 1,
        data: version.to_le_bytes().to_vec().into(),
    };
    store
        .delete_state("st-del", ExpectedVersion::Any)
        .await
        .expect("removing a missing state with Any is not an error");
    store
        .save_state("st-del", at(2), ExpectedVersion::NoStream)
        .await
        .unwrap();
    for wrong in [ExpectedVersion::NoStream, ExpectedVersion::Exactly(1)] {
        assert!(
            matches!(
                store.delete_state("st-del", wrong).await,
                Err(AppendError::Conflict {
                    actual: Some(2),
                    ..
                })
            ),
            "a delete expecting {wrong:?} conflicts"
        );
    }
    assert_eq!(store.load_state("st-del").await.unwrap(), Some(at(2)));
    store
        .delete_state("st-del", ExpectedVersion::Exactly(2))
        .await
        .expect("delete_state at the stored version");
    assert_eq!(store.load_state("st-del").await.unwrap(), None);
    assert!(matches!(
        store
            .delete_state("st-del", ExpectedVersion::Exactly(2))
            .await,
        Err(AppendError::Conflict { actual: None, .. })
    ));
    store
        .save_state("st-del", at(0), ExpectedVersion::NoStream)
        .await
        .expect("a removed state can be created again");
}

/// States are saved with optimistic concurrency on their version.
pub async fn states<S: StateStore + ?Sized>(store: &S) {
    let at = |version: i64| StoredState {
        version,
        schema_version: 1,
        data: version.to_le_bytes().to_vec().into(),
    };
    assert_eq!(store.load_state("st").await.unwrap(), None);
    store
        .save_state("st", at(0), ExpectedVersion::NoStream)
        .await
        .unwrap();
    assert!(matches!(
        store
            .save_state("st", at(0), ExpectedVersion::NoStream)
            .await,
        Err(AppendError::Conflict {
            actual: Some(0),
            ..
        })
    ));
    store
        .save_state("st", at(3), ExpectedVersion::Exactly(0))
        .await
        .unwrap();
    assert!(matches!(
        store
            .save_state("st", at(4), ExpectedVersion::Exactly(0))
            .await,
        Err(AppendError::Conflict {
            actual: Some(3),
            ..
        })
    ));
    assert_eq!(store.load_state("st").await.unwrap(), Some(at(3)));
}

/// The longest names the [`names`](crate::names) rule allows, in several scripts, are stored
/// and read back as given: streams, event types and message ids alike, in events, snapshots and
/// states.
pub async fn the_longest_names_are_kept<S: EventStore + SnapshotStore + StateStore + ?Sized>(
    store: &S,
) {
    // Two-byte characters fill the stream name, four-byte ones the event type.
    let stream = "ü".repeat(MAX_STREAM_BYTES / 2);
    let event_type = "🚂".repeat(MAX_ID_BYTES / 4);
    let message_id = "m".repeat(MAX_ID_BYTES);
    assert_eq!(
        (stream.len(), event_type.len()),
        (MAX_STREAM_BYTES, MAX_ID_BYTES)
    );
    let new = NewEvent {
        event_type: event_type.clone().into(),
        schema_version: 1,
        data: vec![1].into(),
    };
    let metadata = EventMetadata {
        message_id: message_id.clone(),
        correlation_id: "c".repeat(MAX_ID_BYTES),
        causation_id: "k".repeat(MAX_ID_BYTES),
        user: BTreeMap::new(),
    };
    store
        .append(
            &stream,
            ExpectedVersion::NoStream,
            vec![new],
            metadata.clone(),
        )
        .await
        .expect("an append with the longest names");
    let events = read(store, &stream, 0).await;
    assert_eq!(events.len(), 1);
    assert_eq!(
        (&*events[0].stream, &*events[0].event_type),
        (&*stream, &*event_type)
    );
    assert_eq!(*events[0].metadata, metadata);
    assert_eq!(
        store.find_message(&stream, &message_id).await.unwrap(),
        Some(0)
    );
    let saved = StoredState {
        version: 0,
        schema_version: 1,
        data: vec![2].into(),
    };
    store.save_snapshot(&stream, saved.clone()).await.unwrap();
    assert_eq!(
        store.load_snapshot(&stream).await.unwrap(),
        Some(saved.clone())
    );
    store
        .save_state(&stream, saved.clone(), ExpectedVersion::NoStream)
        .await
        .unwrap();
    assert_eq!(store.load_state(&stream).await.unwrap(), Some(saved));
}

/// An aggregate whose second event type breaks the names rule.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Probe {
    events: u32,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
enum ProbeEvent {
    Fine,
    BadlyNamed,
}

impl Aggregate for Probe {
    type Event = ProbeEvent;
    const NAME: &'static str = "probe";

    fn apply(&mut self, _: &ProbeEvent) {
        self.events += 1;
    }

    fn event_type(event: &ProbeEvent) -> &'static str {
        match event {
            ProbeEvent::Fine => "Fine",
            ProbeEvent::BadlyNamed => "Badly\0Named",
        }
    }
}

#[track_caller]
fn assert_invalid_name<T: std::fmt::Debug>(result: Result<T, RepoError>, what: &str) {
    match result {
        Err(RepoError::InvalidName(error)) => {
            let text = error.to_string();
            assert!(
                text.contains("bytes of UTF-8 without control characters"),
                "{what}: the error states the rule: {text}"
            );
        }
        other => panic!("{what}: expected RepoError::InvalidName, got {other:?}"),
    }
}

/// Ids and event types that break the [`names`](crate::names) rule (empty, 1 MB, with a NUL
/// byte or a newline) are refused by the [`Repo`] with [`RepoError::InvalidName`], whatever the
/// store, and nothing reaches the store; an id of the greatest length is stored.
pub async fn the_repo_refuses_names_that_break_the_rule<S>(store: Arc<S>)
where
    S: EventStore + StateStore + 'static,
{
    let events = Repo::<Probe>::event_sourced(store.clone());
    let states = Repo::<Probe>::state_based(store.clone());
    let cause = Message::new("probe");
    let huge = "x".repeat(1 << 20);
    for id in ["", "nul\0byte", "new\nline", huge.as_str()] {
        let what = format!("id {:?}", id.get(..12).unwrap_or(id));
        for repo in [&events, &states] {
            let mut state = AggregateState::<Probe>::default();
            let committed = repo
                .commit(
                    id,
                    &mut state,
                    vec![ProbeEvent::Fine],
                    &cause,
                    BTreeMap::new(),
                )
                .await;
            assert_invalid_name(committed, &format!("commit with {what}"));
            assert_invalid_name(repo.load(id).await, &format!("load with {what}"));
            assert_invalid_name(repo.exists(id).await, &format!("exists with {what}"));
            assert_invalid_name(
                repo.delete(id, DeleteMode::Hard, ExpectedVersion::Any)
                    .await,
                &format!("delete with {what}"),
            );
        }
        assert_invalid_name(events.events(id).await, &format!("events with {what}"));
    }
    let mut state = AggregateState::<Probe>::default();
    let bad_type = events
        .commit(
            "fine-id",
            &mut state,
            vec![ProbeEvent::BadlyNamed],
            &cause,
            BTreeMap::new(),
        )
        .await;
    assert_invalid_name(bad_type, "an event type with a NUL byte");
    let bad_id = Message::new("probe").with_id("m\0");
    let mut state = AggregateState::<Probe>::default();
    let bad_message = events
        .commit(
            "fine-id",
            &mut state,
            vec![ProbeEvent::Fine],
            &bad_id,
            BTreeMap::new(),
        )
        .await;
    assert!(
        matches!(
            bad_message,
            Err(RepoError::InvalidName(NameError::ControlCharacter { .. }))
        ),
        "a message id with a NUL byte: {bad_message:?}"
    );
    assert!(
        store.read_all(0, 10).await.unwrap().is_empty(),
        "nothing reached the store"
    );

    let longest = "ü".repeat(MAX_ID_BYTES / 2);
    for repo in [&events, &states] {
        let mut state = AggregateState::<Probe>::default();
        repo.commit(
            &longest,
            &mut state,
            vec![ProbeEvent::Fine],
            &cause,
            BTreeMap::new(),
        )
        .await
        .expect("an id of the greatest length");
        let loaded = repo.load(&longest).await.unwrap().expect("stored");
        assert_eq!((loaded.state.events, loaded.version), (1, 0));
    }
}

/// A message records events in a stream at most once: a second append with its id is refused
/// with [`AppendError::Duplicate`] naming the version the first one reached, after the version
/// check, and writes nothing; other streams, empty ids, empty appends and ids whose events were
/// soft-deleted are not refused.
pub async fn a_message_records_once_per_stream<S: EventStore + ?Sized>(store: &S) {
    store
        .append(
            "d",
            ExpectedVersion::NoStream,
            vec![event("a"), event("b")],
            meta("once"),
        )
        .await
        .unwrap();
    match store
        .append(
            "d",
            ExpectedVersion::Exactly(1),
            vec![event("c")],
            meta("once"),
        )
        .await
    {
        Err(AppendError::Duplicate {
            stream,
            message_id,
            version,
        }) => assert_eq!((&*stream, &*message_id, version), ("d", "once", 1)),
        other => panic!("a second append of message `once` must be a duplicate, got {other:?}"),
    }
    assert_conflict(
        store
            .append(
                "d",
                ExpectedVersion::Exactly(7),
                vec![event("c")],
                meta("once"),
            )
            .await,
        Some(1),
        "the version is checked before the message id",
    );
    assert_eq!(
        read(store, "d", 0).await.len(),
        2,
        "a duplicate writes nothing"
    );
    assert_eq!(
        store
            .append("d", ExpectedVersion::Exactly(1), Vec::new(), meta("once"))
            .await
            .unwrap(),
        1,
        "an empty append only checks the version"
    );
    store
        .append(
            "d2",
            ExpectedVersion::NoStream,
            vec![event("a")],
            meta("once"),
        )
        .await
        .expect("another stream may record the same message");
    for round in 0..2 {
        store
            .append("d", ExpectedVersion::Any, vec![event("e")], meta(""))
            .await
            .unwrap_or_else(|error| panic!("empty ids are never duplicates ({round}): {error}"));
    }
    store
        .delete_stream("d", DeleteMode::Soft, ExpectedVersion::Any)
        .await
        .unwrap();
    store
        .append("d", ExpectedVersion::Any, vec![event("f")], meta("once"))
        .await
        .expect("a message whose events were soft-deleted may record again");
}

/// Generates one `#[tokio::test]` per conformance check, each with a fresh store from `$make`,
/// an expression whose value is a future of a store implementing every store trait.
#[macro_export]
macro_rules! event_store_conformance {
    ($make:expr) => {
        #[cfg(test)]
        mod event_store_conformance {
            #[allow(unused_imports)]
            use super::*;

            macro_rules! check {
                ($name:ident) => {
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $name() {
                        let store = $make.await;
                        $crate::conformance::$name(&store).await;
                    }
                };
            }

            macro_rules! check_shared {
                ($name:ident) => {
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $name() {
                        let store = ::std::sync::Arc::new($make.await);
                        $crate::conformance::$name(store).await;
                    }
                };
            }

            check!(append_and_read_back);
            check!(expected_version_rules);
            check!(concurrent_appenders_on_one_stream);
            check!(paging);
            check!(soft_delete);
            check!(hard_delete);
            check!(global_order);
            check!(append_reports_the_position);
            check!(message_id_lookup);
            check!(a_message_records_once_per_stream);
            check!(large_payloads_and_metadata);
            check!(hard_delete_removes_the_snapshot);
            check!(snapshots);
            check!(snapshot_delete);
            check!(states);
            check!(state_delete);
            check!(the_longest_names_are_kept);
            check_shared!(the_repo_refuses_names_that_break_the_rule);
        }
    };
}
