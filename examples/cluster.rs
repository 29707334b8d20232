//! Three nodes, one cluster: services found by gossip, calls across nodes, each account's
//! commands placed on one owner (forwarded there, answered straight to the caller), and a node
//! leaving.
//!
//! All three nodes in this process:
//!
//! ```text
//! cargo run --example cluster
//! ```
//!
//! Or one node per terminal (ports 7101-7103 for calls, 7201-7203 for gossip, on 127.0.0.1):
//!
//! ```text
//! cargo run --example cluster -- --node a
//! cargo run --example cluster -- --node b
//! cargo run --example cluster -- --node c
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use switchyard::cluster::{Cluster, ClusterConfig, ClusterEvent};
use switchyard::messaging::Ctx;
use switchyard::{Message, Node, Router};

const SECRET: &[u8] = b"example secret: use 32 random bytes in production";

/// Answers with the node it ran on.
async fn whoami(msg: Message, ctx: Ctx) -> Message {
    let name = ctx.node_id().name().to_owned();
    msg.ok_with(&name)
}

/// A command on an account: answered by the node that owns the account.
async fn deposit(msg: Message, ctx: Ctx) -> Message {
    let name = ctx.node_id().name().to_owned();
    msg.ok_with(&name)
}

fn addresses(name: &str) -> (SocketAddr, SocketAddr) {
    let index = match name {
        "a" => 1,
        "b" => 2,
        _ => 3,
    };
    (
        SocketAddr::from(([127, 0, 0, 1], 7100 + index)),
        SocketAddr::from(([127, 0, 0, 1], 7200 + index)),
    )
}

fn answered_by(reply: &Message) -> String {
    reply
        .answer::<String>()
        .unwrap_or_else(|error| error.to_string())
}

/// Starts node `name`: `a` is a gateway offering nothing; `b` and `c` offer `whoami` and the
/// account service, placed by account id.
async fn start(name: &str, config: ClusterConfig) -> (Node, Cluster) {
    let node = Node::builder(name)
        .default_timeout(Duration::from_secs(2))
        .build();
    let cluster = Cluster::start(node.clone(), config).await.unwrap();
    if name != "a" {
        node.register(
            Router::new("info")
                .service("whoami", whoami)
                .authorize(|_| Ok(())),
        )
        .unwrap();
        node.register(
            Router::new("accounts")
                .service("deposit", deposit)
                .authorize(|_| Ok(()))
                .choose_node(cluster.placement()),
        )
        .unwrap();
    }
    (node, cluster)
}

async fn show_accounts(gateway: &Node, label: &str) {
    let mut owners = BTreeMap::new();
    for account in 1..=6 {
        let id = format!("acc-{account}");
        let reply = gateway
            .dispatch(Message::new("deposit").with_aggregate_id(&id))
            .await;
        owners.insert(id, answered_by(&reply));
    }
    println!("{label}:");
    for (account, owner) in owners {
        println!("  {account} -> ran on {owner}");
    }
}

async fn in_one_process() {
    let config = |seeds: Vec<String>| {
        ClusterConfig::new("example", SECRET.to_vec())
            .seeds(seeds)
            .gossip_interval(Duration::from_millis(100))
    };
    let (a, a_cluster) = start("a", config(vec![])).await;
    let seed = vec![a_cluster.gossip_addr().to_string()];
    let (_b, b_cluster) = start("b", config(seed.clone())).await;
    let (_c, c_cluster) = start("c", config(seed)).await;
    let mut events = a_cluster.events();
    // Ready once every node sees the others, connected, with their services.
    let offering = |cluster: &Cluster, count: usize| {
        let members = cluster.members();
        let ready = members
            .iter()
            .filter(|m| m.connected && m.services.iter().any(|s| s == "deposit"))
            .count();
        ready == count
    };
    while !(offering(&a_cluster, 2) && offering(&b_cluster, 1) && offering(&c_cluster, 1)) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("a sees:");
    for member in a_cluster.members() {
        println!(
            "  {} at {} offering {:?}",
            member.id, member.rpc_addr, member.services
        );
    }

    let mut seen = BTreeMap::new();
    for _ in 0..20 {
        *seen
            .entry(answered_by(&a.dispatch(Message::new("whoami")).await))
            .or_insert(0) += 1;
    }
    println!("\n20 calls of `whoami` from a (which offers none): {seen:?}");

    show_accounts(&a, "\n`deposit` per account, from a").await;
    let forwarded = b_cluster.stats().calls_forwarded + c_cluster.stats().calls_forwarded;
    println!(
        "  {forwarded} of 6 calls reached the non-owner first and were forwarded; every reply went \
         straight to a (b and c received {} replies)",
        b_cluster.stats().replies_received + c_cluster.stats().replies_received
    );

    println!("\nc leaves the cluster");
    c_cluster.shutdown().await;
    loop {
        if let Ok(ClusterEvent::NodeLeft(node)) = events.recv().await {
            println!("a: {node} left");
            break;
        }
    }
    show_accounts(&a, "`deposit` per account, after c left").await;
}

async fn as_one_node(name: &str) {
    let (rpc, gossip) = addresses(name);
    let (_, seed) = addresses("a");
    let config = ClusterConfig::new("example", SECRET.to_vec())
        .rpc_addr(rpc)
        .gossip_addr(gossip)
        .seeds([seed.to_string()]);
    let (node, cluster) = start(name, config).await;
    println!(
        "node {} up: calls on {rpc}, gossip on {gossip}; Ctrl-C leaves",
        cluster.id()
    );
    let mut events = cluster.events();
    let mut tick = tokio::time::interval(Duration::from_secs(3));
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            Ok(event) = events.recv() => println!("{event:?}"),
            _ = tick.tick() => {
                if name == "a" && !cluster.members().is_empty() {
                    let reply = node.dispatch(Message::new("whoami")).await;
                    let account = node.dispatch(Message::new("deposit").with_aggregate_id("acc-1")).await;
                    println!("whoami -> {}, acc-1 -> {}", answered_by(&reply), answered_by(&account));
                }
            }
        }
    }
    cluster.shutdown().await;
    println!("left");
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => in_one_process().await,
        [flag, name] if flag == "--node" && ["a", "b", "c"].contains(&name.as_str()) => {
            as_one_node(name).await;
        }
        _ => eprintln!("usage: cargo run --example cluster [-- --node a|b|c]"),
    }
}
