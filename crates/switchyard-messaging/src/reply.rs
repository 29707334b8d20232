//! What a service handler returns, and how it becomes the caller's answer.

use crate::{IntoResponse, Message, Response};

/// The outcome of a service handler.
#[derive(Debug)]
#[must_use]
pub enum Reply {
    /// Answer the caller with this message (its response set with [`Message::ok`] and friends).
    To(Message),
    /// Do not answer. The caller gets [`Response::ServiceTimeout`] at its
    /// deadline; use it for fire-and-forget services whose callers do not wait.
    NoReply,
}

impl From<Message> for Reply {
    fn from(message: Message) -> Self {
        Self::To(message)
    }
}

/// What a handler may return: a [`Reply`], a [`Message`], or a `Result` of either whose error is
/// [`IntoResponse`] (or a [`Response`] itself). This is what lets a handler use `?`: the error
/// becomes the caller's answer through [`IntoResponse`], the one rule for every handler and
/// aggregate command.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be returned by a Switchyard service handler",
    note = "return a `Message` (answered with `msg.ok()` and friends), a `Reply`, or a \
            `Result<_, E>` of those where `E: IntoResponse` (or `E` is `Response`)"
)]
pub trait IntoReply {
    /// Converts the handler's return value.
    ///
    /// # Errors
    ///
    /// The response the handler's error answers.
    fn into_reply(self) -> Result<Reply, Response>;
}

impl IntoReply for Reply {
    fn into_reply(self) -> Result<Reply, Response> {
        Ok(self)
    }
}

impl IntoReply for Message {
    fn into_reply(self) -> Result<Reply, Response> {
        Ok(Reply::To(self))
    }
}

impl<T: IntoReply, E: IntoResponse> IntoReply for Result<T, E> {
    fn into_reply(self) -> Result<Reply, Response> {
        match self {
            Ok(reply) => reply.into_reply(),
            Err(error) => Err(error.into_response()),
        }
    }
}

impl<T: IntoReply> IntoReply for Result<T, Response> {
    fn into_reply(self) -> Result<Reply, Response> {
        self.and_then(IntoReply::into_reply)
    }
}
