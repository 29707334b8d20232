//! Access to the database shared by every part of the store: a connection from the pool, and
//! retrying while nothing can have been written.
//!
//! The store handle, the append path and the trait implementations all reach PostgreSQL
//! through a [`Database`]; none of them holds the pool or the retry policy on its own.

use std::future::Future;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable as _};
use std::sync::Arc;

use deadpool::managed::{Object, PoolError, TimeoutType};
use switchyard_aggregates::store::StoreError;
use tokio_postgres::Row;

use crate::error::{ConnectTimeout, Failure};
use crate::pool::{Manager, Params, Pool};

/// The pool and the retry policy. Cheap to clone: clones share the pool.
#[derive(Clone)]
pub(crate) struct Database {
    pool: Pool,
    backoff: ExponentialBuilder,
    /// What a connection that took too long to set up is reported as.
    timed_out: Arc<ConnectTimeout>,
}

impl Database {
    /// Access through `pool`, retrying as `backoff` says; `timed_out` is the error of a
    /// connection whose set-up outlasts the pool's create timeout.
    pub(crate) fn new(pool: Pool, backoff: ExponentialBuilder, timed_out: ConnectTimeout) -> Self {
        Self {
            pool,
            backoff,
            timed_out: Arc::new(timed_out),
        }
    }

    /// The pool, for the committers, which sort their failures themselves.
    pub(crate) fn pool(&self) -> &Pool {
        &self.pool
    }

    /// A connection from the pool. A connection that could not be set up within the connect
    /// timeout is not tried again: a server that accepts and does not answer would make every
    /// retry wait as long again.
    pub(crate) async fn conn(&self) -> Result<Object<Manager>, Failure> {
        self.pool.get().await.map_err(|error| match error {
            PoolError::Timeout(TimeoutType::Create) => {
                Failure::Refused(Box::new(ConnectTimeout::clone(&self.timed_out)))
            }
            other => Failure::pool(other),
        })
    }

    /// Runs `op` until it succeeds, fails for good, or the retries are used up: only
    /// [`Failure::Retry`] is tried again, after an exponential, jittered pause.
    pub(crate) async fn retrying<T, Fut>(&self, op: impl FnMut() -> Fut) -> Result<T, Failure>
    where
        Fut: Future<Output = Result<T, Failure>>,
    {
        op.retry(self.backoff)
            .sleep(tokio::time::sleep)
            .when(Failure::is_retry)
            .notify(|failure: &Failure, pause: Duration| {
                tracing::debug!(
                    target: "switchyard_postgres",
                    ?failure,
                    ?pause,
                    "retrying after a failure that left nothing done"
                );
            })
            .await
    }

    /// Rows of a read, retried while nothing answers.
    pub(crate) async fn read(
        &self,
        sql: &str,
        params: &Params<'_>,
    ) -> Result<Vec<Row>, StoreError> {
        self.retrying(|| async {
            let conn = self.conn().await?;
            conn.query(sql, params).await.map_err(Failure::for_read)
        })
        .await
        .map_err(|failure| StoreError::backend(failure.into_source()))
    }

    /// At most one row of a read, retried while nothing answers.
    pub(crate) async fn read_opt(
        &self,
        sql: &str,
        params: &Params<'_>,
    ) -> Result<Option<Row>, StoreError> {
        self.retrying(|| async {
            let conn = self.conn().await?;
            conn.query_opt(sql, params).await.map_err(Failure::for_read)
        })
        .await
        .map_err(|failure| StoreError::backend(failure.into_source()))
    }

    /// The stream's last version, `None` if it does not exist (soft-deleted streams exist):
    /// what appends and deletes compare with the expected version after missing it.
    pub(crate) async fn stream_version(&self, stream: &str) -> Result<Option<i64>, StoreError> {
        self.read_opt(include_str!("sql/stream_version.sql"), &[&stream])
            .await?
            .map(|row| row.try_get::<_, i64>(0))
            .transpose()
            .map_err(StoreError::backend)
    }
}
