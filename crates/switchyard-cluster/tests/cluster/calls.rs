//! Calls across nodes: plain, from a handler, forwarded, failed over, many at once.

use std::collections::HashSet;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use switchyard_messaging::{Ctx, DispatchOptions, Message, NodeChoice, NodeId, Response, Router};

use crate::support::{
    answered_by, cluster_of, config, standard_routers, start_with, wait_for, whoami,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_on_another_node_answers() {
    let a = start_with("a", config(&[]), |_| {}).await;
    let seed = vec![a.cluster.gossip_addr().to_string()];
    let b = start_with("b", config(&seed), standard_routers).await;
    wait_for(Duration::from_secs(2), "b connected", || async {
        a.cluster.members().first().is_some_and(|m| m.connected)
    })
    .await;
    let reply = a
        .node
        .dispatch(Message::new("whoami").with_correlation_id("conversation-7"))
        .await;
    assert_eq!(answered_by(&reply), "b");
    assert_eq!(
        reply.correlation_id(),
        "conversation-7",
        "the conversation travels"
    );
    assert_eq!(b.cluster.stats().calls_served, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_provider_comes_first() {
    let nodes = cluster_of(3).await;
    for _ in 0..20 {
        assert_eq!(
            answered_by(&nodes[1].node.dispatch(Message::new("whoami")).await),
            "b"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_calls_a_service_on_another_node_through_its_ctx() {
    async fn relay(msg: Message, ctx: Ctx) -> Message {
        let inner = ctx.dispatch(Message::caused_by(&msg, "far_whoami")).await;
        let far: String = match inner.response() {
            Some(Response::OkWith(payload)) => payload.decode().unwrap(),
            other => panic!("{other:?}"),
        };
        msg.ok_with(&format!("{} via {}", far, ctx.node_id().name()))
    }
    let a = start_with("a", config(&[]), |node| {
        node.register(
            Router::new("relay")
                .service("relay", relay)
                .authorize(|_| Ok(())),
        )
        .unwrap();
    })
    .await;
    let seed = vec![a.cluster.gossip_addr().to_string()];
    let _b = start_with("b", config(&seed), |node| {
        node.register(
            Router::new("far")
                .service("far_whoami", whoami)
                .authorize(|_| Ok(())),
        )
        .unwrap();
    })
    .await;
    wait_for(Duration::from_secs(2), "b's service known", || async {
        a.cluster
            .members()
            .first()
            .is_some_and(|m| m.connected && m.services.contains(&"far_whoami".to_owned()))
    })
    .await;
    let reply = a.node.dispatch(Message::new("relay")).await;
    assert_eq!(answered_by(&reply), "b via a");
}

/// b's `choose_node` names c, and c's names b. A call reaching b first is run by c, one
/// reaching c first is run by b (the owner does not choose again), and either way the owner
/// answers the caller directly: the forwarder never sees the reply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarded_call_is_answered_by_the_owner_straight_to_the_caller() {
    let a = start_with("a", config(&[]), |_| {}).await;
    let seed = vec![a.cluster.gossip_addr().to_string()];
    let b_id: Arc<OnceLock<NodeId>> = Arc::default();
    let to_b = b_id.clone();
    let c = start_with("c", config(&seed), move |node| {
        node.register(
            Router::new("owned")
                .service("owned", whoami)
                .authorize(|_| Ok(()))
                .choose_node(move |_| {
                    to_b.get()
                        .map_or(NodeChoice::Local, |b| NodeChoice::Node(b.clone()))
                }),
        )
        .unwrap();
    })
    .await;
    let owner = c.node.id().clone();
    let b = start_with("b", config(&seed), move |node| {
        node.register(
            Router::new("owned")
                .service("owned", whoami)
                .authorize(|_| Ok(()))
                .choose_node(move |_| NodeChoice::Node(owner.clone())),
        )
        .unwrap();
    })
    .await;
    b_id.set(b.node.id().clone()).unwrap();
    for node in [&a, &b, &c] {
        wait_for(Duration::from_secs(3), "all connected", || async {
            let m = node.cluster.members();
            m.len() == 2 && m.iter().all(|m| m.connected)
        })
        .await;
    }
    let mut run_by = std::collections::HashMap::new();
    for _ in 0..30 {
        let reply = a.node.dispatch(Message::new("owned")).await;
        *run_by.entry(answered_by(&reply)).or_insert(0_u64) += 1;
    }
    // A node counts a forward or a reply once its write returns, which may be after the caller
    // has the reply.
    wait_for(
        Duration::from_secs(2),
        "every forward and reply counted",
        || async {
            let (b, c) = (b.cluster.stats(), c.cluster.stats());
            b.replies_sent + c.replies_sent >= 30 && b.calls_forwarded + c.calls_forwarded >= 30
        },
    )
    .await;
    let (a_stats, b_stats, c_stats) = (a.cluster.stats(), b.cluster.stats(), c.cluster.stats());
    assert_eq!(
        b_stats.calls_forwarded + c_stats.calls_forwarded,
        30,
        "every call was forwarded once"
    );
    assert_eq!(
        run_by.get("c").copied().unwrap_or(0),
        b_stats.calls_forwarded,
        "calls reaching b ran on c"
    );
    assert_eq!(
        run_by.get("b").copied().unwrap_or(0),
        c_stats.calls_forwarded,
        "calls reaching c ran on b"
    );
    assert_eq!(
        b_stats.replies_received + c_stats.replies_received,
        0,
        "no forwarder saw a reply"
    );
    assert_eq!(
        b_stats.replies_sent + c_stats.replies_sent,
        30,
        "each owner answered once per call"
    );
    assert_eq!(a_stats.replies_received, 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declining_node_passes_the_call_to_the_next_and_all_declining_is_reported() {
    async fn declines(msg: Message, ctx: Ctx) -> Message {
        let reason = format!("{} is draining", ctx.node_id().name());
        msg.return_with(Response::TryAnotherNode(reason))
    }
    let a = start_with("a", config(&[]), |_| {}).await;
    let seed = vec![a.cluster.gossip_addr().to_string()];
    let b = start_with("b", config(&seed), |node| {
        node.register(
            Router::new("r")
                .service("picky", declines)
                .service("none", declines)
                .authorize(|_| Ok(())),
        )
        .unwrap();
    })
    .await;
    let c = start_with("c", config(&seed), |node| {
        node.register(
            Router::new("r")
                .service("picky", whoami)
                .service("none", declines)
                .authorize(|_| Ok(())),
        )
        .unwrap();
    })
    .await;
    wait_for(Duration::from_secs(3), "both providers usable", || async {
        let m = a.cluster.members();
        m.len() == 2
            && m.iter()
                .all(|m| m.connected && m.services.contains(&"picky".to_owned()))
    })
    .await;
    for _ in 0..10 {
        assert_eq!(
            answered_by(&a.node.dispatch(Message::new("picky")).await),
            "c"
        );
    }
    let none = a.node.dispatch(Message::new("none")).await;
    match none.response() {
        Some(Response::NoNodesAvailable(reasons)) => {
            let nodes: HashSet<&str> = reasons.iter().map(|(node, _)| node.name()).collect();
            assert_eq!(nodes, HashSet::from(["b", "c"]));
            assert!(
                reasons
                    .iter()
                    .all(|(node, reason)| reason.contains(node.name())),
                "{reasons:?}"
            );
        }
        other => panic!("expected NoNodesAvailable, got {other:?}"),
    }
    drop((b, c));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_remote_calls_each_get_their_own_reply() {
    let a = start_with("a", config(&[]), |_| {}).await;
    let seed = vec![a.cluster.gossip_addr().to_string()];
    let _b = start_with("b", config(&seed), standard_routers).await;
    wait_for(Duration::from_secs(2), "b connected", || async {
        a.cluster.members().first().is_some_and(|m| m.connected)
    })
    .await;
    let calls = (0..1_000_u64).map(|n| {
        let node = a.node.clone();
        tokio::spawn(async move {
            let reply = node
                .dispatch_with(
                    Message::new("echo").with_request(&n),
                    DispatchOptions::with_timeout(Duration::from_secs(10)),
                )
                .await;
            let (echoed, by): (u64, String) = match reply.response() {
                Some(Response::OkWith(payload)) => payload.decode().unwrap(),
                other => panic!("call {n}: {other:?}"),
            };
            assert_eq!(echoed, n, "call {n} got another call's reply");
            assert_eq!(by, "b");
        })
    });
    for call in futures::future::join_all(calls).await {
        call.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_runs_on_the_receiving_node_and_validate_reaches_remote_providers() {
    let a = start_with("a", config(&[]), |_| {}).await;
    let seed = vec![a.cluster.gossip_addr().to_string()];
    let _b = start_with("b", config(&seed), |node| {
        node.register(Router::new("guarded").service("guarded", whoami).authorize(
            |msg: &Message| {
                if msg.log_fields().get("user").is_some_and(|u| u == "ada") {
                    Ok(())
                } else {
                    Err(Response::Forbidden(Some("only ada".into())))
                }
            },
        ))
        .unwrap();
    })
    .await;
    wait_for(Duration::from_secs(2), "b connected", || async {
        a.cluster.members().first().is_some_and(|m| m.connected)
    })
    .await;
    let denied = a.node.dispatch(Message::new("guarded")).await;
    assert!(
        matches!(denied.response(), Some(Response::Forbidden(Some(r))) if r == "only ada"),
        "{:?}",
        denied.response()
    );
    let allowed = a
        .node
        .dispatch(Message::new("guarded").with_log_field("user", "ada"))
        .await;
    assert_eq!(answered_by(&allowed), "b");
    let authorized = a.node.authorized(&Message::new("guarded")).await;
    assert!(
        matches!(authorized, switchyard_messaging::Authorization::Denied(_)),
        "{authorized:?}"
    );
    let checked = a
        .node
        .validate(Message::new("guarded").with_log_field("user", "ada"))
        .await;
    assert!(
        checked.response().is_some_and(Response::is_success),
        "{:?}",
        checked.response()
    );
}

/// Commands for one aggregate run on one node, whichever node the caller reached first, and
/// move when that node leaves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn placement_sends_each_aggregate_to_its_owner() {
    fn accounts(node: &switchyard_messaging::Node, cluster: &switchyard_cluster::Cluster) {
        node.register(
            Router::new("accounts")
                .service("deposit", whoami)
                .authorize(|_| Ok(()))
                .choose_node(cluster.placement()),
        )
        .unwrap();
    }
    let a = start_with("a", config(&[]), |_| {}).await;
    let seed = vec![a.cluster.gossip_addr().to_string()];
    let b = start_with("b", config(&seed), |_| {}).await;
    accounts(&b.node, &b.cluster);
    let c = start_with("c", config(&seed), |_| {}).await;
    accounts(&c.node, &c.cluster);
    for (node, count) in [(&a, 2), (&b, 1), (&c, 1)] {
        wait_for(
            Duration::from_secs(3),
            "deposit providers connected",
            || async {
                node.cluster
                    .members()
                    .iter()
                    .filter(|m| m.connected && m.services.contains(&"deposit".to_owned()))
                    .count()
                    == count
            },
        )
        .await;
    }
    let owners = [b.node.id().clone(), c.node.id().clone()];
    for account in 0..40 {
        let id = format!("acc-{account}");
        let expected = switchyard_cluster::placement::owner(&id, &owners)
            .unwrap()
            .name()
            .to_owned();
        for _ in 0..3 {
            let reply = a
                .node
                .dispatch(Message::new("deposit").with_aggregate_id(&id))
                .await;
            assert_eq!(answered_by(&reply), expected, "{id}");
        }
    }
    let forwarded = b.cluster.stats().calls_forwarded + c.cluster.stats().calls_forwarded;
    assert!(forwarded > 0, "some calls reached a non-owner first");
    c.cluster.shutdown().await;
    wait_for(Duration::from_secs(3), "c gone from b's view", || async {
        b.cluster.members().iter().all(|m| m.id.name() != "c")
    })
    .await;
    for account in 0..40 {
        let reply = a
            .node
            .dispatch(Message::new("deposit").with_aggregate_id(format!("acc-{account}")))
            .await;
        assert_eq!(answered_by(&reply), "b");
    }
}

/// The conversation crosses nodes: correlation id, log fields and trace context arrive with the
/// message, and a message caused there keeps them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trace_context_and_log_fields_travel_with_the_call() {
    async fn context(msg: Message) -> Message {
        let seen = (
            msg.correlation_id().to_owned(),
            msg.log_fields()
                .get(switchyard_messaging::TRACE_CONTEXT_FIELD)
                .map(str::to_owned),
            msg.log_fields().get("tenant").map(str::to_owned),
            Message::caused_by(&msg, "next")
                .log_fields()
                .get(switchyard_messaging::TRACE_CONTEXT_FIELD)
                .map(str::to_owned),
        );
        msg.ok_with(&seen)
    }
    let a = start_with("a", config(&[]), |_| {}).await;
    let seed = vec![a.cluster.gossip_addr().to_string()];
    let _b = start_with("b", config(&seed), |node| {
        node.register(
            Router::new("ctx")
                .service("context", context)
                .authorize(|_| Ok(())),
        )
        .unwrap();
    })
    .await;
    wait_for(Duration::from_secs(2), "b connected", || async {
        a.cluster.members().first().is_some_and(|m| m.connected)
    })
    .await;
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let reply = a
        .node
        .dispatch(
            Message::new("context")
                .with_correlation_id("conversation-9")
                .with_trace_context(traceparent)
                .with_log_field("tenant", "acme"),
        )
        .await;
    let seen: (String, Option<String>, Option<String>, Option<String>) = match reply.response() {
        Some(Response::OkWith(payload)) => payload.decode().unwrap(),
        other => panic!("{other:?}"),
    };
    assert_eq!(seen.0, "conversation-9");
    assert_eq!(seen.1.as_deref(), Some(traceparent));
    assert_eq!(seen.2.as_deref(), Some("acme"));
    assert_eq!(
        seen.3.as_deref(),
        Some(traceparent),
        "caused messages keep it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_from_another_node_carries_its_position() {
    // What an aggregate command's reply carries for read-your-writes (`Message::position`).
    async fn appended(msg: Message) -> Message {
        msg.with_position(42).ok()
    }
    let a = start_with("a", config(&[]), |_| {}).await;
    let seed = vec![a.cluster.gossip_addr().to_string()];
    let _b = start_with("b", config(&seed), |node| {
        node.register(
            Router::new("far")
                .service("appended", appended)
                .authorize(|_| Ok(())),
        )
        .unwrap();
    })
    .await;
    wait_for(Duration::from_secs(2), "b's service known", || async {
        a.cluster
            .members()
            .first()
            .is_some_and(|m| m.connected && m.services.contains(&"appended".to_owned()))
    })
    .await;
    let reply = a.node.dispatch(Message::new("appended")).await;
    assert_eq!(reply.response(), Some(&Response::Ok));
    assert_eq!(reply.position(), Some(42));
}
