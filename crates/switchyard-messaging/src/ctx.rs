//! What a handler can reach while it runs.

use crate::{DispatchOptions, Message, Node, NodeId};

/// A cloneable handle given to handlers that ask for it: through it a handler dispatches to other
/// services, on this node or elsewhere in the cluster.
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
#[derive(Clone, Debug)]
pub struct Ctx {
    node: Node,
}

impl Ctx {
    pub(crate) fn new(node: Node) -> Self {
        Self { node }
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
