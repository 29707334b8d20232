//! Locking the std mutexes of this crate.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks a mutex that a panic elsewhere may have poisoned. Every mutex of this crate guards a
/// table that stays consistent between statements (nothing is left half done across a call
/// that can panic), so a poisoned one is as good as any.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
