//! A processed message's id as the window keeps it: a UUID in 16 bytes, any other id as text.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use hashbrown::Equivalent;

/// A message id the window remembers. A UUID written the canonical way (36 characters,
/// lowercase, hyphenated: what `Message` generates) is kept as its 128 bits, so remembering it
/// allocates nothing and comparing or hashing it reads no string; any other id is kept as
/// text. Only the canonical spelling becomes a `Uuid`, so two keys are equal exactly when
/// their ids are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum MessageKey {
    Uuid(u128),
    Text(Arc<str>),
}

/// A message id as it is looked up: the same key, borrowed.
#[derive(Clone, Copy)]
pub(super) enum KeyView<'a> {
    Uuid(u128),
    Text(&'a str),
}

impl<'a> KeyView<'a> {
    pub(super) fn of(id: &'a str) -> Self {
        match canonical_uuid(id) {
            Some(uuid) => Self::Uuid(uuid),
            None => Self::Text(id),
        }
    }

    pub(super) fn to_key(self) -> MessageKey {
        match self {
            Self::Uuid(uuid) => MessageKey::Uuid(uuid),
            Self::Text(text) => MessageKey::Text(Arc::from(text)),
        }
    }
}

impl MessageKey {
    pub(super) fn view(&self) -> KeyView<'_> {
        match self {
            Self::Uuid(uuid) => KeyView::Uuid(*uuid),
            Self::Text(text) => KeyView::Text(text),
        }
    }

    /// The id as text, spelled as it was given.
    pub(super) fn to_text(&self) -> Arc<str> {
        match self {
            Self::Uuid(uuid) => Arc::from(uuid::Uuid::from_u128(*uuid).hyphenated().to_string()),
            Self::Text(text) => text.clone(),
        }
    }
}

// The key and its view hash alike, so a view finds its key.
impl Hash for KeyView<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        match self {
            Self::Uuid(uuid) => {
                state.write_u8(0);
                state.write_u128(*uuid);
            }
            Self::Text(text) => {
                state.write_u8(1);
                text.hash(state);
            }
        }
    }
}

impl Hash for MessageKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.view().hash(state);
    }
}

impl Equivalent<MessageKey> for KeyView<'_> {
    fn equivalent(&self, key: &MessageKey) -> bool {
        match (self, key) {
            (Self::Uuid(a), MessageKey::Uuid(b)) => a == b,
            (Self::Text(a), MessageKey::Text(b)) => **a == **b,
            _ => false,
        }
    }
}

/// The UUID `id` spells in canonical form, if it does: 36 characters, lowercase hex digits
/// and hyphens. Any other spelling of a UUID (uppercase, braced, without hyphens) stays text,
/// so that it is not taken for the canonical id of the same UUID.
fn canonical_uuid(id: &str) -> Option<u128> {
    if id.len() != 36
        || !id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b) || b == b'-')
    {
        return None;
    }
    // Of 36 characters, only the hyphenated form parses: hyphens at their four places.
    uuid::Uuid::try_parse(id).ok().map(|uuid| uuid.as_u128())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_canonical_spelling_of_a_uuid_is_kept_as_one() {
        let canonical = "0190a5b2-7c3d-7e4f-8a9b-0c1d2e3f4a5b";
        assert!(matches!(KeyView::of(canonical), KeyView::Uuid(_)));
        for other in [
            "0190A5B2-7C3D-7E4F-8A9B-0C1D2E3F4A5B",
            "0190a5b27c3d7e4f8a9b0c1d2e3f4a5b",
            "{0190a5b2-7c3d-7e4f-8a9b-0c1d2e3f4a5b}",
            "0190a5b2-7c3d-7e4f-8a9b-0c1d2e3f4a5-b",
            "order-1",
        ] {
            assert!(matches!(KeyView::of(other), KeyView::Text(_)), "{other}");
        }
    }

    #[test]
    fn a_key_spells_its_id_as_it_was_given() {
        for id in ["0190a5b2-7c3d-7e4f-8a9b-0c1d2e3f4a5b", "order-1"] {
            assert_eq!(&*KeyView::of(id).to_key().to_text(), id);
        }
    }
}
