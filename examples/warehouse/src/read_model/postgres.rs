//! The product list in a table of the event store's PostgreSQL schema, on a pool of its own.

use deadpool_postgres::Transaction;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use futures::FutureExt;
use futures::future::BoxFuture;
use switchyard::postgres::save_checkpoint_in;
use switchyard::projections::checkpoint::CheckpointError;
use switchyard::projections::{CheckpointLease, CommitError};
use tokio_postgres::NoTls;

use super::{ProductRow, ProductTable, ReadModelError, RowChange, latest_per_sku};

/// Connections the list keeps: one for the projection, the rest for queries.
const POOL_SIZE: usize = 8;

/// The product list in the table `warehouse_products` of a PostgreSQL schema.
#[derive(Clone)]
pub(crate) struct PostgresTable {
    pool: Pool,
}

fn row(row: &tokio_postgres::Row) -> Result<ProductRow, ReadModelError> {
    let quantity: i64 = row.try_get(2).map_err(ReadModelError::new)?;
    Ok(ProductRow {
        sku: row.try_get(0).map_err(ReadModelError::new)?,
        name: row.try_get(1).map_err(ReadModelError::new)?,
        quantity: u64::try_from(quantity).unwrap_or_default(),
        version: row.try_get(3).map_err(ReadModelError::new)?,
    })
}

impl PostgresTable {
    /// Connects to the database at `url`, with `schema` (the event store's, which exists
    /// already) on the search path, and creates the table if needed.
    pub(crate) async fn connect(url: &str, schema: &str) -> Result<Self, ReadModelError> {
        let mut config: tokio_postgres::Config = url.parse().map_err(ReadModelError::new)?;
        // Every connection starts with the store's schema on its search path.
        config.options(format!("-c search_path={schema}"));
        config.application_name("warehouse");
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .build()
            .map_err(ReadModelError::new)?;
        let table = Self { pool };
        table
            .client()
            .await?
            .batch_execute(include_str!("sql/create_table.sql"))
            .await
            .map_err(ReadModelError::new)?;
        Ok(table)
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, ReadModelError> {
        self.pool.get().await.map_err(ReadModelError::new)
    }
}

/// Writes `changes` in `tx` in one statement, whatever their number: a statement per change
/// cost a round trip each, and the projection fell behind the commands on them.
async fn upsert(tx: &Transaction<'_>, changes: &[RowChange]) -> Result<(), ReadModelError> {
    let rows = latest_per_sku(changes);
    let skus: Vec<&str> = rows.iter().map(|row| row.sku.as_str()).collect();
    // A name is never empty (creation refuses it): '' says the change sets none.
    let names: Vec<&str> = rows
        .iter()
        .map(|row| row.name.as_deref().unwrap_or(""))
        .collect();
    let quantities: Vec<i64> = rows
        .iter()
        .map(|row| i64::try_from(row.quantity).unwrap_or(i64::MAX))
        .collect();
    let versions: Vec<i64> = rows.iter().map(|row| row.version).collect();
    let statement = tx
        .prepare_cached(include_str!("sql/upsert_many.sql"))
        .await
        .map_err(ReadModelError::new)?;
    tx.execute(&statement, &[&skus, &names, &quantities, &versions])
        .await
        .map(drop)
        .map_err(ReadModelError::new)
}

impl ProductTable for PostgresTable {
    fn apply<'a>(&'a self, changes: &'a [RowChange]) -> BoxFuture<'a, Result<(), ReadModelError>> {
        async move {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(ReadModelError::new)?;
            upsert(&tx, changes).await?;
            tx.commit().await.map_err(ReadModelError::new)
        }
        .boxed()
    }

    /// The rows and the checkpoint in one transaction (the table is in the checkpoint store's
    /// schema, on the connections' search path): one commit, so one wait for the disk, per
    /// batch where there were two, and the rows land exactly once.
    fn commit<'a>(
        &'a self,
        changes: &'a [RowChange],
        position: u64,
        lease: CheckpointLease<'a>,
    ) -> BoxFuture<'a, Result<(), CommitError>> {
        async move {
            let mut client = self
                .client()
                .await
                .map_err(|error| CommitError::Checkpoint(CheckpointError::backend(error)))?;
            let tx = client
                .transaction()
                .await
                .map_err(|error| CommitError::Checkpoint(CheckpointError::backend(error)))?;
            save_checkpoint_in(&tx, lease.token(), position).await?;
            if !changes.is_empty() {
                upsert(&tx, changes)
                    .await
                    .map_err(|error| CommitError::Projection(error.into()))?;
            }
            tx.commit()
                .await
                .map_err(|error| CommitError::Checkpoint(CheckpointError::unknown(error)))
        }
        .boxed()
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<ProductRow>, ReadModelError>> {
        async move {
            let client = self.client().await?;
            let list = client
                .prepare_cached(include_str!("sql/list.sql"))
                .await
                .map_err(ReadModelError::new)?;
            let rows = client
                .query(&list, &[])
                .await
                .map_err(ReadModelError::new)?;
            rows.iter().map(row).collect()
        }
        .boxed()
    }

    fn get<'a>(
        &'a self,
        sku: &'a str,
    ) -> BoxFuture<'a, Result<Option<ProductRow>, ReadModelError>> {
        async move {
            let client = self.client().await?;
            let get = client
                .prepare_cached(include_str!("sql/get.sql"))
                .await
                .map_err(ReadModelError::new)?;
            let found = client
                .query_opt(&get, &[&sku])
                .await
                .map_err(ReadModelError::new)?;
            found.as_ref().map(row).transpose()
        }
        .boxed()
    }

    fn clear(&self) -> BoxFuture<'_, Result<(), ReadModelError>> {
        async move {
            self.client()
                .await?
                .execute(include_str!("sql/clear.sql"), &[])
                .await
                .map(drop)
                .map_err(ReadModelError::new)
        }
        .boxed()
    }
}
