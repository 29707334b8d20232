//! The one rule by which an error becomes the caller's answer.

use std::convert::Infallible;
use std::error::Error;
use std::fmt;

use crate::{Payload, PayloadError, ReplyError, Response};

/// A value that answers a call: the one conversion every handler error and every aggregate
/// command rejection goes through, in the manner of axum's `IntoResponse`.
///
/// The rule, the same everywhere:
///
/// | type | response |
/// |---|---|
/// | [`PayloadError`] (the caller sent something unreadable) | [`Response::ValidationError`], the error and its causes as text |
/// | [`HandlerError`], `String`, `&'static str` | [`Response::Error`] with the text |
/// | [`ReplyError`] (a service this handler called refused) | the callee's response, passed on |
/// | `Box<dyn Error + Send + Sync>` (any error, boxed by `?`) | a boxed `PayloadError` or `ReplyError` as above; any other [`Response::Error`], the error and its causes as text |
/// | your own error type | what its `into_response` chooses |
///
/// `Box<dyn Error + Send + Sync>` is the catch-all: `?` boxes any standard error into it, so a
/// handler can return `Result<Message, Box<dyn Error + Send + Sync>>` and use `?` on a driver's
/// error without a conversion of its own. The text types are for quick refusals. Other errors
/// (`std::io::Error`, a driver's error) get no implementation of their own on purpose: whether one
/// is the caller's fault or the service's is for the service to say, through its own type.
///
/// [`Response`] is the target of the conversion: every `T: IntoResponse` converts into it with
/// `From`, so `?` works in every function returning `Result<_, Response>` (an aggregate command,
/// a router's `authorize` rule). For that, `Response` does not implement this trait itself (as
/// `anyhow::Error` does not implement `std::error::Error`): it converts into itself by the
/// identity `From`, and a handler may return `Result<_, Response>` as well.
///
/// # Examples
///
/// An error type of your own chooses its response:
///
/// ```
/// use switchyard_messaging::{IntoResponse, Message, PayloadError, Response, Router};
///
/// #[derive(Debug, thiserror::Error)]
/// enum BankError {
///     #[error("unreadable request")]
///     Unreadable(#[from] PayloadError),
///     #[error("account {0} is frozen")]
///     Frozen(String),
/// }
///
/// impl IntoResponse for BankError {
///     fn into_response(self) -> Response {
///         match self {
///             Self::Unreadable(error) => error.into_response(),
///             Self::Frozen(_) => Response::forbidden(self.to_string()),
///         }
///     }
/// }
///
/// async fn withdraw(msg: Message) -> Result<Message, BankError> {
///     let account: String = msg.request()?;
///     if account == "acc-frozen" {
///         return Err(BankError::Frozen(account));
///     }
///     Ok(msg.ok())
/// }
/// # let _ = Router::new("bank").service("withdraw", withdraw);
/// ```
///
/// A handler whose error type does not implement `IntoResponse` is refused at compile time:
///
/// ```compile_fail
/// use switchyard_messaging::{Message, Router};
///
/// struct Oops;
///
/// async fn fails(_msg: Message) -> Result<Message, Oops> {
///     Err(Oops)
/// }
///
/// let router = Router::new("broken").service("broken", fails);
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot answer a Switchyard call",
    note = "implement `switchyard_messaging::IntoResponse` for `{Self}` to choose the response \
            its values answer, or convert it into a `Box<dyn Error + Send + Sync>` (answered \
            `Response::Error`)"
)]
pub trait IntoResponse {
    /// The response this value answers.
    fn into_response(self) -> Response;
}

impl<T: IntoResponse> From<T> for Response {
    fn from(value: T) -> Self {
        value.into_response()
    }
}

/// Displays an error and its causes, joined with `": "`: the text of a response, which reaches
/// the caller without the error's source chain, or of a log line.
///
/// # Examples
///
/// ```
/// use switchyard_messaging::ErrorChain;
///
/// #[derive(Debug, thiserror::Error)]
/// #[error("save failed")]
/// struct SaveFailed(#[source] std::io::Error);
///
/// let error = SaveFailed(std::io::Error::other("disk full"));
/// assert_eq!(ErrorChain(&error).to_string(), "save failed: disk full");
/// ```
#[derive(Clone, Copy)]
pub struct ErrorChain<'a>(pub &'a dyn Error);

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

impl fmt::Debug for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl IntoResponse for PayloadError {
    /// A request that cannot be read is the caller's mistake: a validation error saying why.
    /// The text names types without their module paths; the log has the full detail.
    fn into_response(self) -> Response {
        tracing::debug!(error = ?self, "the request could not be read");
        Response::ValidationError(Payload::text(ErrorChain(&self).to_string()))
    }
}

/// A handler failed; the caller receives [`Response::Error`] with this text (see
/// [`IntoResponse`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct HandlerError {
    reason: String,
}

impl HandlerError {
    /// A failure with a human-readable reason.
    pub fn new(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
        }
    }

    /// The reason.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl IntoResponse for HandlerError {
    fn into_response(self) -> Response {
        Response::error(self.reason())
    }
}

impl IntoResponse for String {
    fn into_response(self) -> Response {
        Response::error(self)
    }
}

impl IntoResponse for &'static str {
    fn into_response(self) -> Response {
        Response::error(self)
    }
}

impl IntoResponse for Box<dyn Error + Send + Sync> {
    /// A [`PayloadError`] or a [`ReplyError`] boxed by `?` answers as it
    /// would unboxed (a validation error; the callee's refusal passed on); any other error is
    /// [`Response::Error`].
    fn into_response(self) -> Response {
        let error = match self.downcast::<PayloadError>() {
            Ok(error) => return error.into_response(),
            Err(error) => error,
        };
        match error.downcast::<ReplyError>() {
            Ok(error) => error.into_response(),
            Err(error) => Response::error(ErrorChain(&*error).to_string()),
        }
    }
}

impl IntoResponse for ReplyError {
    /// A handler that `?`s the reply of a service it called passes that service's refusal on
    /// as it came (a proxy's rule); a reply it cannot read, or a call never answered, is its own
    /// failure: [`Response::Error`].
    fn into_response(self) -> Response {
        match self {
            Self::NoResponse | Self::MissingPayload { .. } | Self::Undecodable { .. } => {
                Response::error(ErrorChain(&self).to_string())
            }
            // Every other kind carries the callee's response (`ReplyError::response` lists them).
            refused => refused
                .response()
                .cloned()
                .unwrap_or_else(|| Response::error(ErrorChain(&refused).to_string())),
        }
    }
}

impl IntoResponse for Infallible {
    fn into_response(self) -> Response {
        match self {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Message;

    #[test]
    fn a_reply_error_passes_the_callee_refusal_on_and_is_its_own_failure_otherwise() {
        let refusals = [
            Response::Conflict {
                expected: 1,
                actual: Some(2),
            },
            Response::AlreadyExists { id: "a".into() },
            Response::error("boom"),
        ];
        for refusal in refusals {
            let error = Message::new("s")
                .return_with(refusal.clone())
                .answer::<u32>();
            let Err(error) = error else {
                panic!("{refusal} answered");
            };
            assert_eq!(error.into_response(), refusal);
        }
        let Err(error) = Message::new("s").ok_with("text").answer::<u32>() else {
            panic!("a text read as a number");
        };
        assert!(matches!(
            error.into_response(),
            Response::Error(text) if text.to_string().starts_with("the reply's result cannot be read: ")
        ));
    }

    #[test]
    fn an_unreadable_request_is_a_validation_error_with_its_causes() {
        let error = Message::new("s").with_request(&1_u8).request::<String>();
        let Err(error) = error else {
            panic!("a u8 read as a String");
        };
        let Response::ValidationError(reason) = error.into_response() else {
            panic!("not a validation error");
        };
        let text = reason.to_string();
        assert!(text.starts_with("payload is not a valid `"), "{text}");
        assert!(text.contains("String`: "), "{text}");
    }

    #[test]
    fn a_boxed_payload_or_reply_error_answers_as_unboxed() {
        fn boxed_request(msg: &Message) -> Result<u64, Box<dyn Error + Send + Sync>> {
            Ok(msg.request()?)
        }
        fn boxed_answer(reply: &Message) -> Result<u64, Box<dyn Error + Send + Sync>> {
            Ok(reply.answer()?)
        }
        let unreadable = boxed_request(&Message::new("s")).unwrap_err();
        assert!(matches!(
            unreadable.into_response(),
            Response::ValidationError(_)
        ));
        let refused = Message::new("s").return_with(Response::NotFound { id: "a-1".into() });
        assert_eq!(
            boxed_answer(&refused).unwrap_err().into_response(),
            Response::NotFound { id: "a-1".into() }
        );
    }

    #[test]
    fn text_and_boxed_errors_are_errors() {
        let boxed: Box<dyn Error + Send + Sync> =
            Box::new(std::io::Error::other(HandlerError::new("disk full")));
        let cases = [
            (HandlerError::new("boom").into_response(), "boom"),
            ("boom".into_response(), "boom"),
            (String::from("boom").into_response(), "boom"),
            (boxed.into_response(), "disk full"),
        ];
        for (response, text) in cases {
            assert_eq!(response, Response::error(text));
        }
    }

    #[test]
    fn every_into_response_converts_into_a_response_with_question_mark() {
        fn rule(msg: &Message) -> Result<(), Response> {
            let _: u64 = msg.request()?;
            Ok(())
        }
        assert!(matches!(
            rule(&Message::new("s")),
            Err(Response::ValidationError(_))
        ));
    }
}
