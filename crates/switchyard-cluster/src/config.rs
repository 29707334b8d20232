//! How a node joins a cluster: its names, addresses, secret and timings.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::ClusterError;

/// The shortest cluster secret accepted, in bytes.
pub const MIN_SECRET_LEN: usize = 16;

/// Settings of one node's membership in a cluster.
///
/// ```
/// use std::time::Duration;
/// use switchyard_cluster::ClusterConfig;
///
/// let config = ClusterConfig::new("payments", b"a secret shared by every node".to_vec())
///     .rpc_addr("127.0.0.1:7100".parse().unwrap())
///     .gossip_addr("127.0.0.1:7101".parse().unwrap())
///     .seeds(["127.0.0.1:7001"])
///     .gossip_interval(Duration::from_millis(100));
/// assert_eq!(config.cluster_id(), "payments");
/// ```
#[derive(Clone)]
pub struct ClusterConfig {
    pub(crate) cluster_id: String,
    pub(crate) secret: Arc<[u8]>,
    pub(crate) rpc_addr: SocketAddr,
    pub(crate) gossip_addr: SocketAddr,
    pub(crate) seeds: Vec<String>,
    pub(crate) gossip_interval: Duration,
    pub(crate) phi_threshold: f64,
    pub(crate) dead_node_grace_period: Duration,
    pub(crate) max_frame_len: usize,
    pub(crate) connect_timeout: Duration,
    pub(crate) drain_timeout: Duration,
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<crate::TlsConfig>,
}

impl std::fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        f.debug_struct("ClusterConfig")
            .field("cluster_id", &self.cluster_id)
            .field("rpc_addr", &self.rpc_addr)
            .field("gossip_addr", &self.gossip_addr)
            .field("seeds", &self.seeds)
            .field("gossip_interval", &self.gossip_interval)
            .field("phi_threshold", &self.phi_threshold)
            .field("max_frame_len", &self.max_frame_len)
            .finish_non_exhaustive()
    }
}

impl ClusterConfig {
    /// A node of cluster `cluster_id`, proving its membership with `secret` (at least
    /// [`MIN_SECRET_LEN`] bytes; the secret never crosses the wire). Both addresses default to
    /// a free port on 127.0.0.1; the gossip interval to 200 ms.
    pub fn new(cluster_id: impl Into<String>, secret: impl Into<Vec<u8>>) -> Self {
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        Self {
            cluster_id: cluster_id.into(),
            secret: Arc::from(secret.into()),
            rpc_addr: loopback,
            gossip_addr: loopback,
            seeds: Vec::new(),
            gossip_interval: Duration::from_millis(200),
            phi_threshold: 8.0,
            dead_node_grace_period: Duration::from_secs(60),
            max_frame_len: 16 * 1024 * 1024,
            connect_timeout: Duration::from_secs(2),
            drain_timeout: Duration::from_secs(10),
            #[cfg(feature = "tls")]
            tls: None,
        }
    }

    /// Where the node listens for calls from other nodes (TCP).
    pub fn rpc_addr(mut self, addr: SocketAddr) -> Self {
        self.rpc_addr = addr;
        self
    }

    /// Where the node gossips (UDP). Gossip is not encrypted: bind it to a private network.
    pub fn gossip_addr(mut self, addr: SocketAddr) -> Self {
        self.gossip_addr = addr;
        self
    }

    /// Gossip addresses (`host:port`) of nodes to join through.
    pub fn seeds<S: Into<String>>(mut self, seeds: impl IntoIterator<Item = S>) -> Self {
        self.seeds = seeds.into_iter().map(Into::into).collect();
        self
    }

    /// How often the node gossips. Discovery and failure detection scale with it.
    pub fn gossip_interval(mut self, interval: Duration) -> Self {
        self.gossip_interval = interval;
        self
    }

    /// The phi-accrual threshold above which a silent node is considered dead (8 by default;
    /// lower detects faster and errs more).
    pub fn phi_threshold(mut self, phi: f64) -> Self {
        self.phi_threshold = phi;
        self
    }

    /// How long a dead node is remembered before it is forgotten (60 s by default).
    pub fn dead_node_grace_period(mut self, period: Duration) -> Self {
        self.dead_node_grace_period = period;
        self
    }

    /// The largest frame accepted from a peer (16 MiB by default). A larger one closes that
    /// connection.
    pub fn max_frame_len(mut self, len: usize) -> Self {
        self.max_frame_len = len;
        self
    }

    /// How long connecting and authenticating to a peer may take (2 s by default).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long a graceful shutdown waits for the calls it is running (10 s by default).
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain_timeout = timeout;
        self
    }

    /// Runs every node-to-node connection over TLS (feature `tls`). Every member must use TLS
    /// then: a node without it cannot connect.
    #[cfg(feature = "tls")]
    pub fn tls(mut self, tls: crate::TlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    /// The cluster's id.
    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    pub(crate) fn validate(&self) -> Result<(), ClusterError> {
        if self.secret.len() < MIN_SECRET_LEN {
            return Err(ClusterError::WeakSecret {
                len: self.secret.len(),
            });
        }
        if self.gossip_interval.is_zero() {
            return Err(ClusterError::Config("the gossip interval is zero".into()));
        }
        if self.cluster_id.is_empty() {
            return Err(ClusterError::Config("the cluster id is empty".into()));
        }
        Ok(())
    }
}
