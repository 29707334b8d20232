//! Tests of the cluster's logic (reply routing, forwarding, the end of calls whose connection
//! is lost, cancels, fail-over) over the in-memory transport, on paused time: whole nodes,
//! with their handshake, connections, caller and server, but no socket and no gossip (each
//! node is told its members directly). The socket behaviour has its own tests in
//! `tests/cluster`.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use switchyard_messaging::{Ctx, Router};

use super::*;
use crate::frame::Frame;
use crate::membership::MemberInfo;
use crate::transport::memory::MemoryNetwork;

/// A node of an in-memory cluster.
struct Twin {
    node: Node,
    inner: Arc<Inner>,
}

fn addr_of(index: u8) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, index], 7000))
}

fn test_config() -> ClusterConfig {
    ClusterConfig::new("c", b"sixteen or more secret bytes".to_vec())
}

/// Starts node `name` at address `index` of `network`, with `routers`.
fn twin(network: &MemoryNetwork, name: &str, index: u8, routers: impl FnOnce(&Node)) -> Twin {
    twin_with(network, name, index, test_config(), routers)
}

/// [`twin`] with `config`.
fn twin_with(
    network: &MemoryNetwork,
    name: &str,
    index: u8,
    config: ClusterConfig,
    routers: impl FnOnce(&Node),
) -> Twin {
    let node = Node::builder(name)
        .default_timeout(Duration::from_secs(30))
        .build();
    routers(&node);
    let inner = Inner::new(
        node.clone(),
        config,
        addr_of(index),
        Network::Memory(network.clone()),
    );
    inner.accept_from(network.listen(addr_of(index)));
    inner.attach().unwrap();
    Twin { node, inner }
}

impl Twin {
    fn id(&self) -> &NodeId {
        &self.inner.me
    }

    /// Takes `others` as this node's members, offering what they announced (`services`
    /// overrides it), and connects to each.
    async fn meets(&self, others: &[(&Twin, Option<&[&str]>)]) {
        let by_id: BTreeMap<_, _> = others
            .iter()
            .map(|(other, services)| {
                let services = match services {
                    Some(services) => services.iter().map(|s| (*s).to_owned()).collect(),
                    None => other.inner.services.borrow().clone(),
                };
                let info = MemberInfo {
                    rpc_addr: other.inner.rpc_addr,
                    services,
                };
                (other.id().clone(), info)
            })
            .collect();
        self.inner.update_members(Members { by_id });
        for (other, _) in others {
            self.inner.peers.connection_to(other.id()).await.unwrap();
        }
    }
}

/// Answers with the name of the node it ran on.
async fn whoami(msg: Message, ctx: Ctx) -> Message {
    let name = ctx.node_id().name().to_owned();
    msg.ok_with(&name)
}

/// Never answers (within a test).
async fn stuck(msg: Message) -> Message {
    tokio::time::sleep(Duration::from_secs(3_600)).await;
    msg.ok()
}

/// Answers with the name of the node it ran on, a second later.
async fn slow(msg: Message, ctx: Ctx) -> Message {
    tokio::time::sleep(Duration::from_secs(1)).await;
    whoami(msg, ctx).await
}

/// `whoami`, `slow` and `stuck`, public, every call allowed; `choose_node` as given.
fn routers(choose: Option<NodeId>) -> impl FnOnce(&Node) {
    move |node: &Node| {
        let router = Router::new("info")
            .service("whoami", whoami)
            .service("slow", slow)
            .service("stuck", stuck)
            .authorize(|_| Ok(()));
        let router = match choose {
            Some(owner) => router.choose_node(move |_| NodeChoice::Node(owner.clone())),
            None => router,
        };
        node.register(router).unwrap();
    }
}

fn answered_by(reply: &Message) -> String {
    match reply.response() {
        Some(Response::OkWith(payload)) => payload.decode().unwrap(),
        other => panic!("expected a name, got {other:?}"),
    }
}

/// Asserts that `reply` is an error whose text names each of `words`.
fn assert_error_naming(reply: &Message, words: &[&str]) {
    let response = reply.response().unwrap();
    let text = response.to_string();
    assert!(
        matches!(response, Response::Error(_)) && words.iter().all(|word| text.contains(word)),
        "expected an error naming {words:?}, got {response:?}"
    );
}

/// Makes `a` and `b` members of each other, connected.
async fn pair(a: &Twin, b: &Twin) {
    a.meets(&[(b, None)]).await;
    b.meets(&[(a, None)]).await;
}

/// Caller `a` (at index 1, no services) and provider `b` (at index 2, [`routers`]), paired.
async fn caller_and_provider(network: &MemoryNetwork) -> (Twin, Twin) {
    let a = twin(network, "a", 1, |_| {});
    let b = twin(network, "b", 2, routers(None));
    pair(&a, &b).await;
    (a, b)
}

/// Caller `a`, provider `b` that forwards every call to owner `c`, all connected; `a`
/// knows only `b` as a provider.
async fn caller_forwarder_and_owner(network: &MemoryNetwork) -> (Twin, Twin, Twin) {
    let a = twin(network, "a", 1, |_| {});
    let c = twin(network, "c", 3, routers(None));
    let b = twin(network, "b", 2, routers(Some(c.id().clone())));
    a.meets(&[(&b, None), (&c, Some(&[]))]).await;
    b.meets(&[(&a, None), (&c, None)]).await;
    c.meets(&[(&a, None), (&b, None)]).await;
    (a, b, c)
}

/// Registers `huge`, whose reply is 100 KiB.
fn serves_a_huge_reply(node: &Node) {
    let huge = |msg: Message| async move { msg.ok_with(&vec![7_u8; 100 * 1024]) };
    let router = Router::new("big").service("huge", huge);
    node.register(router.authorize(|_| Ok(()))).unwrap();
}

/// Dispatches `service` from `node` in a task of its own.
fn spawn_call(node: &Node, service: &str) -> tokio::task::JoinHandle<Message> {
    let (node, message) = (node.clone(), Message::new(service));
    tokio::spawn(async move { node.dispatch(message).await })
}

/// Waits (on paused time, without a bound) until `done` holds, looking every millisecond.
async fn until(mut done: impl FnMut() -> bool) {
    while !done() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Asserts that `twin` runs no call for others within 100 ms (on paused time): the cancel
/// reached the call it runs.
async fn stops_running_within_100ms(twin: &Twin) {
    for _ in 0..100 {
        if twin.inner.server.running_calls() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(twin.inner.server.running_calls(), 0, "the call still runs");
}

/// Waits (on paused time) up to a minute for `done` to hold, looking every 100 ms; returns
/// whether it does.
async fn within_a_minute(mut done: impl FnMut() -> bool) -> bool {
    for _ in 0..600 {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    done()
}

/// A caller and one provider: the call crosses the in-memory connection and its reply comes
/// back to the caller waiting for it.
#[tokio::test(start_paused = true)]
async fn a_remote_call_is_answered_over_its_connection() {
    let network = MemoryNetwork::default();
    let (a, b) = caller_and_provider(&network).await;
    let reply = a.node.dispatch(Message::new("whoami")).await;
    assert_eq!(answered_by(&reply), "b");
    let (a_stats, b_stats) = (a.inner.stats(), b.inner.stats());
    assert_eq!(a_stats.replies_received, 1);
    assert_eq!((b_stats.calls_served, b_stats.replies_sent), (1, 1));
    assert_eq!(a.inner.caller.pending_calls(), 0);
}

/// The provider a caller reaches passes the call to the owner its `choose_node` names; the
/// owner answers the caller straight, not through the provider.
#[tokio::test(start_paused = true)]
async fn a_forwarded_call_is_answered_by_its_owner_straight_to_the_caller() {
    let (a, b, c) = caller_forwarder_and_owner(&MemoryNetwork::default()).await;
    let reply = a.node.dispatch(Message::new("whoami")).await;
    assert_eq!(answered_by(&reply), "c");
    let (b_stats, c_stats) = (b.inner.stats(), c.inner.stats());
    assert_eq!((b_stats.calls_forwarded, b_stats.replies_sent), (1, 0));
    assert_eq!((c_stats.calls_served, c_stats.replies_sent), (1, 1));
    assert_eq!(a.inner.stats().replies_received, 1);
}

/// A call that left on a connection that then breaks ends at once, with an error saying its
/// outcome is unknown: it does not wait for its deadline, and is not repeated elsewhere.
#[tokio::test(start_paused = true)]
async fn a_call_whose_connection_is_lost_after_it_left_ends_at_once() {
    let network = MemoryNetwork::default();
    let (a, b) = caller_and_provider(&network).await;
    let call = spawn_call(&a.node, "stuck");
    until(|| b.inner.server.running_calls() > 0).await;
    a.inner.peers.live_connection(b.id()).unwrap().break_off();
    assert_error_naming(&call.await.unwrap(), &["unknown"]);
    assert_eq!(a.inner.caller.pending_calls(), 0, "the call was forgotten");
}

/// A forwarded call whose owner's connection to the forwarder breaks after the call left
/// ends at once with an unknown outcome: the forwarder, not on the reply path, tells the
/// caller instead of leaving it to wait out its deadline.
#[tokio::test(start_paused = true)]
async fn a_forwarded_call_whose_owner_is_lost_ends_at_once() {
    let (a, b, c) = caller_forwarder_and_owner(&MemoryNetwork::default()).await;
    // A call that waited for its deadline would end "timed out", not with an unknown outcome.
    let call = spawn_call(&a.node, "stuck");
    until(|| c.inner.server.running_calls() > 0).await;
    b.inner.peers.live_connection(c.id()).unwrap().break_off();
    assert_error_naming(&call.await.unwrap(), &["unknown", "owner"]);
    assert_eq!(a.inner.caller.pending_calls(), 0, "the call was forgotten");
}

/// A reply larger than the frames a peer accepts is answered with an error naming its size
/// and the limit, instead of leaving the caller to wait out its deadline.
#[tokio::test(start_paused = true)]
async fn a_reply_too_large_for_the_caller_is_answered_with_an_error() {
    let network = MemoryNetwork::default();
    let config = || test_config().max_frame_len(64 * 1024);
    let a = twin_with(&network, "a", 1, config(), |_| {});
    let b = twin_with(&network, "b", 2, config(), serves_a_huge_reply);
    pair(&a, &b).await;
    let reply = a.node.dispatch(Message::new("huge")).await;
    assert_error_naming(&reply, &["max_frame_len", "65536"]);
    // The connection is still good for the next call.
    let reply = a
        .node
        .dispatch(Message::new("huge").with_request(&1_u8))
        .await;
    assert!(matches!(reply.response(), Some(Response::Error(_))));
    assert_eq!(b.inner.stats().replies_sent, 2);
}

/// When the caller accepts smaller frames than the serving node (the nodes' `max_frame_len`
/// differ), the reply is checked against the caller's limit, learnt in the handshake: the
/// caller gets an error naming its limit, and its connection stays up.
#[tokio::test(start_paused = true)]
async fn a_reply_is_checked_against_the_callers_smaller_limit() {
    let network = MemoryNetwork::default();
    let small = test_config().max_frame_len(64 * 1024);
    let a = twin_with(&network, "a", 1, small, |_| {});
    let large = test_config().max_frame_len(1024 * 1024);
    let b = twin_with(&network, "b", 2, large, serves_a_huge_reply);
    pair(&a, &b).await;
    let reply = a.node.dispatch(Message::new("huge")).await;
    assert_error_naming(&reply, &["max_frame_len", "65536"]);
    assert_eq!(a.inner.stats().connections_lost, 0);
    assert_eq!(b.inner.stats().connections_lost, 0);
    assert_eq!(b.inner.stats().replies_sent, 1);
}

/// A caller that stops waiting (its deadline passed) tells the provider, which stops
/// running the call.
#[tokio::test(start_paused = true)]
async fn a_call_that_times_out_is_cancelled_where_it_runs() {
    let network = MemoryNetwork::default();
    let (a, b) = caller_and_provider(&network).await;
    let options = switchyard_messaging::DispatchOptions::with_timeout(Duration::from_secs(2));
    let reply = a.node.dispatch_with(Message::new("stuck"), options).await;
    assert!(
        matches!(reply.response(), Some(Response::ServiceTimeout { .. })),
        "{:?}",
        reply.response()
    );
    stops_running_within_100ms(&b).await;
}

/// A cancel read right behind its call, before the serving task gave the call its first turn,
/// still stops it: the serving task takes the cancel only after that turn, in which a handler
/// still running is registered for cancels.
#[tokio::test(start_paused = true)]
async fn a_cancel_right_behind_its_call_stops_it() {
    let network = MemoryNetwork::default();
    let (a, b) = caller_and_provider(&network).await;
    let to_b = a.inner.peers.connection_to(b.id()).await.unwrap();
    let call = Frame::Call {
        reply_to: a.id().clone(),
        request: 77,
        hop: crate::frame::WireHop::First,
        remaining_micros: 60_000_000,
        message: Message::new("stuck"),
    };
    let cancel = Frame::Cancel {
        reply_to: a.id().clone(),
        request: 77,
    };
    let (sent_call, sent_cancel) = tokio::join!(to_b.send(&call), to_b.send(&cancel));
    sent_call.unwrap();
    sent_cancel.unwrap();
    until(|| b.inner.stats().calls_served == 1).await;
    stops_running_within_100ms(&b).await;
}

/// A provider that is leaving declines new calls, and the caller's dispatcher takes the next
/// provider.
#[tokio::test(start_paused = true)]
async fn a_call_declined_by_a_leaving_provider_goes_to_the_next() {
    let network = MemoryNetwork::default();
    let a = twin(&network, "a", 1, |_| {});
    let b = twin(&network, "b", 2, routers(None));
    let c = twin(&network, "c", 3, routers(None));
    a.meets(&[(&b, None), (&c, None)]).await;
    b.meets(&[(&a, None)]).await;
    c.meets(&[(&a, None)]).await;
    assert!(b.inner.server.stop_taking_calls());
    for _ in 0..8 {
        let reply = a.node.dispatch(Message::new("whoami")).await;
        assert_eq!(answered_by(&reply), "c");
    }
    assert_eq!(b.inner.stats().calls_served, 0);
}

/// A node that has left closes its connections, and the calls waiting on them end at once.
#[tokio::test(start_paused = true)]
async fn leaving_ends_the_calls_waiting_on_its_connections() {
    let network = MemoryNetwork::default();
    let (a, b) = caller_and_provider(&network).await;
    let call = spawn_call(&a.node, "stuck");
    until(|| b.inner.server.running_calls() > 0).await;
    a.inner.peers.close_all();
    let reply = call.await.unwrap();
    assert!(
        matches!(reply.response(), Some(Response::Error(_))),
        "{:?}",
        reply.response()
    );
    network.unlisten(addr_of(2));
    assert!(a.inner.peers.connection_to(b.id()).await.is_err());
}

/// Members that join and leave are reported as events; of two members, the one with the
/// smaller id dials and keeps the connection up, and the other uses it.
#[tokio::test(start_paused = true)]
async fn joins_and_departures_are_reported_and_the_smaller_id_connects() {
    let network = MemoryNetwork::default();
    let a = twin(&network, "a", 1, |_| {});
    let b = twin(&network, "b", 2, routers(None));
    let (mut a_events, mut b_events) = (a.inner.events.subscribe(), b.inner.events.subscribe());
    let members_of = |other: &Twin| {
        let info = MemberInfo {
            rpc_addr: other.inner.rpc_addr,
            services: other.inner.services.borrow().clone(),
        };
        Members {
            by_id: BTreeMap::from([(other.id().clone(), info)]),
        }
    };
    // b learns of a first: b does not dial (a's id is smaller), a does once it learns of b.
    b.inner.update_members(members_of(&a));
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(!b.inner.peers.is_connected(a.id()), "the larger id dialed");
    a.inner.update_members(members_of(&b));
    until(|| b.inner.peers.is_connected(a.id())).await;
    assert!(a.inner.members()[0].connected);
    assert_eq!(a.inner.peers.usable_providers("whoami"), [b.id().clone()]);
    assert_eq!(
        a_events.recv().await.unwrap(),
        ClusterEvent::NodeJoined(b.id().clone())
    );
    assert_eq!(
        b_events.recv().await.unwrap(),
        ClusterEvent::NodeJoined(a.id().clone())
    );
    a.inner.update_members(Members::default());
    assert_eq!(
        a_events.recv().await.unwrap(),
        ClusterEvent::NodeLeft(b.id().clone())
    );
    assert!(a.inner.peers.usable_providers("whoami").is_empty());
}

/// A link cut under a call (the connection reset, as by a failing network) ends the call at
/// once with an unknown outcome; both nodes forget the connection and count it lost, and the
/// node with the smaller id dials again.
#[tokio::test(start_paused = true)]
async fn a_cut_link_ends_its_calls_and_is_dialed_again() {
    let network = MemoryNetwork::default();
    let (a, b) = caller_and_provider(&network).await;
    let first = a.inner.peers.live_connection(b.id()).unwrap();
    let call = spawn_call(&a.node, "stuck");
    until(|| b.inner.server.running_calls() > 0).await;
    network.cut(addr_of(2));
    assert_error_naming(&call.await.unwrap(), &["unknown"]);
    until(|| b.inner.stats().connections_lost > 0).await;
    assert_eq!(a.inner.stats().connections_lost, 1);
    let redialed = loop {
        match a.inner.peers.live_connection(b.id()) {
            Some(connection) if connection.id != first.id => break connection,
            _ => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    };
    assert_eq!(redialed.dialer, *a.id());
    let reply = a.node.dispatch(Message::new("whoami")).await;
    assert_eq!(answered_by(&reply), "b");
}

fn gossip_addr_of(index: u8) -> SocketAddr {
    SocketAddr::from(([10, 0, 1, index], 7001))
}

/// A whole node, started with [`Cluster::start_in_memory`]: calls over `network`, gossip over
/// `gossip`, seeded by the node at index 1.
async fn member(
    network: &MemoryNetwork,
    gossip: &chitchat::transport::ChannelTransport,
    name: &str,
    index: u8,
    routers: impl FnOnce(&Node),
) -> (Node, Cluster) {
    let node = Node::builder(name)
        .default_timeout(Duration::from_secs(30))
        .build();
    routers(&node);
    let config = ClusterConfig::new("c", b"sixteen or more secret bytes".to_vec())
        .rpc_addr(addr_of(index))
        .gossip_addr(gossip_addr_of(index))
        .seeds([gossip_addr_of(1).to_string()])
        .gossip_interval(Duration::from_millis(100))
        .drain_timeout(Duration::from_secs(5));
    let cluster = Cluster::start_in_memory(node.clone(), config, network, gossip)
        .await
        .unwrap();
    (node, cluster)
}

/// Waits (on paused time) until `cluster` sees `count` members, all connected.
async fn until_connected(cluster: &Cluster, count: usize) {
    let connected = within_a_minute(|| {
        let members = cluster.members();
        members.len() == count && members.iter().all(|m| m.connected)
    });
    assert!(
        connected.await,
        "{} never saw {count} connected members",
        cluster.id()
    );
}

/// Shuts `clusters` down, one after the other.
async fn shutdown_all(clusters: &[&Cluster]) {
    for cluster in clusters {
        cluster.shutdown().await;
    }
}

/// Whole nodes, gossip included, started without a socket: they find each other through
/// the seed, connect, and call each other's services.
#[tokio::test(start_paused = true)]
async fn whole_nodes_in_memory_find_each_other_and_call_each_other() {
    let (network, gossip) = (MemoryNetwork::default(), Default::default());
    let (a_node, a) = member(&network, &gossip, "a", 1, |_| {}).await;
    let (_, b) = member(&network, &gossip, "b", 2, routers(None)).await;
    let (_, c) = member(&network, &gossip, "c", 3, routers(None)).await;
    for cluster in [&a, &b, &c] {
        until_connected(cluster, 2).await;
    }
    let mut answered = std::collections::BTreeSet::new();
    for _ in 0..20 {
        answered.insert(answered_by(&a_node.dispatch(Message::new("whoami")).await));
    }
    assert!(answered.is_subset(&["b".to_owned(), "c".to_owned()].into()));
    assert_eq!(a.stats().replies_received, 20);
    shutdown_all(&[&a, &b, &c]).await;
}

/// A node shutting down answers the calls it is running before it closes its connections,
/// and once the others see it gone, their calls go to the remaining providers.
#[tokio::test(start_paused = true)]
async fn a_node_shutting_down_finishes_its_calls_and_the_others_go_elsewhere() {
    let (network, gossip) = (MemoryNetwork::default(), Default::default());
    let (a_node, a) = member(&network, &gossip, "a", 1, |_| {}).await;
    let (_, b) = member(&network, &gossip, "b", 2, routers(None)).await;
    // c offers `whoami` only: `slow` runs on b.
    let (_, c) = member(&network, &gossip, "c", 3, |node: &Node| {
        let router = Router::new("who").service("whoami", whoami);
        node.register(router.authorize(|_| Ok(()))).unwrap();
    })
    .await;
    until_connected(&a, 2).await;
    let call = spawn_call(&a_node, "slow");
    until(|| b.running_calls() > 0).await;
    let leaving = tokio::spawn({
        let b = b.clone();
        async move { b.shutdown().await }
    });
    assert_eq!(
        answered_by(&call.await.unwrap()),
        "b",
        "the call was drained"
    );
    leaving.await.unwrap();
    assert!(
        b.members().iter().all(|m| !m.connected),
        "b closed its connections"
    );
    assert!(
        within_a_minute(|| a.members().iter().all(|m| m.id != *b.id())).await,
        "b is still a member"
    );
    for _ in 0..10 {
        let reply = a_node.dispatch(Message::new("whoami")).await;
        assert_eq!(answered_by(&reply), "c");
    }
    let reply = a_node.dispatch(Message::new("slow")).await;
    assert!(
        matches!(reply.response(), Some(Response::ServiceUnavailable(_))),
        "{:?}",
        reply.response()
    );
    shutdown_all(&[&a, &c]).await;
}

/// A node offering 5,000 public services (more than one gossip datagram holds as one list)
/// is seen with all of them, and a later change of its services still spreads.
#[tokio::test(start_paused = true)]
async fn a_node_with_more_services_than_one_datagram_holds_announces_them_all() {
    let network = MemoryNetwork::default();
    let gossip = chitchat::transport::ChannelTransport::with_mtu(65_507);
    let names: Vec<String> = (0..5_000).map(|i| format!("service-{i:0>56}")).collect();
    let (_, a) = member(&network, &gossip, "a", 1, |_| {}).await;
    let (b_node, b) = member(&network, &gossip, "b", 2, |node: &Node| {
        let router = names.iter().fold(Router::new("many"), |router, name| {
            router.service(name, whoami)
        });
        node.register(router.authorize(|_| Ok(()))).unwrap();
    })
    .await;
    let services_of_b = |count: usize| {
        a.members()
            .iter()
            .any(|m| m.id == *b.id() && m.services.len() == count)
    };
    let seen_all = within_a_minute(|| services_of_b(5_000)).await;
    let seen = a.members().iter().find(|m| m.id == *b.id()).cloned();
    assert!(
        seen_all,
        "a sees b with {:?} services",
        seen.map(|m| m.services.len())
    );
    let late = Router::new("late").service("late", whoami);
    b_node.register(late.authorize(|_| Ok(()))).unwrap();
    assert!(
        within_a_minute(|| services_of_b(5_001)).await,
        "the change did not spread"
    );
    shutdown_all(&[&a, &b]).await;
}

/// Counts the warnings logged on this thread.
#[derive(Clone, Default)]
struct Warnings(Arc<std::sync::atomic::AtomicUsize>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Warnings {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if *event.metadata().level() == tracing::Level::WARN {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// A flood of connections that fail their handshake, and of connections refused on arrival,
/// is logged as a few lines with counts, not a line each.
#[tokio::test(start_paused = true)]
async fn a_flood_of_bad_connections_is_logged_once_per_interval() {
    use tokio::io::AsyncWriteExt;
    use tracing_subscriber::layer::SubscriberExt;

    let warnings = Warnings::default();
    let _logging =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(warnings.clone()));
    let network = MemoryNetwork::default();
    let config = test_config().handshake_limits(8, 8);
    let z = twin_with(&network, "z", 9, config, routers(None));
    let mut held = Vec::new();
    for round in 0..1_000 {
        let mut stream = network.connect(addr_of(9)).unwrap();
        if round % 2 == 0 {
            // Silent and kept open: these fill the handshake slots, so others are refused
            // on arrival.
            held.push(stream);
        } else {
            let _ = stream.write_all(&[0xFF; 64]).await;
        }
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(Duration::from_secs(30)).await;
    let logged = warnings.0.load(Ordering::SeqCst);
    assert!(
        (2..=10).contains(&logged),
        "{logged} warnings for 1,000 bad connections"
    );
    // The node still serves.
    let a = twin(&network, "a", 1, |_| {});
    pair(&a, &z).await;
    assert_eq!(
        answered_by(&a.node.dispatch(Message::new("whoami")).await),
        "z"
    );
}
