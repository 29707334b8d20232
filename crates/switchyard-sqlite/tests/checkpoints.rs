//! The SQLite checkpoint store: the public conformance suite in memory and on disk, and a read
//! model written with its checkpoint in one transaction of the caller's: committed together,
//! rolled back together by a crash, refused together once the lease is lost.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Tests fail loudly.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use rusqlite::{Connection, TransactionBehavior};
use switchyard_projections::checkpoint::{
    Acquire, CheckpointError, CheckpointStore, Lease, ParkedEvent,
};
use switchyard_sqlite::{SqliteStore, reset_checkpoint_in, save_checkpoint_in};

/// A new database file under Cargo's scratch directory for integration tests.
fn fresh_file(name: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("sqlite-checkpoints");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!(
        "{name}-{}-{}.db",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    path
}

mod in_memory {
    use super::*;
    switchyard_projections::checkpoint_store_conformance!(async {
        SqliteStore::in_memory().unwrap()
    });
}

mod on_disk {
    use super::*;
    switchyard_projections::checkpoint_store_conformance!(async {
        SqliteStore::open(fresh_file("conformance")).unwrap()
    });
}

/// A store on a new file, a read model table beside its own, and the lease of `balances`.
async fn read_model(name: &str) -> (SqliteStore, Connection, Lease) {
    let path = fresh_file(name);
    let store = SqliteStore::open(&path).unwrap();
    let conn = Connection::open(&path).unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    conn.execute_batch("CREATE TABLE balances (account TEXT PRIMARY KEY, cents INTEGER NOT NULL)")
        .unwrap();
    let now = SystemTime::now();
    let Acquire::Acquired(lease) = store
        .acquire("balances", "runner-a", now, now + Duration::from_secs(60))
        .await
        .unwrap()
    else {
        panic!("a new projection is free");
    };
    (store, conn, lease)
}

fn rows(conn: &Connection) -> i64 {
    conn.query_row("SELECT count(*) FROM balances", [], |row| row.get(0))
        .unwrap()
}

fn write_read_model(tx: &rusqlite::Transaction<'_>, account: &str) {
    tx.execute("INSERT INTO balances VALUES (?1, 100)", [account])
        .unwrap();
}

#[tokio::test]
async fn the_read_model_and_its_checkpoint_commit_together() {
    let (store, mut conn, lease) = read_model("commit").await;
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .unwrap();
    write_read_model(&tx, "acc-1");
    save_checkpoint_in(&tx, &lease.token, 3).unwrap();
    tx.commit().unwrap();
    assert_eq!(rows(&conn), 1);
    assert_eq!(store.load("balances").await.unwrap(), 3);
}

/// A crash between the read model's write and the commit (here the transaction dropped, and
/// the connection closed, without a commit) leaves neither written: the runner restarts from
/// the old checkpoint and writes the same effect once.
#[tokio::test]
async fn a_crash_before_the_commit_leaves_both_unwritten() {
    let (store, mut conn, lease) = read_model("crash").await;
    {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .unwrap();
        write_read_model(&tx, "acc-1");
        save_checkpoint_in(&tx, &lease.token, 3).unwrap();
        // Dropped without a commit: rolled back.
    }
    assert_eq!(rows(&conn), 0);
    assert_eq!(store.load("balances").await.unwrap(), 0);

    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .unwrap();
    write_read_model(&tx, "acc-2");
    save_checkpoint_in(&tx, &lease.token, 4).unwrap();
    drop(tx);
    drop(conn);
    let path = store.path().unwrap();
    let conn = Connection::open(&path).unwrap();
    assert_eq!(
        rows(&conn),
        0,
        "a connection closed mid-transaction wrote nothing"
    );
    assert_eq!(store.load("balances").await.unwrap(), 0);
}

/// Once another runner took the lease over, the old runner's transaction is refused at its
/// checkpoint; it rolls back, so its read model write never lands.
#[tokio::test]
async fn a_replaced_runner_cannot_commit_its_read_model() {
    let (store, mut conn, old) = read_model("fenced").await;
    let later = SystemTime::now() + Duration::from_secs(120);
    let Acquire::Acquired(new) = store
        .acquire(
            "balances",
            "runner-b",
            later,
            later + Duration::from_secs(60),
        )
        .await
        .unwrap()
    else {
        panic!("the old lease lapsed");
    };
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .unwrap();
    write_read_model(&tx, "acc-1");
    let refused = save_checkpoint_in(&tx, &old.token, 3);
    assert!(
        matches!(refused, Err(CheckpointError::LeaseLost { .. })),
        "{refused:?}"
    );
    assert!(matches!(
        reset_checkpoint_in(&tx, &old.token),
        Err(CheckpointError::LeaseLost { .. })
    ));
    tx.rollback().unwrap();
    assert_eq!(rows(&conn), 0);

    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .unwrap();
    write_read_model(&tx, "acc-1");
    save_checkpoint_in(&tx, &new.token, 3).unwrap();
    assert!(matches!(
        save_checkpoint_in(&tx, &new.token, 2),
        Err(CheckpointError::NotForward { current: 3, .. })
    ));
    tx.commit().unwrap();
    assert_eq!(store.load("balances").await.unwrap(), 3);
}

/// A rebuild empties the read model and resets its checkpoint in one transaction, which
/// forgets the parked events too (a rolled back one leaves them).
#[tokio::test]
async fn a_rebuild_resets_the_checkpoint_with_the_read_model() {
    let (store, mut conn, lease) = read_model("rebuild").await;
    store.save(&lease.token, 9).await.unwrap();
    let parked = ParkedEvent {
        projection: "balances".into(),
        position: 4,
        stream: "account-1".into(),
        version: 3,
        event_type: "Deposited".into(),
        error: "disk full".into(),
        attempts: 2,
        parked_at: SystemTime::UNIX_EPOCH,
    };
    store.park(&lease.token, &parked).await.unwrap();
    let rolled_back = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .unwrap();
    reset_checkpoint_in(&rolled_back, &lease.token).unwrap();
    rolled_back.rollback().unwrap();
    assert_eq!(store.parked("balances").await.unwrap(), [parked]);

    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .unwrap();
    tx.execute("DELETE FROM balances", []).unwrap();
    reset_checkpoint_in(&tx, &lease.token).unwrap();
    tx.commit().unwrap();
    assert_eq!(store.load("balances").await.unwrap(), 0);
    assert!(store.parked("balances").await.unwrap().is_empty());
}
