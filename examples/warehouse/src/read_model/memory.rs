//! The product list in memory (mode `memory-sync`).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use futures::FutureExt;
use futures::future::BoxFuture;

use super::{ProductRow, ProductTable, ReadModelError, RowChange};

/// The product list in a map, by SKU.
#[derive(Clone, Debug, Default)]
pub(crate) struct MemoryTable {
    rows: Arc<RwLock<BTreeMap<String, ProductRow>>>,
}

#[derive(Debug, thiserror::Error)]
#[error("a writer of the product list panicked")]
struct Poisoned;

impl MemoryTable {
    fn write(&self, changes: &[RowChange]) -> Result<(), ReadModelError> {
        let mut rows = self
            .rows
            .write()
            .map_err(|_| ReadModelError::new(Poisoned))?;
        for change in changes {
            let row = rows
                .entry(change.sku.clone())
                .or_insert_with(|| ProductRow {
                    sku: change.sku.clone(),
                    name: String::new(),
                    quantity: 0,
                    version: -1,
                });
            if change.version > row.version {
                if let Some(name) = &change.name {
                    row.name.clone_from(name);
                }
                row.quantity = change.quantity;
                row.version = change.version;
            }
        }
        Ok(())
    }

    fn read<T>(
        &self,
        read: impl FnOnce(&BTreeMap<String, ProductRow>) -> T,
    ) -> Result<T, ReadModelError> {
        let rows = self
            .rows
            .read()
            .map_err(|_| ReadModelError::new(Poisoned))?;
        Ok(read(&rows))
    }
}

impl ProductTable for MemoryTable {
    fn apply<'a>(&'a self, changes: &'a [RowChange]) -> BoxFuture<'a, Result<(), ReadModelError>> {
        futures::future::ready(self.write(changes)).boxed()
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<ProductRow>, ReadModelError>> {
        futures::future::ready(self.read(|rows| rows.values().cloned().collect())).boxed()
    }

    fn get<'a>(
        &'a self,
        sku: &'a str,
    ) -> BoxFuture<'a, Result<Option<ProductRow>, ReadModelError>> {
        futures::future::ready(self.read(|rows| rows.get(sku).cloned())).boxed()
    }

    fn clear(&self) -> BoxFuture<'_, Result<(), ReadModelError>> {
        let cleared = self
            .rows
            .write()
            .map(|mut rows| rows.clear())
            .map_err(|_| ReadModelError::new(Poisoned));
        futures::future::ready(cleared).boxed()
    }
}
