//! Frames sealed under the session key: each carries a truncated HMAC-SHA256 over its
//! direction, its sequence number and its bytes, so a frame that was injected, replayed,
//! reordered or altered on the way is caught and closes the connection.

use bytes::{BufMut, BytesMut};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

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

/// Bytes of MAC appended to every frame.
pub(crate) const TAG_LEN: usize = 16;

/// Seals the frames one side sends, in order.
pub(crate) struct Sealer {
    mac: Option<Hmac<Sha256>>,
    direction: u8,
    sequence: u64,
}

/// Checks the frames one side receives, in order.
pub(crate) struct Opener {
    mac: Option<Hmac<Sha256>>,
    direction: u8,
    sequence: u64,
}

/// A frame whose MAC does not match: altered, injected, replayed or out of order.
#[derive(Debug, thiserror::Error)]
#[error("a frame failed authentication (sequence {0})")]
pub(crate) struct Tampered(pub(crate) u64);

/// The sealer and opener of the side playing `role` in a session keyed with `key`.
pub(crate) fn pair(key: &[u8], role: Role) -> (Sealer, Opener) {
    // HMAC takes keys of any length; a key it refused would seal nothing that opens.
    let mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).ok();
    let (sends, receives) = match role {
        Role::Dialer => (0, 1),
        Role::Listener => (1, 0),
    };
    (
        Sealer {
            mac: mac.clone(),
            direction: sends,
            sequence: 0,
        },
        Opener {
            mac,
            direction: receives,
            sequence: 0,
        },
    )
}

fn tag(mac: &Hmac<Sha256>, direction: u8, sequence: u64, payload: &[u8]) -> Hmac<Sha256> {
    let mut mac = mac.clone();
    mac.update(&[direction]);
    mac.update(&sequence.to_be_bytes());
    mac.update(payload);
    mac
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
        let mut truncated = [0; TAG_LEN];
        // No key, no valid tag (zeros): the peer refuses the frame, as it should.
        if let Some(mac) = &self.mac {
            let full = tag(mac, self.direction, self.sequence, payload)
                .finalize()
                .into_bytes();
            truncated.copy_from_slice(&full[..TAG_LEN]);
        }
        self.sequence += 1;
        truncated
    }
}

impl Opener {
    /// The payload of a sealed frame, if its tag is right for the next sequence number.
    pub(crate) fn open<'a>(&mut self, frame: &'a [u8]) -> Result<&'a [u8], Tampered> {
        let sequence = self.sequence;
        let (Some(mac), Some(split)) = (&self.mac, frame.len().checked_sub(TAG_LEN)) else {
            return Err(Tampered(sequence));
        };
        let (payload, received) = frame.split_at(split);
        tag(mac, self.direction, sequence, payload)
            .verify_truncated_left(received)
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
        let (mut dialer_out, _) = pair(b"key", Role::Dialer);
        let (_, mut listener_in) = pair(b"key", Role::Listener);
        let first = dialer_out.seal(b"first");
        let second = dialer_out.seal(b"second");
        assert!(listener_in.open(&second).is_err(), "out of order");
        assert_eq!(listener_in.open(&first).unwrap(), b"first");
        assert!(listener_in.open(&first).is_err(), "replayed");
        let mut altered = second.to_vec();
        altered[0] ^= 1;
        assert!(listener_in.open(&altered).is_err(), "altered");
        assert_eq!(listener_in.open(&second).unwrap(), b"second");
        let (mut other_key, _) = pair(b"other", Role::Dialer);
        let (_, mut fresh) = pair(b"key", Role::Listener);
        assert!(
            fresh.open(&other_key.seal(b"x")).is_err(),
            "another session's key"
        );
        let (mut listener_out, _) = pair(b"key", Role::Listener);
        let (_, mut fresh) = pair(b"key", Role::Listener);
        assert!(
            fresh.open(&listener_out.seal(b"x")).is_err(),
            "reflected back to its sender"
        );
        assert!(fresh.open(b"short").is_err());
    }
}
