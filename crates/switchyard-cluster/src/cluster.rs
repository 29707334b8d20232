//! A node's membership in a cluster: the one module that knows the whole. It composes the
//! parts (gossip membership, the peers table, the calling side, the serving side, the
//! transport), hands each connection's inbound frames to the part that owns them, and offers
//! the public [`Cluster`].

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use chitchat::transport::{Transport as GossipTransport, UdpTransport};
use futures::FutureExt;
use futures::future::BoxFuture;
use switchyard_messaging::remote::{Hop, RemoteError, RemoteNodes};
use switchyard_messaging::{Message, Node, NodeChoice, NodeId, Response};
use tokio::sync::{broadcast, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::admission::{Admission, Admitted, Report, Tally};
use crate::config::ClusterConfig;
use crate::connection::{self, Connection, Inbound, Serving};
use crate::error::ClusterError;
use crate::frame::{Body, Header};
use crate::handshake::Identity;
use crate::membership::{Gossip, Members};
use crate::peers::{Dial, Peers};
use crate::remote::Caller;
use crate::serve::Server;
use crate::sync::lock;
use crate::transport::{Incoming, Listener, Network};

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
    inner: Arc<Inner>,
    gossip: Arc<Gossip>,
}

/// The parts of a node in a cluster, composed.
struct Inner {
    node: Node,
    me: NodeId,
    config: ClusterConfig,
    network: Network,
    rpc_addr: SocketAddr,
    /// The members and the connections to them.
    peers: Arc<Peers>,
    /// This node's calls to others and their answers.
    caller: Arc<Caller>,
    /// Others' calls to this node.
    server: Arc<Server>,
    events: broadcast::Sender<ClusterEvent>,
    /// The public services to announce, latest first; one task publishes them.
    services: watch::Sender<Vec<String>>,
    /// The end of a shutdown, whoever started it.
    left: CancellationToken,
    /// Which incoming connections may start a handshake.
    admission: Mutex<Admission>,
    /// Incoming connections closed on arrival, and failed handshakes, for the log.
    refused: Mutex<Tally>,
    failed: Mutex<Tally>,
}

/// At most one log line per this long about incoming connections refused or failed: a flood
/// of them is counted, not written one line each.
const LOG_INTERVAL: Duration = Duration::from_secs(10);

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
        let bind_failed = |source| ClusterError::Bind {
            addr: config.rpc_addr,
            source,
        };
        let listener = tokio::net::TcpListener::bind(config.rpc_addr)
            .await
            .map_err(bind_failed)?;
        let rpc_addr = listener.local_addr().map_err(bind_failed)?;
        let listener = Listener::Tcp(listener);
        Self::start_on(
            node,
            config,
            (Network::Tcp, listener, rpc_addr),
            &UdpTransport,
        )
        .await
    }

    /// [`Cluster::start`] on networks of its own: calls over `calls` (the network, this
    /// node's listener on it and the listener's address), gossip over `gossip`.
    async fn start_on(
        node: Node,
        config: ClusterConfig,
        calls: (Network, Listener, SocketAddr),
        gossip: &dyn GossipTransport,
    ) -> Result<Self, ClusterError> {
        let (network, listener, rpc_addr) = calls;
        let advertised = config.advertised_rpc_addr.unwrap_or(rpc_addr);
        let gossip = Arc::new(Gossip::start(node.id(), advertised, &config, gossip).await?);
        let inner = Inner::new(node, config, rpc_addr, network);
        inner.accept_from(listener);
        follow(&inner, &gossip);
        announce_services(&inner, &gossip);
        if let Err(error) = inner.attach() {
            // Leave nothing running that advertises this node.
            inner.peers.close_all();
            gossip.stop().await;
            return Err(error);
        }
        tracing::info!(node = %inner.me, rpc = %rpc_addr, gossip = %gossip.addr(), cluster = %inner.config.cluster_id, "joined the cluster");
        Ok(Self { inner, gossip })
    }

    /// [`Cluster::start`] without sockets, for tests: calls over the in-memory `network` at
    /// `config.rpc_addr`, gossip over chitchat's in-memory channels at `config.gossip_addr`.
    #[cfg(test)]
    async fn start_in_memory(
        node: Node,
        config: ClusterConfig,
        network: &crate::transport::memory::MemoryNetwork,
        gossip: &chitchat::transport::ChannelTransport,
    ) -> Result<Self, ClusterError> {
        config.validate()?;
        let rpc_addr = config.rpc_addr;
        let listener = network.listen(rpc_addr);
        let calls = (Network::Memory(network.clone()), listener, rpc_addr);
        Self::start_on(node, config, calls, gossip).await
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
        self.gossip.addr()
    }

    /// The other live members, as gossip reports them.
    pub fn members(&self) -> Vec<Member> {
        self.inner.members()
    }

    /// What this node did on the wire so far.
    pub fn stats(&self) -> ClusterStats {
        self.inner.stats()
    }

    /// How many calls from other nodes this node is running now.
    pub fn running_calls(&self) -> usize {
        self.inner.server.running_calls()
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
            let mut candidates = inner.peers.usable_providers(message.service());
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
        let (inner, gossip) = (self.inner.clone(), self.gossip.clone());
        if inner.server.stop_taking_calls() {
            // In a task of its own: a caller that stops waiting does not leave the node half
            // gone, and every caller waits for the same end.
            tokio::spawn(async move {
                leave(&inner, &gossip).await;
                inner.left.cancel();
            });
        }
        self.inner.left.cancelled().await;
    }
}

/// Leaves the cluster: withdraws this node's services from gossip and waits (a few gossip
/// rounds) for the others to see it, waits for the calls it is running (up to the drain
/// timeout), then closes its connections and stops gossiping.
async fn leave(inner: &Inner, gossip: &Gossip) {
    gossip.announce_leaving().await;
    tokio::time::sleep(inner.config.gossip_interval * 3).await;
    inner.server.drain(inner.config.drain_timeout).await;
    inner.peers.close_all();
    gossip.stop().await;
    tracing::info!(node = %inner.me, "left the cluster");
}

impl Inner {
    /// The parts of `node` in a cluster, taking calls at `rpc_addr` (over `network`); no
    /// listener, gossip or link to the node yet.
    fn new(node: Node, config: ClusterConfig, rpc_addr: SocketAddr, network: Network) -> Arc<Self> {
        Arc::new_cyclic(|inner: &Weak<Self>| {
            let me = node.id().clone();
            let dialer = Box::new(Dialer(inner.clone()));
            let peers = Arc::new(Peers::new(
                me.clone(),
                config.reconnect_min,
                config.reconnect_max,
                dialer,
            ));
            let caller = Arc::new(Caller::new(me.clone(), peers.clone()));
            let server = Arc::new(Server::new(node.clone(), peers.clone(), caller.clone()));
            let (events, _) = broadcast::channel(256);
            Self {
                node,
                me,
                network,
                rpc_addr,
                peers,
                caller,
                server,
                events,
                services: watch::Sender::new(Vec::new()),
                left: CancellationToken::new(),
                admission: Mutex::new(Admission::new(config.handshakes)),
                refused: Mutex::new(Tally::new(LOG_INTERVAL)),
                failed: Mutex::new(Tally::new(LOG_INTERVAL)),
                config,
            }
        })
    }

    /// The other live members, as gossip reports them.
    fn members(&self) -> Vec<Member> {
        let peers = &self.peers;
        // Kept in id order: the list comes out sorted.
        peers
            .members()
            .by_id
            .iter()
            .map(|(id, info)| Member {
                id: id.clone(),
                rpc_addr: info.rpc_addr,
                services: info.services.clone(),
                connected: peers.is_connected(id),
            })
            .collect()
    }

    /// What this node did on the wire so far.
    fn stats(&self) -> ClusterStats {
        let (served, connections) = (&self.server.counters, &self.peers.counters);
        ClusterStats {
            calls_served: served.calls_served.load(Ordering::Relaxed),
            calls_forwarded: served.calls_forwarded.load(Ordering::Relaxed),
            replies_sent: served.replies_sent.load(Ordering::Relaxed),
            replies_received: self.caller.replies_received(),
            dials: connections.dials.load(Ordering::Relaxed),
            failed_dials: connections.failed_dials.load(Ordering::Relaxed),
            connections_lost: connections.connections_lost.load(Ordering::Relaxed),
        }
    }

    /// What this node says about itself in a handshake.
    fn identity(&self) -> Identity<'_> {
        Identity {
            cluster_id: &self.config.cluster_id,
            node: &self.me,
            secret: &self.config.secret,
            max_frame_len: crate::connection::frame_limit(&self.config),
        }
    }

    /// Makes the node dispatch through this cluster.
    fn attach(self: &Arc<Self>) -> Result<(), ClusterError> {
        let link = Link(Arc::downgrade(self));
        self.node
            .attach_remote(Arc::new(link))
            .map_err(|error| ClusterError::AlreadyAttached(error.to_string()))
    }

    /// Takes the connections peers dial at `listener` until this node leaves: each that
    /// [`Admission`] lets in is authenticated in a task of its own; the others are closed on
    /// arrival, unanswered. Refusals and failures are logged once per [`LOG_INTERVAL`], with
    /// their counts.
    fn accept_from(self: &Arc<Self>, mut listener: Listener) {
        let accepting = self.clone();
        tokio::spawn(async move {
            let mut report = tokio::time::interval(LOG_INTERVAL);
            loop {
                let accepted = tokio::select! {
                    () = accepting.peers.stopped().cancelled() => break,
                    accepted = listener.accept() => accepted,
                    _ = report.tick() => {
                        accepting.report_refusals(None);
                        accepting.report_failures(None);
                        continue;
                    }
                };
                match accepted {
                    Ok(stream) => accepting.admit(stream),
                    Err(error) => {
                        tracing::warn!(%error, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        });
    }

    /// Authenticates `stream` in a task of its own if [`Admission`] lets it in; else closes
    /// it at once.
    fn admit(self: &Arc<Self>, stream: Incoming) {
        let remote = stream.remote();
        let admitted = lock(&self.admission).admit(remote.map(|a| a.ip()), Instant::now());
        let admitted = match admitted {
            Ok(admitted) => admitted,
            Err(refusal) => {
                drop(stream);
                self.report_refusals(Some((refusal.label(), format!("{remote:?}"))));
                return;
            }
        };
        let inner = self.clone();
        tokio::spawn(async move {
            /// Frees the slot however the handshake ends (also if this task is dropped): a
            /// failure unless it succeeded.
            struct Slot<'a> {
                inner: &'a Inner,
                admitted: Admitted,
                succeeded: bool,
            }
            impl Drop for Slot<'_> {
                fn drop(&mut self) {
                    lock(&self.inner.admission).finished(
                        self.admitted,
                        self.succeeded,
                        Instant::now(),
                    );
                }
            }
            let mut slot = Slot {
                inner: &inner,
                admitted,
                succeeded: false,
            };
            let inbound = inner.clone();
            match connection::accept(&inner.config, &inner.identity(), stream, inbound).await {
                Ok(connection) => {
                    slot.succeeded = true;
                    drop(slot);
                    inner.peers.register(connection);
                }
                Err(error) => {
                    drop(slot);
                    inner.report_failures(Some((error.kind(), format!("{remote:?}: {error}"))));
                }
            }
        });
    }

    /// Counts a connection closed on arrival (`refused`: why, and from where), and logs the
    /// counts when a line is due.
    fn report_refusals(&self, refused: Option<(&'static str, String)>) {
        if let Some(report) = due_report(&self.refused, refused) {
            tracing::warn!(
                node = %self.me,
                refused = report.total(),
                reasons = %report.counts(),
                last_from = %report.last,
                "incoming connections closed on arrival, unanswered (see ClusterConfig::handshake_limits and throttle_failed_handshakes); counts since the last such line"
            );
        }
    }

    /// Counts a failed incoming handshake (`failed`: its kind, and where from with why), and
    /// logs the counts when a line is due.
    fn report_failures(&self, failed: Option<(&'static str, String)>) {
        if let Some(report) = due_report(&self.failed, failed) {
            tracing::warn!(
                node = %self.me,
                failed = report.total(),
                kinds = %report.counts(),
                last = %report.last,
                "incoming connections failed their handshake; counts since the last such line"
            );
        }
    }

    /// Takes `next` as the members: reports joins and departures, and keeps the new members
    /// of a larger id connected.
    fn update_members(&self, next: Members) {
        let next = Arc::new(next);
        lock(&self.admission).set_known(next.by_id.values().map(|info| info.rpc_addr.ip()));
        let previous = self.peers.set_members(next.clone());
        for id in next.not_in(&previous) {
            tracing::info!(node = %self.me, peer = %id, "node joined");
            let _ = self.events.send(ClusterEvent::NodeJoined(id.clone()));
            // The smaller id keeps the connection up; the other dials only when it needs to.
            if self.me < *id {
                self.peers.keep_connected(id.clone());
            }
        }
        for id in previous.not_in(&next) {
            tracing::info!(node = %self.me, peer = %id, "node left");
            // Its connection stays until the node closes it: a node leaving gracefully still
            // sends the replies of the calls it is draining. No new call goes to it.
            let _ = self.events.send(ClusterEvent::NodeLeft(id.clone()));
        }
    }
}

/// Counts `event` (what, and from where) in `tally`, or only checks whether a line is due
/// when there is none: the report to log now, if any.
fn due_report(tally: &Mutex<Tally>, event: Option<(&'static str, String)>) -> Option<Report> {
    let now = Instant::now();
    let mut tally = lock(tally);
    match event {
        Some((what, last)) => tally.note(what, last, now),
        None => tally.flush(now),
    }
}

/// Follows the live members as gossip reports them.
fn follow(inner: &Arc<Inner>, gossip: &Arc<Gossip>) {
    let weak = Arc::downgrade(inner);
    let gossip = gossip.clone();
    let stopped = inner.peers.stopped().clone();
    tokio::spawn(async move {
        let mut watcher = gossip.live_nodes().await;
        loop {
            let Some(inner) = weak.upgrade() else { return };
            // Read through the borrow: the live state is not copied to derive the members.
            let members = Members::from_live(&inner.me, &watcher.borrow_and_update());
            inner.update_members(members);
            drop(inner);
            tokio::select! {
                () = stopped.cancelled() => return,
                changed = watcher.changed() => if changed.is_err() { return },
            }
        }
    });
}

/// Publishes this node's public services, the latest list each time it changes.
fn announce_services(inner: &Arc<Inner>, gossip: &Arc<Gossip>) {
    let weak = Arc::downgrade(inner);
    let gossip = gossip.clone();
    let mut services = inner.services.subscribe();
    let stopped = inner.peers.stopped().clone();
    tokio::spawn(async move {
        loop {
            let latest = services.borrow_and_update().clone();
            let Some(inner) = weak.upgrade() else { return };
            if !inner.server.is_stopping() {
                gossip.announce(&latest).await;
            }
            drop(inner);
            tokio::select! {
                () = stopped.cancelled() => return,
                changed = services.changed() => if changed.is_err() { return },
            }
        }
    });
}

/// Each frame a connection reads goes to the part that owns it.
impl Inbound for Inner {
    fn frame(&self, from: &Connection, header: Header, body: Body) -> Option<Serving> {
        match header {
            Header::Call {
                reply_to,
                request,
                hop,
                remaining_micros,
            } => {
                return self
                    .server
                    .call(from, reply_to, request, hop, remaining_micros, body);
            }
            Header::Reply { request } => {
                if let Err(unwaited) = self.caller.reply_received(request, body, from) {
                    // Nobody waits for it any more; a malformed one still ends the
                    // connection, as any malformed frame does.
                    let _ = from.decode_body(&unwaited);
                }
            }
            Header::Authorize { request } => self.server.authorize(from, request, body),
            Header::Authorized { request, verdict } => {
                self.caller.verdict_received(request, verdict);
            }
            Header::Cancel { reply_to, request } => {
                // Through the serving task, behind the calls read before it: by then each has
                // had its first turn, and one still running is registered for cancels.
                let server = self.server.clone();
                return Some(async move { server.cancel(reply_to, request) }.boxed());
            }
            Header::Hello | Header::Proof | Header::Refused => {
                tracing::warn!(peer = %from.peer, kind = header.kind(), "handshake frame on an established connection; closing it");
                from.break_off();
            }
        }
        None
    }

    fn ended(&self, connection: &Connection) {
        self.peers.ended(connection);
        self.server.connection_ended(connection);
    }
}

/// Dials peers over the node's network, as the node, serving what they send.
struct Dialer(Weak<Inner>);

impl Dial for Dialer {
    fn dial<'a>(
        &'a self,
        peer: &'a NodeId,
        addr: SocketAddr,
    ) -> BoxFuture<'a, Result<Connection, String>> {
        async move {
            let inner = self
                .0
                .upgrade()
                .ok_or_else(|| "this node's cluster has stopped".to_owned())?;
            let inbound = inner.clone();
            connection::dial(
                &inner.network,
                &inner.config,
                &inner.identity(),
                peer,
                addr,
                inbound,
            )
            .await
            .map_err(|error| error.to_string())
        }
        .boxed()
    }
}

/// The cluster as the messaging crate sees it: the [`RemoteNodes`] a node dispatches through.
struct Link(Weak<Inner>);

fn stopped() -> RemoteError {
    RemoteError::NotDelivered {
        reason: "this node's cluster has stopped".into(),
    }
}

impl RemoteNodes for Link {
    fn providers(&self, service: &str) -> Vec<NodeId> {
        self.0
            .upgrade()
            .map(|inner| inner.peers.usable_providers(service))
            .unwrap_or_default()
    }

    fn members(&self) -> Vec<NodeId> {
        self.0
            .upgrade()
            .map(|inner| inner.peers.connected_members())
            .unwrap_or_default()
    }

    fn invoke(
        &self,
        node: NodeId,
        message: Message,
        hop: Hop,
        deadline: Instant,
    ) -> BoxFuture<'static, Result<Message, RemoteError>> {
        let inner = self.0.clone();
        async move {
            let inner = inner.upgrade().ok_or_else(stopped)?;
            inner.caller.invoke(node, message, hop, deadline).await
        }
        .boxed()
    }

    fn authorize(
        &self,
        node: NodeId,
        message: Message,
        deadline: Instant,
    ) -> BoxFuture<'static, Result<Result<(), Response>, RemoteError>> {
        let inner = self.0.clone();
        async move {
            let inner = inner.upgrade().ok_or_else(stopped)?;
            inner.caller.authorize(node, message, deadline).await
        }
        .boxed()
    }

    fn announce(&self, public_services: Vec<String>) {
        // The latest list wins: one announcer task publishes whatever is newest, so two
        // registrations in a row cannot be published in the wrong order.
        if let Some(inner) = self.0.upgrade() {
            inner.services.send_replace(public_services);
        }
    }
}

#[cfg(test)]
mod tests;
