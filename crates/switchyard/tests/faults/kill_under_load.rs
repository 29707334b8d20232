//! A node killed under load: three node processes on loopback sharing one PostgreSQL schema,
//! deposits placed by rendezvous sent from this process (a cluster member without services), and
//! one node SIGKILLed while they are under way.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use switchyard::Node;
use switchyard::cluster::Cluster;
use switchyard::messaging::DispatchOptions;

use crate::bank::{self, Ack};
use crate::children::{Children, ROLE, Spawn, is_child};

const NODES: [&str; 3] = ["n1", "n2", "n3"];
const VICTIM: &str = "n2";
const DEPOSITS: u64 = 600;
/// Deposits in flight at once: enough that the kill finds some running on the victim.
const WORKERS: usize = 16;
/// The victim is killed once this many deposits were acknowledged.
const KILL_AFTER: usize = 150;

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
        children.spawn(Spawn {
            name,
            test: "kill_under_load::a_node_killed_under_load_loses_and_doubles_nothing",
            netns: None,
            env,
        });
        let ready = children.expect(name, "ready", Duration::from_secs(30));
        seed.get_or_insert(ready);
    }

    let (outcome, resent, recorded) = runtime.block_on(async {
        let client = Node::builder("client").build();
        let loopback = "127.0.0.1:0".parse().unwrap();
        let cluster = Cluster::start(
            client.clone(),
            bank::cluster_config(loopback, loopback, seed.clone()),
        )
        .await
        .unwrap();
        wait_for_providers(&cluster).await;

        let acked = AtomicUsize::new(0);
        let kill_now = tokio::sync::Notify::new();
        let load = async {
            let outcome = bank::deposits(&client, 0..DEPOSITS, WORKERS, |_| {
                if acked.fetch_add(1, Ordering::SeqCst) + 1 == KILL_AFTER {
                    kill_now.notify_one();
                }
            })
            .await;
            // Never leave the kill waiting, even when the load ended short of it.
            kill_now.notify_one();
            outcome
        };
        let kill = async {
            kill_now.notified().await;
            let acked_then = acked.load(Ordering::SeqCst);
            // SIGKILL: no goodbye, no flush, in-flight calls cut.
            children.kill(VICTIM);
            acked_then
        };
        let (outcome, acked_then) = tokio::join!(load, kill);
        assert!(
            acked_then < DEPOSITS as usize,
            "{VICTIM} was killed only after the load ({acked_then} acknowledged)"
        );
        assert!(
            outcome.unacked.is_empty(),
            "never acknowledged: {:?}",
            outcome.unacked
        );
        assert!(
            !outcome.failures.is_empty(),
            "the kill cut no call in flight, so no retry was tested: {}",
            outcome.summary()
        );

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
        (outcome, retried.len(), recorded)
    });

    bank::assert_exactly_once(&outcome.acked, &recorded);
    assert_eq!(recorded.len() as u64, DEPOSITS);
    eprintln!(
        "{VICTIM} killed after {KILL_AFTER} acknowledgements: [{}]; {resent} retried deposits \
         sent again, each answered as done; {} events, each once",
        outcome.summary(),
        recorded.len()
    );
}

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
