//! The seam through which a cluster gives a node its peers.
//!
//! The messaging crate knows nothing of networks: a cluster implementation (the
//! `switchyard-cluster` crate, or an in-memory twin in tests) implements [`RemoteNodes`] and
//! attaches it with [`Node::attach_remote`](crate::Node::attach_remote). The dispatcher then asks
//! it which peers offer a service and sends calls through it; on the receiving side the
//! implementation hands each incoming call to [`Node::serve_remote`](crate::Node::serve_remote).

use futures::future::BoxFuture;
use tokio::time::Instant;

use crate::{Message, NodeId, Response};

/// Whether a call arrives at its first node or was forwarded there by `choose_node`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Hop {
    /// The first node to receive the call: it authorizes and applies `choose_node`.
    First,
    /// Forwarded by the first node: it runs the service as it is, without authorizing again or
    /// choosing another node (at most one forwarding hop).
    Forwarded,
}

/// A node's view of its peers, provided by a cluster implementation.
pub trait RemoteNodes: Send + Sync + 'static {
    /// The peers (not this node) that currently offer `service` publicly.
    fn providers(&self, service: &str) -> Vec<NodeId>;

    /// The peers currently known to be alive.
    fn members(&self) -> Vec<NodeId>;

    /// Sends `message` to `node` and waits for the reply until `deadline`.
    ///
    /// The reply may come from another node than `node` when it forwards the call.
    fn invoke(
        &self,
        node: NodeId,
        message: Message,
        hop: Hop,
        deadline: Instant,
    ) -> BoxFuture<'static, Result<Message, RemoteError>>;

    /// Asks `node` whether its router authorizes `message`.
    fn authorize(
        &self,
        node: NodeId,
        message: Message,
        deadline: Instant,
    ) -> BoxFuture<'static, Result<Result<(), Response>, RemoteError>>;

    /// Tells the cluster which public services this node now offers (every router's).
    fn announce(&self, public_services: Vec<String>);
}

/// A call to another node did not produce a reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RemoteError {
    /// The call never reached the node (no connection, handshake refused): the service did not
    /// run, so another provider may be tried.
    #[error("call not delivered: {reason}")]
    NotDelivered {
        /// Why.
        reason: String,
    },
    /// No reply before the deadline; the service may have run.
    #[error("no reply before the deadline")]
    TimedOut,
    /// The call was delivered but failed on the way back (connection lost mid-call); the service
    /// may have run.
    #[error("call failed: {reason}")]
    Failed {
        /// Why.
        reason: String,
    },
}
