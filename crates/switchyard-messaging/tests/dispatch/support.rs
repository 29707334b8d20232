//! The fixtures x3m's tests use, and helpers shared by the areas.

use switchyard_messaging::{Message, Node, Payload, Response, Router};

pub(crate) async fn first(msg: Message) -> Message {
    msg.ok_with("from_first")
}

pub(crate) async fn private(msg: Message) -> Message {
    msg.ok_with("from_private")
}

/// x3m's `X3m.System.Test.Router`.
pub(crate) fn x3m_router() -> Router {
    Router::new("test")
        .service("first", first)
        .service("unauthorized_service", first)
        .service("custom_unauthorized_service", first)
        .private("private_service", private)
        .authorize(|msg: &Message| match msg.service() {
            "first" | "private_service" => Ok(()),
            "custom_unauthorized_service" => Err(Response::forbidden("None shall pass!")),
            _ => Err(Response::Forbidden(None)),
        })
}

pub(crate) fn x3m_node() -> Node {
    let node = Node::new("test-node");
    node.register(x3m_router()).unwrap();
    node
}

pub(crate) fn ok_with(text: &str) -> Response {
    Response::OkWith(Payload::encode(text).unwrap())
}

/// A router that lets every call through.
pub(crate) fn open(name: &str) -> Router {
    Router::new(name).authorize(|_| Ok(()))
}
