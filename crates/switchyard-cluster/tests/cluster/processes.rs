//! Nodes in separate OS processes: the test binary starts copies of itself as nodes, calls
//! them over the network, and kills one with SIGKILL.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use switchyard_cluster::{Cluster, ClusterEvent};
use switchyard_messaging::{DispatchOptions, Message, Node};

use crate::support::{answered_by, config, standard_routers, start_with, wait_event, wait_for};

const CHILD_NAME: &str = "SWITCHYARD_CLUSTER_CHILD";
const CHILD_SEED: &str = "SWITCHYARD_CLUSTER_SEED";

/// A node process `nodes_in_separate_processes_and_one_killed` starts (this same test, with
/// the node's name and seed in the environment): it joins the cluster, prints `ready`, and
/// serves until it is killed.
fn child_node(name: &str, seed: String) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let node = Node::builder(name).build();
        standard_routers(&node);
        let cluster = Cluster::start(node, config(&[seed])).await.unwrap();
        println!("ready {}", cluster.id());
        std::future::pending::<()>().await;
    });
}

struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_node(name: &str, seed: &str) -> Process {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "processes::nodes_in_separate_processes_and_one_killed",
            "--exact",
            "--nocapture",
        ])
        .env(CHILD_NAME, name)
        .env(CHILD_SEED, seed)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    loop {
        match lines.next() {
            Some(Ok(line)) if line.starts_with("ready ") => break,
            Some(Ok(_)) => {}
            other => panic!("node {name} did not start: {other:?}"),
        }
    }
    Process(child)
}

#[test]
fn nodes_in_separate_processes_and_one_killed() {
    if let (Ok(name), Ok(seed)) = (std::env::var(CHILD_NAME), std::env::var(CHILD_SEED)) {
        child_node(&name, seed);
        return;
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(kill_one_of_two_processes());
}

async fn kill_one_of_two_processes() {
    let a = start_with("a", config(&[]), |_| {}).await;
    let seed = a.cluster.gossip_addr().to_string();
    let (b, mut c) = {
        let seed_b = seed.clone();
        let b = tokio::task::spawn_blocking(move || spawn_node("b", &seed_b));
        let c = tokio::task::spawn_blocking(move || spawn_node("c", &seed));
        (b.await.unwrap(), c.await.unwrap())
    };
    wait_for(
        Duration::from_secs(5),
        "both processes connected",
        || async {
            let m = a.cluster.members();
            m.len() == 2 && m.iter().all(|m| m.connected)
        },
    )
    .await;
    let mut seen = HashSet::new();
    for _ in 0..40 {
        seen.insert(answered_by(&a.node.dispatch(Message::new("whoami")).await));
    }
    assert_eq!(seen, HashSet::from(["b".to_owned(), "c".to_owned()]));

    let c_id = a
        .cluster
        .members()
        .into_iter()
        .find(|m| m.id.name() == "c")
        .unwrap()
        .id;
    let mut events = a.cluster.events();
    // SIGKILL: no goodbye, no flush.
    c.0.kill().unwrap();
    c.0.wait().unwrap();
    wait_event(
        &mut events,
        Duration::from_secs(5),
        &ClusterEvent::NodeLeft(c_id),
    )
    .await;
    for _ in 0..20 {
        let reply = a
            .node
            .dispatch_with(
                Message::new("whoami"),
                DispatchOptions::with_timeout(Duration::from_secs(2)),
            )
            .await;
        assert_eq!(answered_by(&reply), "b");
    }
    drop(b);
}
