//! Reading a reply as the caller's own type, or learning which failure came back.

use serde::de::DeserializeOwned;

use crate::{Message, PayloadError, Response};

/// A reply did not carry the answer asked for: the service (or the dispatcher) answered
/// something other than a success, or the success's result is not the type asked for.
///
/// Each variant names the response that came back and carries it ([`response`](Self::response)),
/// so a caller can match on the kind and still read every detail. Returned by
/// [`Message::answer`] and [`Message::success`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplyError {
    /// The message has no response: it was not dispatched yet, or the service's handler returned
    /// it without answering. Dispatch it, or answer it with [`Message::ok`] and friends.
    #[error("the message has no response yet")]
    NoResponse,
    /// The router's `authorize` refused the call ([`Response::Forbidden`]).
    #[error("{0}")]
    Forbidden(Response),
    /// No node offers the service ([`Response::ServiceUnavailable`]): check its name and that
    /// its router is registered.
    #[error("{0}")]
    Unavailable(Response),
    /// No reply came before the deadline ([`Response::ServiceTimeout`]); the service may still
    /// have done its work.
    #[error("{0}")]
    Timeout(Response),
    /// The request did not pass validation ([`Response::ValidationError`]): the caller sent
    /// something the service cannot read.
    #[error("{0}")]
    Validation(Response),
    /// The request carries no aggregate id ([`Response::MissingId`]).
    #[error("{0}")]
    MissingId(Response),
    /// The addressed entity does not exist ([`Response::NotFound`]).
    #[error("{0}")]
    NotFound(Response),
    /// The entity a creating call addresses exists already ([`Response::AlreadyExists`]).
    #[error("{0}")]
    AlreadyExists(Response),
    /// Another writer changed the entity first ([`Response::Conflict`]); retrying may succeed.
    #[error("{0}")]
    Conflict(Response),
    /// Every provider declined the call ([`Response::NoNodesAvailable`], or a
    /// [`Response::TryAnotherNode`] that reached the caller).
    #[error("{0}")]
    NoNodes(Response),
    /// The service failed ([`Response::Error`]).
    #[error("{0}")]
    Error(Response),
    /// The call succeeded without a result, and the type asked for needs one (only `()` and
    /// `Option<_>` read from nothing). Use [`Message::success`] to check a result-less call.
    #[error(
        "the reply `{response}` carries no result to read as `{}`: read a result that may be \
         absent with `Message::answer_opt`, or check a result-less call with `Message::success`",
        crate::payload::short_type_name(.type_name)
    )]
    MissingPayload {
        /// The successful response.
        response: Response,
        /// The type asked for.
        type_name: &'static str,
    },
    /// The call succeeded, and its result is not the type asked for: the caller and the service
    /// disagree about the result's type.
    #[error("the reply's result cannot be read")]
    Undecodable {
        /// The successful response.
        response: Response,
        /// Why its payload is not the type asked for.
        #[source]
        source: PayloadError,
    },
}

impl ReplyError {
    /// The error for a response that is not a success, or `None` for a success.
    fn of_failure(response: &Response) -> Option<Self> {
        let kind = match response {
            Response::Ok
            | Response::OkWith(_)
            | Response::OkAt { .. }
            | Response::Created { .. } => return None,
            Response::Forbidden(_) => Self::Forbidden,
            Response::ServiceUnavailable(_) => Self::Unavailable,
            Response::ServiceTimeout { .. } => Self::Timeout,
            Response::ValidationError(_) => Self::Validation,
            Response::MissingId(_) => Self::MissingId,
            Response::NotFound { .. } => Self::NotFound,
            Response::AlreadyExists { .. } => Self::AlreadyExists,
            Response::Conflict { .. } => Self::Conflict,
            Response::NoNodesAvailable(_) | Response::TryAnotherNode(_) => Self::NoNodes,
            Response::Error(_) => Self::Error,
        };
        Some(kind(response.clone()))
    }

    /// The response that came back, or `None` when there was none
    /// ([`NoResponse`](Self::NoResponse)).
    pub fn response(&self) -> Option<&Response> {
        match self {
            Self::NoResponse => None,
            Self::Forbidden(response)
            | Self::Unavailable(response)
            | Self::Timeout(response)
            | Self::Validation(response)
            | Self::MissingId(response)
            | Self::NotFound(response)
            | Self::AlreadyExists(response)
            | Self::Conflict(response)
            | Self::NoNodes(response)
            | Self::Error(response)
            | Self::MissingPayload { response, .. }
            | Self::Undecodable { response, .. } => Some(response),
        }
    }
}

impl Message {
    /// Reads the result of the reply as `T`.
    ///
    /// The result is the payload of [`Response::OkWith`] or [`Response::OkAt`], decoded as `T`
    /// itself. A success without one ([`Response::Ok`], [`Response::Created`], `OkAt` without
    /// payload) reads only as `()`; to read a result that may be absent, use
    /// [`answer_opt`](Message::answer_opt), the one way to read an optional result, and to check
    /// a result-less call, [`success`](Message::success). `answer::<Option<T>>()` decodes a
    /// payload encoded as an `Option<T>` by the service: a service that answers a `u64` is read
    /// with `answer::<u64>()` or `answer_opt::<u64>()`, never `answer::<Option<u64>>()` (the
    /// binary format does not encode the two alike, and some `u64`s read as `None`).
    ///
    /// # Errors
    ///
    /// A [`ReplyError`] naming the failure that came back, carrying the response; or
    /// [`ReplyError::MissingPayload`] / [`ReplyError::Undecodable`] when the success carries no
    /// result (and `T` is not `()`), or one that is not a `T`; [`ReplyError::NoResponse`] before
    /// any answer.
    ///
    /// # Examples
    ///
    /// ```
    /// use switchyard_messaging::{Message, ReplyError, Response};
    ///
    /// let reply = Message::new("balance").ok_with(&100_u64);
    /// assert_eq!(reply.answer::<u64>()?, 100);
    ///
    /// let refused = Message::new("balance").return_with(Response::forbidden("tellers only"));
    /// let error = refused.answer::<u64>().unwrap_err();
    /// assert!(matches!(error, ReplyError::Forbidden(_)));
    /// assert_eq!(error.response(), Some(&Response::forbidden("tellers only")));
    ///
    /// let no_result = Message::new("deposit").ok();
    /// no_result.answer::<()>()?;
    /// assert!(matches!(
    ///     no_result.answer::<Option<u64>>(),
    ///     Err(ReplyError::MissingPayload { .. })
    /// ));
    /// assert_eq!(no_result.answer_opt::<u64>()?, None);
    /// # Ok::<(), ReplyError>(())
    /// ```
    pub fn answer<T: DeserializeOwned>(&self) -> Result<T, ReplyError> {
        let response = self.success()?;
        let Some(payload) = response.payload() else {
            return T::deserialize(NoResult).map_err(|_| ReplyError::MissingPayload {
                response: response.clone(),
                type_name: std::any::type_name::<T>(),
            });
        };
        payload.decode().map_err(|source| ReplyError::Undecodable {
            response: response.clone(),
            source,
        })
    }

    /// Reads the result of the reply as `T` when the success carries one, `None` when it
    /// carries none ([`Response::Ok`], [`Response::Created`], `OkAt` without payload).
    ///
    /// # Errors
    ///
    /// As [`answer`](Message::answer), but a success without a result is `Ok(None)`.
    ///
    /// # Examples
    ///
    /// ```
    /// use switchyard_messaging::{Message, ReplyError, Response};
    ///
    /// let balance = Message::new("balance").ok_with(&100_u64);
    /// assert_eq!(balance.answer_opt::<u64>()?, Some(100));
    /// let deposit = Message::new("deposit").return_with(Response::OkAt { payload: None, version: 3 });
    /// assert_eq!(deposit.answer_opt::<u64>()?, None);
    /// # Ok::<(), ReplyError>(())
    /// ```
    pub fn answer_opt<T: DeserializeOwned>(&self) -> Result<Option<T>, ReplyError> {
        let response = self.success()?;
        response
            .payload()
            .map(|payload| {
                payload.decode().map_err(|source| ReplyError::Undecodable {
                    response: response.clone(),
                    source,
                })
            })
            .transpose()
    }

    /// The reply's response when it is a success (`Ok`, `OkWith`, `OkAt` or `Created`), to
    /// check the call went through; [`created_id`](Message::created_id) and
    /// [`version`](Message::version) read what it reports.
    ///
    /// # Errors
    ///
    /// As [`answer`](Message::answer), for a response that is not a success or no response.
    ///
    /// # Examples
    ///
    /// ```
    /// use switchyard_messaging::{Message, Response};
    ///
    /// let created = Message::new("open").created("acc-1");
    /// assert_eq!(created.success()?, &Response::Created { id: "acc-1".into(), version: None });
    ///
    /// let missing = Message::new("open").return_with(Response::MissingId("id".into()));
    /// assert!(missing.success().is_err());
    /// # Ok::<(), switchyard_messaging::ReplyError>(())
    /// ```
    pub fn success(&self) -> Result<&Response, ReplyError> {
        let response = self.response().ok_or(ReplyError::NoResponse)?;
        match ReplyError::of_failure(response) {
            None => Ok(response),
            Some(error) => Err(error),
        }
    }
}

/// The result of a success without payload: it reads as `()` (or a unit struct) and as
/// nothing else, not even `None`, which only [`Message::answer_opt`] reads from no payload.
struct NoResult;

impl<'de> serde::Deserializer<'de> for NoResult {
    type Error = serde::de::value::Error;

    fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(serde::de::Error::custom("the reply carries no result"))
    }

    fn deserialize_unit<V: serde::de::Visitor<'de>>(
        self,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_unit()
    }

    fn deserialize_unit_struct<V: serde::de::Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option newtype_struct seq tuple tuple_struct map struct enum identifier ignored_any
    }
}

impl Message {
    /// The id a [`Response::Created`] reply reports; `None` for any other reply, or none.
    ///
    /// # Examples
    ///
    /// ```
    /// use switchyard_messaging::Message;
    ///
    /// assert_eq!(Message::new("open").created("acc-1").created_id(), Some("acc-1"));
    /// assert_eq!(Message::new("open").ok().created_id(), None);
    /// ```
    pub fn created_id(&self) -> Option<&str> {
        self.response()?.created_id()
    }

    /// The aggregate's version a successful reply reports ([`Response::OkAt`], or
    /// [`Response::Created`] with a version); `None` for any other reply, or none. (The same
    /// version the aggregate runtime records in [`aggregate_meta`](Message::aggregate_meta),
    /// read from the response, which is what reaches a remote caller.)
    ///
    /// # Examples
    ///
    /// ```
    /// use switchyard_messaging::{Message, Response};
    ///
    /// let deposited = Message::new("deposit").return_with(Response::OkAt { payload: None, version: 3 });
    /// assert_eq!(deposited.version(), Some(3));
    /// assert_eq!(Message::new("deposit").ok().version(), None);
    /// ```
    pub fn version(&self) -> Option<i64> {
        self.response()?.version()
    }

    /// The assign under which the aggregate runtime records the global position of the last
    /// event a command appended (read it with [`position`](Message::position), record it with
    /// [`with_position`](Message::with_position)). An assign, not a field, so a message stored
    /// before it existed (a scheduled alarm) still decodes.
    pub const POSITION_ASSIGN: &'static str = "switchyard.position";

    /// The global position of the last event the command this message answers appended, as
    /// the aggregate runtime records it when the command's events were appended to a store
    /// that reports positions (the memory, SQLite and PostgreSQL stores do). `None` when the
    /// command appended nothing (a rejection, a command producing no events, a repeated
    /// message answered from its first run), its store does not report positions, or the
    /// assign holds something else than a position. It travels with the message, also to
    /// another node.
    ///
    /// A read model that has processed this position has seen the command's events: wait for
    /// it (a projection runner's `wait_for`) to read your own writes.
    ///
    /// # Examples
    ///
    /// ```
    /// use switchyard_messaging::Message;
    ///
    /// let deposited = Message::new("deposit").ok();
    /// assert_eq!(deposited.position(), None);
    /// assert_eq!(deposited.with_position(42).position(), Some(42));
    /// ```
    pub fn position(&self) -> Option<u64> {
        self.assigned(Self::POSITION_ASSIGN).ok().flatten()
    }

    /// This message with `position` recorded as the global position of the last event its
    /// command appended (see [`position`](Message::position)).
    #[must_use]
    pub fn with_position(self, position: u64) -> Self {
        self.assign(Self::POSITION_ASSIGN, &position)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{NodeId, Payload};

    fn reply(response: Response) -> Message {
        Message::new("s").return_with(response)
    }

    #[test]
    fn the_position_of_a_reply_survives_the_wire_codec() {
        let reply = Message::new("deposit").ok().with_position(7);
        let decoded = Message::from_bytes(&reply.to_bytes().unwrap()).unwrap();
        assert_eq!(decoded.position(), Some(7));
        assert_eq!(Message::new("deposit").ok().position(), None);
    }

    #[test]
    fn it_reads_the_result_of_every_success() {
        let payload = Payload::encode(&7_u32).unwrap();
        let with_result = [
            Response::OkWith(payload.clone()),
            Response::OkAt {
                payload: Some(payload),
                version: 3,
            },
        ];
        for response in with_result {
            let reply = reply(response);
            assert_eq!(reply.answer::<u32>().unwrap(), 7);
            assert_eq!(reply.answer_opt::<u32>().unwrap(), Some(7));
        }
        let without_result = [
            Response::Ok,
            Response::OkAt {
                payload: None,
                version: 3,
            },
            Response::Created {
                id: "a-1".into(),
                version: Some(0),
            },
        ];
        for response in without_result {
            let reply = reply(response.clone());
            reply.answer::<()>().unwrap();
            let error = reply.answer::<Option<u32>>().unwrap_err();
            assert!(
                matches!(error, ReplyError::MissingPayload { .. }),
                "{error:?}"
            );
            assert!(
                error.to_string().contains("`Message::answer_opt`"),
                "{error}"
            );
            assert_eq!(reply.answer_opt::<u32>().unwrap(), None);
            assert_eq!(reply.success().unwrap(), &response);
            assert!(matches!(
                reply.answer::<u32>(),
                Err(ReplyError::MissingPayload { response: r, type_name: "u32" }) if r == response
            ));
        }
    }

    #[test]
    fn it_reads_the_created_id_and_the_version_without_a_match() {
        let cases = [
            (
                Response::Created {
                    id: "a-1".into(),
                    version: Some(0),
                },
                Some("a-1"),
                Some(0),
            ),
            (
                Response::OkAt {
                    payload: None,
                    version: 4,
                },
                None,
                Some(4),
            ),
            (Response::Ok, None, None),
            (Response::NotFound { id: "a-1".into() }, None, None),
        ];
        for (response, id, version) in cases {
            let reply = reply(response);
            assert_eq!((reply.created_id(), reply.version()), (id, version));
        }
        assert_eq!(Message::new("s").version(), None);
    }

    #[test]
    fn it_names_each_failure_and_carries_its_response() {
        type Is = fn(&ReplyError) -> bool;
        let cases: [(Response, Is); 12] = [
            (Response::forbidden("no"), |e| {
                matches!(e, ReplyError::Forbidden(_))
            }),
            (Response::ServiceUnavailable("s".into()), |e| {
                matches!(e, ReplyError::Unavailable(_))
            }),
            (
                Response::ServiceTimeout {
                    service: "s".into(),
                    message_id: "m".into(),
                    timeout: Duration::from_secs(1),
                },
                |e| matches!(e, ReplyError::Timeout(_)),
            ),
            (Response::ValidationError(Payload::text("bad")), |e| {
                matches!(e, ReplyError::Validation(_))
            }),
            (Response::MissingId("id".into()), |e| {
                matches!(e, ReplyError::MissingId(_))
            }),
            (Response::NotFound { id: "a".into() }, |e| {
                matches!(e, ReplyError::NotFound(_))
            }),
            (Response::AlreadyExists { id: "a".into() }, |e| {
                matches!(e, ReplyError::AlreadyExists(_))
            }),
            (
                Response::Conflict {
                    expected: 1,
                    actual: Some(2),
                },
                |e| matches!(e, ReplyError::Conflict(_)),
            ),
            (
                Response::NoNodesAvailable(vec![(NodeId::new("n", 1), "busy".into())]),
                |e| matches!(e, ReplyError::NoNodes(_)),
            ),
            (Response::TryAnotherNode("busy".into()), |e| {
                matches!(e, ReplyError::NoNodes(_))
            }),
            (Response::error("boom"), |e| {
                matches!(e, ReplyError::Error(_))
            }),
            (Response::error("boom"), |e| e.to_string() == "error: boom"),
        ];
        for (response, is) in cases {
            let reply = reply(response.clone());
            for error in [
                reply.answer::<u32>().unwrap_err(),
                reply.success().unwrap_err(),
            ] {
                assert!(is(&error), "{response}: {error:?}");
                assert_eq!(error.response(), Some(&response));
            }
        }
    }

    #[test]
    fn it_says_when_there_is_no_response_or_the_result_is_another_type() {
        let unanswered = Message::new("s");
        assert!(matches!(
            unanswered.answer::<u32>(),
            Err(ReplyError::NoResponse)
        ));
        let other_type = Message::new("s").ok_with("text");
        let error = other_type.answer::<u32>().unwrap_err();
        assert!(matches!(error, ReplyError::Undecodable { .. }), "{error:?}");
    }
}
