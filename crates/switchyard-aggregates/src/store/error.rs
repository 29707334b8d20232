//! Errors of stores.

/// A store could not do what was asked; nothing was written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The backend failed (connection lost, disk full, ...). Retrying later may succeed.
    #[error("event store backend failed")]
    Backend {
        /// The driver's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The store's disk (or quota) is full: nothing was written. Free space on the store's
    /// disk; the store goes on by itself once there is room, and retrying then succeeds.
    #[error("not stored: disk full; free space on the store's disk, then retry")]
    DiskFull {
        /// The driver's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Stored data could not be read back: it is corrupted or of an unknown format.
    #[error("stored data of stream `{stream}` is unreadable: {reason}")]
    Corrupt {
        /// The stream.
        stream: String,
        /// What was wrong.
        reason: String,
    },
}

impl StoreError {
    /// A backend failure from any error.
    pub fn backend(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Backend {
            source: source.into(),
        }
    }
}

/// An append (or delete, or state save) did not happen.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppendError {
    /// The stream was not at the expected version: another writer was first. Reload and decide
    /// again.
    #[error("version conflict on `{stream}`: expected {expected:?}, found {actual:?}")]
    Conflict {
        /// The stream.
        stream: String,
        /// The version the writer expected.
        expected: super::ExpectedVersion,
        /// The stream's version (`None`: no stream).
        actual: Option<i64>,
    },
    /// The append's message already recorded events in this stream: nothing was appended. A
    /// message records events in a stream at most once, so a redelivered command is refused
    /// by the store itself, at the cost of one index probe inside the append. Answer it as
    /// the first delivery was answered (the events up to `version` are that answer's).
    #[error(
        "message `{message_id}` already recorded events in `{stream}` (up to version {version}); \
         nothing was appended: answer it as the first delivery was answered"
    )]
    Duplicate {
        /// The stream.
        stream: String,
        /// The message's id.
        message_id: String,
        /// The version of the last event the message recorded, as
        /// [`EventReader::find_message`](super::EventReader::find_message) returns it.
        version: i64,
    },
    /// The store failed; the append did not happen (stores report an unknown outcome as
    /// [`AppendError::Unknown`]; a full disk is the definite [`StoreError::DiskFull`]).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The store cannot tell whether the append happened (the connection broke during commit).
    /// Check by message id before retrying.
    #[error("outcome of the append to `{stream}` is unknown")]
    Unknown {
        /// The stream.
        stream: String,
        /// The driver's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}
