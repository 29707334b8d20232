//! Errors of the scheduler.

use std::time::Duration;

use switchyard_messaging::names::NameError;

use crate::store::AlarmStoreError;

/// [`Scheduler::start`](crate::Scheduler::start) refused the configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The lease must outlive a whole delivery, or another node could deliver the alarm while
    /// the first is still at it: a claim may answer as late as the store timeout, the alarm
    /// then waits for its due time up to the claim-ahead, and the dispatch takes up to the
    /// dispatch timeout. Make the lease longer than the three together, or shorten them.
    #[error(
        "the lease ({lease:?}) must be longer than the store timeout ({store_timeout:?}), \
         the claim-ahead ({claim_ahead:?}) and the dispatch timeout ({dispatch_timeout:?}) \
         together"
    )]
    LeaseTooShort {
        /// The configured lease.
        lease: Duration,
        /// The configured store timeout.
        store_timeout: Duration,
        /// The configured claim-ahead.
        claim_ahead: Duration,
        /// The configured dispatch timeout.
        dispatch_timeout: Duration,
    },
    /// The window must not be zero.
    #[error("the window must be longer than zero")]
    EmptyWindow,
    /// At least one delivery must be allowed at a time, and neither the store timeout nor the
    /// load timeout may be zero.
    #[error("the {setting} must be more than zero")]
    Zero {
        /// Which setting.
        setting: &'static str,
    },
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
    /// The store failed; the alarm was not saved (or cancelled), except for
    /// [`AlarmStoreError::Unknown`]: then it may have been, and a saved alarm is armed all the
    /// same, as after [`StoreTimedOut`](ScheduleError::StoreTimedOut). Retrying later may
    /// succeed; scheduling the same message id again replaces the alarm.
    #[error("alarm store failed")]
    Store(#[from] AlarmStoreError),
    /// The scheduler was shut down (or its shutdown has begun); nothing was saved. Schedule
    /// through a running scheduler.
    #[error("scheduler stopped")]
    Stopped,
    /// The store did not answer within
    /// [`SchedulerConfig::store_timeout`](crate::SchedulerConfig::store_timeout): the alarm may
    /// or may not be saved (or cancelled). A `schedule` that timed out still arms the alarm, so
    /// if the save took effect the alarm is delivered. Scheduling it again with the same
    /// message id replaces it, and cancelling again is harmless.
    #[error("the alarm store did not answer within {after:?}")]
    StoreTimedOut {
        /// The timeout.
        after: Duration,
    },
    /// `When::In` asked for a time no clock can read; nothing was saved.
    #[error("an alarm {delay:?} from now is beyond any clock; schedule it within a hundred years")]
    TooFar {
        /// The delay asked for.
        delay: Duration,
    },
    /// The message id or the aggregate id breaks the [name rule](switchyard_messaging::names)
    /// every store accepts (the message says which and the rule); nothing reached the store.
    /// Choose another id.
    #[error(transparent)]
    InvalidName(#[from] NameError),
}

/// A store call made by the scheduler failed or took longer than the store timeout.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreCallError {
    /// The store answered with an error.
    #[error(transparent)]
    Store(#[from] AlarmStoreError),
    /// The store did not answer in time; the call may or may not have taken effect.
    #[error("the alarm store did not answer within {after:?}")]
    TimedOut {
        /// The timeout.
        after: Duration,
    },
}

impl StoreCallError {
    /// Whether the call may have taken effect although it failed: it timed out, or the store
    /// cannot tell.
    pub(crate) fn may_have_taken_effect(&self) -> bool {
        matches!(
            self,
            Self::TimedOut { .. } | Self::Store(AlarmStoreError::Unknown { .. })
        )
    }
}

impl From<StoreCallError> for ScheduleError {
    fn from(error: StoreCallError) -> Self {
        match error {
            StoreCallError::Store(error) => Self::Store(error),
            StoreCallError::TimedOut { after } => Self::StoreTimedOut { after },
        }
    }
}

/// Runs `call`, a store call, for at most `after`.
pub(crate) async fn bounded<T>(
    after: Duration,
    call: impl std::future::Future<Output = Result<T, AlarmStoreError>>,
) -> Result<T, StoreCallError> {
    match tokio::time::timeout(after, call).await {
        Ok(answer) => answer.map_err(StoreCallError::Store),
        Err(_elapsed) => Err(StoreCallError::TimedOut { after }),
    }
}

/// The longest duration the scheduler adds to a clock reading: a hundred years.
pub(crate) const LONGEST: Duration = Duration::from_secs(100 * 365 * 24 * 3_600);
