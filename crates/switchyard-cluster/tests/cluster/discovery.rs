//! Finding members and their services.

use std::time::Duration;

use switchyard_cluster::ClusterEvent;
use switchyard_messaging::{Message, Response, Router};

use crate::support::{
    GOSSIP, answered_by, cluster_of, config, standard_routers, start_with, wait_event, wait_for,
    whoami,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_find_each_other_within_two_seconds() {
    let a = start_with("a", config(&[]), standard_routers).await;
    let seed = vec![a.cluster.gossip_addr().to_string()];
    let b = start_with("b", config(&seed), standard_routers).await;
    let c = start_with("c", config(&seed), standard_routers).await;
    assert_eq!(GOSSIP, Duration::from_millis(100));
    for node in [&a, &b, &c] {
        let took = wait_for(
            Duration::from_secs(2),
            "discovery at a 100 ms gossip interval",
            || async {
                let members = node.cluster.members();
                members.len() == 2
                    && members
                        .iter()
                        .all(|m| m.connected && m.services.contains(&"whoami".to_owned()))
            },
        )
        .await;
        eprintln!("{} saw both others in {took:?}", node.name());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_services_are_never_announced_nor_called_remotely() {
    let nodes = cluster_of(2).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let announced = &a.cluster.members()[0].services;
    assert!(announced.contains(&"whoami".to_owned()));
    assert!(
        !announced.contains(&"secret_whoami".to_owned()),
        "{announced:?}"
    );
    // Only b has this router: a must not reach b's private service.
    b.node
        .register(
            Router::new("only-b")
                .private("b_private", whoami)
                .service("b_public", whoami)
                .authorize(|_| Ok(())),
        )
        .unwrap();
    wait_for(
        Duration::from_secs(2),
        "b's new public service announced",
        || async {
            a.cluster.members()[0]
                .services
                .contains(&"b_public".to_owned())
        },
    )
    .await;
    let public = a.node.dispatch(Message::new("b_public")).await;
    assert_eq!(answered_by(&public), "b");
    let private = a.node.dispatch(Message::new("b_private")).await;
    assert!(
        matches!(private.response(), Some(Response::ServiceUnavailable(_))),
        "{:?}",
        private.response()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_router_of_a_node_is_announced() {
    let a = start_with("a", config(&[]), standard_routers).await;
    let seed = vec![a.cluster.gossip_addr().to_string()];
    let b = start_with("b", config(&seed), |node| {
        node.register(
            Router::new("first")
                .service("one", whoami)
                .authorize(|_| Ok(())),
        )
        .unwrap();
        node.register(
            Router::new("second")
                .service("two", whoami)
                .authorize(|_| Ok(())),
        )
        .unwrap();
    })
    .await;
    wait_for(
        Duration::from_secs(2),
        "both routers' services announced",
        || async {
            a.cluster.members().first().is_some_and(|m| {
                m.connected
                    && m.services.contains(&"one".to_owned())
                    && m.services.contains(&"two".to_owned())
            })
        },
    )
    .await;
    for service in ["one", "two"] {
        assert_eq!(
            answered_by(&a.node.dispatch(Message::new(service)).await),
            "b"
        );
    }
    drop(b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_shutdown_is_seen_at_once_and_drains_running_calls() {
    let nodes = cluster_of(3).await;
    let (a, c) = (&nodes[0], &nodes[2]);
    let mut events = a.cluster.events();
    c.node
        .register(
            Router::new("slow")
                .service("slow", |msg: Message| async move {
                    tokio::time::sleep(Duration::from_millis(400)).await;
                    msg.ok()
                })
                .authorize(|_| Ok(())),
        )
        .unwrap();
    wait_for(Duration::from_secs(2), "slow announced", || async {
        a.cluster
            .members()
            .iter()
            .any(|m| m.services.contains(&"slow".to_owned()))
    })
    .await;
    let running = {
        let node = a.node.clone();
        tokio::spawn(async move { node.dispatch(Message::new("slow")).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    c.cluster.shutdown().await;
    let reply = running.await.unwrap();
    assert!(
        matches!(reply.response(), Some(Response::Ok)),
        "the running call finished: {:?}",
        reply.response()
    );
    // Well before a failure detector would notice: the node said it was leaving.
    wait_event(
        &mut events,
        Duration::from_secs(2),
        &ClusterEvent::NodeLeft(c.node.id().clone()),
    )
    .await;
    for _ in 0..20 {
        assert_eq!(
            answered_by(&a.node.dispatch(Message::new("whoami")).await),
            "a"
        );
    }
}

/// A node restarted under the same name is a new member: its id carries a new incarnation, the
/// others see the old one leave and the new one join, and calls reach the new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_is_a_new_member() {
    let a = start_with("a", config(&[]), standard_routers).await;
    let seed = vec![a.cluster.gossip_addr().to_string()];
    let mut events = a.cluster.events();
    let b = |node: &switchyard_messaging::Node| {
        standard_routers(node);
        node.register(
            Router::new("only-b")
                .service("only_b", whoami)
                .authorize(|_| Ok(())),
        )
        .unwrap();
    };
    let first = start_with("b", config(&seed), b).await;
    let bound = Duration::from_secs(2);
    wait_event(
        &mut events,
        bound,
        &ClusterEvent::NodeJoined(first.node.id().clone()),
    )
    .await;
    first.cluster.shutdown().await;
    wait_event(
        &mut events,
        bound,
        &ClusterEvent::NodeLeft(first.node.id().clone()),
    )
    .await;

    let second = start_with("b", config(&seed), b).await;
    assert_ne!(first.node.id(), second.node.id(), "a new incarnation");
    wait_event(
        &mut events,
        bound,
        &ClusterEvent::NodeJoined(second.node.id().clone()),
    )
    .await;
    wait_for(bound, "the new b connected", || async {
        a.cluster
            .members()
            .iter()
            .any(|m| m.id == *second.node.id() && m.connected)
    })
    .await;
    assert!(
        !a.cluster.members().iter().any(|m| m.id == *first.node.id()),
        "the old incarnation is no member any more"
    );
    assert_eq!(
        answered_by(&a.node.dispatch(Message::new("only_b")).await),
        "b"
    );
}
