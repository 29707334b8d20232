//! Mutual authentication by challenge-response: each side proves it knows the cluster secret
//! by returning an HMAC-SHA256 of the other's fresh nonce. The secret never crosses the wire,
//! and a recorded proof is useless against a new nonce.

use futures::{SinkExt, StreamExt};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use switchyard_messaging::NodeId;

use crate::frame::{Frame, NONCE_LEN, PROTOCOL};

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
}

use crate::connection::Transport;

/// What this side says about itself.
pub(crate) struct Identity<'a> {
    pub(crate) cluster_id: &'a str,
    pub(crate) node: &'a NodeId,
    pub(crate) secret: &'a [u8],
}

/// Runs the handshake on a fresh connection; returns the authenticated peer's id.
pub(crate) async fn handshake(
    transport: &mut Transport,
    me: &Identity<'_>,
) -> Result<NodeId, HandshakeError> {
    let mut nonce = [0_u8; NONCE_LEN];
    getrandom::fill(&mut nonce).map_err(|error| HandshakeError::Random(error.to_string()))?;
    send(
        transport,
        &Frame::Hello {
            protocol: PROTOCOL,
            cluster_id: me.cluster_id.to_owned(),
            node: me.node.clone(),
            nonce,
        },
    )
    .await?;
    let (peer, peer_nonce) = match receive(transport).await? {
        Frame::Hello {
            protocol,
            cluster_id,
            node,
            nonce,
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
            (node, nonce)
        }
        Frame::Refused { reason } => return Err(HandshakeError::Refused(reason)),
        other => return Err(HandshakeError::Unexpected(other.kind())),
    };
    let mac = proof(me.secret, me.cluster_id, &peer_nonce, &nonce, me.node);
    send(transport, &Frame::Proof { mac }).await?;
    match receive(transport).await? {
        Frame::Proof { mac } => {
            if verify(me.secret, me.cluster_id, &nonce, &peer_nonce, &peer, &mac) {
                Ok(peer)
            } else {
                refuse(transport, "wrong proof".into()).await;
                Err(HandshakeError::BadProof)
            }
        }
        Frame::Refused { reason } => Err(HandshakeError::Refused(reason)),
        other => Err(HandshakeError::Unexpected(other.kind())),
    }
}

/// The MAC the prover sends: over a label, the cluster, the challenge it answers, its own nonce
/// (so the proof is bound to this very exchange) and its own id.
fn mac_of(
    secret: &[u8],
    cluster_id: &str,
    challenge: &[u8; NONCE_LEN],
    prover_nonce: &[u8; NONCE_LEN],
    prover: &NodeId,
) -> Option<Hmac<Sha256>> {
    // HMAC takes keys of any length, so this never fails in practice.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret).ok()?;
    mac.update(b"switchyard-cluster-v1\0");
    mac.update(&(cluster_id.len() as u64).to_be_bytes());
    mac.update(cluster_id.as_bytes());
    mac.update(challenge);
    mac.update(prover_nonce);
    mac.update(&(prover.name().len() as u64).to_be_bytes());
    mac.update(prover.name().as_bytes());
    mac.update(&prover.incarnation().to_be_bytes());
    Some(mac)
}

fn proof(
    secret: &[u8],
    cluster_id: &str,
    challenge: &[u8; NONCE_LEN],
    own_nonce: &[u8; NONCE_LEN],
    me: &NodeId,
) -> Vec<u8> {
    mac_of(secret, cluster_id, challenge, own_nonce, me)
        .map(|mac| mac.finalize().into_bytes().to_vec())
        .unwrap_or_default()
}

fn verify(
    secret: &[u8],
    cluster_id: &str,
    own_nonce: &[u8; NONCE_LEN],
    peer_nonce: &[u8; NONCE_LEN],
    peer: &NodeId,
    mac: &[u8],
) -> bool {
    // Constant-time comparison.
    mac_of(secret, cluster_id, own_nonce, peer_nonce, peer)
        .is_some_and(|expected| expected.verify_slice(mac).is_ok())
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

    #[test]
    fn a_proof_verifies_only_with_the_same_secret_nonces_and_prover() {
        let node = NodeId::new("a", 1);
        let (challenge, own) = ([1_u8; NONCE_LEN], [2_u8; NONCE_LEN]);
        let mac = proof(b"0123456789abcdef", "c", &challenge, &own, &node);
        assert!(verify(
            b"0123456789abcdef",
            "c",
            &challenge,
            &own,
            &node,
            &mac
        ));
        assert!(!verify(
            b"0123456789abcdeX",
            "c",
            &challenge,
            &own,
            &node,
            &mac
        ));
        assert!(!verify(
            b"0123456789abcdef",
            "d",
            &challenge,
            &own,
            &node,
            &mac
        ));
        assert!(!verify(
            b"0123456789abcdef",
            "c",
            &[3; NONCE_LEN],
            &own,
            &node,
            &mac
        ));
        assert!(!verify(
            b"0123456789abcdef",
            "c",
            &challenge,
            &own,
            &NodeId::new("a", 2),
            &mac
        ));
    }
}
