//! The one place where Switchyard turns values into bytes and back.
//!
//! Every encoded value starts with a format version byte, followed by the value encoded with
//! bincode's standard configuration through serde. Keeping every use of bincode behind this module
//! means a later switch of format (bincode's maintainers have stopped) is a new version byte, not a
//! migration of stored data.
//!
//! bincode is not self-describing: values that need `deserialize_any` (such as
//! `serde_json::Value`) cannot be decoded from it. Carry such data as a JSON
//! [`Payload`](crate::Payload) instead.
//!
//! # Examples
//!
//! ```
//! use switchyard_messaging::codec;
//!
//! let bytes = codec::encode(&("greet", 42_u32))?;
//! assert_eq!(bytes[0], codec::FORMAT_VERSION);
//! let back: (String, u32) = codec::decode(&bytes)?;
//! assert_eq!(back, ("greet".to_owned(), 42));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The format version written as the first byte of every encoded value.
///
/// Version 1 is bincode 2.0 in its standard configuration (little endian, variable-length
/// integers) through serde.
pub const FORMAT_VERSION: u8 = 1;

/// The largest number of bytes a decode may claim for the collections inside one value.
///
/// bincode trusts length prefixes; without a limit a garbage prefix would make the decoder try to
/// allocate gigabytes before noticing the input is short. 64 MiB is far above any sensible message
/// and far below this machine's memory.
pub const MAX_DECODE_CLAIM: usize = 64 * 1024 * 1024;

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_DECODE_CLAIM>()
}

/// Encodes `value` behind the format version byte.
///
/// # Errors
///
/// Fails when the value's `Serialize` implementation fails, or when it serializes a sequence or
/// map without a known length, which bincode cannot encode.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(64);
    encode_into(value, &mut out)?;
    Ok(out)
}

/// [`encode`] into [`Bytes`] of exactly the encoding's length: one allocation per value,
/// where a `Vec` turned into `Bytes` makes two (`Bytes` made from a `Vec` with room to spare
/// allocates a header of its own). The value is encoded into a buffer kept per thread, then
/// copied out.
///
/// # Errors
///
/// As [`encode`].
pub fn encode_to_bytes<T: Serialize + ?Sized>(value: &T) -> Result<Bytes, EncodeError> {
    /// A buffer that grew past this is dropped after use rather than kept for the thread.
    const KEPT: usize = 64 * 1024;
    thread_local! {
        static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    SCRATCH.with(|scratch| {
        // A `Serialize` implementation that encodes a value itself finds the buffer borrowed:
        // a buffer of its own does the same.
        let Ok(mut scratch) = scratch.try_borrow_mut() else {
            return encode(value).map(|encoded| Bytes::copy_from_slice(&encoded));
        };
        scratch.clear();
        encode_into(value, &mut scratch)?;
        let encoded = Bytes::copy_from_slice(&scratch);
        if scratch.capacity() > KEPT {
            *scratch = Vec::new();
        }
        Ok(encoded)
    })
}

/// Appends the encoding of `value`, version byte first, to `out`.
///
/// On error `out` is left as it was.
///
/// # Errors
///
/// As [`encode`].
pub fn encode_into<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let start = out.len();
    out.push(FORMAT_VERSION);
    match bincode::serde::encode_into_std_write(value, out, config()) {
        Ok(_) => Ok(()),
        Err(source) => {
            out.truncate(start);
            Err(EncodeError { source })
        }
    }
}

/// Decodes a value written by [`encode`], checking the version byte and that every byte is used.
///
/// # Errors
///
/// A [`DecodeError`] for an empty buffer, an unknown version, bytes that do not form a `T`, or
/// bytes left over after the value. Never panics, whatever the input.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    let (value, rest) = decode_head(bytes)?;
    all_used(value, rest)
}

/// Decodes the value at the front of bytes written by [`encode`] (version byte first) and
/// comes back with it and the bytes after it: the head of a value read in two steps, whose
/// last fields (the tail) are decoded later, where they are used, with [`decode_tail`].
///
/// A type made of the first fields of a struct (or of the first fields of each variant of an
/// enum, with the variants in the same order) reads the head of a value of that struct or
/// enum: bincode writes fields in order, with nothing between them.
///
/// # Errors
///
/// As [`decode`], except that bytes after the head are not an error.
pub fn decode_head<'a, T: serde::Deserialize<'a>>(
    bytes: &'a [u8],
) -> Result<(T, &'a [u8]), DecodeError> {
    let (&version, body) = bytes.split_first().ok_or(DecodeError::Empty)?;
    if version != FORMAT_VERSION {
        return Err(DecodeError::UnsupportedVersion { found: version });
    }
    borrow_decode(body, bytes.len())
}

/// Decodes the tail of a value whose head [`decode_head`] read: `bytes` are what it left,
/// and every one of them must be used.
///
/// # Errors
///
/// A [`DecodeError`] for bytes that do not form a `T`, or bytes left over after it. Never
/// panics, whatever the input.
pub fn decode_tail<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    let (value, rest) = borrow_decode(bytes, bytes.len())?;
    all_used(value, rest)
}

/// Decodes a value from the front of `body` (no version byte): it and the bytes after it.
/// `given` is the size of what the caller was handed, which a [`DecodeError::TooLarge`] names.
fn borrow_decode<'a, T: serde::Deserialize<'a>>(
    body: &'a [u8],
    given: usize,
) -> Result<(T, &'a [u8]), DecodeError> {
    // Borrowing: strings and bytes are read as slices of `body` and copied once into the
    // value (bincode's owning decoder builds a `String` or `Vec` for each first).
    let (value, used) = bincode::serde::borrow_decode_from_slice(body, config()).map_err(
        |source| match source {
            bincode::error::DecodeError::LimitExceeded => DecodeError::TooLarge {
                bytes: given,
                limit: MAX_DECODE_CLAIM,
            },
            source => DecodeError::Malformed { source },
        },
    )?;
    Ok((value, body.get(used..).unwrap_or_default()))
}

/// `value`, when nothing is left after it.
fn all_used<T>(value: T, rest: &[u8]) -> Result<T, DecodeError> {
    if rest.is_empty() {
        Ok(value)
    } else {
        Err(DecodeError::TrailingBytes { count: rest.len() })
    }
}

/// A value could not be encoded.
#[derive(Debug, thiserror::Error)]
#[error("could not encode value")]
pub struct EncodeError {
    #[source]
    source: bincode::error::EncodeError,
}

/// Bytes could not be decoded into the requested type.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The buffer was empty: not even a version byte. Usually a truncated frame or row.
    #[error("nothing to decode: the buffer is empty")]
    Empty,
    /// The first byte names a format this build does not know. The data was written by a newer
    /// (or foreign) writer; upgrade this node or re-encode the data.
    #[error(
        "unsupported format version {found} (this build reads version {})",
        FORMAT_VERSION
    )]
    UnsupportedVersion {
        /// The version byte found.
        found: u8,
    },
    /// The bytes after the version byte do not form a value of the requested type: truncated,
    /// corrupted, or written for another type.
    #[error("malformed data")]
    Malformed {
        /// What bincode reported.
        #[source]
        source: bincode::error::DecodeError,
    },
    /// The value claims more memory than [`MAX_DECODE_CLAIM`] (a collection of more than
    /// 64 MiB, or a length prefix claiming so): refused before allocating. Send large data in
    /// pieces, or by reference (a file or object-store key) instead of in the message.
    #[error(
        "too large: the value claims more than the limit of {} MiB ({bytes} bytes given); \
         send large data in pieces or by reference",
        limit / (1024 * 1024)
    )]
    TooLarge {
        /// The size of the encoded value given to decode.
        bytes: usize,
        /// The limit, [`MAX_DECODE_CLAIM`].
        limit: usize,
    },
    /// A value was decoded but bytes remained: the data was written for another type.
    #[error("{count} bytes left over after the value")]
    TrailingBytes {
        /// How many bytes were not used.
        count: usize,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sequence of unknown length, which bincode cannot encode.
    struct Unsized;

    impl Serialize for Unsized {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            use serde::ser::SerializeSeq;
            let mut seq = s.serialize_seq(None)?;
            seq.serialize_element(&1_u8)?;
            seq.end()
        }
    }

    #[test]
    fn it_puts_the_version_byte_first() {
        let bytes = encode(&7_u8).unwrap();
        assert_eq!(bytes, vec![FORMAT_VERSION, 7]);
    }

    #[test]
    fn it_rejects_an_empty_buffer() {
        assert!(matches!(decode::<u8>(&[]), Err(DecodeError::Empty)));
    }

    #[test]
    fn it_rejects_an_unknown_version() {
        assert!(matches!(
            decode::<u8>(&[9, 1]),
            Err(DecodeError::UnsupportedVersion { found: 9 })
        ));
    }

    #[test]
    fn it_rejects_trailing_bytes() {
        assert!(matches!(
            decode::<u8>(&[FORMAT_VERSION, 1, 2]),
            Err(DecodeError::TrailingBytes { count: 1 })
        ));
    }

    #[test]
    fn it_refuses_a_length_prefix_claiming_more_than_the_limit() {
        // A Vec<u8> whose varint length prefix claims u64::MAX bytes.
        let mut bytes = vec![FORMAT_VERSION, 253];
        bytes.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(
            decode::<Vec<u8>>(&bytes),
            Err(DecodeError::Malformed { .. })
        ));
    }

    #[test]
    fn a_value_over_the_limit_is_too_large_naming_its_size_and_the_limit() {
        let big = vec![7_u8; MAX_DECODE_CLAIM + 1];
        let bytes = encode(&big).unwrap();
        let error = decode::<Vec<u8>>(&bytes).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "too large: the value claims more than the limit of 64 MiB ({} bytes given); \
                 send large data in pieces or by reference",
                bytes.len()
            )
        );
    }

    #[test]
    fn a_value_reads_in_two_steps_as_its_head_then_its_tail() {
        #[derive(Serialize)]
        struct Whole {
            route: u64,
            name: String,
            body: Vec<u8>,
        }
        #[derive(serde::Deserialize, Debug, PartialEq)]
        struct Head {
            route: u64,
            name: String,
        }
        let whole = Whole {
            route: 300,
            name: "svc".into(),
            body: vec![1, 2, 3],
        };
        let bytes = encode(&whole).unwrap();
        let (head, tail) = decode_head::<Head>(&bytes).unwrap();
        assert_eq!(
            head,
            Head {
                route: 300,
                name: "svc".into()
            }
        );
        assert_eq!(tail.len(), 4, "the body's length prefix and its bytes");
        assert_eq!(decode_tail::<Vec<u8>>(tail).unwrap(), vec![1, 2, 3]);
        assert!(matches!(
            decode_tail::<u8>(tail),
            Err(DecodeError::TrailingBytes { count: 3 })
        ));
        assert!(matches!(
            decode_head::<Head>(&[9, 1]),
            Err(DecodeError::UnsupportedVersion { found: 9 })
        ));
        assert!(matches!(
            decode_head::<Head>(&bytes[..2]),
            Err(DecodeError::Malformed { .. })
        ));
        assert!(matches!(
            decode_tail::<Vec<u8>>(&tail[..2]),
            Err(DecodeError::Malformed { .. })
        ));
    }

    #[test]
    fn it_leaves_the_buffer_untouched_when_encoding_fails() {
        let mut out = vec![1, 2, 3];
        assert!(encode_into(&Unsized, &mut out).is_err());
        assert_eq!(out, vec![1, 2, 3]);
    }

    #[test]
    fn bytes_hold_the_same_encoding_at_its_exact_length() {
        let value = ("greet", 42_u32, vec![1_u8; 300]);
        let bytes = encode_to_bytes(&value).unwrap();
        assert_eq!(&bytes[..], &encode(&value).unwrap()[..]);
        let again = encode_to_bytes(&7_u8).unwrap();
        assert_eq!(
            &again[..],
            &[FORMAT_VERSION, 7],
            "nothing of the longer value is left"
        );
    }

    #[test]
    fn a_value_that_encodes_a_value_while_it_is_encoded_gets_both_right() {
        struct Nested;
        impl Serialize for Nested {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let inner = encode_to_bytes(&5_u8).map_err(serde::ser::Error::custom)?;
                s.serialize_bytes(&inner)
            }
        }
        let bytes = encode_to_bytes(&Nested).unwrap();
        let inner: Vec<u8> = decode(&bytes).unwrap();
        assert_eq!(inner, vec![FORMAT_VERSION, 5]);
    }

    #[test]
    fn a_value_that_fails_to_encode_is_an_error_and_leaves_the_next_encoding_whole() {
        assert!(encode_to_bytes(&Unsized).is_err());
        assert_eq!(&encode_to_bytes(&9_u8).unwrap()[..], &[FORMAT_VERSION, 9]);
    }
}
