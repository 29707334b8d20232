//! Scenarios written as data: steps applied in order to nodes of this process.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use switchyard_messaging::{DispatchOptions, Message};

use crate::support::{TestNode, config, standard_routers, start_with, wait_for};

enum Step {
    /// Start a node with the standard routers, seeded by the first node.
    Start(&'static str),
    /// Shut a node down gracefully.
    Leave(&'static str),
    /// Wait until `on` sees exactly these members, connected.
    Members(&'static str, &'static [&'static str]),
    /// Call `whoami` from `from` without a local provider and expect only these nodes to answer.
    AnsweredBy(&'static str, &'static [&'static str]),
}

async fn run(steps: &[Step]) {
    let mut nodes: BTreeMap<&str, TestNode> = BTreeMap::new();
    let mut seed: Option<String> = None;
    for step in steps {
        match step {
            Step::Start(name) => {
                let seeds: Vec<String> = seed.iter().cloned().collect();
                // The first node calls from outside: it offers nothing itself.
                let node = if seed.is_none() {
                    start_with(name, config(&seeds), |_| {}).await
                } else {
                    start_with(name, config(&seeds), standard_routers).await
                };
                seed.get_or_insert_with(|| node.cluster.gossip_addr().to_string());
                nodes.insert(name, node);
            }
            Step::Leave(name) => {
                let node = nodes.remove(name).unwrap();
                node.cluster.shutdown().await;
            }
            Step::Members(on, expected) => {
                let node = &nodes[on];
                let expected: HashSet<&str> = expected.iter().copied().collect();
                wait_for(
                    Duration::from_secs(5),
                    &format!("{on} sees {expected:?}"),
                    || async {
                        let members = node.cluster.members();
                        members.iter().all(|m| m.connected)
                            && members.iter().map(|m| m.id.name()).collect::<HashSet<_>>()
                                == expected.iter().copied().collect::<HashSet<_>>()
                    },
                )
                .await;
            }
            Step::AnsweredBy(from, expected) => {
                let node = &nodes[from];
                let mut seen = HashSet::new();
                for _ in 0..30 {
                    let reply = node
                        .node
                        .dispatch_with(
                            Message::new("echo").with_request(&1_u64),
                            DispatchOptions::with_timeout(Duration::from_secs(2)),
                        )
                        .await;
                    let (_, by): (u64, String) = match reply.response() {
                        Some(switchyard_messaging::Response::OkWith(p)) => p.decode().unwrap(),
                        other => panic!("{other:?}"),
                    };
                    seen.insert(by);
                }
                let expected: HashSet<String> = expected.iter().map(|s| (*s).to_owned()).collect();
                assert_eq!(seen, expected, "answers seen from {from}");
            }
        }
    }
    for (_, node) in nodes {
        node.cluster.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_come_and_go_and_calls_follow() {
    use Step::*;
    run(&[
        Start("a"),
        Start("b"),
        Members("a", &["b"]),
        AnsweredBy("a", &["b"]),
        Start("c"),
        Start("d"),
        Members("a", &["b", "c", "d"]),
        Members("c", &["a", "b", "d"]),
        AnsweredBy("a", &["b", "c", "d"]),
        Leave("c"),
        Members("a", &["b", "d"]),
        AnsweredBy("a", &["b", "d"]),
        Leave("b"),
        Members("d", &["a"]),
        AnsweredBy("a", &["d"]),
    ])
    .await;
}
