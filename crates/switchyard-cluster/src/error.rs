//! Errors of starting a cluster node.

use std::net::SocketAddr;

/// The shortest cluster secret accepted, in bytes.
pub const MIN_SECRET_LEN: usize = 16;

/// A node could not join its cluster.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// The secret is too short to resist guessing.
    #[error("the cluster secret has {len} bytes; use at least {min} random bytes", min = MIN_SECRET_LEN)]
    WeakSecret {
        /// Its length.
        len: usize,
    },
    /// A setting is invalid.
    #[error("invalid cluster setting: {0}")]
    Config(String),
    /// An address could not be bound.
    #[error("cannot listen on {addr}: {source} (is the port taken?)")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The membership engine did not start.
    #[error("gossip could not start on {addr}: {reason}")]
    Gossip {
        /// The gossip address.
        addr: SocketAddr,
        /// Why.
        reason: String,
    },
    /// The node is already part of a cluster.
    #[error("node {0} already has a cluster attached")]
    AlreadyAttached(String),
}
