//! Errors of connecting and migrating, and how driver errors are sorted into "try again",
//! "refused" and "connection lost".

use std::time::Duration;

use tokio_postgres::error::{Severity, SqlState};

/// Boxed error, the source type of `switchyard-aggregates`' store errors.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A store could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PostgresError {
    /// The connection URL could not be parsed. Fix the URL.
    #[error("invalid PostgreSQL connection URL")]
    Url {
        /// The driver's parse error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// The schema name is not a plain lowercase identifier. Use 1 to 63 lowercase ASCII
    /// letters, digits and underscores, not starting with a digit.
    #[error("invalid schema name `{schema}`")]
    Schema {
        /// The name given.
        schema: String,
    },
    /// The connection pool could not be built.
    #[error("could not build the connection pool")]
    Pool {
        /// Why.
        #[source]
        source: deadpool::managed::BuildError,
    },
    /// No connection could be opened, after the configured retries. Check the URL, the
    /// server and the network.
    #[error("could not connect to PostgreSQL")]
    Connect {
        /// The last failure.
        #[source]
        source: BoxError,
    },
    /// A server took longer than [`PostgresOptions::connect_timeout`](crate::PostgresOptions::connect_timeout)
    /// to set up a connection (it accepted TCP and did not answer, or answered too slowly). Not
    /// retried: waiting as long again would not help. Check the address, or raise the timeout.
    #[error(transparent)]
    ConnectTimeout(#[from] ConnectTimeout),
    /// A migration failed; it was rolled back with every other migration of that run.
    #[error("migration {version} (`{name}`) of the store's schema failed")]
    Migration {
        /// The migration's number.
        version: i32,
        /// Its name.
        name: &'static str,
        /// The server's error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// The schema was migrated by a newer version of this crate: this one does not know its
    /// layout and leaves it untouched. Upgrade.
    #[error("schema `{schema}` is at migration {found}, newer than this library's {known}")]
    NewerSchema {
        /// The schema.
        schema: String,
        /// Its latest migration.
        found: i32,
        /// The latest migration this library knows.
        known: i32,
    },
    /// The server failed while the store was being set up (migrations table, locks).
    #[error("PostgreSQL failed while setting up the store")]
    Database {
        /// The server's or driver's error.
        #[source]
        source: tokio_postgres::Error,
    },
}

/// A server did not set up a connection within the connect timeout: the error of
/// [`PostgresError::ConnectTimeout`] when connecting, and the source of a store call's
/// `StoreError::Backend` later on.
#[derive(Clone, Debug, thiserror::Error)]
#[error(
    "PostgreSQL at {address} did not set up a connection within {timeout:?} \
     (`PostgresOptions::connect_timeout`): check that the address is a PostgreSQL server that is \
     up and not overloaded, or raise the timeout"
)]
pub struct ConnectTimeout {
    address: String,
    timeout: Duration,
}

impl ConnectTimeout {
    pub(crate) fn new(address: String, timeout: Duration) -> Self {
        Self { address, timeout }
    }

    /// The server's address (`host:port`, several joined by `, `), as the URL gave it.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The timeout that ran out.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

/// What a failed attempt means for trying again.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Nothing was done (no connection, or the statement never reached the server), or what
    /// was done was only read: trying again is safe.
    Retry(BoxError),
    /// The server refused (and rolled back); trying again will not help.
    Refused(BoxError),
    /// The connection broke after the statement was sent: for a write, the outcome is unknown.
    Lost(BoxError),
}

impl Failure {
    /// A failure to get a connection from the pool.
    pub(crate) fn pool(error: deadpool::managed::PoolError<tokio_postgres::Error>) -> Self {
        use deadpool::managed::PoolError;
        match error {
            PoolError::Backend(error) if connect_is_transient(&error) => Self::Retry(error.into()),
            PoolError::Backend(error) => Self::Refused(error.into()),
            PoolError::Timeout(_) => Self::Retry(error.into()),
            other => Self::Refused(other.into()),
        }
    }

    /// A failure of a statement on an open connection.
    pub(crate) fn statement(error: tokio_postgres::Error) -> Self {
        if link_failed(&error) {
            Self::Lost(error.into())
        } else if error.code().is_some_and(|code| {
            code == &SqlState::T_R_DEADLOCK_DETECTED || code == &SqlState::T_R_SERIALIZATION_FAILURE
        }) {
            // Rolled back by the server, and likely to pass the next time.
            Self::Retry(error.into())
        } else if error.as_db_error().is_some() {
            // The server answered with an error: the statement was rolled back.
            Self::Refused(error.into())
        } else {
            // The driver failed on its own (an unexpected message, a reply it could not parse):
            // the server may have done the work, so the outcome is unknown.
            Self::Lost(error.into())
        }
    }

    /// A read may be tried again after its connection was lost.
    pub(crate) fn for_read(self) -> Self {
        match self {
            Self::Lost(source) => Self::Retry(source),
            other => other,
        }
    }

    pub(crate) fn is_retry(&self) -> bool {
        matches!(self, Self::Retry(_))
    }

    pub(crate) fn into_source(self) -> BoxError {
        match self {
            Self::Retry(source) | Self::Refused(source) | Self::Lost(source) => source,
        }
    }
}

/// Whether the error says the connection itself failed (rather than the server refusing a
/// statement, which rolls it back and keeps the connection).
pub(crate) fn link_failed(error: &tokio_postgres::Error) -> bool {
    if error.is_closed() {
        return true;
    }
    if let Some(db) = error.as_db_error() {
        // FATAL ends the session (administrator shutdown, crash recovery, idle timeouts); a
        // server-side ERROR rolls the statement back and leaves the connection usable.
        return matches!(
            db.parsed_severity(),
            Some(Severity::Fatal | Severity::Panic)
        ) || db.code().code().starts_with("08");
    }
    // The driver's error kinds are private: an I/O source means the socket failed; a timeout
    // has no source and says so.
    std::error::Error::source(error).is_some_and(|source| source.is::<std::io::Error>())
        || error.to_string() == "timeout waiting for server"
}

/// Whether a failure to open a connection may pass: the server is down, starting, shutting
/// down or full, or the network failed. Refused credentials or a missing database do not pass.
pub(crate) fn connect_is_transient(error: &tokio_postgres::Error) -> bool {
    match error.as_db_error() {
        Some(db) => {
            let code = db.code();
            code == &SqlState::TOO_MANY_CONNECTIONS
                || code == &SqlState::CANNOT_CONNECT_NOW
                || code == &SqlState::ADMIN_SHUTDOWN
                || code == &SqlState::CRASH_SHUTDOWN
                || code.code().starts_with("08")
        }
        None => link_failed(error) || error.to_string() == "error connecting to server",
    }
}

/// Whether the server refused a write because a unique key was taken.
pub(crate) fn is_unique_violation(error: &BoxError) -> bool {
    error
        .downcast_ref::<tokio_postgres::Error>()
        .and_then(tokio_postgres::Error::code)
        .is_some_and(|code| code == &SqlState::UNIQUE_VIOLATION)
}
