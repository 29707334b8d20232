//! Errors of the scheduler.

use std::time::Duration;

use crate::store::AlarmStoreError;

/// [`Scheduler::start`](crate::Scheduler::start) refused the configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The lease must outlive a delivery, or another node could deliver the alarm while the
    /// first is still at it. Make the lease longer than the dispatch timeout.
    #[error(
        "the lease ({lease:?}) must be longer than the dispatch timeout ({dispatch_timeout:?})"
    )]
    LeaseTooShort {
        /// The configured lease.
        lease: Duration,
        /// The configured dispatch timeout.
        dispatch_timeout: Duration,
    },
    /// The window must not be zero.
    #[error("the window must be longer than zero")]
    EmptyWindow,
    /// A duration is beyond what the scheduler can add to a clock reading; keep settings
    /// under a hundred years.
    #[error("the {setting} ({value:?}) is too long; keep it under a hundred years")]
    TooLong {
        /// Which setting.
        setting: &'static str,
        /// Its value.
        value: Duration,
    },
}

/// An alarm was not scheduled or cancelled.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScheduleError {
    /// The store failed; the alarm was not saved (or cancelled). Retrying later may succeed.
    #[error("alarm store failed")]
    Store(#[from] AlarmStoreError),
    /// The scheduler was shut down; nothing was saved.
    #[error("scheduler stopped")]
    Stopped,
    /// `When::In` asked for a time no clock can read; nothing was saved.
    #[error("an alarm {delay:?} from now is beyond any clock; schedule it within a hundred years")]
    TooFar {
        /// The delay asked for.
        delay: Duration,
    },
}

/// The longest duration the scheduler adds to a clock reading: a hundred years.
pub(crate) const LONGEST: Duration = Duration::from_secs(100 * 365 * 24 * 3_600);
