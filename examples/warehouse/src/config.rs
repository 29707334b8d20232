//! How a warehouse is set up: its mode, its database, where it listens.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// How commands, events and the read model meet: the three branches of elixir_cqrs_example.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Events in memory; the product list is updated before a command's response.
    MemorySync,
    /// Events and the product list in one database (SQLite or PostgreSQL); the list is updated
    /// before a command's response.
    #[default]
    PersistedSync,
    /// Events and the product list in one database; the list is updated by a projection
    /// running apart from the command path, so a response may come before the list shows it.
    PersistedAsync,
}

impl Mode {
    /// Whether every command waits until the product list has seen its events.
    pub fn is_sync(self) -> bool {
        !matches!(self, Self::PersistedAsync)
    }

    /// The mode's name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::MemorySync => "memory-sync",
            Self::PersistedSync => "persisted-sync",
            Self::PersistedAsync => "persisted-async",
        }
    }
}

/// Where events, checkpoints and the product list are kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Database {
    /// In memory (mode `memory-sync` only).
    Memory,
    /// In the SQLite file at this path, created if missing.
    Sqlite(PathBuf),
    /// In PostgreSQL.
    Postgres {
        /// `postgres://user:password@host:port/database`.
        url: String,
        /// The schema holding the store's tables and the product list.
        schema: String,
    },
}

impl std::fmt::Display for Database {
    /// What the database is, without the URL (which may hold a password).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Memory => f.write_str("memory"),
            Self::Sqlite(path) => write!(f, "the SQLite file {}", path.display()),
            Self::Postgres { schema, .. } => write!(f, "PostgreSQL (schema `{schema}`)"),
        }
    }
}

/// Where the product list's projection runs in mode `persisted-async`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Projector {
    /// In the server's process, on a task of its own.
    #[default]
    InProcess,
    /// In another process (`warehouse project`): the server only reads the list and its
    /// checkpoint.
    Separate,
}

/// Everything [`serve`](crate::serve) and [`project`](crate::project) need.
#[derive(Clone, Debug)]
pub struct Config {
    /// The mode.
    pub mode: Mode,
    /// The database; [`Database::Memory`] only with [`Mode::MemorySync`].
    pub database: Database,
    /// The address to listen on (port 0: any free port; [`serve`](crate::serve) returns the
    /// one bound).
    pub listen: SocketAddr,
    /// Where the projection runs in mode `persisted-async`.
    pub projector: Projector,
    /// How long a projection runner's lease keeps other runners out: the longest a killed
    /// projector's successor waits before taking over.
    pub lease_ttl: Duration,
    /// How long a request waits for a command's reply and then for the product list to see it.
    pub timeout: Duration,
}

impl Config {
    /// `mode` on `database`, listening on 127.0.0.1:8080, the projection in the server's
    /// process, a lease of 5 s and requests waiting 5 s at most.
    pub fn new(mode: Mode, database: Database) -> Self {
        Self {
            mode,
            database,
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            projector: Projector::InProcess,
            lease_ttl: Duration::from_secs(5),
            timeout: Duration::from_secs(5),
        }
    }
}
