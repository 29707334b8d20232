//! The other members and this node's connections to them: one live connection per peer, one
//! dial at a time per peer with a backoff after failures, a task keeping each peer of a
//! larger id connected, and no connection at all once this node has left.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use futures::future::BoxFuture;
use switchyard_messaging::NodeId;
use tokio_util::sync::CancellationToken;

use crate::connection::Connection;
use crate::frame::Frame;
use crate::membership::Members;
use crate::sync::lock;

/// A connection that ends sooner than this after its handshake counts as a failed dial for
/// the reconnect backoff: a peer that accepts connections and drops them at once is not a
/// reachable peer. A second is far longer than a handshake on any network calls can use.
pub(crate) const STABLE_AFTER: Duration = Duration::from_secs(1);

/// Opens connections to peers.
pub(crate) trait Dial: Send + Sync + 'static {
    /// A connection to `peer` at `addr`, authenticated, its reader and writer running; or why
    /// there is none.
    fn dial<'a>(
        &'a self,
        peer: &'a NodeId,
        addr: SocketAddr,
    ) -> BoxFuture<'a, Result<Connection, String>>;
}

/// Counters of this node's connections.
#[derive(Default)]
pub(crate) struct ConnectionCounters {
    pub(crate) dials: AtomicU64,
    pub(crate) failed_dials: AtomicU64,
    pub(crate) connections_lost: AtomicU64,
}

/// The other members and the connections to them.
pub(crate) struct Peers {
    me: NodeId,
    /// The reconnect backoff's least and greatest wait.
    backoff: (Duration, Duration),
    dialer: Box<dyn Dial>,
    members: ArcSwap<Members>,
    connections: Mutex<HashMap<NodeId, Connection>>,
    /// One dial at a time per peer, and when the next may start.
    dialing: Mutex<HashMap<NodeId, Arc<tokio::sync::Mutex<DialState>>>>,
    /// The peers a task keeps connected (one task per peer).
    kept: Mutex<HashSet<NodeId>>,
    /// This node has left: no connection is made or kept any more.
    stopped: CancellationToken,
    pub(crate) counters: ConnectionCounters,
}

/// What this node remembers of its attempts to connect to one peer.
#[derive(Default)]
struct DialState {
    /// Failed attempts in a row.
    failures: u32,
    /// No attempt before this, after a failure.
    retry_at: Option<tokio::time::Instant>,
    /// Why the last attempt failed.
    last_error: String,
}

impl Peers {
    /// No members yet; `dialer` opens the connections, waiting `reconnect_min` to
    /// `reconnect_max` after failures.
    pub(crate) fn new(
        me: NodeId,
        reconnect_min: Duration,
        reconnect_max: Duration,
        dialer: Box<dyn Dial>,
    ) -> Self {
        Self {
            me,
            backoff: (reconnect_min, reconnect_max),
            dialer,
            members: ArcSwap::from_pointee(Members::default()),
            connections: Mutex::new(HashMap::new()),
            dialing: Mutex::new(HashMap::new()),
            kept: Mutex::new(HashSet::new()),
            stopped: CancellationToken::new(),
            counters: ConnectionCounters::default(),
        }
    }

    /// The members as last reported.
    pub(crate) fn members(&self) -> Arc<Members> {
        self.members.load_full()
    }

    /// Takes `next` as the members, returning the previous ones, and forgets what was kept
    /// for dials to nodes that are no longer members (departed, or never more than the sender
    /// of a reply this node had to deliver). A dial under way to one of them keeps its own
    /// state until it ends; the next gets a fresh one.
    pub(crate) fn set_members(&self, next: impl Into<Arc<Members>>) -> Arc<Members> {
        let next = next.into();
        lock(&self.dialing).retain(|peer, _| next.by_id.contains_key(peer));
        self.members.swap(next)
    }

    /// Whether this node holds a live connection to `peer`.
    pub(crate) fn is_connected(&self, peer: &NodeId) -> bool {
        self.live_connection(peer).is_some()
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

    /// Members with an authenticated connection.
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

    /// Ends when this node has left.
    pub(crate) fn stopped(&self) -> &CancellationToken {
        &self.stopped
    }

    /// Keeps `connection` as the one to its peer, unless a better one is there: of two dialed
    /// by different nodes, the one dialed by the smaller node id stays; of two dialed by the
    /// same node, the newer (the dialer gave up on the older one, which may linger here
    /// half-open: keeping it would refuse every redial). Once this node has left, closes it.
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

    /// Forgets a connection whose reader has ended (not a newer one to the same peer), and
    /// counts it lost when it broke.
    pub(crate) fn ended(&self, connection: &Connection) {
        if connection.is_broken() {
            self.counters
                .connections_lost
                .fetch_add(1, Ordering::Relaxed);
        }
        let mut connections = lock(&self.connections);
        if connections
            .get(&connection.peer)
            .is_some_and(|c| c.id == connection.id)
        {
            connections.remove(&connection.peer);
            tracing::debug!(peer = %connection.peer, "disconnected");
        }
    }

    /// The live connection to `peer`, if there is one.
    pub(crate) fn live_connection(&self, peer: &NodeId) -> Option<Connection> {
        lock(&self.connections)
            .get(peer)
            .filter(|c| !c.is_closed())
            .cloned()
    }

    /// Tells `to`, if it is connected, that the caller `reply_to` gave up on its call `request`.
    /// Fire and forget, in a task of its own: never waits inside a connection's reader or a
    /// `Drop`, and does nothing outside a runtime.
    pub(crate) fn send_cancel(&self, to: &NodeId, reply_to: NodeId, request: u64) {
        let Some(connection) = self.live_connection(to) else {
            return;
        };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = connection.send(&Frame::Cancel { reply_to, request }).await;
            });
        }
    }

    /// Leaves: no connection is made or kept from now on, and those there are close (the
    /// calls sent on them end once they have, since no reply can come).
    pub(crate) fn close_all(&self) {
        self.stopped.cancel();
        for connection in lock(&self.connections).drain().map(|(_, c)| c) {
            connection.close_leaving();
        }
    }

    /// The connection to `peer`, dialing it if there is none. After a failed attempt, no
    /// other is made before the reconnect backoff has passed: meanwhile this fails at once.
    pub(crate) async fn connection_to(&self, peer: &NodeId) -> Result<Connection, String> {
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
        match self.dialer.dial(peer, addr).await {
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
                self.dial_failed(&mut state, error);
                Err(state.last_error.clone())
            }
        }
    }

    /// Notes how a connection this node kept up to `peer` ended: one that lasted less than
    /// [`STABLE_AFTER`] since its handshake counts as a failed dial, so the next waits for the
    /// backoff (a peer that accepts and drops every connection is not dialed in a loop); one
    /// that lasted longer forgets the failures in a row.
    async fn connection_ended(&self, peer: &NodeId, lasted: Duration) {
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
    async fn next_dial_in(&self, peer: &NodeId) -> Duration {
        let gate = self.dial_gate(peer);
        let state = gate.lock().await;
        state.retry_at.map_or(Duration::ZERO, |retry_at| {
            retry_at.saturating_duration_since(tokio::time::Instant::now())
        })
    }

    /// The wait after `failures` failed attempts in a row: the minimum doubled on each
    /// further failure up to the maximum, less a random part of up to a half.
    fn backoff(&self, failures: u32) -> Duration {
        let (min, max) = self.backoff;
        let doublings = failures.saturating_sub(1).min(30);
        let full = min.saturating_mul(1 << doublings).min(max);
        // A random fraction in [0, 1); without randomness, no jitter.
        let fraction = getrandom::u64().map_or(0.0, |r| (r >> 11) as f64 / (1_u64 << 53) as f64);
        full.mul_f64(1.0 - fraction / 2.0)
    }

    /// Keeps a connection to `peer` up while it is a member, redialing after the reconnect
    /// backoff when an attempt fails (see [`Peers::connection_to`]).
    pub(crate) fn keep_connected(self: &Arc<Self>, peer: NodeId) {
        // A member seen leaving and coming back keeps its one task.
        if !lock(&self.kept).insert(peer.clone()) {
            return;
        }
        /// Lets another task keep the peer once this one ends, however it ends.
        struct Kept(std::sync::Weak<Peers>, NodeId);
        impl Drop for Kept {
            fn drop(&mut self) {
                if let Some(peers) = self.0.upgrade() {
                    lock(&peers.kept).remove(&self.1);
                }
            }
        }
        let kept = Kept(Arc::downgrade(self), peer.clone());
        let weak = Arc::downgrade(self);
        let stopped = self.stopped.clone();
        tokio::spawn(async move {
            let _kept = kept;
            loop {
                let Some(peers) = weak.upgrade() else { return };
                if stopped.is_cancelled() || !peers.members.load().by_id.contains_key(&peer) {
                    return;
                }
                match peers.connection_to(&peer).await {
                    Ok(connection) => {
                        drop(peers);
                        tokio::select! {
                            () = connection.closed() => {}
                            () = stopped.cancelled() => return,
                        }
                        let Some(peers) = weak.upgrade() else { return };
                        peers
                            .connection_ended(&peer, connection.established.elapsed())
                            .await;
                    }
                    Err(reason) => {
                        // At least a moment, so a failure that set no backoff cannot spin.
                        let delay = peers
                            .next_dial_in(&peer)
                            .await
                            .max(Duration::from_millis(10));
                        tracing::debug!(%peer, %reason, retry_in = ?delay, "cannot connect to a member");
                        drop(peers);
                        tokio::select! {
                            () = tokio::time::sleep(delay) => {}
                            () = stopped.cancelled() => return,
                        }
                    }
                }
            }
        });
    }
}

/// Stand-ins for the tests of the parts that use peers.
#[cfg(test)]
pub(crate) mod fakes {
    use super::*;

    /// A dialer whose every attempt fails, counting them.
    #[derive(Clone, Default)]
    pub(crate) struct Unreachable(pub(crate) Arc<AtomicU64>);

    impl Dial for Unreachable {
        fn dial<'a>(
            &'a self,
            _: &'a NodeId,
            addr: SocketAddr,
        ) -> BoxFuture<'a, Result<Connection, String>> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move { Err(format!("{addr} refused the connection")) })
        }
    }

    /// The peers of node `m` (incarnation 1), dialing with `dialer`, with a reconnect
    /// backoff of 100 ms to 10 s.
    pub(crate) fn peers(dialer: impl Dial) -> Peers {
        Peers::new(
            NodeId::new("m", 1),
            Duration::from_millis(100),
            Duration::from_secs(10),
            Box::new(dialer),
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::BTreeMap;

    use super::fakes::{Unreachable, peers};
    use super::*;
    use crate::membership::MemberInfo;

    fn members(ids: &[&NodeId]) -> Members {
        let by_id: BTreeMap<_, _> = ids
            .iter()
            .map(|id| {
                let info = MemberInfo {
                    rpc_addr: "127.0.0.1:1".parse().unwrap(),
                    services: vec!["svc".into()],
                };
                ((*id).clone(), info)
            })
            .collect();
        Members { by_id }
    }

    #[tokio::test(start_paused = true)]
    async fn a_newer_connection_from_the_same_dialer_replaces_the_older() {
        let peers = peers(Unreachable::default());
        let me = NodeId::new("m", 1);
        let peer = NodeId::new("z", 1);
        let live = || peers.live_connection(&peer).map(|c| c.id);
        // The peer dialed, and dials again while this node still holds the first connection
        // (half-open: the peer gave up on it).
        let (first, _) = Connection::detached(peer.clone(), peer.clone());
        peers.register(first.clone());
        let (again, _) = Connection::detached(peer.clone(), peer.clone());
        peers.register(again.clone());
        assert!(first.is_closed());
        assert_eq!(live(), Some(again.id), "the redial was refused");
        // Between different dialers, the smaller id's connection stays, whatever the order.
        let (mine, _) = Connection::detached(peer.clone(), me.clone());
        peers.register(mine.clone());
        assert!(again.is_closed());
        assert_eq!(live(), Some(mine.id));
        let (theirs, _) = Connection::detached(peer.clone(), peer.clone());
        peers.register(theirs.clone());
        assert!(theirs.is_closed());
        assert_eq!(live(), Some(mine.id));
        // Only the registered connection's end forgets it.
        peers.ended(&theirs);
        assert_eq!(live(), Some(mine.id));
        mine.break_off();
        peers.ended(&mine);
        assert_eq!(peers.counters.connections_lost.load(Ordering::SeqCst), 1);
        assert!(lock(&peers.connections).is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn dial_states_of_nodes_that_are_not_members_are_forgotten() {
        let peers = peers(Unreachable::default());
        let (stays, departed) = (NodeId::new("stays", 1), NodeId::new("gone", 1));
        peers.dial_gate(&departed).lock().await.failures = 3;
        peers.dial_gate(&stays).lock().await.failures = 3;
        peers.set_members(members(&[&stays]));
        let dialing = lock(&peers.dialing);
        assert_eq!(dialing.keys().collect::<Vec<_>>(), [&stays]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_that_ends_at_once_counts_as_a_failed_dial() {
        let peers = peers(Unreachable::default());
        let peer = NodeId::new("z", 1);
        peers
            .connection_ended(&peer, Duration::from_millis(5))
            .await;
        assert!(peers.next_dial_in(&peer).await > Duration::ZERO);
        peers.connection_ended(&peer, STABLE_AFTER).await;
        assert_eq!(peers.next_dial_in(&peer).await, Duration::ZERO);
    }

    /// After a failed dial, the next waits out the backoff: meanwhile a caller fails at once,
    /// without a dial; afterwards, it dials again. The backoff grows with each failure in a
    /// row, up to its maximum.
    #[tokio::test(start_paused = true)]
    async fn a_failed_dial_holds_the_next_back_by_a_growing_backoff() {
        let dialer = Unreachable::default();
        let peers = peers(dialer.clone());
        let peer = NodeId::new("z", 1);
        assert!(
            peers
                .connection_to(&peer)
                .await
                .unwrap_err()
                .contains("not a known member")
        );
        assert_eq!(dialer.0.load(Ordering::SeqCst), 0, "no address, no dial");
        peers.set_members(members(&[&peer]));
        let refused = peers.connection_to(&peer).await.unwrap_err();
        assert!(refused.contains("refused"), "{refused}");
        let held = peers.connection_to(&peer).await.unwrap_err();
        assert!(held.contains("the next attempt is in"), "{held}");
        assert_eq!(dialer.0.load(Ordering::SeqCst), 1);
        let first_wait = peers.next_dial_in(&peer).await;
        assert!(first_wait <= Duration::from_millis(100));
        tokio::time::sleep(first_wait).await;
        peers.connection_to(&peer).await.unwrap_err();
        assert_eq!(dialer.0.load(Ordering::SeqCst), 2, "dialed after the wait");
        for failures in 2..40 {
            assert!(peers.backoff(failures) <= Duration::from_secs(10));
            assert!(peers.backoff(failures) >= Duration::from_millis(50));
        }
        assert!(
            peers.backoff(8) >= Duration::from_secs(5),
            "grows to the max"
        );
        let stats = (&peers.counters.dials, &peers.counters.failed_dials);
        assert_eq!(stats.0.load(Ordering::SeqCst), 2);
        assert_eq!(stats.1.load(Ordering::SeqCst), 2);
    }

    /// Once this node has left, no connection is dialed, and one that arrives is closed.
    #[tokio::test(start_paused = true)]
    async fn after_leaving_no_connection_is_made_or_kept() {
        let dialer = Unreachable::default();
        let peers = Arc::new(peers(dialer.clone()));
        let peer = NodeId::new("z", 1);
        peers.set_members(members(&[&peer]));
        let (kept, _far) = Connection::detached(peer.clone(), peer.clone());
        peers.register(kept.clone());
        peers.close_all();
        assert!(kept.is_closed());
        let late = peers.connection_to(&peer).await.unwrap_err();
        assert!(late.contains("left the cluster"), "{late}");
        let (arriving, _far) = Connection::detached(peer.clone(), peer.clone());
        peers.register(arriving.clone());
        assert!(arriving.is_closed());
        peers.keep_connected(peer);
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(dialer.0.load(Ordering::SeqCst), 0);
    }

    /// The task keeping a peer connected redials after each failure, once the backoff has
    /// passed, and stops when the peer is no longer a member.
    #[tokio::test(start_paused = true)]
    async fn a_kept_peer_is_redialed_until_it_is_no_longer_a_member() {
        let dialer = Unreachable::default();
        let peers = Arc::new(peers(dialer.clone()));
        let peer = NodeId::new("z", 1);
        peers.set_members(members(&[&peer]));
        peers.keep_connected(peer.clone());
        peers.keep_connected(peer.clone());
        tokio::time::sleep(Duration::from_secs(30)).await;
        let dials = dialer.0.load(Ordering::SeqCst);
        assert!((3..=20).contains(&dials), "{dials} dials in 30 s");
        peers.set_members(Members::default());
        tokio::time::sleep(Duration::from_secs(30)).await;
        let after = dialer.0.load(Ordering::SeqCst);
        assert!(after <= dials + 1, "still dialing a departed peer");
        assert!(lock(&peers.kept).is_empty(), "its task ended");
    }
}
