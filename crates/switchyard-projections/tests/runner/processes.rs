//! A SQL projection in real processes on one SQLite file, killed with SIGKILL: restarted, or
//! taken over by another process, its read model holds every event exactly once.
//!
//! Each test re-runs this test binary as its child processes (the environment variable
//! [`CHILD`] selects the role), so the runner dies as a crashing process does: in the middle
//! of a batch's transaction, with no destructor run and its lease not released.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use rusqlite::Connection;
use switchyard_projections::ProjectionRunner;
use switchyard_projections::checkpoint::CheckpointStore;
use switchyard_sqlite::SqliteStore;

use crate::sql::{Balances, Table, expected, expected_through, open};
use crate::support::*;

/// Set in a child: the directory of the store's file.
const CHILD: &str = "SWITCHYARD_PROJECTION_CHILD";
/// Set in a child: its lease holder's name.
const HOLDER: &str = "SWITCHYARD_PROJECTION_HOLDER";
/// Set in a child that must hang: the position it hangs on, mid-batch.
const HANG_AT: &str = "SWITCHYARD_PROJECTION_HANG_AT";

/// Short, so a killed runner's lease lapses soon; long against a renewal's round trip.
const TTL: Duration = Duration::from_secs(1);
/// Four events a batch: a hang on position 14 kills the batch 13..=16 after two of its rows.
const BATCH: usize = 4;
/// What a child prints once its runner started.
const STARTED: &str = "projection-child-started";
/// A child ends by itself after this long, should its parent fail to kill it.
const CHILD_LIFETIME: Duration = Duration::from_secs(120);

/// The store's file in `dir`.
fn file(dir: &Path) -> PathBuf {
    dir.join("store.db")
}

fn hung_marker(dir: &Path, holder: &str) -> PathBuf {
    dir.join(format!("hung-{holder}"))
}

/// The child's role: run the projection until killed (or [`CHILD_LIFETIME`] passed).
fn child(dir: &Path) {
    let holder = std::env::var(HOLDER).unwrap();
    let hang_at = std::env::var(HANG_AT)
        .ok()
        .map(|position| (position.parse().unwrap(), hung_marker(dir, &holder)));
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let (store, projection) = open(
                &file(dir),
                Balances {
                    hang_at,
                    refuse: None,
                },
            );
            let runner =
                ProjectionRunner::builder("balances", projection, store.clone(), store.clone())
                    .aggregate::<Account>()
                    .aggregate::<Order>()
                    .holder(holder)
                    .batch_size(BATCH)
                    .lease_ttl(TTL)
                    .retry(
                        backon::ExponentialBuilder::default()
                            .with_min_delay(Duration::from_millis(10))
                            .with_max_delay(Duration::from_millis(200))
                            .with_max_times(100),
                    )
                    .start()
                    .unwrap();
            println!("{STARTED}");
            tokio::time::sleep(CHILD_LIFETIME).await;
            drop(runner);
        });
}

/// A child process running the projection as `holder`, hanging on `hang_at` if given; returns
/// once it said its runner started.
fn spawn(test: &str, dir: &Path, holder: &str, hang_at: Option<u64>) -> Running {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, dir)
        .env(HOLDER, holder)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(position) = hang_at {
        command.env(HANG_AT, position.to_string());
    }
    let mut child = Running(command.spawn().unwrap());
    let stdout = child.0.stdout.take().unwrap();
    let (started, on_started) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if line.is_ok_and(|line| line.contains(STARTED)) {
                let _ = started.send(());
            }
        }
    });
    on_started
        .recv_timeout(PATIENCE)
        .unwrap_or_else(|_| panic!("{holder} did not start"));
    child
}

/// A child process, killed with SIGKILL when dropped (a failing test leaves none behind).
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// SIGKILL: no destructor, no rollback, no release of the lease.
fn kill(child: Running) {
    drop(child);
}

/// Runs `test`'s child role when this process is one; `true` then.
fn as_child() -> bool {
    let Ok(dir) = std::env::var(CHILD) else {
        return false;
    };
    child(Path::new(&dir));
    true
}

fn parent(scenario: impl std::future::Future<Output = ()>) {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(scenario);
}

fn table(dir: &Path) -> Table {
    Balances::table(&Connection::open(file(dir)).unwrap())
}

async fn append_some(store: &SqliteStore, from: u32, to: u32) {
    for n in from..to {
        deposit(store, n % 3, u64::from(n)).await;
        if n % 4 == 0 {
            place(store, n % 2, 1000 + u64::from(n)).await;
        }
    }
}

/// Waits until the saved checkpoint reaches `position`.
async fn checkpointed(store: &SqliteStore, position: u64) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while store.load("balances").await.unwrap() < position {
        assert!(
            tokio::time::Instant::now() < deadline,
            "gave up waiting for the checkpoint to reach {position}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn hung(dir: &Path, holder: &str) {
    let marker = hung_marker(dir, holder);
    eventually(&format!("{holder} to hang mid-batch"), || marker.exists()).await;
}

/// A runner killed in the middle of a batch's transaction, then started again: the batch's
/// rows written before the kill are gone with its transaction, the restarted runner applies
/// the batch again, and the read model equals a fresh rebuild.
#[test]
fn a_sql_projection_killed_mid_batch_and_restarted_equals_a_rebuild() {
    const TEST: &str =
        "processes::a_sql_projection_killed_mid_batch_and_restarted_equals_a_rebuild";
    if as_child() {
        return;
    }
    parent(async {
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path();
        let store = SqliteStore::open(file(dir)).unwrap();
        append_some(&store, 0, 24).await;

        let a = spawn(TEST, dir, "runner-a", Some(14));
        hung(dir, "runner-a").await;
        kill(a);
        assert_eq!(store.load("balances").await.unwrap(), 12);
        assert_eq!(table(dir), expected_through(&store, 12).await);

        append_some(&store, 24, 30).await;
        let b = spawn(TEST, dir, "runner-b", None);
        checkpointed(&store, head(&store).await).await;
        kill(b);
        let incremental = table(dir);
        assert_eq!(incremental, expected(&store).await);

        // A rebuild in this process, once B's lease lapsed.
        let projection =
            switchyard_sqlite::SqliteProjection::open(file(dir), Balances::new()).unwrap();
        let rebuild =
            ProjectionRunner::builder("balances", projection, store.clone(), store.clone())
                .aggregate::<Account>()
                .aggregate::<Order>()
                .lease_ttl(TTL)
                .rebuild(|_| {})
                .start()
                .unwrap();
        let head = head(&store).await;
        eventually("the rebuild", || rebuild.caught_up_to(head)).await;
        rebuild.stop().await.unwrap();
        assert_eq!(table(dir), incremental);
    });
}

/// Two runner processes of one projection; the active one is killed mid-batch: the other,
/// standing by, takes over once the lease lapses, and nothing is skipped or doubled.
#[test]
fn of_two_runner_processes_one_killed_mid_batch_the_other_takes_over() {
    const TEST: &str =
        "processes::of_two_runner_processes_one_killed_mid_batch_the_other_takes_over";
    if as_child() {
        return;
    }
    parent(async {
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path();
        let store = SqliteStore::open(file(dir)).unwrap();
        append_some(&store, 0, 10).await;
        let caught_up = head(&store).await;

        // A holds the lease and has caught up; B starts, and stands by. A hangs in the second
        // event of its next batch.
        let a = spawn(TEST, dir, "runner-a", Some(caught_up + 2));
        checkpointed(&store, caught_up).await;
        let b = spawn(TEST, dir, "runner-b", None);
        // In one transaction, so A hangs holding SQLite's write lock only once it is written.
        deposits(&store, 7, 100..112).await;
        hung(dir, "runner-a").await;
        kill(a);
        append_some(&store, 24, 30).await;
        checkpointed(&store, head(&store).await).await;
        let holders: Vec<_> = store
            .list()
            .await
            .unwrap()
            .into_iter()
            .filter_map(|info| info.lease.map(|lease| lease.holder))
            .collect();
        assert_eq!(holders, ["runner-b"]);

        append_some(&store, 30, 36).await;
        checkpointed(&store, head(&store).await).await;
        kill(b);
        assert_eq!(table(dir), expected(&store).await);
    });
}
