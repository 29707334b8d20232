//! A full disk: SQLite on a small file system this test mounts itself (tmpfs), appended to until
//! it is full. While full, every append is refused with a definite "not stored: disk full" and
//! nothing acknowledged is lost; once space is freed the store goes on by itself, and the file
//! passes `PRAGMA integrity_check`.
//!
//! Mounting needs root (CAP_SYS_ADMIN), as CI has. Without it the test fails with a message
//! saying so: it never skips.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Tests fail loudly.

use std::path::{Path, PathBuf};
use std::process::Command;

use futures::StreamExt;
use switchyard_aggregates::store::{
    AppendError, EventAppender, EventMetadata, EventReader, ExpectedVersion, NewEvent, StoreError,
};
use switchyard_sqlite::SqliteStore;

/// The file system's size: a few MiB fill in well under a second.
const FILE_SYSTEM: &str = "size=8m";
/// What the test places first and deletes to free space.
const FILLER_BYTES: usize = 2 * 1024 * 1024;
/// Each event's data.
const EVENT_BYTES: usize = 8 * 1024;
/// More appends than fit, so a store that never reports a full disk fails the test.
const MOST_APPENDS: usize = 5_000;
/// Refusals in a row that show the disk stays full.
const REFUSALS_WHILE_FULL: usize = 5;

/// A tmpfs mounted for the test, unmounted when dropped, also when the test fails.
struct Mounted {
    dir: PathBuf,
}

impl Mounted {
    fn new(name: &str) -> Self {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join("sqlite-full-disk")
            .join(format!("{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", FILE_SYSTEM, "tmpfs"])
            .arg(&dir)
            .output();
        match mounted {
            Ok(output) if output.status.success() => Self { dir },
            Ok(output) => panic!(
                "the full-disk test must mount a tmpfs at `{}` and could not: {}; run it as root \
                 (CAP_SYS_ADMIN), as CI does",
                dir.display(),
                String::from_utf8_lossy(&output.stderr).trim()
            ),
            Err(error) => panic!(
                "the full-disk test must mount a tmpfs and could not run `mount`: {error}; \
                 install util-linux and run it as root, as CI does"
            ),
        }
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let unmounted = Command::new("umount").arg(&self.dir).status();
        if !unmounted.is_ok_and(|status| status.success()) {
            // Something still holds a file open (a failing test's store): detach it now, the
            // kernel frees it when the last file closes.
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
}

fn data(version: usize) -> Vec<u8> {
    // Varied bytes, so no layer can make the event smaller than it is.
    (0..EVENT_BYTES)
        .map(|i| (i.wrapping_mul(31) ^ version.wrapping_mul(7)) as u8)
        .collect()
}

fn event(version: usize) -> NewEvent {
    NewEvent {
        event_type: "filled".into(),
        schema_version: 1,
        data: data(version).into(),
    }
}

fn meta(version: usize) -> EventMetadata {
    EventMetadata {
        message_id: format!("m-{version}"),
        ..EventMetadata::default()
    }
}

/// Appends the next event; `Ok` once acknowledged.
async fn append_next(store: &SqliteStore, acknowledged: usize) -> Result<i64, AppendError> {
    let expected = match acknowledged {
        0 => ExpectedVersion::NoStream,
        n => ExpectedVersion::Exactly(n as i64 - 1),
    };
    store
        .append(
            "filled",
            expected,
            vec![event(acknowledged)],
            meta(acknowledged),
        )
        .await
}

#[track_caller]
fn assert_disk_full(error: &AppendError) {
    assert!(
        matches!(error, AppendError::Store(StoreError::DiskFull { .. })),
        "a full disk is a definite refusal, not {error:?}"
    );
    assert_eq!(
        error.to_string(),
        "not stored: disk full; free space on the store's disk, then retry"
    );
}

/// Every acknowledged event, in order and intact.
async fn assert_all_read_back(store: &SqliteStore, acknowledged: usize) {
    let mut pages = store.read_stream("filled", 0, 100);
    let mut read = 0;
    while let Some(page) = pages.next().await {
        for recorded in page.expect("reads go on while the disk is full") {
            assert_eq!(recorded.version, read as i64);
            assert_eq!(&recorded.data[..], &data(read)[..], "event {read} intact");
            read += 1;
        }
    }
    assert_eq!(read, acknowledged, "every acknowledged event reads back");
}

fn integrity(path: &Path) -> String {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .unwrap()
}

#[tokio::test]
async fn a_full_disk_refuses_clearly_loses_nothing_and_recovers_once_space_is_freed() {
    let disk = Mounted::new("append");
    let filler = disk.path("filler");
    std::fs::write(&filler, vec![1_u8; FILLER_BYTES]).unwrap();
    let db = disk.path("store.db");
    let store = SqliteStore::open(&db).unwrap();

    // Fill the disk: append until it refuses, several times in a row.
    let mut acknowledged = 0;
    let mut refusals = 0;
    for _ in 0..MOST_APPENDS {
        match append_next(&store, acknowledged).await {
            Ok(version) => {
                assert_eq!(version, acknowledged as i64);
                acknowledged += 1;
                refusals = 0;
            }
            Err(error) => {
                assert_disk_full(&error);
                refusals += 1;
                if refusals == REFUSALS_WHILE_FULL {
                    break;
                }
            }
        }
    }
    assert_eq!(
        refusals, REFUSALS_WHILE_FULL,
        "{MOST_APPENDS} appends of {EVENT_BYTES} bytes never filled an {FILE_SYSTEM} tmpfs"
    );
    assert!(acknowledged > 0, "the disk had room for some events");
    assert_all_read_back(&store, acknowledged).await;

    // Free space: the store goes on by itself.
    std::fs::remove_file(&filler).unwrap();
    for _ in 0..10 {
        let version = append_next(&store, acknowledged)
            .await
            .expect("appends succeed once space is freed");
        assert_eq!(version, acknowledged as i64);
        acknowledged += 1;
    }
    assert_all_read_back(&store, acknowledged).await;
    drop(store);

    assert_eq!(integrity(&db), "ok");
    let reopened = SqliteStore::open_existing(&db).unwrap();
    assert_all_read_back(&reopened, acknowledged).await;
    eprintln!("{acknowledged} events acknowledged around a full disk, all read back");
}
