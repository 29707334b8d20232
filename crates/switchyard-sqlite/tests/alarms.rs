//! The SQLite alarm store: the public conformance suite in memory and on disk, a scheduler
//! restarted on the same file, and alarms acknowledged by `schedule` surviving a SIGKILL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Tests fail loudly.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use switchyard_messaging::{Message, Node, Router};
use switchyard_scheduler::{Scheduler, SchedulerConfig, When};
use switchyard_sqlite::SqliteStore;
use tokio::sync::mpsc;

/// A new database file under Cargo's scratch directory for integration tests.
fn fresh_file(name: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("sqlite-alarms");
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
    switchyard_scheduler::alarm_store_conformance!(async { SqliteStore::in_memory().unwrap() });
}

mod on_disk {
    use super::*;
    switchyard_scheduler::alarm_store_conformance!(async {
        SqliteStore::open(fresh_file("conformance")).unwrap()
    });
}

/// A node whose `remind` service reports each message id it receives.
fn reminder_node(name: &str) -> (Node, mpsc::UnboundedReceiver<String>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let node = Node::new(name);
    node.register(
        Router::new("reminders")
            .service("remind", move |msg: Message| {
                let _ = tx.send(msg.id().to_owned());
                async move { msg.ok() }
            })
            .authorize(|_| Ok(())),
    )
    .unwrap();
    (node, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_scheduler_on_the_same_file_delivers_every_pending_alarm() {
    let path = fresh_file("restart");
    let (node, mut first_rx) = reminder_node("first");
    let store = SqliteStore::open(&path).unwrap();
    let first = Scheduler::start(node, store, SchedulerConfig::default()).unwrap();
    for n in 0..50_u64 {
        first
            .schedule(
                Message::new("remind").with_id(format!("r-{n:02}")),
                "user",
                When::In(Duration::from_millis(300 + n * 4)),
            )
            .await
            .unwrap();
    }
    first.shutdown().await;
    drop(first);
    let mut delivered = BTreeSet::new();
    while let Ok(id) = first_rx.try_recv() {
        delivered.insert(id);
    }
    let (node, mut second_rx) = reminder_node("second");
    let second = Scheduler::start(
        node,
        SqliteStore::open(&path).unwrap(),
        SchedulerConfig::default(),
    )
    .unwrap();
    while delivered.len() < 50 {
        let id = tokio::time::timeout(Duration::from_secs(10), second_rx.recv())
            .await
            .expect("every pending alarm is delivered")
            .unwrap();
        assert!(delivered.insert(id.clone()), "{id} delivered twice");
    }
    second.shutdown().await;
}

const CHILD: &str = "SWITCHYARD_SQLITE_ALARM_CRASH_CHILD";

/// The child `acknowledged_alarms_survive_sigkill` starts and kills: it schedules alarms a
/// minute ahead as fast as it can and prints each acknowledged id, until it is killed.
fn crash_child(path: &str) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (node, _rx) = reminder_node("child");
        let store = SqliteStore::open(path).unwrap();
        let scheduler = Scheduler::start(node, store, SchedulerConfig::default()).unwrap();
        let writers = (0..8).map(|w| {
            let scheduler = scheduler.clone();
            tokio::spawn(async move {
                for n in 0_u64.. {
                    let id = format!("w{w}-{n}");
                    scheduler
                        .schedule(
                            Message::new("remind").with_id(id.clone()),
                            "user",
                            When::In(Duration::from_secs(60)),
                        )
                        .await
                        .unwrap();
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "ack {id}").unwrap();
                    out.flush().unwrap();
                }
            })
        });
        futures::future::join_all(writers).await;
    });
}

#[test]
fn acknowledged_alarms_survive_sigkill() {
    if let Ok(path) = std::env::var(CHILD) {
        crash_child(&path);
        return;
    }
    let path = fresh_file("sigkill");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "acknowledged_alarms_survive_sigkill",
            "--exact",
            "--nocapture",
        ])
        .env(CHILD, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut acknowledged = BTreeSet::new();
    let started = Instant::now();
    let mut killed = false;
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        let Some(id) = line.strip_prefix("ack ") else {
            continue;
        };
        acknowledged.insert(id.to_owned());
        if !killed && (acknowledged.len() >= 2_000 || started.elapsed() > Duration::from_secs(60)) {
            // SIGKILL: no destructor, no flush, whatever the writer was doing.
            child.kill().unwrap();
            killed = true;
        }
    }
    let status = child.wait().unwrap();
    assert!(killed, "the child stopped by itself: {status}");
    assert!(acknowledged.len() >= 100, "too few: {}", acknowledged.len());

    // A new scheduler on the file delivers every acknowledged alarm: the clock is pushed past
    // their due time by scheduling nothing and reading the store's window directly.
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let store = SqliteStore::open(&path).unwrap();
            let clock = switchyard_scheduler::ManualClock::new(
                std::time::SystemTime::now() + Duration::from_secs(120),
            );
            let (node, mut rx) = reminder_node("after");
            let scheduler =
                Scheduler::start(node, store, SchedulerConfig::default().clock(clock)).unwrap();
            let mut delivered = BTreeSet::new();
            while !acknowledged.is_subset(&delivered) {
                let id = tokio::time::timeout(Duration::from_secs(20), rx.recv())
                    .await
                    .unwrap_or_else(|_| {
                        panic!(
                            "{} acknowledged alarms not delivered",
                            acknowledged.difference(&delivered).count()
                        )
                    })
                    .unwrap();
                delivered.insert(id);
            }
            eprintln!(
                "{} alarms acknowledged before SIGKILL, all delivered after restart",
                acknowledged.len()
            );
            scheduler.shutdown().await;
        });
}

/// An alarm whose stored message no longer decodes is reported and skipped: the alarms around
/// it still load.
#[tokio::test]
async fn an_unreadable_alarm_does_not_stop_the_others_from_loading() {
    use std::time::SystemTime;
    use switchyard_scheduler::store::{Alarm, AlarmStore};
    let path = fresh_file("corrupt");
    let store = SqliteStore::open(&path).unwrap();
    let due = SystemTime::now() + Duration::from_secs(60);
    for id in ["before", "broken", "after"] {
        store
            .save(Alarm {
                message: Message::new("remind").with_id(id),
                aggregate_id: "agg".into(),
                due,
                attempts: 0,
            })
            .await
            .unwrap();
    }
    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.execute(
        "UPDATE alarms SET message = x'ff00ff' WHERE id = 'broken'",
        [],
    )
    .unwrap();
    drop(raw);
    let loaded: BTreeSet<String> = store
        .load(None, due + Duration::from_secs(1))
        .await
        .unwrap()
        .into_iter()
        .map(|alarm| alarm.message.id().to_owned())
        .collect();
    assert_eq!(
        loaded,
        BTreeSet::from(["after".to_owned(), "before".to_owned()])
    );
}

/// A poison row is refused by claims without taking the lease or counting an attempt, and left
/// in the table for an operator, who can cancel it.
#[tokio::test]
async fn an_unreadable_alarm_is_refused_unleased_and_left_for_an_operator() {
    use std::time::SystemTime;
    use switchyard_scheduler::store::{Alarm, AlarmStore, AlarmStoreError};
    let path = fresh_file("poison-claim");
    let store = SqliteStore::open(&path).unwrap();
    let due = SystemTime::now() - Duration::from_secs(1);
    store
        .save(Alarm {
            message: Message::new("remind").with_id("broken"),
            aggregate_id: "agg".into(),
            due,
            attempts: 0,
        })
        .await
        .unwrap();
    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.execute("UPDATE alarms SET message = x'ff00ff'", [])
        .unwrap();
    let now = SystemTime::now();
    let lease = now + Duration::from_secs(30);
    for holder in ["node-a", "node-b"] {
        let claim = store.claim("broken", holder, now, now, lease).await;
        assert!(
            matches!(&claim, Err(AlarmStoreError::Corrupt { id, .. }) if id == "broken"),
            "{holder}: {claim:?}"
        );
    }
    let (holder, attempts): (Option<String>, i64) = raw
        .query_row("SELECT holder, attempts FROM alarms", [], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
        .unwrap();
    assert_eq!(holder, None, "no lease is taken");
    assert_eq!(attempts, 0, "no attempt is counted");
    assert!(
        store.cancel("broken").await.unwrap(),
        "an operator cancels it"
    );
}

/// In a batch of claims, a poison row is refused alone: the others are claimed in the same
/// write, and it gets no lease and no attempt.
#[tokio::test]
async fn a_batch_of_claims_refuses_only_its_unreadable_alarm() {
    use std::time::SystemTime;
    use switchyard_scheduler::store::{Alarm, AlarmStore, AlarmStoreError, Claim, ClaimRequest};
    let path = fresh_file("poison-batch");
    let store = SqliteStore::open(&path).unwrap();
    let due = SystemTime::now() - Duration::from_secs(1);
    for id in ["good-1", "broken", "good-2"] {
        let message = Message::new("remind").with_id(id);
        let alarm = Alarm {
            message,
            aggregate_id: "agg".into(),
            due,
            attempts: 0,
        };
        store.save(alarm).await.unwrap();
    }
    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.execute(
        "UPDATE alarms SET message = x'ff00ff' WHERE id = 'broken'",
        [],
    )
    .unwrap();
    let now = SystemTime::now();
    let requests = ["good-1", "broken", "good-2"].map(|id| ClaimRequest {
        id: id.to_owned(),
        holder: "node-a".to_owned(),
        now,
        due_by: now,
        lease_until: now + Duration::from_secs(30),
    });
    let claims = store.claim_many(requests.to_vec()).await;
    assert!(
        matches!(&claims[0], Ok(Claim::Claimed(a)) if a.id() == "good-1"),
        "{claims:?}"
    );
    assert!(
        matches!(&claims[1], Err(AlarmStoreError::Corrupt { id, .. }) if id == "broken"),
        "{claims:?}"
    );
    assert!(
        matches!(&claims[2], Ok(Claim::Claimed(a)) if a.id() == "good-2"),
        "{claims:?}"
    );
    let rows: Vec<(String, Option<String>, i64)> = raw
        .prepare("SELECT id, holder, attempts FROM alarms ORDER BY id")
        .unwrap()
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let node = Some("node-a".to_owned());
    assert_eq!(
        rows,
        [
            ("broken".to_owned(), None, 0),
            ("good-1".to_owned(), node.clone(), 1),
            ("good-2".to_owned(), node, 1)
        ]
    );
}

/// A scheduler that finds an alarm unreadable when it comes to deliver it (it was loaded while
/// still readable) neither retries it forever nor holds up the others: it delivers the others,
/// forgets the poison one, and leaves it in the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduler_delivers_around_an_unreadable_alarm_and_forgets_it() {
    use switchyard_scheduler::{Clock, ManualClock};
    let path = fresh_file("poison-scheduler");
    let clock = ManualClock::new(std::time::SystemTime::now());
    let (node, mut rx) = reminder_node("poison");
    let scheduler = Scheduler::start(
        node,
        SqliteStore::open(&path).unwrap(),
        SchedulerConfig::default()
            .clock(clock.clone())
            .sweep_interval(None)
            .failure_delay(Duration::from_secs(1)),
    )
    .unwrap();
    for id in ["before", "broken", "after"] {
        scheduler
            .schedule(
                Message::new("remind").with_id(id),
                "agg",
                When::At(clock.now() + Duration::from_secs(10)),
            )
            .await
            .unwrap();
    }
    // Loaded (armed) while readable, then broken behind the scheduler's back.
    let deadline = Instant::now() + Duration::from_secs(10);
    while scheduler.held().await != 3 {
        assert!(Instant::now() < deadline, "the alarms are not armed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.execute(
        "UPDATE alarms SET message = x'ff00ff' WHERE id = 'broken'",
        [],
    )
    .unwrap();
    clock.advance(Duration::from_secs(10));
    let mut delivered = BTreeSet::new();
    for _ in 0..2 {
        let id = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("the readable alarms are delivered")
            .unwrap();
        delivered.insert(id);
    }
    assert_eq!(
        delivered,
        BTreeSet::from(["after".to_owned(), "before".to_owned()])
    );
    // Forgotten rather than tried again every failure delay.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        clock.advance(Duration::from_secs(1));
        if scheduler.held().await == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the unreadable alarm is still held"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let left: Vec<String> = raw
        .prepare("SELECT id FROM alarms")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(left, ["broken"], "left in the store for an operator");
    scheduler.shutdown().await;
}

/// A retry is persisted: a delivery answers with an error, the retry is saved, the scheduler
/// stops, and a new one on the same file delivers the retry as the second attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_retry_survives_a_restart_as_the_second_attempt() {
    use switchyard_scheduler::{Clock, ManualClock, RetryPolicy, assigns};
    let path = fresh_file("retry-restart");
    let clock = ManualClock::new(std::time::SystemTime::now());
    let config = || {
        SchedulerConfig::default()
            .clock(clock.clone())
            .sweep_interval(None)
            .retry_policy(RetryPolicy::Fixed {
                delay: Duration::from_secs(10),
                max_attempts: 3,
            })
    };
    // A service that always fails, and reports each attempt it sees.
    let failing_node = |name: &str| {
        let (tx, rx) = mpsc::unbounded_channel();
        let node = Node::new(name);
        node.register(
            Router::new("flaky")
                .service("flaky", move |msg: Message| {
                    let _ = tx.send(assigns::dispatch_attempts(&msg));
                    async move { msg.error("down") }
                })
                .authorize(|_| Ok(())),
        )
        .unwrap();
        (node, rx)
    };
    let (node, mut first_rx) = failing_node("first");
    let first = Scheduler::start(node, SqliteStore::open(&path).unwrap(), config()).unwrap();
    first
        .schedule(
            Message::new("flaky").with_id("retried"),
            "user",
            When::In(Duration::ZERO),
        )
        .await
        .unwrap();
    assert_eq!(next_attempt(&mut first_rx).await, 1);
    let retry_at = clock.now() + Duration::from_secs(10);
    let raw = rusqlite::Connection::open(&path).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let row: (i64, i64, Option<String>) = raw
            .query_row("SELECT due, attempts, holder FROM alarms", [], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?))
            })
            .unwrap();
        let due = std::time::UNIX_EPOCH + Duration::from_micros(row.0.try_into().unwrap());
        if due >= retry_at - Duration::from_millis(1) && row.2.is_none() {
            assert_eq!(row.1, 1, "one attempt counted");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the retry is not persisted: {row:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    first.shutdown().await;
    drop(first);

    let (node, mut second_rx) = failing_node("second");
    let second = Scheduler::start(node, SqliteStore::open(&path).unwrap(), config()).unwrap();
    clock.advance(Duration::from_secs(10));
    assert_eq!(
        next_attempt(&mut second_rx).await,
        2,
        "the retry is the second attempt"
    );
    second.shutdown().await;
}

/// The next attempt a failing service saw, within 10 s.
async fn next_attempt(rx: &mut mpsc::UnboundedReceiver<u32>) -> u32 {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("a delivery")
        .unwrap()
}

/// A file from before attempts were counted (schema 0002) holding a pending retry, its message
/// at `dispatch_attempts` 2: migration 0003 adds the count at 0, the row still loads, and the
/// retry is delivered as the third attempt, not counted from scratch (which would let a retry
/// limit start over).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_pending_before_migration_0003_keeps_its_attempts() {
    use switchyard_scheduler::store::AlarmStore;
    use switchyard_scheduler::{Clock, ManualClock, RetryPolicy, assigns};
    let path = fresh_file("migrated");
    let clock = ManualClock::new(std::time::SystemTime::now());
    let due = clock.now() + Duration::from_secs(10);
    {
        let raw = rusqlite::Connection::open(&path).unwrap();
        raw.execute_batch(include_str!("../migrations/0001_events.sql"))
            .unwrap();
        raw.execute_batch(include_str!("../migrations/0002_alarms.sql"))
            .unwrap();
        raw.pragma_update(None, "application_id", 0x5357_5944_i64)
            .unwrap();
        raw.pragma_update(None, "user_version", 2_i64).unwrap();
        let message = Message::new("flaky")
            .with_id("retried")
            .assign(assigns::DISPATCH_AT, &due)
            .assign(assigns::DISPATCH_ATTEMPTS, &2_u32);
        let micros = i64::try_from(
            due.duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_micros(),
        )
        .unwrap();
        raw.execute(
            "INSERT INTO alarms (id, aggregate_id, due, message, holder, lease_until)
             VALUES ('retried', 'user', ?1, ?2, NULL, NULL)",
            rusqlite::params![micros, message.to_bytes().unwrap()],
        )
        .unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    let loaded = store
        .load(None, due + Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(loaded.len(), 1, "the row survives the migration");
    assert_eq!(loaded[0].attempts, 0, "migrated rows count from 0");

    let (tx, mut rx) = mpsc::unbounded_channel();
    let node = Node::new("migrated");
    node.register(
        Router::new("flaky")
            .service("flaky", move |msg: Message| {
                let _ = tx.send(assigns::dispatch_attempts(&msg));
                async move { msg.error("down") }
            })
            .authorize(|_| Ok(())),
    )
    .unwrap();
    let scheduler = Scheduler::start(
        node,
        store,
        SchedulerConfig::default()
            .clock(clock.clone())
            .sweep_interval(None)
            .retry_policy(RetryPolicy::Fixed {
                delay: Duration::from_secs(10),
                max_attempts: 4,
            }),
    )
    .unwrap();
    clock.advance(Duration::from_secs(10));
    assert_eq!(next_attempt(&mut rx).await, 3, "the third attempt");
    scheduler.shutdown().await;
}
