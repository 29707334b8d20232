//! The harness: nodes started in this process, each on its own ports, seeded by the first.

use std::future::Future;
use std::time::Duration;

use switchyard_cluster::{Cluster, ClusterConfig, ClusterEvent};
use switchyard_messaging::{Ctx, Message, Node, Response, Router};
use tokio::time::Instant;

pub(crate) const SECRET: &[u8] = b"test secret, thirty-two bytes ok";
pub(crate) const CLUSTER: &str = "test-cluster";
pub(crate) const GOSSIP: Duration = Duration::from_millis(100);

pub(crate) struct TestNode {
    pub(crate) node: Node,
    pub(crate) cluster: Cluster,
}

impl TestNode {
    pub(crate) fn name(&self) -> &str {
        self.node.id().name()
    }
}

/// Answers with the name of the node it ran on.
pub(crate) async fn whoami(msg: Message, ctx: Ctx) -> Message {
    let name = ctx.node_id().name().to_owned();
    msg.ok_with(&name)
}

/// Answers with its request, and the node it ran on.
pub(crate) async fn echo(msg: Message, ctx: Ctx) -> Message {
    let value: u64 = msg.request().unwrap();
    let name = ctx.node_id().name().to_owned();
    msg.ok_with(&(value, name))
}

/// The routers every test node offers: `whoami` and `echo` public, `secret_whoami` private.
pub(crate) fn standard_routers(node: &Node) {
    node.register(
        Router::new("info")
            .service("whoami", whoami)
            .service("echo", echo)
            .authorize(|_| Ok(())),
    )
    .unwrap();
    node.register(
        Router::new("internal")
            .private("secret_whoami", whoami)
            .authorize(|_| Ok(())),
    )
    .unwrap();
}

pub(crate) fn config(seeds: &[String]) -> ClusterConfig {
    ClusterConfig::new(CLUSTER, SECRET.to_vec())
        .seeds(seeds.iter().cloned())
        .gossip_interval(GOSSIP)
        .connect_timeout(Duration::from_millis(500))
        .drain_timeout(Duration::from_secs(3))
}

/// Starts a node named `name` with `routers`, joining through `seeds`.
pub(crate) async fn start_with(
    name: &str,
    config: ClusterConfig,
    routers: impl FnOnce(&Node),
) -> TestNode {
    let node = Node::builder(name)
        .default_timeout(Duration::from_secs(3))
        .build();
    routers(&node);
    let cluster = Cluster::start(node.clone(), config).await.unwrap();
    TestNode { node, cluster }
}

/// `n` nodes named a, b, c, ... with the standard routers, seeded by the first, each seeing
/// every other connected.
pub(crate) async fn cluster_of(n: usize) -> Vec<TestNode> {
    let first = start_with("a", config(&[]), standard_routers).await;
    let seed = vec![first.cluster.gossip_addr().to_string()];
    let mut nodes = vec![first];
    for i in 1..n {
        let name = ((b'a' + i as u8) as char).to_string();
        nodes.push(start_with(&name, config(&seed), standard_routers).await);
    }
    for node in &nodes {
        wait_for(
            Duration::from_secs(5),
            "every node sees every other, connected",
            || async {
                let members = node.cluster.members();
                members.len() == n - 1 && members.iter().all(|m| m.connected)
            },
        )
        .await;
    }
    nodes
}

/// Polls `condition` until it holds, failing the test after `bound`.
pub(crate) async fn wait_for<F, Fut>(bound: Duration, what: &str, mut condition: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    loop {
        if condition().await {
            return started.elapsed();
        }
        assert!(started.elapsed() < bound, "not within {bound:?}: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits for a membership event about `node`, failing after `bound`.
pub(crate) async fn wait_event(
    events: &mut tokio::sync::broadcast::Receiver<ClusterEvent>,
    bound: Duration,
    expected: &ClusterEvent,
) {
    tokio::time::timeout(bound, async {
        loop {
            match events.recv().await {
                Ok(event) if event == *expected => return,
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(error) => panic!("event stream ended: {error}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {expected:?} within {bound:?}"));
}

/// The node name a `whoami` reply carries.
pub(crate) fn answered_by(reply: &Message) -> String {
    match reply.response() {
        Some(Response::OkWith(payload)) => payload.decode().unwrap(),
        other => panic!("expected a name, got {other:?}"),
    }
}

/// A TCP relay between nodes that the test controls: it can stall the bytes it carries, cut
/// its connections, and refuse new ones. A node announces it as its address
/// (`ClusterConfig::advertised_rpc_addr`), so the others reach that node through it.
pub(crate) struct Proxy {
    pub(crate) addr: std::net::SocketAddr,
    state: std::sync::Arc<ProxyState>,
}

struct ProxyState {
    target: std::sync::Mutex<Option<std::net::SocketAddr>>,
    refusing: std::sync::atomic::AtomicBool,
    accepted: std::sync::atomic::AtomicUsize,
    paused: tokio::sync::watch::Sender<bool>,
    /// Bumped on every cut: each relayed connection ends when it changes.
    cuts: tokio::sync::watch::Sender<u64>,
}

impl Proxy {
    /// Listens on a free port; connections arriving before [`Proxy::target`] is set are
    /// dropped.
    pub(crate) async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = std::sync::Arc::new(ProxyState {
            target: std::sync::Mutex::new(None),
            refusing: std::sync::atomic::AtomicBool::new(false),
            accepted: std::sync::atomic::AtomicUsize::new(0),
            paused: tokio::sync::watch::Sender::new(false),
            cuts: tokio::sync::watch::Sender::new(0),
        });
        let shared = state.clone();
        tokio::spawn(async move {
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    return;
                };
                shared
                    .accepted
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let target = *shared.target.lock().unwrap();
                let (Some(target), false) = (
                    target,
                    shared.refusing.load(std::sync::atomic::Ordering::SeqCst),
                ) else {
                    drop(inbound);
                    continue;
                };
                let Ok(outbound) = tokio::net::TcpStream::connect(target).await else {
                    continue;
                };
                let (in_read, in_write) = inbound.into_split();
                let (out_read, out_write) = outbound.into_split();
                tokio::spawn(relay(in_read, out_write, shared.clone()));
                tokio::spawn(relay(out_read, in_write, shared.clone()));
            }
        });
        Self { addr, state }
    }

    /// Where the relayed connections go.
    pub(crate) fn target(&self, target: std::net::SocketAddr) {
        *self.state.target.lock().unwrap() = Some(target);
    }

    /// Stops (or resumes) carrying bytes: a stalled peer, as far as the sender can tell.
    pub(crate) fn pause(&self, paused: bool) {
        self.state.paused.send_replace(paused);
    }

    /// Closes every connection it carries, on both sides, without a goodbye.
    pub(crate) fn cut(&self) {
        self.state.cuts.send_modify(|cuts| *cuts += 1);
    }

    /// Drops (or relays again) new connections as soon as they arrive.
    pub(crate) fn refuse(&self, refusing: bool) {
        self.state
            .refusing
            .store(refusing, std::sync::atomic::Ordering::SeqCst);
    }

    /// How many connections arrived so far.
    pub(crate) fn accepted(&self) -> usize {
        self.state
            .accepted
            .load(std::sync::atomic::Ordering::SeqCst)
    }
}

async fn relay(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    state: std::sync::Arc<ProxyState>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut cuts = state.cuts.subscribe();
    let mut paused = state.paused.subscribe();
    let mut buffer = vec![0_u8; 64 * 1024];
    let carry = async {
        loop {
            if paused.wait_for(|paused| !paused).await.is_err() {
                return;
            }
            let read = match from.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(read) => read,
            };
            if paused.wait_for(|paused| !paused).await.is_err() {
                return;
            }
            if to.write_all(&buffer[..read]).await.is_err() {
                return;
            }
        }
    };
    tokio::select! {
        () = carry => {}
        _ = cuts.changed() => {}
    }
}
