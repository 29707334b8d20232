//! What happens after a delivery: done, or another attempt later.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use switchyard_messaging::Message;

use crate::assigns;

/// The verdict on a delivery.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// The alarm is finished: it is deleted from the store.
    Done,
    /// Deliver again after this delay. The message's assigns (and its request, service and
    /// aggregate metadata) are kept for the next attempt; its response, events and halted flag
    /// are cleared. The retry is persisted before it is armed, so it survives a restart.
    RetryIn(Duration, Message),
}

type Hook = dyn Fn(&Message) -> Decision + Send + Sync;

/// Decides, from the answered message, whether an alarm is done or tried again.
///
/// The built-in policies retry an answer that is not a success ([`Response::is_success`]; no
/// answer counts as a failure) while fewer than `max_attempts` deliveries were made, counting
/// the one just made. Attempts are counted by the store when each delivery starts, so one cut
/// short by a crash counts too: with `Fixed` or `ExponentialBackoff`, an alarm whose
/// `max_attempts` deliveries all started but never answered (a message that kills its node,
/// say) is dropped, with an error logged, instead of being tried forever. `Never` and `custom`
/// set no such limit: an alarm whose delivery was cut short is delivered again (at least once). A [`custom`](RetryPolicy::custom) hook decides alone; if it panics the
/// scheduler keeps running and retries the alarm after
/// [`SchedulerConfig::failure_delay`](crate::SchedulerConfig::failure_delay).
///
/// [`Response::is_success`]: switchyard_messaging::Response::is_success
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use switchyard_messaging::Message;
/// use switchyard_scheduler::{Decision, RetryPolicy};
///
/// let policy = RetryPolicy::ExponentialBackoff {
///     base: Duration::from_secs(1),
///     cap: Duration::from_secs(60),
///     max_attempts: 5,
/// };
/// let failed = Message::new("remind").assign("dispatch_attempts", &3_u32).error("down");
/// assert!(matches!(policy.decide(&failed), Decision::RetryIn(delay, _) if delay == Duration::from_secs(4)));
/// assert_eq!(policy.decide(&Message::new("remind").ok()), Decision::Done);
/// ```
#[derive(Clone, Default)]
#[non_exhaustive]
pub enum RetryPolicy {
    /// Every alarm is delivered once, whatever the answer.
    #[default]
    Never,
    /// Retry after `delay`.
    Fixed {
        /// The delay before each retry.
        delay: Duration,
        /// The most deliveries of one alarm.
        max_attempts: u32,
    },
    /// Retry after `base`, then twice as long each time, never longer than `cap`.
    ExponentialBackoff {
        /// The delay before the first retry.
        base: Duration,
        /// The longest delay.
        cap: Duration,
        /// The most deliveries of one alarm.
        max_attempts: u32,
    },
    /// The user's hook decides.
    Custom(Arc<Hook>),
}

impl RetryPolicy {
    /// A policy that asks `hook` about every answered message.
    pub fn custom(hook: impl Fn(&Message) -> Decision + Send + Sync + 'static) -> Self {
        Self::Custom(Arc::new(hook))
    }

    /// The most deliveries this policy allows, when it has a limit: a delivery is not started
    /// beyond it, even when the earlier ones never answered (their node died). Every alarm is
    /// delivered at least once, so a limit of 0 counts as 1.
    pub(crate) fn max_attempts(&self) -> Option<u32> {
        match self {
            Self::Fixed { max_attempts, .. } | Self::ExponentialBackoff { max_attempts, .. } => {
                Some((*max_attempts).max(1))
            }
            Self::Never | Self::Custom(_) => None,
        }
    }

    /// The verdict on `reply`, the message as its service answered it.
    pub fn decide(&self, reply: &Message) -> Decision {
        let failed = !reply.response().is_some_and(|r| r.is_success());
        let attempts = assigns::dispatch_attempts(reply);
        match self {
            Self::Never => Decision::Done,
            Self::Fixed {
                delay,
                max_attempts,
            } => {
                if failed && attempts < *max_attempts {
                    Decision::RetryIn(*delay, reply.clone())
                } else {
                    Decision::Done
                }
            }
            Self::ExponentialBackoff {
                base,
                cap,
                max_attempts,
            } => {
                if failed && attempts < *max_attempts {
                    let doublings = attempts.saturating_sub(1).min(31);
                    let delay = base.saturating_mul(1 << doublings).min(*cap);
                    Decision::RetryIn(delay, reply.clone())
                } else {
                    Decision::Done
                }
            }
            Self::Custom(hook) => hook(reply),
        }
    }
}

impl fmt::Debug for RetryPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Never => f.write_str("Never"),
            Self::Fixed {
                delay,
                max_attempts,
            } => f
                .debug_struct("Fixed")
                .field("delay", delay)
                .field("max_attempts", max_attempts)
                .finish(),
            Self::ExponentialBackoff {
                base,
                cap,
                max_attempts,
            } => f
                .debug_struct("ExponentialBackoff")
                .field("base", base)
                .field("cap", cap)
                .field("max_attempts", max_attempts)
                .finish(),
            Self::Custom(_) => f.write_str("Custom(..)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed_after(attempts: u32) -> Message {
        Message::new("s")
            .assign(assigns::DISPATCH_ATTEMPTS, &attempts)
            .error("no")
    }

    #[test]
    fn exponential_backoff_doubles_up_to_the_cap_and_stops_at_max_attempts() {
        let policy = RetryPolicy::ExponentialBackoff {
            base: Duration::from_millis(100),
            cap: Duration::from_millis(500),
            max_attempts: 5,
        };
        let delays: Vec<_> = (1..=5)
            .map(|n| match policy.decide(&failed_after(n)) {
                Decision::RetryIn(delay, _) => Some(delay.as_millis()),
                Decision::Done => None,
            })
            .collect();
        assert_eq!(delays, [Some(100), Some(200), Some(400), Some(500), None]);
    }

    #[test]
    fn only_the_built_in_limits_bound_attempts_and_never_below_one() {
        let fixed = |max_attempts| RetryPolicy::Fixed {
            delay: Duration::from_secs(1),
            max_attempts,
        };
        assert_eq!(fixed(3).max_attempts(), Some(3));
        assert_eq!(fixed(0).max_attempts(), Some(1), "delivered at least once");
        assert_eq!(RetryPolicy::Never.max_attempts(), None);
        let custom = RetryPolicy::custom(|_: &Message| Decision::Done);
        assert_eq!(custom.max_attempts(), None);
    }

    #[test]
    fn fixed_retries_failures_only() {
        let policy = RetryPolicy::Fixed {
            delay: Duration::from_secs(1),
            max_attempts: 2,
        };
        assert!(matches!(
            policy.decide(&failed_after(1)),
            Decision::RetryIn(..)
        ));
        assert_eq!(policy.decide(&failed_after(2)), Decision::Done);
        let ok = Message::new("s")
            .assign(assigns::DISPATCH_ATTEMPTS, &1_u32)
            .ok();
        assert_eq!(policy.decide(&ok), Decision::Done);
        assert_eq!(RetryPolicy::Never.decide(&failed_after(1)), Decision::Done);
    }
}
