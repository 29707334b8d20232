//! The read model: the product list the queries read, kept by a projection from the products'
//! events, in memory, in the SQLite file or in the PostgreSQL schema of the event store.
//!
//! Every event carries the quantity it leaves, so applying one is an upsert of the row as it
//! stands after the event, kept only when the event's version is newer than the row's: an event
//! delivered twice (the runner delivers at least once) changes nothing the second time, and
//! no running total can drift.

mod memory;
mod postgres;
mod sqlite;

use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use serde::Serialize;
use switchyard::aggregates::DecodedEvent;
use switchyard::projections::{BoxError, CheckpointLease, CommitError, Projection};

pub(crate) use self::memory::MemoryTable;
pub(crate) use self::postgres::PostgresTable;
pub(crate) use self::sqlite::SqliteTable;
use crate::product::{ProductEvent, sku_of_stream};

/// The name of the projection that keeps the product list, in the checkpoint store.
pub const PROJECTION: &str = "warehouse-products";

/// One product as the list shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ProductRow {
    /// Its SKU (its aggregate id).
    pub sku: String,
    /// Its name.
    pub name: String,
    /// How many are in stock.
    pub quantity: u64,
    /// The version of its stream the row reflects: the number of its events applied, less one.
    pub version: i64,
}

/// An event's effect on the list: product `sku`'s row after the event at `version`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RowChange {
    pub(crate) sku: String,
    /// Its name, when the event sets it (only creation does).
    pub(crate) name: Option<String>,
    pub(crate) quantity: u64,
    pub(crate) version: i64,
}

/// `changes` as one change per SKU, with the effect of applying them in order on any row: the
/// newest version's quantity, and the name when one of them sets it. A change older than one
/// before it is passed over, as the row's version check would. For a store that writes a batch
/// in one statement, where a row may change only once.
pub(crate) fn latest_per_sku(changes: &[RowChange]) -> Vec<RowChange> {
    let mut latest: Vec<RowChange> = Vec::with_capacity(changes.len());
    let mut index: std::collections::HashMap<&str, usize> =
        std::collections::HashMap::with_capacity(changes.len());
    for change in changes {
        match index.get(change.sku.as_str()) {
            Some(&at) => {
                let row = &mut latest[at];
                if change.version > row.version {
                    if change.name.is_some() {
                        row.name.clone_from(&change.name);
                    }
                    row.quantity = change.quantity;
                    row.version = change.version;
                }
            }
            None => {
                index.insert(&change.sku, latest.len());
                latest.push(change.clone());
            }
        }
    }
    latest
}

/// A read model's failure: its database's error.
#[derive(Debug, thiserror::Error)]
#[error("the product list could not be read or written")]
pub struct ReadModelError(#[source] pub(crate) BoxError);

impl ReadModelError {
    pub(crate) fn new(source: impl Into<BoxError>) -> Self {
        Self(source.into())
    }
}

/// Where the product list is kept.
pub(crate) trait ProductTable: Send + Sync {
    /// Applies `changes` in order, in one transaction: each row is written only when its
    /// version is newer than the stored one.
    fn apply<'a>(&'a self, changes: &'a [RowChange]) -> BoxFuture<'a, Result<(), ReadModelError>>;

    /// Every product, by SKU.
    fn list(&self) -> BoxFuture<'_, Result<Vec<ProductRow>, ReadModelError>>;

    /// Product `sku`, if the list has it.
    fn get<'a>(&'a self, sku: &'a str)
    -> BoxFuture<'a, Result<Option<ProductRow>, ReadModelError>>;

    /// Empties the list, before a rebuild.
    fn clear(&self) -> BoxFuture<'_, Result<(), ReadModelError>>;

    /// Applies `changes` ([`apply`](Self::apply)) and saves the projection's checkpoint at
    /// `position` through `lease`. By default one after the other: a crash between them leaves
    /// the checkpoint before the batch, which is applied again, harmlessly (see the module
    /// docs). A table beside the checkpoints overrides it to write both in one transaction.
    fn commit<'a>(
        &'a self,
        changes: &'a [RowChange],
        position: u64,
        lease: CheckpointLease<'a>,
    ) -> BoxFuture<'a, Result<(), CommitError>> {
        async move {
            if !changes.is_empty() {
                self.apply(changes)
                    .await
                    .map_err(|error| CommitError::Projection(error.into()))?;
            }
            lease.save(position).await?;
            Ok(())
        }
        .boxed()
    }
}

/// The projection that keeps a [`ProductTable`] from the products' events.
#[derive(Clone)]
pub(crate) struct ProductsProjection {
    pub(crate) table: Arc<dyn ProductTable>,
}

/// The rows `batch` changes, in order.
fn changes(batch: &[DecodedEvent<ProductEvent>]) -> Vec<RowChange> {
    batch
        .iter()
        .map(|event| event.event.row(sku_of_stream(&event.stream), event.version))
        .collect()
}

impl Projection for ProductsProjection {
    type Event = ProductEvent;

    async fn apply(&mut self, batch: &[DecodedEvent<ProductEvent>]) -> Result<(), BoxError> {
        self.table.apply(&changes(batch)).await?;
        Ok(())
    }

    async fn commit(
        &mut self,
        batch: &[DecodedEvent<ProductEvent>],
        position: u64,
        lease: CheckpointLease<'_>,
    ) -> Result<(), CommitError> {
        self.table.commit(&changes(batch), position, lease).await
    }

    async fn reset(&mut self) -> Result<(), BoxError> {
        self.table.clear().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(name: Option<&str>, quantity: u64, version: i64) -> RowChange {
        RowChange {
            sku: "bolt".to_owned(),
            name: name.map(str::to_owned),
            quantity,
            version,
        }
    }

    /// Created, +10, -4, then the same batch again and an old event late: the row stays as
    /// the newest event left it.
    async fn check_redelivery_changes_nothing(table: &dyn ProductTable) {
        let batch = [
            change(Some("Bolt"), 0, 0),
            change(None, 10, 1),
            change(None, 6, 2),
        ];
        table.apply(&batch).await.unwrap();
        table.apply(&batch).await.unwrap();
        table.apply(&batch[1..2]).await.unwrap();
        let expected = ProductRow {
            sku: "bolt".to_owned(),
            name: "Bolt".to_owned(),
            quantity: 6,
            version: 2,
        };
        assert_eq!(table.get("bolt").await.unwrap(), Some(expected.clone()));
        assert_eq!(table.list().await.unwrap(), vec![expected]);
        table.clear().await.unwrap();
        assert_eq!(table.list().await.unwrap(), vec![]);
    }

    #[test]
    fn a_batch_collapses_to_the_newest_change_of_each_sku() {
        let mut nut = change(Some("Nut"), 0, 0);
        nut.sku = "nut".to_owned();
        let batch = [
            change(Some("Bolt"), 0, 0),
            nut.clone(),
            change(None, 10, 1),
            change(None, 6, 2),
            change(None, 10, 1),
        ];
        assert_eq!(
            latest_per_sku(&batch),
            vec![change(Some("Bolt"), 6, 2), nut]
        );
    }

    #[tokio::test]
    async fn an_event_delivered_again_changes_nothing_in_memory() {
        check_redelivery_changes_nothing(&MemoryTable::default()).await;
    }

    #[tokio::test]
    async fn an_event_delivered_again_changes_nothing_in_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let table = SqliteTable::open(&dir.path().join("list.db")).unwrap();
        check_redelivery_changes_nothing(&table).await;
    }

    /// Also a batch changing one row three times, which one `INSERT ... ON CONFLICT` statement
    /// refuses unless the batch is first reduced to one change per SKU.
    #[tokio::test]
    async fn an_event_delivered_again_changes_nothing_in_postgres() {
        let url = switchyard_postgres::test_server::shared_url().unwrap();
        let schema = format!("warehouse_read_model_{}", std::process::id());
        let options = switchyard::postgres::PostgresOptions::default().schema(schema.clone());
        let _store = switchyard::postgres::PostgresStore::connect_with(&url, options)
            .await
            .unwrap();
        let table = PostgresTable::connect(&url, &schema).await.unwrap();
        check_redelivery_changes_nothing(&table).await;
    }
}
