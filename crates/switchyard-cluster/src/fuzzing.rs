//! Not an API: the entry points of the fuzz targets in the repository's `fuzz/` package, which
//! need the crate's private decoders. Hidden from the docs, outside semver, and free to change
//! with any release; nothing else may call them.
//!
//! Each takes the bytes a peer could send and runs them through the same code a node runs on
//! them, returning what came out (the errors are the expected outcome of most inputs; a panic
//! or a hang is the bug a fuzzer looks for).

use std::future::Future;
use std::io::Cursor;
use std::pin::{Pin, pin};
use std::task::{Context, Poll, Waker};

use bytes::{Bytes, BytesMut};
use switchyard_messaging::NodeId;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::codec::{Decoder, Framed, LengthDelimitedCodec};

use crate::frame::{Frame, Header};
use crate::handshake::{Identity, handshake as run_handshake};
use crate::seal::{Role, TAG_LEN, pair};

/// The largest frame [`read_frames`] takes: a small `max_frame_len`, so oversized prefixes are
/// exercised without the fuzzer allocating megabytes.
const FUZZ_MAX_FRAME_LEN: usize = 64 * 1024;

/// The kind of frame `bytes` decode to (`"call"`, `"hello"`...), as a node reads one frame's
/// payload on an established connection: its header on the reader, then the message it
/// carries (if any) where it is used; the decoder's error message otherwise.
pub fn decode_frame(bytes: &[u8]) -> Result<&'static str, String> {
    let (header, body) =
        Header::read(Bytes::copy_from_slice(bytes)).map_err(|error| error.to_string())?;
    if header.carries_message() {
        body.decode().map_err(|error| error.to_string())?;
    }
    Ok(header.kind())
}

/// Reads `stream` as the reader of an authenticated connection does: length-delimited frames
/// of at most a maximum size, each opened with the session's MAC, then decoded. The fuzzer
/// cannot forge a MAC, so each frame that fails to open is also sealed with the session key and
/// opened again, as if a peer holding the secret had sent it: its bytes reach the decoder.
/// Returns the kinds of the frames decoded, or where the stream ended in error.
pub fn read_frames(stream: &[u8]) -> Result<Vec<&'static str>, String> {
    let mut codec = LengthDelimitedCodec::builder()
        .max_frame_length(FUZZ_MAX_FRAME_LEN + TAG_LEN)
        .new_codec();
    let (_, mut opener) = pair(&[7; crate::seal::KEY_LEN], Role::Dialer);
    let (mut peer_sealer, _) = pair(&[7; crate::seal::KEY_LEN], Role::Listener);
    let mut buffer = BytesMut::from(stream);
    let mut kinds = Vec::new();
    while let Some(frame) = codec
        .decode(&mut buffer)
        .map_err(|error| error.to_string())?
    {
        let payload = match opener.open(&frame) {
            Ok(payload) => payload.to_vec(),
            Err(_) => {
                let mut sealed = BytesMut::new();
                peer_sealer.seal_into(&frame, &mut sealed);
                opener
                    .open(&sealed)
                    .map_err(|error| error.to_string())?
                    .to_vec()
            }
        };
        kinds.push(decode_frame(&payload)?);
    }
    Ok(kinds)
}

/// Runs this node's side of the handshake, as the dialer or the listener, against a peer that
/// sends `peer_bytes` (length-delimited frames, or anything else) and then closes. Returns the
/// peer's id when the handshake succeeds (it cannot without the secret), its error otherwise.
pub fn handshake(peer_bytes: &[u8], as_dialer: bool) -> Result<String, String> {
    let io = ScriptedPeer {
        incoming: Cursor::new(peer_bytes.to_vec()),
        outgoing: Vec::new(),
    };
    let mut transport = Framed::new(
        Box::new(io) as crate::transport::Stream,
        crate::transport::framed_codec(),
    );
    let node = NodeId::new("fuzzed-node", 1);
    let me = Identity {
        cluster_id: "fuzz",
        node: &node,
        secret: b"fuzzing secret of sixteen or more bytes",
        max_frame_len: 16 * 1024 * 1024,
    };
    let role = if as_dialer {
        Role::Dialer
    } else {
        Role::Listener
    };
    let outcome = poll_ready(run_handshake(&mut transport, &me, role))
        .ok_or("the handshake waited on a peer that had sent everything")?;
    outcome
        .map(|authenticated| authenticated.peer.to_string())
        .map_err(|error| error.to_string())
}

/// Polls `future` until it is ready, `None` if it ever waits: every read and write of a
/// [`ScriptedPeer`] completes at once, so a wait would be a bug.
fn poll_ready<F: Future>(future: F) -> Option<F::Output> {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => Some(output),
        Poll::Pending => None,
    }
}

/// A peer whose bytes are all there: reads return them, then the end of the stream; writes
/// are kept and ignored.
struct ScriptedPeer {
    incoming: Cursor<Vec<u8>>,
    outgoing: Vec<u8>,
}

impl AsyncRead for ScriptedPeer {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.incoming).poll_read(cx, buf)
    }
}

impl AsyncWrite for ScriptedPeer {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.outgoing).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.outgoing).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.outgoing).poll_shutdown(cx)
    }
}

/// Seed inputs made from real values: `(name, bytes)` for [`read_frames`] (each frame
/// length-delimited, unsealed: [`read_frames`] seals what does not open).
pub fn seed_frames() -> Vec<(&'static str, Vec<u8>)> {
    use switchyard_messaging::remote::Hop;
    use switchyard_messaging::{Message, Response};

    use crate::frame::Verdict;

    let peer = NodeId::new("peer", 7);
    let message = Message::new("accounts.deposit")
        .with_request(&("account-1", 250_u64))
        .assign("tenant", &"acme");
    let frames = [
        (
            "hello",
            Frame::Hello {
                protocol: crate::frame::PROTOCOL,
                cluster_id: "fuzz".into(),
                node: peer.clone(),
                nonce: [7; crate::frame::NONCE_LEN],
                max_frame_len: 16 * 1024 * 1024,
            },
        ),
        ("proof", Frame::Proof { mac: vec![1; 32] }),
        (
            "refused",
            Frame::Refused {
                reason: "wrong proof".into(),
            },
        ),
        (
            "call",
            Frame::Call {
                reply_to: peer.clone(),
                request: 42,
                hop: Hop::Forwarded.into(),
                remaining_micros: 5_000_000,
                message: message.clone(),
            },
        ),
        (
            "reply",
            Frame::Reply {
                request: 42,
                message: message.clone().ok_with(&"done"),
            },
        ),
        (
            "authorize",
            Frame::Authorize {
                request: 43,
                message: message.clone(),
            },
        ),
        (
            "authorized",
            Frame::Authorized {
                request: 43,
                verdict: Verdict::Denied(Response::forbidden("no")),
            },
        ),
        (
            "cancel",
            Frame::Cancel {
                reply_to: peer,
                request: 42,
            },
        ),
    ];
    frames
        .into_iter()
        .filter_map(|(name, frame)| Some((name, delimited(&frame.encode().ok()?))))
        .collect()
}

/// Seed inputs for [`handshake`]: a peer's hello alone, and followed by a proof.
pub fn seed_handshakes() -> Vec<(&'static str, Vec<u8>)> {
    let frames = seed_frames();
    let find = |kind: &str| {
        frames
            .iter()
            .find(|(name, _)| *name == kind)
            .map(|(_, bytes)| bytes.clone())
            .unwrap_or_default()
    };
    let hello = find("hello");
    let mut hello_proof = hello.clone();
    hello_proof.extend(find("proof"));
    let mut hello_refused = hello.clone();
    hello_refused.extend(find("refused"));
    vec![
        ("hello", hello),
        ("hello_proof", hello_proof),
        ("hello_refused", hello_refused),
        ("refused", find("refused")),
    ]
}

/// `payload` behind its 4-byte big-endian length, as the transport frames it.
fn delimited(payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(payload);
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_seed_frames_reach_the_decoder_in_order() {
        let seeds = seed_frames();
        let stream: Vec<u8> = seeds.iter().flat_map(|(_, bytes)| bytes.clone()).collect();
        let kinds: Vec<&str> = seeds.iter().map(|(name, _)| *name).collect();
        assert_eq!(read_frames(&stream).unwrap(), kinds);
        assert!(read_frames(&[0, 0, 0, 1, 9]).is_err(), "not a frame");
    }

    #[test]
    fn the_handshake_runs_to_the_proof_check_without_waiting() {
        let hello_proof = &seed_handshakes()[1].1;
        for as_dialer in [false, true] {
            let error = handshake(hello_proof, as_dialer).unwrap_err();
            assert!(error.contains("proof is wrong"), "{error}");
        }
        let error = handshake(&[], false).unwrap_err();
        assert!(error.contains("closed"), "{error}");
    }
}
