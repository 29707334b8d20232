//! Switchyard: message-driven, distributed and event-sourced backends, one layer at a time.
//!
//! This facade re-exports the Switchyard crates behind features, so an application depends on
//! one crate and turns on the layers it uses. Messaging is always there; its main types are also
//! at the root.
//!
//! ```
//! use switchyard::{Message, Node, Router};
//!
//! async fn ping(msg: Message) -> Message {
//!     msg.ok_with("pong")
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), switchyard::RegisterError> {
//! let node = Node::new("app");
//! node.register(Router::new("health").service("ping", ping).authorize(|_| Ok(())))?;
//! let reply = node.dispatch(Message::new("ping")).await;
//! assert!(reply.response().is_some_and(|r| r.is_success()));
//! # Ok(())
//! # }
//! ```
//!
//! # Features
//!
//! | feature | what it adds |
//! |---|---|
//! | (always) | [`messaging`]: messages, routers, the dispatcher |
//! | `aggregates` | `aggregates`: aggregates, event stores, the per-aggregate runtime |
//! | `conformance` | `aggregates::conformance`: the suite every event store must pass |
//! | `sqlite` | `sqlite`: event, snapshot and state stores in one SQLite file (implies `aggregates`) |
//! | `postgres` | `postgres`: event, snapshot and state stores in PostgreSQL (implies `aggregates`) |
//! | `scheduler` | `scheduler`: persisted, future-dated delivery with retries and leases (with `sqlite` or `postgres`, their stores are alarm stores too) |
//! | `projections` | `projections`: subscriptions to the stores' global order, catch-up then live, and checkpoint stores with leases (implies `aggregates`; with `sqlite` or `postgres`, their stores keep checkpoints too; with `postgres`, subscriptions are woken by `LISTEN/NOTIFY`) |
//! | `cluster` | `cluster`: gossip membership, authenticated transport, remote dispatch |

#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[doc(inline)]
pub use switchyard_messaging as messaging;

#[cfg(feature = "aggregates")]
#[cfg_attr(docsrs, doc(cfg(feature = "aggregates")))]
#[doc(inline)]
pub use switchyard_aggregates as aggregates;

#[cfg(feature = "scheduler")]
#[cfg_attr(docsrs, doc(cfg(feature = "scheduler")))]
#[doc(inline)]
pub use switchyard_scheduler as scheduler;

#[cfg(feature = "projections")]
#[cfg_attr(docsrs, doc(cfg(feature = "projections")))]
#[doc(inline)]
pub use switchyard_projections as projections;

#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
#[doc(inline)]
pub use switchyard_sqlite as sqlite;

#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
#[doc(inline)]
pub use switchyard_postgres as postgres;

#[cfg(feature = "cluster")]
#[cfg_attr(docsrs, doc(cfg(feature = "cluster")))]
#[doc(inline)]
pub use switchyard_cluster as cluster;

#[doc(no_inline)]
pub use switchyard_messaging::{
    Ctx, DispatchOptions, DryRun, Message, Node, Payload, RegisterError, Reply, Response, Router,
};

/// The README and the guides under `docs/guides/`, compiled as doc tests so their code cannot
/// rot.
#[cfg(doctest)]
pub mod guides {
    // The README's programs use every layer (one per `[dependencies]` table).
    #[cfg(all(
        feature = "sqlite",
        feature = "postgres",
        feature = "scheduler",
        feature = "cluster"
    ))]
    #[doc = include_str!("../../../README.md")]
    pub struct Readme;
    #[doc = include_str!("../../../docs/guides/messaging.md")]
    pub struct Messaging;
    #[cfg(feature = "conformance")]
    #[doc = include_str!("../../../docs/guides/aggregates.md")]
    pub struct Aggregates;
    #[cfg(all(feature = "sqlite", feature = "postgres"))]
    #[doc = include_str!("../../../docs/guides/stores.md")]
    pub struct Stores;
    #[cfg(feature = "cluster")]
    #[doc = include_str!("../../../docs/guides/distribution.md")]
    pub struct Distribution;
    #[cfg(all(feature = "scheduler", feature = "sqlite"))]
    #[doc = include_str!("../../../docs/guides/scheduling.md")]
    pub struct Scheduling;
    // The warehouse guide's blocks are commands and text: the app is tested in its own package.
    #[doc = include_str!("../../../docs/guides/warehouse.md")]
    pub struct Warehouse;
}
