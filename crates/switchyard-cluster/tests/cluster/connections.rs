//! What calls do when the connection they travel on stalls, breaks or cannot be made again,
//! with a relay ([`Proxy`]) between the nodes that the test stalls, cuts and makes refuse.

use std::time::Duration;

use switchyard_messaging::{DispatchOptions, Message, Response, Router};
use tokio::time::Instant;

use crate::support::{Proxy, answered_by, config, standard_routers, start_with, wait_for};

/// Larger than the kernel buffers on the way (the caller's send buffer and the relay's
/// receive buffer): a frame this big stays half written while the relay is stalled.
const BIG: usize = 32 * 1024 * 1024;

/// Calls queued behind a half-written frame never left this node: when the connection breaks
/// they go to the next provider within their one deadline, while the half-written call,
/// which the peer never received whole, is not delivered either and says so at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_that_never_left_a_broken_connection_go_to_the_next_provider() {
    let big_frames = |config: switchyard_cluster::ClusterConfig| config.max_frame_len(2 * BIG);
    let a = start_with("a", big_frames(config(&[])), |_| {}).await;
    let seed = vec![a.cluster.gossip_addr().to_string()];
    let proxy = Proxy::start().await;
    // `a` has the smaller id, so it dials `b`, through the relay.
    let b = start_with(
        "b",
        big_frames(config(&seed)).advertised_rpc_addr(proxy.addr),
        |node| {
            standard_routers(node);
            node.register(
                Router::new("bulk")
                    .service("sink", |msg: Message| async move { msg.ok() })
                    .authorize(|_| Ok(())),
            )
            .unwrap();
        },
    )
    .await;
    proxy.target(b.cluster.rpc_addr());
    let _c = start_with("c", big_frames(config(&seed)), standard_routers).await;
    wait_for(Duration::from_secs(5), "a connected to b and c", || async {
        let m = a.cluster.members();
        m.len() == 2 && m.iter().all(|m| m.connected)
    })
    .await;
    assert!(proxy.accepted() >= 1, "a reaches b through the relay");

    proxy.pause(true);
    let dispatch = |message: Message| {
        let node = a.node.clone();
        tokio::spawn(async move {
            node.dispatch_with(
                message,
                DispatchOptions::with_timeout(Duration::from_secs(30)),
            )
            .await
        })
    };
    let big = dispatch(Message::new("sink").with_request(&vec![1_u8; BIG]));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !big.is_finished(),
        "the big call is stuck in the stalled relay"
    );
    // Each call tries b or c first, at random; those trying b first wait behind the big one.
    let calls: Vec<_> = (0..24).map(|_| dispatch(Message::new("whoami"))).collect();
    wait_for(
        Duration::from_secs(5),
        "the calls trying c first are answered",
        || async { calls.iter().filter(|c| c.is_finished()).count() > 0 },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let waiting = calls.iter().filter(|c| !c.is_finished()).count();
    assert!(
        waiting > 0,
        "no call tried b first; the odds of that are 2^-24"
    );

    let cut = Instant::now();
    proxy.cut();
    for call in calls {
        let reply = tokio::time::timeout(Duration::from_secs(5), call)
            .await
            .expect("a call queued for b was not passed on within 5 s of the break")
            .unwrap();
        assert_eq!(answered_by(&reply), "c");
    }
    let big = tokio::time::timeout(Duration::from_secs(5), big)
        .await
        .expect("the half-written call still waits 5 s after the break")
        .unwrap();
    assert!(cut.elapsed() < Duration::from_secs(5));
    match big.response() {
        Some(Response::NoNodesAvailable(declined)) => {
            assert_eq!(declined.len(), 1);
            assert_eq!(declined[0].0.name(), "b");
            assert!(
                declined[0].1.contains("before the call was sent"),
                "{}",
                declined[0].1
            );
        }
        other => panic!("expected the big call to be reported undelivered, got {other:?}"),
    }
}

/// A connection to a live member breaks and the member refuses new ones for a while: dials are
/// spaced by the backoff (a burst of calls needing the connection does not dial each time, it
/// fails at once), and once the member accepts again calls reach it over a new connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_connection_is_dialed_again_with_backoff_and_calls_resume() {
    let backoff = |config: switchyard_cluster::ClusterConfig| {
        config.reconnect_backoff(Duration::from_millis(50), Duration::from_millis(800))
    };
    // `a` forwards every `whoami` to `b` (its `choose_node`), so each call needs the
    // connection to `b`.
    let a = start_with("a", backoff(config(&[])), |_| {}).await;
    let seed = vec![a.cluster.gossip_addr().to_string()];
    let proxy = Proxy::start().await;
    let b = start_with(
        "b",
        backoff(config(&seed)).advertised_rpc_addr(proxy.addr),
        |node| {
            standard_routers(node);
            node.register(
                Router::new("forwarding")
                    .service("to_b", crate::support::whoami)
                    .authorize(|_| Ok(())),
            )
            .unwrap();
        },
    )
    .await;
    proxy.target(b.cluster.rpc_addr());
    let b_id = b.node.id().clone();
    a.node
        .register(
            Router::new("forwarding")
                .service("to_b", crate::support::whoami)
                .choose_node(move |_| switchyard_messaging::NodeChoice::Node(b_id.clone()))
                .authorize(|_| Ok(())),
        )
        .unwrap();
    wait_for(Duration::from_secs(5), "a connected to b", || async {
        a.cluster.members().first().is_some_and(|m| m.connected)
    })
    .await;
    let call = |service: &'static str| {
        a.node.dispatch_with(
            Message::new(service),
            DispatchOptions::with_timeout(Duration::from_secs(2)),
        )
    };
    assert_eq!(answered_by(&call("to_b").await), "b");
    assert_eq!(answered_by(&call("whoami").await), "b");

    proxy.refuse(true);
    proxy.cut();
    wait_for(
        Duration::from_secs(5),
        "a saw the connection break",
        || async { a.cluster.stats().connections_lost >= 1 && a.cluster.stats().failed_dials >= 1 },
    )
    .await;
    let before = a.cluster.stats();
    let window = Instant::now();
    let mut failed_fast = 0;
    while window.elapsed() < Duration::from_secs(2) {
        let started = Instant::now();
        let reply = call("to_b").await;
        assert!(
            !matches!(reply.response(), Some(Response::OkWith(_))),
            "b answered through a relay that refuses"
        );
        if started.elapsed() < Duration::from_millis(100) {
            failed_fast += 1;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let after = a.cluster.stats();
    let dials = after.dials - before.dials;
    // 50 ms doubling to 800 ms, less up to half of each at random: at most a dozen dials in
    // 2 s; one per call would be well over a hundred.
    assert!(
        (1..=12).contains(&dials),
        "{dials} dials in 2 s of refusals"
    );
    assert!(failed_fast > 20, "only {failed_fast} calls failed at once");

    proxy.refuse(false);
    wait_for(
        Duration::from_secs(5),
        "calls reach b again over a new connection",
        || async { matches!(call("whoami").await.response(), Some(Response::OkWith(_))) },
    )
    .await;
    assert_eq!(answered_by(&call("to_b").await), "b");
    assert!(a.cluster.members()[0].connected);
}
