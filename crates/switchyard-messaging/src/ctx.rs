//! What a handler can reach while it runs.

use std::fmt;
use std::sync::Arc;

use crate::router::RouterPolicy;
use crate::{DispatchOptions, Message, MissingExtension, Node, NodeId};

/// A cloneable handle given to handlers that ask for it: through it a handler dispatches to other
/// services, on this node or elsewhere in the cluster, and reaches the extensions of its router
/// ([`extension`](Ctx::extension)).
///
/// # Examples
///
/// ```
/// use switchyard_messaging::{Ctx, Message};
///
/// // Calls `audit` as part of the same conversation: the callee sees this message's correlation
/// // id, and this message's id as its causation id.
/// async fn transfer(msg: Message, ctx: Ctx) -> Message {
///     let audit = ctx.dispatch(Message::caused_by(&msg, "audit")).await;
///     match audit.response() {
///         Some(response) if response.is_success() => msg.ok(),
///         _ => msg.error("audit failed"),
///     }
/// }
/// # let _ = switchyard_messaging::Router::new("bank").service("transfer", transfer);
/// ```
#[derive(Clone)]
pub struct Ctx {
    node: Node,
    router: Arc<RouterPolicy>,
}

impl Ctx {
    pub(crate) fn new(node: Node, router: Arc<RouterPolicy>) -> Self {
        Self { node, router }
    }

    /// The value of type `T` the handler's router holds (added with
    /// [`Router::extension`](crate::Router::extension)), borrowed: no clone per call.
    ///
    /// For state every handler of a router needs, [`State`](crate::State) is checked at
    /// compile time instead; extensions suit values a handler may do without, or that code
    /// other than the handler's author adds.
    ///
    /// # Errors
    ///
    /// [`MissingExtension`], naming the router and the type, when the router holds no `T`.
    /// Raised with `?` in a handler it answers `Response::Error`.
    ///
    /// # Examples
    ///
    /// ```
    /// use switchyard_messaging::{Ctx, Message, MissingExtension, Router};
    ///
    /// struct Motd(&'static str);
    ///
    /// async fn motd(msg: Message, ctx: Ctx) -> Result<Message, MissingExtension> {
    ///     let Motd(text) = ctx.extension::<Motd>()?;
    ///     Ok(msg.ok_with(text))
    /// }
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let router = Router::new("news")
    ///     .extension(Motd("all systems nominal"))
    ///     .service("motd", motd)
    ///     .authorize(|_| Ok(()));
    /// let reply = router.invoke(Message::new("motd")).await;
    /// assert_eq!(reply.answer::<String>().unwrap(), "all systems nominal");
    /// # });
    /// ```
    pub fn extension<T: Send + Sync + 'static>(&self) -> Result<&T, MissingExtension> {
        self.router
            .extensions
            .get::<T>()
            .ok_or_else(|| MissingExtension {
                router: self.router.name.to_string(),
                type_name: std::any::type_name::<T>(),
            })
    }

    /// Dispatches `message` from this node with the default timeout.
    pub async fn dispatch(&self, message: Message) -> Message {
        self.node.dispatch(message).await
    }

    /// Dispatches `message` from this node with `options`.
    pub async fn dispatch_with(&self, message: Message, options: DispatchOptions) -> Message {
        self.node.dispatch_with(message, options).await
    }

    /// Dispatches `message` from this node as a dry run, as [`Node::validate`] does: services
    /// must not take effect, aggregate services validate the command and persist nothing.
    ///
    /// # Examples
    ///
    /// ```
    /// use switchyard_messaging::{Ctx, Message};
    ///
    /// // Answers whether a transfer would go through, without moving anything.
    /// async fn can_transfer(msg: Message, ctx: Ctx) -> Message {
    ///     let check = ctx.validate(Message::caused_by(&msg, "transfer")).await;
    ///     msg.ok_with(&check.success().is_ok())
    /// }
    /// # let _ = switchyard_messaging::Router::new("bank").service("can_transfer", can_transfer);
    /// ```
    pub async fn validate(&self, message: Message) -> Message {
        self.node.validate(message).await
    }

    /// The node running the handler.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// The id of the node running the handler.
    pub fn node_id(&self) -> &NodeId {
        self.node.id()
    }
}

impl fmt::Debug for Ctx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ctx")
            .field("node", &self.node)
            .field("router", &self.router.name)
            .field("extensions", &self.router.extensions.len())
            .finish()
    }
}
