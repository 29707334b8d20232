//! Errors of alarm stores.

/// An alarm store could not do what was asked; nothing was written (or, for a failed commit,
/// the store cannot tell).
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
}
