//! A SQL projection on PostgreSQL in real processes, killed with SIGKILL: of two runner
//! processes of one projection, the active one dies in the middle of a batch's transaction
//! (the server rolls it back when the connection drops); the other, standing by, takes over
//! once the lease lapses, and the read model holds every event exactly once.
//!
//! The test re-runs this test binary as its child processes; the environment variable
//! [`CHILD`] selects the role and names the schema.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use switchyard_postgres::{PostgresOptions, PostgresProjection, PostgresStore};
use switchyard_projections::checkpoint::CheckpointStore;

use crate::runner::{Balances, PATIENCE, client, deposit, expected, positions, runner, table};
use crate::support;

/// Set in a child: the schema of the store.
const CHILD: &str = "SWITCHYARD_PROJECTION_CHILD_SCHEMA";
/// Set in a child: its lease holder's name.
const HOLDER: &str = "SWITCHYARD_PROJECTION_HOLDER";
/// Set in a child that must hang: the event (counted from 1) it hangs on, mid-batch.
const HANG_AT: &str = "SWITCHYARD_PROJECTION_HANG_AT";
/// What a child prints once its runner started, and once it hangs.
const STARTED: &str = "projection-child-started";
const HUNG: &str = "projection-child-hung";
/// A child ends by itself after this long, should its parent fail to kill it.
const CHILD_LIFETIME: Duration = Duration::from_secs(120);
const TEST: &str = "processes::of_two_runner_processes_one_killed_mid_batch_the_other_takes_over";

fn child(schema: &str) {
    let holder = std::env::var(HOLDER).unwrap();
    let hang_at = std::env::var(HANG_AT).ok().map(|n| n.parse().unwrap());
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let store = PostgresStore::connect_with(
                &support::url(),
                PostgresOptions::default().schema(schema),
            )
            .await
            .unwrap();
            let hung = Arc::new(AtomicBool::new(false));
            let model = Balances {
                hang_at,
                hung: hung.clone(),
                applied: 0,
            };
            let runner = runner(
                &holder,
                PostgresProjection::new(model, client(&store).await),
                &store,
            );
            println!("{STARTED}");
            let deadline = tokio::time::Instant::now() + CHILD_LIFETIME;
            while tokio::time::Instant::now() < deadline {
                if hung.swap(false, Ordering::SeqCst) {
                    println!("{HUNG}");
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            drop(runner);
        });
}

/// A child process, killed with SIGKILL when dropped (a failing test leaves none behind), and
/// the lines it printed.
struct Running(Child, mpsc::Receiver<String>);

impl Running {
    fn spawn(url: &str, schema: &str, holder: &str, hang_at: Option<usize>) -> Self {
        let mut command = Command::new(std::env::current_exe().unwrap());
        command
            .args([TEST, "--exact", "--nocapture", "--test-threads=1"])
            .env(support::URL_VARIABLE, url)
            .env(CHILD, schema)
            .env(HOLDER, holder)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(n) = hang_at {
            command.env(HANG_AT, n.to_string());
        }
        let mut child = command.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (lines, printed) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = lines.send(line);
            }
        });
        let running = Self(child, printed);
        running.said(STARTED, holder);
        running
    }

    /// Waits, within [`PATIENCE`], for the child to print `what`.
    fn said(&self, what: &str, holder: &str) {
        let deadline = std::time::Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.1.recv_timeout(left) {
                Ok(line) if line.contains(what) => return,
                Ok(_) => {}
                Err(_) => panic!("{holder} did not say {what}"),
            }
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn of_two_runner_processes_one_killed_mid_batch_the_other_takes_over() {
    if let Ok(schema) = std::env::var(CHILD) {
        child(&schema);
        return;
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let url = support::url();
            let store = support::store().await;
            let reader = client(&store).await;
            for n in 0..10 {
                deposit(&store, n % 3, i64::from(n) + 1).await;
            }
            // A hangs on the sixth event: in its third batch, two batches checkpointed.
            let a = Running::spawn(&url, store.schema(), "runner-a", Some(6));
            a.said(HUNG, "runner-a");
            let b = Running::spawn(&url, store.schema(), "runner-b", None);
            assert_eq!(
                store.load("balances").await.unwrap(),
                positions(&store, 10).await[3]
            );
            drop(a); // SIGKILL: the server rolls its transaction back, its lease lapses
            for n in 10..12 {
                deposit(&store, 1, i64::from(n) + 1).await;
            }
            let head = positions(&store, 12).await[11];
            let deadline = tokio::time::Instant::now() + PATIENCE;
            while store.load("balances").await.unwrap() < head {
                assert!(tokio::time::Instant::now() < deadline, "B did not catch up");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            drop(b);
            assert_eq!(table(&reader).await, expected(&store).await);
        });
}
