//! A checkpoint store in memory whose leases can be made to fail, shared by the test binaries
//! of takeovers (`#[path]`-included: a folder without `main.rs` is no test binary of its own).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::SystemTime;

use futures::FutureExt;
use futures::future::BoxFuture;
use switchyard_projections::MemoryCheckpointStore;
use switchyard_projections::checkpoint::{
    Acquire, CheckpointError, CheckpointInfo, CheckpointStore, LeaseToken, ParkedEvent,
};

/// A [`MemoryCheckpointStore`] with faults to switch on, and the leases asked of it counted.
#[derive(Clone, Default)]
pub(crate) struct FaultyLeases {
    /// The store behind the faults, for a runner that meets none of them.
    pub(crate) store: MemoryCheckpointStore,
    /// While set, renewals fail (the store cannot be reached): the lease lapses.
    pub(crate) partitioned: Arc<AtomicBool>,
    /// Once set, the next renewal answers that the lease was lost.
    pub(crate) lose_next_renewal: Arc<AtomicBool>,
    /// How many times a lease was asked for.
    pub(crate) acquisitions: Arc<AtomicUsize>,
    /// Added to every checkpoint loaded: the store claims an earlier process got that far.
    pub(crate) load_ahead: u64,
}

impl CheckpointStore for FaultyLeases {
    fn load<'a>(&'a self, projection: &'a str) -> BoxFuture<'a, Result<u64, CheckpointError>> {
        async move { Ok(self.store.load(projection).await? + self.load_ahead) }.boxed()
    }

    fn save<'a>(
        &'a self,
        lease: &'a LeaseToken,
        position: u64,
    ) -> BoxFuture<'a, Result<(), CheckpointError>> {
        self.store.save(lease, position)
    }

    fn reset<'a>(&'a self, lease: &'a LeaseToken) -> BoxFuture<'a, Result<(), CheckpointError>> {
        self.store.reset(lease)
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<CheckpointInfo>, CheckpointError>> {
        self.store.list()
    }

    fn park<'a>(
        &'a self,
        lease: &'a LeaseToken,
        event: &'a ParkedEvent,
    ) -> BoxFuture<'a, Result<(), CheckpointError>> {
        self.store.park(lease, event)
    }

    fn parked<'a>(
        &'a self,
        projection: &'a str,
    ) -> BoxFuture<'a, Result<Vec<ParkedEvent>, CheckpointError>> {
        self.store.parked(projection)
    }

    fn unpark<'a>(
        &'a self,
        projection: &'a str,
        position: u64,
    ) -> BoxFuture<'a, Result<bool, CheckpointError>> {
        self.store.unpark(projection, position)
    }

    fn acquire<'a>(
        &'a self,
        projection: &'a str,
        holder: &'a str,
        now: SystemTime,
        until: SystemTime,
    ) -> BoxFuture<'a, Result<Acquire, CheckpointError>> {
        self.acquisitions.fetch_add(1, Ordering::SeqCst);
        self.store.acquire(projection, holder, now, until)
    }

    fn renew<'a>(
        &'a self,
        lease: &'a LeaseToken,
        until: SystemTime,
    ) -> BoxFuture<'a, Result<bool, CheckpointError>> {
        if self.partitioned.load(Ordering::SeqCst) {
            return async { Err(CheckpointError::backend("partitioned")) }.boxed();
        }
        if self.lose_next_renewal.swap(false, Ordering::SeqCst) {
            return async { Ok(false) }.boxed();
        }
        self.store.renew(lease, until)
    }

    fn release<'a>(
        &'a self,
        lease: &'a LeaseToken,
    ) -> BoxFuture<'a, Result<bool, CheckpointError>> {
        self.store.release(lease)
    }
}
