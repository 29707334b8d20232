//! The connection pool: deadpool-postgres connections that know their server session.
//!
//! Each connection sets its `search_path` to the store's schema once, when it is opened, and
//! remembers its backend's process id and start time. After a connection breaks in the middle
//! of an append, that session is what the store ends (`pg_terminate_backend`) before it looks
//! whether the append committed: once the backend is gone its transaction is final.
//!
//! A connection also runs statements ([`Conn::query`] and the like): prepared once per
//! connection, their errors sorted into [`Failure`]s for retrying.

use std::time::SystemTime;

use deadpool::managed::{self, Metrics, RecycleResult};
use deadpool_postgres::{ClientWrapper, ManagerConfig, RecyclingMethod};
use tokio_postgres::types::ToSql;

use crate::error::Failure;

/// The parameters of one statement.
pub(crate) type Params<'a> = [&'a (dyn ToSql + Sync)];

/// The pool of [`Conn`]s.
pub(crate) type Pool = managed::Pool<Manager>;

/// One server session, told apart from a later one that reuses its process id by its start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Session {
    pub(crate) pid: i32,
    pub(crate) started: Option<SystemTime>,
}

/// A pooled connection and its session.
pub(crate) struct Conn {
    pub(crate) client: ClientWrapper,
    pub(crate) session: Session,
}

/// Opens connections through deadpool-postgres, then learns their session.
pub(crate) struct Manager {
    inner: deadpool_postgres::Manager,
    schema: String,
}

impl Manager {
    pub(crate) fn new<T>(config: tokio_postgres::Config, tls: T, schema: String) -> Self
    where
        T: tokio_postgres::tls::MakeTlsConnect<tokio_postgres::Socket>
            + Clone
            + Sync
            + Send
            + 'static,
        T::Stream: Sync + Send,
        T::TlsConnect: Sync + Send,
        <T::TlsConnect as tokio_postgres::tls::TlsConnect<tokio_postgres::Socket>>::Future: Send,
    {
        // `Fast` recycling only checks that the connection is open: `Clean` would `RESET ALL`
        // and lose the search path.
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        Self {
            inner: deadpool_postgres::Manager::from_config(config, tls, manager_config),
            schema,
        }
    }
}

impl managed::Manager for Manager {
    type Type = Conn;
    type Error = tokio_postgres::Error;

    async fn create(&self) -> Result<Conn, tokio_postgres::Error> {
        let client = self.inner.create().await?;
        let row = client
            .query_one(include_str!("sql/session.sql"), &[&self.schema])
            .await?;
        let session = Session {
            pid: row.try_get(0)?,
            started: row.try_get(1)?,
        };
        Ok(Conn { client, session })
    }

    async fn recycle(
        &self,
        conn: &mut Conn,
        metrics: &Metrics,
    ) -> RecycleResult<tokio_postgres::Error> {
        self.inner.recycle(&mut conn.client, metrics).await
    }

    fn detach(&self, conn: &mut Conn) {
        self.inner.detach(&mut conn.client);
    }
}

/// Statement helpers on a pooled connection, with errors sorted for retrying.
impl Conn {
    /// Every row `sql` returns.
    pub(crate) async fn query(
        &self,
        sql: &str,
        params: &Params<'_>,
    ) -> Result<Vec<tokio_postgres::Row>, Failure> {
        let statement = self.prepare(sql).await?;
        self.client
            .query(&statement, params)
            .await
            .map_err(Failure::statement)
    }

    /// The row `sql` returns, if any (more than one is an error).
    pub(crate) async fn query_opt(
        &self,
        sql: &str,
        params: &Params<'_>,
    ) -> Result<Option<tokio_postgres::Row>, Failure> {
        let statement = self.prepare(sql).await?;
        self.client
            .query_opt(&statement, params)
            .await
            .map_err(Failure::statement)
    }

    /// How many rows `sql` changed.
    pub(crate) async fn execute(&self, sql: &str, params: &Params<'_>) -> Result<u64, Failure> {
        let statement = self.prepare(sql).await?;
        self.client
            .execute(&statement, params)
            .await
            .map_err(Failure::statement)
    }

    /// Prepares (once per connection) `sql`. Preparing executes nothing, so a lost connection
    /// here is safe to retry.
    pub(crate) async fn prepare(&self, sql: &str) -> Result<tokio_postgres::Statement, Failure> {
        self.client
            .prepare_cached(sql)
            .await
            .map_err(|error| match Failure::statement(error) {
                Failure::Lost(source) => Failure::Retry(source),
                other => other,
            })
    }
}
