//! Membership on chitchat: scuttlebutt gossip with phi-accrual failure detection.
//!
//! Each node publishes, in its gossip state, the address where it takes calls and its public
//! services. A node leaving gracefully publishes `leaving` first, so the others drop it at once
//! instead of waiting for the failure detector.
//!
//! Chitchat sends a node's state in datagrams of at most 64 KB, key by key in the order they
//! were set, and can never send a value larger than one datagram: one such value would stop
//! every later change of that node's state from spreading. So the services are spread over
//! chunks (`switchyard.services.0`, `.1`, ...), each a JSON list of at most
//! [`SERVICES_CHUNK_BYTES`], and their count (`switchyard.services.chunks`) is set after them.
//! Readers join the chunks below the count; chunks beyond it, left from a longer list, are
//! deleted.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chitchat::transport::Transport;
use chitchat::{ChitchatConfig, ChitchatHandle, ChitchatId, FailureDetectorConfig, NodeState};
use switchyard_messaging::NodeId;
use tokio::sync::Mutex;

use crate::config::ClusterConfig;
use crate::error::ClusterError;

const KEY_RPC: &str = "switchyard.rpc";
/// How many chunks the services are spread over.
const KEY_SERVICE_CHUNKS: &str = "switchyard.services.chunks";
/// The prefix of each chunk's key: the chunk's index follows.
const KEY_SERVICE_CHUNK: &str = "switchyard.services.";

/// The most bytes of one chunk of the services list: a quarter of a gossip datagram (64 KB),
/// so a chunk always fits in one with room for the other keys and chitchat's own framing.
pub(crate) const SERVICES_CHUNK_BYTES: usize = 16 * 1024;
const KEY_LEAVING: &str = "switchyard.leaving";

/// What gossip says about one other member.
#[derive(Clone, Debug)]
pub(crate) struct MemberInfo {
    pub(crate) rpc_addr: SocketAddr,
    pub(crate) services: Vec<String>,
}

/// The other live members.
#[derive(Clone, Debug, Default)]
pub(crate) struct Members {
    pub(crate) by_id: BTreeMap<NodeId, MemberInfo>,
}

impl Members {
    /// The members offering `service`, as they announced it last: a service a member stopped
    /// offering, or a member that left, is gone from the answer.
    pub(crate) fn providers<'a>(&'a self, service: &'a str) -> impl Iterator<Item = &'a NodeId> {
        self.by_id
            .iter()
            .filter(move |(_, info)| info.services.iter().any(|s| s == service))
            .map(|(id, _)| id)
    }
}

/// This node's gossip engine.
pub(crate) struct Gossip {
    handle: Mutex<Option<ChitchatHandle>>,
    chitchat: Arc<Mutex<chitchat::Chitchat>>,
    addr: SocketAddr,
}

impl Gossip {
    /// Starts gossiping as `me`, taking calls at `rpc_addr`, over `transport` (UDP; in tests,
    /// chitchat's in-memory channels).
    pub(crate) async fn start(
        me: &NodeId,
        rpc_addr: SocketAddr,
        config: &ClusterConfig,
        transport: &dyn Transport,
    ) -> Result<Self, ClusterError> {
        let addr = free_udp_addr(config.gossip_addr)?;
        let failure_detector_config = FailureDetectorConfig {
            phi_threshold: config.phi_threshold,
            initial_interval: config.gossip_interval,
            dead_node_grace_period: config.dead_node_grace_period,
            ..FailureDetectorConfig::default()
        };
        let chitchat_config = ChitchatConfig {
            chitchat_id: ChitchatId::new(me.name(), me.incarnation(), addr),
            cluster_id: config.cluster_id.clone(),
            gossip_interval: config.gossip_interval,
            listen_addr: addr,
            seed_nodes: config.seeds.clone(),
            failure_detector_config,
            marked_for_deletion_grace_period: Duration::from_secs(3_600),
            catchup_callback: None,
            // A member counts once it says where it takes calls, and no longer once it says it
            // is leaving.
            extra_liveness_predicate: Some(Box::new(|state: &NodeState| {
                state.get(KEY_RPC).is_some() && state.get(KEY_LEAVING).is_none()
            })),
            protocol_version: chitchat::ProtocolVersion::V1,
        };
        let initial = vec![
            (KEY_RPC.to_owned(), rpc_addr.to_string()),
            (KEY_SERVICE_CHUNKS.to_owned(), "0".to_owned()),
        ];
        let handle = chitchat::spawn_chitchat(chitchat_config, initial, transport)
            .await
            .map_err(|error| ClusterError::Gossip {
                addr,
                reason: error.to_string(),
            })?;
        Ok(Self {
            chitchat: handle.chitchat(),
            handle: Mutex::new(Some(handle)),
            addr,
        })
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Publishes this node's public services.
    pub(crate) async fn announce(&self, services: &[String]) {
        set_services(self.chitchat.lock().await.self_node_state(), services);
    }

    pub(crate) async fn announce_leaving(&self) {
        let mut chitchat = self.chitchat.lock().await;
        let state = chitchat.self_node_state();
        set_services(state, &[]);
        state.set(KEY_LEAVING, "1");
    }

    /// The live nodes, each time they change.
    pub(crate) async fn live_nodes(&self) -> tokio::sync::watch::Receiver<LiveNodes> {
        self.chitchat.lock().await.live_nodes_watcher()
    }

    pub(crate) async fn stop(&self) {
        if let Some(handle) = self.handle.lock().await.take() {
            let _ = handle.shutdown().await;
        }
    }
}

/// Chitchat must advertise the address it really listens on, so a port of 0 is replaced by a
/// free one first.
fn free_udp_addr(addr: SocketAddr) -> Result<SocketAddr, ClusterError> {
    if addr.port() != 0 {
        return Ok(addr);
    }
    let socket =
        std::net::UdpSocket::bind(addr).map_err(|source| ClusterError::Bind { addr, source })?;
    socket
        .local_addr()
        .map_err(|source| ClusterError::Bind { addr, source })
}

/// `services` as JSON lists of at most [`SERVICES_CHUNK_BYTES`] each (a name longer than
/// that alone in its chunk), in order.
fn service_chunks(services: &[String]) -> Vec<String> {
    let mut chunks = Vec::new();
    // The chunk being filled, a JSON list without its closing bracket: each name is quoted
    // once, and its length is that of the text itself.
    let mut chunk = String::from("[");
    for service in services {
        let quoted = serde_json::to_string(service).unwrap_or_default();
        if chunk.len() > 1 && chunk.len() + 1 + quoted.len() + 1 > SERVICES_CHUNK_BYTES {
            chunks.push(std::mem::replace(&mut chunk, String::from("[")) + "]");
        }
        if chunk.len() > 1 {
            chunk.push(',');
        }
        chunk.push_str(&quoted);
    }
    if chunk.len() > 1 {
        chunks.push(chunk + "]");
    }
    chunks
}

/// Sets `services` in this node's gossip `state`: the chunks first, then their count (so a
/// reader never counts a chunk it has not received), then deletes the chunks of a longer
/// list. Chitchat leaves unchanged values alone.
fn set_services(state: &mut NodeState, services: &[String]) {
    let chunks = service_chunks(services);
    // `Node::register` refuses names over `MAX_SERVICE_NAME_LEN` (1 KiB, at most 6 KiB as
    // JSON), so every chunk fits; this guards against another source of names.
    if let Some(oversized) = chunks
        .iter()
        .find(|chunk| chunk.len() > SERVICES_CHUNK_BYTES)
    {
        tracing::warn!(
            len = oversized.len(),
            "a service name is too long to gossip in one datagram; the other nodes may not see it (keep names short)"
        );
    }
    let previous = chunk_count(state);
    for (index, chunk) in chunks.iter().enumerate() {
        state.set(format!("{KEY_SERVICE_CHUNK}{index}"), chunk);
    }
    state.set(KEY_SERVICE_CHUNKS, chunks.len());
    for stale in chunks.len()..previous {
        state.delete(&format!("{KEY_SERVICE_CHUNK}{stale}"));
    }
}

/// How many chunks of services `state` announces (none when it says nothing readable).
fn chunk_count(state: &NodeState) -> usize {
    state
        .get(KEY_SERVICE_CHUNKS)
        .and_then(|count| count.parse().ok())
        .unwrap_or(0)
}

fn member_info(state: &NodeState) -> Option<MemberInfo> {
    let count = chunk_count(state);
    // Only the chunks present: a node's chunk count comes from the network, so it is never
    // used to size anything.
    let chunks = state
        .iter_prefix(KEY_SERVICE_CHUNK)
        .filter_map(|(key, value)| {
            let index: usize = key.strip_prefix(KEY_SERVICE_CHUNK)?.parse().ok()?;
            (index < count).then_some((index, value.value.as_str()))
        })
        .collect::<BTreeMap<_, _>>();
    member_info_from(state.get(KEY_RPC), chunks.into_values())
}

/// A member from its RPC address and the chunks of its services list, in order.
fn member_info_from<'a>(
    rpc: Option<&str>,
    chunks: impl IntoIterator<Item = &'a str>,
) -> Option<MemberInfo> {
    let rpc_addr = rpc?.parse().ok()?;
    let services = chunks
        .into_iter()
        .flat_map(|chunk| serde_json::from_str::<Vec<String>>(chunk).unwrap_or_default())
        .collect();
    Some(MemberInfo { rpc_addr, services })
}

/// The live nodes as gossip reports them, from chitchat's watcher.
pub(crate) type LiveNodes = BTreeMap<ChitchatId, NodeState>;

impl Members {
    /// The members among the `live` nodes, other than `me`: those that say where they take
    /// calls.
    pub(crate) fn from_live(me: &NodeId, live: &LiveNodes) -> Self {
        let mut members = Self::default();
        for (id, state) in live {
            let node = NodeId::new(id.node_id.as_ref(), id.generation_id);
            if node == *me {
                continue;
            }
            if let Some(info) = member_info(state) {
                members.by_id.insert(node, info);
            }
        }
        members
    }

    /// The members that are not in `other`.
    pub(crate) fn not_in<'a>(&'a self, other: &'a Self) -> impl Iterator<Item = &'a NodeId> {
        self.by_id
            .keys()
            .filter(|id| !other.by_id.contains_key(*id))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn info(services: &[&str]) -> MemberInfo {
        MemberInfo {
            rpc_addr: "127.0.0.1:1".parse().unwrap(),
            services: services.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    fn providers(members: &Members, service: &str) -> Vec<String> {
        members
            .providers(service)
            .map(|n| n.name().to_owned())
            .collect()
    }

    /// x3m's `service_registry/implementation_test.exs`, on the gossip-fed registry: a node's
    /// services register all at once, registering again changes nothing, another node's
    /// services stay; and, unlike x3m, a service a node stopped offering is gone.
    #[test]
    fn the_registry_follows_what_each_node_announces() {
        let node1 = NodeId::new("node1", 1);
        let node2 = NodeId::new("node2", 1);
        let mut members = Members::default();
        members.by_id.insert(node1.clone(), info(&["svc1", "svc2"]));
        assert_eq!(providers(&members, "svc1"), ["node1"]);
        assert_eq!(providers(&members, "svc2"), ["node1"]);
        members.by_id.insert(node1.clone(), info(&["svc1", "svc2"]));
        assert_eq!(providers(&members, "svc1"), ["node1"], "idempotent");
        members.by_id.insert(node2.clone(), info(&["svc3"]));
        members.by_id.insert(node1.clone(), info(&["svc1", "svc2"]));
        assert_eq!(
            providers(&members, "svc3"),
            ["node2"],
            "others' services stay"
        );
        members.by_id.insert(node1.clone(), info(&["svc1"]));
        assert!(
            providers(&members, "svc2").is_empty(),
            "withdrawn services go"
        );
        members.by_id.remove(&node2);
        assert!(
            providers(&members, "svc3").is_empty(),
            "a departed node's services go"
        );
    }

    #[test]
    fn a_member_is_described_by_its_rpc_address_and_services() {
        assert!(
            member_info_from(None, ["[]"]).is_none(),
            "no address, no member"
        );
        let found = member_info_from(Some("127.0.0.1:9"), [r#"["a","b"]"#, r#"["c"]"#]).unwrap();
        assert_eq!(found.services, ["a", "b", "c"]);
        let garbled = member_info_from(Some("127.0.0.1:9"), ["not json", r#"["c"]"#]).unwrap();
        assert_eq!(
            garbled.services,
            ["c"],
            "an unreadable chunk offers nothing"
        );
    }

    /// Services are spread over chunks that each fit the limit, read back in order; a
    /// shorter list deletes the chunks it no longer needs.
    #[test]
    fn services_are_announced_in_chunks_that_each_fit_a_datagram() {
        let services: Vec<String> = (0..5_000).map(|i| format!("{i:0>64}")).collect();
        let chunks = service_chunks(&services);
        assert!(chunks.len() > 1);
        assert!(
            chunks
                .iter()
                .all(|chunk| chunk.len() <= SERVICES_CHUNK_BYTES)
        );
        let mut state = NodeState::for_test();
        state.set(KEY_RPC, "127.0.0.1:9");
        set_services(&mut state, &services);
        assert_eq!(member_info(&state).unwrap().services, services);
        set_services(&mut state, &services[..3]);
        assert_eq!(member_info(&state).unwrap().services, &services[..3]);
        assert_eq!(
            state.iter_prefix(KEY_SERVICE_CHUNK).count(),
            2,
            "the count and one chunk are left"
        );
        set_services(&mut state, &[]);
        assert!(member_info(&state).unwrap().services.is_empty());
        assert!(service_chunks(&[]).is_empty());
        // The longest name a node registers, every character escaped in JSON, fits a chunk.
        let longest = vec!["\u{1}".repeat(switchyard_messaging::MAX_SERVICE_NAME_LEN)];
        let chunks = service_chunks(&longest);
        assert!(chunks.len() == 1 && chunks[0].len() <= SERVICES_CHUNK_BYTES);
        let long = vec!["x".repeat(SERVICES_CHUNK_BYTES * 2)];
        assert_eq!(
            service_chunks(&long).len(),
            1,
            "a long name alone in its chunk"
        );
    }
}
