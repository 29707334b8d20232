//! Decoding of shared strings (`Arc<str>`) straight from the bytes being decoded.
//!
//! serde's own `Arc<str>` goes through a `String` and a `Box<str>`: two allocations and a copy
//! per field, four fields per message. Read through a borrowed `&str` (what [`codec::decode`]
//! hands out), it is one allocation, the `Arc`'s own.
//!
//! [`codec::decode`]: crate::codec::decode

use std::fmt;
use std::sync::Arc;

use serde::Deserializer;
use serde::de::{Error, Visitor};

/// Deserializes an `Arc<str>` with one allocation; for `#[serde(deserialize_with)]`.
pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Arc<str>, D::Error> {
    deserializer.deserialize_str(SharedStr)
}

struct SharedStr;

impl Visitor<'_> for SharedStr {
    type Value = Arc<str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: Error>(self, text: &str) -> Result<Arc<str>, E> {
        Ok(Arc::from(text))
    }

    fn visit_bytes<E: Error>(self, bytes: &[u8]) -> Result<Arc<str>, E> {
        std::str::from_utf8(bytes)
            .map(Arc::from)
            .map_err(|_| E::invalid_value(serde::de::Unexpected::Bytes(bytes), &self))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde::{Deserialize, Serialize};

    use crate::codec;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Named {
        #[serde(deserialize_with = "super::deserialize")]
        name: Arc<str>,
    }

    #[test]
    fn a_shared_string_decodes_as_serde_encoded_it() {
        let named = Named {
            name: Arc::from("deposit ✓"),
        };
        let bytes = codec::encode(&named).unwrap();
        assert_eq!(codec::decode::<Named>(&bytes).unwrap(), named);
    }

    #[test]
    fn a_shared_string_from_json_decodes_too() {
        let named: Named = serde_json::from_str(r#"{"name":"a\"b"}"#).unwrap();
        assert_eq!(&*named.name, "a\"b");
    }

    #[test]
    fn bytes_that_are_not_utf8_are_refused() {
        // The length, then an invalid UTF-8 byte.
        let bytes = [codec::FORMAT_VERSION, 1, 0xff];
        assert!(codec::decode::<Named>(&bytes).is_err());
    }
}
