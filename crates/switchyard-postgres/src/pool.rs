//! The connection pool: deadpool-postgres connections that know their server session.
//!
//! Each connection sets its `search_path` to the store's schema once, when it is opened, and
//! remembers its backend's process id and start time. After a connection breaks in the middle
//! of an append, that session is what the store ends (`pg_terminate_backend`) before it looks
//! whether the append committed: once the backend is gone its transaction is final.

use std::time::SystemTime;

use deadpool::managed::{self, Metrics, RecycleResult};
use deadpool_postgres::{ClientWrapper, ManagerConfig, RecyclingMethod};

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
