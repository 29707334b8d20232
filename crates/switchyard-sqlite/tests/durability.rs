//! What a file keeps: across a reopen, across a SIGKILL in the middle of writes; and what
//! group commit guarantees to each of many concurrent writers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Tests fail loudly.

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use futures::StreamExt;
use switchyard_aggregates::store::{
    AppendError, EventAppender, EventMetadata, EventReader, ExpectedVersion, GlobalReader,
    NewEvent, RecordedEvent, SnapshotStore, StoredState,
};
use switchyard_sqlite::{SqliteError, SqliteOptions, SqliteStore, Synchronous};

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("sqlite-durability")
        .join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("store.db")
}

fn event(data: String) -> NewEvent {
    NewEvent {
        event_type: "written".into(),
        schema_version: 1,
        data: data.into_bytes().into(),
    }
}

fn meta(message_id: &str) -> EventMetadata {
    EventMetadata {
        message_id: message_id.into(),
        ..EventMetadata::default()
    }
}

async fn read(store: &SqliteStore, stream: &str) -> Vec<RecordedEvent> {
    let mut pages = store.read_stream(stream, 0, 500);
    let mut all = Vec::new();
    while let Some(page) = pages.next().await {
        all.extend(page.unwrap());
    }
    all
}

#[tokio::test]
async fn a_file_keeps_everything_across_a_reopen() {
    let path = scratch("reopen");
    let before = SystemTime::now() - Duration::from_secs(1);
    {
        let store = SqliteStore::open(&path).unwrap();
        store
            .append(
                "kept",
                ExpectedVersion::NoStream,
                vec![event("a".into()), event("b".into())],
                meta("m-1"),
            )
            .await
            .unwrap();
        let snapshot = StoredState {
            version: 1,
            schema_version: 3,
            data: vec![9, 9].into(),
        };
        store.save_snapshot("kept", snapshot).await.unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    let events = read(&store, "kept").await;
    assert_eq!(events.len(), 2);
    assert_eq!(&events[1].data[..], b"b");
    assert!(events[0].recorded_at >= before && events[0].recorded_at <= SystemTime::now());
    assert_eq!(store.find_message("kept", "m-1").await.unwrap(), Some(1));
    assert_eq!(
        store
            .load_snapshot("kept")
            .await
            .unwrap()
            .map(|s| s.version),
        Some(1)
    );
    let next = store
        .append(
            "kept",
            ExpectedVersion::Exactly(1),
            vec![event("c".into())],
            meta("m-2"),
        )
        .await
        .unwrap();
    assert_eq!(next, 2, "versions go on where they stopped");
    let positions: Vec<u64> = store
        .read_all(0, 10)
        .await
        .unwrap()
        .iter()
        .map(|e| e.position)
        .collect();
    assert_eq!(positions, [1, 2, 3]);
}

/// Each of 50 writers appends to its own stream and to one shared stream at once: group
/// commit batches them, a conflict fails only its own write, nothing is lost or doubled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_writers_lose_and_double_nothing() {
    for synchronous in [Synchronous::Full, Synchronous::Normal] {
        let path = scratch(&format!("fifty-{synchronous:?}"));
        let store =
            SqliteStore::open_with(&path, SqliteOptions::default().synchronous(synchronous))
                .unwrap();
        let writers = (0..50).map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut conflicts = 0;
                for n in 0..20_i64 {
                    let own = format!("own-{w}");
                    let expected = if n == 0 {
                        ExpectedVersion::NoStream
                    } else {
                        ExpectedVersion::Exactly(n - 1)
                    };
                    let version = store
                        .append(
                            &own,
                            expected,
                            vec![event(format!("{w}-{n}"))],
                            meta(&format!("own-{w}-{n}")),
                        )
                        .await
                        .unwrap();
                    assert_eq!(version, n);
                    loop {
                        let current = store
                            .append("shared", ExpectedVersion::Any, Vec::new(), meta(""))
                            .await
                            .unwrap();
                        let expected = ExpectedVersion::Exactly(current);
                        let data = format!("shared {w}-{n}");
                        match store
                            .append(
                                "shared",
                                expected,
                                vec![event(data)],
                                meta(&format!("shared-{w}-{n}")),
                            )
                            .await
                        {
                            Ok(_) => break,
                            Err(AppendError::Conflict { .. }) => conflicts += 1,
                            Err(other) => panic!("{other}"),
                        }
                    }
                }
                conflicts
            })
        });
        let conflicts: usize = futures::future::join_all(writers)
            .await
            .into_iter()
            .map(Result::unwrap)
            .sum();
        for w in 0..50 {
            let events = read(&store, &format!("own-{w}")).await;
            let data: Vec<String> = events
                .iter()
                .map(|e| String::from_utf8_lossy(&e.data).into_owned())
                .collect();
            let expected: Vec<String> = (0..20).map(|n| format!("{w}-{n}")).collect();
            assert_eq!(data, expected);
        }
        let shared = read(&store, "shared").await;
        assert_eq!(shared.len(), 1_000);
        assert!(
            shared
                .iter()
                .enumerate()
                .all(|(i, e)| e.version == i as i64)
        );
        let distinct: HashSet<_> = shared.iter().map(|e| e.data.clone()).collect();
        assert_eq!(distinct.len(), 1_000, "no shared event recorded twice");
        let all = store.read_all(0, 10_000).await.unwrap();
        assert_eq!(all.len(), 2_000);
        assert!(all.windows(2).all(|w| w[0].position < w[1].position));
        eprintln!("{synchronous:?}: {conflicts} conflicts retried");
    }
}

const CHILD: &str = "SWITCHYARD_SQLITE_CRASH_CHILD";
const WRITERS: usize = 8;

/// The expected content of event `version` of writer `w`'s stream: long enough to span pages.
fn payload(w: usize, version: i64) -> String {
    format!("{w}:{version}:").repeat(40)
}

/// The child process `acknowledged_events_survive_sigkill` starts (this same test, with the
/// database path in `CHILD`) and kills: it appends as fast as it can and prints each
/// acknowledged version, until it is killed.
fn crash_child(path: &str) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    runtime.block_on(async {
        let store = SqliteStore::open(path).unwrap();
        let writers = (0..WRITERS).map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                let stream = format!("crash-{w}");
                let mut last = -1_i64;
                loop {
                    // One to three events per append: an append is all or nothing.
                    let count = (last.rem_euclid(3) + 1) as usize;
                    let events = (1..=count as i64)
                        .map(|i| event(payload(w, last + i)))
                        .collect();
                    let expected = if last < 0 {
                        ExpectedVersion::NoStream
                    } else {
                        ExpectedVersion::Exactly(last)
                    };
                    last = store
                        .append(&stream, expected, events, meta(&format!("{w}-{last}")))
                        .await
                        .unwrap();
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "ack {w} {last}").unwrap();
                    out.flush().unwrap();
                }
            })
        });
        futures::future::join_all(writers).await;
    });
}

#[test]
fn acknowledged_events_survive_sigkill() {
    if let Ok(path) = std::env::var(CHILD) {
        crash_child(&path);
        return;
    }
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(kill_a_writer_and_check());
}

async fn kill_a_writer_and_check() {
    let path = scratch("sigkill");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "acknowledged_events_survive_sigkill",
            "--exact",
            "--nocapture",
        ])
        .env(CHILD, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut acknowledged: BTreeMap<usize, i64> = BTreeMap::new();
    let lines = BufReader::new(stdout).lines();
    let started = Instant::now();
    let mut killed = false;
    let mut count = 0;
    for line in lines {
        let line = line.unwrap();
        let Some(ack) = line.strip_prefix("ack ") else {
            continue;
        };
        let (w, version) = ack.split_once(' ').unwrap();
        acknowledged.insert(w.parse().unwrap(), version.parse().unwrap());
        count += 1;
        if !killed && (count >= 3_000 || started.elapsed() > Duration::from_secs(60)) {
            // SIGKILL: no destructor, no flush, whatever the writer was doing.
            child.kill().unwrap();
            killed = true;
        }
    }
    let status = child.wait().unwrap();
    assert!(killed, "the child stopped by itself: {status}");
    assert!(
        count >= 100,
        "too few acknowledgements to mean anything: {count}"
    );

    let store = SqliteStore::open(&path).unwrap();
    for w in 0..WRITERS {
        let events = read(&store, &format!("crash-{w}")).await;
        let last_acked = acknowledged.get(&w).copied().unwrap_or(-1);
        assert!(
            events.len() as i64 > last_acked,
            "writer {w}: {} events readable, version {last_acked} was acknowledged",
            events.len()
        );
        for (index, recorded) in events.iter().enumerate() {
            assert_eq!(recorded.version, index as i64, "writer {w}: no gap");
            assert_eq!(
                String::from_utf8_lossy(&recorded.data),
                payload(w, recorded.version),
                "writer {w}: event {index} intact"
            );
        }
        // Appends are of 1, 2 or 3 events; a torn append would end off that rhythm.
        let mut last = -1_i64;
        while last < events.len() as i64 - 1 {
            last += last.rem_euclid(3) + 1;
        }
        assert_eq!(last, events.len() as i64 - 1, "writer {w}: no half append");
    }
    eprintln!("{count} appends acknowledged before SIGKILL, all readable after reopening");
}

#[test]
fn opening_a_missing_directory_says_so() {
    let error = SqliteStore::open(Path::new("/nonexistent/dir/store.db")).unwrap_err();
    let message = error.to_string();
    assert!(message.contains("/nonexistent/dir/store.db"), "{message}");
    assert!(message.contains("directory exists"), "{message}");
}

#[test]
fn opening_a_file_that_is_not_a_database_says_so_not_the_directory() {
    let path = scratch("not-a-database");
    std::fs::write(&path, "these are notes, not a database\n".repeat(200)).unwrap();
    let message = SqliteStore::open(&path).unwrap_err().to_string();
    assert!(
        message.ends_with(
            "the file is not a SQLite database (or is encrypted): check the path, and give \
             Switchyard a file of its own"
        ),
        "{message}"
    );
    assert!(!message.contains("directory exists"), "{message}");
}

#[test]
fn open_existing_refuses_a_missing_file_and_creates_nothing() {
    let path = scratch("missing");
    let error = SqliteStore::open_existing(&path).unwrap_err();
    assert!(matches!(error, SqliteError::Missing { .. }), "{error:?}");
    assert_eq!(
        error.to_string(),
        format!(
            "no SQLite store at `{}`: the file does not exist; check the path, or open it with \
             `SqliteStore::open` to create a new, empty store",
            path.display()
        )
    );
    assert!(!path.exists(), "nothing was created");
}

#[tokio::test]
async fn open_existing_refuses_a_truncated_file_and_leaves_it_untouched() {
    let path = scratch("truncated");
    {
        let store = SqliteStore::open(&path).unwrap();
        store
            .append(
                "kept",
                ExpectedVersion::NoStream,
                vec![event("a".into())],
                meta("m-1"),
            )
            .await
            .unwrap();
    }
    let reopened = SqliteStore::open_existing(&path).unwrap();
    assert_eq!(
        read(&reopened, "kept").await.len(),
        1,
        "a store with data opens"
    );
    drop(reopened);

    // Truncated to 0 bytes, with the log of a store that is still closing beside it.
    let still_open = SqliteStore::open(&path).unwrap();
    std::fs::File::create(&path).unwrap();
    let error = SqliteStore::open_existing(&path).unwrap_err();
    assert!(
        matches!(error, SqliteError::NoStore { bytes: 0, .. }),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        format!(
            "`{}` holds no Switchyard store (0 bytes): it was truncated, replaced or never \
             written; restore it from a backup or check the path (`SqliteStore::open` would \
             start a new, empty store in it)",
            path.display()
        )
    );
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0, "left untouched");
    drop(still_open);

    // A SQLite database nobody wrote Switchyard's schema to is no store either. (Another file:
    // the store just dropped closes its connections in the background.)
    let other = scratch("empty-database");
    let conn = rusqlite::Connection::open(&other).unwrap();
    conn.pragma_update(None, "user_version", 0).unwrap();
    drop(conn);
    let empty_database = SqliteStore::open_existing(&other).unwrap_err();
    assert!(
        matches!(empty_database, SqliteError::NoStore { .. }),
        "{empty_database:?}"
    );
}

/// WAL: a reader in the middle of a read transaction does not hold the writer up, keeps its
/// own snapshot, and `Full` is the durability a store opens with.
#[tokio::test]
async fn readers_do_not_block_the_writer() {
    assert_eq!(
        SqliteOptions::default().synchronous_mode(),
        Synchronous::Full
    );
    let path = scratch("wal-readers");
    let store = SqliteStore::open(&path).unwrap();
    store
        .append(
            "w",
            ExpectedVersion::NoStream,
            vec![event("a".into())],
            meta("m-1"),
        )
        .await
        .unwrap();
    let reader = rusqlite::Connection::open(&path).unwrap();
    let mode: String = reader
        .query_row("PRAGMA journal_mode", [], |row| row.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    reader.execute_batch("BEGIN").unwrap();
    let count = |conn: &rusqlite::Connection| -> i64 {
        conn.query_row("SELECT count(*) FROM events", [], |row| row.get(0))
            .unwrap()
    };
    assert_eq!(count(&reader), 1, "the read transaction has begun");
    let appended = tokio::time::timeout(
        Duration::from_secs(2),
        store.append(
            "w",
            ExpectedVersion::Exactly(0),
            vec![event("b".into())],
            meta("m-2"),
        ),
    )
    .await
    .expect("the writer did not wait for the open read")
    .unwrap();
    assert_eq!(appended, 1);
    assert_eq!(count(&reader), 1, "the reader keeps its snapshot");
    reader.execute_batch("COMMIT").unwrap();
    assert_eq!(count(&reader), 2);
}
