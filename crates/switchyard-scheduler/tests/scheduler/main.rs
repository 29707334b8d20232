//! The scheduler's tests: the memory store against the conformance suite, x3m's scheduler test,
//! the window, delivery and retry rules on a manual clock, lateness in real time, restarts,
//! leases shared by two schedulers, and store calls whose outcome is unknown.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Tests fail loudly.

mod batches;
mod delivery;
mod leases;
mod names;
mod shutdown;
mod support;
mod unknown_outcomes;
mod window;
mod x3m;

use switchyard_scheduler::store::MemoryAlarmStore;

switchyard_scheduler::alarm_store_conformance!(async { MemoryAlarmStore::new() });

#[test]
fn handles_are_send_and_sync() {
    fn is_send_sync<T: Send + Sync>() {}
    is_send_sync::<switchyard_scheduler::Scheduler>();
    is_send_sync::<MemoryAlarmStore>();
    is_send_sync::<switchyard_scheduler::ManualClock>();
    is_send_sync::<switchyard_scheduler::SchedulerConfig>();
}
