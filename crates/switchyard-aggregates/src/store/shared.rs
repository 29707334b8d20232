//! Taking a store as the value, an `Arc` of it, or an `Arc` of the trait object.

use std::sync::Arc;

use super::{EventStore, GlobalReader, SnapshotStore, StateStore};

/// A store that can be shared as `Arc<T>`, where `T` is one of the store trait objects
/// (`dyn EventStore`, `dyn SnapshotStore`, `dyn StateStore`, `dyn GlobalReader`).
///
/// Implemented for a store taken by value (wrapped in a new `Arc`), for an `Arc` of a store
/// (coerced, not wrapped again), and for the `Arc` of the trait object itself. So
/// [`Repo::event_sourced`](crate::Repo::event_sourced),
/// [`MessageHandler::event_sourced`](crate::MessageHandler::event_sourced) and their siblings
/// take `MemoryStore::new()` as well as `store.clone()` of an `Arc<SqliteStore>` that also
/// serves snapshots.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use switchyard_aggregates::store::{EventStore, IntoShared, MemoryStore};
///
/// let by_value: Arc<dyn EventStore> = MemoryStore::new().into_shared();
/// let store = Arc::new(MemoryStore::new());
/// let shared: Arc<dyn EventStore> = store.clone().into_shared();
/// # let _ = (by_value, shared);
/// ```
pub trait IntoShared<T: ?Sized> {
    /// The store, behind an `Arc`.
    fn into_shared(self) -> Arc<T>;
}

macro_rules! into_shared {
    ($store:ident) => {
        impl<S: $store + 'static> IntoShared<dyn $store> for S {
            fn into_shared(self) -> Arc<dyn $store> {
                Arc::new(self)
            }
        }

        impl<S: $store + 'static> IntoShared<dyn $store> for Arc<S> {
            fn into_shared(self) -> Arc<dyn $store> {
                self
            }
        }

        impl IntoShared<dyn $store> for Arc<dyn $store> {
            fn into_shared(self) -> Arc<dyn $store> {
                self
            }
        }
    };
}

into_shared!(EventStore);
into_shared!(SnapshotStore);
into_shared!(StateStore);
into_shared!(GlobalReader);

/// A whole event store is also a reader of the global order (subscriptions take one).
impl IntoShared<dyn GlobalReader> for Arc<dyn EventStore> {
    fn into_shared(self) -> Arc<dyn GlobalReader> {
        self
    }
}
