//! Why a warehouse could not start.

use switchyard::projections::BoxError;
use switchyard::projections::RunnerError;

use crate::read_model::ReadModelError;

/// Why [`serve`](crate::serve) or [`project`](crate::project) could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The mode and the database do not go together: `memory-sync` keeps everything in memory,
    /// the persisted modes need SQLite or PostgreSQL.
    #[error(
        "mode {mode} cannot run on {database}: memory-sync runs in memory, the persisted modes on SQLite or PostgreSQL"
    )]
    Mode {
        /// The mode asked for.
        mode: &'static str,
        /// The database asked for.
        database: String,
    },
    /// `warehouse project` was asked for a mode whose projection runs in the server.
    #[error(
        "only mode persisted-async runs its projection in a process of its own; start `warehouse project` with --mode persisted-async"
    )]
    NotAsync,
    /// The event or checkpoint store could not be opened.
    #[error("the event store could not be opened")]
    Store(#[source] BoxError),
    /// The product list's table could not be opened.
    #[error("the product list could not be opened")]
    ReadModel(#[source] ReadModelError),
    /// The services could not be registered.
    #[error("the warehouse's services could not be registered")]
    Register(#[source] BoxError),
    /// The projection could not start.
    #[error("the product list's projection could not start")]
    Projection(#[source] RunnerError),
    /// The address could not be bound.
    #[error("could not listen on {address}: is another server there?")]
    Listen {
        /// The address.
        address: std::net::SocketAddr,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
}

impl StartError {
    pub(crate) fn store(source: impl Into<BoxError>) -> Self {
        Self::Store(source.into())
    }
}
