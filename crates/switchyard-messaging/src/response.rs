//! The vocabulary of answers a service gives.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{NodeId, Payload};

/// What a service answered, or why no service could.
///
/// The shapes follow x3m's response vocabulary; each one is typed so callers match on it rather
/// than on strings. It is serializable, so it crosses nodes as it is, and its `Display` reads well
/// in logs.
///
/// # Examples
///
/// ```
/// use switchyard_messaging::Response;
///
/// assert_eq!(Response::Ok.to_string(), "ok");
/// assert_eq!(Response::forbidden("None shall pass!").to_string(), "forbidden: None shall pass!");
/// assert!(Response::error("boom").is_error());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Response {
    /// Done, nothing to return.
    Ok,
    /// Done, with a result.
    OkWith(Payload),
    /// Done on an aggregate, which is now at `version`.
    OkAt {
        /// The result, if any.
        payload: Option<Payload>,
        /// The aggregate's version after the command (-1 when it still has no events).
        version: i64,
    },
    /// A new entity (aggregate) was created.
    Created {
        /// Its id.
        id: String,
        /// Its version after creation, for aggregates.
        version: Option<i64>,
    },
    /// No node offers the service.
    ServiceUnavailable(String),
    /// No reply came before the deadline. The service may still have done its work.
    ServiceTimeout {
        /// The service called.
        service: String,
        /// The message that timed out.
        message_id: String,
        /// The timeout that elapsed.
        timeout: Duration,
    },
    /// The request did not pass validation; the payload says why.
    ValidationError(Payload),
    /// The service needs an entity (aggregate) id and found none; the text says where it looked
    /// and how to provide one.
    MissingId(String),
    /// The router's `authorize` refused the call, with its reason if it gave one.
    Forbidden(Option<String>),
    /// The service failed; the payload says why (text for errors raised with `?`).
    Error(Payload),
    /// The provider cannot take this call now (a quorum is not met, say); the dispatcher tries the
    /// next node offering the service.
    TryAnotherNode(String),
    /// Every provider declined: each node with the reason it gave, in the order they were tried.
    NoNodesAvailable(Vec<(NodeId, String)>),
    /// The entity (aggregate) the command addresses does not exist.
    NotFound {
        /// Its id.
        id: String,
    },
    /// The entity (aggregate) a creating command addresses exists already.
    AlreadyExists {
        /// Its id.
        id: String,
    },
    /// Another writer changed the entity first; retrying with fresh state may succeed.
    Conflict {
        /// The version the command expected.
        expected: i64,
        /// The version found (`None` when the entity no longer exists).
        actual: Option<i64>,
    },
}

impl Response {
    /// `Forbidden` with a reason.
    pub fn forbidden(reason: impl Into<String>) -> Self {
        Self::Forbidden(Some(reason.into()))
    }

    /// `Error` with a text reason.
    pub fn error(reason: impl Into<String>) -> Self {
        Self::Error(Payload::text(reason))
    }

    /// Whether the call succeeded (`Ok`, `OkWith`, `OkAt` or `Created`).
    pub fn is_success(&self) -> bool {
        matches!(
            self,
            Self::Ok | Self::OkWith(_) | Self::OkAt { .. } | Self::Created { .. }
        )
    }

    /// Whether the call failed, whatever the reason.
    pub fn is_error(&self) -> bool {
        !self.is_success()
    }

    /// The id of the entity a [`Created`](Self::Created) response created; `None` for any other
    /// response.
    pub fn created_id(&self) -> Option<&str> {
        match self {
            Self::Created { id, .. } => Some(id),
            _ => None,
        }
    }

    /// The aggregate's version a success reports: that of [`OkAt`](Self::OkAt), or of
    /// [`Created`](Self::Created) when it carries one; `None` for any other response.
    pub fn version(&self) -> Option<i64> {
        match self {
            Self::OkAt { version, .. } => Some(*version),
            Self::Created { version, .. } => *version,
            _ => None,
        }
    }

    /// The result payload of a success, if it carries one.
    pub fn payload(&self) -> Option<&Payload> {
        match self {
            Self::OkWith(payload)
            | Self::OkAt {
                payload: Some(payload),
                ..
            } => Some(payload),
            _ => None,
        }
    }
}

impl fmt::Display for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ok => f.write_str("ok"),
            Self::OkWith(payload) => write!(f, "ok: {payload}"),
            Self::OkAt {
                payload: None,
                version,
            } => write!(f, "ok at version {version}"),
            Self::OkAt {
                payload: Some(payload),
                version,
            } => write!(f, "ok at version {version}: {payload}"),
            Self::Created { id, version: None } => write!(f, "created {id}"),
            Self::Created {
                id,
                version: Some(version),
            } => write!(f, "created {id} at version {version}"),
            Self::ServiceUnavailable(service) => write!(f, "service unavailable: {service}"),
            Self::ServiceTimeout {
                service,
                message_id,
                timeout,
            } => write!(
                f,
                "service timeout: {service} did not answer message {message_id} within {timeout:?}"
            ),
            Self::ValidationError(payload) => write!(f, "validation error: {payload}"),
            Self::MissingId(reason) => write!(f, "missing id: {reason}"),
            Self::Forbidden(None) => f.write_str("forbidden"),
            Self::Forbidden(Some(reason)) => write!(f, "forbidden: {reason}"),
            Self::Error(payload) => write!(f, "error: {payload}"),
            Self::TryAnotherNode(reason) => write!(f, "try another node: {reason}"),
            Self::NotFound { id } => write!(f, "not found: {id}"),
            Self::AlreadyExists { id } => write!(f, "already exists: {id}"),
            Self::Conflict {
                expected,
                actual: Some(actual),
            } => write!(f, "conflict: expected version {expected}, found {actual}"),
            Self::Conflict {
                expected,
                actual: None,
            } => write!(f, "conflict: expected version {expected}, found no stream"),
            Self::NoNodesAvailable(nodes) => {
                f.write_str("no nodes available")?;
                for (index, (node, reason)) in nodes.iter().enumerate() {
                    let separator = if index == 0 { ": " } else { "; " };
                    write!(f, "{separator}{node} ({reason})")?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_reads_well_in_logs() {
        let cases = [
            (
                Response::OkAt {
                    payload: None,
                    version: 3,
                },
                "ok at version 3",
            ),
            (
                Response::Created {
                    id: "acc-1".into(),
                    version: Some(0),
                },
                "created acc-1 at version 0",
            ),
            (
                Response::ServiceTimeout {
                    service: "greet".into(),
                    message_id: "m1".into(),
                    timeout: Duration::from_millis(50),
                },
                "service timeout: greet did not answer message m1 within 50ms",
            ),
            (
                Response::NoNodesAvailable(vec![
                    (NodeId::new("a", 1), "no quorum".into()),
                    (NodeId::new("b", 2), "draining".into()),
                ]),
                "no nodes available: a#1 (no quorum); b#2 (draining)",
            ),
            (Response::error("boom"), "error: boom"),
        ];
        for (response, expected) in cases {
            assert_eq!(response.to_string(), expected);
        }
    }
}
