//! What a query asks to see: [`ReadAt`], carried in a standard assign of the query message.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use switchyard_messaging::{Message, PayloadError};

/// A query's consistency: see the read model once it has processed at least `position`,
/// waiting up to `within` for it. A query without one reads the read model as it is
/// (eventual consistency).
///
/// It travels in the query message's assign [`READ_AT_ASSIGN`], so it reaches a query service
/// on another node as it is. Set it with [`QueryMessage::with_read_at`] or
/// [`QueryMessage::with_read_after`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ReadAt {
    /// The global position the read model must have processed: a command reply's
    /// [`position`](Message::position).
    pub position: u64,
    /// How long the query service waits for it before answering
    /// [`Response::ServiceTimeout`](switchyard_messaging::Response::ServiceTimeout). Keep it
    /// below the query's dispatch timeout, or the caller's own deadline answers first (with the
    /// same response, and without the service's log line saying how far the read model got).
    pub within: Duration,
}

impl ReadAt {
    /// See at least `position`, waiting up to `within` for it.
    pub fn new(position: u64, within: Duration) -> Self {
        Self { position, within }
    }
}

/// The assign under which a query message carries its [`ReadAt`].
pub const READ_AT_ASSIGN: &str = "switchyard.read_at";

/// Asking for read-your-writes on a query message: the methods a query's caller and a query
/// service use, on [`Message`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use switchyard_messaging::Message;
/// use switchyard_projections::{QueryMessage, ReadAt};
///
/// // The reply of a command whose last event landed at position 42.
/// let deposited = Message::new("deposit").ok().with_position(42);
/// let query = Message::new("balance")
///     .with_request("1")
///     .with_read_after(&deposited, Duration::from_secs(1));
/// assert_eq!(query.read_at()?, Some(ReadAt::new(42, Duration::from_secs(1))));
/// assert_eq!(Message::new("balance").read_at()?, None);
/// # Ok::<_, switchyard_messaging::PayloadError>(())
/// ```
pub trait QueryMessage: Sized {
    /// This query, asking to see the read model once it has processed at least `position`,
    /// waiting up to `within` for it.
    #[must_use]
    fn with_read_at(self, position: u64, within: Duration) -> Self;

    /// This query, asking to see the effects of the command `reply` answers: to read at its
    /// [`position`](Message::position), waiting up to `within`. Unchanged (read at once) when
    /// the reply carries no position: the command appended nothing, or was a repeated message
    /// answered from its first run, whose events the read model may or may not have seen.
    #[must_use]
    fn with_read_after(self, reply: &Message, within: Duration) -> Self;

    /// What this query asks to see; `None` when it reads the read model as it is.
    ///
    /// # Errors
    ///
    /// [`PayloadError`] when the assign holds something else than a [`ReadAt`].
    fn read_at(&self) -> Result<Option<ReadAt>, PayloadError>;
}

impl QueryMessage for Message {
    fn with_read_at(self, position: u64, within: Duration) -> Self {
        self.assign(READ_AT_ASSIGN, &ReadAt::new(position, within))
    }

    fn with_read_after(self, reply: &Message, within: Duration) -> Self {
        match reply.position() {
            Some(position) => self.with_read_at(position, within),
            None => self,
        }
    }

    fn read_at(&self) -> Result<Option<ReadAt>, PayloadError> {
        self.assigned(READ_AT_ASSIGN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_at_survives_the_wire_codec() {
        let query = Message::new("balance").with_read_at(7, Duration::from_millis(250));
        let decoded = Message::from_bytes(&query.to_bytes().unwrap()).unwrap();
        assert_eq!(
            decoded.read_at().unwrap(),
            Some(ReadAt::new(7, Duration::from_millis(250)))
        );
    }

    #[test]
    fn a_reply_without_a_position_leaves_the_query_eventual() {
        let rejected = Message::new("withdraw").error("insufficient funds");
        let query = Message::new("balance").with_read_after(&rejected, Duration::from_secs(1));
        assert_eq!(query.read_at().unwrap(), None);
    }

    #[test]
    fn an_assign_that_is_no_read_at_is_an_error() {
        let query = Message::new("balance").assign(READ_AT_ASSIGN, "soon");
        assert!(query.read_at().is_err());
    }
}
