//! The checkpoint store in memory: for tests, and for projections rebuilt at every start.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use futures::future::{self, BoxFuture, FutureExt};

use super::backend::{
    Acquisition, StoredCheckpoint, check_fenced_write, check_names, check_projection,
    decide_acquire, holds, park_columns, position_column,
};
use super::{
    Acquire, CheckpointError, CheckpointInfo, CheckpointStore, Lease, LeaseHolder, LeaseToken,
    ParkedEvent,
};

/// One projection's row.
#[derive(Clone, Debug)]
struct Row {
    stored: StoredCheckpoint,
    updated_at: Option<SystemTime>,
}

impl Row {
    /// Moves the checkpoint to `position`, now.
    fn move_to(&mut self, position: u64) {
        self.stored.position = position;
        self.updated_at = Some(SystemTime::now());
    }
}

/// The parked events of every projection, by projection, then position.
type Parked = BTreeMap<(String, u64), ParkedEvent>;

/// Everything the store keeps, under one lock so a park and its checkpoint move together.
#[derive(Debug, Default)]
struct State {
    rows: BTreeMap<String, Row>,
    parked: Parked,
}

/// Checkpoints, leases and parked events in memory, lost when the last clone is dropped.
/// Clones share them.
///
/// It follows the [`CheckpointStore`] rules exactly, as the conformance suite checks; see the
/// [module docs](super) for an example.
#[derive(Clone, Debug, Default)]
pub struct MemoryCheckpointStore {
    state: Arc<Mutex<State>>,
}

impl MemoryCheckpointStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Every change is made after its checks, of assignments that cannot panic, so a panic
        // elsewhere while the lock was held cannot leave a row half written.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs a fenced write by `lease`: `change` is applied to the projection's row and the
    /// parked events once the lease and `position` pass.
    fn fenced(
        &self,
        lease: &LeaseToken,
        position: Option<u64>,
        change: impl FnOnce(&mut Row, &mut Parked),
    ) -> Result<(), CheckpointError> {
        check_names(&lease.projection, &lease.holder)?;
        if let Some(position) = position {
            position_column(position)?;
        }
        let State { rows, parked } = &mut *self.state();
        let row = rows.get_mut(&lease.projection);
        check_fenced_write(row.as_ref().map(|row| &row.stored), lease, position)?;
        if let Some(row) = row {
            change(row, parked);
        }
        Ok(())
    }

    /// Runs a lease change by `lease`: `false` when it is not the current one.
    fn lease_change(
        &self,
        lease: &LeaseToken,
        change: impl FnOnce(&mut StoredCheckpoint),
    ) -> Result<bool, CheckpointError> {
        check_names(&lease.projection, &lease.holder)?;
        let mut state = self.state();
        match state.rows.get_mut(&lease.projection) {
            Some(row) if holds(Some(&row.stored), lease) => {
                change(&mut row.stored);
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

impl CheckpointStore for MemoryCheckpointStore {
    fn load<'a>(&'a self, projection: &'a str) -> BoxFuture<'a, Result<u64, CheckpointError>> {
        let loaded = check_projection(projection).map(|()| {
            self.state()
                .rows
                .get(projection)
                .map_or(0, |row| row.stored.position)
        });
        future::ready(loaded).boxed()
    }

    fn save<'a>(
        &'a self,
        lease: &'a LeaseToken,
        position: u64,
    ) -> BoxFuture<'a, Result<(), CheckpointError>> {
        let saved = self.fenced(lease, Some(position), |row, _| row.move_to(position));
        future::ready(saved).boxed()
    }

    fn reset<'a>(&'a self, lease: &'a LeaseToken) -> BoxFuture<'a, Result<(), CheckpointError>> {
        let reset = self.fenced(lease, None, |row, parked| {
            row.move_to(0);
            parked.retain(|(projection, _), _| *projection != lease.projection);
        });
        future::ready(reset).boxed()
    }

    fn park<'a>(
        &'a self,
        lease: &'a LeaseToken,
        event: &'a ParkedEvent,
    ) -> BoxFuture<'a, Result<(), CheckpointError>> {
        let parked = park_columns(lease, event).and_then(|_| {
            self.fenced(lease, None, |row, parked| {
                if row.stored.position < event.position {
                    row.move_to(event.position);
                }
                parked.insert((event.projection.clone(), event.position), event.clone());
            })
        });
        future::ready(parked).boxed()
    }

    fn parked<'a>(
        &'a self,
        projection: &'a str,
    ) -> BoxFuture<'a, Result<Vec<ParkedEvent>, CheckpointError>> {
        let listed = check_projection(projection).map(|()| {
            let from = (projection.to_owned(), 0);
            self.state()
                .parked
                .range(from..)
                .take_while(|((parked, _), _)| parked == projection)
                .map(|(_, event)| event.clone())
                .collect()
        });
        future::ready(listed).boxed()
    }

    fn unpark<'a>(
        &'a self,
        projection: &'a str,
        position: u64,
    ) -> BoxFuture<'a, Result<bool, CheckpointError>> {
        let removed = check_projection(projection).map(|()| {
            self.state()
                .parked
                .remove(&(projection.to_owned(), position))
                .is_some()
        });
        future::ready(removed).boxed()
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<CheckpointInfo>, CheckpointError>> {
        let listed = self
            .state()
            .rows
            .iter()
            .map(|(projection, row)| CheckpointInfo {
                projection: projection.clone(),
                position: row.stored.position,
                updated_at: row.updated_at,
                lease: row
                    .stored
                    .holder
                    .clone()
                    .zip(row.stored.lease_until)
                    .map(|(holder, until)| LeaseHolder { holder, until }),
            })
            .collect();
        future::ready(Ok(listed)).boxed()
    }

    fn acquire<'a>(
        &'a self,
        projection: &'a str,
        holder: &'a str,
        now: SystemTime,
        until: SystemTime,
    ) -> BoxFuture<'a, Result<Acquire, CheckpointError>> {
        let acquired = check_names(projection, holder).map(|()| {
            let mut state = self.state();
            let row = state.rows.get(projection);
            match decide_acquire(row.map(|row| &row.stored), holder, now) {
                Acquisition::Refused(held) => Acquire::Held(held),
                Acquisition::Granted { generation } => {
                    let row = state
                        .rows
                        .entry(projection.to_owned())
                        .or_insert_with(|| Row {
                            stored: StoredCheckpoint {
                                position: 0,
                                generation,
                                holder: None,
                                lease_until: None,
                            },
                            updated_at: None,
                        });
                    row.stored.generation = generation;
                    row.stored.holder = Some(holder.to_owned());
                    row.stored.lease_until = Some(until);
                    Acquire::Acquired(Lease {
                        token: LeaseToken {
                            projection: projection.to_owned(),
                            holder: holder.to_owned(),
                            generation,
                        },
                        until,
                    })
                }
            }
        });
        future::ready(acquired).boxed()
    }

    fn renew<'a>(
        &'a self,
        lease: &'a LeaseToken,
        until: SystemTime,
    ) -> BoxFuture<'a, Result<bool, CheckpointError>> {
        let renewed = self.lease_change(lease, |stored| stored.lease_until = Some(until));
        future::ready(renewed).boxed()
    }

    fn release<'a>(
        &'a self,
        lease: &'a LeaseToken,
    ) -> BoxFuture<'a, Result<bool, CheckpointError>> {
        let released = self.lease_change(lease, |stored| {
            stored.holder = None;
            stored.lease_until = None;
        });
        future::ready(released).boxed()
    }
}
