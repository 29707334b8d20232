//! Query services: a read model kept in memory by a projection, read by router services.
//!
//! A [`View`] is plain state folded from events. An [`InMemory`] projection keeps one up to
//! date under a [`ProjectionRunner`](crate::ProjectionRunner), rebuilt from the origin when its
//! process starts, and [`InMemory::serve`] hands out the [`ReadModel`] that query handlers
//! take as their router's state. A query reads at once (eventual consistency) unless its message
//! carries a [`ReadAt`] (read your writes: see at least the position a command's reply
//! returned, waiting a bounded time for it), set with [`QueryMessage`].

mod error;
mod read_at;
mod view;

pub use self::error::QueryError;
pub use self::read_at::{QueryMessage, READ_AT_ASSIGN, ReadAt};
pub use self::view::{InMemory, ReadModel, View, ViewGuard};
