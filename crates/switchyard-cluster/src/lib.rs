//! Switchyard nodes as one cluster: the same `node.dispatch(msg)` reaches a service whether it
//! runs here or on another node.
//!
//! [`Cluster::start`] makes a [`Node`](switchyard_messaging::Node) a member:
//!
//! - **Membership** on [chitchat](https://docs.rs/chitchat) (scuttlebutt gossip, phi-accrual
//!   failure detection). Each node gossips the address where it takes calls and its public
//!   services (those of every router registered on it; private services are never announced).
//!   Nodes of another cluster id never merge. A node's id is its name plus an incarnation, so a
//!   restarted node is a new member.
//! - **Transport**: one TCP connection per pair of nodes (`TCP_NODELAY`), length-delimited
//!   frames with a maximum size, many calls in flight on it, matched by request id. Both sides
//!   prove they know the cluster secret by HMAC-SHA256 challenge-response before any other
//!   frame; the secret never crosses the wire. A member's services are used only once a
//!   connection to it has been authenticated, so a node with the wrong secret can call nothing
//!   and is offered no call. With the `tls` feature, connections can also run over TLS
//!   ([`ClusterConfig::tls`], rustls with the `ring` provider). TCP keepalive closes the
//!   connection to a peer that vanished without a word; a broken connection is dialed again
//!   after a backoff ([`ClusterConfig::reconnect_backoff`]). A connection that has not
//!   authenticated yet must send its first byte within
//!   [`ClusterConfig::first_byte_timeout`]; handshakes under way are limited in all and per
//!   source address, with a quarter of the slots kept for members' addresses
//!   ([`ClusterConfig::handshake_limits`]), and an address whose handshakes keep failing is
//!   throttled ([`ClusterConfig::throttle_failed_handshakes`]), so a stalled or hostile peer
//!   cannot keep members from connecting. The wire format is in `docs/wire.md`.
//! - **Remote dispatch**: the caller's dispatcher picks a provider (local first, else a random
//!   remote one), the call carries the caller's reply address and deadline; the first node to
//!   receive it authorizes it and applies `choose_node`; when that names another node, the call
//!   is forwarded once and the owner replies straight to the caller. A timeout cancels the call
//!   where it runs. When the connection a call travels on breaks, the call ends at once: a
//!   call that never left goes to the next provider, one that left gets an error saying its
//!   outcome is unknown (it may still run to its end there: no cancel follows it). [`Cluster::placement`] is a ready `choose_node` sending each aggregate's
//!   commands to one node by rendezvous hashing.
//!
//! ```no_run
//! use switchyard_cluster::{Cluster, ClusterConfig};
//! use switchyard_messaging::{Message, Node, Router};
//!
//! async fn whoami(msg: Message, ctx: switchyard_messaging::Ctx) -> Message {
//!     let name = ctx.node_id().name().to_owned();
//!     msg.ok_with(&name)
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let node = Node::new("a");
//! node.register(Router::new("info").service("whoami", whoami).authorize(|_| Ok(())))?;
//! let config = ClusterConfig::new("demo", b"sixteen or more secret bytes".to_vec())
//!     .seeds(["10.0.0.2:7001"]);
//! let cluster = Cluster::start(node.clone(), config).await?;
//! // From now on, `node.dispatch` also reaches the services of the other members.
//! let reply = node.dispatch(Message::new("whoami")).await;
//! # drop(reply);
//! cluster.shutdown().await;
//! # Ok(())
//! # }
//! ```

#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod admission;
mod cluster;
mod config;
mod connection;
mod error;
mod forwarded;
mod frame;
#[doc(hidden)]
pub mod fuzzing;
mod handshake;
mod membership;
mod peers;
mod pending;
pub mod placement;
mod remote;
mod seal;
mod serve;
mod sync;
#[cfg(feature = "tls")]
mod tls;
mod transport;

pub use crate::cluster::{Cluster, ClusterEvent, ClusterStats, Member};
pub use crate::config::ClusterConfig;
pub use crate::error::{ClusterError, MIN_SECRET_LEN};
#[cfg(feature = "tls")]
pub use crate::tls::TlsConfig;
/// The rustls crate, to build [`TlsConfig`]'s configurations with the same version.
#[cfg(feature = "tls")]
pub use rustls;
