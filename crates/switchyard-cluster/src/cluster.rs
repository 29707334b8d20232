//! A node's membership in a cluster: the shared state, starting and stopping.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwap;
use switchyard_messaging::{Message, Node, NodeChoice, NodeId};
use tokio::net::TcpListener;
use tokio::sync::{Notify, broadcast, oneshot};
use tokio_util::sync::CancellationToken;

use crate::connection::{self, Connection};
use crate::frame::Verdict;
use crate::membership::{Gossip, Members};
use crate::{ClusterConfig, ClusterError};

/// Something that happened to the cluster's membership.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClusterEvent {
    /// A node joined (or was first seen).
    NodeJoined(NodeId),
    /// A node left: it shut down, or it was found dead.
    NodeLeft(NodeId),
}

/// Counters of what this node did on the wire since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClusterStats {
    /// Calls this node ran for other nodes.
    pub calls_served: u64,
    /// Calls this node passed on to their owner (`choose_node`).
    pub calls_forwarded: u64,
    /// Replies this node sent.
    pub replies_sent: u64,
    /// Replies this node received.
    pub replies_received: u64,
    /// Connections this node tried to open to other members (each attempt, failed or not).
    /// After a failure the next attempt to that member waits for the reconnect backoff.
    pub dials: u64,
    /// Of those, the attempts that failed (refused, timed out, handshake failed).
    pub failed_dials: u64,
    /// Connections that ended other than by this node closing them: the peer went away or
    /// closed them (also on purpose: leaving the cluster, dropping a duplicate), a read or
    /// write failed, or the peer broke the protocol.
    pub connections_lost: u64,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) calls_served: AtomicU64,
    pub(crate) calls_forwarded: AtomicU64,
    pub(crate) replies_sent: AtomicU64,
    pub(crate) replies_received: AtomicU64,
    pub(crate) dials: AtomicU64,
    pub(crate) failed_dials: AtomicU64,
    pub(crate) connections_lost: AtomicU64,
}

/// A member of the cluster as this node sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Its id.
    pub id: NodeId,
    /// Where it takes calls.
    pub rpc_addr: SocketAddr,
    /// The public services it offers.
    pub services: Vec<String>,
    /// Whether this node holds an authenticated connection to it. Its services are used only
    /// then.
    pub connected: bool,
}

/// This node's part in a cluster. Cheap to clone.
///
/// Dropping every clone does not stop the node; [`Cluster::shutdown`] does, announcing its
/// departure first.
#[derive(Clone)]
pub struct Cluster {
    pub(crate) inner: Arc<Inner>,
}

/// What the connections, the membership and the remote link share.
pub(crate) struct Inner {
    pub(crate) node: Node,
    pub(crate) me: NodeId,
    pub(crate) config: ClusterConfig,
    pub(crate) rpc_addr: SocketAddr,
    pub(crate) gossip: Gossip,
    pub(crate) members: ArcSwap<Members>,
    connections: Mutex<HashMap<NodeId, Connection>>,
    /// One dial at a time per peer, and when the next may start.
    dialing: Mutex<HashMap<NodeId, Arc<tokio::sync::Mutex<DialState>>>>,
    /// The peers a task keeps connected (one task per peer).
    pub(crate) kept: Mutex<std::collections::HashSet<NodeId>>,
    pub(crate) calls: Mutex<HashMap<u64, oneshot::Sender<Message>>>,
    pub(crate) authorizations: Mutex<HashMap<u64, oneshot::Sender<Verdict>>>,
    next_request: AtomicU64,
    /// Calls this node is running for others, by (reply-to node, request).
    pub(crate) serving: Mutex<HashMap<(NodeId, u64), futures::future::AbortHandle>>,
    /// Calls this node forwarded, so a cancel can follow them.
    pub(crate) forwarded: Mutex<crate::forwarded::Forwarded>,
    pub(crate) in_flight: AtomicUsize,
    pub(crate) drained: Notify,
    pub(crate) events: broadcast::Sender<ClusterEvent>,
    pub(crate) stopping: AtomicBool,
    pub(crate) stopped: CancellationToken,
    pub(crate) counters: Counters,
    /// The public services to announce, latest first; one task publishes them.
    pub(crate) services: tokio::sync::watch::Sender<Vec<String>>,
    /// The end of a shutdown, whoever started it.
    left: CancellationToken,
}

/// What this node remembers of its attempts to connect to one peer.
#[derive(Default)]
pub(crate) struct DialState {
    /// Failed attempts in a row.
    failures: u32,
    /// No attempt before this, after a failure.
    retry_at: Option<tokio::time::Instant>,
    /// Why the last attempt failed.
    last_error: String,
}

/// A connection that ends sooner than this after its handshake counts as a failed dial for
/// the reconnect backoff: a peer that accepts connections and drops them at once is not a
/// reachable peer. A second is far longer than a handshake on any network calls can use.
pub(crate) const STABLE_AFTER: Duration = Duration::from_secs(1);

/// The most connections authenticating at once; more are closed on arrival.
const MAX_HANDSHAKES: usize = 64;

/// Locks a mutex that a panic elsewhere may have poisoned: every map here stays consistent
/// between statements.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Cluster {
    /// Makes `node` a member of the cluster `config` describes: listens for calls, gossips,
    /// finds the other members and their public services, and attaches itself to `node`, so
    /// `node.dispatch` reaches services on other members.
    ///
    /// # Errors
    ///
    /// [`ClusterError`] when the configuration is invalid, an address cannot be bound, or the
    /// node already has a cluster.
    pub async fn start(node: Node, config: ClusterConfig) -> Result<Self, ClusterError> {
        config.validate()?;
        let listener =
            TcpListener::bind(config.rpc_addr)
                .await
                .map_err(|source| ClusterError::Bind {
                    addr: config.rpc_addr,
                    source,
                })?;
        let rpc_addr = listener.local_addr().map_err(|source| ClusterError::Bind {
            addr: config.rpc_addr,
            source,
        })?;
        let me = node.id().clone();
        let advertised = config.advertised_rpc_addr.unwrap_or(rpc_addr);
        let gossip = Gossip::start(&me, advertised, &config).await?;
        let (events, _) = broadcast::channel(256);
        let inner = Arc::new(Inner {
            node: node.clone(),
            me,
            config,
            rpc_addr,
            gossip,
            members: ArcSwap::from_pointee(Members::default()),
            connections: Mutex::new(HashMap::new()),
            dialing: Mutex::new(HashMap::new()),
            kept: Mutex::new(std::collections::HashSet::new()),
            calls: Mutex::new(HashMap::new()),
            authorizations: Mutex::new(HashMap::new()),
            next_request: AtomicU64::new(1),
            serving: Mutex::new(HashMap::new()),
            forwarded: Mutex::new(crate::forwarded::Forwarded::default()),
            in_flight: AtomicUsize::new(0),
            drained: Notify::new(),
            events,
            stopping: AtomicBool::new(false),
            stopped: CancellationToken::new(),
            counters: Counters::default(),
            services: tokio::sync::watch::Sender::new(Vec::new()),
            left: CancellationToken::new(),
        });
        let mut listener = crate::transport::Listener::Tcp(listener);
        let accepting = inner.clone();
        // Unauthenticated connections cost memory and a task each: at most this many at once.
        let handshakes = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    () = accepting.stopped.cancelled() => break,
                    accepted = listener.accept() => accepted,
                };
                match accepted {
                    Ok(stream) => match handshakes.clone().try_acquire_owned() {
                        Ok(permit) => {
                            let inner = accepting.clone();
                            tokio::spawn(async move {
                                connection::accept(inner, stream).await;
                                drop(permit);
                            });
                        }
                        Err(_) => {
                            tracing::warn!(remote = ?stream.remote(), "too many handshakes under way; connection refused");
                        }
                    },
                    Err(error) => {
                        tracing::warn!(%error, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        });
        crate::membership::follow(&inner);
        crate::membership::announce_services(&inner);
        let link = crate::remote::Link {
            inner: Arc::downgrade(&inner),
        };
        if let Err(error) = node.attach_remote(Arc::new(link)) {
            // Leave nothing running that advertises this node.
            inner.stopped.cancel();
            inner.gossip.stop().await;
            return Err(ClusterError::AlreadyAttached(error.to_string()));
        }
        tracing::info!(node = %inner.me, rpc = %rpc_addr, gossip = %inner.gossip.addr(), cluster = %inner.config.cluster_id, "joined the cluster");
        Ok(Self { inner })
    }

    /// This node's id.
    pub fn id(&self) -> &NodeId {
        &self.inner.me
    }

    /// The address where this node takes calls.
    pub fn rpc_addr(&self) -> SocketAddr {
        self.inner.rpc_addr
    }

    /// The address where this node gossips: give it to others as a seed.
    pub fn gossip_addr(&self) -> SocketAddr {
        self.inner.gossip.addr()
    }

    /// The other live members, as gossip reports them.
    pub fn members(&self) -> Vec<Member> {
        let members = self.inner.members.load();
        let connections = lock(&self.inner.connections);
        let mut list: Vec<Member> = members
            .by_id
            .iter()
            .map(|(id, info)| Member {
                id: id.clone(),
                rpc_addr: info.rpc_addr,
                services: info.services.clone(),
                connected: connections.get(id).is_some_and(|c| !c.is_closed()),
            })
            .collect();
        list.sort_by(|a, b| a.id.cmp(&b.id));
        list
    }

    /// What this node did on the wire so far.
    pub fn stats(&self) -> ClusterStats {
        let c = &self.inner.counters;
        ClusterStats {
            calls_served: c.calls_served.load(Ordering::Relaxed),
            calls_forwarded: c.calls_forwarded.load(Ordering::Relaxed),
            replies_sent: c.replies_sent.load(Ordering::Relaxed),
            replies_received: c.replies_received.load(Ordering::Relaxed),
            dials: c.dials.load(Ordering::Relaxed),
            failed_dials: c.failed_dials.load(Ordering::Relaxed),
            connections_lost: c.connections_lost.load(Ordering::Relaxed),
        }
    }

    /// How many calls from other nodes this node is running now.
    pub fn running_calls(&self) -> usize {
        self.inner.in_flight.load(Ordering::SeqCst)
    }

    /// Membership events from now on.
    pub fn events(&self) -> broadcast::Receiver<ClusterEvent> {
        self.inner.events.subscribe()
    }

    /// A `choose_node` rule for a router: each aggregate's commands go to one node among those
    /// offering the service (this one included), picked by rendezvous hashing of the aggregate
    /// id (see [`crate::placement::owner`]). A message without an aggregate id runs where it
    /// arrived.
    ///
    /// ```no_run
    /// # async fn run(node: switchyard_messaging::Node, cluster: switchyard_cluster::Cluster) {
    /// use switchyard_messaging::Router;
    /// # async fn deposit(m: switchyard_messaging::Message) -> switchyard_messaging::Message { m }
    /// let router = Router::new("accounts")
    ///     .service("deposit", deposit)
    ///     .choose_node(cluster.placement());
    /// # }
    /// ```
    pub fn placement(&self) -> impl Fn(&Message) -> NodeChoice + Send + Sync + 'static {
        self.placement_by(|message: &Message| message.aggregate_meta().id.clone())
    }

    /// [`Cluster::placement`] keyed by `key` instead of the aggregate id.
    pub fn placement_by<K>(&self, key: K) -> impl Fn(&Message) -> NodeChoice + Send + Sync + 'static
    where
        K: Fn(&Message) -> Option<String> + Send + Sync + 'static,
    {
        let inner = Arc::downgrade(&self.inner);
        move |message: &Message| {
            let (Some(inner), Some(key)) = (inner.upgrade(), key(message)) else {
                return NodeChoice::Local;
            };
            let mut candidates = inner.usable_providers(message.service());
            candidates.push(inner.me.clone());
            match crate::placement::owner(&key, &candidates) {
                Some(owner) if *owner != inner.me => NodeChoice::Node(owner.clone()),
                _ => NodeChoice::Local,
            }
        }
    }

    /// Leaves the cluster gracefully: withdraws this node's services from gossip and waits
    /// (a few gossip rounds) for the others to see it, waits for the calls it is running (up
    /// to the drain timeout), then closes its connections and stops gossiping.
    pub async fn shutdown(&self) {
        let inner = self.inner.clone();
        if !inner.stopping.swap(true, Ordering::SeqCst) {
            // In a task of its own: a caller that stops waiting does not leave the node half
            // gone, and every caller waits for the same end.
            tokio::spawn(async move {
                inner.leave().await;
                inner.left.cancel();
            });
        }
        self.inner.left.cancelled().await;
    }
}

impl Inner {
    async fn leave(&self) {
        self.gossip.announce_leaving().await;
        tokio::time::sleep(self.config.gossip_interval * 3).await;
        let drained = async {
            while self.in_flight.load(Ordering::SeqCst) > 0 {
                let notified = self.drained.notified();
                if self.in_flight.load(Ordering::SeqCst) == 0 {
                    break;
                }
                notified.await;
            }
        };
        if tokio::time::timeout(self.config.drain_timeout, drained)
            .await
            .is_err()
        {
            tracing::warn!(
                running = self.in_flight.load(Ordering::SeqCst),
                "calls still running at the end of the drain timeout"
            );
        }
        self.stopped.cancel();
        for connection in lock(&self.connections).drain().map(|(_, c)| c) {
            connection.close_leaving();
        }
        self.gossip.stop().await;
        tracing::info!(node = %self.me, "left the cluster");
    }

    pub(crate) fn next_request(&self) -> u64 {
        self.next_request.fetch_add(1, Ordering::Relaxed)
    }

    /// Members offering `service` publicly, with an authenticated connection.
    pub(crate) fn usable_providers(&self, service: &str) -> Vec<NodeId> {
        let members = self.members.load();
        let connections = lock(&self.connections);
        members
            .providers(service)
            .filter(|id| connections.get(*id).is_some_and(|c| !c.is_closed()))
            .cloned()
            .collect()
    }

    pub(crate) fn connected_members(&self) -> Vec<NodeId> {
        let members = self.members.load();
        let connections = lock(&self.connections);
        members
            .by_id
            .keys()
            .filter(|id| connections.get(*id).is_some_and(|c| !c.is_closed()))
            .cloned()
            .collect()
    }

    /// Keeps `connection` as the one to its peer, unless a better one is there: of two dialed
    /// by different nodes, the one dialed by the smaller node id stays; of two dialed by the
    /// same node, the newer (the dialer gave up on the older one, which may linger here
    /// half-open: keeping it would refuse every redial).
    pub(crate) fn register(&self, connection: Connection) {
        if self.stopped.is_cancelled() {
            connection.close();
            return;
        }
        let mut connections = lock(&self.connections);
        match connections.get(&connection.peer) {
            Some(existing) if !existing.is_closed() && existing.dialer < connection.dialer => {
                drop(connections);
                connection.close();
            }
            _ => {
                tracing::debug!(peer = %connection.peer, dialer = %connection.dialer, "connected");
                let peer = connection.peer.clone();
                let inbound = connection.dialer != self.me;
                if let Some(old) = connections.insert(peer.clone(), connection) {
                    old.close();
                }
                drop(connections);
                if inbound {
                    // The peer reached this node: a dial to it may go at once again. (A dial
                    // under way keeps its own state.)
                    if let Some(gate) = lock(&self.dialing).get(&peer)
                        && let Ok(mut state) = gate.try_lock()
                    {
                        *state = DialState::default();
                    }
                }
            }
        }
    }

    /// Forgets a closed connection (not a newer one to the same peer).
    pub(crate) fn forget(&self, connection: &Connection) {
        let mut connections = lock(&self.connections);
        if connections
            .get(&connection.peer)
            .is_some_and(|c| c.id == connection.id)
        {
            connections.remove(&connection.peer);
            tracing::debug!(peer = %connection.peer, "disconnected");
        }
    }

    /// Forgets what was kept for dials to nodes other than `members`. A dial under way to one
    /// of them keeps its own state until it ends; the next gets a fresh one.
    pub(crate) fn forget_dialing_except(&self, members: &Members) {
        lock(&self.dialing).retain(|peer, _| members.by_id.contains_key(peer));
    }

    pub(crate) fn live_connection(&self, peer: &NodeId) -> Option<Connection> {
        lock(&self.connections)
            .get(peer)
            .filter(|c| !c.is_closed())
            .cloned()
    }

    /// The connection to `peer`, dialing it if there is none. After a failed attempt, no
    /// other is made before the reconnect backoff has passed: meanwhile this fails at once.
    pub(crate) async fn connection_to(
        self: &Arc<Self>,
        peer: &NodeId,
    ) -> Result<Connection, String> {
        if let Some(connection) = self.live_connection(peer) {
            return Ok(connection);
        }
        if self.stopped.is_cancelled() {
            return Err("this node has left the cluster".into());
        }
        let Some(addr) = self.members.load().by_id.get(peer).map(|m| m.rpc_addr) else {
            return Err(format!("{peer} is not a known member"));
        };
        let gate = self.dial_gate(peer);
        let mut state = gate.lock().await;
        if let Some(connection) = self.live_connection(peer) {
            return Ok(connection);
        }
        let now = tokio::time::Instant::now();
        if let Some(retry_at) = state.retry_at
            && now < retry_at
        {
            return Err(format!(
                "{peer} could not be reached ({}); the next attempt is in {:?}",
                state.last_error,
                retry_at - now
            ));
        }
        self.counters.dials.fetch_add(1, Ordering::Relaxed);
        match connection::dial(self, peer, addr).await {
            Ok(connection) => {
                // The failures in a row are forgotten only once the connection has lasted
                // (see `connection_ended`): one the peer drops at once counts as a failure.
                state.retry_at = None;
                drop(state);
                self.register(connection);
                self.live_connection(peer)
                    .ok_or_else(|| format!("the connection to {peer} closed at once"))
            }
            Err(error) => {
                self.counters.failed_dials.fetch_add(1, Ordering::Relaxed);
                self.dial_failed(&mut state, error.to_string());
                Err(state.last_error.clone())
            }
        }
    }

    /// Notes how a connection this node kept up to `peer` ended: one that lasted less than
    /// [`STABLE_AFTER`] since its handshake counts as a failed dial, so the next waits for the
    /// backoff (a peer that accepts and drops every connection is not dialed in a loop); one
    /// that lasted longer forgets the failures in a row.
    pub(crate) async fn connection_ended(&self, peer: &NodeId, lasted: Duration) {
        let gate = self.dial_gate(peer);
        let mut state = gate.lock().await;
        if lasted >= STABLE_AFTER {
            *state = DialState::default();
            return;
        }
        self.dial_failed(
            &mut state,
            format!("the connection closed {lasted:?} after its handshake"),
        );
    }

    /// Counts one more failure in a row, `why`, and holds the next dial back by the backoff
    /// (at most `reconnect_max`, an hour at the most: `validate` refuses more).
    fn dial_failed(&self, state: &mut DialState, why: String) {
        state.failures = state.failures.saturating_add(1);
        state.retry_at = Some(tokio::time::Instant::now() + self.backoff(state.failures));
        state.last_error = why;
    }

    fn dial_gate(&self, peer: &NodeId) -> Arc<tokio::sync::Mutex<DialState>> {
        lock(&self.dialing).entry(peer.clone()).or_default().clone()
    }

    /// How long until the next dial to `peer` may start (zero when it may start now).
    pub(crate) async fn next_dial_in(&self, peer: &NodeId) -> Duration {
        let gate = self.dial_gate(peer);
        let state = gate.lock().await;
        state.retry_at.map_or(Duration::ZERO, |retry_at| {
            retry_at.saturating_duration_since(tokio::time::Instant::now())
        })
    }

    /// The wait after `failures` failed attempts in a row: the minimum doubled on each
    /// further failure up to the maximum, less a random part of up to a half.
    fn backoff(&self, failures: u32) -> Duration {
        let (min, max) = (self.config.reconnect_min, self.config.reconnect_max);
        let doublings = failures.saturating_sub(1).min(30);
        let full = min.saturating_mul(1 << doublings).min(max);
        // A random fraction in [0, 1); without randomness, no jitter.
        let fraction = getrandom::u64().map_or(0.0, |r| (r >> 11) as f64 / (1_u64 << 53) as f64);
        full.mul_f64(1.0 - fraction / 2.0)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    async fn started(name: &str) -> Cluster {
        let config = ClusterConfig::new("c", b"sixteen or more secret bytes".to_vec());
        Cluster::start(Node::new(name), config).await.unwrap()
    }

    #[tokio::test]
    async fn a_newer_connection_from_the_same_dialer_replaces_the_older() {
        let cluster = started("m").await;
        let inner = &cluster.inner;
        let me = inner.me.clone();
        let peer = NodeId::new("z", 1);
        let live = || inner.live_connection(&peer).map(|c| c.id);
        // The peer dialed, and dials again while this node still holds the first connection
        // (half-open: the peer gave up on it).
        let (first, _) = Connection::detached(peer.clone(), peer.clone());
        inner.register(first.clone());
        let (again, _) = Connection::detached(peer.clone(), peer.clone());
        inner.register(again.clone());
        assert!(first.is_closed());
        assert_eq!(live(), Some(again.id), "the redial was refused");
        // Between different dialers, the smaller id's connection stays, whatever the order.
        let (mine, _) = Connection::detached(peer.clone(), me.clone());
        inner.register(mine.clone());
        assert!(again.is_closed());
        assert_eq!(live(), Some(mine.id));
        let (theirs, _) = Connection::detached(peer.clone(), peer.clone());
        inner.register(theirs.clone());
        assert!(theirs.is_closed());
        assert_eq!(live(), Some(mine.id));
        cluster.shutdown().await;
    }

    #[tokio::test]
    async fn dial_states_of_nodes_that_are_not_members_are_forgotten() {
        let cluster = started("m").await;
        let inner = &cluster.inner;
        let departed = NodeId::new("gone", 1);
        let state = inner.dial_gate(&departed);
        state.lock().await.failures = 3;
        assert_eq!(lock(&inner.dialing).len(), 1);
        crate::membership::update(inner, &std::collections::BTreeMap::new());
        assert_eq!(lock(&inner.dialing).len(), 0);
        cluster.shutdown().await;
    }

    #[tokio::test]
    async fn a_connection_that_ends_at_once_counts_as_a_failed_dial() {
        let cluster = started("m").await;
        let inner = &cluster.inner;
        let peer = NodeId::new("z", 1);
        inner
            .connection_ended(&peer, Duration::from_millis(5))
            .await;
        assert!(inner.next_dial_in(&peer).await > Duration::ZERO);
        inner.connection_ended(&peer, STABLE_AFTER).await;
        assert_eq!(inner.next_dial_in(&peer).await, Duration::ZERO);
        cluster.shutdown().await;
    }
}
