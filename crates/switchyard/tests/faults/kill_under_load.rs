//! A node killed under load: three node processes on loopback sharing one PostgreSQL schema,
//! deposits placed by rendezvous sent from this process (a cluster member without services), and
//! one node SIGKILLed while it holds calls in flight: some not yet run, some whose event was
//! committed but not acknowledged. The node holds them on cue (`hold.rs`), so the kill cuts
//! calls in every run, not by luck of timing.

use std::time::Duration;

use switchyard::Node;
use switchyard::cluster::Cluster;
use switchyard::messaging::DispatchOptions;

use crate::bank::{self, Ack, Load};
use crate::children::{Children, ROLE, Spawn, is_child};
use crate::hold::{HELD_EACH, HOLD_AFTER};

const NODES: [&str; 3] = ["n1", "n2", "n3"];
const VICTIM: &str = "n2";
const DEPOSITS: u64 = 600;
/// The victim holds every deposit after this many of its own (it gets about a third of all).
const VICTIM_SERVES: u64 = 20;
/// The load: more deposits in flight than the victim holds before it is killed, so the others
/// keep going; and a deadline so long that a call ending by it, not by the kill, is a fault:
/// a call cut by the kill must end at once, as outcome unknown (issue 13, item 2).
const LOAD: Load = Load {
    workers: 16,
    attempt_timeout: Duration::from_secs(20),
};
/// The victim holds its calls within this, once the load started.
const HOLDING: Duration = Duration::from_secs(60);

#[test]
fn a_node_killed_under_load_loses_and_doubles_nothing() {
    if is_child() {
        bank::child_main();
        return;
    }
    let url = switchyard_postgres::test_server::shared_url()
        .unwrap_or_else(|error| panic!("the kill test needs PostgreSQL: {error}"));
    let schema = format!(
        "faults_kill_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // Migrated here, once, before any node connects.
    let store = runtime.block_on(bank::postgres(&url, &schema));

    let mut children = Children::new();
    let mut seed = None;
    for name in NODES {
        let mut env = vec![
            (ROLE, "node".to_owned()),
            (bank::NAME, name.to_owned()),
            (bank::BIND, "127.0.0.1".to_owned()),
            (bank::POSTGRES_URL, url.clone()),
            (bank::POSTGRES_SCHEMA, schema.clone()),
        ];
        env.extend(seed.clone().map(|seed| (bank::SEED, seed)));
        if name == VICTIM {
            env.push((HOLD_AFTER, VICTIM_SERVES.to_string()));
        }
        children.spawn(Spawn {
            name,
            test: "kill_under_load::a_node_killed_under_load_loses_and_doubles_nothing",
            netns: None,
            env,
        });
        let ready = children.expect(name, "ready", Duration::from_secs(30));
        seed.get_or_insert(ready);
    }

    let client = Node::builder("client").build();
    let cluster = runtime.block_on(async {
        let loopback = "127.0.0.1:0".parse().unwrap();
        let cluster = Cluster::start(
            client.clone(),
            bank::cluster_config(loopback, loopback, seed.clone()),
        )
        .await
        .unwrap();
        wait_for_providers(&cluster).await;
        cluster
    });

    let load = runtime.spawn({
        let client = client.clone();
        async move { bank::deposits(&client, 0..DEPOSITS, LOAD, |_| {}).await }
    });
    // Holding: the victim has calls of both kinds in flight, and will not answer them.
    let held = children.expect(VICTIM, "holding", HOLDING);
    // SIGKILL: no goodbye, no flush, the calls in flight cut.
    children.kill(VICTIM);
    let outcome = runtime.block_on(load).unwrap();
    assert!(
        outcome.unacked.is_empty(),
        "never acknowledged: {:?}",
        outcome.unacked
    );
    let cut = outcome.failures.get("unknown").copied().unwrap_or_default();
    assert!(
        cut >= 2 * HELD_EACH,
        "the kill cut {cut} calls, fewer than the victim held ({held}): {}",
        outcome.summary()
    );
    let other: Vec<_> = outcome
        .failures
        .keys()
        .filter(|kind| !NOT_DONE.contains(&kind.as_str()))
        .collect();
    assert!(
        other.is_empty(),
        "attempts failed otherwise than as not delivered or outcome unknown ({other:?}; a \
         timeout means a call cut by the kill waited out its deadline): {}",
        outcome.summary()
    );

    let (resent, recorded) = runtime.block_on(async {
        // Every deposit that needed a retry, sent once more with its message id: answered as a
        // success, recording nothing new.
        let retried: Vec<Ack> = outcome
            .acked
            .iter()
            .filter(|ack| ack.attempts > 1)
            .cloned()
            .collect();
        for ack in &retried {
            let i: u64 = ack.id.trim_start_matches("dep-").parse().unwrap();
            let reply = client
                .dispatch_with(
                    bank::deposit_message(i),
                    DispatchOptions::with_timeout(Duration::from_secs(5)),
                )
                .await;
            assert!(
                reply.success().is_ok(),
                "{} sent again was answered {:?}",
                ack.id,
                reply.response()
            );
        }
        let recorded = bank::recorded_by_message(&store).await;
        cluster.shutdown().await;
        (retried.len(), recorded)
    });

    bank::assert_exactly_once(&outcome.acked, &recorded);
    assert_eq!(recorded.len() as u64, DEPOSITS);
    eprintln!(
        "{VICTIM} killed holding {held} calls: [{}]; {resent} retried deposits sent again, \
         each answered as done; {} events, each once",
        outcome.summary(),
        recorded.len()
    );
}

/// The kinds of failed attempt a kill may cause: the call never reached a node, or was cut
/// after it left (see `bank::failure_kind`).
const NOT_DONE: [&str; 3] = ["unknown", "no_nodes", "unavailable"];

/// Waits until this member holds connections to every node (so the load starts spread over all
/// three).
async fn wait_for_providers(cluster: &Cluster) {
    let expected = NODES.join(",");
    for _ in 0..300 {
        if bank::connected_members(cluster) == expected {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "the client sees {} instead of {expected}",
        bank::connected_members(cluster)
    );
}
