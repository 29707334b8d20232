//! Who may join: the secret and the cluster id.

use std::time::Duration;

use switchyard_cluster::{Cluster, ClusterConfig, ClusterError};
use switchyard_messaging::{Message, Node, Response, Router};

use crate::support::{CLUSTER, GOSSIP, config, start_with, wait_for, whoami};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_the_wrong_secret_can_call_nothing_and_is_offered_nothing() {
    let a = start_with("a", config(&[]), |node| {
        node.register(
            Router::new("a")
                .service("on_a", whoami)
                .authorize(|_| Ok(())),
        )
        .unwrap();
    })
    .await;
    let seed = vec![a.cluster.gossip_addr().to_string()];
    let intruder_config = ClusterConfig::new(CLUSTER, b"not the secret, also 32 bytes...".to_vec())
        .seeds(seed.clone())
        .gossip_interval(GOSSIP)
        .connect_timeout(Duration::from_millis(300));
    let intruder = start_with("intruder", intruder_config, |node| {
        node.register(
            Router::new("x")
                .service("on_intruder", whoami)
                .authorize(|_| Ok(())),
        )
        .unwrap();
    })
    .await;
    let b = start_with("b", config(&seed), |_| {}).await;
    // Gossip is not authenticated, so the intruder may appear as a member: it must stay
    // unconnected, and its services unused.
    wait_for(Duration::from_secs(3), "b connected to a", || async {
        b.cluster
            .members()
            .iter()
            .any(|m| m.id.name() == "a" && m.connected)
    })
    .await;
    tokio::time::sleep(GOSSIP * 10).await;
    for node in [&a, &b] {
        for member in node.cluster.members() {
            if member.id.name() == "intruder" {
                assert!(
                    !member.connected,
                    "{} authenticated the intruder",
                    node.name()
                );
            }
        }
    }
    let from_b = b.node.dispatch(Message::new("on_intruder")).await;
    assert!(
        matches!(from_b.response(), Some(Response::ServiceUnavailable(_))),
        "{:?}",
        from_b.response()
    );
    let from_intruder = intruder.node.dispatch(Message::new("on_a")).await;
    assert!(
        !from_intruder.response().is_some_and(Response::is_success),
        "the intruder reached a: {:?}",
        from_intruder.response()
    );
    assert_eq!(a.cluster.stats().calls_served, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_of_another_cluster_never_merge() {
    let a = start_with("a", config(&[]), |_| {}).await;
    let seed = vec![a.cluster.gossip_addr().to_string()];
    let other = ClusterConfig::new("another-cluster", crate::support::SECRET.to_vec())
        .seeds(seed.clone())
        .gossip_interval(GOSSIP);
    let stranger = start_with("stranger", other, |_| {}).await;
    let b = start_with("b", config(&seed), |_| {}).await;
    wait_for(Duration::from_secs(3), "a and b see each other", || async {
        a.cluster.members().iter().any(|m| m.id.name() == "b")
    })
    .await;
    tokio::time::sleep(GOSSIP * 10).await;
    assert!(
        a.cluster
            .members()
            .iter()
            .all(|m| m.id.name() != "stranger")
    );
    assert!(
        b.cluster
            .members()
            .iter()
            .all(|m| m.id.name() != "stranger")
    );
    assert!(
        stranger.cluster.members().is_empty(),
        "{:?}",
        stranger.cluster.members()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_secret_is_refused_at_start() {
    let error = Cluster::start(
        Node::new("weak"),
        ClusterConfig::new("c", b"short".to_vec()),
    )
    .await
    .err()
    .unwrap();
    assert!(
        matches!(error, ClusterError::WeakSecret { len: 5 }),
        "{error}"
    );
    assert!(error.to_string().contains("at least 16"), "{error}");
}
