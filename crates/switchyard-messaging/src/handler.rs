//! Plain `async fn`s as service handlers.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;

use tracing::Instrument;

use crate::router::RouterPolicy;
use crate::{Ctx, IntoReply, Message, Node, Reply, Response, State};

/// A service handler: an `async fn` taking the [`Message`], then optionally a [`Ctx`], then
/// optionally the router's [`State<S>`], and returning an `R` that is [`IntoReply`]:
///
/// - `async fn(Message) -> R`
/// - `async fn(Message, Ctx) -> R`
/// - `async fn(Message, State<S>) -> R`
/// - `async fn(Message, Ctx, State<S>) -> R`
///
/// Implemented for every such function and closure, and sealed: nothing else can implement it,
/// and its method is the router's calling convention, not an API. `Args` only tells the shapes
/// apart; `S` is the state of the router the handler is added to (see
/// [`Router::with_state`](crate::Router::with_state)), so a handler asking for a state the
/// router does not hold is refused at compile time.
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
///
/// Nothing but such a function implements it (the trait is sealed):
///
/// ```compile_fail
/// use std::future::Future;
/// use switchyard_messaging::{Ctx, Handler, Message, Reply, Response};
///
/// #[derive(Clone)]
/// struct Mine;
///
/// impl Handler<(Message,)> for Mine {
///     fn call(
///         &self,
///         message: Message,
///         _ctx: impl FnOnce() -> Ctx,
///         _state: &(),
///     ) -> impl Future<Output = Result<Reply, Response>> + Send + 'static {
///         async move { Ok(Reply::from(message.ok())) }
///     }
/// }
/// ```
///
/// So is a handler asking for a state its router does not hold:
///
/// ```compile_fail
/// use std::sync::Arc;
/// use switchyard_messaging::{Message, Router, State};
///
/// async fn count(msg: Message, State(total): State<Arc<u64>>) -> Message {
///     msg.ok_with(&*total)
/// }
///
/// // No `.with_state(Arc::new(0_u64))`: the router holds no state.
/// let router = Router::new("broken").service("count", count);
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a Switchyard service handler",
    note = "a handler is an `async fn(Message) -> R`, `async fn(Message, Ctx) -> R`, \
            `async fn(Message, State<S>) -> R` or `async fn(Message, Ctx, State<S>) -> R`, \
            where `R` is a `Message`, a `Reply` or a `Result` of those whose error implements \
            `IntoResponse`, and `S` is the router's state (`Router::with_state`); it must be \
            `Clone + Send + Sync + 'static` and its future `Send`"
)]
pub trait Handler<Args, S = ()>: sealed::Sealed<Args, S> + Clone + Send + Sync + 'static {
    /// Runs the handler on one message with the router's `state`. `ctx` builds the handle
    /// only for handlers that take a [`Ctx`], so the others cost none.
    #[doc(hidden)]
    fn call(
        &self,
        message: Message,
        ctx: impl FnOnce() -> Ctx,
        state: &S,
    ) -> impl Future<Output = Result<Reply, Response>> + Send + 'static;
}

/// Implements [`Handler`] and its seal for one function shape: the arguments after the message,
/// each with how it is made from `ctx` (the context maker) and `state` (the router's state).
macro_rules! handler_shape {
    ($ctx:ident, $state:ident => ($($arg:ty = $make:expr),*) $(where $($bound:tt)+)?) => {
        impl<F, Fut, R, S> Handler<(Message, $($arg,)*), S> for F
        where
            F: Fn(Message $(, $arg)*) -> Fut + Clone + Send + Sync + 'static,
            Fut: Future<Output = R> + Send + 'static,
            R: IntoReply,
            $($($bound)+)?
        {
            // Each shape takes a different part of the context, so some leave one unused.
            #[allow(unused_variables)]
            fn call(
                &self,
                message: Message,
                $ctx: impl FnOnce() -> Ctx,
                $state: &S,
            ) -> impl Future<Output = Result<Reply, Response>> + Send + 'static {
                let future = self(message $(, $make)*);
                async move { future.await.into_reply() }
            }
        }

        impl<F, Fut, S> sealed::Sealed<(Message, $($arg,)*), S> for F
        where
            F: Fn(Message $(, $arg)*) -> Fut,
            Fut: Future,
        {
        }
    };
}

handler_shape!(ctx, state => ());
handler_shape!(ctx, state => (Ctx = ctx()));
handler_shape!(ctx, state => (State<S> = State(state.clone())) where S: Clone);
handler_shape!(ctx, state => (Ctx = ctx(), State<S> = State(state.clone())) where S: Clone);

/// Seals [`Handler`]: only the four function shapes above implement it.
mod sealed {
    /// Implemented for the function shapes a handler may have; private, so nothing else can
    /// implement [`Handler`](super::Handler).
    pub trait Sealed<Args, S> {}
}

/// A handler's future once its type is erased: boxed, polled by whoever runs the call.
pub(crate) type HandlerFuture = Pin<Box<dyn Future<Output = Result<Reply, Response>> + Send>>;

/// A handler with its type and its router's state erased, so one registry holds handlers of
/// every type.
///
/// It only builds the handler's future (one allocation, the box); the dispatcher decides where
/// that future runs: on the caller's task, or in a task of its own.
pub(crate) trait ErasedHandler: Send + Sync + 'static {
    /// The handler's future for one message, entering `span` whenever it is polled. Nothing of
    /// the handler runs before the future is first polled.
    fn call(
        &self,
        message: Message,
        node: &Node,
        router: &Arc<RouterPolicy>,
        span: tracing::Span,
    ) -> HandlerFuture;
}

/// A handler and the state of the router it was added to.
pub(crate) struct Erased<H, Args, S> {
    handler: H,
    state: S,
    _args: PhantomData<fn() -> Args>,
}

impl<H, Args, S> Erased<H, Args, S> {
    pub(crate) fn new(handler: H, state: S) -> Self {
        Self {
            handler,
            state,
            _args: PhantomData,
        }
    }
}

impl<H, Args, S> ErasedHandler for Erased<H, Args, S>
where
    H: Handler<Args, S>,
    Args: 'static,
    S: Send + Sync + 'static,
{
    fn call(
        &self,
        message: Message,
        node: &Node,
        router: &Arc<RouterPolicy>,
        span: tracing::Span,
    ) -> HandlerFuture {
        let ctx = || Ctx::new(node.clone(), router.clone());
        Box::pin(
            self.handler
                .call(message, ctx, &self.state)
                .instrument(span),
        )
    }
}
