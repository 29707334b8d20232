//! Two schedulers on one store: each alarm is delivered once while leases hold, and when one
//! scheduler dies the other delivers what it left, once its leases lapse.

use std::collections::HashMap;
use std::time::Duration;

use switchyard_messaging::{Message, Router};
use switchyard_scheduler::store::MemoryAlarmStore;
use switchyard_scheduler::{ManualClock, Scheduler, SchedulerConfig, When};
use tokio::sync::mpsc;

use crate::support::{Received, init_tracing, recording_node_to, t0};

const ALARMS: u64 = 1_000;
/// Alarms node a holds, hanging, when it dies.
const HANGING: usize = 20;

fn config(clock: &ManualClock) -> SchedulerConfig {
    SchedulerConfig::default()
        .clock(clock.clone())
        .sweep_interval(Some(Duration::from_secs(10)))
}

fn record(deliveries: &mut HashMap<String, Vec<String>>, got: Received) {
    deliveries
        .entry(got.message.id().to_owned())
        .or_default()
        .push(got.node);
}

async fn eventually_held(scheduler: &Scheduler, count: usize) {
    crate::support::eventually("the window is loaded", || async {
        scheduler.held().await == count
    })
    .await;
}

/// Collects deliveries until `count` distinct alarms were delivered (real-time limit 20 s).
async fn collect(
    rx: &mut mpsc::UnboundedReceiver<Received>,
    deliveries: &mut HashMap<String, Vec<String>>,
    count: usize,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while deliveries.len() < count {
        let got = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("only {} of {count} delivered", deliveries.len()))
            .unwrap();
        record(deliveries, got);
    }
}

#[test]
fn two_schedulers_deliver_each_alarm_once_and_one_takes_over_when_the_other_dies() {
    init_tracing();
    let main = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let doomed = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let clock = ManualClock::new(t0());
    let store = MemoryAlarmStore::new();
    let (tx, mut rx) = mpsc::unbounded_channel();

    // Both nodes report to one channel, straight from their services. Node a's `hang` never
    // answers (it says when it started); node b's records like `record`.
    let node_a = recording_node_to("node-a", tx.clone());
    let node_b = recording_node_to("node-b", tx.clone());
    let (hanging_tx, mut hanging) = mpsc::unbounded_channel();
    node_a
        .register(
            Router::new("hang")
                .service("hang", move |msg: Message| {
                    let _ = hanging_tx.send(msg.id().to_owned());
                    async move {
                        futures::future::pending::<()>().await;
                        msg.ok()
                    }
                })
                .authorize(|_| Ok(())),
        )
        .unwrap();
    let record_tx = tx;
    let b_id = node_b.id().to_string();
    node_b
        .register(
            Router::new("hang")
                .service("hang", move |msg: Message| {
                    let _ = record_tx.send(Received {
                        message: msg.clone(),
                        node: b_id.clone(),
                    });
                    async move { msg.ok() }
                })
                .authorize(|_| Ok(())),
        )
        .unwrap();
    // Node a's lease outlives its (never ending) deliveries until the test kills it.
    let a = {
        let _guard = doomed.enter();
        Scheduler::start(
            node_a,
            store.clone(),
            config(&clock)
                .dispatch_timeout(Duration::from_secs(60))
                .lease(Duration::from_secs(90)),
        )
        .unwrap()
    };
    let mut deliveries: HashMap<String, Vec<String>> = HashMap::new();
    let b = main.block_on(async {
        // Every alarm is saved before node b starts, so both load all of them and race for each.
        for n in 0..ALARMS {
            a.schedule(
                Message::new("record").with_id(format!("alarm-{n:04}")),
                "agg",
                When::At(t0() + Duration::from_millis(n + 1)),
            )
            .await
            .unwrap();
        }
        // Due now: node a claims these before node b starts, and hangs delivering them.
        for n in 0..HANGING {
            a.schedule(
                Message::new("hang").with_id(format!("hang-{n:02}")),
                "agg",
                When::At(t0()),
            )
            .await
            .unwrap();
        }
        for _ in 0..HANGING {
            tokio::time::timeout(Duration::from_secs(10), hanging.recv())
                .await
                .unwrap()
                .unwrap();
        }
        let b = Scheduler::start(node_b, store.clone(), config(&clock)).unwrap();
        eventually_held(&b, ALARMS as usize + HANGING).await;
        eventually_held(&a, ALARMS as usize + HANGING).await;

        // The first half, while both run.
        clock.set(t0() + Duration::from_millis(ALARMS / 2));
        collect(&mut rx, &mut deliveries, (ALARMS / 2) as usize).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        while let Ok(got) = rx.try_recv() {
            record(&mut deliveries, got);
        }
        let doubled = deliveries.values().filter(|nodes| nodes.len() > 1).count();
        assert_eq!(doubled, 0, "no alarm delivered twice while leases hold");
        assert_eq!(deliveries.len(), (ALARMS / 2) as usize, "nothing early");
        let by_a = deliveries
            .values()
            .filter(|n| n[0].starts_with("node-a"))
            .count();
        eprintln!("first half: {by_a} delivered by node a, the rest by node b");
        b
    });

    // Node a dies with whatever leases it holds: no graceful shutdown, its tasks just vanish.
    doomed.shutdown_background();

    main.block_on(async {
        // The second half is due. Node b delivers what it can claim, and what node a held once
        // node a's leases lapse (30 s by the clock).
        clock.set(t0() + Duration::from_millis(ALARMS));
        collect(&mut rx, &mut deliveries, ALARMS as usize).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        while let Ok(got) = rx.try_recv() {
            record(&mut deliveries, got);
        }
        assert!(
            !deliveries.keys().any(|id| id.starts_with("hang-")),
            "nothing node a held is delivered while its lease holds"
        );
        // Past node a's lease (90 s): node b takes the hanging alarms over.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while !store.is_empty() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} alarms left",
                store.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
            clock.advance(Duration::from_secs(11));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        while let Ok(got) = rx.try_recv() {
            record(&mut deliveries, got);
        }
        for n in 0..ALARMS {
            let id = format!("alarm-{n:04}");
            assert!(deliveries.contains_key(&id), "{id} was never delivered");
        }
        for n in 0..HANGING {
            let id = format!("hang-{n:02}");
            let by = deliveries
                .get(&id)
                .unwrap_or_else(|| panic!("{id} was never taken over"));
            assert_eq!(by.len(), 1, "{id}: {by:?}");
            assert!(by[0].starts_with("node-b"), "{id}: {by:?}");
        }
        // At least once: only an alarm node a delivered but had not yet deleted when it died
        // may come twice, the second time from node b.
        let doubled: Vec<_> = deliveries
            .iter()
            .filter(|(_, nodes)| nodes.len() > 1)
            .collect();
        for (id, nodes) in &doubled {
            assert_eq!(nodes.len(), 2, "{id}: {nodes:?}");
            assert!(nodes[0].starts_with("node-a") && nodes[1].starts_with("node-b"));
        }
        assert!(doubled.len() <= 20, "{} redelivered", doubled.len());
        eprintln!("{} delivered again after node a died", doubled.len());
        b.shutdown().await;
    });
    drop(a);
}
