//! What travels between nodes: the frames of the wire protocol (see `docs/wire.md`).
//!
//! Each frame is one length-delimited chunk (a 4-byte big-endian length, then the bytes),
//! encoded by the messaging crate's codec: a format version byte, then bincode.

use serde::{Deserialize, Serialize};
use switchyard_messaging::remote::Hop;
use switchyard_messaging::{Message, NodeId, Response, codec};

/// The protocol version this crate speaks; a peer speaking another is refused. Version 2
/// added each side's `max_frame_len` to `Hello`; version 3 tags frames with AES-256-GCM
/// (GMAC) instead of HMAC-SHA256 (see `seal`).
pub(crate) const PROTOCOL: u16 = 3;

/// The size of a handshake nonce.
pub(crate) const NONCE_LEN: usize = 32;

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Frame {
    /// First frame of each side: who I am, and a fresh challenge for you.
    Hello {
        protocol: u16,
        cluster_id: String,
        node: NodeId,
        nonce: [u8; NONCE_LEN],
        /// The longest frame (before its MAC) this side accepts: the peer sends none longer.
        max_frame_len: u32,
    },
    /// The answer to the peer's challenge: an HMAC of it under the cluster secret.
    Proof { mac: Vec<u8> },
    /// The handshake failed; the connection closes.
    Refused { reason: String },
    /// Run `message`, and send the reply to `reply_to` as request `request`.
    Call {
        reply_to: NodeId,
        request: u64,
        hop: WireHop,
        /// What is left of the caller's deadline, in microseconds, when the frame left.
        remaining_micros: u64,
        message: Message,
    },
    /// The reply to request `request` of the receiving node.
    Reply { request: u64, message: Message },
    /// Is `message` authorized here?
    Authorize { request: u64, message: Message },
    /// The answer to an `Authorize`.
    Authorized { request: u64, verdict: Verdict },
    /// The caller stopped waiting for its request `request`: stop running it.
    Cancel { reply_to: NodeId, request: u64 },
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub(crate) enum WireHop {
    First,
    Forwarded,
}

impl From<Hop> for WireHop {
    fn from(hop: Hop) -> Self {
        match hop {
            Hop::First => Self::First,
            Hop::Forwarded => Self::Forwarded,
        }
    }
}

impl From<WireHop> for Hop {
    fn from(hop: WireHop) -> Self {
        match hop {
            WireHop::First => Self::First,
            WireHop::Forwarded => Self::Forwarded,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Verdict {
    Allowed,
    Denied(Response),
    Unavailable,
}

impl Frame {
    pub(crate) fn encode(&self) -> Result<bytes::Bytes, codec::EncodeError> {
        codec::encode(self).map(bytes::Bytes::from)
    }

    /// Appends the encoding of the frame to `out` (left as it was on error).
    pub(crate) fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), codec::EncodeError> {
        codec::encode_into(self, out)
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, codec::DecodeError> {
        codec::decode(bytes)
    }

    /// The frame's kind, for logs.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Self::Hello { .. } => "hello",
            Self::Proof { .. } => "proof",
            Self::Refused { .. } => "refused",
            Self::Call { .. } => "call",
            Self::Reply { .. } => "reply",
            Self::Authorize { .. } => "authorize",
            Self::Authorized { .. } => "authorized",
            Self::Cancel { .. } => "cancel",
        }
    }
}
