//! A network partition: three node processes and a client, each in a network namespace of its
//! own, one node's link cut and then restored, while the client deposits and the nodes'
//! schedulers deliver alarms from one shared SQLite file (network namespaces do not separate
//! the file system: the store stays reachable from both sides, as a database server on another
//! network would). The alarms are saved just before the cut and just before healing, due a
//! few seconds later, so they fall due while the link is down and while it heals.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use switchyard::Message;
use switchyard::scheduler::store::{Alarm, AlarmStore};
use switchyard::sqlite::SqliteStore;

use crate::bank::{self, Ack, GOSSIP_PORT};
use crate::children::{Children, ROLE, Spawn, is_child};
use crate::namespaces::{Network, address};

const NODES: [&str; 3] = ["a", "b", "c"];
const CLIENT: &str = "client";
/// Deposits per phase: before the cut, during it, after healing.
const PER_PHASE: u64 = 60;
/// Alarms due during the cut, and as many due while it heals.
const ALARMS: usize = 40;
/// When the alarms of a phase fall due: from this long after they are saved, over `ALARMS_SPREAD`.
const ALARMS_FROM: Duration = Duration::from_secs(1);
const ALARMS_SPREAD: Duration = Duration::from_secs(4);
/// Membership changes (joining, detecting the cut, healing) happen within this.
const CONVERGENCE: Duration = Duration::from_secs(30);
/// A batch of deposits ends within this (each deposit's attempts are bounded too).
const BATCH: Duration = Duration::from_secs(60);

#[test]
fn a_partition_heals_without_losing_doubling_or_delivering_twice() {
    if is_child() {
        bank::child_main();
        return;
    }
    let network =
        Network::create(&[NODES[0], NODES[1], NODES[2], CLIENT]).unwrap_or_else(|error| {
            panic!("the partition test cannot build its network of namespaces: {error}")
        });
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    let mut children = Children::new();
    let seed = SocketAddr::new(address(0).into(), GOSSIP_PORT).to_string();
    for (index, name) in NODES.iter().chain([&CLIENT]).enumerate() {
        let role = if *name == CLIENT { "client" } else { "node" };
        let mut env = vec![
            (ROLE, role.to_owned()),
            (bank::NAME, (*name).to_owned()),
            (bank::BIND, address(index).to_string()),
            (bank::SQLITE, path.display().to_string()),
        ];
        if index > 0 {
            env.push((bank::SEED, seed.clone()));
        }
        children.spawn(Spawn {
            name,
            test: "partitions::a_partition_heals_without_losing_doubling_or_delivering_twice",
            netns: Some(&network.netns(name)),
            env,
        });
        children.expect(name, "ready", Duration::from_secs(30));
    }
    let everyone: Vec<&str> = NODES.iter().copied().chain([CLIENT]).collect();
    wait_members(
        &mut children,
        &everyone,
        &[],
        "every process sees the 3 others",
    );

    let before = batch(&mut children, 0);
    let owners = owners(&before);
    // Cut off the node owning the most accounts, so the most calls must move.
    let isolated = *NODES
        .iter()
        .max_by_key(|node| owners.values().filter(|owner| owner == node).count())
        .unwrap();
    runtime.block_on(save_alarms(&path, "cut"));
    network.cut(isolated);
    let during = batch(&mut children, PER_PHASE);
    let moved = during
        .acked
        .iter()
        .filter(|ack| owners.get(&account_of(&ack.id)).map(String::as_str) == Some(isolated))
        .filter(|ack| ack.node.as_deref().is_some_and(|node| node != isolated))
        .count();
    assert!(
        moved > 0,
        "no deposit to an account of {isolated} was taken over during the cut"
    );
    wait_members(
        &mut children,
        &everyone,
        &[isolated],
        "the cut is seen on both sides",
    );

    // The link stays down until every alarm due during the cut was delivered.
    let mut deliveries = BTreeMap::new();
    collect_alarms(&mut children, &mut deliveries, "cut", Duration::ZERO);
    let during_cut = delivering_nodes(&deliveries);

    runtime.block_on(save_alarms(&path, "healing"));
    network.restore(isolated);
    wait_members(
        &mut children,
        &everyone,
        &[],
        "membership converges after healing",
    );
    let after = batch(&mut children, 2 * PER_PHASE);

    // A moment for any second delivery to show.
    collect_alarms(
        &mut children,
        &mut deliveries,
        "healing",
        Duration::from_secs(1),
    );
    drop(children);
    let acked: Vec<Ack> = [&before, &during, &after]
        .iter()
        .flat_map(|outcome| outcome.acked.iter().cloned())
        .collect();
    let store = SqliteStore::open(&path).unwrap();
    let recorded = runtime.block_on(bank::recorded_by_message(&store));
    bank::assert_exactly_once(&acked, &recorded);
    let doubled: Vec<_> = deliveries.iter().filter(|(_, by)| by.len() != 1).collect();
    assert!(
        doubled.is_empty(),
        "alarms delivered more than once: {doubled:?}"
    );
    assert_eq!(deliveries.len(), 2 * ALARMS, "alarms delivered");
    let by_node = delivering_nodes(&deliveries);
    eprintln!(
        "partition of {isolated}: before [{}], during [{}] ({moved} of its accounts' deposits \
         taken over), after [{}]; {} events, each once; {} alarms each delivered once, by \
         node {by_node:?} ({ALARMS} due during the cut, by {during_cut:?})",
        before.summary(),
        during.summary(),
        after.summary(),
        recorded.len(),
        deliveries.len(),
    );
}

/// The results of one `deposits` command to the client, numbered from `from`.
fn batch(children: &mut Children, from: u64) -> bank::Outcome {
    children.send(CLIENT, &format!("deposits {from} {PER_PHASE}"));
    let summary = children.expect(CLIENT, "batch", BATCH);
    let acked = children
        .take_all("acked", Duration::ZERO)
        .into_iter()
        .map(|(_, line)| {
            let words: Vec<&str> = line.split_whitespace().collect();
            Ack {
                id: words[0].to_owned(),
                node: Some(words[1])
                    .filter(|node| *node != "?")
                    .map(str::to_owned),
                attempts: words[2].parse().unwrap(),
            }
        })
        .collect::<Vec<_>>();
    assert!(
        summary.contains("unacked=0 "),
        "deposits {from}.. not all acknowledged: {summary}"
    );
    let failures = summary
        .split_once('[')
        .map(|(_, kinds)| kinds.trim_end_matches(']'))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|kind| kind.split_once('='))
        .map(|(kind, n)| (kind.to_owned(), n.parse().unwrap()))
        .collect();
    bank::Outcome {
        acked,
        unacked: Vec::new(),
        failures,
    }
}

/// The account of deposit `id`.
fn account_of(id: &str) -> String {
    let i: u64 = id.trim_start_matches("dep-").parse().unwrap();
    format!("acc-{}", i % bank::ACCOUNTS)
}

/// Which node recorded each account's deposits (the last one seen).
fn owners(outcome: &bank::Outcome) -> BTreeMap<String, String> {
    outcome
        .acked
        .iter()
        .filter_map(|ack| Some((account_of(&ack.id), ack.node.clone()?)))
        .collect()
}

/// Waits until each process connects exactly to the others on its side: `cut` off from
/// everyone, everyone else to each other.
fn wait_members(children: &mut Children, everyone: &[&str], cut: &[&str], what: &str) {
    let started = Instant::now();
    loop {
        let mut all_agree = true;
        for process in everyone {
            children.send(process, "members");
            let seen = children.expect(process, "members", Duration::from_secs(5));
            let expected: BTreeSet<&str> = everyone
                .iter()
                .copied()
                .filter(|other| other != process)
                .filter(|other| !(cut.contains(other) || cut.contains(process)))
                .collect();
            let expected = if expected.is_empty() {
                "-".to_owned()
            } else {
                expected.into_iter().collect::<Vec<_>>().join(",")
            };
            all_agree &= seen == expected;
        }
        if all_agree {
            return;
        }
        assert!(
            started.elapsed() < CONVERGENCE,
            "not within {CONVERGENCE:?}: {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Saves the [`ALARMS`] of `phase` (ids `alarm-<phase>-<n>`) straight into the shared store,
/// due from [`ALARMS_FROM`] on. The schedulers find them overdue in their sweeps (every
/// second) and race for each through its lease in the store.
async fn save_alarms(path: &std::path::Path, phase: &str) {
    let store = SqliteStore::open(path).unwrap();
    let start = SystemTime::now() + ALARMS_FROM;
    for i in 0..ALARMS {
        let spread = ALARMS_SPREAD * u32::try_from(i).unwrap() / u32::try_from(ALARMS).unwrap();
        let id = format!("alarm-{phase}-{i}");
        store
            .save(Alarm {
                message: Message::new("ring").with_id(id.clone()),
                aggregate_id: id,
                due: start + spread,
                attempts: 0,
            })
            .await
            .unwrap();
    }
}

/// Adds the alarms' deliveries printed so far to `deliveries` (alarm id to the nodes that
/// delivered it), waiting until every alarm of `phase` was delivered, then `settle` more.
/// Fails if they are not all delivered within [`CONVERGENCE`].
fn collect_alarms(
    children: &mut Children,
    deliveries: &mut BTreeMap<String, Vec<String>>,
    phase: &str,
    settle: Duration,
) {
    let prefix = format!("alarm-{phase}-");
    let delivered = |deliveries: &BTreeMap<String, Vec<String>>| {
        deliveries
            .keys()
            .filter(|id| id.starts_with(&prefix))
            .count()
    };
    let started = Instant::now();
    while delivered(deliveries) < ALARMS && started.elapsed() < CONVERGENCE {
        take_alarms(children, deliveries, Duration::from_millis(200));
    }
    take_alarms(children, deliveries, settle);
    assert_eq!(
        delivered(deliveries),
        ALARMS,
        "alarms due {phase} not all delivered within {CONVERGENCE:?}"
    );
}

/// Adds the deliveries printed so far, and within `wait`, to `deliveries`.
fn take_alarms(
    children: &mut Children,
    deliveries: &mut BTreeMap<String, Vec<String>>,
    wait: Duration,
) {
    for (node, line) in children.take_all("alarm", wait) {
        let id = line.split_whitespace().next().unwrap().to_owned();
        deliveries.entry(id).or_default().push(node);
    }
}

/// How many deliveries each node made.
fn delivering_nodes(deliveries: &BTreeMap<String, Vec<String>>) -> BTreeMap<String, usize> {
    deliveries
        .values()
        .flatten()
        .fold(BTreeMap::new(), |mut n, node| {
            *n.entry(node.clone()).or_insert(0) += 1;
            n
        })
}
