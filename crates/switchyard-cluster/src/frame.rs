//! What travels between nodes: the frames of the wire protocol (see `docs/wire.md`).
//!
//! Each frame is one length-delimited chunk (a 4-byte big-endian length, then the bytes),
//! encoded by the messaging crate's codec: a format version byte, then bincode.
//!
//! A connection's reader decodes only a frame's [`Header`]: every field but the message a
//! call, reply or question carries last. The message's bytes (its [`Body`], a slice of the
//! frame, not a copy) are decoded where the message is used: by the call waiting for a reply,
//! by the future serving a call. The reader, which every frame of a connection goes through
//! one after the other, does the least it can per frame.

use bytes::Bytes;
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

/// A [`Frame`] as the reader of an established connection decodes it: each variant's fields
/// up to its message, which stays in the [`Body`]. Same variants in the same order as
/// [`Frame`] (bincode tells variants by their index); the handshake's own are read as their
/// kind alone, since they end the connection.
#[derive(Debug, Deserialize)]
pub(crate) enum Header {
    Hello,
    Proof,
    Refused,
    Call {
        reply_to: NodeId,
        request: u64,
        hop: WireHop,
        remaining_micros: u64,
    },
    Reply {
        request: u64,
    },
    Authorize {
        request: u64,
    },
    Authorized {
        request: u64,
        verdict: Verdict,
    },
    Cancel {
        reply_to: NodeId,
        request: u64,
    },
}

/// The encoded message at the end of a call, reply or question frame: a slice of the frame
/// (the bytes read are shared, not copied), decoded where the message is used.
#[derive(Debug)]
pub(crate) struct Body(Bytes);

impl Body {
    /// The message.
    pub(crate) fn decode(&self) -> Result<Message, codec::DecodeError> {
        codec::decode_tail(&self.0)
    }
}

impl Header {
    /// The header of the frame `payload` (opened, without its tag), and its body: empty for
    /// the frames of calls that carry no message, which must end with their header.
    pub(crate) fn read(payload: Bytes) -> Result<(Self, Body), codec::DecodeError> {
        let (header, body) = codec::decode_head::<Self>(&payload)?;
        let start = payload.len() - body.len();
        // The handshake's frames are read as their kind alone: the rest of them is not read.
        let whole = matches!(header, Self::Authorized { .. } | Self::Cancel { .. });
        if whole && !body.is_empty() {
            return Err(codec::DecodeError::TrailingBytes { count: body.len() });
        }
        Ok((header, Body(payload.slice(start..))))
    }

    /// Whether the frame ends with a message (in its body).
    pub(crate) fn carries_message(&self) -> bool {
        matches!(
            self,
            Self::Call { .. } | Self::Reply { .. } | Self::Authorize { .. }
        )
    }

    /// The frame's kind, for logs.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Self::Hello => "hello",
            Self::Proof => "proof",
            Self::Refused => "refused",
            Self::Call { .. } => "call",
            Self::Reply { .. } => "reply",
            Self::Authorize { .. } => "authorize",
            Self::Authorized { .. } => "authorized",
            Self::Cancel { .. } => "cancel",
        }
    }
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;

    fn read(frame: &Frame) -> Result<(Header, Body), codec::DecodeError> {
        Header::read(frame.encode().unwrap())
    }

    fn message() -> Message {
        thread_local! {
            static MESSAGE: Message = Message::new("svc").with_id("m-1").with_request(&"payload");
        }
        MESSAGE.with(Clone::clone)
    }

    #[test]
    fn the_reader_takes_the_header_and_leaves_the_message_to_its_user() {
        let peer = NodeId::new("peer", 3);
        let call = Frame::Call {
            reply_to: peer.clone(),
            request: 7,
            hop: WireHop::Forwarded,
            remaining_micros: 1_500,
            message: message(),
        };
        let (header, body) = read(&call).unwrap();
        let Header::Call {
            reply_to,
            request: 7,
            hop: WireHop::Forwarded,
            remaining_micros: 1_500,
        } = header
        else {
            panic!("{header:?}");
        };
        assert_eq!(reply_to, peer);
        assert_eq!(body.decode().unwrap(), message());
        // The body is the message as the codec writes it, without its version byte.
        assert_eq!(body.0.len(), codec::encode(&message()).unwrap().len() - 1);
        let reply = Frame::Reply {
            request: 9,
            message: message().ok(),
        };
        let (header, body) = read(&reply).unwrap();
        assert!(matches!(header, Header::Reply { request: 9 }));
        assert_eq!(body.decode().unwrap(), message().ok());
        let (header, body) = read(&Frame::Authorize {
            request: 4,
            message: message(),
        })
        .unwrap();
        assert!(matches!(header, Header::Authorize { request: 4 }));
        assert_eq!(body.decode().unwrap(), message());
        let (header, body) = read(&Frame::Authorized {
            request: 4,
            verdict: Verdict::Denied(Response::forbidden("no")),
        })
        .unwrap();
        assert!(matches!(
            header,
            Header::Authorized {
                request: 4,
                verdict: Verdict::Denied(Response::Forbidden(_))
            }
        ));
        assert!(body.0.is_empty());
        let (header, _) = read(&Frame::Cancel {
            reply_to: peer,
            request: 7,
        })
        .unwrap();
        assert!(matches!(header, Header::Cancel { request: 7, .. }));
        let (header, _) = read(&Frame::Proof { mac: vec![1; 32] }).unwrap();
        assert_eq!(header.kind(), "proof");
    }

    #[test]
    fn a_malformed_message_fails_where_it_is_decoded_and_a_frame_without_one_ends_with_its_header()
    {
        let mut reply = Frame::Reply {
            request: 9,
            message: message(),
        }
        .encode()
        .unwrap()
        .to_vec();
        reply.truncate(reply.len() - 3);
        let (header, body) = Header::read(Bytes::from(reply)).unwrap();
        assert!(matches!(header, Header::Reply { request: 9 }));
        assert!(body.decode().is_err());
        let mut cancel = Frame::Cancel {
            reply_to: NodeId::new("peer", 3),
            request: 7,
        }
        .encode()
        .unwrap()
        .to_vec();
        cancel.push(0);
        assert!(matches!(
            Header::read(Bytes::from(cancel)),
            Err(codec::DecodeError::TrailingBytes { count: 1 })
        ));
        assert!(Header::read(Bytes::from_static(&[codec::FORMAT_VERSION, 99])).is_err());
        assert!(Header::read(Bytes::new()).is_err());
    }
}
