//! Plain `async fn`s as service handlers.

use std::future::Future;
use std::marker::PhantomData;

use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::{Ctx, IntoReply, Message, Node, Reply, Response};

/// A service handler: an `async fn(Message) -> R` or `async fn(Message, Ctx) -> R` where `R`
/// is [`IntoReply`].
///
/// Implemented for every such function and closure; you never implement it yourself. The type
/// parameter only tells the two shapes apart.
///
/// # Examples
///
/// ```
/// use switchyard_messaging::{Ctx, Message, PayloadError, Router};
///
/// async fn greet(msg: Message) -> Result<Message, PayloadError> {
///     let name: String = msg.request()?;
///     Ok(msg.ok_with(&format!("Hello, {name}!")))
/// }
///
/// async fn greet_twice(msg: Message, ctx: Ctx) -> Message {
///     let first = ctx.dispatch(Message::caused_by(&msg, "greet")).await;
///     msg.return_with(first.response().cloned().unwrap_or(switchyard_messaging::Response::Ok))
/// }
///
/// let router = Router::new("greeter").service("greet", greet).service("greet_twice", greet_twice);
/// # let _ = router;
/// ```
///
/// A function of another shape is refused at compile time, with a note saying what a handler
/// must be:
///
/// ```compile_fail
/// use switchyard_messaging::{Message, Router};
///
/// async fn takes_a_string(_name: String) -> Message {
///     Message::new("nope")
/// }
///
/// let router = Router::new("broken").service("broken", takes_a_string);
/// ```
///
/// ```compile_fail
/// use switchyard_messaging::{Message, Router};
///
/// // Returns a number: not something a caller can be answered with.
/// async fn answers_a_number(_msg: Message) -> u32 {
///     42
/// }
///
/// let router = Router::new("broken").service("broken", answers_a_number);
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a Switchyard service handler",
    note = "a handler is an `async fn(Message) -> R` or `async fn(Message, Ctx) -> R`, where `R` \
            is a `Message`, a `Reply` or a `Result` of those whose error implements `IntoResponse`; \
            it must be `Clone + Send + Sync + 'static` and its future `Send`"
)]
pub trait Handler<Args>: Clone + Send + Sync + 'static {
    /// Runs the handler on one message, on `node`. Only handlers that take a [`Ctx`] get one, so
    /// the others cost no handle.
    fn call(
        &self,
        message: Message,
        node: &Node,
    ) -> impl Future<Output = Result<Reply, Response>> + Send + 'static;
}

impl<F, Fut, R> Handler<(Message,)> for F
where
    F: Fn(Message) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = R> + Send + 'static,
    R: IntoReply,
{
    fn call(
        &self,
        message: Message,
        _node: &Node,
    ) -> impl Future<Output = Result<Reply, Response>> + Send + 'static {
        let future = self(message);
        async move { future.await.into_reply() }
    }
}

impl<F, Fut, R> Handler<(Message, Ctx)> for F
where
    F: Fn(Message, Ctx) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = R> + Send + 'static,
    R: IntoReply,
{
    fn call(
        &self,
        message: Message,
        node: &Node,
    ) -> impl Future<Output = Result<Reply, Response>> + Send + 'static {
        let future = self(message, Ctx::new(node.clone()));
        async move { future.await.into_reply() }
    }
}

/// A handler with its type erased, so one registry holds handlers of every type.
///
/// It spawns the concrete future itself, so a call costs one allocation (the task) rather than a
/// boxed future and then a task.
pub(crate) trait ErasedHandler: Send + Sync + 'static {
    fn spawn(
        &self,
        message: Message,
        node: &Node,
        span: tracing::Span,
    ) -> JoinHandle<Result<Reply, Response>>;
}

pub(crate) struct Erased<H, Args> {
    handler: H,
    _args: PhantomData<fn() -> Args>,
}

impl<H, Args> Erased<H, Args> {
    pub(crate) fn new(handler: H) -> Self {
        Self {
            handler,
            _args: PhantomData,
        }
    }
}

impl<H, Args> ErasedHandler for Erased<H, Args>
where
    H: Handler<Args>,
    Args: 'static,
{
    fn spawn(
        &self,
        message: Message,
        node: &Node,
        span: tracing::Span,
    ) -> JoinHandle<Result<Reply, Response>> {
        tokio::spawn(self.handler.call(message, node).instrument(span))
    }
}
