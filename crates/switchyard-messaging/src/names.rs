//! The rule every name a store keeps must follow: aggregate ids, stream names, event types and
//! message ids, whether of the message behind an append or of an alarm.
//!
//! Stores differ in what text they take. PostgreSQL refuses a NUL byte in any text column and an
//! index entry over about 2,700 bytes (a third of a page), so a stream name of 1 MB fails there,
//! while SQLite stores both. The aggregates' `Repo` and the scheduler's `Scheduler` check every
//! name against this one rule before it reaches a store, so every store accepts the same set and
//! a bad name is refused the same way, whatever the store. (`switchyard_aggregates::names`
//! re-exports this module.)
//!
//! The rule: UTF-8 (every `&str` is), no control characters ([`char::is_control`]: the C0 range
//! with NUL, tab and newline, DEL, and the C1 range), and a length in bytes:
//!
//! | name | length |
//! |---|---|
//! | aggregate id | 1 to [`MAX_ID_BYTES`] |
//! | event type | 1 to [`MAX_ID_BYTES`] |
//! | stream name (`"{Aggregate::NAME}-{id}"`) | 1 to [`MAX_STREAM_BYTES`] |
//! | message, correlation and causation id | 0 (none) to [`MAX_ID_BYTES`] |
//! | projection name, lease holder | 1 to [`MAX_ID_BYTES`] |
//!
//! Control characters are refused because PostgreSQL cannot store NUL at all, and the others
//! (newlines, escapes) make logs, error messages and command-line output ambiguous; no id
//! scheme needs them.
//!
//! # Examples
//!
//! ```
//! use switchyard_messaging::names::{self, NameError, NameKind};
//!
//! assert!(names::check(NameKind::AggregateId, "acc-42").is_ok());
//! let error = names::check(NameKind::AggregateId, "acc\0").unwrap_err();
//! assert!(matches!(error, NameError::ControlCharacter { at: 3, .. }));
//! assert_eq!(
//!     error.to_string(),
//!     "aggregate id contains the control character '\\0' at byte 3: an aggregate id is 1 to \
//!      256 bytes of UTF-8 without control characters"
//! );
//! ```

use std::fmt;

/// The longest aggregate id, event type or message id, in bytes.
///
/// 256 bytes hold any id scheme in use (a UUID is 36, a ULID 26, a composite key of a few of
/// them well under 200) and keep a PostgreSQL index entry of a stream and a message id far
/// below its limit of about 2,700 bytes.
pub const MAX_ID_BYTES: usize = 256;

/// The longest stream name, in bytes: room for an aggregate type's name, a dash and an id of
/// [`MAX_ID_BYTES`].
pub const MAX_STREAM_BYTES: usize = 2 * MAX_ID_BYTES;

/// Which name is checked: each has its own length and may or may not be empty.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NameKind {
    /// An aggregate's id: 1 to [`MAX_ID_BYTES`].
    AggregateId,
    /// A stream's name: 1 to [`MAX_STREAM_BYTES`].
    Stream,
    /// An event's type name: 1 to [`MAX_ID_BYTES`].
    EventType,
    /// The id of the message whose command appended: 0 to [`MAX_ID_BYTES`].
    MessageId,
    /// The conversation's id: 0 to [`MAX_ID_BYTES`].
    CorrelationId,
    /// The causing message's id: 0 to [`MAX_ID_BYTES`].
    CausationId,
    /// A projection's name, which keys its checkpoint and lease: 1 to [`MAX_ID_BYTES`].
    Projection,
    /// Who holds a projection's lease (a runner's id): 1 to [`MAX_ID_BYTES`].
    LeaseHolder,
}

impl NameKind {
    /// The most bytes a name of this kind may have.
    pub fn max_bytes(self) -> usize {
        match self {
            Self::Stream => MAX_STREAM_BYTES,
            _ => MAX_ID_BYTES,
        }
    }

    /// Whether a name of this kind may be empty (an empty message id names no message).
    pub fn may_be_empty(self) -> bool {
        matches!(
            self,
            Self::MessageId | Self::CorrelationId | Self::CausationId
        )
    }

    fn label(self) -> &'static str {
        match self {
            Self::AggregateId => "aggregate id",
            Self::Stream => "stream name",
            Self::EventType => "event type",
            Self::MessageId => "message id",
            Self::CorrelationId => "correlation id",
            Self::CausationId => "causation id",
            Self::Projection => "projection name",
            Self::LeaseHolder => "lease holder",
        }
    }

    /// The rule as a sentence, for error messages.
    fn rule(self) -> Rule {
        Rule(self)
    }
}

impl fmt::Display for NameKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// The rule of one kind of name, as an error message states it.
struct Rule(NameKind);

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = self.0;
        let article = match kind {
            NameKind::AggregateId | NameKind::EventType => "an",
            _ => "a",
        };
        let min = if kind.may_be_empty() { 0 } else { 1 };
        write!(
            f,
            "{article} {kind} is {min} to {} bytes of UTF-8 without control characters",
            kind.max_bytes()
        )
    }
}

/// A name breaks the rule of its kind (see the [module docs](self)). The message says which
/// name, what is wrong and the rule; the caller must choose another name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// The name is empty, and this kind of name may not be.
    #[error("{kind} is empty: {}", kind.rule())]
    Empty {
        /// Which name.
        kind: NameKind,
    },
    /// The name is longer than its kind allows.
    #[error("{kind} is {len} bytes long, over the limit of {}: {}", kind.max_bytes(), kind.rule())]
    TooLong {
        /// Which name.
        kind: NameKind,
        /// Its length in bytes.
        len: usize,
    },
    /// The name holds a control character.
    #[error("{kind} contains the control character {character:?} at byte {at}: {}", kind.rule())]
    ControlCharacter {
        /// Which name.
        kind: NameKind,
        /// The character.
        character: char,
        /// Its byte offset in the name.
        at: usize,
    },
}

/// Checks `name` against the rule of `kind`.
///
/// # Errors
///
/// [`NameError`] saying what is wrong and the rule.
pub fn check(kind: NameKind, name: &str) -> Result<(), NameError> {
    if name.is_empty() && !kind.may_be_empty() {
        return Err(NameError::Empty { kind });
    }
    if name.len() > kind.max_bytes() {
        return Err(NameError::TooLong {
            kind,
            len: name.len(),
        });
    }
    match name.char_indices().find(|(_, c)| c.is_control()) {
        Some((at, character)) => Err(NameError::ControlCharacter {
            kind,
            character,
            at,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_accepts_names_up_to_the_limit_in_any_script() {
        let id = "é".repeat(MAX_ID_BYTES / 2);
        assert_eq!(id.len(), MAX_ID_BYTES);
        assert_eq!(check(NameKind::AggregateId, &id), Ok(()));
        assert_eq!(
            check(NameKind::Stream, &"s".repeat(MAX_STREAM_BYTES)),
            Ok(())
        );
        assert_eq!(check(NameKind::MessageId, ""), Ok(()));
        assert_eq!(check(NameKind::EventType, "Deposited 💰"), Ok(()));
    }

    #[test]
    fn it_refuses_empty_long_and_control_names_saying_the_rule() {
        let cases = [
            (
                NameKind::AggregateId,
                String::new(),
                "aggregate id is empty: an aggregate id is 1 to 256 bytes of UTF-8 without \
                 control characters",
            ),
            (
                NameKind::EventType,
                "x".repeat(257),
                "event type is 257 bytes long, over the limit of 256: an event type is 1 to 256 \
                 bytes of UTF-8 without control characters",
            ),
            (
                NameKind::Stream,
                "a\nb".to_owned(),
                "stream name contains the control character '\\n' at byte 1: a stream name is 1 \
                 to 512 bytes of UTF-8 without control characters",
            ),
            (
                NameKind::MessageId,
                "m\u{7f}".to_owned(),
                "message id contains the control character '\\u{7f}' at byte 1: a message id is \
                 0 to 256 bytes of UTF-8 without control characters",
            ),
        ];
        for (kind, name, expected) in cases {
            let error = check(kind, &name).unwrap_err();
            assert_eq!(error.to_string(), expected);
        }
    }
}
