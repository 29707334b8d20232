//! How a node joins a cluster: its names, addresses, secret and timings.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{ClusterError, MIN_SECRET_LEN};

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
    pub(crate) advertised_rpc_addr: Option<SocketAddr>,
    pub(crate) reconnect_min: Duration,
    pub(crate) reconnect_max: Duration,
    pub(crate) keepalive: Keepalive,
    pub(crate) first_byte_timeout: Duration,
    pub(crate) handshakes: crate::admission::Limits,
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<crate::tls::TlsConfig>,
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
            .field("advertised_rpc_addr", &self.advertised_rpc_addr)
            .field("reconnect_min", &self.reconnect_min)
            .field("reconnect_max", &self.reconnect_max)
            .field("keepalive", &self.keepalive)
            .field("first_byte_timeout", &self.first_byte_timeout)
            .field("handshakes", &self.handshakes)
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
            advertised_rpc_addr: None,
            reconnect_min: Duration::from_millis(50),
            reconnect_max: Duration::from_secs(5),
            keepalive: Keepalive::default(),
            // A dialer writes as soon as its connection is up, so its first byte arrives half
            // a round trip after the accept: 500 ms covers the longest links with room for a
            // busy host, and a silent connection frees its slot four times sooner than the
            // 2 s handshake bound would.
            first_byte_timeout: Duration::from_millis(500),
            // A handshake is a few hundred bytes and one task: 64 at once is far more than a
            // cluster's members ever open together (one connection per pair), at a bounded
            // cost. One address may hold 8: several nodes on one host can (re)connect at once,
            // and a single hostile address takes an eighth of the slots at most.
            handshakes: crate::admission::Limits {
                max_handshakes: 64,
                per_address: 8,
                // A member knows the secret, so its handshakes do not fail: 10 failures in a
                // row leave room for a misconfigured node's retries, one more per second after
                // that makes guessing and flooding slow, and the log says why.
                failure_burst: 10,
                failure_refill: Duration::from_secs(1),
            },
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

    /// How often the node gossips (at most an hour). Discovery and failure detection scale
    /// with it.
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
    /// connection. Each node says its own in the handshake, and its peers send it nothing
    /// longer: nodes may differ (a call or reply over the receiver's limit fails with an error
    /// naming it, the connection stays up).
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

    /// The address other nodes dial to call this one, when it is not [`rpc_addr`](Self::rpc_addr)
    /// (behind NAT, a port mapping or a proxy). By default the address the node listens on is
    /// announced.
    pub fn advertised_rpc_addr(mut self, addr: SocketAddr) -> Self {
        self.advertised_rpc_addr = Some(addr);
        self
    }

    /// How long to wait before dialing a member again after a failed attempt: `min` after the
    /// first failure, doubling on each further one up to `max`, each delay shortened by a
    /// random part of up to a half so that nodes do not redial in step (50 ms and 5 s by
    /// default; `max` at most an hour). Until then, calls needing a new connection to that
    /// member are not delivered (the dispatcher tries another provider) instead of dialing
    /// again. A connection that ends within a second of its handshake counts as a failed
    /// attempt.
    pub fn reconnect_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.reconnect_min = min;
        self.reconnect_max = max;
        self
    }

    /// How long a connection another node dialed may stay silent before its first byte
    /// arrives (500 ms by default; the whole handshake still has
    /// [`connect_timeout`](Self::connect_timeout)). A dialer writes at once, so only a stalled
    /// or hostile peer waits longer: its connection is closed and counts as a failed
    /// handshake of its address (see
    /// [`throttle_failed_handshakes`](Self::throttle_failed_handshakes)).
    pub fn first_byte_timeout(mut self, timeout: Duration) -> Self {
        self.first_byte_timeout = timeout;
        self
    }

    /// How many incoming connections may be authenticating at once: `total` in all (64 by
    /// default), `per_address` from one source (8 by default): an IPv4 address (an
    /// IPv4-mapped IPv6 address counts as its IPv4 address), a member's announced address, or
    /// the /64 network of any other IPv6 address (the same source counts failed handshakes for
    /// [`throttle_failed_handshakes`](Self::throttle_failed_handshakes)). A quarter of the
    /// total is kept for the addresses members announce, so connections from elsewhere can
    /// never take every slot. A connection beyond a limit is closed on arrival, unanswered;
    /// the dialer retries after its reconnect backoff.
    pub fn handshake_limits(mut self, total: usize, per_address: usize) -> Self {
        self.handshakes.max_handshakes = total;
        self.handshakes.per_address = per_address;
        self
    }

    /// Throttles the source addresses of failed handshakes (wrong secret, another cluster,
    /// malformed or silent): an address may fail `burst` handshakes in a row (10 by
    /// default), then one more per `refill` (1 s by default); meanwhile its connections are
    /// closed on arrival, unanswered. A handshake that succeeds costs nothing.
    pub fn throttle_failed_handshakes(mut self, burst: u32, refill: Duration) -> Self {
        self.handshakes.failure_burst = burst;
        self.handshakes.failure_refill = refill;
        self
    }

    /// TCP keepalive on every node-to-node connection: after `idle` without traffic the
    /// kernel probes the peer every `interval`, and closes the connection after `retries`
    /// unanswered probes (10 s, 2 s and 3 by default, so a peer that vanished without a word
    /// is let go in about 16 s even if gossip has not yet declared it dead). On Linux the
    /// same total also bounds how long sent data may stay unacknowledged
    /// (`TCP_USER_TIMEOUT`), which also closes the connection of a peer that kept its receive
    /// window shut that long. The calls in flight on a connection closed this way end with an
    /// error at once. `idle` and `interval` take at least 1 s and at most 32,767 s, `retries`
    /// 1 to 127 (the limits of Linux).
    pub fn keepalive(mut self, idle: Duration, interval: Duration, retries: u32) -> Self {
        self.keepalive = Keepalive {
            idle,
            interval,
            retries,
        };
        self
    }

    /// Runs every node-to-node connection over TLS (feature `tls`). Every member must use TLS
    /// then: a node without it cannot connect.
    #[cfg(feature = "tls")]
    pub fn tls(mut self, tls: crate::tls::TlsConfig) -> Self {
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
        if self.gossip_interval > MAX_INTERVAL {
            return Err(ClusterError::Config(format!(
                "the gossip interval is {:?}, more than the {MAX_INTERVAL:?} allowed",
                self.gossip_interval
            )));
        }
        if self.reconnect_max > MAX_INTERVAL {
            return Err(ClusterError::Config(format!(
                "the reconnect backoff may grow to {:?}, more than the {MAX_INTERVAL:?} allowed",
                self.reconnect_max
            )));
        }
        if self.reconnect_min.is_zero() || self.reconnect_min > self.reconnect_max {
            return Err(ClusterError::Config(format!(
                "the reconnect backoff must grow from a positive minimum to a maximum at least as long (got {:?} to {:?})",
                self.reconnect_min, self.reconnect_max
            )));
        }
        let Keepalive {
            idle,
            interval,
            retries,
        } = self.keepalive;
        if idle < Duration::from_secs(1) || interval < Duration::from_secs(1) || retries == 0 {
            return Err(ClusterError::Config(format!(
                "keepalive needs an idle time and an interval of at least 1 s and at least one probe (got {idle:?}, {interval:?}, {retries})"
            )));
        }
        if idle > MAX_KEEPALIVE_TIME
            || interval > MAX_KEEPALIVE_TIME
            || retries > MAX_KEEPALIVE_PROBES
        {
            return Err(ClusterError::Config(format!(
                "keepalive takes an idle time and an interval of at most {MAX_KEEPALIVE_TIME:?} and at most {MAX_KEEPALIVE_PROBES} probes (got {idle:?}, {interval:?}, {retries})"
            )));
        }
        if self.first_byte_timeout.is_zero() {
            return Err(ClusterError::Config(
                "the first-byte timeout is zero".into(),
            ));
        }
        let limits = &self.handshakes;
        if limits.max_handshakes == 0 || limits.per_address == 0 {
            return Err(ClusterError::Config(format!(
                "the handshake limits must allow at least one handshake (got {} in all, {} per address)",
                limits.max_handshakes, limits.per_address
            )));
        }
        if limits.failure_burst == 0
            || limits.failure_refill.is_zero()
            || limits.failure_refill > MAX_INTERVAL
        {
            return Err(ClusterError::Config(format!(
                "failed handshakes are throttled with a burst of at least 1 and a refill between zero and {MAX_INTERVAL:?} (got {} and {:?})",
                limits.failure_burst, limits.failure_refill
            )));
        }
        if self.cluster_id.is_empty() {
            return Err(ClusterError::Config("the cluster id is empty".into()));
        }
        Ok(())
    }
}

/// The longest gossip interval and reconnect backoff accepted: an hour is already longer than
/// any use, and bounding them keeps the arithmetic on them (deadlines, jitter) from
/// overflowing.
const MAX_INTERVAL: Duration = Duration::from_secs(3_600);

/// The longest keepalive idle time and probe interval accepted: Linux takes at most 32,767 s
/// for each (`TCP_KEEPIDLE`, `TCP_KEEPINTVL`).
const MAX_KEEPALIVE_TIME: Duration = Duration::from_secs(32_767);

/// The most keepalive probes accepted: Linux takes at most 127 (`TCP_KEEPCNT`). With the
/// bounds above, the total (`TCP_USER_TIMEOUT`, in milliseconds) fits in 32 bits.
const MAX_KEEPALIVE_PROBES: u32 = 127;

/// TCP keepalive settings of node-to-node connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Keepalive {
    pub(crate) idle: Duration,
    pub(crate) interval: Duration,
    pub(crate) retries: u32,
}

impl Default for Keepalive {
    /// About 16 s from the last sign of life to a closed connection: well after a busy
    /// peer's pause, well before a person would give up on it.
    fn default() -> Self {
        Self {
            idle: Duration::from_secs(10),
            interval: Duration::from_secs(2),
            retries: 3,
        }
    }
}

impl Keepalive {
    /// How long a peer may stay silent, probes included, before its connection is closed.
    pub(crate) fn give_up_after(&self) -> Duration {
        // Validated settings stay far from overflowing; others must not panic either.
        self.idle
            .saturating_add(self.interval.saturating_mul(self.retries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(config: ClusterConfig, accepted: bool) {
        let outcome = config.validate();
        assert!(
            matches!(
                (&outcome, accepted),
                (Ok(()), true) | (Err(ClusterError::Config(_)), false)
            ),
            "{config:?}: {outcome:?}"
        );
    }

    #[test]
    fn settings_whose_arithmetic_would_overflow_are_refused() {
        let base = || ClusterConfig::new("c", b"sixteen or more secret bytes".to_vec());
        let huge = Duration::MAX;
        let hour = Duration::from_secs(3_600);
        check(
            base().reconnect_backoff(Duration::from_millis(1), huge),
            false,
        );
        check(base().reconnect_backoff(huge, huge), false);
        check(base().reconnect_backoff(hour, hour), true);
        check(base().gossip_interval(huge), false);
        check(base().gossip_interval(hour), true);
        check(base().throttle_failed_handshakes(1, huge), false);
        check(base().throttle_failed_handshakes(0, hour), false);
        check(base().throttle_failed_handshakes(1, hour), true);
        check(base().handshake_limits(0, 1), false);
        check(base().handshake_limits(1, 0), false);
        check(base().first_byte_timeout(Duration::ZERO), false);
        let second = Duration::from_secs(1);
        check(base().keepalive(huge, second, 3), false);
        check(base().keepalive(second, huge, 3), false);
        check(base().keepalive(second, second, u32::MAX), false);
        let longest = Duration::from_secs(32_767);
        let config = base().keepalive(longest, longest, 127);
        assert_eq!(
            config.keepalive.give_up_after(),
            Duration::from_secs(32_767 * 128)
        );
        assert!(config.keepalive.give_up_after().as_millis() < u128::from(u32::MAX));
        check(config, true);
        // Never a panic, even unvalidated.
        let unchecked = Keepalive {
            idle: huge,
            interval: huge,
            retries: u32::MAX,
        };
        assert_eq!(unchecked.give_up_after(), huge);
    }
}
