//! Errors of query services.

use std::time::Duration;

use switchyard_messaging::{ErrorChain, IntoResponse, PayloadError, Response};

use crate::WaitError;

/// A query service could not answer from its read model. Return it from a query handler
/// (`?` converts a [`PayloadError`] into it too): it answers the caller with the response
/// each variant names.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError {
    /// The query's request, or its [`ReadAt`](crate::ReadAt), cannot be read: answers
    /// [`Response::ValidationError`].
    #[error("the query cannot be read")]
    Unreadable(#[from] PayloadError),
    /// The read model did not reach the position the query asked for within its wait.
    /// Answers [`Response::ServiceTimeout`] (the read model is behind: ask again, or answer
    /// from the write side) when the wait timed out, and [`Response::TryAnotherNode`] when the
    /// read model's runner stopped (another node's read model may answer).
    #[error("the read model did not reach the position service `{service}` was asked to read at")]
    NotCaughtUp {
        /// The query service.
        service: String,
        /// The query message's id.
        message_id: String,
        /// How long the query waited.
        within: Duration,
        /// How far the read model got.
        #[source]
        source: WaitError,
    },
}

impl IntoResponse for QueryError {
    fn into_response(self) -> Response {
        match self {
            Self::Unreadable(error) => error.into_response(),
            Self::NotCaughtUp {
                service,
                message_id,
                within,
                source: source @ WaitError::Timeout { .. },
            } => {
                tracing::debug!(service, message_id, error = %source, "query not caught up in time");
                Response::ServiceTimeout {
                    service,
                    message_id,
                    timeout: within,
                }
            }
            error @ Self::NotCaughtUp { .. } => {
                Response::TryAnotherNode(ErrorChain(&error).to_string())
            }
        }
    }
}
