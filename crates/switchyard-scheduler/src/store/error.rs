//! Errors of alarm stores.

/// An alarm store could not do what was asked; nothing was written, except for
/// [`Unknown`](AlarmStoreError::Unknown), where the store cannot tell.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AlarmStoreError {
    /// The backend failed (connection lost, disk full, ...). Retrying later may succeed.
    #[error("alarm store backend failed")]
    Backend {
        /// The driver's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The write was sent but its answer was lost (a commit whose outcome the store cannot
    /// tell, a connection that broke after the request left): it may or may not have taken
    /// effect. The scheduler treats it as it treats a store timeout; a caller of
    /// [`Scheduler::schedule`](crate::Scheduler::schedule) should look before scheduling again
    /// under a new id (the same id replaces the alarm, so scheduling it again is safe).
    #[error("alarm store write of unknown outcome")]
    Unknown {
        /// The driver's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A stored alarm could not be read back: it is corrupted or of an unknown format.
    #[error("stored alarm `{id}` is unreadable: {reason}")]
    Corrupt {
        /// The alarm's id.
        id: String,
        /// What was wrong.
        reason: String,
    },
}

impl AlarmStoreError {
    /// A backend failure from any error.
    pub fn backend(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Backend {
            source: source.into(),
        }
    }

    /// A write of unknown outcome, from the driver's error.
    pub fn unknown(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Unknown {
            source: source.into(),
        }
    }
}
