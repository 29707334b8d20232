//! Messages, routers and the dispatcher: call a named service and get its answer, whether it runs
//! in this process or, with a cluster attached, on another node.
//!
//! A [`Message`] names a service and carries a typed request plus the ids that tie a conversation
//! together. A [`Router`] groups services (plain `async fn`s) under one authorization rule. A
//! [`Node`] holds the registered routers and dispatches messages to services, each call under a
//! deadline with its handler's panics caught, answering with a [`Response`].
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use switchyard_messaging::{Message, Node, PayloadError, Router};
//!
//! #[derive(Serialize, Deserialize)]
//! struct Greet {
//!     name: String,
//! }
//!
//! async fn greet(msg: Message) -> Result<Message, PayloadError> {
//!     let Greet { name } = msg.request()?;
//!     Ok(msg.ok_with(&format!("Hello, {name}!")))
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let node = Node::new("greeter-node");
//! node.register(
//!     Router::new("greeter")
//!         .service("greet", greet)
//!         .authorize(|_msg: &Message| Ok(())),
//! )?;
//!
//! let reply = node
//!     .dispatch(Message::new("greet").with_request(&Greet { name: "Ada".into() }))
//!     .await;
//! let greeting: String = reply.answer()?;
//! assert_eq!(greeting, "Hello, Ada!");
//! # Ok(())
//! # }
//! ```
//!
//! Every dispatch and service execution is a `tracing` span carrying the message id, correlation
//! id and service; see [`telemetry`] for the names. The crate has no feature flags.

#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod answer;
pub mod codec;
mod ctx;
mod error;
mod handler;
mod into_response;
mod message;
pub mod names;
mod node;
mod node_id;
mod panic_text;
mod payload;
pub mod remote;
mod reply;
mod response;
mod router;
mod shared_str;
mod state;
pub mod telemetry;

#[doc(inline)]
pub use self::answer::ReplyError;
#[doc(inline)]
pub use self::ctx::Ctx;
#[doc(inline)]
pub use self::error::{AlreadyAttached, MissingExtension, RegisterError};

/// The longest service name [`Node::register`] accepts, in bytes. A cluster announces a
/// node's public service names in gossip chunks of 16 KiB; a name of at most 1 KiB fits one
/// even with every character escaped in JSON.
pub const MAX_SERVICE_NAME_LEN: usize = 1024;
#[doc(inline)]
pub use self::handler::Handler;
#[doc(inline)]
pub use self::into_response::{ErrorChain, HandlerError, IntoResponse};
#[doc(inline)]
pub use self::message::{AggregateMeta, DryRun, LogFields, Message, ReplyTo, TRACE_CONTEXT_FIELD};
#[doc(inline)]
pub use self::node::{Authorization, DEFAULT_TIMEOUT, DispatchOptions, Node, NodeBuilder, Served};
#[doc(inline)]
pub use self::node_id::NodeId;
#[doc(inline)]
pub use self::panic_text::panic_text;
pub use self::payload::{Format, Payload, PayloadError};
#[doc(inline)]
pub use self::reply::{IntoReply, Reply};
#[doc(inline)]
pub use self::response::Response;
#[doc(inline)]
pub use self::router::{Listing, NodeChoice, Router, ServiceInfo, Visibility};
#[doc(inline)]
pub use self::state::State;
