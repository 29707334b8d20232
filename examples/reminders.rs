//! Reminders delivered later, across a restart: six reminders are scheduled a few seconds ahead
//! in a SQLite file; the scheduler is stopped gracefully half-way, a new one is started on the
//! same file, and every reminder is shown delivered exactly once.
//!
//! Run it from the repository root:
//!
//! ```text
//! cargo run --example reminders
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use switchyard::scheduler::{Scheduler, SchedulerConfig, When};
use switchyard::sqlite::SqliteStore;
use switchyard::{Message, Node, Router};

type Log = Arc<Mutex<BTreeMap<String, Vec<&'static str>>>>;

/// A node whose `remind` service prints each reminder and notes which scheduler delivered it.
fn node(name: &'static str, log: Log, started: Instant) -> Node {
    let node = Node::new(name);
    node.register(
        Router::new("reminders")
            .service("remind", move |msg: Message| {
                let text: String = msg.request().unwrap_or_default();
                println!(
                    "  {:>5.1} s  [{name}] reminder: {text}",
                    started.elapsed().as_secs_f64()
                );
                log.lock().unwrap().entry(text).or_default().push(name);
                async move { msg.ok() }
            })
            .authorize(|_| Ok(())),
    )
    .unwrap();
    node
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("switchyard-reminders-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("reminders.db");
    println!("alarms in {}", path.display());
    let log = Log::default();
    let started = Instant::now();

    let first = Scheduler::start(
        node("first", log.clone(), started),
        SqliteStore::open(&path)?,
        SchedulerConfig::default(),
    )?;
    let reminders = [
        (1, "stand up"),
        (2, "drink water"),
        (3, "check the oven"),
        (5, "call Ada"),
        (6, "water the plants"),
        (7, "go home"),
    ];
    for (seconds, text) in reminders {
        first
            .schedule(
                Message::new("remind").with_request(text),
                "me",
                When::In(Duration::from_secs(seconds)),
            )
            .await?;
    }
    println!("scheduled {} reminders", reminders.len());

    tokio::time::sleep(Duration::from_millis(3_500)).await;
    first.shutdown().await;
    println!(
        "  {:>5.1} s  first scheduler stopped",
        started.elapsed().as_secs_f64()
    );

    let second = Scheduler::start(
        node("second", log.clone(), started),
        SqliteStore::open(&path)?,
        SchedulerConfig::default(),
    )?;
    println!(
        "  {:>5.1} s  second scheduler started on the same file",
        started.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_millis(4_500)).await;
    second.shutdown().await;

    let log = log.lock().unwrap();
    println!("\ndelivered:");
    for (_, text) in reminders {
        let by = log.get(text).cloned().unwrap_or_default();
        println!("  {text:<18} {} time(s), by {}", by.len(), by.join(", "));
        assert_eq!(by.len(), 1, "`{text}` delivered exactly once");
    }
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
