//! Frames sealed under the session key: each carries a 16-byte tag over its bytes, keyed with
//! the session key and bound to its direction and sequence number, so a frame that was
//! injected, replayed, reordered, reflected or altered on the way is caught and closes the
//! connection.
//!
//! The tag is AES-256-GCM's over an empty plaintext with the frame as associated data (GMAC),
//! under the nonce `direction || 0 0 0 || sequence`: a nonce is never used twice with a key,
//! since each session has a fresh key and each direction counts its frames. It replaced
//! HMAC-SHA256 (protocol version 2), whose five SHA-256 blocks per frame were the largest cost
//! of a remote call's own code in the profile; GMAC runs on the CPU's AES and carry-less
//! multiplication instructions (see `docs/wire.md`).

use bytes::{BufMut, BytesMut};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};

/// Which end of the connection this side is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    Dialer,
    Listener,
}

impl Role {
    pub(crate) fn label(self) -> &'static [u8] {
        match self {
            Self::Dialer => b"dialer",
            Self::Listener => b"listener",
        }
    }
}

/// Bytes of tag appended to every frame.
pub(crate) const TAG_LEN: usize = 16;

/// The length of a session key: an HMAC-SHA256 output, as AES-256 takes.
pub(crate) const KEY_LEN: usize = 32;

/// Seals the frames one side sends, in order.
pub(crate) struct Sealer {
    key: Option<LessSafeKey>,
    direction: u8,
    sequence: u64,
}

/// Checks the frames one side receives, in order.
pub(crate) struct Opener {
    key: Option<LessSafeKey>,
    direction: u8,
    sequence: u64,
}

/// A frame whose tag does not match: altered, injected, replayed or out of order.
#[derive(Debug, thiserror::Error)]
#[error("a frame failed authentication (sequence {0})")]
pub(crate) struct Tampered(pub(crate) u64);

/// The sealer and opener of the side playing `role` in a session keyed with `key`.
pub(crate) fn pair(key: &[u8; KEY_LEN], role: Role) -> (Sealer, Opener) {
    // AES-256 takes any 32-byte key; a key it refused would seal nothing that opens.
    let key = || {
        UnboundKey::new(&AES_256_GCM, key)
            .ok()
            .map(LessSafeKey::new)
    };
    let (sends, receives) = match role {
        Role::Dialer => (0, 1),
        Role::Listener => (1, 0),
    };
    (
        Sealer {
            key: key(),
            direction: sends,
            sequence: 0,
        },
        Opener {
            key: key(),
            direction: receives,
            sequence: 0,
        },
    )
}

/// The nonce of frame `sequence` in `direction`: unique per frame of a session.
fn nonce(direction: u8, sequence: u64) -> Nonce {
    let mut nonce = [0; NONCE_LEN];
    nonce[0] = direction;
    nonce[NONCE_LEN - 8..].copy_from_slice(&sequence.to_be_bytes());
    Nonce::assume_unique_for_key(nonce)
}

impl Sealer {
    /// `payload` followed by its tag.
    #[cfg(test)]
    pub(crate) fn seal(&mut self, payload: &[u8]) -> bytes::Bytes {
        let mut out = BytesMut::with_capacity(payload.len() + TAG_LEN);
        self.seal_into(payload, &mut out);
        out.freeze()
    }

    /// Appends `payload` and its tag to `out`.
    pub(crate) fn seal_into(&mut self, payload: &[u8], out: &mut BytesMut) {
        out.put_slice(payload);
        out.put_slice(&self.next_tag(payload));
    }

    /// Appends to `out` the tag of the payload written at its end from `payload_start` on:
    /// the frame is sealed where it was encoded, without a copy.
    pub(crate) fn seal_in_place(&mut self, out: &mut Vec<u8>, payload_start: usize) {
        let tag = self.next_tag(&out[payload_start..]);
        out.extend_from_slice(&tag);
    }

    /// The tag of `payload` as the next frame, counting it sent.
    fn next_tag(&mut self, payload: &[u8]) -> [u8; TAG_LEN] {
        let mut tag = [0; TAG_LEN];
        // No key, no valid tag (zeros): the peer refuses the frame, as it should.
        let sealed = self.key.as_ref().and_then(|key| {
            key.seal_in_place_separate_tag(
                nonce(self.direction, self.sequence),
                Aad::from(payload),
                &mut [],
            )
            .ok()
        });
        if let Some(sealed) = sealed {
            tag.copy_from_slice(sealed.as_ref());
        }
        self.sequence += 1;
        tag
    }
}

impl Opener {
    /// The payload of a sealed frame, if its tag is right for the next sequence number.
    pub(crate) fn open<'a>(&mut self, frame: &'a [u8]) -> Result<&'a [u8], Tampered> {
        let sequence = self.sequence;
        let (Some(key), Some(split)) = (&self.key, frame.len().checked_sub(TAG_LEN)) else {
            return Err(Tampered(sequence));
        };
        let (payload, received) = frame.split_at(split);
        // The tag is checked in constant time; an empty plaintext decrypts to nothing.
        let mut tag = [0; TAG_LEN];
        tag.copy_from_slice(received);
        key.open_in_place(
            nonce(self.direction, sequence),
            Aad::from(payload),
            &mut tag,
        )
        .map_err(|_| Tampered(sequence))?;
        self.sequence += 1;
        Ok(payload)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn frames_open_once_in_order_and_only_unaltered() {
        let (mut dialer_out, _) = pair(&[1; KEY_LEN], Role::Dialer);
        let (_, mut listener_in) = pair(&[1; KEY_LEN], Role::Listener);
        let first = dialer_out.seal(b"first");
        let second = dialer_out.seal(b"second");
        assert!(listener_in.open(&second).is_err(), "out of order");
        assert_eq!(listener_in.open(&first).unwrap(), b"first");
        assert!(listener_in.open(&first).is_err(), "replayed");
        let mut altered = second.to_vec();
        altered[0] ^= 1;
        assert!(listener_in.open(&altered).is_err(), "altered");
        assert_eq!(listener_in.open(&second).unwrap(), b"second");
        let (mut other_key, _) = pair(&[2; KEY_LEN], Role::Dialer);
        let (_, mut fresh) = pair(&[1; KEY_LEN], Role::Listener);
        assert!(
            fresh.open(&other_key.seal(b"x")).is_err(),
            "another session's key"
        );
        let (mut listener_out, _) = pair(&[1; KEY_LEN], Role::Listener);
        let (_, mut fresh) = pair(&[1; KEY_LEN], Role::Listener);
        assert!(
            fresh.open(&listener_out.seal(b"x")).is_err(),
            "reflected back to its sender"
        );
        assert!(fresh.open(b"short").is_err());
    }
}
