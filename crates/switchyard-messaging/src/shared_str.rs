//! Decoding of shared strings (`Arc<str>`) straight from the bytes being decoded.
//!
//! serde's own `Arc<str>` goes through a `String` and a `Box<str>`: two allocations and a copy
//! per field, four fields per message. Read through a borrowed `&str` (what [`codec::decode`]
//! hands out), it is one allocation, the `Arc`'s own.
//!
//! Names that come again and again (service names, node names: a connection carries the same
//! few in every frame) are read through [`deserialize_recurring`], which hands out the `Arc` it
//! made for the same name last time on this thread: no allocation at all. A message's ids are
//! read through [`deserialize_id`] and [`deserialize_related_id`]: a correlation or causation
//! id equal to the id before it (a defaulted one) shares its `Arc`.
//!
//! [`codec::decode`]: crate::codec::decode

use std::cell::RefCell;
use std::fmt;
use std::sync::Arc;

use serde::Deserializer;
use serde::de::{Error, Unexpected, Visitor};

/// Deserializes an `Arc<str>` that is likely to have been decoded on this thread a moment ago
/// (a service or node name): the `Arc` made then is shared, else one is made (one
/// allocation) and remembered; for `#[serde(deserialize_with)]`.
pub(crate) fn deserialize_recurring<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Arc<str>, D::Error> {
    deserializer.deserialize_str(SharedStr(recurring))
}

/// Deserializes a message's id into a new `Arc<str>` (one allocation) and remembers it
/// on this thread for the ids decoded next ([`deserialize_related_id`]); for
/// `#[serde(deserialize_with)]`.
pub(crate) fn deserialize_id<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Arc<str>, D::Error> {
    deserializer.deserialize_str(SharedStr(|text| remember_id(Arc::from(text))))
}

/// Deserializes an id decoded right after another (a correlation id after the id, a
/// causation id after the correlation id): equal to it, which is what a defaulted id is, it
/// shares that id's `Arc`, no allocation, and keeps the sharing that says it was defaulted
/// (see `Message::with_id`); else a new one. Either way it is remembered for the next; for
/// `#[serde(deserialize_with)]`.
pub(crate) fn deserialize_related_id<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Arc<str>, D::Error> {
    deserializer.deserialize_str(SharedStr(|text| {
        let previous = PREVIOUS_ID.with_borrow(|previous| {
            previous
                .as_ref()
                .filter(|previous| ***previous == *text)
                .cloned()
        });
        previous.unwrap_or_else(|| remember_id(Arc::from(text)))
    }))
}

thread_local! {
    /// The id this thread decoded last: the one the next related id may equal.
    static PREVIOUS_ID: RefCell<Option<Arc<str>>> = const { RefCell::new(None) };
}

fn remember_id(id: Arc<str>) -> Arc<str> {
    PREVIOUS_ID.with_borrow_mut(|previous| *previous = Some(id.clone()));
    id
}

/// How many names a thread remembers: a connection's frames carry a handful (the service, the
/// caller's and the server's node names).
const REMEMBERED: usize = 8;

/// Names longer than this are not remembered: comparing them would cost more than it saves,
/// and names are short.
const LONGEST_REMEMBERED: usize = 64;

thread_local! {
    /// The names decoded last on this thread, and the slot the next new one takes.
    static RECENT: RefCell<([Option<Arc<str>>; REMEMBERED], usize)> =
        RefCell::new((Default::default(), 0));
}

/// The `Arc` holding `text`: one this thread made for the same text lately, else a new one
/// (remembered in place of the oldest).
fn recurring(text: &str) -> Arc<str> {
    if text.len() > LONGEST_REMEMBERED {
        return Arc::from(text);
    }
    RECENT.with_borrow_mut(|(names, next)| {
        if let Some(known) = names.iter().flatten().find(|name| ***name == *text) {
            return known.clone();
        }
        let made: Arc<str> = Arc::from(text);
        names[*next] = Some(made.clone());
        *next = (*next + 1) % REMEMBERED;
        made
    })
}

/// Reads a string into the `Arc<str>` its function makes of the text: a new one, or one this
/// thread may already hold ([`recurring`], a previous id).
struct SharedStr(fn(&str) -> Arc<str>);

impl Visitor<'_> for SharedStr {
    type Value = Arc<str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: Error>(self, text: &str) -> Result<Arc<str>, E> {
        Ok((self.0)(text))
    }

    fn visit_bytes<E: Error>(self, bytes: &[u8]) -> Result<Arc<str>, E> {
        match std::str::from_utf8(bytes) {
            Ok(text) => Ok((self.0)(text)),
            Err(_) => Err(E::invalid_value(Unexpected::Bytes(bytes), &self)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde::{Deserialize, Serialize};

    use crate::codec;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Named {
        #[serde(deserialize_with = "super::deserialize_id")]
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

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Recurring {
        #[serde(deserialize_with = "super::deserialize_recurring")]
        name: Arc<str>,
    }

    fn recurring(name: &str) -> Arc<str> {
        let bytes = codec::encode(&Recurring {
            name: Arc::from(name),
        })
        .unwrap();
        codec::decode::<Recurring>(&bytes).unwrap().name
    }

    #[test]
    fn a_recurring_name_decodes_into_the_arc_made_for_it_before() {
        let first = recurring("deposit");
        let other = recurring("withdraw");
        let again = recurring("deposit");
        assert_eq!(&*first, "deposit");
        assert_eq!(&*other, "withdraw");
        assert!(
            Arc::ptr_eq(&first, &again),
            "a second allocation for the same name"
        );
        assert!(!Arc::ptr_eq(&first, &other));
    }

    #[test]
    fn names_past_what_a_thread_remembers_still_decode_right() {
        let names: Vec<String> = (0..3 * super::REMEMBERED)
            .map(|i| format!("s{i}"))
            .collect();
        for name in names.iter().chain(&names) {
            assert_eq!(&*recurring(name), name.as_str());
        }
        let long = "x".repeat(super::LONGEST_REMEMBERED + 1);
        assert_eq!(&*recurring(&long), long.as_str());
    }

    #[test]
    fn a_recurring_name_that_is_not_utf8_is_refused() {
        let bytes = [codec::FORMAT_VERSION, 1, 0xff];
        assert!(codec::decode::<Recurring>(&bytes).is_err());
    }

    #[test]
    fn bytes_that_are_not_utf8_are_refused() {
        // The length, then an invalid UTF-8 byte.
        let bytes = [codec::FORMAT_VERSION, 1, 0xff];
        assert!(codec::decode::<Named>(&bytes).is_err());
    }
}
