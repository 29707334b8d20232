//! Encoded values carried by messages: requests, assigns, events and response bodies.

use std::fmt;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::codec::{self, DecodeError, EncodeError};

/// An encoded value plus the format it is encoded in.
///
/// Binary ([`Format::Bincode`], through [`codec`]) is the default and the fastest. JSON is for
/// interop with a CLI or an HTTP front end, and [`Format::Text`] carries plain UTF-8, such as the
/// message of an error. A payload is cheap to clone: its bytes are reference counted.
///
/// # Examples
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use switchyard_messaging::{Format, Payload};
///
/// #[derive(Serialize, Deserialize, PartialEq, Debug)]
/// struct Greet { name: String }
///
/// let binary = Payload::encode(&Greet { name: "Ada".into() })?;
/// assert_eq!(binary.format(), Format::Bincode);
/// assert_eq!(binary.decode::<Greet>()?, Greet { name: "Ada".into() });
///
/// let json = Payload::from_json(r#"{"name":"Ada"}"#)?;
/// assert_eq!(json.decode::<Greet>()?, Greet { name: "Ada".into() });
///
/// let text = Payload::text("insufficient funds");
/// assert_eq!(text.to_string(), "insufficient funds");
/// # Ok::<(), switchyard_messaging::PayloadError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Payload {
    format: Format,
    bytes: Bytes,
}

/// How the bytes of a [`Payload`] are encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Format {
    /// [`codec`]'s binary format: a version byte, then bincode.
    Bincode,
    /// UTF-8 JSON text.
    Json,
    /// Plain UTF-8 text.
    Text,
}

impl Payload {
    /// Encodes `value` in the binary format.
    ///
    /// # Errors
    ///
    /// [`PayloadError::Encode`] when the value cannot be encoded (see [`codec::encode`]).
    pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Self, PayloadError> {
        let bytes =
            codec::encode_to_bytes(value).map_err(|source| PayloadError::Encode { source })?;
        Ok(Self {
            format: Format::Bincode,
            bytes,
        })
    }

    /// Encodes `value` as JSON.
    ///
    /// # Errors
    ///
    /// [`PayloadError::Json`] when serde_json cannot serialize the value (a map with non-string
    /// keys, for instance).
    pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<Self, PayloadError> {
        let bytes = serde_json::to_vec(value).map_err(|source| PayloadError::Json { source })?;
        Ok(Self {
            format: Format::Json,
            bytes: bytes.into(),
        })
    }

    /// Takes JSON text as it arrived (from an HTTP body, say), after checking it is JSON.
    ///
    /// # Errors
    ///
    /// [`PayloadError::Json`] when the text is not well-formed JSON.
    pub fn from_json(text: impl Into<Bytes>) -> Result<Self, PayloadError> {
        let bytes = text.into();
        serde_json::from_slice::<serde::de::IgnoredAny>(&bytes)
            .map_err(|source| PayloadError::Json { source })?;
        Ok(Self {
            format: Format::Json,
            bytes,
        })
    }

    /// Plain text, such as a human-readable reason.
    pub fn text(text: impl Into<String>) -> Self {
        Self {
            format: Format::Text,
            bytes: Bytes::from(text.into()),
        }
    }

    /// Decodes the payload into `T`, whatever its format.
    ///
    /// A [`Format::Text`] payload decodes into any type that deserializes from a string
    /// (`String`, or an enum of unit variants).
    ///
    /// # Errors
    ///
    /// [`PayloadError::Decode`] or [`PayloadError::Json`] when the bytes are not a `T`;
    /// [`PayloadError::NotUtf8`] for text that is not UTF-8.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, PayloadError> {
        match self.format {
            Format::Bincode => codec::decode(&self.bytes).map_err(|source| PayloadError::Decode {
                type_name: std::any::type_name::<T>(),
                source,
            }),
            Format::Json => {
                serde_json::from_slice(&self.bytes).map_err(|source| PayloadError::Json { source })
            }
            Format::Text => {
                let text = self.as_text().ok_or(PayloadError::NotUtf8)?;
                let deserializer =
                    serde::de::value::StrDeserializer::<serde::de::value::Error>::new(text);
                T::deserialize(deserializer).map_err(|source| PayloadError::Text {
                    type_name: std::any::type_name::<T>(),
                    source,
                })
            }
        }
    }

    /// The format of the bytes.
    pub fn format(&self) -> Format {
        self.format
    }

    /// The encoded bytes (for the binary format, starting with the version byte).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The payload as text, when it is [`Format::Text`] or [`Format::Json`] and valid UTF-8.
    pub fn as_text(&self) -> Option<&str> {
        match self.format {
            Format::Text | Format::Json => std::str::from_utf8(&self.bytes).ok(),
            Format::Bincode => None,
        }
    }
}

impl From<&str> for Payload {
    fn from(text: &str) -> Self {
        Self::text(text)
    }
}

impl From<String> for Payload {
    fn from(text: String) -> Self {
        Self::text(text)
    }
}

impl fmt::Display for Payload {
    /// Text and JSON print as they are; binary prints its size, since it cannot be read without
    /// its type.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.as_text() {
            Some(text) => f.write_str(text),
            None => write!(f, "<{} bytes of binary>", self.bytes.len()),
        }
    }
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.as_text() {
            Some(text) => write!(f, "{:?}({text:?})", self.format),
            None => write!(f, "{:?}({} bytes)", self.format, self.bytes.len()),
        }
    }
}

/// A payload could not be built or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PayloadError {
    /// There was no payload to read: the message has no request, or no assign of that name.
    #[error("no payload: {what} is not set")]
    Missing {
        /// What was looked for.
        what: String,
    },
    /// The value could not be encoded in the binary format.
    #[error("could not encode the payload")]
    Encode {
        /// The codec's error.
        #[source]
        source: EncodeError,
    },
    /// The binary payload does not hold a value of the requested type; the sender and the
    /// receiver disagree about the type.
    #[error("payload is not a valid `{}`", short_type_name(.type_name))]
    Decode {
        /// The type asked for, with its module path (the message names it without, since it
        /// reaches remote callers, who need not see the service's module layout).
        type_name: &'static str,
        /// The codec's error.
        #[source]
        source: DecodeError,
    },
    /// JSON could not be written, parsed, or mapped onto the requested type.
    #[error("invalid JSON payload")]
    Json {
        /// serde_json's error.
        #[source]
        source: serde_json::Error,
    },
    /// A text payload could not be read as the requested type (text decodes into strings and
    /// unit enum variants only).
    #[error("text payload is not a valid `{}`", short_type_name(.type_name))]
    Text {
        /// The type asked for, with its module path (the message names it without).
        type_name: &'static str,
        /// serde's error.
        #[source]
        source: serde::de::value::Error,
    },
    /// A text payload held bytes that are not UTF-8.
    #[error("text payload is not UTF-8")]
    NotUtf8,
}

/// A type's name without module paths, `Option<Deposit>` for
/// `core::option::Option<my_app::api::Deposit>`: what an error that may reach a remote caller
/// names (the full path is in the error's `Debug`, for logs).
pub(crate) fn short_type_name(full: &str) -> String {
    let mut short = String::with_capacity(full.len());
    let mut path_start = 0;
    for (index, character) in full.char_indices() {
        if !(character.is_alphanumeric() || character == '_' || character == ':') {
            short.push_str(last_segment(&full[path_start..index]));
            short.push(character);
            path_start = index + character.len_utf8();
        }
    }
    short.push_str(last_segment(&full[path_start..]));
    short
}

fn last_segment(path: &str) -> &str {
    path.rsplit("::").next().unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_names_types_without_module_paths() {
        let cases = [
            ("u64", "u64"),
            ("my_app::api::Deposit", "Deposit"),
            (
                "core::option::Option<my_app::api::Deposit>",
                "Option<Deposit>",
            ),
            (
                "(alloc::vec::Vec<a::B>, [c::D; 2], &str)",
                "(Vec<B>, [D; 2], &str)",
            ),
        ];
        for (full, short) in cases {
            assert_eq!(short_type_name(full), short);
        }
    }

    #[test]
    fn its_message_names_the_type_without_its_module_path() {
        mod api {
            #[derive(Debug, serde::Deserialize)]
            pub(crate) struct Deposit {
                #[allow(dead_code)]
                pub(crate) amount: u64,
            }
        }
        let error = Payload::encode("text")
            .unwrap()
            .decode::<api::Deposit>()
            .unwrap_err();
        assert_eq!(error.to_string(), "payload is not a valid `Deposit`");
        assert!(format!("{error:?}").contains("::api::Deposit"), "{error:?}");
    }

    #[test]
    fn it_decodes_text_into_a_string() {
        let text = Payload::text("hello");
        assert_eq!(text.decode::<String>().unwrap(), "hello");
    }

    #[test]
    fn it_reports_the_type_it_could_not_decode() {
        let payload = Payload::encode(&1_u8).unwrap();
        let error = payload.decode::<String>().unwrap_err();
        assert!(error.to_string().contains("String"), "{error}");
    }

    #[test]
    fn it_refuses_json_that_is_not_json() {
        assert!(matches!(
            Payload::from_json("{nope"),
            Err(PayloadError::Json { .. })
        ));
    }

    #[test]
    fn it_displays_binary_by_size() {
        let payload = Payload::encode(&7_u8).unwrap();
        assert_eq!(payload.to_string(), "<2 bytes of binary>");
    }
}
