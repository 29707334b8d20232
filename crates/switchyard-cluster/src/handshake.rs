//! Mutual authentication by challenge-response, then a key for the session.
//!
//! Both sides send a fresh nonce. The dialer proves it knows the cluster secret with an
//! HMAC-SHA256 over the whole exchange (a role label, the cluster, both node ids, both nonces);
//! the listener checks it before answering with its own proof over the same exchange under the
//! other role label. The secret never crosses the wire, a proof is worthless on any other
//! connection, and a node cannot relay another's proof: it is bound to who dials whom. Both
//! sides then derive a session key from the exchange, and every later frame carries a MAC
//! under it with a sequence number, so a node in the middle that relayed the handshake can
//! neither inject, replay nor reorder frames.

use futures::{SinkExt, StreamExt};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use switchyard_messaging::NodeId;

use crate::frame::{Frame, NONCE_LEN, PROTOCOL};
use crate::seal::KEY_LEN;
use crate::seal::{Opener, Role, Sealer};
use crate::transport::Transport;

/// Why a handshake failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HandshakeError {
    #[error("connection failed during the handshake: {0}")]
    Io(#[from] std::io::Error),
    #[error("the peer closed the connection during the handshake")]
    Closed,
    #[error("the peer sent a malformed frame during the handshake: {0}")]
    Malformed(String),
    #[error("the peer sent `{0}` before the handshake ended")]
    Unexpected(&'static str),
    #[error("the peer refused the handshake: {0}")]
    Refused(String),
    #[error("the peer speaks protocol {0}, this node {PROTOCOL}")]
    Protocol(u16),
    #[error("the peer belongs to cluster `{0}`")]
    OtherCluster(String),
    #[error("the peer's proof is wrong: it does not know the cluster secret")]
    BadProof,
    #[error("no random numbers for a nonce: {0}")]
    Random(String),
    #[error("the peer claims to be this node")]
    Myself,
}

/// What this side says about itself.
pub(crate) struct Identity<'a> {
    pub(crate) cluster_id: &'a str,
    pub(crate) node: &'a NodeId,
    pub(crate) secret: &'a [u8],
    /// The longest frame this side accepts (its `max_frame_len`).
    pub(crate) max_frame_len: u32,
}

/// Everything both sides agreed on, in a fixed order: what each proof and the session key
/// cover.
struct Transcript<'a> {
    cluster_id: &'a str,
    dialer: &'a NodeId,
    listener: &'a NodeId,
    dialer_nonce: &'a [u8; NONCE_LEN],
    listener_nonce: &'a [u8; NONCE_LEN],
    /// The longest frame each side accepts: covered, so no one in the middle can change them.
    dialer_max_frame_len: u32,
    listener_max_frame_len: u32,
}

impl Transcript<'_> {
    fn mac(&self, secret: &[u8], label: &[u8]) -> Option<Hmac<Sha256>> {
        // HMAC takes keys of any length, so this never fails in practice.
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret).ok()?;
        let mut field = |bytes: &[u8]| {
            mac.update(&(bytes.len() as u64).to_be_bytes());
            mac.update(bytes);
        };
        field(b"switchyard-cluster-v2");
        field(label);
        field(self.cluster_id.as_bytes());
        for node in [self.dialer, self.listener] {
            field(node.name().as_bytes());
            field(&node.incarnation().to_be_bytes());
        }
        field(self.dialer_nonce);
        field(self.listener_nonce);
        field(&self.dialer_max_frame_len.to_be_bytes());
        field(&self.listener_max_frame_len.to_be_bytes());
        Some(mac)
    }

    fn proof(&self, secret: &[u8], role: Role) -> Vec<u8> {
        self.mac(secret, role.label())
            .map(|mac| mac.finalize().into_bytes().to_vec())
            .unwrap_or_default()
    }

    fn verify(&self, secret: &[u8], role: Role, proof: &[u8]) -> bool {
        // Constant-time comparison.
        self.mac(secret, role.label())
            .is_some_and(|mac| mac.verify_slice(proof).is_ok())
    }

    fn session_key(&self, secret: &[u8]) -> Option<[u8; KEY_LEN]> {
        self.mac(secret, b"session")
            .map(|mac| mac.finalize().into_bytes().into())
    }
}

/// What a successful handshake yields: the peer, the longest frame it accepts, and the
/// session's frame sealing.
pub(crate) struct Authenticated {
    pub(crate) peer: NodeId,
    pub(crate) peer_max_frame_len: u32,
    pub(crate) sealer: Sealer,
    pub(crate) opener: Opener,
}

/// Runs the handshake on a fresh connection as `role`.
pub(crate) async fn handshake(
    transport: &mut Transport,
    me: &Identity<'_>,
    role: Role,
) -> Result<Authenticated, HandshakeError> {
    let mut nonce = [0_u8; NONCE_LEN];
    getrandom::fill(&mut nonce).map_err(|error| HandshakeError::Random(error.to_string()))?;
    send(
        transport,
        &Frame::Hello {
            protocol: PROTOCOL,
            cluster_id: me.cluster_id.to_owned(),
            node: me.node.clone(),
            nonce,
            max_frame_len: me.max_frame_len,
        },
    )
    .await?;
    let (peer, peer_nonce, peer_max_frame_len) = match receive(transport).await? {
        Frame::Hello {
            protocol,
            cluster_id,
            node,
            nonce,
            max_frame_len,
        } => {
            if protocol != PROTOCOL {
                refuse(transport, format!("protocol {protocol} is not {PROTOCOL}")).await;
                return Err(HandshakeError::Protocol(protocol));
            }
            if cluster_id != me.cluster_id {
                refuse(
                    transport,
                    format!("this node is of cluster `{}`", me.cluster_id),
                )
                .await;
                return Err(HandshakeError::OtherCluster(cluster_id));
            }
            (node, nonce, max_frame_len)
        }
        Frame::Refused { reason } => return Err(HandshakeError::Refused(reason)),
        other => return Err(HandshakeError::Unexpected(other.kind())),
    };
    if peer == *me.node {
        return Err(HandshakeError::Myself);
    }
    let (dialer, listener, dialer_nonce, listener_nonce) = match role {
        Role::Dialer => (me.node, &peer, &nonce, &peer_nonce),
        Role::Listener => (&peer, me.node, &peer_nonce, &nonce),
    };
    let (dialer_max_frame_len, listener_max_frame_len) = match role {
        Role::Dialer => (me.max_frame_len, peer_max_frame_len),
        Role::Listener => (peer_max_frame_len, me.max_frame_len),
    };
    let transcript = Transcript {
        cluster_id: me.cluster_id,
        dialer,
        listener,
        dialer_nonce,
        listener_nonce,
        dialer_max_frame_len,
        listener_max_frame_len,
    };
    let peer_role = match role {
        Role::Dialer => Role::Listener,
        Role::Listener => Role::Dialer,
    };
    // The dialer proves itself first; the listener answers only a valid proof, so it never
    // produces a proof for a peer that has not shown it knows the secret.
    if role == Role::Dialer {
        let mac = transcript.proof(me.secret, role);
        send(transport, &Frame::Proof { mac }).await?;
    }
    match receive(transport).await? {
        Frame::Proof { mac } if transcript.verify(me.secret, peer_role, &mac) => {}
        Frame::Proof { .. } => {
            refuse(transport, "wrong proof".into()).await;
            return Err(HandshakeError::BadProof);
        }
        Frame::Refused { reason } => return Err(HandshakeError::Refused(reason)),
        other => return Err(HandshakeError::Unexpected(other.kind())),
    }
    if role == Role::Listener {
        let mac = transcript.proof(me.secret, role);
        send(transport, &Frame::Proof { mac }).await?;
    }
    let key = transcript
        .session_key(me.secret)
        .ok_or(HandshakeError::BadProof)?;
    let (sealer, opener) = crate::seal::pair(&key, role);
    Ok(Authenticated {
        peer,
        peer_max_frame_len,
        sealer,
        opener,
    })
}

async fn send(transport: &mut Transport, frame: &Frame) -> Result<(), HandshakeError> {
    let bytes = frame
        .encode()
        .map_err(|error| HandshakeError::Malformed(error.to_string()))?;
    transport.send(bytes).await?;
    Ok(())
}

async fn receive(transport: &mut Transport) -> Result<Frame, HandshakeError> {
    let bytes = transport.next().await.ok_or(HandshakeError::Closed)??;
    Frame::decode(&bytes).map_err(|error| HandshakeError::Malformed(error.to_string()))
}

async fn refuse(transport: &mut Transport, reason: String) {
    let _ = send(transport, &Frame::Refused { reason }).await;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn transcript<'a>(
        dialer: &'a NodeId,
        listener: &'a NodeId,
        nonces: &'a ([u8; NONCE_LEN], [u8; NONCE_LEN]),
    ) -> Transcript<'a> {
        Transcript {
            cluster_id: "c",
            dialer,
            listener,
            dialer_nonce: &nonces.0,
            listener_nonce: &nonces.1,
            dialer_max_frame_len: 1 << 20,
            listener_max_frame_len: 1 << 20,
        }
    }

    #[test]
    fn a_proof_holds_only_for_its_secret_role_peers_and_nonces() {
        let (a, b) = (NodeId::new("a", 1), NodeId::new("b", 1));
        let nonces = ([1; NONCE_LEN], [2; NONCE_LEN]);
        let secret = b"0123456789abcdef";
        let proof = transcript(&a, &b, &nonces).proof(secret, Role::Dialer);
        assert!(transcript(&a, &b, &nonces).verify(secret, Role::Dialer, &proof));
        assert!(!transcript(&a, &b, &nonces).verify(b"0123456789abcdeX", Role::Dialer, &proof));
        assert!(
            !transcript(&a, &b, &nonces).verify(secret, Role::Listener, &proof),
            "a dialer's proof does not pass as a listener's"
        );
        assert!(
            !transcript(&a, &NodeId::new("c", 1), &nonces).verify(secret, Role::Dialer, &proof),
            "bound to the node it was made for"
        );
        assert!(!transcript(&b, &a, &nonces).verify(secret, Role::Dialer, &proof));
        let other_nonces = ([1; NONCE_LEN], [3; NONCE_LEN]);
        assert!(!transcript(&a, &b, &other_nonces).verify(secret, Role::Dialer, &proof));
        let mut smaller_limit = transcript(&a, &b, &nonces);
        smaller_limit.listener_max_frame_len = 1024;
        assert!(
            !smaller_limit.verify(secret, Role::Dialer, &proof),
            "bound to the frame limits both sides announced"
        );
    }
}
