//! Two schedulers on one store: each alarm is delivered once while leases hold, and when one
//! scheduler dies the other delivers what it left, once its leases lapse.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use switchyard_messaging::{Message, Node, Router};
use switchyard_scheduler::{Clock, ManualClock, Scheduler, SchedulerConfig, When};
use tokio::sync::mpsc;

use crate::support::{Granted, TestStore, init_tracing, t0};

const ALARMS: u64 = 1_000;
/// Alarms node a holds, hanging, when it dies.
const HANGING: usize = 20;

fn config(clock: &ManualClock) -> SchedulerConfig {
    SchedulerConfig::default()
        .clock(clock.clone())
        .sweep_interval(Some(Duration::from_secs(10)))
}

/// A delivery as a service saw it: which alarm, on which node, at what time by the clock.
#[derive(Clone, Debug)]
struct Delivery {
    id: String,
    node: String,
    at: SystemTime,
}

/// A node whose `record` service reports each delivery on `tx`, and whose `hang` service
/// reports it too and then, when `hang` is given, says so there and never answers.
fn reporting_node(
    name: &str,
    clock: &ManualClock,
    tx: mpsc::UnboundedSender<Delivery>,
    hang: Option<mpsc::UnboundedSender<String>>,
) -> Node {
    let node = Node::new(name);
    let node_id = node.id().to_string();
    let report = {
        let clock = clock.clone();
        move |msg: &Message| {
            let _ = tx.send(Delivery {
                id: msg.id().to_owned(),
                node: node_id.clone(),
                at: clock.now(),
            });
        }
    };
    let on_hang = report.clone();
    node.register(
        Router::new("test")
            .service("record", move |msg: Message| {
                report(&msg);
                async move { msg.ok() }
            })
            .service("hang", move |msg: Message| {
                let hang = hang.clone();
                if hang.is_none() {
                    on_hang(&msg);
                }
                async move {
                    if let Some(hang) = hang {
                        let _ = hang.send(msg.id().to_owned());
                        futures::future::pending::<()>().await;
                    }
                    msg.ok()
                }
            })
            .authorize(|_| Ok(())),
    )
    .unwrap();
    node
}

fn record(deliveries: &mut HashMap<String, Vec<Delivery>>, got: Delivery) {
    deliveries.entry(got.id.clone()).or_default().push(got);
}

async fn eventually_held(scheduler: &Scheduler, count: usize) {
    crate::support::eventually("the window is loaded", || async {
        scheduler.held().await == count
    })
    .await;
}

/// Collects deliveries until `count` distinct alarms were delivered (real-time limit 20 s).
async fn collect(
    rx: &mut mpsc::UnboundedReceiver<Delivery>,
    deliveries: &mut HashMap<String, Vec<Delivery>>,
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
    let store = TestStore::default();
    let (tx, mut rx) = mpsc::unbounded_channel();

    // Both nodes report to one channel, straight from their services. Node a's `hang` never
    // answers (it says when it started); node b's records like `record`.
    let (hanging_tx, mut hanging) = mpsc::unbounded_channel();
    let node_a = reporting_node("node-a", &clock, tx.clone(), Some(hanging_tx));
    let node_b = reporting_node("node-b", &clock, tx, None);
    let a_id = node_a.id().to_string();
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
    let mut deliveries: HashMap<String, Vec<Delivery>> = HashMap::new();
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
        let doubled = deliveries.values().filter(|got| got.len() > 1).count();
        assert_eq!(doubled, 0, "no alarm delivered twice while leases hold");
        // Alarms due within the claim-ahead lead are claimed already, but wait for their time.
        assert_eq!(deliveries.len(), (ALARMS / 2) as usize, "nothing early");
        let by_a = deliveries
            .values()
            .filter(|got| got[0].node == a_id)
            .count();
        eprintln!("first half: {by_a} delivered by node a, the rest by node b");
        b
    });

    // Node a dies with whatever leases it holds: no graceful shutdown, its tasks just vanish.
    // Besides the hanging alarms, it holds those it claimed ahead of their due time.
    doomed.shutdown_background();
    let held_by_a: HashMap<String, SystemTime> = store
        .granted()
        .into_iter()
        .filter(|granted: &Granted| granted.holder.starts_with(&a_id))
        .map(|granted| (granted.id, granted.lease_until))
        .collect();

    main.block_on(async {
        // The second half is due. Node b delivers what it can claim at once, and what node a
        // held once node a's leases lapse (90 s and a little by the clock), not before.
        clock.set(t0() + Duration::from_millis(ALARMS));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while !store.inner.is_empty() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} alarms left",
                store.inner.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
            while let Ok(got) = rx.try_recv() {
                record(&mut deliveries, got);
            }
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
            let got = deliveries
                .get(&id)
                .unwrap_or_else(|| panic!("{id} was never taken over"));
            assert_eq!(got.len(), 1, "{id}: {got:?}");
            assert_ne!(got[0].node, a_id, "{id}: {got:?}");
        }
        // What node a held, node b delivers only once node a's lease lapsed.
        let mut taken_over = 0;
        for (id, got) in &deliveries {
            let Some(until) = held_by_a.get(id) else {
                continue;
            };
            for delivery in got.iter().filter(|d| d.node != a_id) {
                taken_over += 1;
                assert!(
                    delivery.at >= *until,
                    "{id} delivered by node b at {:?}, before node a's lease lapsed at {until:?}",
                    delivery.at
                );
            }
        }
        assert!(taken_over >= HANGING, "{taken_over} taken over");
        // At least once: only an alarm node a delivered but had not yet deleted when it died
        // may come twice, the second time from node b.
        let doubled: Vec<_> = deliveries.iter().filter(|(_, got)| got.len() > 1).collect();
        for (id, got) in &doubled {
            assert_eq!(got.len(), 2, "{id}: {got:?}");
            assert!(got[0].node == a_id && got[1].node != a_id, "{id}: {got:?}");
        }
        assert!(doubled.len() <= 20, "{} redelivered", doubled.len());
        eprintln!(
            "{taken_over} taken over after node a's leases lapsed, {} delivered again",
            doubled.len()
        );
        b.shutdown().await;
    });
    drop(a);
}

/// A delivery that runs far longer than the lease (its service held open) keeps the alarm: its
/// scheduler renews the lease meanwhile, so the other scheduler, which keeps trying as each
/// lease it saw lapses, never delivers it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_lease_keeps_a_long_delivery_from_the_other_scheduler() {
    use crate::delivery::{Gated, gated};
    init_tracing();
    const LEASE: Duration = Duration::from_secs(90);
    let clock = ManualClock::new(t0());
    let store = TestStore::default();
    // The dispatch timeout runs in real time (a minute, far longer than the test), the lease on
    // the manual clock: the delivery outlives many leases.
    let config = || {
        config(&clock)
            .dispatch_timeout(Duration::from_secs(60))
            .lease(LEASE)
    };
    let Gated {
        node: node_a,
        started: mut started_a,
        release: release_a,
    } = gated("node-a");
    let Gated {
        node: node_b,
        started: mut started_b,
        release: release_b,
    } = gated("node-b");
    let a = Scheduler::start(node_a, store.clone(), config()).unwrap();
    a.schedule(Message::new("gated").with_id("long"), "agg", When::At(t0()))
        .await
        .unwrap();
    started_a.recv().await.unwrap();
    let b = Scheduler::start(node_b, store.clone(), config()).unwrap();
    eventually_held(&b, 1).await;
    // Ten leases long, in steps of a third of a lease minus a little, so each renewal (every
    // third of a lease) lands before the lease it extends lapses.
    let step = LEASE / 3 - Duration::from_secs(1);
    while clock.now() < t0() + LEASE * 10 {
        clock.advance(step);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            started_b.try_recv().is_err(),
            "node b delivered the alarm at {:?} while node a was still delivering it",
            clock.now()
        );
    }
    let tried_by_b = store
        .granted()
        .iter()
        .filter(|granted| granted.holder != store.granted()[0].holder)
        .count();
    assert_eq!(tried_by_b, 0, "node b never got the lease");
    release_a.add_permits(1);
    crate::support::eventually("delivered once, by node a", || async {
        store.inner.is_empty()
    })
    .await;
    assert!(
        tokio::time::timeout(Duration::from_millis(100), started_b.recv())
            .await
            .is_err()
    );
    release_b.add_permits(1);
    a.shutdown().await;
    b.shutdown().await;
}
